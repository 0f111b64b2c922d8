"""The verdict cache: each distinct answer judged once per environment, its verdict reused after.

Technique and quantization cells mostly repeat the baseline's answers; judging one again costs
seconds (a JVM, a TensorFlow import) and cannot change its verdict. An entry is keyed by
everything the verdict depends on (``key``):

- the task (its whole record: program, span, the text around the gap);
- the exact code each cascade stage would run, in the order the evaluator runs them: ours
  (``postprocess.cascade``) and upstream's (``upstream.candidates``), each where the evaluator
  runs it, so two raw answers that post-process to the same stage code share a verdict;
- what judges the program: ``environment.expected_sha256``, the expected outputs in force
  (upstream's or re-recorded, the test cases themselves and the re-recorded file), its source,
  data files (names and sizes), jars;
- the sandbox fingerprint (``environment.sandbox_fingerprint``), the interpreter, the JUnit
  launcher and our Java launchers' sources (what confines a tester and writes its record), the evaluator's limits (before scaling to a reference's time) and time scaling;
- the headline cascade, ``both``, upstream's scoring code (its copy's record) where loaded;
- the benchmark, its edition and pinned commit; ``CACHE_VERSION``.

Entries live under ``runner_home()/verdicts/<benchmark>/``, one small JSON file per key, written
atomically (a temporary file, then ``os.replace``), mode 0600: cells, runs under the same home and
concurrent workers share them. A damaged entry is a miss (logged), never an error.

Only a verdict on the answer itself is kept (``cacheable``): never ``unscoreable`` or ``error``
(the environment's or the harness's state, not the answer's), nor any verdict one of whose runs
timed out or was killed for CPU time or by SIGKILL (it depends on the machine's speed and load,
and on the limit scaled from this machine's reference time).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field

from runner import paths
from runner.records import Cascade, Outcome, Program, Sample, Task, Verdict, utcnow

log = logging.getLogger(__name__)

#: bump when judging logic changes (the cascade, the checks, the comparison of outputs, this key):
#: every entry made before is then a miss
CACHE_VERSION = 1


class Entry(BaseModel):
    """One cached verdict: what was judged, where first, and the verdict."""

    version: int = CACHE_VERSION
    key: str
    task_id: str
    first_judged_for: str = Field(description="<run>/<cell id> (or the cell id where the run is not known) "
                                              "of the sample this verdict was first judged for")
    first_judged_at: str
    seconds: float = Field(description="how long the first judging took")
    verdict: Verdict


@dataclass
class Judgment:
    """A verdict and how it was reached: ``reused_from`` the entry's origin, else judged here."""

    verdict: Verdict
    reused_from: str | None = None
    key: str | None = None
    sandbox_runs: int = 0  # sandboxed programs this judging ran (0 for a reused verdict)
    cached: bool = False  # whether a fresh verdict was stored


# -- watching the sandbox ---------------------------------------------------------------------------
_WATCH = threading.local()
_INSTALL_LOCK = threading.Lock()
#: killed for CPU time (a limit scaled from this machine's reference time) or by SIGKILL (the
#: sandbox at its deadline, or the kernel's OOM killer under the machine's memory pressure)
_SPEED_SIGNALS = {int(signal.SIGXCPU), int(signal.SIGKILL)}


@dataclass
class _Watch:
    runs: int = 0
    machine_dependent: bool = False

    def saw(self, result) -> None:
        self.runs += 1
        killed = getattr(result, "killed_by_signal", None)
        if getattr(result, "timed_out", False) or (killed in _SPEED_SIGNALS and not getattr(result, "output_truncated", False)):
            self.machine_dependent = True


