"""The terminal view of a run: long error texts are capped, as in every other output."""

from __future__ import annotations

import io

from rich.console import Console

from runner.progress import RichEvents
from runner.records import Cell, Outcome, Sample
from runner.store import CellResult

CELL = Cell(model="m", runtime="llamacpp", quantization="q4_k_m")


def test_a_300_kb_reason_or_request_error_is_capped_on_the_terminal():
    out = io.StringIO()
    events = RichEvents(Console(file=out, width=200))
    events.cell_finished(CellResult(cell=CELL, status="failed", reason="server died: " + "x" * 300_000))
    events.sample_written(CELL, Sample(task_id="t/1", cell_id=CELL.id, prompt_style="instruct", prompt_sha256="0" * 64,
                                       outcome=Outcome.error, error="ReadTimeout " + "y" * 300_000))
    text = out.getvalue()
    assert "server died" in text and "ReadTimeout" in text
    assert len(text) < 10_000 and "more characters]" in text
