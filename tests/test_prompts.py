"""Prompt rendering: every style's format, hashes, the upstream SimCoPilot templates, the context budget."""

from __future__ import annotations

import asyncio

import pytest

from runner import prompts
from runner.benchmarks import load_benchmark
from runner.errors import UserError
from runner.records import Language, Mode


@pytest.fixture(scope="module")
def starter():
    return load_benchmark("starter")


def first(bench, language: str, mode: str):
    return next(t for t in bench.tasks if t.language.value == language and t.mode.value == mode)


def test_instruct_marks_the_gap_with_comments_of_the_language(starter):
    java = prompts.render(first(starter, "java", "infill"), "instruct")
    python = prompts.render(first(starter, "python", "infill"), "instruct")
    assert java.kind == "chat" and [m.role for m in java.messages] == ["system", "user"]
    assert "\n// BEGIN MISSING CODE\n// END MISSING CODE\n" in java.messages[1].content
    assert "\n# BEGIN MISSING CODE\n# END MISSING CODE\n" in python.messages[1].content
    assert java.stop == ("// END MISSING CODE",) and python.stop == ("# END MISSING CODE",)


def test_completion_mode_hides_the_code_after_the_gap(starter):
    task = first(starter, "python", "completion")
    text = prompts.render(task, "instruct").messages[1].content
    assert task.before in text
    last_after_line = [line for line in task.after.splitlines() if line.strip()][-1]
    assert last_after_line not in text.split("# END MISSING CODE")[1]


def test_codestral_fim_puts_the_suffix_first_and_has_no_middle_token(starter):
    task = first(starter, "python", "infill")
    prompt = prompts.render(task, "codestral-fim")
    assert prompt.kind == "completion"
    # no <s>: the server adds the BOS (tests/test_prompts_codestral.py checks the ids)
    assert prompt.text == f"[SUFFIX]\n{task.after}[PREFIX] {task.before}\n"
    assert "[MIDDLE]" not in prompt.text and prompt.stop == ("</s>",)


def test_codellama_fim_format(starter):
    task = first(starter, "java", "infill")
    prompt = prompts.render(task, "codellama-fim")
    assert prompt.text == f"<PRE> {task.before}\n <SUF>\n{task.after} <MID>"


def test_hash_is_of_exactly_what_is_sent(starter):
    a, b = starter.available()[:2]
    assert prompts.render(a, "instruct").sha256 == prompts.render(a, "instruct").sha256
    assert prompts.render(a, "instruct").sha256 != prompts.render(b, "instruct").sha256
    prompt = prompts.render(a, "codellama-fim")
    assert prompt.sha256 == prompts.sha256_of("completion", prompt.text, ())
    # a change of one character in the task changes the hash
    edited = a.model_copy(update={"before": a.before + " "})
    assert prompts.render(edited, "instruct").sha256 != prompts.render(a, "instruct").sha256


def test_prompt_set_hash_ignores_task_order(starter):
    tasks = starter.available()[:5]
    assert prompts.prompt_set_sha256(tasks, "instruct") == prompts.prompt_set_sha256(tasks[::-1], "instruct")
    assert prompts.prompt_set_sha256(tasks, "instruct") != prompts.prompt_set_sha256(tasks[:4], "instruct")


def test_a_base_model_gets_the_chat_style_as_plain_text(starter):
    task = first(starter, "python", "infill")
    prompt = prompts.render(task, "instruct", chat=False)
    chat = prompts.render(task, "instruct")
    assert prompt.kind == "completion" and prompt.messages == ()
    assert prompt.text.startswith(chat.messages[0].content) and chat.messages[1].content in prompt.text
    assert prompt.text.endswith("```python\n") and "```" in prompt.stop


def test_unknown_style_is_a_user_error(starter):
    with pytest.raises(UserError, match="unknown prompt style 'fim'.*instruct"):
        prompts.render(starter.tasks[0], "fim")


