"""Codestral in its own formats, without a server: the ``codestral-fim`` text and the shipped
``mistral-v3`` chat template, read as Mistral writes them (a space after a special token is the
word boundary of the text that follows), give mistral-common's ids on real SimCoPilot tasks; every
runtime's launch carries the template. The real servers' tokenizers: tests/runtimes/test_codestral_tokens.py."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import pytest
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from runner import prompts
from runner.errors import UserError
from runner.matrix import load_matrix
from runner.paths import matrices_dir
from runner.prompts import chat_templates
from runner.records import Cell
from runner.runtimes import get_runtime
from runner.runtimes.base import ModelFiles
from tests.codestral import mistral_tokenizer, parity_tasks, reference_chat, reference_fim

BOS = 1


def spelled_ids(text: str) -> list[int]:
    """``text`` as mistral-common's pieces, each special token one id and nothing added between them:
    the reading a server must give the prompt (mistral-common's own SentencePiece, its prefix-free
    encoding as ``encode_fim`` uses it for the suffix)."""
    tokenizer = mistral_tokenizer().instruct_tokenizer.tokenizer
    special = {tokenizer.id_to_piece(i): i for i in range(tokenizer.n_words) if tokenizer._model.is_control(i)}
    ids: list[int] = []
    for part in re.split("(" + "|".join(map(re.escape, special)) + ")", text):
        if part in special:
            ids.append(special[part])
        elif part:
            ids += tokenizer.encode("☺" + part, bos=False, eos=False)[2:]  # "▁", "☺" dropped
    return ids


@pytest.fixture
def tasks(simcopilot):
    return parity_tasks()


# -- fill in the middle -------------------------------------------------------------------------
def test_fim_text_starts_at_suffix_and_with_the_servers_bos_is_encode_fim(tasks):
    for task in tasks:
        prompt = prompts.render(task, "codestral-fim")
        assert prompt.kind == "completion" and prompt.text.startswith("[SUFFIX]"), task.id
        assert "<s>" not in prompt.text and "[MIDDLE]" not in prompt.text
        # the server adds the one BOS (add_bos_token); the text adds none
        ids = [BOS] + spelled_ids(prompt.text)
        assert ids.count(BOS) == 1
        assert ids == reference_fim(task), task.id


def test_fim_completion_mode_has_an_empty_suffix(tasks):
    task = next(t for t in tasks if t.mode.value == "completion")
    assert prompts.render(task, "codestral-fim").text == f"[SUFFIX][PREFIX] {task.before}\n"


# -- the chat template --------------------------------------------------------------------------
def _environments() -> dict[str, jinja2.Environment]:
    """How the runtimes render a chat template: transformers and TabbyAPI use an immutable sandbox with
    trim_blocks and lstrip_blocks; a plain environment shows the template does not depend on them."""
    def raise_exception(message):
        raise jinja2.TemplateError(message)

    hf = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    plain = jinja2.Environment()
    for env in (hf, plain):
        env.globals["raise_exception"] = raise_exception
    return {"sandbox": hf, "plain": plain}


def render_chat(messages: list[dict], env: str = "sandbox") -> str:
    template = _environments()[env].from_string(chat_templates.load("mistral-v3").text)
    return template.render(messages=messages, bos_token="<s>", eos_token="</s>", add_generation_prompt=True)


def test_mistral_v3_template_gives_encode_chat_completion_on_simcopilot_prompts(tasks):
    for task in tasks:
        messages = [m.model_dump() for m in prompts.render(task, "simcopilot").messages]
        assert [m["role"] for m in messages] == ["system", "user"]  # the style sends upstream's system message
        for env in ("sandbox", "plain"):
            text = render_chat(messages, env)
            assert text.startswith("<s>[INST] " + messages[0]["content"] + "\n\n")
            assert spelled_ids(text) == reference_chat(messages), (task.id, env)


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "hello\nworld"}],
    # every system message goes into the LAST user turn; an answer ends with </s>, trailing spaces cut
    [{"role": "system", "content": "S1"}, {"role": "user", "content": "  q1"},
     {"role": "assistant", "content": "a1  "}, {"role": "user", "content": "q2\n"}, {"role": "system", "content": "S2"}],
    [{"role": "user", "content": ""}],
])
def test_mistral_v3_template_folds_system_into_the_last_user_turn_and_closes_answers(messages):
    text = render_chat(messages)
    assert text.count("<s>") == 1 and spelled_ids(text) == reference_chat(messages)


@pytest.mark.parametrize("messages", [
    [{"role": "assistant", "content": "a"}],
    [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}],
])
def test_mistral_v3_template_refuses_what_it_would_encode_otherwise(messages):
    with pytest.raises(jinja2.TemplateError, match="mistral-v3"):
        render_chat(messages)


# -- the matrix key and every runtime's launch --------------------------------------------------
MATRIX = """
name = "t"
benchmark = "starter"
[models.codestral]
name = "Codestral"
{extra}
prompt_styles = ["codestral-fim", "simcopilot"]
[models.codestral.quantizations.q8_0]
kind = "path"
path = "codestral.gguf"
[[cells]]
model = "codestral"
runtime = "llamacpp"
quantization = "q8_0"
"""


def test_a_model_names_a_shipped_chat_template(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(MATRIX.format(extra='chat_template = "mistral-v3"'))
    assert load_matrix(path).models["codestral"].chat_template == "mistral-v3"
    path.write_text(MATRIX.format(extra='chat_template = "mistral-v9"'))
    with pytest.raises(UserError, match=r"m\.toml: models\.codestral\.chat_template = 'mistral-v9': names no chat "
                                        r"template the runner ships; choose one of: mistral-v3"):
        load_matrix(path)
    path.write_text(MATRIX.format(extra='chat_template = "mistral-v3"\nchat = false'))
    with pytest.raises(UserError, match="chat = false"):
        load_matrix(path)


def test_a_prepared_model_carries_its_template_to_the_runtime(tmp_path):
    from runner.serving.models import prepare

    (tmp_path / "codestral.gguf").write_bytes(b"GGUF")
    path = tmp_path / "m.toml"
    path.write_text(MATRIX.format(extra='chat_template = "mistral-v3"'))
    matrix = load_matrix(path)
    assert prepare(matrix, matrix.cells[0]).files.chat_template == chat_templates.load("mistral-v3")
    path.write_text(MATRIX.format(extra=""))
    matrix = load_matrix(path)
    assert prepare(matrix, matrix.cells[0]).files.chat_template is None


def test_the_paper_matrix_gives_codestral_its_v3_template():
    assert load_matrix(matrices_dir() / "paper.toml").models["codestral-22b"].chat_template == "mistral-v3"


TEMPLATE = chat_templates.load("mistral-v3")


def _spec(runtime: str, quantization: str, path: str, gpus: int = 1):
    cell = Cell(model="codestral-22b", runtime=runtime, quantization=quantization, prompt_style="simcopilot")
    files = ModelFiles(path=Path(path), served_name="codestral-22b", chat_template=TEMPLATE)
    return get_runtime(runtime).server_spec(cell, files, gpus=gpus).bind("127.0.0.1", 8123)


def _written(spec, flag_value: str) -> Path:
    from runner.backends.docker import container_paths

    path = Path(flag_value)
    assert path.is_absolute() and spec.files[path] == TEMPLATE.text  # the backend writes it before launch
    assert path.name == "mistral-v3-8123.jinja"  # one per server: two never share a file
    # in a container: its folder is mounted, and the path the server is given is the mounted one
    moved, rewrite = container_paths(spec)
    assert rewrite(flag_value) == f"{moved[str(path.parent)]}/{path.name}"
    return path


def test_vllm_and_llamacpp_launches_carry_the_template():
    vllm = _spec("vllm", "bf16", "/models/codestral-hf")
    _written(vllm, vllm.argv[vllm.argv.index("--chat-template") + 1])
    llama = _spec("llamacpp", "q8_0", "/models/codestral.gguf")
    assert "--jinja" in llama.argv
    _written(llama, llama.argv[llama.argv.index("--chat-template-file") + 1])


OVERRIDE = ["--override-kv", "tokenizer.ggml.add_space_prefix=bool:false"]


def _has(argv: list[str], flags: list[str]) -> bool:
    return any(argv[i:i + len(flags)] == flags for i in range(len(argv)))


@pytest.mark.parametrize("style, template, spelled", [
    ("codestral-fim", None, True), ("codestral-fim", TEMPLATE, True), ("simcopilot", TEMPLATE, True),
    ("simcopilot", None, False), ("qwen-fim", None, False), ("prefix", TEMPLATE, False),
])
def test_llamacpp_adds_no_space_of_its_own_where_the_prompt_spells_it(style, template, spelled):
    cell = Cell(model="codestral-22b", runtime="llamacpp", quantization="q8_0", prompt_style=style)
    files = ModelFiles(path=Path("/models/codestral.gguf"), served_name="codestral-22b", chat_template=template)
    assert _has(get_runtime("llamacpp").server_spec(cell, files).argv, OVERRIDE) == spelled


def test_tabbyapi_config_names_the_template_beside_it():
    spec = _spec("exllama", "exl2-8.0", "/models/codestral-exl2")
    config_path = next(p for p in spec.files if p.suffix == ".yml")
    config = yaml.safe_load(spec.files[config_path])
    template = _written(spec, config["model"]["prompt_template"])
    # one folder for the container backend to mount; TabbyAPI joins templates/ with an absolute path
    # and gets the path itself (pathlib), then loads it since it ends in .jinja
    assert template.parent == config_path.parent and Path("templates") / str(template) == template


def test_without_a_template_no_runtime_is_given_one():
    cell = Cell(model="m", runtime="llamacpp", quantization="q8_0")
    spec = get_runtime("llamacpp").server_spec(cell, ModelFiles(path=Path("/m.gguf"), served_name="m"))
    assert "--chat-template-file" not in spec.argv and not spec.files
