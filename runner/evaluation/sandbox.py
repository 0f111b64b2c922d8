"""Running untrusted code: limits, the narrow ``Sandbox`` interface and the local implementation.

``LocalSandbox`` contains a child with Linux mechanisms that work without cgroups:

- a fresh network namespace (``unshare --net``): only a downed loopback, so no connection
  reaches any host or port, not even the runner's own loopback listeners;
- a PID and mount namespace (``unshare --pid --fork --mount-proc``): when the child's first
  process ends, the kernel kills everything it left behind; ``unshare`` and that first process
  carry a parent-death SIGKILL (``prctl``, ``--kill-child``, ``setpriv --pdeathsig``), so a scorer
  killed however it dies takes its sandbox with it;
- in that mount namespace, a fresh root (default deny, see ``mounts``): the system's programs and
  libraries, the loader's and the JDK's /etc entries and each interpreter's prefix, read-only; the
  run's folder; its own size-limited ``/tmp``, ``/var/tmp`` and ``/dev/shm``. Nothing else of the
  host is there: no home, no cache, no run directory. What the program needs (its data files,
  jars, the JUnit launcher) is copied into its private folder, itself a size-limited tmpfs
  (``Limits.work_mb``) where the runner is root;
- a seccomp filter: no Unix socket can be created (``socketpair`` still works), so no socket
  file of the host is reachable, wherever it lies;
- a private, unprivileged uid per concurrent run (``setpriv``), taken from a pool guarded by
  lock files: the runner's own files (owned by root) are read-only to it, and
  ``RLIMIT_NPROC`` is a real process limit because it counts that uid's processes only;
- ``RLIMIT_CPU``, ``RLIMIT_AS``, ``RLIMIT_FSIZE`` and no core files;
- a capped read of stdout and stderr, and a wall-clock timeout: either kills every process
  of the run's uid, wherever it moved (new sessions, process groups).

Where this machine cannot give one of these (no root, no ``unshare``), ``capabilities()``
says which, and the sandbox refuses to run unless constructed with ``allow_unsandboxed``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from runner.errors import EnvironmentFailure, UserError
from runner.evaluation import seccomp
from runner.evaluation.mounts import holds_interpreter, is_python, mounts_work, new_root_mountpoint, plan_mounts
from runner.evaluation.mounts import interpreter_prefixes, kept_paths  # noqa: F401 (re-exported)
from runner.evaluation.workdir import _mount_points, _sweep_work_mounts  # noqa: F401 (re-exported)
from runner.evaluation.workdir import _mount_work, _unmount, _workdir_base, work_limit_works
from runner.infra.lifetime import die_with_parent

log = logging.getLogger(__name__)

# Numeric uids with no passwd entry, so that no real account's processes share their count.
UID_BASE = int(os.environ.get("RUNNER_SANDBOX_UID_BASE", "61000"))
UID_POOL = int(os.environ.get("RUNNER_SANDBOX_UID_POOL", "256"))
_STDERR_TAIL = 4000


class Limits(BaseModel):
    """Resource limits for one sandboxed run; every field can be set from settings or flags."""

    model_config = ConfigDict(frozen=True)

    wall_seconds: float = Field(20.0, gt=0, description="wall-clock floor per run")
    cpu_seconds: int = Field(60, gt=0, description="RLIMIT_CPU")
    memory_mb: int = Field(2048, gt=0, description="RLIMIT_AS for Python programs")
    jvm_memory_mb: int = Field(3072, gt=0, description="RLIMIT_AS for javac/java (the JVM reserves address space)")
    jvm_heap_mb: int = Field(512, gt=0, description="-Xmx for javac/java")
    processes: int = Field(64, gt=0, description="RLIMIT_NPROC for the run's private uid")
    jvm_processes: int = Field(256, gt=0, description="RLIMIT_NPROC for the JVM (threads count)")
    output_bytes: int = Field(4 * 1024 * 1024, gt=0, description="stdout (and stderr) cap; beyond it the run is killed")
    tmp_mb: int = Field(128, gt=0, description="size of each private tmpfs: /tmp, /var/tmp, /dev/shm")
    work_mb: int = Field(512, gt=0, description="size of the run's working folder (a tmpfs where the runner "
                                                "is root): its program, data files and whatever it writes")
    file_size_mb: int = Field(256, gt=0, description="RLIMIT_FSIZE: largest file the run may write")
    time_factor: float = Field(10.0, gt=0, description="a test's time limit is max(wall_seconds, time_factor x reference time)")

    def for_jvm(self) -> "Limits":
        """The same limits with the JVM's larger address-space and thread allowances."""
        return self.model_copy(update={"memory_mb": self.jvm_memory_mb, "processes": self.jvm_processes})

    def scaled(self, reference_seconds: float | None) -> "Limits":
        """The limits with the wall-clock limit scaled from the reference solution's run time."""
        if reference_seconds is None:
            return self
        wall = max(self.wall_seconds, self.time_factor * reference_seconds)
        return self.model_copy(update={"wall_seconds": wall, "cpu_seconds": max(self.cpu_seconds, int(wall * 2) + 1)})


