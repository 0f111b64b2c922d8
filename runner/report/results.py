"""The flat results rows (results.csv, results.json): one per cell × language × mode, every figure a column."""

from __future__ import annotations

from typing import Any

from runner.errors import cap
from runner.report.headline import HeadlineRow, language_modes, sweep_levels
from runner.report.rates import PassRate
from runner.report.reference import ReferenceRow


# -- the flat results rows (CSV, JSON) -------------------------------------------------------------
def _techniques(techniques: dict[str, str]) -> str:
    return ";".join(f"{k}={v}" for k, v in sorted(techniques.items()))


def result_rows(rows: list[HeadlineRow], refs: list[ReferenceRow]) -> list[dict[str, Any]]:
    """One flat row per cell × language × mode with every figure, same columns in every row."""
    keys = language_modes(rows)
    levels = sweep_levels(rows)
    ref_of = {(r.cell.label, r.language, r.mode): r for r in refs}
    out = []
    for row in rows:
        cell, result, lat = row.cell, row.cell.result, row.latency
        noise = cell.noise
        concurrent, serial = (noise.concurrent, noise.serial) if noise else (None, None)
        for language, mode in keys:
            best = row.best.get((language, mode)) or PassRate.of([])
            every = row.best_all.get((language, mode)) or PassRate.of([])
            clean = row.cleaned.get((language, mode)) or PassRate.of([])
            ref = ref_of.get((cell.label, language, mode))
            record: dict[str, Any] = {
                "run": cell.run.name, "machine": cell.run.machine, "cell": cell.label, "cell_id": cell.cell.id,
                "model": cell.cell.model, "runtime": cell.cell.runtime, "quantization": cell.cell.quantization,
                "techniques": _techniques(cell.cell.techniques), "prompt_style": cell.cell.prompt_style,
                "status": result.status, "status_reason": cap(result.reason),
                "language": language, "mode": mode,
                "tasks": best.n, "passed": best.passed, "pass_rate": best.rate,
                "pass_half_width": best.half_width, "pass_bootstrap_half": best.boot_half,
                "pass_normal_low": best.normal_low,
                "pass_normal_high": best.normal_high, "pass_wilson_low": best.wilson_low,
                "pass_wilson_high": best.wilson_high,
                # the paper's denominator: every task asked, an unscoreable one counted as a failure
                "unscoreable": best.unscoreable, "all_tasks": every.n, "all_tasks_pass_rate": every.rate,
                "all_tasks_bootstrap_half": every.boot_half,
                "re_recorded_samples": row.re_recorded.get((language, mode), 0),
                "cleaned_passed": clean.passed, "cleaned_pass_rate": clean.rate,
                "cleaned_half_width": clean.half_width, "cleaned_wilson_low": clean.wilson_low,
                "cleaned_wilson_high": clean.wilson_high,
                "cell_tasks": row.overall.n, "cell_pass_rate": row.overall.rate,
                "cell_wilson_low": row.overall.wilson_low, "cell_wilson_high": row.overall.wilson_high,
                "request_errors": row.errors,
                # the cell's answers judged afresh, and those that took an identical answer's verdict
                "cell_answers_judged": row.judging.judged, "cell_answers_reused": row.judging.reused,
                "latency_source": lat.source, "latency_samples": lat.samples,
                "ttft_cold_p50_s": lat.ttft_cold_p50, "cached_tokens_p50": lat.cached_tokens_p50,
                "ttft_p50_s": lat.ttft_p50, "ttft_p95_s": lat.ttft_p95, "tpot_p50_s": lat.tpot_p50,
                "itl_p50_s": lat.itl_p50, "e2e_p50_s": lat.e2e_p50,
                # the median's distribution-free 95% interval (the range below six timed requests)
                "e2e_p50_low_s": lat.e2e_p50_low, "e2e_p50_high_s": lat.e2e_p50_high, "e2e_p95_s": lat.e2e_p95,
                "output_tokens_per_s": lat.output_tokens_per_s,
                # whether the server batched concurrent requests (None: the runtime always does)
                "batched": result.batched, "batching": result.batching,
                "load_s": result.load_seconds, "peak_gpu_memory_mib": result.peak_gpu_memory_mib,
                "peak_rss_mib": result.peak_rss_mib, "energy_per_task_j": row.energy_per_task_j,
                "energy_source": result.energy_source,
                # answers generated but not judged: the most at once, and those still waiting
                "eval_backlog_peak": result.eval_backlog_peak, "eval_pending": result.eval_pending,
                "nodes": " ".join(dict.fromkeys(p.node for p in result.placements)),
                # the cell's noise floor (runner.measuring.noise): its repeated tasks, at the accuracy phase's
                # concurrency and one at a time, and how many answers and verdicts changed
                "repeat_tasks": concurrent.tasks if concurrent else None,
                "repeat_answers_changed": concurrent.answers_changed if concurrent else None,
                "repeat_verdicts_changed": concurrent.verdicts_changed if concurrent else None,
                "repeat_serial_tasks": serial.tasks if serial else None,
                "repeat_serial_answers_changed": serial.answers_changed if serial else None,
                "repeat_serial_verdicts_changed": serial.verdicts_changed if serial else None,
            }
            for level in levels:
                rps, tps = row.sweep.get(level, (None, None))
                record[f"requests_per_s_c{level}"] = rps
                record[f"output_tokens_per_s_c{level}"] = tps
            # rounded: the published values have one decimal of a percent, and /100 adds float noise
            record["published_pass_rate"] = round(ref.published / 100, 6) if ref else None
            record["published_half_width"] = round(ref.published_half_width / 100, 6) if ref else None
            record["within_published"] = ref.within if ref else None
            record["within_published_all_tasks"] = ref.within_all if ref else None
            record["published_row"] = f"{ref.row} ({ref.source})" if ref else None
            record["published_source"] = ref.source if ref else None
            record["published_verdict"] = ref.verdict if ref else None
            record["published_verdict_all_tasks"] = ref.verdict_all if ref else None
            record["published_differences"] = ref.differences if ref else None
            out.append(record)
    # a measurement no cell has is left out, never shown as an always-empty column; the report
    # says why it is missing (CellResult.resources_absent)
    empty = [k for k in _OPTIONAL_COLUMNS if out and all(r.get(k) is None for r in out)]
    return [{k: v for k, v in r.items() if k not in empty} for r in out]


#: columns that only some hosts or runtimes can fill
_OPTIONAL_COLUMNS = ("batched", "batching", "peak_gpu_memory_mib", "peak_rss_mib", "energy_per_task_j", "energy_source",
                     "ttft_cold_p50_s", "cached_tokens_p50", "repeat_tasks", "repeat_answers_changed",
                     "repeat_verdicts_changed", "repeat_serial_tasks", "repeat_serial_answers_changed",
                     "repeat_serial_verdicts_changed")
