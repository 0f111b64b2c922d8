"""What the rehearsal's run must show: every cell done and every phase with samples and figures.

    python -m gpu_rehearsal.check_run RUN_DIR REPORT_DIR [--batched yes|no]

Random weights make the answers meaningless, so nothing here looks at pass rates: each cell must be
done, each phase (accuracy, repeat, latency, sweep) must have samples with TTFT, TPOT and the
server's own token counts, the cell must carry NVML's energy and peak GPU memory, the exllama
cells must say that they have no ``cold`` state, and the report must be rendered with both bit widths.
With ``--batched``, each cell's record must say the mode the rehearsal chose (``batched`` from what
TabbyAPI reported), and the report must label an unbatched sweep so and a batched one not.
One line per cell; exit status 1 on any failure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def problems_of(run_dir: Path, report_dir: Path, batched: bool | None = None) -> tuple[list[str], list[str]]:
    """(lines to print, problems) for the run and its report; ``batched``: the mode the cells must record."""
    from runner.store import RunStore

    store = RunStore(run_dir)
    lines, problems = [], []
    results = store.cell_results()
    if not results:
        problems.append(f"{run_dir}: no cells")
    for result in results:
        cid = result.cell.id
        if result.status != "done":
            problems.append(f"{cid}: {result.status} ({result.reason})")
            continue
        samples = [s for s in store.samples(result.cell) if s.error is None]
        phases = {s.phase for s in samples}
        for phase in ("accuracy", "repeat", "latency", "sweep"):
            if phase not in phases:
                problems.append(f"{cid}: no {phase} samples")
        timed = [s for s in samples if s.phase == "latency"]
        for name in ("ttft_s", "tpot_s", "completion_tokens", "prompt_tokens"):
            if not timed or any(getattr(s, name) is None for s in timed):
                problems.append(f"{cid}: a latency sample has no {name}")
        if not timed or any(s.server_timings is None or s.server_timings.predicted_n is None for s in timed):
            problems.append(f"{cid}: a latency sample has no server token counts (TabbyAPI's usage)")
        if any(s.cache_state == "cold" for s in timed) or "no cold" not in (result.reason or ""):
            problems.append(f"{cid}: the 'no cold state' note is missing ({result.reason!r})")
        if result.energy_joules is None or result.peak_gpu_memory_mib is None:
            problems.append(f"{cid}: energy {result.energy_joules} J, peak GPU memory {result.peak_gpu_memory_mib} MiB")
        if not result.sweep:
            problems.append(f"{cid}: no sweep points")
        if batched is not None and result.batched is not batched:
            problems.append(f"{cid}: TabbyAPI reported batched={result.batched} ({result.batching}), "
                            f"the rehearsal expected batched={batched}")
        errors = sum(1 for s in store.samples(result.cell) if s.error is not None)
        ttft = sorted(s.ttft_s for s in timed if s.ttft_s is not None)
        lines.append(f"cell {cid}: load_s {result.load_seconds or 0:.1f} samples {len(samples)} errors {errors} "
                     f"phases {','.join(sorted(phases))} ttft_s {ttft[len(ttft) // 2] if ttft else None} "
                     f"energy_j {result.energy_joules} peak_gpu_mib {result.peak_gpu_memory_mib} "
                     f"batched {result.batched} ({result.batching or 'paged'})")
    results_json = report_dir / "results.json"
    if not results_json.is_file() or not (report_dir / "index.html").is_file():
        problems.append(f"{report_dir}: no results.json or index.html")
    else:
        text = results_json.read_text(encoding="utf-8")
        for quant in ("exl2-4.0", "exl2-6.0"):
            if quant not in text:
                problems.append(f"{results_json}: no row for {quant}")
        labelled = "unbatched (no flash-attn)" in (report_dir / "index.html").read_text(encoding="utf-8")
        if batched is not None and labelled == batched:
            problems.append(f"{report_dir}/index.html: the sweep is {'' if labelled else 'not '}labelled "
                            f"unbatched, but the run was {'batched' if batched else 'unbatched'}")
        lines.append(f"report {report_dir}: {len(json.loads(text))} rows")
    return lines, problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    batched = None
    if len(args) == 4 and args[2] == "--batched" and args[3] in ("yes", "no"):
        batched, args = args[3] == "yes", args[:2]
    if len(args) != 2:
        print("usage: python -m gpu_rehearsal.check_run RUN_DIR REPORT_DIR [--batched yes|no]", file=sys.stderr)
        return 2
    lines, problems = problems_of(Path(args[0]), Path(args[1]), batched)
    if batched is not None:
        lines.insert(0, f"mode: {'batched (paged attention, flash-attn)' if batched else 'unbatched (no flash-attn)'}")
    for line in lines:
        print(line)
    for problem in problems:
        print(f"FAIL {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
