"""Differential test, 2025 edition: runner's scoring of Sim-CoPilot 096d1c4 against that edition's own pipeline, task by task.

Upstream's side is the 2025 edition's functions called as its scripts call them:
``helper_functions/LLMs_gen.py``'s ``generate_code_strict_format`` on its hosted-model path
(``together_client`` answering with the recorded text; the marker extraction keeps indentation),
``post_process_gen_code`` with the program's whole ``after`` and ``extract_code_results(...,
['cleaned_code'])`` (as ``update_post_process_and_eval.main`` recomputes them), then the stage loop
of ``update_post_process_and_eval.process_and_evaluate_code`` (trimmed, then indented, while the
pass ratio is not 1), each test run by ``eval_code.load_test_cases_w_expected_output`` with
upstream's own process runner (no sandbox, ``sys.executable``, ``javac``/``java`` with upstream's
JUnit jar). Our side is the scoring path of ``runner score`` (``prepared_evaluator`` on the 2025
benchmark, headline ``upstream``, sandboxed): ``runner score --edition 2025`` for each task's first
answer, its Python API for the others.

Sample: the 2024 differential test's 5 tasks (simplex_method x2, Image_Transformation, the fast
Java testers DoubleVectorTester and FactorizationTester) in the ways it samples (``SUITE_WAYS``), plus a
seventh way that is the 2025 edition's own answer shape (its hosted path stops at the END marker: the
marker's line and what follows never come back): 23 answers, 35 with RUNNER_FULL_DIFFERENTIAL=1. And three answers the two editions score
differently, each judged by both editions' pipelines and by runner under both editions.
"""

from __future__ import annotations

import types
from contextlib import contextmanager
from pathlib import Path

import pytest

from runner.benchmarks import load_benchmark
from runner.evaluation import upstream
from runner.evaluation.sandbox import capabilities
from runner.records import Language, Task
from tests.conftest import require
from tests.evaluation.test_upstream_differential import SAMPLE, answers_for, runner_verdicts, sampled_ways
from tests.evaluation.test_upstream_differential import upstream_pipeline as upstream_pipeline_2024

#: update_post_process_and_eval.process_and_evaluate_code's default ``steps``; it tests the ones after
#: ``before_post_process_step='cleaned_code'`` (lines 103, 141-143)
STEPS = ["original_code", "cleaned_code", "trimmed_code", "indented_code"]
STAGE_NAMES = {"cleaned_code": ("cleaned",), "trimmed_code": ("trimmed",), "indented_code": ("reindented", "balanced")}


def answers_2025(task: Task) -> dict[str, str]:
    """The 2024 test's six ways, and the answer the 2025 hosted path gets back: generation stopped
    at ``<comment> --END MISSING CODE--`` (its ``stop``), so only the BEGIN marker is there."""
    comment = "//" if task.language is Language.java else "#"
    return {**answers_for(task),
            "stopped_at_end_marker": f"Here is the missing code:\n{comment} --BEGIN MISSING CODE--\n{task.reference}\n"}


class _Together:
    """The 2025 edition's ``together_client`` for one answer: its chat call returns ``text``."""

    def __init__(self, text: str):
        self.text = text
        self.chat = types.SimpleNamespace(completions=types.SimpleNamespace(create=self._create))

    def _create(self, **kwargs):
        message = types.SimpleNamespace(content=self.text)
        return types.SimpleNamespace(choices=[types.SimpleNamespace(message=message)])


@contextmanager
def answering(up: upstream.Upstream, text: str):
    saved = up.llms_gen.together_client
    up.llms_gen.together_client = _Together(text)
    try:
        yield
    finally:
        up.llms_gen.together_client = saved


def _ratio_is_one(ratio: str) -> bool:
    """update_post_process_and_eval.convert_to_float(ratio) == 1 ("k/n", "k/0" reads 0)."""
    k, _, n = ratio.partition("/")
    return n not in ("", "0") and float(k) / float(n) == 1


def upstream_pipeline_2025(up: upstream.Upstream, task: Task, program, raw: str) -> tuple[bool, str]:
    """(passed, last stage tested), as the 2025 edition's scripts compute them."""
    assert up.edition == "2025"
    kind = "Java" if task.language is Language.java else "Python"
    before = task.before.split("\n") if task.before else []
    after = task.after.split("\n") if task.after else []
    # model_inference.py -> LLMs_gen_and_post_process: completion is gen_mode 'no_afterlines',
    # which generates with after_lines = '' (LLMs_gen.py:512-514)
    shown_after = after if task.mode.value == "infill" else ""
    with answering(up, raw):
        code = up.llms_gen.generate_code_strict_format(before, shown_after, upstream.TOGETHER_MODEL, kind,
                                                       prompts_path=str(up.prompt_templates))
    # update_post_process_and_eval.main (lines 214-238): post-processing again with the row's whole
    # `after`, the cleaned code chosen by extract_code_results and tested first
    stages, steps = up.llms_gen.post_process_gen_code(code, before, after, kind, clean_gen_code=True,
                                                      remove_gen_repeated_lines=True, add_auto_indent=True,
                                                      print_post_process=False)
    _, cleaned = up.llms_gen.extract_code_results(stages, last_post_process_step=["cleaned_code"])

    def passes(between: str) -> bool:
        return _ratio_is_one(_test_run(up, str(program.source), program.output_to_check, tuple(before), between,
                                       tuple(after)))

    if passes(cleaned):
        return True, "cleaned_code"
    step = "cleaned_code"
    # process_and_evaluate_code (lines 140-168): the later steps, until one passes
    for step in STEPS[STEPS.index("cleaned_code") + 1:]:
        if step in steps and passes(stages[step]):
            return True, step
    return False, step


