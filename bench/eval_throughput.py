"""Evaluation throughput: seconds per task per program, cold and warm, in each sandbox; and the Java
check's two paths side by side.

SimCoPilot (``--benchmark simcopilot``, the default) is judged as a run judges it: upstream's
cascade (the headline), each program's reference (``--solution reference``: the oracle's answer, a
fenced block) or nothing (``--solution empty``) as the answer. Per program, a fresh sandbox and a
fresh evaluator, then:

- ``setup``: the sandbox and evaluator made (Docker: the image looked up; upstream's code loaded);
- ``calibration``: the program's own source timed once (``Evaluator.reference_seconds``: what every
  scaled limit grows from; a run pays it once per program, in its environment check);
- ``cold``: the first task's judging; ``warm``: the mean of the others (``--tasks N`` per program,
  spread over its infill and completion tasks).

    .venv/bin/python bench/eval_throughput.py --sandbox local|docker|both [--tasks 4] [--program NAME ...]
        [--docker-image runner-sandbox:minimal] [--out bench/results/eval-throughput.json]

``--java-paths`` puts every available Java task through upstream's Java check both ways
(``upstream.JAVA_PATHS``): ``javac+java`` (upstream's harness: ``javac``, then a second JVM for the
JUnit console launcher) and ``one-jvm`` (ours: the same javac arguments in-process, then the same
launcher run). Each task is judged by both, in alternating order, and the verdicts compared: the
outcome, the stage, the cleaned stage's outcome, upstream's pass ratio and the kind of every answer
its test runs gave upstream's harness (``java_paths.result_kind``: stdout, compile error, timeout,
error, ...), and for a compile error javac's text too. ``--record FILE`` appends one line per task and a rerun skips what it holds
(the whole Java oracle is hours on two cores).

    .venv/bin/python bench/eval_throughput.py --java-paths [--record java-paths.jsonl] [--workers 1]

``--benchmark starter`` keeps the starter set's measurement (tasks/s at 1 and N workers, and the
starter's own ``java_fast`` against javac+java). The last line is ``key=value`` figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runner.benchmarks import load_benchmark, scoring_root
from runner.evaluation import Evaluator, check_solution, upstream
from runner.evaluation.java_paths import JavaPathEvaluator, summary
from runner.evaluation.java_paths import differences as compare
from runner.evaluation.oracle import solution_text
from runner.records import Cascade, Language, Outcome, Task

#: upstream's own figures: the tasks of a full SimCoPilot cell (both languages, both modes)
CELL_TASKS = 1163


def make_sandbox(kind: str, image: str | None):
    from runner.evaluation.docker_sandbox import DockerSandbox, choose_sandbox

    if kind == "docker" and image:
        return DockerSandbox(image=image)
    return choose_sandbox(kind)


def make_evaluator(bench, kind: str, image: str | None, java_path: str | None = None) -> JavaPathEvaluator:
    """A fresh sandbox and evaluator judging by upstream's cascade only, its Java check by ``java_path``."""
    return JavaPathEvaluator(bench.programs, sandbox=make_sandbox(kind, image), junit_console=bench.junit_jar,
                             cascade=Cascade.upstream, both=False, upstream_root=scoring_root(bench),
                             java_fast=(java_path or upstream.DEFAULT_JAVA_PATH) == "one-jvm")


def spread(tasks: list[Task], n: int) -> list[Task]:
    """``n`` tasks of one program spread over its list (infill and completion alike)."""
    if n >= len(tasks):
        return tasks
    step = len(tasks) / n
    return [tasks[int(i * step)] for i in range(n)]


def answer(task: Task, solution: str) -> str:
    return solution_text(task, solution, Cascade.upstream)


# -- per program, cold and warm ----------------------------------------------------------------------