def _observe(sandbox) -> bool:
    """Have ``sandbox.run`` report each result to this thread's watch; whether it can (once per sandbox).

    Every sandboxed run of a judging happens on the judging thread (upstream's test runs go
    through a thread-local dispatcher), so a thread-local watch sees exactly that judging's runs.
    """
    with _INSTALL_LOCK:
        if getattr(sandbox, "_verdict_watch", False):
            return True
        original = sandbox.run

        def run(*args, **kwargs):
            result = original(*args, **kwargs)
            watch = getattr(_WATCH, "current", None)
            if watch is not None:
                watch.saw(result)
            return result

        try:
            sandbox.run = run
            sandbox._verdict_watch = True
        except (AttributeError, TypeError):
            return False
        return True


@contextmanager
def _watching() -> Iterator[_Watch]:
    previous = getattr(_WATCH, "current", None)
    watch = _WATCH.current = _Watch()
    try:
        yield watch
    finally:
        _WATCH.current = previous


def cacheable(verdict: Verdict, machine_dependent: bool = False) -> bool:
    """Whether ``verdict`` is a deterministic verdict of the answer, fit to stand for a later judging.

    - ``unscoreable``: the program's reference fails here, or the sandbox could not run the answer
      (``environment: ...``): a state of this environment, which may be fixed before the next
      judging (a data file put back), not of the answer;
    - ``error`` (a check that raised): a harness problem, not a verdict;
    - ``timeout`` anywhere (the headline, the cleaned stage, either cascade), or any run of the
      judging timed out or was killed for CPU time (``machine_dependent``): whether an answer
      finishes depends on the machine's speed and load and on the wall limit scaled from this
      machine's reference timing, which the key cannot hold (it moves between runs); an earlier
      stage that timed out may have hidden a pass. Such verdicts are judged again each time.

    Everything else (pass, fail, compile and runtime errors) depends only on the answer, the
    program, the expected outputs and the limits, all in the key. An answer whose output is itself
    random or time-dependent is judged once: the kept verdict is one real judging of it.
    """
    if machine_dependent:
        return False
    outcomes = [verdict.outcome, verdict.cleaned_outcome]
    for one in (verdict.runner, verdict.upstream):
        if one is not None:
            outcomes += [one.outcome, one.cleaned_outcome]
    if any(o in (Outcome.unscoreable, Outcome.error, Outcome.timeout) for o in outcomes):
        return False
    return verdict.unscoreable_reason is None


# -- the key -----------------------------------------------------------------------------------------
def _sha(data: str | bytes) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def _file_sha(path: Path | None) -> str:
    if path is None:
        return "none"
    try:
        return _sha(Path(path).read_bytes())
    except OSError:
        return "missing"


def _program_part(program: Program) -> str:
    """What judges ``program``'s answers, as a hash: test file or tester, expected outputs, files."""
    from runner.evaluation.environment import expected_sha256

    try:
        data = sorted((p.name, p.stat().st_size if p.is_file() else -1) for p in program.data_dir.iterdir())
    except OSError:
        data = []
    parts = {"program": program.model_dump(mode="json"), "expected": expected_sha256(program),
             "tests_json": _file_sha(program.tests_json), "source": _file_sha(program.source), "data": data,
             "jars": [_file_sha(j) for j in program.jars]}
    return _sha(json.dumps(parts, sort_keys=True))


def _upstream_part(evaluator) -> dict | None:
    up = getattr(evaluator, "upstream", None)
    if up is None:
        return None
    root = Path(up.root)
    return {"root": str(root), "harness": up.harness.name, "record": _file_sha(root / "source.json")}


def stage_codes(evaluator, task: Task, raw_text: str) -> dict:
    """The code each cascade stage would run on ``raw_text``, in order, as the evaluator runs them."""
    from runner.evaluation import upstream as upstream_code
    from runner.evaluation.postprocess import cascade

    ours = None
    if evaluator.cascade is Cascade.runner or evaluator.both:
        ours = [[stage.value, code] for stage, code in cascade(raw_text, task)]
    theirs = None
    program = evaluator.program(task)
    if evaluator.upstream is not None and upstream_code.tests_file(program).is_file():
        theirs = [[name, list(lines)] for name, lines in upstream_code.candidates(evaluator.upstream, raw_text, task)]
    return {"runner": ours, "upstream": theirs}


