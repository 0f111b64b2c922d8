"""Prompts: one Jinja2 template per style in ``templates/prompts/``, rendered the same for every cell.

Styles:

- ``instruct`` (chat): the program with the gap marked by ``BEGIN MISSING CODE`` /
  ``END MISSING CODE`` comment lines; the server applies the model's chat template.
- ``simcopilot`` (chat): SimCoPilot's own template files, read from the fetched data of the run's
  edition (``$RUNNER_HOME/data/simcopilot/helper_functions/prompt_templates/`` for 2024,
  ``.../simcopilot-2025/...`` for 2025), and that edition's ``create_input_messages``, never copied here.
- ``codestral-fim`` / ``codellama-fim`` / ``qwen-fim`` (completion): raw fill-in-the-middle text.

A template may export ``system`` (``{% set system = ... %}``): the system message of a chat
prompt. The sha256 of what is sent (the completion text, or the messages as canonical JSON)
goes with every sample, so that a report can prove that every cell saw the same prompts.

The package also holds the chat templates the runner ships (``chat_templates``). It may import the evaluation
(upstream's own prompt code), benchmarks and records; runtimes, the matrix and everything above read it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Literal, Protocol

import jinja2
from pydantic import BaseModel, ConfigDict

from runner.errors import UserError
from runner.paths import templates_dir
from runner.records import Language, Mode, Task

if TYPE_CHECKING:
    from runner.prompts.chat_templates import ChatTemplate

PromptKind = Literal["chat", "completion"]

#: the stop tokens upstream gives the model after the middle (the end of the END marker line)
MARKER_BEGIN = "BEGIN MISSING CODE"
MARKER_END = "END MISSING CODE"
SIMCOPILOT_TEMPLATE_FILES = ("before_after_template.txt", "without_after_template.txt")
#: tokens a chat template adds around each message (role headers, turn markers); counted when
#: fitting a chat prompt into the context where the server cannot count its templated prompt
CHAT_OVERHEAD_TOKENS_PER_MESSAGE = 8


@dataclass(frozen=True)
class StyleInfo:
    """What a prompt style sends and where the model's answer ends."""

    kind: PromptKind
    stop: Callable[[Language], tuple[str, ...]]
    description: str
    #: stop sequences taken from the task itself (e.g. where the visible suffix begins)
    task_stop: Callable[[Task, str], tuple[str, ...]] | None = None
    #: stop sequences that depend on the SimCoPilot edition (language, edition name), in place of ``stop``
    edition_stop: Callable[[Language, str], tuple[str, ...]] | None = None
    #: the text spells the word boundary after a special token as a space (runner.prompts.chat_templates)
    spells_word_boundaries: bool = False


def _comment(language: Language) -> str:
    return "//" if language == Language.java else "#"


STYLES: dict[str, StyleInfo] = {
    "instruct": StyleInfo("chat", lambda lang: (f"{_comment(lang)} {MARKER_END}",),
                          "instruction prompt through the model's chat template"),
    # 2024's LLaMA path sets no stop: the model writes to the end of its turn (or max tokens).
    # 2025's hosted path stops at the END marker line (``stop=[f"{comment_symbol} --END MISSING
    # CODE--"]`` in helper_functions/LLMs_gen.py). Either way the answer is then extracted the way
    # that edition does (runner/evaluation/upstream.py).
    "simcopilot": StyleInfo("chat", lambda lang: (),
                            "SimCoPilot's upstream instruction prompt (fetched template files and code)",
                            edition_stop=lambda lang, edition: (
                                (f"{_comment(lang)} --{MARKER_END}--",) if edition == "2025" else ())),
    "codestral-fim": StyleInfo("completion", lambda lang: ("</s>",),
                               "Codestral fill-in-the-middle: [SUFFIX]after[PREFIX] before (the server adds BOS)",
                               spells_word_boundaries=True),
    "codellama-fim": StyleInfo("completion", lambda lang: ("<EOT>",),
                               "Code Llama fill-in-the-middle: <PRE> before <SUF>after <MID>"),
    "qwen-fim": StyleInfo("completion", lambda lang: ("<|endoftext|>",),
                          "Qwen2.5-Coder fill-in-the-middle: <|fim_prefix|>before<|fim_suffix|>after<|fim_middle|>",
                          # infill: the 0.5B model often writes on past the middle into the suffix it was
                          # shown, so the answer also ends where the suffix's first line would begin;
                          # completion (no suffix shown): where a new definition begins
                          task_stop=lambda task, after: (_suffix_stop(task, after) if task.mode == Mode.infill
                                                         else _BLOCK_END[task.language])),
    "prefix": StyleInfo("completion", lambda lang: _BLOCK_END[lang],
                        "plain continuation of the code above the gap, for base models without "
                        "fill-in-the-middle or chat training",
                        task_stop=lambda task, after: _suffix_stop(task, after)),
}