def per_program(bench, kind: str, image: str | None, programs: list[str], n: int, solution: str,
                java_path: str | None) -> list[dict]:
    rows = []
    for name in programs:
        tasks = spread(bench.select(program=name, available_only=True), n)
        if not tasks:
            continue
        program = bench.programs[name]
        started = time.monotonic()
        evaluator = make_evaluator(bench, kind, image, java_path)
        setup = time.monotonic() - started
        started = time.monotonic()
        reference = evaluator.reference_seconds(program)
        calibration = time.monotonic() - started
        row = {"sandbox": kind, "program": name, "language": program.language.value,
               "tasks_in_cell": len(bench.select(program=name)), "setup_s": round(setup, 2),
               "calibration_s": round(calibration, 2)}
        if reference is None:
            row.update(runnable=False, why="its reference does not run cleanly in this sandbox "
                                           "(a library or data file missing): every verdict would be unscoreable")
            print(f"{kind:>6} {name:<24} not runnable here ({calibration:.1f} s to find out)", flush=True)
            rows.append(row)
            continue
        seconds, outcomes = [], Counter()
        for task in tasks:
            verdict = evaluator.evaluate(task, answer(task, solution))
            seconds.append(verdict.seconds)
            outcomes[verdict.outcome.value] += 1
        warm = seconds[1:]
        row.update(runnable=True, measured=len(tasks), cold_s=round(seconds[0], 2),
                   warm_s=round(statistics.fmean(warm), 2) if warm else None,
                   warm_min_s=round(min(warm), 2) if warm else None, warm_max_s=round(max(warm), 2) if warm else None,
                   outcomes=dict(outcomes))
        print(f"{kind:>6} {name:<24} {len(tasks):>2} tasks  setup {setup:5.2f} s  calibration {calibration:6.2f} s  "
              f"cold {seconds[0]:6.2f} s  warm {row['warm_s'] if warm else float('nan'):6.2f} s/task  "
              f"{dict(outcomes)}", flush=True)
        rows.append(row)
    return rows


# -- the two Java paths ------------------------------------------------------------------------------


def judge_both(evaluators: dict[str, JavaPathEvaluator], task: Task, solution: str, first: int) -> dict:
    order = list(upstream.JAVA_PATHS)
    if first % 2:
        order.reverse()
    line: dict = {"task_id": task.id, "program": task.program, "solution": solution, "first": order[0]}
    for path in order:
        verdict, kinds = evaluators[path].judge(task, answer(task, solution))
        line[path] = {**summary(verdict, kinds), "seconds": round(verdict.seconds, 3)}
        line[path]["detail"] = line[path]["detail"][-1500:]
    return line


def differences(line: dict) -> list[str]:
    """How a record line's two verdicts differ (``java_paths.differences``)."""
    return compare(*(line[p] for p in upstream.JAVA_PATHS))


def round_robin(tasks: list[Task]) -> list[Task]:
    """Tasks interleaved across programs, so that a partial run covers every program."""
    by: dict[str, list[Task]] = defaultdict(list)
    for task in tasks:
        by[task.program].append(task)
    out = []
    while any(by.values()):
        for name in sorted(by):
            if by[name]:
                out.append(by[name].pop(0))
    return out


def java_paths(bench, kind: str, image: str | None, solutions: list[str], record: Path | None, workers: int,
               limit: int | None, programs: list[str] | None) -> dict:
    tasks = round_robin([t for t in bench.select(language="java", available_only=True)
                         if not programs or t.program in programs])
    done: dict[tuple[str, str], dict] = {}
    if record is not None and record.exists():
        for text in record.read_text(encoding="utf-8").splitlines():
            if text.strip():
                line = json.loads(text)
                done[(line["task_id"], line["solution"])] = line
    todo = [(t, s) for s in solutions for t in tasks if (t.id, s) not in done]
    if limit is not None:
        todo = todo[:limit]
    print(f"java paths: {len(tasks)} Java tasks x {len(solutions)} solutions, {len(done)} in the record, "
          f"{len(todo)} to judge, {workers} workers, sandbox {kind}", flush=True)
    evaluators = {path: make_evaluator(bench, kind, image, path) for path in upstream.JAVA_PATHS}
    write = threading.Lock()

    def one(n: int, task: Task, solution: str) -> dict:
        line = judge_both(evaluators, task, solution, n)
        with write:
            if record is not None:
                with record.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(line) + "\n")
            a, b = (line[p] for p in upstream.JAVA_PATHS)
            diff = differences(line)
            print(f"{task.id} {solution}: {a['outcome']} {a['seconds']:.2f} s / {b['outcome']} {b['seconds']:.2f} s"
                  + (f"  DIFFERS: {'; '.join(diff)}" if diff else ""), flush=True)
        return line

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for line in pool.map(lambda item: one(*item), [(n, t, s) for n, (t, s) in enumerate(todo)]):
            done[(line["task_id"], line["solution"])] = line
    return summarize_paths([done[k] for k in sorted(done)], len(tasks), solutions)


