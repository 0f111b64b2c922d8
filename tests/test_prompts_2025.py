"""The `simcopilot` prompt style of the 2025 edition (mj33rice/Sim-CoPilot@096d1c4), checked against
that edition's own code: the messages its generation function sends to its hosted models, the stop
it gives them, and its truncation rule with a real served tokenizer.

In the 2025 edition every model goes through ``helper_functions/LLMs_gen.py``'s
``generate_code_strict_format(before_lines, after_lines, model, program_type, prompts_path=...)``;
for its hosted open models (Together AI: Llama 3.3 70B, Qwen2.5-Coder-32B) it builds the messages
with ``create_input_messages`` and sends them, whole, to ``together_client.chat.completions.create``
with ``stop=["<comment> --END MISSING CODE--"]``. Completion mode is its ``no_afterlines`` mode:
``LLMs_gen_and_post_process`` passes ``after_lines = ''``.
"""

from __future__ import annotations

import asyncio
import types

import httpx
import pytest

from runner import prompts
from runner.benchmarks import load_benchmark
from runner.errors import UserError
from runner.evaluation import upstream
from runner.records import Language, Mode, Task

#: the 2025 edition's hosted open models (``together_models_list`` in helper_functions/LLMs_gen.py)
#: whose rows the paper's table has: both take the same path, so the same prompt
HOSTED_OPEN_MODELS = ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "Qwen/Qwen2.5-Coder-32B-Instruct")


class _CaptureClient:
    """The 2025 edition's ``together_client``: keeps what its chat call was asked with, answers nothing."""

    def __init__(self):
        self.calls: list[dict] = []
        self.chat = types.SimpleNamespace(completions=types.SimpleNamespace(create=self._create))

    def _create(self, **kwargs):
        self.calls.append(kwargs)
        message = types.SimpleNamespace(content="")
        return types.SimpleNamespace(choices=[types.SimpleNamespace(message=message)])


def upstream_request(up: upstream.Upstream, task: Task, model: str, monkeypatch, *,
                     before: str | None = None, after: str | None = None) -> dict:
    """What the 2025 generation function sends for ``task`` (``before``/``after`` override the task's)."""
    kind = "Java" if task.language == Language.java else "Python"
    before = task.before if before is None else before
    after = task.after if after is None else after
    before_lines = before.split("\n") if before else []
    # infill is its with_afterlines mode; completion its no_afterlines mode, which passes after_lines = ''
    after_lines = (after.split("\n") if after else []) if task.mode == Mode.infill else ""
    capture = _CaptureClient()
    with monkeypatch.context() as patch:
        patch.setattr(up.llms_gen, "together_client", capture)
        up.llms_gen.generate_code_strict_format(before_lines, after_lines, model, kind,
                                                prompts_path=str(up.prompt_templates))
    (request,) = capture.calls
    return request


def test_simcopilot_2025_style_is_byte_identical_to_what_upstream_sends_its_hosted_models(simcopilot_2025, monkeypatch):
    """Every one of the 1,163 tasks, both hosted open models; only the 2025 copy is installed, so
    the templates and create_input_messages can only have come from it."""
    up = upstream.load(simcopilot_2025)
    assert up.edition == "2025"
    bench = load_benchmark("simcopilot", "2025")
    differ, stops = [], set()
    for task in bench.tasks:
        prompt = prompts.render(task, "simcopilot", edition="2025")
        ours = [m.model_dump() for m in prompt.messages]
        for model in HOSTED_OPEN_MODELS:
            request = upstream_request(up, task, model, monkeypatch)
            if ours != request["messages"] or list(prompt.stop) != request["stop"]:
                differ.append((task.id, model))
            assert request["temperature"] == 0 and request["max_tokens"] is None
        stops.add((task.language, prompt.stop))
    assert len(bench.tasks) == 1163 and differ == []
    # the hosted path stops at the END marker line (2024's LLaMA path set no stop)
    assert stops == {(Language.python, ("# --END MISSING CODE--",)), (Language.java, ("// --END MISSING CODE--",))}


def test_the_2025_prompt_set_is_2024s_messages_with_the_end_marker_as_stop(simcopilot, simcopilot_2025):
    """Both editions' templates and create_input_messages build the same messages; what differs
    in the request is the stop. The run's manifest hash covers the messages only."""
    bench = load_benchmark("simcopilot", "2025")
    tasks = [next(t for t in bench.tasks if t.language == lang and t.mode == mode)
             for lang in Language for mode in Mode]
    for task in tasks:
        old, new = prompts.render(task, "simcopilot"), prompts.render(task, "simcopilot", edition="2025")
        assert new.messages == old.messages and new.sha256 == old.sha256
        assert old.stop == () and new.stop == (("//" if task.language == Language.java else "#") + " --END MISSING CODE--",)
    assert prompts.prompt_set_sha256(tasks, "simcopilot", edition="2025") == prompts.prompt_set_sha256(tasks, "simcopilot")
    assert prompts.render(tasks[0], "simcopilot", edition="2024") == prompts.render(tasks[0], "simcopilot")


