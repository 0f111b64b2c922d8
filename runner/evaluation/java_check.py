"""Checking a Java program: compile its JUnit 3 tester and run it with the JUnit console launcher.

Both run under ``RunnerCompileAndTest``, which confines the tester's classes (``RunnerTesterPolicy``)
before JUnit loads them and writes a keyed record of what JUnit found: the verdict comes from that
record and the JVM's exit status, never from stdout (docs/threat-model.md).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from runner.errors import UserError
from runner.evaluation.python_check import CheckResult, copy_data
from runner.evaluation.sandbox import ExecResult, Limits, Sandbox
from runner.paths import cache_dir
from runner.records import Outcome, Program

# Debian's ``junit5`` package; JUnit 3's ``junit.framework.TestCase`` comes with ``junit4``,
# which the vintage engine inside the console jar needs beside hamcrest.
DEFAULT_JARS = {
    "RUNNER_JUNIT_CONSOLE_JAR": "/usr/share/java/junit-platform-console-standalone.jar",
    "RUNNER_JUNIT4_JAR": "/usr/share/java/junit4.jar",
    "RUNNER_HAMCREST_JAR": "/usr/share/java/hamcrest-core.jar",
}
LAUNCHER = "RunnerCompileAndTest"
#: upstream's check (``javac -cp CP FILE``, then the console launcher) in one JVM: ours, an opt-in
#: of upstream's scoring path (``upstream.SandboxedExecution``, ``java_path="one-jvm"``)
ONE_JVM_LAUNCHER = "RunnerUpstreamOneJvm"
#: the class shared by both launchers: what the tester's code may do in their JVM
POLICY = "RunnerTesterPolicy"
#: the launcher's folder in the working folder, on the class path apart from the tester's classes (a
#: class path entry is the unit the policy trusts or confines) and first: the tester's file may declare
#: classes named like the launcher's, which javac writes into the working folder, and they must lose
LAUNCHER_DIR = "runner-launcher"
#: the last Java whose Security Manager can be enabled (JEP 486 removed it in 24)
LAST_SECURITY_MANAGER_JAVA = 23
_BUILD_LOCK = threading.Lock()
# What the JDK prints on the JVM's own stderr when the launcher enables the Security Manager (it cannot
# be silenced from Java): dropped, so that stderr stays the tester's (upstream reads it on failures).
_SM_WARNING = re.compile(r"^WARNING: (A terminally deprecated method in java\.lang\.System has been called"
                         rf"|System::setSecurityManager has been called by {POLICY} \(file:[^\n]*\)"
                         rf"|Please consider reporting this to the maintainers of {POLICY}"
                         r"|System::setSecurityManager will be removed in a future release)\n", re.MULTILINE)
# The launcher's key (deleted by it before the tester loads) and its authenticated record.
_KEY_FILE = ".runner-key"
_RECORD_FILE = ".runner-record"
_COUNTS = ("tests found", "tests successful", "tests failed", "tests aborted", "containers failed")


class JavaToolchain(BaseModel):
    """Where ``javac``, ``java`` and the JUnit jars are."""

    model_config = ConfigDict(frozen=True)

    javac: str
    java: str
    junit_console: Path
    classpath: tuple[Path, ...]  # junit4, hamcrest: what a JUnit 3 tester needs beside the console jar

    def jvm_flags(self, limits: Limits) -> list[str]:
        """Flags that keep a JVM run small: one GC thread, bounded reservations.

        Both JIT tiers stay on, as upstream ran ``java``: C1 alone saves a tenth of a short
        tester's CPU time but costs upstream's compute-heavy RNGTester half again as much
        (26.9 s against 17.4 s of CPU), which on a loaded machine is the difference between
        passing and timing out at the ceiling.
        """
        return [
            f"-Xmx{limits.jvm_heap_mb}m",
            # the launcher enables the Security Manager itself once javac is done (Java 18+ asks leave)
            "-Djava.security.manager=allow",
            "-XX:+DisableAttachMechanism",
            "-XX:+UseSerialGC",
            "-XX:-UsePerfData",
            "-XX:ReservedCodeCacheSize=64m",
            "-XX:CompressedClassSpaceSize=128m",
            "-Xshare:auto",
        ]


def java_toolchain(console_jar: Path | None = None) -> JavaToolchain:
    """Find the Java tools and JUnit jars (env vars ``RUNNER_JUNIT_CONSOLE_JAR``, ``RUNNER_JUNIT4_JAR``, ``RUNNER_HAMCREST_JAR``)."""
    chosen = {var: os.environ.get(var) or default for var, default in DEFAULT_JARS.items()}
    if console_jar is not None:
        chosen["RUNNER_JUNIT_CONSOLE_JAR"] = str(console_jar)
    return _toolchain(tuple(chosen.items()))


@lru_cache(maxsize=8)
def _toolchain(chosen: tuple[tuple[str, str], ...]) -> JavaToolchain:
    javac, java = shutil.which("javac"), shutil.which("java")
    if not javac or not java:
        raise UserError("javac/java not found on PATH: install a JDK (Debian: apt-get install default-jdk-headless)")
    jars = {}
    for var, value in chosen:
        path = Path(value)
        if not path.is_file():
            raise UserError(
                f"{var}={path}: no such jar; install Debian's junit5 and junit4 packages "
                f"(apt-get install junit5 junit4) or set {var} to the jar's path"
            )
        jars[var] = path
    _check_security_manager(java)
    return JavaToolchain(
        javac=javac,
        java=java,
        junit_console=jars["RUNNER_JUNIT_CONSOLE_JAR"],
        classpath=(jars["RUNNER_JUNIT4_JAR"], jars["RUNNER_HAMCREST_JAR"]),
    )


def _check_security_manager(java: str) -> None:
    """Refuse a JVM without a Security Manager: the launchers confine the tester's code with it."""
    version = java_version(java)
    try:
        major = int(version.split('"')[1].split(".")[0])
    except (IndexError, ValueError):
        return  # an unusual banner: the launcher itself stops (no record) if it cannot confine
    if major > LAST_SECURITY_MANAGER_JAVA:
        raise UserError(f"{java}: {version}: Java answers are confined with the Security Manager, which Java "
                        f"{major} no longer has; install a JDK 17 to {LAST_SECURITY_MANAGER_JAVA} (Debian bookworm: "
                        "openjdk-17-jdk-headless)")