def summarize_paths(lines: list[dict], java_tasks: int, solutions: list[str]) -> dict:
    a_name, b_name = upstream.JAVA_PATHS
    summary: dict = {"java_tasks": java_tasks, "solutions": solutions, "judged": len(lines), "per_solution": {},
                     "per_program": {}, "differing": []}
    for solution in solutions:
        mine = [line for line in lines if line["solution"] == solution]
        summary["per_solution"][solution] = {
            "judged": len(mine), "agree": sum(not differences(line) for line in mine),
            "outcomes": dict(Counter(line[a_name]["outcome"] for line in mine)),
            "result_kinds": dict(Counter(",".join(line[a_name]["result_kinds"]) for line in mine))}
    for line in lines:
        diff = differences(line)
        if diff:
            summary["differing"].append({"task_id": line["task_id"], "solution": line["solution"], "why": diff,
                                         a_name: line[a_name]["detail"][-400:], b_name: line[b_name]["detail"][-400:]})
    by: dict[str, list[dict]] = defaultdict(list)
    for line in lines:
        by[line["program"]].append(line)
    for name, mine in sorted(by.items()):
        a = [line[a_name]["seconds"] for line in mine]
        b = [line[b_name]["seconds"] for line in mine]
        summary["per_program"][name] = {"judged": len(mine), f"{a_name}_s": round(statistics.fmean(a), 2),
                                        f"{b_name}_s": round(statistics.fmean(b), 2),
                                        "ratio_median": round(statistics.median(y / x for x, y in zip(a, b) if x > 0), 3)}
    a = [line[a_name]["seconds"] for line in lines]
    b = [line[b_name]["seconds"] for line in lines]
    if lines:
        summary.update({f"{a_name}_mean_s": round(statistics.fmean(a), 2), f"{b_name}_mean_s": round(statistics.fmean(b), 2),
                        "paired_saving_median_s": round(statistics.median(x - y for x, y in zip(a, b)), 2),
                        "ratio_median": round(statistics.median(y / x for x, y in zip(a, b) if x > 0), 3)})
    summary["agree"] = sum(v["agree"] for v in summary["per_solution"].values())
    return summary


# -- a cell, extrapolated ------------------------------------------------------------------------------


