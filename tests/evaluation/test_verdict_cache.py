"""The verdict cache: an answer already judged in this environment is not judged again (issue 17).

Real sandbox, real starter tasks; every test has its own RUNNER_HOME (tests/conftest.py), so its
own cache. One evaluator per module (its self-check and reference runs take seconds)."""

from __future__ import annotations

import json
import os
import time

import pytest

from runner.benchmarks import benchmark_commit, load_benchmark
from runner.evaluation import verdicts
from runner.evaluation.sandbox import Limits, capabilities
from runner.records import ExpectedOutputs, Outcome, Sample, Task
from runner.records import TestCase as Case
from tests.conftest import require

PY_TASK = "python/infill/expr_interpreter/49-50"
JAVA_TASK_PREFIX = "java/infill/LRUCacheTester/"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("starter")


@pytest.fixture(scope="module")
def evaluator(bench, tmp_path_factory):
    """The starter set's evaluator over one Python and one Java program, its environment checked
    (under a home of its own: module fixtures run before each test's RUNNER_HOME is set)."""
    require(capabilities().complete, f"a complete local sandbox (missing: {capabilities().missing()})")
    from runner.evaluation.environment import prepared_evaluator

    saved = os.environ.get("RUNNER_HOME")
    os.environ["RUNNER_HOME"] = str(tmp_path_factory.mktemp("verdict-env-home"))
    try:
        tasks = [bench.task(PY_TASK), java_task(bench)]
        evaluator, _ = prepared_evaluator(bench, tasks, sandbox_kind="local")
    finally:
        if saved is None:
            os.environ.pop("RUNNER_HOME", None)
        else:
            os.environ["RUNNER_HOME"] = saved
    return evaluator


def java_task(bench) -> Task:
    return next(t for t in bench.available() if t.id.startswith(JAVA_TASK_PREFIX))


@pytest.fixture
def cache(evaluator, bench, isolated_home):
    """The cache a run attaches, under this test's RUNNER_HOME."""
    attached = verdicts.attach(evaluator, benchmark=bench.name, commit=benchmark_commit(bench), run="r1")
    assert attached.folder.is_relative_to(isolated_home)
    yield attached
    assert attached.folder.is_relative_to(isolated_home)
    evaluator.verdict_cache = None


@pytest.fixture
def runs(evaluator, monkeypatch):
    """Counts the sandboxed programs run from here on."""
    verdicts._observe(evaluator.sandbox)  # the cache's own watch first, then this counter over it
    count = {"runs": 0}
    original = evaluator.sandbox.run

    def counting(*args, **kwargs):
        count["runs"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluator.sandbox, "run", counting)
    return count


def judged(evaluator, task: Task, raw: str, cell: str = "m/llamacpp/q4_k_m/baseline") -> Sample:
    from runner.running.cell import judge_sample

    sample = Sample(task_id=task.id, cell_id=cell, prompt_style="instruct", prompt_sha256="0" * 64, raw_text=raw)
    return judge_sample(evaluator, task, sample)


VERDICT_FIELDS = ("outcome", "cleaned_outcome", "code", "stage", "stderr_tail", "cascade", "upstream", "runner",
                  "unscoreable_reason", "expected_outputs")


def fields(sample: Sample) -> dict:
    return {name: getattr(sample, name) for name in VERDICT_FIELDS}


def test_a_reused_verdict_equals_the_fresh_one_and_runs_no_program(evaluator, bench, cache, runs):
    task = bench.task(PY_TASK)
    wrong = "        if kind == 'SKIP':\n            raise ValueError('no')"
    for raw, outcome in ((task.reference, Outcome.passed), (wrong, Outcome.runtime_error)):
        runs["runs"] = 0
        started = time.monotonic()
        first = judged(evaluator, task, raw)
        fresh_seconds = time.monotonic() - started
        assert first.outcome == outcome and first.verdict_from is None and runs["runs"] >= 1
        runs["runs"] = 0
        started = time.monotonic()
        again = judged(evaluator, task, raw, cell="m/llamacpp/q4_k_m/parallel=2")
        reused_seconds = time.monotonic() - started
        assert runs["runs"] == 0, "a reused verdict runs no sandboxed program"
        assert fields(again) == fields(first)
        assert again.verdict_from == "r1/m/llamacpp/q4_k_m/baseline"
        assert again.eval_seconds < 0.5 and reused_seconds < fresh_seconds
        print(f"{outcome.value}: fresh {fresh_seconds:.3f} s, reused {reused_seconds:.4f} s")
    # one small file per key, private to the user
    entries = list((cache.folder).rglob("*.json"))
    assert len(entries) == 2 and all(p.stat().st_mode & 0o777 == 0o600 for p in entries)
    assert verdicts.judging_counts([first, again]) == verdicts.JudgingCounts(judged=1, reused=1)


