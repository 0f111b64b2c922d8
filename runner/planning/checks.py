"""The checks behind ``runner doctor`` and the plan: the benchmark copy a run reads, which of its programs
score here (the environment check's cache), the sandbox's self-check, and ``HF_TOKEN`` against gated sources."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field

from runner.errors import UserError
from runner.matrix import Matrix, ModelSource
from runner.planning.weights import needed_weights

#: publishers whose repositories on the Hugging Face hub are gated (a licence to accept, HF_TOKEN)
GATED_PUBLISHERS = ("meta-llama", "mistralai", "google")


class UnscoreableProgram(BaseModel):
    """A program whose reference cannot pass on the judging path here, so no answer to it can be judged."""

    program: str
    language: str
    tasks: int  # its available tasks: every one is unscoreable
    reason: str  # the environment check's, e.g. "a data file is missing: the program reads alice.avi, ..."


class DataCheck(BaseModel):
    """A benchmark copy the run reads: present, or how to get it."""

    benchmark: str
    edition: str | None
    present: bool
    detail: str  # where it is, or the command that fetches it
    tasks: int = 0  # in the copy, available or not
    #: per program with tasks no answer can be judged on here: "program: N of M tasks (why)"
    unavailable: list[str] = Field(default_factory=list)
    #: programs the environment check found unscoreable here (``scoring_check``; doctor fills it)
    unscoreable: list[UnscoreableProgram] = Field(default_factory=list)
    #: what ``unscoreable`` rests on: the sandbox and how many programs the check has seen ("": not asked)
    scoring: str = ""


class SandboxCheck(BaseModel):
    """The sandbox ``--sandbox auto`` picks, and whether its self-check passed (or why not)."""

    ok: bool
    detail: str


class TokenCheck(BaseModel):
    """Whether ``HF_TOKEN`` is set (never its value) and which of the run's repositories are gated."""

    set: bool
    gated: list[str] = Field(default_factory=list)


def data_check(benchmark: str, edition: str | None = None) -> DataCheck:
    """Whether the copy of ``benchmark`` (``edition``) is installed, or the command that fetches it."""
    from runner.benchmarks import benchmark_root, load_benchmark

    shown = edition if benchmark == "simcopilot" else None
    try:
        root = benchmark_root(benchmark, edition)
        bench = load_benchmark(benchmark, edition)  # the copy as a run reads it: its files checked
    except UserError as exc:
        return DataCheck(benchmark=benchmark, edition=shown, present=False, detail=str(exc))
    unavailable = []
    for program in sorted({t.program for t in bench.tasks if not t.available}):
        tasks = [t for t in bench.tasks if t.program == program]
        missing = [t for t in tasks if not t.available]
        unavailable.append(f"{program}: {len(missing)} of {len(tasks)} tasks ({missing[0].reason})")
    return DataCheck(benchmark=benchmark, edition=shown, present=True, detail=str(root), tasks=len(bench.tasks),
                     unavailable=unavailable)


