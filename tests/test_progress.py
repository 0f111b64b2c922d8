"""The terminal view of a run: long error texts are capped, as in every other output."""

from __future__ import annotations

import io

from rich.console import Console

from runner.records import Cell, Outcome, Sample
from runner.running.progress import RichEvents
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


def test_off_a_terminal_progress_is_a_log_line_with_the_eta_every_n_items_and_at_the_end():
    from runner.running.progress import CountProgress

    lines, now = [], [100.0]
    with CountProgress("scored", 60, lines.append, every=25, seconds=1000, console=Console(file=io.StringIO()),
                       clock=lambda: now[0]) as counter:
        for i in range(60):
            now[0] += 2.0  # two seconds an answer
            counter.advance(i % 2 == 0)
    assert lines == ["25/60 scored, 13 passed, 50 s elapsed, ETA 1 min 10 s",
                     "50/60 scored, 25 passed, 1 min 40 s elapsed, ETA 20 s",
                     "60/60 scored, 30 passed, 2 min 00 s elapsed"]


def test_a_slow_item_still_gets_a_line_after_the_interval():
    from runner.running.progress import CountProgress

    lines, now = [], [0.0]
    with CountProgress("checked", 1163, lines.append, console=Console(file=io.StringIO()),
                       clock=lambda: now[0]) as counter:
        now[0] = 31.0
        counter.advance(True)
    assert lines == ["1/1163 checked, 1 passed, 31 s elapsed, ETA 10 h 00 min"]