class ExecResult(BaseModel):
    """What one sandboxed run did."""

    exit_code: int | None  # None when killed by a signal
    stdout: str  # at most ``Limits.output_bytes``
    stderr_tail: str
    timed_out: bool = False
    output_truncated: bool = False
    killed_by_signal: int | None = None
    seconds: float = 0.0


class Capabilities(BaseModel):
    """Which containment mechanisms this machine gives the local sandbox."""

    network_namespace: bool
    pid_namespace: bool
    private_uid: bool  # processes limit and read-only runner files
    private_mounts: bool = False  # the fresh root: own /tmp, /var/tmp, /dev/shm; nothing else of the host
    unix_socket_filter: bool = False  # seccomp: no Unix socket
    rlimits: bool = True
    notes: list[str] = Field(default_factory=list)

    @property
    def complete(self) -> bool:
        return (self.network_namespace and self.pid_namespace and self.private_uid and self.rlimits
                and self.private_mounts and self.unix_socket_filter)

    def missing(self) -> list[str]:
        """Names of the mechanisms that are not available."""
        names = {
            "network namespace (no network)": self.network_namespace,
            "PID namespace (kill leftovers)": self.pid_namespace,
            "private unprivileged uid (process limit, runner files read-only)": self.private_uid,
            "a fresh root with only the system, the interpreter and the run's folder (mount namespace)": self.private_mounts,
            "Unix socket filter (seccomp)": self.unix_socket_filter,
        }
        return [name for name, ok in names.items() if not ok]


class Sandbox(ABC):
    """Runs one command in a private directory under resource limits."""

    @abstractmethod
    def run(self, argv: list[str], workdir: Path, limits: Limits, env: dict[str, str] | None = None) -> ExecResult:
        """Run ``argv`` in ``workdir`` (made by ``workdir()``) and return what it did."""

    @contextmanager
    def workdir(self, limits: Limits | None = None) -> Iterator[Path]:
        """A fresh private directory for one run (a tmpfs of ``limits.work_mb`` where the runner is
        root, so that an answer cannot fill the host's disk), removed afterwards."""
        base = _workdir_base()
        path = Path(tempfile.mkdtemp(prefix="run-", dir=base))
        mounted = work_limit_works() and _mount_work(path, (limits or Limits()).work_mb)
        try:
            yield path
        finally:
            if mounted:
                _unmount(path)
            shutil.rmtree(path, ignore_errors=True)


