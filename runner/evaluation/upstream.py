"""SimCoPilot's own scoring functions, loaded at run time from the fetched and verified copy.

Nothing of upstream's code is copied into this project: ``runner data fetch simcopilot``
installs the pinned commit's ``helper_functions/`` and ``open_source_model_gen/`` beside the
data (each file checked against its git blob id in the bundled manifest), and this module
imports them from there, under a private package name (``_runner_simcopilot_upstream``), so
that they never collide with anything else called ``helper_functions``.

What is used, and from where (paths in upstream's repository):

- ``open_source_model_gen/helper_functions/HF_LLMs_gen.py``: ``create_input_messages`` (the
  prompt), ``generate_code_strict_format`` (the marker extraction with its ``.strip()``; see
  :func:`extract`), ``open_source_model_gen/helper_functions/HF_models.py``:
  ``truncate_input_for_Meta`` (the truncation rule);
- ``helper_functions/LLMs_gen.py``: ``post_process_gen_code`` (``clean_code``,
  ``trim_similar_edges``, then ``auto_indent`` for Python or ``auto_bracket_matcher`` for Java,
  all in ``helper_functions/post_gen_process.py``) and ``extract_code_results``;
- ``helper_functions/eval_code.py``: ``load_test_cases_w_expected_output`` (every test case,
  the output comparison, the pass ratio); only its process runner ``execute_with_timeout``
  is swapped, per call, for one that runs the program in this project's sandbox and answers
  with the same strings (``upstream_runs.SandboxedExecution``);
- ``helper_functions/code_gen_result_analysis.py``: ``bootstrap_resampling`` (the ± upstream
  reports).

That is the 2024 edition (SimCoPilot 90c5560). The 2025 edition (Sim-CoPilot 096d1c4, the
repository the paper links) has no ``open_source_model_gen/``: every model goes through
``helper_functions/LLMs_gen.py`` (``model_inference.py`` calls it), so its prompt, extraction and
truncation come from there and from ``helper_functions/HF_models.py`` (:data:`HARNESSES`). Its
extraction is the path of its hosted models (``together_client``, replayed per thread here): it
keeps the marked code's indentation. An installed copy says which edition it is in its
``source.json`` (:func:`harness_of`).

**Harmless imports.** Those modules import libraries their used functions never touch
(``openai``, ``anthropic``, ``tiktoken``, ``torch``, ``transformers``, ``pandas``,
``termcolor``; 2025 adds ``together``), and two of them act at import (``client = OpenAI()``, ``anthropic.Anthropic()``,
``torch.device(...)``). While upstream's modules are imported, and only then, each of those
names is an inert stub module in ``sys.modules`` (every attribute, call and result is another
inert object, false in a test); the real modules, if any were imported, are put back right
after. ``helper_functions/HF_models.py`` also imports ``helper_functions/xformer.py``, which the
2024 commit does not hold: it gets the same stub. 2025's ``Anthropic_models.py`` refuses to
import without ``ANTHROPIC_API_KEY``: a placeholder is set for the time of the import. Upstream's ``eval_code`` prints each verdict in
colour; in the loaded copy its module-level ``print`` and ``colored`` are silenced. The
absolute import ``from helper_functions.post_gen_process import ...`` in ``HF_LLMs_gen.py`` is
pointed at the private package for the time of the import.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from runner.errors import UserError
from runner.records import Language, Outcome, Program, Stage, Task

PACKAGE = "_runner_simcopilot_upstream"
#: libraries upstream's modules import but whose used functions never call
STUBBED_LIBRARIES = ("openai", "anthropic", "tiktoken", "torch", "transformers", "pandas", "termcolor", "together")
#: upstream's stage names (keys of ``post_process_gen_code``'s result), in the order it tests them
UPSTREAM_STAGES = ("cleaned_code", "trimmed_code", "indented_code")
#: the model name whose generation path upstream's paper numbers (LLaMA 3 70B) come from
META_MODEL = "Meta-Llama-3-70B-Instruct"
#: the 2025 edition's name for its Llama (served by Together AI): its path has no truncation and
#: extracts the marked code keeping its indentation (``helper_functions/LLMs_gen.py``)
TOGETHER_MODEL = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
#: upstream's generation budget (``max_gen_tokens`` in ``generate_code_strict_format``)
MAX_GEN_TOKENS = 200


@dataclass(frozen=True)
class Harness:
    """Where one edition keeps the functions used here: module attribute -> repository path."""

    name: str
    sources: dict[str, str]
    missing: tuple[str, ...]  # modules it imports that its commit does not hold
    prompt_module: str  # the attribute whose ``create_input_messages`` builds the prompt
    truncation: str  # "truncate_input_for_Meta" (2024's HF path) | "truncate_input" (2025's)


_COMMON = {
    "post_gen_process": "helper_functions/post_gen_process.py",
    "llms_gen": "helper_functions/LLMs_gen.py",
    "eval_code": "helper_functions/eval_code.py",
    "analysis": "helper_functions/code_gen_result_analysis.py",
}
HARNESSES = {
    # 2024: open models ran through open_source_model_gen/ (generation, prompt, truncation)
    "2024": Harness("2024", {**_COMMON,
                             "hf_llms_gen": "open_source_model_gen/helper_functions/HF_LLMs_gen.py",
                             "hf_models": "open_source_model_gen/helper_functions/HF_models.py"},
                    missing=("helper_functions.xformer",), prompt_module="hf_llms_gen",
                    truncation="truncate_input_for_Meta"),
    # 2025: one path for every model in helper_functions/ (model_inference.py calls it)
    "2025": Harness("2025", {**_COMMON, "hf_models": "helper_functions/HF_models.py"},
                    missing=(), prompt_module="llms_gen", truncation="truncate_input"),
}


class _Inert:
    """Stands for anything of a stubbed library: attributes, calls and results are more of it."""

    def __getattr__(self, name: str) -> "_Inert":
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _Inert()

    def __call__(self, *args, **kwargs) -> "_Inert":
        return _Inert()

    def __bool__(self) -> bool:
        return False

    def __iter__(self):
        return iter(())

    def __mro_entries__(self, bases):  # a stubbed class used as a base class
        return (object,)


def _stub_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name, f"inert stand-in for {name!r} while SimCoPilot's code is imported")
    module.__getattr__ = lambda attr: _Inert()  # type: ignore[attr-defined]
    module.__path__ = []  # type: ignore[attr-defined]  # so "from x.y import z" resolves to a stub too
    return module


@dataclass(frozen=True)
class Upstream:
    """The loaded modules of one installed copy, and which edition's layout they follow."""

    root: Path
    harness: Harness
    post_gen_process: types.ModuleType
    llms_gen: types.ModuleType
    eval_code: types.ModuleType
    analysis: types.ModuleType
    hf_models: types.ModuleType
    hf_llms_gen: types.ModuleType | None = None  # 2024 only

    @property
    def edition(self) -> str:
        return self.harness.name

    @property
    def prompt_templates(self) -> Path:
        return self.root / "helper_functions" / "prompt_templates"

    @property
    def prompt_builder(self) -> types.ModuleType:
        """The module whose ``create_input_messages`` this edition's generation calls."""
        return getattr(self, self.harness.prompt_module)