def test_simcopilot_style_without_fetched_templates_says_how_to_get_them(starter):
    with pytest.raises(UserError, match="runner data fetch simcopilot"):
        prompts.render(first(starter, "python", "infill"), "simcopilot")


class _CaptureMessages:
    """A replay "model" for upstream's generation function: keeps the messages it was asked with."""

    def __init__(self):
        self.formatter = self
        self.messages = None

    def encode_dialog_prompt(self, messages):
        self.messages = messages
        return []

    def generate(self, **kwargs):
        return [""], None

    def decode(self, text):
        return text  # the "tokens" generate returned are the text itself


def test_simcopilot_style_is_byte_identical_to_upstreams_prompt_builder_for_every_task(simcopilot):
    from runner.evaluation import upstream

    up = upstream.load()
    bench = load_benchmark("simcopilot")
    differ = []
    for task in bench.tasks:
        kind = "Java" if task.language == Language.java else "Python"
        before = task.before.split("\n") if task.before else []
        after = (task.after.split("\n") if task.after else []) if task.mode == Mode.infill else ""
        capture = _CaptureMessages()
        # upstream's own generation function builds the messages (templates, NOTE, system) itself
        up.hf_llms_gen.generate_code_strict_format(before, after, kind, "Meta-Llama-3-70B-Instruct", capture, capture,
                                                   4096, prompts_path=str(up.prompt_templates))
        prompt = prompts.render(task, "simcopilot")
        if [m.model_dump() for m in prompt.messages] != capture.messages:
            differ.append(task.id)
        assert prompt.stop == ()  # upstream gives the model no stop sequence
    assert len(bench.tasks) == 1163 and differ == []


def test_upstream_templates_read_as_str_format_reads_them():
    import jinja2

    upstream = "a {x} {{ y }} {{%z%}} {{{{w}}}}"
    assert jinja2.Template(prompts.upstream_to_jinja(upstream)).render(x=1) == upstream.format(x=1)


def count_chars(text: str):
    async def count() -> int:
        return len(text)
    return count()


def test_fit_drops_the_tail_of_after_first_then_the_head_of_before(starter):
    task = next(t for t in starter.available() if t.mode == Mode.infill and t.language == Language.python
                and len(t.before.splitlines()) > 40 and len(t.after.splitlines()) > 40)
    full = prompts.render(task, "codellama-fim")
    # one "token" per character: a context a little shorter than the prompt drops only `after` lines
    prompt = asyncio.run(prompts.fit(task, "codellama-fim", count_chars, context_length=len(full.text) + 100 - 200,
                                     max_tokens=100))
    assert prompt.dropped_after_lines > 0 and prompt.dropped_before_lines == 0
    assert len(prompt.text) + 100 <= len(full.text) + 100 - 200
    assert prompt.text.startswith(f"<PRE> {task.before}")
    # a context smaller than `before` alone drops all of `after` and the head of `before`
    prompt = asyncio.run(prompts.fit(task, "codellama-fim", count_chars, context_length=len(task.before) // 2,
                                     max_tokens=10))
    assert prompt.dropped_after_lines == len(task.after.split("\n")) and prompt.dropped_before_lines > 0
    assert len(prompt.text) + 10 <= len(task.before) // 2
    assert prompt.text.endswith(task.before.split("\n")[-1] + "\n <SUF> <MID>")


def test_prefix_style_continues_the_code_and_stops_where_the_hidden_suffix_begins(starter):
    infill = first(starter, "python", "infill")
    prompt = prompts.render(infill, "prefix")
    assert prompt.kind == "completion"
    assert prompt.text == infill.before + "\n"  # the program up to the gap, nothing of the suffix
    suffix_head = next(line for line in infill.after.split("\n") if line.strip())
    assert suffix_head not in prompt.text.split("\n")[-2:]
    assert "\n" + suffix_head in prompt.stop  # the answer is cut where the suffix would begin
    completion = first(starter, "java", "completion")
    assert prompts.render(completion, "prefix").stop == ("\n\n\n", "\n  public ", "\n    public ")
    # vLLM's OpenAI server refuses more than four stop sequences (HTTP 400)
    assert max(len(prompts.render(task, "prefix").stop) for task in starter.tasks) <= 4


