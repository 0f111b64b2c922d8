"""The reference oracle on SimCoPilot's 2025 edition, per split: real 2025 checks where they exist,
else the 2024 record's verdict carried over where nothing that decides it differs.

A verdict of upstream's cascade on the oracle's answer (the reference in a fenced block) is a
function of: the task's text (before, reference, after), the program's files (source, test cases,
data), the test harness (``eval_code.py``), the environment
(the sandbox image) and the code the pipeline tests (each stage up to the one that passed). A
task's 2024 verdict is carried to 2025 only when all of these are equal:

- the task text, as each edition's copy loads it;
- every file of the program's folder, its source and its test file, by git blob id in each
  edition's pinned file list (a file listed in one and not the other is a difference);
- the harness files, by blob id;
- the codes each edition's own extraction and post-processing make of the answer, stage by stage
  up to the one that passed under 2024.

Any other task needs a real 2025 check (``runner tasks check --edition 2025 --record FILE``); the
script names each one that lacks it and exits 1. Where a task has both, the two must agree: that is
the derivation tested on real runs.

    .venv/bin/python bench/oracle_2025.py \\
        --record-2024 bench/results/oracle-simcopilot-2024-upstream.jsonl \\
        --record-2025 bench/results/oracle-simcopilot-2025-upstream.jsonl [--json]

Both editions must be installed in the runner home (``runner data fetch simcopilot [--edition 2025]``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from runner.benchmarks import load_benchmark, simcopilot_dir
from runner.benchmarks.manifest import active_manifest
from runner.evaluation import upstream
from runner.evaluation.oracle import solution_text
from runner.records import Cascade, Program, Task

#: the test runner; the stage loop (2025's update_post_process_and_eval.py, absent from the 2024
#: release) only orders the codes compared below, and a carried verdict passed at its first stage
HARNESS = ("helper_functions/eval_code.py",)
ORDER = ["cleaned_code", "trimmed_code", "indented_code"]
STAGE_NAME = {"cleaned": "cleaned_code", "trimmed": "trimmed_code", "reindented": "indented_code",
              "balanced": "indented_code"}


def read_record(path: Path) -> dict[str, dict]:
    """The last record per task of a ``tasks check --record`` file."""
    out: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            out[record["task_id"]] = record
    return out


def program_files(program: Program, root: Path, manifest) -> dict[str, str]:
    """Path -> blob id of the program's folder, source and test file in ``manifest`` ('' where unlisted)."""
    paths = {program.data_dir, program.source}
    if program.tests_json is not None:
        paths.add(program.tests_json)
    out = {e.path: e.blob_sha1 for e in manifest.under(str(program.data_dir.relative_to(root)))}
    for path in paths - {program.data_dir}:
        rel = str(path.relative_to(root))
        entry = manifest.entries.get(rel)
        out[rel] = entry.blob_sha1 if entry is not None else ""
    return out