def test_a_java_verdict_is_reused(evaluator, bench, cache, runs):
    task = java_task(bench)
    started = time.monotonic()
    first = judged(evaluator, task, task.reference)
    fresh = time.monotonic() - started
    started = time.monotonic()
    again = judged(evaluator, task, task.reference)
    reused = time.monotonic() - started
    assert first.outcome == Outcome.passed and fields(again) == fields(first) and again.verdict_from
    print(f"java: fresh {fresh:.3f} s, reused {reused:.4f} s")


def test_two_answers_that_post_process_alike_share_a_verdict(evaluator, bench, cache, runs):
    task = bench.task(PY_TASK)
    plain, fenced = task.reference, f"Here is the line:\n```python\n{task.reference}\n```\n"
    assert plain != fenced
    assert verdicts.stage_codes(evaluator, task, plain) == verdicts.stage_codes(evaluator, task, fenced)
    first = judged(evaluator, task, plain)
    runs["runs"] = 0
    second = judged(evaluator, task, fenced)
    assert runs["runs"] == 0 and second.verdict_from and fields(second) == fields(first)


def test_each_input_change_misses(evaluator, bench, cache, monkeypatch):
    task = bench.task(PY_TASK)
    raw = task.reference
    base = cache.key(evaluator, task, raw)
    assert cache.key(evaluator, task, raw) == base  # the key is stable
    # a different answer (different stage code); another task
    assert cache.key(evaluator, task, raw + "\n            pass") != base
    other = next(t for t in bench.available() if t.program == task.program and t.id != task.id)
    assert cache.key(evaluator, other, raw) != base
    # different expected outputs: the program re-recorded (its outputs, its file, the policy in force)
    program = evaluator.programs[task.program]
    monkeypatch.setitem(evaluator.programs, task.program, program.model_copy(update={
        "test_cases": tuple(Case(code=c.code, expected_output=c.expected_output + " ") for c in program.test_cases)}))
    assert cache.key(evaluator, task, raw) != base
    monkeypatch.setitem(evaluator.programs, task.program, program)
    monkeypatch.setitem(evaluator.expected_outputs, task.program, ExpectedOutputs.re_recorded)
    assert cache.key(evaluator, task, raw) != base
    monkeypatch.setitem(evaluator.expected_outputs, task.program, ExpectedOutputs.upstream)
    assert cache.key(evaluator, task, raw) == base
    # a different sandbox; different limits, time scaling, cascade, `both`
    # (each undone by its own context: monkeypatch.undo() would also undo this test's RUNNER_HOME)
    for attribute, value in (("sandbox_fingerprint", "docker:sha256:0123"), ("limits", Limits(memory_mb=1024)),
                             ("scale_time", False), ("both", not evaluator.both), ("ceiling_seconds", 100.0)):
        with pytest.MonkeyPatch.context() as changed:
            changed.setattr(evaluator, attribute, value)
            assert cache.key(evaluator, task, raw) != base, attribute
        assert cache.key(evaluator, task, raw) == base
    # another edition or commit of the benchmark
    for change in ({"edition": "2025"}, {"commit": "starter-0.0.0"}, {"benchmark": "simcopilot"}):
        other_cache = verdicts.VerdictCache(**{"benchmark": cache.benchmark, "commit": cache.commit, **change})
        assert other_cache.key(evaluator, task, raw) != base, change
    # and CACHE_VERSION
    monkeypatch.setattr(verdicts, "CACHE_VERSION", verdicts.CACHE_VERSION + 1)
    assert cache.key(evaluator, task, raw) != base


def test_a_changed_expected_output_is_judged_afresh(evaluator, bench, cache, runs, monkeypatch):
    task = bench.task(PY_TASK)
    first = judged(evaluator, task, task.reference)
    assert first.outcome == Outcome.passed
    program = evaluator.programs[task.program]
    monkeypatch.setitem(evaluator.programs, task.program, program.model_copy(update={
        "test_cases": tuple(Case(code=c.code, expected_output="something else") for c in program.test_cases)}))
    runs["runs"] = 0
    again = judged(evaluator, task, task.reference)
    assert runs["runs"] >= 1 and again.verdict_from is None and again.outcome == Outcome.fail


def test_an_older_cache_version_entry_is_a_miss(evaluator, bench, cache, runs, monkeypatch):
    task = bench.task(PY_TASK)
    judged(evaluator, task, task.reference)
    monkeypatch.setattr(verdicts, "CACHE_VERSION", verdicts.CACHE_VERSION + 1)
    runs["runs"] = 0
    assert judged(evaluator, task, task.reference).verdict_from is None and runs["runs"] >= 1


