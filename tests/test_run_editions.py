"""A run judged under two SimCoPilot editions: ``compare_editions`` in the matrix, at run time and in the report.

The answers whose verdict differs between the editions are those of ``test_editions_cli``: an
answer between upstream's BEGIN/END markers whose first line is indented passes under 2025 (its
extraction keeps the indentation) and is a compile error under 2024 (which strips it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.benchmarks import load_benchmark
from runner.benchmarks.editions import edition_ref
from runner.cli import main
from runner.evaluation.environment import prepared_evaluator
from runner.evaluation.sandbox import capabilities
from runner.matrix import load_matrix
from runner.records import Cell, Outcome, Sample
from runner.report import render
from runner.running.cell import judge_sample
from runner.running.events import RunEvents
from runner.running.run import RunOptions, reproduce
from runner.running.score import EditionJudge
from runner.store import CellResult, Manifest, RunStore
from tests.conftest import require
from tests.llama_server import gemma_gguf
from tests.test_editions_cli import FLIPS, PASS_BOTH, marked

MODEL_KEY = "gemma3-edtest"


def write_matrix(folder: Path, head: str) -> Path:
    path = folder / "editions.toml"
    path.write_text(f"""
name = "editions"
benchmark = "simcopilot"
{head}
[tasks]
languages = ["python"]
modes = ["infill"]
programs = ["simplex_method"]
limit = 3
[settings]
max_tokens = 48
concurrency = 2
latency_tasks = 0
warmup_requests = 0
sweep_requests = 0
request_timeout_s = 120
health_timeout_s = 300
threads = 2           # one server at a time: both cores (1 took 1.6x as long on the 2-core CI host)
[models.{MODEL_KEY}]
name = "Gemma 3 270M"
chat = false
[models.{MODEL_KEY}.quantizations.q4_k_m]
kind = "path"
path = "{gemma_gguf()}"
[[cells]]
model = "{MODEL_KEY}"
runtime = "llamacpp"
quantization = "q4_k_m"
""")
    return path


def score_cli(answers: list[tuple[str, str]], edition: str, tmp_path: Path) -> dict[str, dict]:
    """``runner score --edition E --json`` on ``(task_id, text)`` pairs: each task's record."""
    path = tmp_path / f"answers-{edition}.jsonl"
    path.write_text("".join(json.dumps({"task_id": t, "text": text}) + "\n" for t, text in answers))
    result = CliRunner().invoke(main, ["score", str(path), "--benchmark", "simcopilot", "--edition", edition,
                                       "--json", "--sandbox", "local", "--workers", "2"])
    assert result.exit_code == 0, result.output[-3000:]
    return {r["task_id"]: r for r in map(json.loads, result.stdout.splitlines())}


