"""An ExLlamaV2 cell whose TabbyAPI served one request at a time: its sweep is labelled so in every output."""

from __future__ import annotations

import json

import pytest

from runner.records import Cell
from runner.report import render
from runner.store import RunStore
from tests.report import conftest
from tests.report.conftest import BASELINE, H100, write_run

EXL2 = Cell(model="llama3-70b", runtime="exllama", quantization="exl2-6.0", label="baseline")
LABEL = "unbatched (no flash-attn)"


def exllama_run(tmp_path, monkeypatch, batched: bool):
    monkeypatch.setitem(conftest.PROFILE, EXL2.id, (0.58, 3.0, 0.4))
    store = write_run(tmp_path / "runs", "exl2", H100, [BASELINE, EXL2], speed=1.0, seed=3)
    result = store.read_cell(EXL2)
    # what CellRun records from TabbyAPI's /v1/model (runner.runtimes.exllama.ExLlamaV2.batching)
    store.write_cell(result.model_copy(update={"batched": batched, "batching": None if batched else LABEL}))
    return render([store.root], tmp_path / "report")


@pytest.mark.slow
def test_an_unbatched_exllama_sweep_is_labelled_and_a_batched_one_is_not(tmp_path, monkeypatch):
    paths = exllama_run(tmp_path / "unbatched", monkeypatch, batched=False)
    html = paths.html.read_text()
    assert f"sweep: {LABEL}</span>" in html  # the headline row that carries the sweep's columns
    # the chart's legend names it (matplotlib writes SVG text as glyph paths: its caption and the PNG's
    # legend are what can be read back), and its caption says what a dashed curve is
    throughput = html[html.index("<h3>Throughput vs concurrency</h3>"):]
    assert "Dashed: a server that served one request at a time (unbatched)" in throughput
    rows = {line.split("|")[1].strip(): line for line in paths.markdown.read_text().splitlines()
            if line.startswith("| llama3-70b/") and "req/s" not in line}
    assert any(k.endswith(f"— {LABEL}") and "exllama" in k for k in rows)
    assert not any(LABEL in k for k in rows if "vllm" in k)
    records = json.loads(paths.json.read_text())
    assert {(r["runtime"], r["batched"], r["batching"]) for r in records} == {
        ("exllama", False, LABEL), ("vllm", None, None)}

    paths = exllama_run(tmp_path / "batched", monkeypatch, batched=True)
    for text in (paths.html.read_text(), paths.markdown.read_text(), paths.json.read_text()):
        assert LABEL not in text and "served one request at a time" not in text
    assert {r["batched"] for r in json.loads(paths.json.read_text())} == {True, None}