def test_a_corrupt_entry_is_a_miss_and_is_replaced(evaluator, bench, cache, runs, caplog):
    task = bench.task(PY_TASK)
    first = judged(evaluator, task, task.reference)
    (path,) = cache.folder.rglob("*.json")
    for damage in ("{not json", json.dumps({"key": "x"}), ""):
        path.write_text(damage)
        runs["runs"] = 0
        again = judged(evaluator, task, task.reference)
        assert again.verdict_from is None and runs["runs"] >= 1 and fields(again) == fields(first)
        assert "verdict cache" in caplog.text
    assert judged(evaluator, task, task.reference).verdict_from is not None  # written again


def test_the_setting_off_judges_every_answer_afresh(evaluator, bench, runs):
    verdicts.attach(evaluator, benchmark=bench.name, commit=benchmark_commit(bench), enabled=False)
    try:
        task = bench.task(PY_TASK)
        for _ in range(2):
            runs["runs"] = 0
            sample = judged(evaluator, task, task.reference)
            assert sample.verdict_from is None and runs["runs"] >= 1
        assert not (verdicts.VerdictCache(benchmark=bench.name, commit="x").folder).exists()
    finally:
        evaluator.verdict_cache = None


def test_machine_dependent_and_environment_verdicts_are_not_kept(evaluator, bench, cache, runs):
    task = bench.task(PY_TASK)
    forever = "        while True:\n            pass"
    with pytest.MonkeyPatch.context() as short:
        short.setattr(evaluator, "limits", evaluator.limits.model_copy(update={"wall_seconds": 1.0, "time_factor": 1.0}))
        short.setattr(evaluator, "scale_time", False)
        first = judged(evaluator, task, forever)
        assert first.outcome == Outcome.timeout
        assert judged(evaluator, task, forever).verdict_from is None  # judged again: speed decides a timeout
    # a program unscoreable here: its verdict says nothing of the answer
    with pytest.MonkeyPatch.context() as missing:
        missing.setitem(evaluator.unscoreable, task.program, "its data file is missing")
        assert judged(evaluator, task, task.reference).outcome == Outcome.unscoreable
    assert not cache.folder.exists() or not list(cache.folder.rglob("*.json"))
    assert judged(evaluator, task, task.reference).verdict_from is None  # not taken from the unscoreable one


def test_a_sample_without_verdict_from_still_loads():
    old = {"task_id": "t", "cell_id": "c", "prompt_style": "instruct", "prompt_sha256": "0", "outcome": "pass",
           "eval_seconds": 1.5}
    sample = Sample.model_validate_json(json.dumps(old))
    assert sample.verdict_from is None
    assert verdicts.judging_counts([sample]) == verdicts.JudgingCounts(judged=1, reused=0)


# -- a real run ---------------------------------------------------------------------------------
def small_matrix(folder, techniques: tuple[str, str], reuse: bool = True):
    from tests.llama_server import gemma_gguf

    cells = "".join(f"""
[[cells]]
model = "gemma3-vctest"
runtime = "llamacpp"
quantization = "q4_k_m"
techniques = {{ {t} }}
""" for t in techniques)
    path = folder / "verdicts.toml"
    path.write_text(f"""
name = "verdicts"
benchmark = "starter"
[tasks]
languages = ["python"]
programs = ["lu_solver"]
limit = 2
[settings]
max_tokens = 16
concurrency = 2
latency_tasks = 0
warmup_requests = 0
sweep = [1]
sweep_requests = 0
request_timeout_s = 120
health_timeout_s = 300
threads = 2           # one server at a time: both cores (1 took 1.6x as long on the 2-core CI host)
reuse_verdicts = {str(reuse).lower()}
[models.gemma3-vctest]
name = "Gemma 3 270M"
chat = false
prompt_styles = ["instruct"]
[models.gemma3-vctest.quantizations.q4_k_m]
kind = "path"
path = "{gemma_gguf()}"
{cells}""")
    return path