def test_a_missing_2025_copy_says_how_to_fetch_that_edition(simcopilot):
    task = next(t for t in load_benchmark("simcopilot").tasks if t.language == Language.python)
    with pytest.raises(UserError, match=r"runner data fetch simcopilot --edition 2025"):
        prompts.render(task, "simcopilot", edition="2025")
    assert prompts.render(task, "instruct", edition="2025") == prompts.render(task, "instruct")  # other styles: no copy needed


class _HTTPTokenizer:
    """An HF-style tokenizer (``encode(text)``, ``decode(ids)``) over the server's /tokenize and
    /detokenize: what HF_models.truncate_input gets from ``load_tokenizer`` here."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = httpx.Client(timeout=120)
        self.encoded: list[int] = []  # how many tokens each call made or was given, in call order
        self.decoded: list[int] = []

    def encode(self, text):
        response = self.http.post(f"{self.base_url}/tokenize", json={"content": text})
        response.raise_for_status()
        self.encoded.append(len(response.json()["tokens"]))
        return response.json()["tokens"]

    def decode(self, ids):
        self.decoded.append(len(ids))
        response = self.http.post(f"{self.base_url}/detokenize", json={"tokens": list(ids)})
        response.raise_for_status()
        return response.json()["content"]


def test_2025_truncation_is_upstreams_truncate_input_with_the_served_tokenizer(simcopilot_2025, tmp_path, monkeypatch):
    """Three long tasks in a 1,536-token context, the served tokenizer Qwen2.5-Coder's (the 0.5B
    model shares the 32B's vocabulary): our cut prompt is the one upstream's own
    ``HF_models.truncate_input`` makes (its ``load_tokenizer`` answering with the same server's
    tokenizer), rendered by upstream's own generation function, and it fits the context."""
    from tests.llama_server import qwen_gguf, running_llama

    context, max_tokens = 1536, 200
    up = upstream.load(simcopilot_2025)
    bench = load_benchmark("simcopilot", "2025")
    tasks = [
        next(t for t in bench.tasks if t.language == Language.python and t.mode == Mode.infill
             and len(t.before) > 4000 and len(t.after) > 4000),
        next(t for t in bench.tasks if t.language == Language.java and t.mode == Mode.infill
             and len(t.before) > 4000 and len(t.after) > 4000),
        next(t for t in bench.tasks if t.language == Language.java and t.mode == Mode.completion
             and len(t.before) > 6000),
    ]
    with running_llama(tmp_path / "server.log", model="qwen2.5-coder-0.5b", gguf=qwen_gguf()) as (runtime, _c, server, _f):
        async def ours():
            async with httpx.AsyncClient(timeout=120) as http:
                tokens = runtime.tokens(http, server.base_url)
                out = []
                for task in tasks:
                    full = prompts.render(task, "simcopilot", edition="2025")
                    excess = await prompts.prompt_tokens(full, tokens) + max_tokens - context
                    cut = await prompts.fit_upstream(task, "simcopilot", tokens, context_length=context,
                                                     max_tokens=max_tokens, edition="2025")
                    out.append((excess, cut, await prompts.prompt_tokens(cut, tokens)))
                return out

        results = asyncio.run(ours())
        for task, (excess, cut, counted) in zip(tasks, results):
            assert excess > 0, task.id
            shown_after = task.after if task.mode == Mode.infill else ""
            tokenizer = _HTTPTokenizer(server.base_url)
            with monkeypatch.context() as patch:
                patch.setattr(up.hf_models, "load_tokenizer", lambda model: tokenizer)
                before, after = up.hf_models.truncate_input(task.before, shown_after, excess,
                                                            upstream.TOGETHER_MODEL, max_tokens)
            request = upstream_request(up, task, upstream.TOGETHER_MODEL, monkeypatch, before=before,
                                       after=after if shown_after else task.after)
            assert [m.model_dump() for m in cut.messages] == request["messages"], task.id
            assert list(cut.stop) == request["stop"]
            # upstream encodes before, then after, and decodes what it kept of each, in that order
            (before_n, after_n), (kept_before, kept_after) = tokenizer.encoded, tokenizer.decoded
            assert cut.dropped_before_tokens == before_n - kept_before > 0
            if shown_after:  # after keeps its first max_tokens tokens (the keep window), before loses its head
                assert kept_after == max_tokens and cut.dropped_after_tokens == after_n - max_tokens > 0
            else:
                assert after_n == kept_after == 0 and cut.dropped_after_tokens == 0
            assert cut.truncation == ("2025: helper_functions/HF_models.truncate_input with the served tokenizer "
                                      "(upstream sent hosted models untruncated)")
            assert counted + max_tokens <= context + 4, (task.id, counted)  # decode/encode may merge a token at a cut