_LOCK = threading.Lock()
_LOADED: dict[Path, Upstream] = {}
_EXECUTION = threading.local()
_NP_LOCK = threading.Lock()


def upstream_root(edition: str | None = None) -> Path:
    """The installed SimCoPilot copy of ``edition`` (``$RUNNER_HOME/data/simcopilot`` for 2024)."""
    from runner.benchmarks import simcopilot_dir

    return simcopilot_dir(edition)


def harness_of(root: Path) -> Harness:
    """Which edition's layout the copy at ``root`` has: its ``source.json``, else the files it holds."""
    import json

    from runner.benchmarks.editions import edition_of_commit

    record = root / "source.json"
    if record.is_file():
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        name = data.get("edition")
        pinned = edition_of_commit(str(data.get("commit") or ""))
        if name in HARNESSES:
            return HARNESSES[name]
        if pinned is not None:
            return HARNESSES[pinned.harness]
    # a copy without a record (a test's folder): 2024's layout has open_source_model_gen/
    return HARNESSES["2024" if (root / HARNESSES["2024"].sources["hf_llms_gen"]).is_file() else "2025"]


def available(root: Path | None = None) -> str | None:
    """``None`` when upstream's scoring code is installed at ``root``, else why not."""
    root = Path(root or upstream_root())
    harness = harness_of(root)
    missing = [rel for rel in harness.sources.values() if not (root / rel).is_file()]
    if missing:
        flag = "" if harness.name == "2024" else f" --edition {harness.name}"
        return (f"{root}: SimCoPilot's scoring code is missing ({', '.join(missing[:2])}"
                f"{'...' if len(missing) > 2 else ''}); run `runner data fetch simcopilot{flag}` (again)")
    return None