_RUNS: dict[tuple, str] = {}


def _test_run(up: upstream.Upstream, source: str, output_to_check: str, before: tuple[str, ...], between: str,
              after: tuple[str, ...]) -> str:
    """Upstream's pass ratio for ``between`` in the gap; the same code in the same gap is run once
    (several ways clean to the same code, and a JVM start takes seconds here)."""
    key = (str(up.root), source, output_to_check, before, between, after)
    if key not in _RUNS:
        with upstream.executing_with(None):  # upstream's own subprocess runner
            _, _RUNS[key] = up.eval_code.load_test_cases_w_expected_output(
                str(Path(source).with_suffix(".json")), list(before), between.split("\n"), list(after), source,
                output_to_check)
    return _RUNS[key]


def disagreements(keys, expected, ours) -> list[str]:
    return [f"{key}: upstream {'pass' if passed else 'no pass'} at {step}, ours {'pass' if got else 'no pass'} at {stage}"
            for key, (passed, step), (got, stage) in zip(keys, expected, ours)
            if got != passed or stage not in STAGE_NAMES[step]]


@pytest.mark.timeout(1200)
def test_runner_2025_scoring_agrees_with_the_2025_pipeline_task_by_task(simcopilot_2025, tmp_path):
    """One evaluator for the whole sample (its sandbox self-check and environment check run once)."""
    require(capabilities().complete, "a complete local sandbox")
    bench = load_benchmark("simcopilot", "2025")
    up = upstream.load(simcopilot_2025)
    picked = [(bench.select(program=program, mode=mode)[index], sampled_ways(program, mode, index))
              for program, picks in SAMPLE.items() for mode, index in picks]
    keys, items, expected = [], [], []
    for task, ways in picked:
        answers = answers_2025(task)
        for way in (*ways, "stopped_at_end_marker"):
            text = answers[way]
            keys.append(f"{task.id} {way}")
            items.append((task, text))
            expected.append(upstream_pipeline_2025(up, task, bench.programs[task.program], text))
    ours = runner_verdicts(bench, items, tmp_path, "2025")
    problems = disagreements(keys, expected, ours)
    assert not problems, "\n".join(problems)


#: (program, mode, index, way, 2024's verdict, 2025's verdict): one raw answer, two editions' scoring
DIFFERING = [
    # 2024's extraction .strip()s the marked code, so the first line loses its indentation and
    # auto_indent cannot mend the second; 2025's keeps it
    ("simplex_method", "infill", 4, "markers", (False, "indented_code"), (True, "cleaned_code")),
    # a prose line that 2024's code-line regex keeps (a Python SyntaxError at every stage);
    # 2025's detect_natural_language drops it
    ("simplex_method", "infill", 4, "prose_line", (False, "indented_code"), (True, "cleaned_code")),
    # the other way round: 2025's Java regex gained `.*&&.*`, and this line has too many symbols
    # for detect_natural_language, so 2025 keeps it (a compile error); 2024 drops it
    ("DoubleVectorTester", "infill", 0, "and_prose_line", (True, "cleaned_code"), (False, "indented_code")),
]


def differing_answer(task: Task, way: str) -> str:
    if way == "markers":
        return answers_for(task)["markers"]
    if way == "prose_line":
        return f"{task.reference}\nThis line computes the final result = the value we need"
    return f"{task.reference}\nThe loop adds each entry && the separator"


@pytest.mark.timeout(900)
def test_the_same_answer_gets_each_editions_own_verdict(simcopilot, simcopilot_2025, tmp_path):
    require(capabilities().complete, "a complete local sandbox")
    old, new = load_benchmark("simcopilot"), load_benchmark("simcopilot", "2025")
    up_old, up_new = upstream.load(simcopilot), upstream.load(simcopilot_2025)
    items_old, items_new, keys = [], [], []
    for program, mode, index, way, verdict_2024, verdict_2025 in DIFFERING:
        task_old, task_new = old.select(program=program, mode=mode)[index], new.select(program=program, mode=mode)[index]
        raw = differing_answer(task_new, way)
        assert task_old.id == task_new.id and differing_answer(task_old, way) == raw
        # each edition's own pipeline gives its own verdict
        assert upstream_pipeline_2024(up_old, task_old, old.programs[program], raw) == verdict_2024, way
        assert upstream_pipeline_2025(up_new, task_new, new.programs[program], raw) == verdict_2025, way
        keys.append(f"{task_new.id} {way}")
        items_old.append((task_old, raw))
        items_new.append((task_new, raw))
    # and runner, scoring the same raw answers under each edition, follows each
    ours_old = runner_verdicts(old, items_old, tmp_path, "2024")
    ours_new = runner_verdicts(new, items_new, tmp_path, "2025")
    problems = (disagreements([f"2024 {k}" for k in keys], [d[4] for d in DIFFERING], ours_old)
                + disagreements([f"2025 {k}" for k in keys], [d[5] for d in DIFFERING], ours_new))
    assert not problems, "\n".join(problems)
    assert [passed for passed, _ in ours_old] != [passed for passed, _ in ours_new]