class CharTokens:
    """One token per character: what a real tokenizer does, at a scale a test can read."""

    async def encode(self, text):
        return [ord(c) for c in text]

    async def decode(self, ids):
        return "".join(chr(i) for i in ids)


def test_simcopilot_truncation_keeps_the_after_window_and_cuts_the_head_of_before(simcopilot):
    bench = load_benchmark("simcopilot")
    task = next(t for t in bench.tasks if t.mode == Mode.infill and len(t.after) > 2000 and len(t.before) > 2000)
    full = prompts.render(task, "simcopilot")
    used = len(full.token_text()) + 2 * prompts.CHAT_OVERHEAD_TOKENS_PER_MESSAGE
    # room for the prompt minus all of `after` but its first 200 tokens and 300 of `before`'s
    context = used - (len(task.after) - 200) - 300 + 200
    prompt = asyncio.run(prompts.fit_upstream(task, "simcopilot", CharTokens(), context_length=context, max_tokens=200))
    user = prompt.messages[1].content
    # upstream's rule: `after` keeps its first max_tokens (200) tokens, then `before` loses its head
    assert prompt.dropped_after_tokens == len(task.after) - 200
    assert prompt.dropped_before_tokens == 300
    assert f"After Section:\n{task.after[:200]}" in user and task.after[:201] not in user
    assert task.before[300:] in user and task.before[299:] not in user
    # a prompt that fits is left alone
    roomy = asyncio.run(prompts.fit_upstream(task, "simcopilot", CharTokens(), context_length=used + 200, max_tokens=200))
    assert roomy == full


def test_simcopilot_truncation_counts_with_the_serving_models_tokenizer(simcopilot, tmp_path):
    """Upstream's rule on a real llama-server's /tokenize and /detokenize (Gemma 3 270M's vocabulary),
    the chat prompt counted as the server templates it (/apply-template): the count is what the
    server then processes, and the cut prompt fills the context to within a token or two."""
    import httpx

    from tests.llama_server import running_llama

    bench = load_benchmark("simcopilot")
    task = next(t for t in bench.tasks if t.id == "java/infill/DoubleMatrixTester/438-438")
    with running_llama(tmp_path / "server.log") as (runtime, _cell, server, _files):
        async def run():
            async with httpx.AsyncClient(timeout=120) as http:
                tokens = runtime.tokens(http, server.base_url)
                prompt = await prompts.fit_upstream(task, "simcopilot", tokens, context_length=2048, max_tokens=200)
                before = prompt.messages[1].content.split("// --BEGIN MISSING CODE--")[0]
                after = prompt.messages[1].content.split("After Section:\n", 1)[1]
                counted = await prompts.prompt_tokens(prompt, tokens)
                answer = await http.post(f"{server.base_url}/v1/chat/completions",
                                         json={**prompt.payload(), "max_tokens": 1, "temperature": 0})
                return (prompt, counted, answer.json()["usage"]["prompt_tokens"], len(await tokens.encode(after)),
                        len(await tokens.encode(task.after)), before)

        prompt, counted, processed, after_tokens, full_after_tokens, before = asyncio.run(run())
    assert full_after_tokens > 200 and prompt.dropped_after_tokens == full_after_tokens - 200
    assert abs(after_tokens - 200) <= 2  # decoding then encoding again may merge a token at the cut
    assert prompt.dropped_before_tokens > 0 and before.rstrip().endswith(task.before.rstrip().split("\n")[-1].strip())
    assert abs(counted - processed) <= 1, (counted, processed)  # the templated count is what the server sees
    assert 2048 - 4 <= counted + 200 <= 2048 + 4, counted