def load(root: Path | None = None) -> Upstream:
    """Import upstream's scoring modules from the installed copy (once per copy)."""
    root = Path(root or upstream_root()).resolve()
    with _LOCK:
        if root in _LOADED:
            return _LOADED[root]
        problem = available(root)
        if problem:
            raise UserError(problem)
        # One private package name per copy, so that two copies (tests) never share modules.
        name = PACKAGE if not _LOADED else f"{PACKAGE}_{len(_LOADED)}"
        harness = harness_of(root)
        with _import_context(name, root, harness):
            modules = {attr: importlib.import_module(f"{name}.{rel[:-3].replace('/', '.')}")
                       for attr, rel in harness.sources.items()}
        eval_code = modules["eval_code"]
        eval_code.print = lambda *args, **kwargs: None  # upstream prints every verdict
        eval_code.colored = lambda text, *args, **kwargs: text
        # Upstream's own runner stays reachable for side-by-side checks (tests) as
        # ``upstream_execute_with_timeout``; calls go through the dispatcher.
        eval_code.upstream_execute_with_timeout = eval_code.execute_with_timeout
        eval_code.execute_with_timeout = _dispatch(eval_code.execute_with_timeout)
        if harness.name == "2025":
            # the hosted endpoint's client and the tokenizer loader answer per thread (see extract, truncate)
            modules["llms_gen"].together_client = _ReplayClient()
            modules["hf_models"].load_tokenizer = _thread_tokenizer
        loaded = Upstream(root=root, harness=harness, **modules)
        _LOADED[root] = loaded
        return loaded


@contextmanager
def _import_context(name: str, root: Path, harness: Harness) -> Iterator[None]:
    """sys.modules as upstream's imports need it, for the time of the import only."""
    package = types.ModuleType(name, f"SimCoPilot at {root}")
    package.__path__ = [str(root)]  # type: ignore[attr-defined]
    saved = {key: sys.modules.get(key) for key in (*STUBBED_LIBRARIES, "helper_functions",
                                                   "helper_functions.post_gen_process")}
    # 2025's Anthropic_models.py refuses to import without a key; its client is an inert stub anyway
    key_was_set = "ANTHROPIC_API_KEY" in os.environ
    try:
        os.environ.setdefault("ANTHROPIC_API_KEY", "unused-by-runner")
        sys.modules[name] = package
        for lib in STUBBED_LIBRARIES:
            sys.modules[lib] = _stub_module(lib)
        for missing in harness.missing:
            sys.modules[f"{name}.{missing}"] = _stub_module(missing)
        helpers = importlib.import_module(f"{name}.helper_functions")
        sys.modules["helper_functions"] = helpers
        sys.modules["helper_functions.post_gen_process"] = importlib.import_module(
            f"{name}.helper_functions.post_gen_process")
        yield
    finally:
        if not key_was_set:
            os.environ.pop("ANTHROPIC_API_KEY", None)
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value
        # stub submodules an import registered ("transformers.x"): never left behind
        for key in [k for k, m in list(sys.modules.items())
                    if "inert stand-in" in str(getattr(m, "__dict__", {}).get("__doc__") or "") and not k.startswith(name)]:
            sys.modules.pop(key, None)


# -- running the tests -----------------------------------------------------------------------------

Executor = Callable[[str, str, str, float], str]


def _dispatch(original: Callable) -> Callable:
    def execute_with_timeout(merged_code, test_case, source_code_path, timeout=5 * 60, run_test_gpu_id=None):
        executor = getattr(_EXECUTION, "executor", None)
        if executor is None:
            return original(merged_code, test_case, source_code_path, timeout=timeout, run_test_gpu_id=run_test_gpu_id)
        return executor(merged_code, test_case, source_code_path, timeout)
    return execute_with_timeout


@contextmanager
def executing_with(executor: Executor | None) -> Iterator[None]:
    """Within the block, upstream's test runs on this thread go through ``executor`` (``None``: upstream's own)."""
    previous = getattr(_EXECUTION, "executor", None)
    _EXECUTION.executor = executor
    try:
        yield
    finally:
        _EXECUTION.executor = previous


def tests_file(program: Program) -> Path:
    """The JSON of test cases upstream reads for a program (``<stem>.json``, or its re-baselined copy)."""
    return program.tests_json or program.source.with_suffix(".json")


@dataclass(frozen=True)
class TestRun:
    """Upstream's answer for one candidate: its per-test results and pass ratio, and our outcome for it."""

    results: tuple[str, ...]
    pass_ratio: str  # "k/n", as upstream writes it
    outcome: Outcome
    detail: str = ""

    @property
    def passed(self) -> bool:
        k, _, n = self.pass_ratio.partition("/")
        return k == n and int(n or 0) > 0


_SYNTAX = re.compile(r"\b(SyntaxError|IndentationError|TabError)\b")


