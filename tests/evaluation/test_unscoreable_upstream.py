"""Upstream SimCoPilot's Image_Filtering through ``runner score``: its tasks are unscoreable, with why.

The program reads ``./alice.avi``, which is in no commit of upstream's repository: no answer can
pass here, so every answer to it is ``unscoreable`` (never the model's failure), and the table gives
the split both ways. Judged in the local sandbox, on upstream's own cascade (the headline).
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from runner.benchmarks import load_benchmark
from runner.cli import main
from runner.evaluation.sandbox import capabilities
from tests.conftest import require


def test_image_filterings_references_are_unscoreable_naming_the_missing_video(simcopilot, tmp_path):
    require(capabilities().complete, "a complete local sandbox")
    bench = load_benchmark("simcopilot")
    tasks = [t for t in bench.select(program="Image_Filtering") if t.available][:3]
    simplex = [t for t in bench.select(program="simplex_method") if t.available][:2]
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"task_id": t.id, "text": t.reference}) + "\n" for t in tasks + simplex))

    result = CliRunner().invoke(main, ["score", str(answers), "--benchmark", "simcopilot", "--sandbox", "local", "--json", "--workers", "2"])

    assert result.exit_code == 0, result.output[-3000:]
    records = {r["task_id"]: r for r in map(json.loads, result.stdout.splitlines())}
    for task in tasks:
        record = records[task.id]
        assert record["outcome"] == "unscoreable" and record["cascade"] == "upstream"
        assert "alice.avi" in record["unscoreable_reason"] and "a data file is missing" in record["unscoreable_reason"]
    for task in simplex:  # the other program's references pass, against upstream's expected outputs
        assert records[task.id]["outcome"] == "pass" and records[task.id]["expected_outputs"] == "upstream"
    assert "unscoreable: Image_Filtering" in result.stderr

    table = CliRunner().invoke(main, ["score", str(answers), "--benchmark", "simcopilot", "--sandbox", "local", "--workers", "2"], env={"COLUMNS": "220"})
    assert table.exit_code == 0, table.output[-3000:]
    # python infill: the simplex answers pass over the scoreable tasks; over all tasks they are diluted
    [row] = [line for line in table.stdout.splitlines() if "python infill" in line]
    cells = [c.strip() for c in row.split("│") if c.strip()]
    infill = [t for t in tasks + simplex if t.mode.value == "infill"]
    unscoreable = sum(t.program == "Image_Filtering" for t in infill)
    assert cells[1:5] == [str(len(infill)), str(unscoreable), str(len(infill) - unscoreable), "100.0"]
    assert f"{100 * (len(infill) - unscoreable) / len(infill):.1f}" in cells