def why_not_carried(old: Task, new: Task, record: dict | None, up_old, up_new, files_old, files_new,
                    harness_equal: bool) -> str | None:
    """Why ``new``'s 2025 verdict cannot be the 2024 record's (``None``: it can)."""
    if record is None:
        return "no 2024 record (the task is not available in the 2024 release)"
    if record["outcome"] != "pass":
        return f"2024's verdict is {record['outcome']}: only a pass is carried"
    if not harness_equal:
        return "the test harness differs"
    if (old.before, old.reference, old.after) != (new.before, new.reference, new.after):
        return "the task's text differs"
    if files_old != files_new:
        changed = sorted(p for p in set(files_old) | set(files_new) if files_old.get(p) != files_new.get(p))
        return f"the program's files differ: {', '.join(changed)}"
    raw = solution_text(new, "reference", Cascade.upstream)
    codes_old = dict(upstream.candidates(up_old, raw, old))
    codes_new = dict(upstream.candidates(up_new, raw, new))
    for name in ORDER[:ORDER.index(STAGE_NAME[record["stage"]]) + 1]:
        if codes_old[name] != codes_new[name]:
            return f"the {name} of the answer differs between the editions' post-processing"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--record-2024", type=Path, default=Path("bench/results/oracle-simcopilot-2024-upstream.jsonl"))
    parser.add_argument("--record-2025", type=Path, default=Path("bench/results/oracle-simcopilot-2025-upstream.jsonl"))
    parser.add_argument("--json", action="store_true", help="one line per task: its verdict and where it comes from")
    args = parser.parse_args()

    old, new = load_benchmark("simcopilot", "2024"), load_benchmark("simcopilot", "2025")
    up_old, up_new = upstream.load(simcopilot_dir("2024")), upstream.load(simcopilot_dir("2025"))
    root_old, root_new = simcopilot_dir("2024").resolve(), simcopilot_dir("2025").resolve()
    man_old, man_new = active_manifest("2024"), active_manifest("2025")
    harness_equal = all(man_old.entries[p].blob_sha1 == man_new.entries[p].blob_sha1 for p in HARNESS)
    rec_old = read_record(args.record_2024)
    rec_new = read_record(args.record_2025) if args.record_2025.exists() else {}
    old_tasks = {t.id: t for t in old.tasks}
    files: dict[str, tuple[dict, dict]] = {}

    counts: Counter = Counter()
    missing, disagreements = [], []
    both = 0  # tasks checked for real whose verdict could also have been carried: the derivation tested
    for task in new.tasks:
        if not task.available:
            continue
        split = (task.language.value, task.mode.value)
        twin = old_tasks.get(task.id)
        if task.program not in files:
            files[task.program] = (program_files(old.programs[task.program], root_old, man_old),
                                   program_files(new.programs[task.program], root_new, man_new))
        why = (why_not_carried(twin, task, rec_old.get(task.id), up_old, up_new, *files[task.program], harness_equal)
               if twin is not None else "no such task in 2024")
        real = rec_new.get(task.id)
        if real is not None:
            outcome, source = real["outcome"], "checked"
            if why is None:
                both += 1
                if outcome != "pass":
                    disagreements.append(f"{task.id}: carried pass, checked {outcome}")
        elif why is None:
            outcome, source = "pass", "carried"
        else:
            missing.append(f"{task.id}: {why}")
            continue
        counts[(split, source)] += 1
        counts[(split, outcome)] += 1
        if args.json:
            print(json.dumps({"task_id": task.id, "outcome": outcome, "source": source, "not_carried": why,
                              "unscoreable_reason": (real or {}).get("unscoreable_reason")}))

    if not args.json:
        print(f"{'split':<22}{'scoreable':>10}{'unscoreable':>12}{'pass':>6}{'checked':>9}{'carried':>9}")
        for split in sorted({k[0] for k in counts}, key=lambda s: (s[0] != "python", s[1] != "infill")):
            scoreable = sum(counts[(split, o)] for o in ("pass", "fail", "compile_error", "runtime_error", "timeout"))
            print(f"{' '.join(split):<22}{scoreable:>10}{counts[(split, 'unscoreable')]:>12}{counts[(split, 'pass')]:>6}"
                  f"{counts[(split, 'checked')]:>9}{counts[(split, 'carried')]:>9}")
        print(f"checked for real and carriable too: {both} tasks, {both - len(disagreements)} agreeing")
        unscoreable = sorted({r["program"] for r in rec_new.values() if r["outcome"] == "unscoreable"})
        for program in unscoreable:
            reason = next(r["unscoreable_reason"] for r in rec_new.values() if r["program"] == program
                          and r["outcome"] == "unscoreable")
            print(f"unscoreable: {program}: {reason}")
    for line in missing:
        print(f"needs a real 2025 check: {line}", file=sys.stderr)
    for line in disagreements:
        print(f"the carried verdict is wrong: {line}", file=sys.stderr)
    return 1 if missing or disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