def extrapolate(bench, rows: list[dict], cores: int, recorded: Path | None) -> dict:
    """A full cell's judging time on ``cores`` cores: each program's warm s/task measured here, else
    (a program this sandbox cannot run) its mean in the recorded oracle (0 where the oracle found it
    unscoreable), else the mean of its language's programs there; times its tasks in the cell, plus
    one calibration per program; one check per core."""
    measured = {r["program"]: r for r in rows if r.get("runnable")}
    from_record: dict[str, list[float]] = defaultdict(list)
    unscoreable: set[str] = set()  # judged without a run (the environment check's verdict)
    if recorded is not None and recorded.exists():
        for text in recorded.read_text(encoding="utf-8").splitlines():
            if text.strip():
                line = json.loads(text)
                if line["outcome"] == "unscoreable":
                    unscoreable.add(line["program"])
                else:
                    from_record[line["program"]].append(line["seconds"])
    by_language: dict[str, list[float]] = defaultdict(list)
    for name, values in from_record.items():
        by_language[bench.programs[name].language.value].append(statistics.fmean(values))
    total, calibration, parts = 0.0, 0.0, {}
    for name, program in sorted(bench.programs.items()):
        n = len(bench.select(program=name))
        if name in measured:
            per, source = measured[name]["warm_s"] or measured[name]["cold_s"], "measured"
            calibration += measured[name]["calibration_s"]
        elif name in unscoreable and not from_record.get(name):
            per, source = 0.0, "unscoreable in the recorded oracle: judged without a run"
        elif from_record.get(name):
            per, source = statistics.fmean(from_record[name]), "recorded oracle (docker, full image)"
            calibration += per
        else:
            values = by_language.get(program.language.value) or [0.0]
            per, source = statistics.fmean(values), f"mean of the recorded oracle's {program.language.value} programs"
            calibration += per
        total += n * per
        parts[name] = {"tasks": n, "s_per_task": round(per, 2), "source": source}
    tasks = sum(p["tasks"] for p in parts.values())
    serial = total + calibration
    return {"tasks": tasks, "cores": cores, "serial_s": round(serial), "wall_s": round(serial / cores),
            "wall_min": round(serial / cores / 60, 1), "programs": parts,
            "basis": "the reference answers (one cascade stage each); an answer that fails every stage runs up to "
                     "three, deduplicated; checks spread one per core, no other load"}


# -- the starter set -----------------------------------------------------------------------------------