def outcome_of(results: list[str] | tuple[str, ...], language: Language) -> Outcome:
    """This project's outcome for upstream's result strings: pass, or the first failure's kind."""
    for text in results:
        if text.startswith("Success"):
            continue
        if text.startswith("Timeout"):
            return Outcome.timeout
        if text.startswith("Error: Compilation error") or (language is Language.python and _SYNTAX.search(text)):
            return Outcome.compile_error
        if text.startswith("Error"):
            # Java's console launcher exits non-zero when a test fails: upstream reports an Error.
            if language is Language.java and "tests failed" in text:
                return Outcome.fail
            return Outcome.runtime_error
        return Outcome.fail
    return Outcome.passed


def run_tests(up: Upstream, program: Program, before: list[str], between: list[str], after: list[str],
              executor: Executor | None, timeout: float = 5 * 60) -> TestRun:
    """``load_test_cases_w_expected_output`` on the joined lines, its runs going through ``executor``."""
    path = tests_file(program)
    if not path.is_file():
        raise UserError(f"{path}: upstream's test file for {program.name} is missing; upstream scoring needs it")
    with executing_with(executor):
        results, ratio = up.eval_code.load_test_cases_w_expected_output(
            str(path), before, between, after, str(program.source), program.output_to_check, eval_timeout=timeout)
    return TestRun(results=tuple(results), pass_ratio=ratio, outcome=outcome_of(results, program.language),
                   detail=next((r for r in results if not r.startswith("Success")), "")[-4000:])


# -- answers -----------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    """A task part as upstream holds it: a list of lines (empty for an empty part)."""
    return text.split("\n") if text else []


def task_parts(task: Task) -> tuple[list[str], list[str], list[str]]:
    """``before``, ``between`` (the reference) and ``after`` as upstream's line lists (``after`` always run)."""
    return _lines(task.before), _lines(task.reference), _lines(task.after)


def program_type(task: Task) -> str:
    return "Java" if task.language is Language.java else "Python"


class _ReplayTokenizer:
    def decode(self, tokens):
        return tokens[0] if isinstance(tokens, list) else tokens


class _ReplayFormatter:
    def encode_dialog_prompt(self, messages):
        return []  # no tokens: the prompt is never truncated while replaying


class _ReplayModel:
    """A "model" that answers upstream's generation call with a recorded answer."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.formatter = _ReplayFormatter()

    def generate(self, **kwargs):
        return [self.text], None


class _ReplayClient:
    """The 2025 edition's ``together_client``: its chat call answers with this thread's recorded answer."""

    def __init__(self) -> None:
        self._local = threading.local()
        self.chat = types.SimpleNamespace(completions=types.SimpleNamespace(create=self._create))

    @contextmanager
    def answering(self, text: str) -> Iterator[None]:
        previous = getattr(self._local, "text", None)
        self._local.text = text
        try:
            yield
        finally:
            self._local.text = previous

    def _create(self, **kwargs):
        text = getattr(self._local, "text", None)
        if text is None:
            raise RuntimeError("SimCoPilot's hosted endpoint is not reachable from runner")
        message = types.SimpleNamespace(content=text)
        return types.SimpleNamespace(choices=[types.SimpleNamespace(message=message)])


_TOKENIZER = threading.local()


def _thread_tokenizer(model):  # the 2025 edition's ``load_tokenizer``, during ``truncate`` only
    tokenizer = getattr(_TOKENIZER, "tokenizer", None)
    if tokenizer is None:
        raise RuntimeError(f"no tokenizer for {model!r}: runner loads none from the hub")
    return tokenizer


def extract(up: Upstream, raw: str, task: Task) -> str:
    """Upstream's answer extraction: the text between the BEGIN/END marker lines, else the whole answer.

    The extraction sits inside upstream's generation function (``generate_code_strict_format``),
    after the model call. That function is run as is, with a replay model that returns ``raw``,
    so the extraction is the edition's own code: 2024's (``open_source_model_gen``, the path of
    its LLaMA 3 70B) ``.strip()``s the marked text, so the first line loses its indentation;
    2025's (``helper_functions/LLMs_gen.py``, the path of its Together AI models) drops only
    blank lines at either end.
    """
    before, _, after = task_parts(task)
    shown_after = after if task.mode.value == "infill" else ""
    if up.hf_llms_gen is None:
        with up.llms_gen.together_client.answering(raw):
            return up.llms_gen.generate_code_strict_format(
                before, shown_after, TOGETHER_MODEL, program_type(task), prompts_path=str(up.prompt_templates))
    return up.hf_llms_gen.generate_code_strict_format(
        before, shown_after, program_type(task), META_MODEL, _ReplayModel(raw), _ReplayTokenizer(),
        4096, prompts_path=str(up.prompt_templates))


def post_process(up: Upstream, code: str, task: Task) -> dict[str, str]:
    """Upstream's ``post_process_gen_code`` (helper_functions/LLMs_gen.py): every stage's code, by upstream's stage name."""
    before, _, after = task_parts(task)
    results, _steps = up.llms_gen.post_process_gen_code(code, before, after, program_type(task),
                                                        clean_gen_code=True, remove_gen_repeated_lines=True,
                                                        add_auto_indent=True, print_post_process=False)
    return results