@pytest.mark.slow
def test_a_technique_cell_that_repeats_the_baselines_answers_reuses_their_verdicts(tmp_path):
    """Two cells, the second a technique variant (two slots) of the first: its answers are the
    first's, so their verdicts are reused; the summary and the report count them."""
    require(capabilities().complete, "a complete local sandbox")
    from runner.matrix import load_matrix
    from runner.report import render
    from runner.running.progress import summary_table
    from runner.running.run import RunOptions, reproduce
    from runner.store import RunStore

    matrix = load_matrix(small_matrix(tmp_path, ("parallel = 1", "parallel = 2")))
    outcome = reproduce(matrix, RunOptions(runs_dir=tmp_path / "runs"))
    assert [r.status for r in outcome.results] == ["done", "done"]
    store = RunStore(outcome.run_dir)
    first, second = (store.latest_samples(r.cell) for r in outcome.results)
    texts = {s.task_id: s.raw_text for s in first}
    repeated = [s for s in second if texts.get(s.task_id) == s.raw_text]
    assert repeated, "the technique changed every answer: nothing to reuse"
    # every repeated answer took the first cell's verdict (or the same answer's within a cell)
    assert all(s.verdict_from and s.verdict_from.startswith("verdicts/") for s in repeated)
    by_id = {s.task_id: s for s in first}
    assert all(fields(s) == fields(by_id[s.task_id]) for s in repeated)
    counts = [verdicts.judging_counts(samples) for samples in (first, second)]
    assert counts[1].reused >= len(repeated) > 0
    assert counts[0].judged + counts[0].reused == counts[1].judged + counts[1].reused == 2
    # the terminal summary and the report say so, per cell and in total
    table = summary_table(store, outcome)
    column = next(c for c in table.columns if c.header == "judged/reused")
    assert list(column._cells) == [f"{c.judged}/{c.reused}" for c in counts]
    total = counts[0] + counts[1]
    assert f"answers: {total.judged} judged, {total.reused} reused" in str(table.caption)
    paths = render([outcome.run_dir], tmp_path / "report")
    rows = json.loads(paths.json.read_text())
    assert {(r["cell_id"], r["cell_answers_judged"], r["cell_answers_reused"]) for r in rows} == {
        (res.cell.id, c.judged, c.reused) for res, c in zip(outcome.results, counts)}
    markdown = paths.markdown.read_text()
    assert "## Judging: answers judged and verdicts reused" in markdown
    assert f"| **total** | **{total.judged}** | **{total.reused}** |" in markdown
    assert 'id="judging-table"' in paths.html.read_text()


def test_a_ray_nodes_evaluator_judges_through_its_own_homes_cache(bench, tmp_path, monkeypatch):
    """``judge_remote``'s evaluator (``ray_worker._node_evaluator``: its benchmark commit known, no
    cache attached) reuses verdicts under the node's own RUNNER_HOME."""
    require(capabilities().complete, "a complete local sandbox")
    from runner.executors import ray_worker

    monkeypatch.setattr(ray_worker, "_EVALUATORS", {})
    task = bench.task(PY_TASK)
    _, evaluator = ray_worker._node_evaluator("starter", None, task, ("local", False, (), "auto"))
    first = judged(evaluator, task, task.reference)
    again = judged(evaluator, task, task.reference, cell="other")
    assert first.verdict_from is None and again.verdict_from == first.cell_id and fields(again) == fields(first)
    cache = evaluator.verdict_cache
    assert cache.commit == benchmark_commit(bench) and str(cache.folder).startswith(os.environ["RUNNER_HOME"])


def test_a_ray_node_judges_afresh_when_the_run_turns_reuse_off(bench, tmp_path, monkeypatch):
    """``judge_remote`` carries ``settings.reuse_verdicts`` and the run's name to the node's cache."""
    require(capabilities().complete, "a complete local sandbox")
    from runner.executors import ray_worker

    monkeypatch.setattr(ray_worker, "_EVALUATORS", {})
    task = bench.task(PY_TASK)
    node_bench, evaluator = ray_worker._node_evaluator("starter", None, task, ("local", False, (), "auto"))
    ray_worker.node_verdict_cache(node_bench, evaluator, enabled=False, run="paper")
    first = judged(evaluator, task, task.reference)
    again = judged(evaluator, task, task.reference, cell="other")
    assert first.verdict_from is None and again.verdict_from is None  # judged twice
    ray_worker.node_verdict_cache(node_bench, evaluator, enabled=True, run="paper")
    judged(evaluator, task, task.reference)
    reused = judged(evaluator, task, task.reference, cell="third")
    assert reused.verdict_from and reused.verdict_from.startswith("paper/")


def test_a_run_resumes_across_the_setting_and_from_before_it_existed():
    """``reuse_verdicts`` changes how a verdict is reached, not which: resuming ignores it."""
    from runner.matrix import RunSettings
    from runner.running.run import _compared

    now = {"settings": RunSettings().model_dump(mode="json")}
    before = {"settings": {k: v for k, v in now["settings"].items() if k != "reuse_verdicts"}}
    off = {"settings": {**now["settings"], "reuse_verdicts": False}}
    assert now["settings"]["reuse_verdicts"] is True
    assert _compared(now, "settings") == _compared(before, "settings") == _compared(off, "settings")
    assert _compared(now, "settings") != _compared({"settings": {**now["settings"], "seed": 1}}, "settings")
