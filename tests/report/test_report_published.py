"""The report's published-reference section on run directories built like ``runner reproduce`` writes them."""

from __future__ import annotations

import json
import random

from runner.records import Cell, ExpectedOutputs, Outcome
from runner.report import render
from runner.store import RunStore
from tests.report import conftest
from tests.report.conftest import H100, make_sample, write_run

QWEN = Cell(model="qwen32", runtime="vllm", quantization="bf16", label="baseline")
OTHER = Cell(model="gemma3-270m", runtime="vllm", quantization="bf16", label="baseline")
SPLITS = [("python", "infill"), ("python", "completion"), ("java", "infill"), ("java", "completion")]


def reference_rows(markdown: str, model: str) -> dict[str, list[str]]:
    """The published-reference table's rows of cells of ``model``, keyed by split ("python infill")."""
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith(f"| {model}/") and len(cells) == 9 and "±" in cells[3]:
            rows[cells[2]] = cells
    return rows


def verdict(rate: float, spread: float, published: float, half: float) -> str:
    """The verdict words for a reproduced rate (fractions) against a published interval (%), as documented."""
    value, spread = 100 * rate, 100 * spread
    if abs(value - published) <= half:
        return "inside the published interval"
    return "intervals overlap" if value - spread <= published + half and published - half <= value + spread \
        else "no overlap"


def test_a_run_from_before_the_published_field_compares_its_llama3_70b_cells_with_the_2024_row(two_machine_runs, tmp_path):
    # the same runs judged on the starter set stand beside no published row: the tables are SimCoPilot's
    starter = json.loads(render(two_machine_runs, tmp_path / "starter").json.read_text())
    assert all(r["published_row"] is None for r in starter)
    runs = tmp_path / "simcopilot"
    two_machine_runs = [write_run(runs, "paper-h100", H100, [conftest.BASELINE, conftest.FP8], speed=1.0, seed=1,
                                  benchmark="simcopilot").root,
                        write_run(runs, "paper-a100", conftest.A100, [conftest.BASELINE], speed=0.6, seed=2,
                                  benchmark="simcopilot").root]
    paths = render(two_machine_runs, tmp_path / "report")
    markdown = paths.markdown.read_text()
    heading = next(line for line in markdown.splitlines() if line.startswith("## Against SimCoPilot's published"))
    assert heading.endswith(": mj33rice/SimCoPilot@90c5560 README.md")

    records = json.loads(paths.json.read_text())
    # the 2024 README's LLaMA 3 70B row, per split (rate, ±), as fractions
    expected = dict(zip(SPLITS, [(0.544, 0.05), (0.452, 0.066), (0.561, 0.058), (0.537, 0.057)]))
    compared = [r for r in records if r["published_row"] is not None]
    assert {r["model"] for r in records} == {"llama3-70b"} and len(compared) == len(records)
    for record in compared:
        rate, half = expected[(record["language"], record["mode"])]
        assert record["published_row"] == "2024: LLaMA 3 70B (mj33rice/SimCoPilot@90c5560 README.md)"
        assert record["published_source"] == "mj33rice/SimCoPilot@90c5560 README.md"
        assert (record["published_pass_rate"], record["published_half_width"]) == (rate, half)
    for cells in reference_rows(markdown, "llama3-70b").values():
        assert cells[1] == "2024: LLaMA 3 70B (mj33rice/SimCoPilot@90c5560 README.md)"


def test_a_cell_is_compared_with_the_row_its_model_names_both_ways_with_its_known_differences(tmp_path, monkeypatch):
    for cell in (QWEN, OTHER):
        monkeypatch.setitem(conftest.PROFILE, cell.id, (0.6, 3.0, 0.3))
    store = write_run(tmp_path / "runs", "qwen", H100, [QWEN, OTHER], speed=1.0, seed=3, benchmark="simcopilot")
    manifest = store.read_manifest()
    matrix = {**manifest.matrix, "models": {"qwen32": {"name": "Qwen2.5-Coder-32B-Instruct",
                                                       "published": "2025: Qwen2.5-Coder-32B"},
                                            "gemma3-270m": {"name": "Gemma 3 270M"}}}
    store.write_manifest(manifest.model_copy(update={"matrix": matrix}))
    # re-judged Python infill answers: a third pass, a third fail, a third unscoreable (their reference
    # fails here); five judged against re-recorded outputs
    rng = random.Random(7)
    infill = [s.task_id for s in RunStore(store.root).latest_samples(QWEN)
              if s.phase == "accuracy" and s.task_id.startswith("python/infill/")]
    assert len(infill) == 51
    for n, task_id in enumerate(infill):
        outcome = [Outcome.passed, Outcome.fail, Outcome.unscoreable][n % 3]
        sample = make_sample(QWEN, task_id, "accuracy", rng, outcome=outcome)
        store.append_sample(QWEN, sample.model_copy(
            update={"expected_outputs": ExpectedOutputs.re_recorded if n < 5 else ExpectedOutputs.upstream}))

    paths = render([store.root], tmp_path / "report")
    markdown = paths.markdown.read_text()
    heading = next(line for line in markdown.splitlines() if line.startswith("## Against SimCoPilot's published"))
    assert heading.endswith(": mj33rice/Sim-CoPilot@096d1c4 README.md")
    assert "Together AI" in markdown  # the table's note: its open models were served from a hosted endpoint

    rows = reference_rows(markdown, "qwen32")
    assert set(rows) == {f"{language} {mode}" for language, mode in SPLITS}
    assert not reference_rows(markdown, "gemma3-270m")  # its model names no row
    cells = rows["python infill"]
    assert cells[1] == "2025: Qwen2.5-Coder-32B (mj33rice/Sim-CoPilot@096d1c4 README.md)"
    assert cells[3] == "70.2 ± 4.5"
    assert cells[4].startswith("50.0 ± ") and cells[4].endswith("(n=34)")  # 17 of 34 scoreable
    assert cells[6].startswith("33.3 ± ") and cells[6].endswith("(n=51)")  # 17 of 51, unscoreable as failures
    assert cells[8] == ("17 unscoreable here; 5 judged against re-recorded outputs; "
                        "331 of 382 tasks not asked or unavailable")
    assert rows["java completion"][3] == "56.3 ± 5.7"

    records = json.loads(paths.json.read_text())
    [record] = [r for r in records if r["model"] == "qwen32" and (r["language"], r["mode"]) == ("python", "infill")]
    assert (record["pass_rate"], record["unscoreable"], record["all_tasks"]) == (0.5, 17, 51)
    assert abs(record["all_tasks_pass_rate"] - 1 / 3) < 1e-12
    assert (record["published_pass_rate"], record["published_half_width"]) == (0.702, 0.045)
    assert record["published_source"] == "mj33rice/Sim-CoPilot@096d1c4 README.md"
    # both ways against 70.2 ± 4.5: neither rate lies inside, the verdict follows each way's own interval
    assert record["within_published"] is False and record["within_published_all_tasks"] is False
    assert record["published_verdict"] == verdict(0.5, record["pass_bootstrap_half"], 70.2, 4.5) == cells[5]
    assert record["published_verdict_all_tasks"] == verdict(
        record["all_tasks_pass_rate"], record["all_tasks_bootstrap_half"], 70.2, 4.5) == cells[7]
    assert cells[5] != cells[7]  # the unscoreable third moves the two ways apart
    assert record["published_differences"] == cells[8]
    assert all(r["published_row"] is None for r in records if r["model"] == "gemma3-270m")

    html = paths.html.read_text()
    assert "mj33rice/Sim-CoPilot@096d1c4 README.md</h2>" in html and "Together AI" in html