def scoring_check(data: DataCheck, programs: list[str] | None = None, *, take: bool = False,
                  progress=None) -> DataCheck:
    """``data`` with the programs its benchmark's environment check finds unscoreable here, and how
    many it has checked: the check a run takes first (``runner.evaluation.environment``: each program's
    reference on the judging path of the sandbox ``--sandbox auto`` picks, with the run's expected-output
    policy ``auto``), read from its cache; ``take``: check the programs not in the cache too (one
    reference run each, cached for the run). ``programs``: only these (a matrix's ``[tasks]``)."""
    from runner.benchmarks import benchmark_commit, default_cascade, load_benchmark, scoring_root
    from runner.errors import EnvironmentFailure
    from runner.evaluation import environment
    from runner.evaluation.docker_sandbox import choose_sandbox
    from runner.evaluation.evaluator import Evaluator

    if not data.present:
        return data
    bench = load_benchmark(data.benchmark, data.edition)
    first: dict[str, object] = {}
    for task in bench.tasks:
        if task.available and (not programs or task.program in programs):
            first.setdefault(task.program, task)
    try:
        sandbox = choose_sandbox("auto")
        evaluator = Evaluator(bench.programs, sandbox=sandbox, junit_console=bench.junit_jar,
                              cascade=default_cascade(bench.name), both=True, upstream_root=scoring_root(bench))
        commit = benchmark_commit(bench)
        if take:
            report = environment.check_environment(evaluator, list(first.values()), benchmark=bench.name,
                                                   commit=commit, progress=progress)
            checks = report.programs
        else:
            report = environment.EnvironmentReport(benchmark=bench.name, commit=commit, cascade=evaluator.cascade,
                                                   sandbox=environment.sandbox_fingerprint(evaluator), expected="auto")
            checks = _cached_checks(report, [evaluator.upstream_programs.get(n) or evaluator.programs[n]
                                             for n in first])
    except (UserError, EnvironmentFailure) as exc:
        return data.model_copy(update={"scoring": f"the environment check cannot run here: {exc}"})
    counts: dict[str, int] = {}
    for task in bench.tasks:
        if task.available:
            counts[task.program] = counts.get(task.program, 0) + 1
    found = [UnscoreableProgram(program=c.program, language=c.language.value, tasks=counts.get(c.program, 0),
                                reason=c.reason or "its reference fails here")
             for c in sorted(checks, key=lambda c: c.program) if not c.scoreable]
    kind = report.sandbox.split(":", 1)[0]
    seen = f"{len(checks)} of {len(first)} programs"
    if take:
        scoring = f"the environment check in the {kind} sandbox: {seen} checked"
    else:
        scoring = f"the environment check in the {kind} sandbox, as cached: {seen} checked"
        if len(checks) < len(first):
            scoring += (f"; the other {len(first) - len(checks)} are checked when a run starts "
                        "(or now: doctor --check-environment, cached for the run)")
    return data.model_copy(update={"unscoreable": found, "scoring": scoring})


def _cached_checks(report, programs) -> list:
    """The environment check's cached verdicts on ``programs`` in ``report``'s environment, where it has one."""
    from runner import paths
    from runner.evaluation import environment

    folder = paths.runner_home() / "environment" / report.benchmark / environment._short(report.sandbox)
    found = []
    for program in programs:
        # the check's own cache key (its inputs: commit, program files, sandbox, harness, policy)
        cached = folder / f"{program.name}-{environment._key(report, program)[:16]}.json"
        try:
            found.append(environment.ProgramCheck.model_validate_json(cached.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return found


def sandbox_check() -> SandboxCheck:
    """Run the sandbox's self-check (a known pass and a known fail per language) on the one ``--sandbox auto`` picks."""
    from runner.benchmarks import default_cascade, load_benchmark, scoring_root
    from runner.evaluation.docker_sandbox import choose_sandbox
    from runner.evaluation.evaluator import Evaluator
    from runner.evaluation.selfcheck import self_check
    from runner.records import Language

    bench = load_benchmark("starter")  # ships with runner: the check needs no fetched data
    try:
        sandbox = choose_sandbox("auto")
        evaluator = Evaluator(bench.programs, sandbox=sandbox, junit_console=bench.junit_jar,
                              cascade=default_cascade(bench.name), upstream_root=scoring_root(bench))
        self_check(evaluator, {Language.python, Language.java})
    except UserError as exc:
        return SandboxCheck(ok=False, detail=str(exc))
    kind = "docker" if type(sandbox).__name__ == "DockerSandbox" else "local"
    return SandboxCheck(ok=True, detail=f"the {kind} sandbox (--sandbox auto): Python and Java self-check passed")


def token_check(matrix: Matrix | None = None) -> TokenCheck:
    """``HF_TOKEN`` set or not, and the gated repositories the matrix's cells download."""
    gated = set()
    if matrix is not None:
        for key, quant in needed_weights(matrix):
            source = matrix.models[key].quantizations[quant]
            if source.kind == "hf" and _gated(matrix, key, quant, source):
                gated.add(source.repo)
    return TokenCheck(set=bool(os.environ.get("HF_TOKEN")), gated=sorted(gated))


def _gated(matrix: Matrix, key: str, quant: str, source: ModelSource) -> bool:
    """Whether a Hub source is gated: as its lock entry says (the Hub's word), else by its publisher."""
    from runner.serving.lock import load_lock

    try:
        lock = load_lock(matrix)
    except UserError:
        lock = None  # the plan says what is wrong with it
    entry = lock.entry(key, quant) if lock is not None else None
    if entry is not None and not entry.differences(source):
        return entry.gated
    return source.repo.split("/", 1)[0] in GATED_PUBLISHERS