def starter(args) -> None:
    bench = load_benchmark("starter")

    def measure(solution: str, workers: int, java_fast: bool, language: str | None = None):
        evaluator = Evaluator(bench.programs, junit_console=bench.junit_jar, java_fast=java_fast, scale_time=False)
        tasks = bench.select(language=language, available_only=True)
        started = time.monotonic()
        checks = check_solution(evaluator, tasks, solution, workers=workers)
        return checks, time.monotonic() - started

    def mean_seconds(checks, language: Language) -> float:
        values = [c.seconds for c in checks if c.language is language]
        return statistics.fmean(values) if values else float("nan")

    print(f"benchmark starter, {len(bench.available())} tasks, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    for workers in sorted({1, args.workers}):
        checks, seconds = measure(args.solution, workers, java_fast=False)
        passed = sum(c.outcome is Outcome.passed for c in checks)
        print(f"workers={workers}: {len(checks)} tasks in {seconds:.1f} s = {len(checks) / seconds:.2f} tasks/s "
              f"({passed} pass); mean per task: python {mean_seconds(checks, Language.python):.2f} s, "
              f"java {mean_seconds(checks, Language.java):.2f} s")
    same_all, fast_means, slow_means = True, [], []
    for solution in ("reference", "empty"):
        slow, _ = measure(solution, args.workers, java_fast=False, language="java")
        fast, _ = measure(solution, args.workers, java_fast=True, language="java")
        same = [a.outcome for a in slow] == [b.outcome for b in fast]
        same_all &= same
        slow_means.append(mean_seconds(slow, Language.java))
        fast_means.append(mean_seconds(fast, Language.java))
        print(f"java {solution}: javac+java {slow_means[-1]:.2f} s/task, one JVM {fast_means[-1]:.2f} s/task; "
              f"verdicts identical: {same}")
    print(f"benchmark=starter javac_java_s={statistics.fmean(slow_means):.2f} "
          f"one_jvm_s={statistics.fmean(fast_means):.2f} identical={same_all}")


# -- main ----------------------------------------------------------------------------------------------


def update_out(path: Path, section: str, value: dict, command: str) -> None:
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    data[section] = {"measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "machine": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.processor() or platform.machine()})",
                     "command": command, "load_average_at_end": round(os.getloadavg()[0], 1), **value}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", default="simcopilot", choices=["simcopilot", "starter"])
    parser.add_argument("--sandbox", default="local", choices=["local", "docker", "both"])
    parser.add_argument("--docker-image", help="the sandbox image (default: the compose service's, built if missing)")
    parser.add_argument("--solution", default="reference", choices=["reference", "empty"])
    parser.add_argument("--tasks", type=int, default=4, help="tasks per program (1 cold + the rest warm)")
    parser.add_argument("--program", action="append", help="only this program (repeatable)")
    parser.add_argument("--java-path", choices=upstream.JAVA_PATHS, help="the Java path for the per-program figures "
                        f"(default {upstream.DEFAULT_JAVA_PATH})")
    parser.add_argument("--java-paths", action="store_true", help="the two Java paths side by side on every Java task")
    parser.add_argument("--solutions", default="reference", help="--java-paths: comma-separated oracle solutions")
    parser.add_argument("--record", type=Path, help="--java-paths: append each task's line here; skip what it holds")
    parser.add_argument("--limit", type=int, help="--java-paths: judge at most this many more tasks")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cores", type=int, default=16, help="the cores a full cell is extrapolated to")
    parser.add_argument("--recorded-oracle", type=Path,
                        default=Path("bench/results/oracle-simcopilot-2024-upstream.jsonl"),
                        help="per-task seconds for programs the sandbox here cannot run")
    parser.add_argument("--out", type=Path, help="write the figures into this JSON file (its section only)")
    args = parser.parse_args()
    command = "python bench/eval_throughput.py " + " ".join(sys.argv[1:])
    if args.benchmark == "starter":
        starter(args)
        return 0
    bench = load_benchmark("simcopilot")
    print(f"simcopilot ({bench.edition}), {len(bench.available())} available tasks, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start", flush=True)
    if args.java_paths:
        summary = java_paths(bench, "docker" if args.sandbox == "docker" else "local", args.docker_image,
                             args.solutions.split(","), args.record, args.workers, args.limit, args.program)
        for d in summary["differing"]:
            print(f"differs: {d['task_id']} ({d['solution']}): {'; '.join(d['why'])}")
        if args.out:
            update_out(args.out, "java_paths", summary, command)
        a, b = upstream.JAVA_PATHS
        print(f"java_tasks={summary['java_tasks']} judged={summary['judged']} agree={summary['agree']} "
              f"javac_java_s={summary.get(f'{a}_mean_s')} one_jvm_s={summary.get(f'{b}_mean_s')} "
              f"ratio_median={summary.get('ratio_median')} saving_median_s={summary.get('paired_saving_median_s')}")
        return 0 if summary["agree"] == summary["judged"] else 1
    kinds = ["local", "docker"] if args.sandbox == "both" else [args.sandbox]
    programs = args.program or sorted(bench.programs)
    figures = []
    for kind in kinds:
        rows = per_program(bench, kind, args.docker_image, programs, args.tasks, args.solution, args.java_path)
        cell = extrapolate(bench, rows, args.cores, args.recorded_oracle)
        print(f"{kind}: a full {cell['tasks']}-task cell on {args.cores} cores: {cell['wall_min']} min "
              f"({cell['serial_s']} s of checks)", flush=True)
        figures.append({"sandbox": kind, "image": args.docker_image if kind == "docker" else None,
                        "java_path": args.java_path or upstream.DEFAULT_JAVA_PATH, "solution": args.solution,
                        "programs": rows, "cell": cell})
    if args.out:
        for figure in figures:
            update_out(args.out, f"throughput_{figure['sandbox']}", figure, command)
    last = " ".join(
        f"{f['sandbox']}_java_warm_s={_mean(f, 'java')} {f['sandbox']}_python_warm_s={_mean(f, 'python')} "
        f"{f['sandbox']}_cell_min_{args.cores}_cores={f['cell']['wall_min']}" for f in figures)
    print(last)
    return 0


def _mean(figure: dict, language: str) -> str:
    values = [r["warm_s"] for r in figure["programs"] if r.get("runnable") and r["language"] == language and r["warm_s"]]
    return f"{statistics.fmean(values):.2f}" if values else "nan"


if __name__ == "__main__":
    sys.exit(main())
