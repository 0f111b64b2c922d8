"""A CPU run with a quantization ladder and cache states: the report's first chart is the ladder,
every latency figure names its cache state, and unmeasured energy is a note, never a column."""

from __future__ import annotations

import csv
import random
import re
from datetime import timedelta

import pytest

from runner.benchmarks import load_benchmark
from runner.records import Cell, Outcome, Sample, ServerTimings
from runner.report import render
from runner.store import CellResult, Fingerprint, Manifest, RunStore
from tests.report.conftest import T0, prompt_sha

LADDER = {"f16": (0.55, 9.0), "q8_0": (0.55, 6.0), "q5_k_m": (0.5, 5.0), "q4_k_m": (0.45, 4.4),
          "q3_k_m": (0.3, 3.9), "q2_k": (0.1, 3.2)}  # pass probability, warm e2e median (s)
CPU = Fingerprint(hostname="laptop", gpus=[], cpu="Intel(R) Xeon(R) CPU @ 2.20GHz", cpu_count=2, ram_gib=23.5,
                  os="Debian GNU/Linux 12 (bookworm)", python="3.11.7", packages={"runner": "0.1.0"},
                  runner_version="0.1.0", git_commit="abc", git_dirty=False)
NO_ENERGY = "no GPU energy counter, and no /sys/class/powercap on this host (no RAPL driver, or a virtual machine)"


def sample(cell: Cell, task: str, phase: str, rng: random.Random, *, state: str | None = None,
           passed: bool | None = None, e2e: float = 1.0) -> Sample:
    ttft = e2e / 4 if state == "warm" else e2e / 2
    return Sample(task_id=task, cell_id=cell.id, phase=phase, prompt_style="qwen-fim", cache_state=state,
                  cached_tokens=(0 if state == "cold" else 900) if state else None,
                  prompt_sha256=prompt_sha("qwen-fim", task), raw_text="x = 1", code="x = 1",
                  completion_tokens=40, prompt_tokens=1200, ttft_s=ttft, e2e_s=e2e, tpot_s=(e2e - ttft) / 39,
                  server_timings=ServerTimings(prompt_n=300, prompt_ms=ttft * 900, predicted_n=40,
                                               predicted_ms=(e2e - ttft) * 1000),
                  outcome=(Outcome.passed if passed else Outcome.fail) if phase == "accuracy" else None,
                  cleaned_outcome=(Outcome.passed if passed else Outcome.fail) if phase == "accuracy" else None,
                  finished_at=T0 + timedelta(seconds=1))


def ladder_run(tmp_path, untimed: frozenset[str] = frozenset(), technique_tasks: int = 40) -> RunStore:
    """A demo-like run; the rungs in ``untimed`` have no latency phase (their group left it out), and
    the technique cell is scored on the first ``technique_tasks`` tasks (its group's limit)."""
    tasks = [t.id for t in load_benchmark("starter").available()][:40]
    cells = [Cell(model="qwen2.5-coder-0.5b", runtime="llamacpp", quantization=q, prompt_style="qwen-fim",
                  label="baseline") for q in LADDER]
    # the prompt cache off: a warm request costs what a cold one does
    no_cache = Cell(model="qwen2.5-coder-0.5b", runtime="llamacpp", quantization="q4_k_m", prompt_style="qwen-fim",
                    techniques={"prefix_cache": "off"}, label="no-prefix-cache")
    cells.append(no_cache)
    store = RunStore(tmp_path / "runs" / "demo")
    store.write_manifest(Manifest(name="demo", matrix={"name": "demo", "benchmark": "starter"}, cells=cells,
                                  fingerprint=CPU, started_at=T0, finished_at=T0 + timedelta(minutes=20)))
    rng = random.Random(3)
    for cell in cells:
        p, e2e = LADDER[cell.quantization]
        warm_factor = 2.0 if cell == no_cache else 1.0
        for task in tasks[:technique_tasks] if cell == no_cache else tasks:
            store.append_sample(cell, sample(cell, task, "accuracy", rng, passed=random.Random(task).random() < p,
                                             e2e=e2e))
        for task in tasks[:5] if cell.quantization not in untimed or cell == no_cache else []:
            for state, factor in (("cold", 2.0), ("warm", warm_factor)):
                store.append_sample(cell, sample(cell, task, "latency", rng, state=state,
                                                 e2e=e2e * factor * rng.uniform(0.95, 1.05)))
        store.write_cell(CellResult(cell=cell, status="done", backend="local", load_seconds=3.0,
                                    peak_rss_mib=600.0 + 100 * LADDER[cell.quantization][1],
                                    resources_absent={"energy": NO_ENERGY, "peak_gpu_memory": "no NVIDIA GPU (NVML found none)"}))
    return store