class LaunchRecord(BaseModel):
    """What the launcher reported once JUnit returned: its phase, exit status and JUnit's own counts."""

    phase: str  # "tested" or "compile_error"
    exit_code: int
    counts: dict[str, int]


def _arm(workdir: Path) -> bytes:
    """A fresh key for this run's launcher, left where only it reads (and deletes) it."""
    key = secrets.token_bytes(32)
    (workdir / _RECORD_FILE).unlink(missing_ok=True)
    path = workdir / _KEY_FILE
    path.write_bytes(key)
    os.chmod(path, 0o644)  # the sandbox's uid reads it; the folder is private to the run
    return key


def read_record(workdir: Path, key: bytes) -> LaunchRecord | None:
    """The launcher's record if it is there and carries this run's key, else ``None``."""
    try:
        # never follow a link the answer left in its place: the runner reads this, not the sandbox
        fd = os.open(workdir / _RECORD_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    body, _, mac = raw.decode("ascii", errors="replace").strip().rpartition(" ")
    if not hmac.compare_digest(hmac.new(key, body.encode("ascii", errors="replace"), hashlib.sha256).hexdigest(), mac):
        return None
    phase, code, *counts = body.split(" ")
    return LaunchRecord(phase=phase, exit_code=int(code), counts=dict(zip(_COUNTS, map(int, counts))))


def java_version(java: str = "java") -> str:
    """``java -version``'s first line, for environment records."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unavailable"
    return (out.stderr or out.stdout).strip().split("\n")[0]


@lru_cache(maxsize=1)
def launchers_digest() -> str:
    """sha256 of the Java launchers' and their policy's sources: a change to them can change verdicts."""
    names = (LAUNCHER, ONE_JVM_LAUNCHER, POLICY)
    return hashlib.sha256(b"".join(Path(__file__).with_name(f"{n}.java").read_bytes() for n in names)).hexdigest()


def _launcher(toolchain: JavaToolchain, name: str = LAUNCHER) -> Path:
    """The folder of the compiled launcher ``name`` (a ``.java`` file beside this module) and the policy
    it confines the tester with, built once per source version into the runner's cache."""
    sources = [Path(__file__).with_name(f"{n}.java") for n in (name, POLICY)]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    target = cache_dir() / "evaluation" / (f"java-launcher-{digest}" if name == LAUNCHER else f"java-{name}-{digest}")
    built = [target / f"{n}.class" for n in (name, POLICY)]
    with _BUILD_LOCK:
        if not all(p.is_file() for p in built):
            # built aside and renamed into place: another process never copies a half-written class
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f"{target.name}-", dir=target.parent))
            cp = ":".join([str(toolchain.junit_console), *map(str, toolchain.classpath)])
            done = subprocess.run([toolchain.javac, "-nowarn", "-cp", cp, "-d", str(staging), *map(str, sources)],
                                  capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                shutil.rmtree(staging, ignore_errors=True)
                raise UserError(f"{sources[0]}: cannot compile the Java test launcher: {done.stderr.strip()[-300:]}")
            try:
                os.rename(staging, target)
            except OSError:  # another process put its build there first
                shutil.rmtree(staging, ignore_errors=True)
    return target


def launch_recorded(sandbox: Sandbox, workdir: Path, java: str, flags: list[str], cp: str, phase: str,
                    tester: str, limits: Limits, trusted: list[str]) -> tuple[ExecResult, LaunchRecord | None]:
    """Run the launcher (installed in ``workdir``) on ``tester`` with class path ``cp``: the JVM's run and
    its keyed record, ``None`` when the JVM ended without writing this run's (``phase``: "compile" or
    "test"). ``trusted``: the JUnit jars of ``cp``, which keep every permission; the rest is confined."""
    key = _arm(workdir)
    run = sandbox.run([java, *flags, "-cp", f"{LAUNCHER_DIR}:{cp}", LAUNCHER, phase, cp, f"{tester}.java", tester,
                       _KEY_FILE, _RECORD_FILE, ":".join([LAUNCHER_DIR, *trusted])], workdir, limits)
    return _quiet(run), read_record(workdir, key)


def _quiet(run: ExecResult) -> ExecResult:
    return run.model_copy(update={"stderr_tail": _SM_WARNING.sub("", run.stderr_tail)})


def install_launcher(toolchain: JavaToolchain, workdir: Path, name: str = LAUNCHER) -> None:
    """Put the compiled launcher in ``workdir``'s launcher folder (the sandbox's uid may not read the cache)."""
    folder = workdir / LAUNCHER_DIR
    folder.mkdir(exist_ok=True)
    for compiled in _launcher(toolchain, name).glob("*.class"):
        shutil.copy2(compiled, folder / compiled.name)


def launch_one_jvm(sandbox: Sandbox, workdir: Path, java: str, flags: list[str], cp: str, filename: str,
                   tester: str, limits: Limits, trusted: list[str]) -> tuple[ExecResult, LaunchRecord | None]:
    """Upstream's ``javac -cp CP FILE`` and its console launcher run, in one JVM (``RunnerUpstreamOneJvm``,
    installed in ``workdir`` with ``install_launcher(..., ONE_JVM_LAUNCHER)``): the run and its keyed
    record, whose phase is ``compile_error`` (javac's status, its diagnostics on stderr) or ``tested``."""
    key = _arm(workdir)
    run = sandbox.run([java, *flags, "-cp", f"{LAUNCHER_DIR}:{cp}", ONE_JVM_LAUNCHER, cp, filename, tester, _KEY_FILE,
                       _RECORD_FILE, ":".join([LAUNCHER_DIR, *trusted])], workdir, limits)
    return _quiet(run), read_record(workdir, key)


def check_java(
    program: Program, source: str, sandbox: Sandbox, limits: Limits, toolchain: JavaToolchain, fast: bool = False
) -> CheckResult:
    """Compile and run the program's tester; pass when JUnit finds tests and none fails.

    The verdict comes from the launcher's keyed record, never from what the JVM printed or its
    exit status alone. ``fast`` compiles and tests in one JVM instead of two; same verdicts.
    """
    tester = program.tester_class or program.source.stem
    jvm_limits = limits.for_jvm()
    flags = toolchain.jvm_flags(limits)
    with sandbox.workdir(limits) as workdir:
        copy_data(program, workdir)
        # The JUnit jars travel with the run like the program's own jars: the sandbox's uid may not
        # traverse the folder they live in (a 0700 home), and a container sees only its /work.
        jars = []
        for jar in (toolchain.junit_console, *toolchain.classpath, *program.jars):
            local = workdir / jar.name
            if not local.exists():
                shutil.copy2(jar, local)
            jars.append(local.name)
        cp = ":".join([*jars, "."])
        junit = jars[:1 + len(toolchain.classpath)]  # the console jar, junit4, hamcrest: not the program's
        (workdir / f"{tester}.java").write_text(source, encoding="utf-8")
        install_launcher(toolchain, workdir)

        def launch(phase: str) -> tuple[ExecResult, LaunchRecord | None]:
            return launch_recorded(sandbox, workdir, toolchain.java, flags, cp, phase, tester, jvm_limits, junit)

        if fast:
            run, record = launch("compile")
            if record is not None and record.phase == "compile_error" and run.exit_code == record.exit_code:
                return CheckResult(outcome=Outcome.compile_error, stderr_tail=run.stderr_tail, seconds=run.seconds)
            return _judge(run, record)
        compiled = sandbox.run(
            [toolchain.javac, *[f"-J{f}" for f in flags], "-nowarn", "-proc:none", "-encoding", "UTF-8",
             "-cp", cp, "-d", ".", f"{tester}.java"],
            workdir,
            jvm_limits,
        )
        if compiled.timed_out:
            return CheckResult(outcome=Outcome.timeout, stderr_tail=f"javac timed out\n{compiled.stderr_tail}")
        if compiled.exit_code != 0:
            return CheckResult(
                outcome=Outcome.compile_error,
                stderr_tail=(compiled.stderr_tail or compiled.stdout[-4000:]),
                seconds=compiled.seconds,
            )
        run, record = launch("test")
    judged = _judge(run, record)
    # the longest single run is what scaled limits grow from, and javac runs under them too
    return judged.model_copy(update={"seconds": max(judged.seconds, compiled.seconds)})


def _judge(run: ExecResult, record: LaunchRecord | None) -> CheckResult:
    """The verdict from a launcher run: its record's counts and exit status, and the limits."""
    detail = (run.stdout[-3000:] + "\n" + run.stderr_tail).strip()
    if run.timed_out:
        return CheckResult(outcome=Outcome.timeout, stderr_tail=f"timed out after {run.seconds:.1f} s\n{detail}",
                           seconds=run.seconds, outputs=[run.stdout])
    if record is None or record.phase != "tested" or run.exit_code != record.exit_code:
        # the JVM ended before the launcher's record (the tester exited or halted), or the record is
        # not this run's: whatever it printed, the tests did not report
        why = "the JVM ended without the launcher's completion record"
        return CheckResult(outcome=Outcome.runtime_error, stderr_tail=f"{why}\n{detail}", seconds=run.seconds,
                           outputs=[run.stdout])
    counts = record.counts
    if run.output_truncated or run.killed_by_signal or counts["tests found"] == 0:
        return CheckResult(outcome=Outcome.runtime_error, stderr_tail=detail, seconds=run.seconds, outputs=[run.stdout])
    if counts.get("containers failed", 0) > 0 and counts.get("tests successful", 0) == 0:
        # The tester could not even start (a static initialiser threw).
        return CheckResult(outcome=Outcome.runtime_error, stderr_tail=detail, seconds=run.seconds, outputs=[run.stdout])
    failed = counts.get("tests failed", 0) + counts.get("tests aborted", 0) + counts.get("containers failed", 0)
    outcome = Outcome.passed if failed == 0 and record.exit_code == 0 else Outcome.fail
    return CheckResult(outcome=outcome, stderr_tail="" if outcome is Outcome.passed else detail,
                       seconds=run.seconds, outputs=[run.stdout])