#: where a continuation has left the gap when no suffix is shown: a new top-level definition.
#: At most three, since the suffix's stop makes four and OpenAI-style servers (vLLM) take no more.
_BLOCK_END: dict[Language, tuple[str, ...]] = {
    Language.python: ("\ndef ", "\nclass ", "\n\n\n"),
    Language.java: ("\n\n\n", "\n  public ", "\n    public "),
}


def _suffix_stop(task: Task, after: str) -> tuple[str, ...]:
    """Infill: the model never sees the suffix, but a continuation that reaches its first code line
    has written the whole gap, so the answer is cut there (a FIM model's end-of-middle)."""
    if task.mode != Mode.infill:
        return ()
    first = next((line for line in after.split("\n") if line.strip()), None)
    return ("\n" + first,) if first else ()


class ChatMessage(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


class Prompt(BaseModel):
    """Exactly what one request sends for one task, and how its answer ends."""

    model_config = ConfigDict(frozen=True)

    style: str
    kind: PromptKind  # chat -> /v1/chat/completions (messages); completion -> /v1/completions (text)
    text: str | None = None  # completion prompt
    messages: tuple[ChatMessage, ...] = ()  # chat prompt
    stop: tuple[str, ...] = ()
    sha256: str
    dropped_before_lines: int = 0  # head lines of `before` left out to fit the context
    dropped_after_lines: int = 0  # tail lines of `after` left out to fit the context
    dropped_before_tokens: int = 0  # upstream's rule (simcopilot style): head tokens of `before` cut
    dropped_after_tokens: int = 0  # tail tokens of `after` cut
    #: the rule that cut the prompt to fit the context (empty when it was sent whole), e.g.
    #: "2025: HF_models.truncate_input with the served tokenizer (upstream sent hosted models untruncated)"
    truncation: str = ""

    def payload(self) -> dict:
        """The request fields that carry the prompt (``prompt`` or ``messages``)."""
        if self.kind == "completion":
            return {"prompt": self.text}
        return {"messages": [m.model_dump() for m in self.messages]}

    def token_text(self) -> str:
        """The text whose tokens are counted to fit the context (message contents joined)."""
        return self.text if self.kind == "completion" else "\n".join(m.content for m in self.messages)


def style_info(style: str) -> StyleInfo:
    """The style's record, or a ``UserError`` listing the known styles."""
    try:
        return STYLES[style]
    except KeyError:
        raise UserError(f"unknown prompt style {style!r}; known styles: {', '.join(STYLES)} "
                        f"(templates in {templates_dir() / 'prompts'})") from None


def spells_word_boundaries(style: str, chat_template: "ChatTemplate | None") -> bool:
    """Whether the text a ``style`` prompt reaches the tokenizer as (its own, or a chat style's through
    ``chat_template``) spells each word boundary after a special token, so that the server must add none."""
    info = style_info(style)
    if info.kind == "chat":
        return chat_template is not None and chat_template.spells_word_boundaries
    return info.spells_word_boundaries


# -- templates -----------------------------------------------------------------------------------
def simcopilot_templates_dir(edition: str | None = None) -> Path:
    """Where ``runner data fetch simcopilot [--edition E]`` puts that edition's prompt template files."""
    from runner.benchmarks import simcopilot_dir

    return simcopilot_dir(edition) / "helper_functions" / "prompt_templates"


def _edition_name(edition: str | None) -> str:
    """The edition's name (``None``: the default one), checked."""
    from runner.benchmarks import get_edition

    return get_edition(edition).name


def upstream_to_jinja(text: str) -> str:
    """Upstream's ``str.format`` template as Jinja2 source: ``{name}`` becomes ``{{ name }}``, the
    rest is literal text (``{{``/``}}`` read as single braces, as ``str.format`` reads them) kept
    inside ``raw`` blocks, so that nothing in it is taken for Jinja syntax."""
    parts: list[str] = []
    for literal, name, _spec, _conversion in string.Formatter().parse(text):
        if literal:
            parts.append("{% raw %}" + literal + "{% endraw %}")
        if name is not None:
            parts.append("{{ " + name + " }}")
    return "".join(parts)


def _load_upstream(name: str, edition: str | None = None):
    from runner.benchmarks import DEFAULT_EDITION

    folder = simcopilot_templates_dir(edition)
    path = folder / name
    if not path.is_file():
        flag = "" if _edition_name(edition) == DEFAULT_EDITION else f" --edition {_edition_name(edition)}"
        raise UserError(f"{path}: SimCoPilot's prompt template is missing; the `simcopilot` prompt style reads "
                        f"upstream's own templates: run `runner data fetch simcopilot{flag}` first")
    text = path.read_text(encoding="utf-8")
    mtime = path.stat().st_mtime
    return upstream_to_jinja(text), str(path), lambda: path.is_file() and path.stat().st_mtime == mtime


def _upstream(edition: str | None = None):
    """The loaded scoring code of ``edition``'s installed copy (a UserError saying to fetch it when absent)."""
    from runner.evaluation import upstream

    return upstream.load(upstream.upstream_root(edition))


def _upstream_messages(program_type: str, after: str, edition: str | None = None) -> list[dict]:
    """The edition's ``create_input_messages`` (2024: ``open_source_model_gen/helper_functions/HF_LLMs_gen.py``,
    2025: ``helper_functions/LLMs_gen.py``) on a probe template that is only its instruction text."""
    from runner.evaluation import upstream

    return upstream.create_input_messages(_upstream(edition), program_type, "{instruction_text}", "", after)


def upstream_instruction(program_type: str, after: str, edition: str | None = None) -> str:
    """Upstream's instruction text (the Python NOTE on indentation), from the edition's own code."""
    return _upstream_messages(program_type, after, edition)[1]["content"]


def upstream_system(program_type: str, edition: str | None = None) -> str:
    """Upstream's system message, from the edition's own code."""
    return _upstream_messages(program_type, "", edition)[0]["content"]


@lru_cache(maxsize=8)
def _environment(folder: str, edition: str) -> jinja2.Environment:
    """The templates of ``folder``, with ``simcopilot/...`` and the upstream helpers read from ``edition``'s copy."""
    loader = jinja2.ChoiceLoader([
        jinja2.FileSystemLoader(folder),
        jinja2.PrefixLoader({"simcopilot": jinja2.FunctionLoader(lambda name: _load_upstream(name, edition))}),
    ])
    env = jinja2.Environment(loader=loader, autoescape=False, undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=False)
    env.globals.update(upstream_instruction=lambda program_type, after: upstream_instruction(program_type, after, edition),
                       upstream_system=lambda program_type: upstream_system(program_type, edition))
    return env


def _template(style: str, edition: str | None = None) -> jinja2.Template:
    style_info(style)
    folder = templates_dir() / "prompts"
    try:
        return _environment(str(folder), _edition_name(edition)).get_template(f"{style}.j2")
    except jinja2.TemplateNotFound:
        raise UserError(f"{folder / (style + '.j2')}: prompt template missing; reinstall runner") from None


def _context(task: Task, before: str, after: str) -> dict:
    comment = _comment(task.language)
    language_name = "Java" if task.language == Language.java else "Python"
    # completion mode hides `after` from the model (it is still run by the tests)
    shown_after = after if task.mode == Mode.infill else ""
    return {
        "language": task.language.value,
        "language_name": language_name,
        "program_type": language_name,
        "fence_language": task.language.value,
        "mode": task.mode.value,
        "before": before,
        "after": shown_after,
        # FIM: the middle starts on the line after `before` and ends where `after` begins
        "prefix": before + "\n" if before else "",
        "suffix": ("\n" + shown_after) if shown_after else "",
        "begin_marker": f"{comment} {MARKER_BEGIN}",
        "end_marker": f"{comment} {MARKER_END}",
        "begin_missing_code": f"{comment} --{MARKER_BEGIN}--",
        "end_missing_code": f"{comment} --{MARKER_END}--",
    }


def sha256_of(kind: PromptKind, text: str | None, messages: tuple[ChatMessage, ...]) -> str:
    """sha256 of exactly what is sent: the text, or the messages as canonical JSON."""
    data = text if kind == "completion" else json.dumps([m.model_dump() for m in messages],
                                                        sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def render(task: Task, style: str, *, chat: bool = True, before: str | None = None, after: str | None = None,
           dropped: tuple[int, int] = (0, 0), edition: str | None = None) -> Prompt:
    """The prompt of ``task`` in ``style``; ``before``/``after`` override the task's (when cut to fit).

    ``edition``: the SimCoPilot edition whose copy the ``simcopilot`` style reads its templates and
    ``create_input_messages`` from (``None``: the default edition); other styles do not depend on it.

    ``chat=False`` is for a model without a chat template (a base model): a chat style is then
    sent as completion text, the system and user texts followed by the template's
    ``answer_opener`` (the start of the answer the model continues), stopping also at
    ``answer_stop``.
    """
    info = style_info(style)
    template = _template(style, edition)
    context = _context(task, task.before if before is None else before, task.after if after is None else after)
    module = template.make_module(context)
    body = str(module)
    system = getattr(module, "system", None)
    stop = (info.stop(task.language) if info.edition_stop is None
            else info.edition_stop(task.language, _edition_name(edition)))
    if info.task_stop is not None:
        stop = stop + info.task_stop(task, context["after"])
    if info.kind == "chat" and not chat:
        opener = getattr(module, "answer_opener", "")
        text = (f"{system}\n\n" if system else "") + body + "\n\n" + opener
        extra = getattr(module, "answer_stop", None)
        stop = stop + ((extra,) if extra else ())
        return Prompt(style=style, kind="completion", text=text, stop=stop, sha256=sha256_of("completion", text, ()),
                      dropped_before_lines=dropped[0], dropped_after_lines=dropped[1])
    if info.kind == "completion":
        text, messages = body, ()
    else:
        messages = ((ChatMessage(role="system", content=system),) if system else ()) + (
            ChatMessage(role="user", content=body),)
        text = None
    return Prompt(style=style, kind=info.kind, text=text, messages=messages, stop=stop,
                  sha256=sha256_of(info.kind, text, messages), dropped_before_lines=dropped[0],
                  dropped_after_lines=dropped[1])


def prompt_set_sha256(tasks: list[Task], style: str, *, chat: bool = True, edition: str | None = None) -> str:
    """One hash for the untruncated prompts of ``tasks`` in ``style`` (task order does not matter)."""
    digest = hashlib.sha256()
    for task_id, sha in sorted((t.id, render(t, style, chat=chat, edition=edition).sha256) for t in tasks):
        digest.update(f"{task_id}\t{sha}\n".encode())
    return digest.hexdigest()


# -- the context budget --------------------------------------------------------------------------
Tokenizer = Callable[[str], Awaitable[int]]


class ServerTokens(Protocol):
    """The serving model's tokenizer, through the server (``/tokenize``, ``/detokenize``); it may
    also have ``count_chat(messages) -> int | None``, the tokens of the templated chat prompt."""

    async def encode(self, text: str) -> list[int]: ...

    async def decode(self, tokens: list[int]) -> str: ...


async def prompt_tokens(prompt: Prompt, tokens: ServerTokens) -> int:
    """The tokens ``prompt`` takes on the server: a chat prompt as the served model's template
    formats it where the server can count that, else its texts plus an allowance per message."""
    count_chat = getattr(tokens, "count_chat", None)
    if prompt.kind == "chat" and count_chat is not None:
        counted = await count_chat([m.model_dump() for m in prompt.messages])
        if counted is not None:
            return counted
    return len(await tokens.encode(prompt.token_text())) + CHAT_OVERHEAD_TOKENS_PER_MESSAGE * len(prompt.messages)


class _BlockingTokens:
    """``ServerTokens`` for synchronous code on a worker thread: each call waits on the event loop."""

    def __init__(self, tokens: ServerTokens, loop: asyncio.AbstractEventLoop) -> None:
        self.tokens, self.loop = tokens, loop
        self.encoded: list[int] = []  # lengths of what was encoded, in call order
        self.decoded: list[int] = []  # lengths of what was decoded

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = asyncio.run_coroutine_threadsafe(self.tokens.encode(text), self.loop).result()
        self.encoded.append(len(ids))
        return ids

    def decode(self, ids: list[int]) -> str:
        self.decoded.append(len(ids))
        return asyncio.run_coroutine_threadsafe(self.tokens.decode(list(ids)), self.loop).result()


#: how each edition's rule is named in ``Prompt.truncation``
TRUNCATION_RULES = {
    "2024": "2024: open_source_model_gen/helper_functions/HF_models.truncate_input_for_Meta with the served "
            "tokenizer (upstream's LLaMA 3 path, 4,096-token context)",
    "2025": "2025: helper_functions/HF_models.truncate_input with the served tokenizer "
            "(upstream sent hosted models untruncated)",
}


async def fit_upstream(task: Task, style: str, tokens: ServerTokens, *, context_length: int, max_tokens: int,
                       chat: bool = True, edition: str | None = None) -> Prompt:
    """The prompt of ``task``, cut by SimCoPilot's own rule when prompt + ``max_tokens`` exceeds the context.

    The edition's rule (loaded from its fetched copy) removes the excess tokens from the tail of
    ``after`` but keeps at least ``max_tokens`` of them, then from the head of ``before``, again
    keeping ``max_tokens``; once, with the serving model's tokenizer. 2024:
    ``truncate_input_for_Meta``, the path of its LLaMA 3 70B, which counted its dialog in the
    model's chat format. 2025: ``HF_models.truncate_input``: the 2025 edition sent its hosted
    models (Llama 3.3 70B, Qwen2.5-Coder-32B on Together AI, 128k context) whole, so this is its
    rule for a served context that is too small, given the served tokenizer in place of one
    loaded from the hub. Either way a chat prompt is counted templated, by the server
    (``prompt_tokens``), so that the cut prompt fits what the server processes.
    ``Prompt.truncation`` names the rule when it cut.
    """
    from runner.evaluation import upstream

    prompt = render(task, style, chat=chat, edition=edition)
    excess = await prompt_tokens(prompt, tokens) + max_tokens - context_length
    if excess <= 0:
        return prompt
    up = _upstream(edition)
    shown_after = task.after if task.mode == Mode.infill else ""
    blocking = _BlockingTokens(tokens, asyncio.get_running_loop())
    before, after = await asyncio.to_thread(upstream.truncate, up, task.before, shown_after, excess, blocking, max_tokens)
    (before_n, after_n), (kept_before, kept_after) = blocking.encoded[:2], blocking.decoded[:2]
    cut = render(task, style, chat=chat, before=before, after=after if shown_after else task.after, edition=edition)
    return cut.model_copy(update={"dropped_before_tokens": before_n - kept_before,
                                  "dropped_after_tokens": after_n - kept_after if shown_after else 0,
                                  "truncation": TRUNCATION_RULES[up.edition]})


async def fit(task: Task, style: str, count_tokens: Tokenizer, *, context_length: int, max_tokens: int,
              chat: bool = True, edition: str | None = None) -> Prompt:
    """The prompt of ``task``, cut as upstream does when prompt + ``max_tokens`` exceeds the context.

    Lines are dropped from the tail of ``after`` first, then from the head of ``before``, until
    the prompt's tokens (counted by the serving model's tokenizer, ``count_tokens``) fit.
    """
    prompt = render(task, style, chat=chat, edition=edition)
    budget = context_length - max_tokens
    if budget <= 0:
        raise UserError(f"max_tokens = {max_tokens} leaves no room for a prompt in a context of "
                        f"{context_length} tokens; lower settings.max_tokens")
    overhead = CHAT_OVERHEAD_TOKENS_PER_MESSAGE * len(prompt.messages)
    used = await count_tokens(prompt.token_text()) + overhead
    if used <= budget:
        return prompt
    before_lines = task.before.split("\n") if task.before else []
    after_lines = task.after.split("\n") if (task.after and task.mode == Mode.infill) else []
    drop_before = drop_after = 0
    while used > budget:
        text = prompt.token_text()
        # drop about as many characters as the excess tokens stand for, a little more to converge
        excess_chars = int((used - budget) * len(text) / max(used, 1) * 1.1) + 1
        kept_after = after_lines[: len(after_lines) - drop_after]
        if kept_after:
            drop_after += _lines_covering(list(reversed(kept_after)), excess_chars)
        elif drop_before < len(before_lines):
            drop_before += _lines_covering(before_lines[drop_before:], excess_chars)
        else:
            raise UserError(f"task {task.id}: even without its code the {style} prompt takes {used} tokens, "
                            f"more than the context ({context_length}) minus max_tokens ({max_tokens})")
        prompt = render(task, style, chat=chat, before="\n".join(before_lines[drop_before:]),
                        after="\n".join(after_lines[: len(after_lines) - drop_after]),
                        dropped=(drop_before, drop_after), edition=edition)
        used = await count_tokens(prompt.token_text()) + overhead
    return prompt


def _lines_covering(lines: list[str], chars: int) -> int:
    """How many of ``lines`` (from the first) hold at least ``chars`` characters, at least one."""
    total = 0
    for n, line in enumerate(lines, 1):
        total += len(line) + 1
        if total >= chars:
            return n
    return len(lines)