@pytest.mark.slow
def test_a_run_with_compare_editions_judges_every_answer_under_both_and_catches_up_kept_ones(
        simcopilot, simcopilot_2025, tmp_path):
    """First the run under 2025 alone; then the same run with ``compare_editions = ["2024"]``: the
    kept answers are judged under 2024 without a new request, each verdict the one ``runner score
    --edition 2024`` gives the same text, and the report puts both editions side by side."""
    require(capabilities().complete, "a complete local sandbox")
    options = RunOptions(runs_dir=tmp_path / "runs")
    first = reproduce(load_matrix(write_matrix(tmp_path, 'edition = "2025"')), options)
    store = RunStore(first.run_dir)
    (result,) = first.results
    assert result.status == "done"
    kept = [s for s in store.latest_samples(result.cell) if s.phase == "accuracy"]
    assert len(kept) == 3 and all(s.outcome is not None and s.editions == [] for s in kept)

    skipped: list[str] = []

    class Events(RunEvents):
        def cell_skipped(self, result):
            skipped.append(result.cell.id)

    second = reproduce(load_matrix(write_matrix(tmp_path, 'edition = "2025"\ncompare_editions = ["2024"]')),
                       options, Events())
    assert skipped == [result.cell.id]  # nothing asked of a model again
    manifest = store.read_manifest()
    assert manifest.edition.name == "2025" and manifest.compare_editions == [edition_ref("2024")]
    assert set(manifest.compare_environments) == {"2024"}
    assert manifest.compare_environments["2024"].by_program()["simplex_method"].scoreable
    judged = [s for s in store.latest_samples(result.cell) if s.phase == "accuracy"]
    assert sorted(s.task_id for s in judged) == sorted(s.task_id for s in kept)
    assert all([v.edition for v in s.editions] == ["2024"] for s in judged)
    # the headline verdicts are untouched, and each edition's is what `runner score` says of the same text
    assert {s.task_id: s.outcome for s in judged} == {s.task_id: s.outcome for s in kept}
    texts = [(s.task_id, s.raw_text) for s in judged]
    for edition, got in (("2025", {s.task_id: s.outcome.value for s in judged}),
                         ("2024", {s.task_id: s.editions[0].outcome.value for s in judged})):
        assert {k: r["outcome"] for k, r in score_cli(texts, edition, tmp_path).items()} == got, edition
    assert second.run_dir == first.run_dir

    # a third run finds every verdict there: nothing judged again
    lines = store.samples_path(result.cell).read_text().count("\n")
    reproduce(load_matrix(write_matrix(tmp_path, 'edition = "2025"\ncompare_editions = ["2024"]')), options)
    assert store.samples_path(result.cell).read_text().count("\n") == lines

    paths = render([store.root], tmp_path / "report")
    html, readme = paths.html.read_text(), paths.markdown.read_text()
    assert '<section id="editions">' in html
    rates = {edition: 100 * sum(o is Outcome.passed for o in outcomes) / 3 for edition, outcomes in (
        ("2025", [s.outcome for s in judged]), ("2024", [s.editions[0].outcome for s in judged]))}
    (row,) = [line for line in readme.splitlines() if line.startswith("| ") and "| 2025: " in line]
    shown = {e: float(r) for e, r in re.findall(r"\| (2024|2025): ([\d.]+)", row)}
    assert shown == pytest.approx(rates, abs=0.05), row

def test_the_report_lists_each_flipped_verdict_with_both_editions_rates(simcopilot, simcopilot_2025, tmp_path):
    """Two answers judged the way a run judges them (``judge_sample`` with the 2024 edition compared):
    one passes under both, one flips; the report says 2/2 against 1/2 and names the flipped task."""
    require(capabilities().complete, "a complete local sandbox")
    new, old = load_benchmark("simcopilot", "2025"), load_benchmark("simcopilot", "2024")
    tasks = [new.task(PASS_BOTH), new.task(FLIPS)]
    headline, _ = prepared_evaluator(new, tasks, sandbox_kind="local")
    other, _ = prepared_evaluator(old, [old.task(t.id) for t in tasks], sandbox_kind="local")
    judges = [EditionJudge.over(old, other)]
    cell = Cell(model="m", runtime="llamacpp", quantization="q4_k_m")
    store = RunStore(tmp_path / "runs" / "two")
    store.write_manifest(Manifest(name="two", matrix={"benchmark": "simcopilot", "edition": "2025"}, cells=[cell],
                                  edition=edition_ref("2025"), compare_editions=[edition_ref("2024")]))
    for task in tasks:
        sample = Sample(task_id=task.id, cell_id=cell.id, prompt_style="simcopilot", prompt_sha256="0" * 64,
                        raw_text=marked(task))
        store.append_sample(cell, judge_sample(headline, task, sample, judges))
    store.write_cell(CellResult(cell=cell, status="done"))
    samples = {s.task_id: s for s in store.samples(cell)}
    assert [(s.outcome, [(v.edition, v.outcome) for v in s.editions]) for s in samples.values()] == [
        (Outcome.passed, [("2024", Outcome.passed)]), (Outcome.passed, [("2024", Outcome.compile_error)])]

    paths = render([store.root], tmp_path / "report")
    html, readme = paths.html.read_text(), paths.markdown.read_text()
    section = html[html.index('<section id="editions">'):]
    section = section[:section.index("</section>")]
    assert "<b>2025</b>" in section and "<b>2024</b>" in section
    assert re.search(r"100\.0.*n=2.*50\.0.*n=2.*1 / 2", section, re.S), section
    assert f"<code>{FLIPS}</code>: 2025 ✓ (cleaned), 2024 C (" in section and PASS_BOTH not in section
    (row,) = [line for line in readme.splitlines() if line.startswith("| ") and "| 2025: " in line]
    assert "2025: 100.0" in row and "2024: 50.0" in row and "| 1 / 2 |" in row
    assert f"{FLIPS} (2025 pass, 2024 compile_error)" in row.replace("\\", "")