STAGE_OF = {"cleaned_code": Stage.cleaned, "trimmed_code": Stage.trimmed}


def stage_of(name: str, language: Language) -> Stage:
    """Our stage for upstream's stage name (``indented_code`` is re-indented Python or bracket-matched Java)."""
    if name == "indented_code":
        return Stage.reindented if language is Language.python else Stage.balanced
    return STAGE_OF[name]


def candidates(up: Upstream, raw: str, task: Task) -> list[tuple[str, list[str]]]:
    """The codes upstream tests, in its order: cleaned first, then trimmed, then indented.

    As in upstream's ``process_and_evaluate_code``: the cleaned code is chosen with
    ``extract_code_results(..., ['cleaned_code'])`` (empty when cleaning left nothing), and each
    later stage is tested only while the earlier ones have not passed.
    """
    results = post_process(up, extract(up, raw, task), task)
    _step, cleaned = up.llms_gen.extract_code_results(results, last_post_process_step=["cleaned_code"])
    first = [("cleaned_code", cleaned.split("\n"))]
    return first + [(name, results[name].split("\n")) for name in UPSTREAM_STAGES[1:]]


# -- truncation ----------------------------------------------------------------------------------------


def truncate(up: Upstream, before: str, after: str, token_len_to_remove: int, tokenizer,
             max_gen_tokens: int = MAX_GEN_TOKENS) -> tuple[str, str]:
    """Upstream's truncation: cut the tail of ``after`` (keeping ``max_gen_tokens`` tokens), then
    the head of ``before`` (the same), by tokens of ``tokenizer``.

    2024: ``truncate_input_for_Meta`` (its LLaMA path). 2025: ``HF_models.truncate_input``, the
    same rule, which its hosted models never reached (their context is 128k); it is given the
    served model's tokenizer in place of one loaded from the hub. ``tokenizer`` needs
    ``encode(text, bos=False, eos=False) -> list[int]`` and ``decode(ids) -> str``.
    """
    if up.harness.truncation == "truncate_input":
        previous = getattr(_TOKENIZER, "tokenizer", None)
        _TOKENIZER.tokenizer = tokenizer
        try:
            return up.hf_models.truncate_input(before, after, token_len_to_remove, TOGETHER_MODEL, max_gen_tokens)
        finally:
            _TOKENIZER.tokenizer = previous
    return up.hf_models.truncate_input_for_Meta(before, after, token_len_to_remove, tokenizer, max_gen_tokens)


# -- prompt and statistics -------------------------------------------------------------------------------


def create_input_messages(up: Upstream, program: str, template: str, before: str, after: str) -> list[dict]:
    """Upstream's ``create_input_messages`` as its generation calls it (no examples, no instruction in comment)."""
    comment = "//" if program == "Java" else "#"
    return up.prompt_builder.create_input_messages(program, template, before, after, "", False, comment)


def bootstrap(up: Upstream, passed: int, total: int, seed: int = 0, resamples: int = 10_000) -> tuple[float, float]:
    """Upstream's ``bootstrap_resampling``: the mean and 1.96 SD of ``resamples`` resampled pass rates.

    Upstream draws from NumPy's global generator unseeded; it is seeded here (and restored) so
    that a report is reproducible.
    """
    np = up.analysis.np
    with _NP_LOCK:  # upstream draws from NumPy's global generator
        return _seeded_bootstrap(up, np, passed, total, seed, resamples)


def _seeded_bootstrap(up: Upstream, np, passed: int, total: int, seed: int, resamples: int) -> tuple[float, float]:
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        mean, half = up.analysis.bootstrap_resampling(passed, total, num_resamples=resamples)
    finally:
        np.random.set_state(state)
    return float(mean), float(half)


# upstream's test runs in this project's sandbox (a module of its own; names kept here for callers)
from runner.evaluation.upstream_runs import DEFAULT_JAVA_PATH, JAVA_PATHS, SandboxedExecution  # noqa: E402,F401