def _run_quiet(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@lru_cache(maxsize=1)
def capabilities() -> Capabilities:
    """Probe which containment mechanisms work here (cached for the process)."""
    notes: list[str] = []
    have_unshare = shutil.which("unshare") is not None
    have_setpriv = shutil.which("setpriv") is not None
    net = have_unshare and _run_quiet(["unshare", "--net", "true"])
    pid = have_unshare and _run_quiet(["unshare", "--pid", "--fork", "--mount", "--mount-proc", "true"])
    uid = (
        os.geteuid() == 0
        and have_setpriv
        and _run_quiet(["setpriv", f"--reuid={UID_BASE}", f"--regid={UID_BASE}", "--clear-groups", "true"])
    )
    mounts = pid and mounts_work()
    filtered = _seccomp_works()
    if not have_unshare:
        notes.append("`unshare` (util-linux) is not installed")
    elif not net:
        notes.append("`unshare --net` is not permitted (needs root or user namespaces)")
    if os.geteuid() != 0:
        notes.append("not running as root: cannot switch the child to a private uid")
    elif not have_setpriv:
        notes.append("`setpriv` (util-linux) is not installed")
    if pid and not mounts:
        notes.append("cannot build the sandbox's fresh root in a mount namespace (mount, pivot_root)")
    if not filtered:
        notes.append("cannot install the seccomp filter (architecture or kernel)")
    return Capabilities(network_namespace=net, pid_namespace=pid, private_uid=uid, private_mounts=mounts,
                        unix_socket_filter=filtered, notes=notes)


@lru_cache(maxsize=1)
def _setpriv_pdeathsig() -> bool:
    """Whether ``setpriv`` takes ``--pdeathsig`` (util-linux 2.33 and later)."""
    works = shutil.which("setpriv") is not None and _run_quiet(["setpriv", "--pdeathsig=KILL", "true"])
    if not works:
        log.warning("setpriv lacks --pdeathsig (util-linux < 2.33): a sandboxed answer may outlive a killed scorer")
    return works


def _seccomp_works() -> bool:
    if not seccomp.supported():
        return False
    try:
        socket_filter = seccomp.UnixSocketFilter()
        done = subprocess.run([sys.executable, "-c", "import socket\ntry: socket.socket(socket.AF_UNIX)\n"
                               "except PermissionError: raise SystemExit(0)\nraise SystemExit(1)"],
                              preexec_fn=socket_filter.install, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=20)
        return done.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


# what the sandbox's own wrappers print when they cannot start the command (exit 126 or 127), or
# when the mount script stops (mount's 32, mkdir's, ln's and pivot_root's 1, a failed cd's 2); a script the uid may not
# execute reaches ``/bin/sh: 0: cannot open ...: Permission denied`` (2) on some kernels
_UNSTARTED = re.compile(r"^(/\S*/)?(setpriv|unshare|sh|prlimit|env|mount|umount|mkdir|rmdir|ln|readlink|pivot_root): ", re.MULTILINE)


def looks_unstarted(result: ExecResult) -> bool:
    """Whether a run's failure looks like the sandbox's, not the program's (to be confirmed by a probe)."""
    return (result.exit_code in (126, 127, 32, 2, 1) and not result.timed_out
            and bool(_UNSTARTED.search(result.stderr_tail[:2000])))


def probe_argv(command: str) -> list[str]:
    """A known-good run of ``command`` (``print('ok')`` for a Python, else ``--version``), to confirm
    an exec failure: an answer can fake the sandbox's message, not the probe's success."""
    if is_python(command):
        return [command, "-c", "print('ok')"]
    return [command, "--version"]


def probe_passed(argv: list[str], result: ExecResult) -> bool:
    """Whether the ``probe_argv`` run ``argv`` started and did what it should."""
    if result.exit_code != 0 or result.timed_out:
        return False
    return result.stdout.strip() == "ok" if argv[1:2] == ["-c"] else True


def _start_fix(command: str) -> str:
    if is_python(command):
        return "set RUNNER_EVAL_PYTHON to an interpreter every user may run (e.g. /usr/bin/python3)"
    return f"install {Path(command).name} where every user may run it (e.g. under /usr)"


def unstarted_line(text: str) -> str:
    """The telling line of a run the sandbox could not start (its wrapper's message), cut to 300 characters."""
    match = _UNSTARTED.search(text)
    line = text[match.start():] if match else text
    return (line.strip().splitlines() or ["the sandbox failed"])[0][:300]


def default_interpreters() -> tuple[str, ...]:
    """The interpreter the programs run with: ``$RUNNER_EVAL_PYTHON`` or this one."""
    return (os.environ.get("RUNNER_EVAL_PYTHON") or sys.executable,)


def hidden_paths(extra: tuple[Path, ...] = (), interpreters: tuple[str, ...] | None = None) -> list[Path]:
    """Folders the sandboxed code must not read: the runner's home and cache (fetched benchmark
    data, references, converted models), the benchmarks shipped in the package, and ``extra``
    (e.g. the runs folder of the current run)."""
    from runner.paths import PACKAGE_DIR, cache_dir, runner_home

    paths = [runner_home(), cache_dir(), PACKAGE_DIR / "benchmarks", *extra]
    interpreters = default_interpreters() if interpreters is None else interpreters
    seen: list[Path] = []
    for path in paths:
        real = Path(os.path.realpath(path))
        # a folder above the interpreter's installation is hidden and the installation kept inside
        # it (``--runs-dir .`` in a checkout with its venv); only the installation itself cannot be
        if any(holds_interpreter(real, i) for i in interpreters):
            log.warning("%s holds the evaluation interpreter: the sandbox cannot hide it", real)
        elif real != Path("/") and real not in seen:
            seen.append(real)
    return seen


class _UidLease:
    """An exclusive uid from the pool, held through a lock file across processes."""

    def __init__(self) -> None:
        lock_dir = Path(tempfile.gettempdir()) / "runner-sandbox-uids"
        lock_dir.mkdir(mode=0o700, exist_ok=True)
        start = os.getpid() % UID_POOL
        for i in range(UID_POOL):
            uid = UID_BASE + (start + i) % UID_POOL
            fd = os.open(lock_dir / str(uid), os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.uid, self._fd = uid, fd
            return
        raise UserError(f"all {UID_POOL} sandbox uids are busy: lower --workers or raise RUNNER_SANDBOX_UID_POOL")

    def release(self) -> None:
        os.close(self._fd)


def _processes_of(uid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry.path).st_uid != uid:
                continue
            with open(f"{entry.path}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        # Zombies are already dead; their parent (or the namespace's end) reaps them.
        if state not in (b"Z", b"X"):
            pids.append(int(entry.name))
    return pids


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid``, repeating while a fork bomb still spawns."""
    for _ in range(50):
        pids = _processes_of(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)
    log.warning("processes of sandbox uid %d survived repeated SIGKILL", uid)


def _chown_tree(path: Path, uid: int) -> None:
    os.chown(path, uid, uid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, uid)


class LocalSandbox(Sandbox):
    """Contain a child process on this machine with namespaces, a private uid and rlimits."""

    def __init__(self, allow_unsandboxed: bool = False, hide: tuple[Path, ...] | list[Path] = (),
                 interpreters: tuple[str, ...] | None = None) -> None:
        self.capabilities = capabilities()
        # whose installations stay visible, read-only, wherever they live; each run's own command is
        # kept too (an evaluator may be given another interpreter than the one this sandbox knew)
        self.interpreters = default_interpreters() if interpreters is None else tuple(interpreters)
        self.hidden = hidden_paths(tuple(hide), self.interpreters)
        self._socket_filter = seccomp.UnixSocketFilter() if self.capabilities.unix_socket_filter else None
        if not self.capabilities.complete and not allow_unsandboxed:
            raise UserError(
                "this machine cannot fully sandbox untrusted code (missing: "
                + "; ".join(self.capabilities.missing())
                + "): run as root with util-linux, or pass --allow-unsandboxed to accept the risk"
            )

    def _prefix(self, uid: int | None, workdir: Path, limits: Limits, command: str) -> list[str]:
        caps = self.capabilities
        prefix: list[str] = []
        if caps.network_namespace or caps.pid_namespace:
            prefix = ["unshare"]
            if caps.network_namespace:
                prefix.append("--net")
            if caps.pid_namespace:
                prefix += ["--pid", "--fork", "--kill-child", "--mount", "--mount-proc"]
            if caps.pid_namespace and caps.private_mounts:
                plan = plan_mounts(tuple(dict.fromkeys((*self.interpreters, command))), self.hidden)
                prefix += ["--", *plan.script(workdir, limits.tmp_mb, new_root_mountpoint(_workdir_base()))]
        if uid is not None:
            # a uid change clears the parent-death signal ``--kill-child`` gave the namespace's first
            # process; setpriv sets it again, or the answer would outlive a killed ``unshare``
            death = ["--pdeathsig=KILL"] if _setpriv_pdeathsig() else []
            prefix += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", *death, "--"]
        return prefix

    def run(self, argv: list[str], workdir: Path, limits: Limits, env: dict[str, str] | None = None) -> ExecResult:
        """Run ``argv`` contained; raise ``EnvironmentFailure`` when the sandbox itself could not start it."""
        result = self._contained(argv, workdir, limits, env)
        if looks_unstarted(result) and not self._starts(argv[0], limits):
            raise EnvironmentFailure(f"{unstarted_line(result.stderr_tail)}: the sandbox cannot start {argv[0]}; "
                                     + _start_fix(argv[0]))
        return result

    def _starts(self, command: str, limits: Limits) -> bool:
        """Whether a known-good run of ``command`` works: tells the sandbox's own failure from an
        answer that prints the same message and exits 127."""
        probe_run = probe_argv(command)
        with self.workdir(limits) as probe:
            return probe_passed(probe_run, self._contained(probe_run, probe, limits, None))

    def _contained(self, argv: list[str], workdir: Path, limits: Limits, env: dict[str, str] | None) -> ExecResult:
        lease = _UidLease() if self.capabilities.private_uid else None
        uid = lease.uid if lease else None
        try:
            if uid is not None:
                _chown_tree(workdir, uid)
            return self._run(self._prefix(uid, workdir, limits, argv[0]) + argv, workdir, limits, env, uid)
        finally:
            if uid is not None:
                _kill_uid(uid)
            if lease:
                lease.release()

    def _run(self, argv: list[str], workdir: Path, limits: Limits, env: dict[str, str] | None, uid: int | None) -> ExecResult:
        socket_filter = self._socket_filter
        parent = os.getpid()

        def set_limits() -> None:
            # the sandbox dies with its scorer, however the scorer dies: SIGKILL to ``unshare`` when
            # this thread's process goes, and ``--kill-child`` takes the namespace down with it
            die_with_parent(parent)
            mem = limits.memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
            size = limits.file_size_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if uid is not None:
                resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
            if socket_filter is not None:
                socket_filter.install()

        child_env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(workdir),
            "TMPDIR": str(workdir),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            **(env or {}),
        }
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=workdir,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=set_limits,
                start_new_session=True,
            )
        except OSError as exc:
            raise UserError(
                f"cannot start {argv[0]!r} in the sandbox ({exc.strerror}): install it, or point "
                "RUNNER_EVAL_PYTHON at an interpreter every user may run (e.g. /usr/bin/python3)"
            ) from None
        overflow = threading.Event()
        out_chunks: list[bytes] = []
        err_tail = bytearray()

        def pump(stream, keep_all: bool) -> None:
            total = 0
            while chunk := stream.read1(65536):
                total += len(chunk)
                if keep_all:
                    room = limits.output_bytes - (total - len(chunk))
                    if room > 0:
                        out_chunks.append(chunk[:room])
                else:
                    err_tail.extend(chunk)
                    del err_tail[:-_STDERR_TAIL]
                if total > limits.output_bytes:
                    overflow.set()
                    self._kill(proc, uid)
                    # Keep draining so that the child never blocks on a full pipe before it dies.

        readers = [
            threading.Thread(target=pump, args=(proc.stdout, True), daemon=True),
            threading.Thread(target=pump, args=(proc.stderr, False), daemon=True),
        ]
        for t in readers:
            t.start()
        timed_out = False
        try:
            proc.wait(timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            self._kill(proc, uid)
            proc.wait()
        # After the first process ends, leftovers (daemons holding the pipes) are killed so
        # that the readers see end-of-file.
        self._kill(proc, uid)
        for t in readers:
            t.join(timeout=10)
        seconds = time.monotonic() - started
        code = proc.returncode
        sig = -code if code is not None and code < 0 else None
        # unshare re-raises its child's fatal signal; RLIMIT_CPU shows up as SIGKILL/SIGXCPU.
        return ExecResult(
            exit_code=None if sig else code,
            stdout=b"".join(out_chunks).decode("utf-8", errors="replace"),
            stderr_tail=bytes(err_tail).decode("utf-8", errors="replace"),
            timed_out=timed_out,
            output_truncated=overflow.is_set(),
            killed_by_signal=sig,
            seconds=seconds,
        )

    @staticmethod
    def _kill(proc: subprocess.Popen, uid: int | None) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        if uid is not None:
            _kill_uid(uid)