def test_the_ladder_is_the_first_chart_and_latency_names_its_cache_state(tmp_path):
    store = ladder_run(tmp_path)
    paths = render([store.root], tmp_path / "report")
    html = paths.html.read_text()
    glance = html[html.index('id="glance"'):html.index('id="headline"')]
    assert glance.index("Quantization ladder") < glance.index("Latency–accuracy trade-off")
    ticks = re.findall(r"(f16|q8_0|q5_k_m|q4_k_m|q3_k_m|q2_k)\s*</text>", glance)
    assert ticks[:6] == list(LADDER)  # most bits on the left
    markdown = paths.markdown.read_text()
    assert markdown.index("plots/ladder.png") < markdown.index("plots/pareto.png")
    assert "output tokens / e2e seconds from the latency/warm samples" in markdown
    # the cache state on every latency figure; the cold TTFT beside the warm one
    headline = html[html.index('id="headline"'):html.index('id="techniques"')]
    assert "TTFT p50 cold" in headline and headline.count("latency/warm (n=5, cached tokens p50 900)") == 7
    # the technique's speed verdict names the cache state; its TTFT is compared in both states
    techniques = html[html.index('id="techniques"'):html.index('id="quantization"')]
    assert re.search(r"slower ×(1\.9\d|2\.0\d) \[\d\.\d\d, \d\.\d\d\] \(warm cache\)", techniques)
    assert re.search(r"cold ×(0\.9\d|1\.0\d)", techniques) and re.search(r"warm ×(1\.9\d|2\.0\d)", techniques)
    # measured: the server's memory; not measured: energy and GPU memory, said once, with the reason
    assert "server peak RSS MiB" in headline and "peak GPU MiB" not in headline and "J/task" not in headline
    assert NO_ENERGY in html
    with open(paths.csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert "energy_per_task_j" not in rows[0] and "peak_gpu_memory_mib" not in rows[0]
    assert {r["latency_source"] for r in rows} == {"latency/warm"} and all(float(r["ttft_cold_p50_s"]) > 0 for r in rows)
    assert all(float(r["peak_rss_mib"]) > 600 for r in rows)


def test_a_ladder_whose_rungs_skip_the_latency_phase_compares_speed_from_the_accuracy_phase(tmp_path):
    """The demo times its techniques only: every rung's speed then comes from the same (accuracy)
    phase, the timed q4_k_m rung's included, never a mix of phases on one line."""
    from runner.report import data, tables
    from runner.report.plots import ladders
    from runner.report.headline import LatencySummary

    store = ladder_run(tmp_path, untimed=frozenset(LADDER) - {"q4_k_m"})
    paths = render([store.root], tmp_path / "report")
    assert "output tokens / e2e seconds from the accuracy samples" in paths.markdown.read_text()
    runs = data.load_runs([store.root])
    (group,) = ladders(tables.build(runs, data.load_tasks(runs)).headline)
    q4 = next(r for r in group if r.cell.cell.quantization == "q4_k_m")
    assert q4.latency.source == "latency/warm"  # its own table row still shows its timed figures
    speeds = [LatencySummary.of(r.cell, "accuracy").output_tokens_per_s for r in group]
    # 40 tokens over each rung's accuracy-phase e2e: faster as the bits fall
    assert speeds == pytest.approx([40 / e2e for _, e2e in LADDER.values()])


def test_the_trade_off_compares_cells_scored_on_the_same_tasks_with_latency_from_one_phase(tmp_path):
    """A technique scored on 8 of the 40 tasks is not ranked against the rungs (its pass rate is over
    other tasks): it is left off the chart, said so, and compared with its baseline in its table."""
    from runner.report import data, tables

    store = ladder_run(tmp_path, untimed=frozenset({"q8_0"}), technique_tasks=8)
    runs = data.load_runs([store.root])
    built = tables.build(runs, data.load_tasks(runs))
    trade = built.highlights.trade
    assert [p.cell.cell.quantization for p in trade.points] == list(LADDER)
    assert [r.cell.cell.label for r in trade.left_out] == ["no-prefix-cache"]
    # q8_0 was never timed one at a time: every point's latency is then the accuracy phase's
    assert trade.source == "accuracy" and {p.latency.source for p in trade.points} == {"accuracy"}
    assert built.highlights.fastest[0].cell.cell.quantization == "q2_k"  # the fewest bits, the shortest e2e
    (comparison,) = built.techniques
    assert comparison.pairs == 8  # its own table pairs it with the baseline on the 8 it answered
    markdown = render([store.root], tmp_path / "report").markdown.read_text()
    assert "latency from the accuracy samples of every one" in markdown
    assert "1 cell(s) scored on fewer tasks are compared with their baseline task by task" in markdown


def test_chart_captions_name_their_sources_without_template_residue(tmp_path):
    paths = render([ladder_run(tmp_path).root], tmp_path / "report")
    markdown = paths.markdown.read_text()
    assert "latency/warm samples (one request at a time, warm cache)" in markdown
    assert "…" not in markdown and "when latency/" not in markdown


def test_the_pareto_charts_log_axis_has_readable_ticks_even_inside_one_decade(tmp_path):
    from runner.report.plots import _log_ticks

    assert _log_ticks(0.77, 1.3) == [0.8, 0.9, 1, 1.2]  # 1-2-5 steps would give a single tick here
    assert _log_ticks(0.5, 20) == [0.5, 1, 2, 5, 10, 20]
    store = ladder_run(tmp_path)
    html = render([store.root], tmp_path / "report").html.read_text()
    figure = html[html.index('id="plot-pareto"'):]
    figure = figure[:figure.index("</figure>")]
    ticks = re.findall(r"<text[^>]*>(\d[\d.]* s)</text>", figure)
    assert len(ticks) >= 3 and ticks == sorted(ticks, key=lambda t: float(t[:-2]))


def test_crowded_chart_labels_never_pile_up():
    from matplotlib.figure import Figure

    from runner.report.plots import _place_labels

    fig = Figure(figsize=(11, 5.2), layout="constrained")
    ax = fig.add_subplot()
    points = [(3.2 + 0.01 * i, 40 + 0.3 * i) for i in range(6)]  # six rungs within a marker of each other
    ax.scatter(*zip(*points))
    ax.set_xlim(2, 6)
    ax.set_ylim(0, 100)
    boxes = _place_labels(fig, ax, points, [f"rung q{i}_k_m" for i in range(6)])
    assert len(boxes) == 6
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