@dataclass
class VerdictCache:
    """The verdicts of one benchmark (edition, commit) under the runner home, for one evaluator's judging.

    ``enabled`` False judges every answer afresh (``settings.reuse_verdicts = false``); ``run``
    names the run in ``Sample.verdict_from`` (``<run>/<cell id>``).
    """

    benchmark: str
    commit: str
    edition: str | None = None
    enabled: bool = True
    run: str | None = None
    root: Path | None = None  # default: runner_home()/verdicts, looked up when first used
    _locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _users: dict[str, int] = field(default_factory=dict, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def folder(self) -> Path:
        return (self.root or paths.runner_home() / "verdicts") / self.benchmark

    def key(self, evaluator, task: Task, raw_text: str) -> str:
        """The key of ``raw_text`` as the answer to ``task`` under ``evaluator``."""
        from runner.evaluation.environment import sandbox_fingerprint
        from runner.evaluation.java_check import launchers_digest

        program = evaluator.program(task)
        expected = evaluator.expected_outputs.get(task.program)
        parts = {
            "version": CACHE_VERSION, "benchmark": self.benchmark, "edition": self.edition, "commit": self.commit,
            "task": _sha(task.model_dump_json()), "stages": _sha(json.dumps(stage_codes(evaluator, task, raw_text))),
            "program": _program_part(program), "expected_outputs": expected.value if expected else None,
            "sandbox": sandbox_fingerprint(evaluator), "limits": evaluator.limits.model_dump(mode="json"),
            "scale_time": evaluator.scale_time, "ceiling": evaluator.ceiling_seconds, "java_fast": evaluator.java_fast,
            "python": str(evaluator.python), "junit": _file_sha(getattr(evaluator, "_junit_console", None)),
            "java_launchers": launchers_digest(),
            "cascade": evaluator.cascade.value, "both": evaluator.both, "upstream": _upstream_part(evaluator),
        }
        return _sha(json.dumps(parts, sort_keys=True, default=str))

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def read(self, key: str) -> Entry | None:
        """The entry of ``key``; ``None`` when there is none or it is damaged (a miss, logged)."""
        path = self.path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("verdict cache: %s unreadable (%s); judging afresh", path, exc)
            return None
        try:
            entry = Entry.model_validate_json(text)
        except ValueError as exc:
            log.warning("verdict cache: %s damaged (%s); judging afresh", path, str(exc).splitlines()[0])
            return None
        if entry.key != key or entry.version != CACHE_VERSION or not cacheable(entry.verdict):
            log.warning("verdict cache: %s does not hold the verdict of its key; judging afresh", path)
            return None
        return entry

    def write(self, entry: Entry) -> None:
        """Keep ``entry`` atomically (mode 0600); a failure to write is logged, never raised."""
        path = self.path(entry.key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")  # 0600
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(entry.model_dump_json() + "\n")
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            log.warning("verdict cache: could not keep %s (%s)", path, exc)

    @contextmanager
    def _one_at_a_time(self, key: str) -> Iterator[None]:
        """Judgings of one key wait for each other, in this process and in others under the same home
        (a Ray node's workers, cells judged at once): the second finds the first's verdict."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
            self._users[key] = self._users.get(key, 0) + 1
        try:
            with lock, self._across_processes(key):
                yield
        finally:
            with self._guard:
                self._users[key] -= 1
                if not self._users[key]:
                    del self._users[key], self._locks[key]

    @contextmanager
    def _across_processes(self, key: str) -> Iterator[None]:
        # one flock file per 4096th of the keys: few files, and two unrelated answers rarely wait
        # for each other; where the folder cannot be written, the cache's own miss handling applies
        folder = self.folder / ".locks"
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(folder / f"{key[:3]}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            log.debug("verdict cache: no lock file (%s); judging without one", exc)
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def judge(self, evaluator, task: Task, raw_text: str, origin: str) -> Judgment:
        """``raw_text`` judged as the answer to ``task``: the cached verdict of its key, else judged now
        (and kept where ``cacheable``). ``origin``: the sample's cell id, recorded with a new entry.

        A reused verdict's ``seconds`` is this lookup's own time. Exceptions of the judging propagate.
        """
        started = time.monotonic()
        if not self.enabled or task.program in evaluator.unscoreable or not _observe(evaluator.sandbox):
            return Judgment(evaluator.evaluate(task, raw_text))
        try:
            key = self.key(evaluator, task, raw_text)
        except Exception as exc:  # noqa: BLE001 - the judging itself says what is wrong with the answer
            log.debug("verdict cache: no key for %s (%s: %s)", task.id, type(exc).__name__, exc)
            return Judgment(evaluator.evaluate(task, raw_text))
        with self._one_at_a_time(key):
            entry = self.read(key)
            if entry is not None:
                verdict = entry.verdict.model_copy(update={"seconds": time.monotonic() - started})
                return Judgment(verdict, reused_from=entry.first_judged_for, key=key)
            with _watching() as watch:
                verdict = evaluator.evaluate(task, raw_text)
            keep = cacheable(verdict, watch.machine_dependent)
            if keep:
                where = f"{self.run}/{origin}" if self.run else origin
                self.write(Entry(key=key, task_id=task.id, first_judged_for=where, first_judged_at=utcnow().isoformat(),
                                 seconds=round(verdict.seconds, 3), verdict=verdict))
            return Judgment(verdict, key=key, sandbox_runs=watch.runs, cached=keep)


# -- which cache an evaluator judges with -------------------------------------------------------------
def attach(evaluator, *, benchmark: str, commit: str, edition: str | None = None, enabled: bool = True,
           run: str | None = None) -> VerdictCache:
    """Make ``judge_sample`` judge with ``evaluator`` through a cache of ``benchmark`` (of ``edition``
    at ``commit``); ``enabled`` False judges every answer afresh."""
    cache = VerdictCache(benchmark=benchmark, commit=commit, edition=edition, enabled=enabled, run=run)
    evaluator.verdict_cache = cache
    return cache


def cache_of(evaluator, task: Task) -> VerdictCache | None:
    """The cache ``evaluator`` judges through: the one ``attach`` gave it, else, on a Ray node (whose
    evaluator knows its benchmark's commit), one under that node's own home; else none."""
    cache = getattr(evaluator, "verdict_cache", None)
    if cache is not None:
        return cache
    commit = getattr(evaluator, "benchmark_commit", None)
    if not isinstance(commit, str) or not commit:
        return None
    edition = evaluator.upstream.harness.name if task.benchmark == "simcopilot" and evaluator.upstream else None
    return attach(evaluator, benchmark=task.benchmark, commit=commit, edition=edition)


# -- counts --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JudgingCounts:
    """Accuracy answers judged afresh and with a reused verdict."""

    judged: int = 0
    reused: int = 0

    def __add__(self, other: "JudgingCounts") -> "JudgingCounts":
        return JudgingCounts(self.judged + other.judged, self.reused + other.reused)

    @property
    def label(self) -> str:
        """``12 judged, 30 reused``."""
        return f"{self.judged} judged, {self.reused} reused"


def judging_counts(samples: list[Sample]) -> JudgingCounts:
    """Of ``samples``' accuracy answers with a verdict (request errors and unjudged ones left out),
    how many were judged afresh and how many took a reused verdict."""
    judged = [s for s in samples if s.phase == "accuracy" and s.outcome is not None and s.error is None]
    reused = sum(s.verdict_from is not None for s in judged)
    return JudgingCounts(judged=len(judged) - reused, reused=reused)


__all__ = ["CACHE_VERSION", "Entry", "JudgingCounts", "Judgment", "VerdictCache", "attach", "cache_of",
           "cacheable", "judging_counts", "stage_codes"]
