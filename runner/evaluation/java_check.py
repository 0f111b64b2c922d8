"""Checking a Java program: compile its JUnit 3 tester with ``javac`` and run it with the JUnit console launcher."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
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
FAST_LAUNCHER = "RunnerCompileAndTest"
_BUILD_LOCK = threading.Lock()
_SUMMARY = re.compile(r"\[\s*(\d+)\s+(tests|containers)\s+(found|successful|failed|aborted)\s*\]")


class JavaToolchain(BaseModel):
    """Where ``javac``, ``java`` and the JUnit jars are."""

    model_config = ConfigDict(frozen=True)

    javac: str
    java: str
    junit_console: Path
    classpath: tuple[Path, ...]  # junit4, hamcrest: what a JUnit 3 tester needs beside the console jar

    def jvm_flags(self, limits: Limits) -> list[str]:
        """Flags that keep a short JVM run small and fast: one GC thread, C1 only, bounded reservations."""
        return [
            f"-Xmx{limits.jvm_heap_mb}m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
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
    return JavaToolchain(
        javac=javac,
        java=java,
        junit_console=jars["RUNNER_JUNIT_CONSOLE_JAR"],
        classpath=(jars["RUNNER_JUNIT4_JAR"], jars["RUNNER_HAMCREST_JAR"]),
    )


def _summary(stdout: str) -> dict[str, int]:
    return {f"{kind} {what}": int(n) for n, kind, what in _SUMMARY.findall(stdout)}


def java_version() -> str:
    """``java -version``'s first line, for environment records."""
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unavailable"
    return (out.stderr or out.stdout).strip().split("\n")[0]


def _fast_launcher(toolchain: JavaToolchain) -> Path:
    """The compiled fast-path launcher, built once per source version into the runner's cache."""
    source = Path(__file__).with_name(f"{FAST_LAUNCHER}.java")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    target = cache_dir() / "evaluation" / f"fast-java-{digest}"
    built = target / f"{FAST_LAUNCHER}.class"
    with _BUILD_LOCK:
        if not built.is_file():
            target.mkdir(parents=True, exist_ok=True)
            cp = ":".join([str(toolchain.junit_console), *map(str, toolchain.classpath)])
            done = subprocess.run([toolchain.javac, "-cp", cp, "-d", str(target), str(source)],
                                  capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise UserError(f"{source}: cannot compile the Java fast-path launcher: {done.stderr.strip()[-300:]}")
    return built


def check_java(
    program: Program, source: str, sandbox: Sandbox, limits: Limits, toolchain: JavaToolchain, fast: bool = False
) -> CheckResult:
    """Compile and run the program's tester; pass when JUnit finds tests and none fails.

    ``fast`` compiles and tests in one JVM (``RunnerCompileAndTest``) instead of two; same verdicts.
    """
    tester = program.tester_class or program.source.stem
    jvm_limits = limits.for_jvm()
    flags = toolchain.jvm_flags(limits)
    launcher = _fast_launcher(toolchain) if fast else None
    with sandbox.workdir() as workdir:
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
        (workdir / f"{tester}.java").write_text(source, encoding="utf-8")
        if launcher is not None:
            shutil.copy2(launcher, workdir / launcher.name)
            run = sandbox.run([toolchain.java, *flags, "-cp", cp, FAST_LAUNCHER, cp, f"{tester}.java", tester],
                              workdir, jvm_limits)
            if run.exit_code == 3 and "runner: compilation failed" in run.stderr_tail and not _summary(run.stdout):
                return CheckResult(outcome=Outcome.compile_error, stderr_tail=run.stderr_tail, seconds=run.seconds)
            return _judge(run)
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
        run = sandbox.run(
            [toolchain.java, *flags, "-cp", cp, "org.junit.platform.console.ConsoleLauncher",
             "--disable-banner", "--disable-ansi-colors", "--details=summary", "--select-class", tester],
            workdir,
            jvm_limits,
        )
    return _judge(run)


def _judge(run: ExecResult) -> CheckResult:
    """The verdict from a JUnit console run: its summary counts, exit status and limits."""
    counts = _summary(run.stdout)
    detail = (run.stdout[-3000:] + "\n" + run.stderr_tail).strip()
    if run.timed_out:
        return CheckResult(outcome=Outcome.timeout, stderr_tail=f"timed out after {run.seconds:.1f} s\n{detail}",
                           seconds=run.seconds, outputs=[run.stdout])
    if run.output_truncated or run.killed_by_signal or "tests found" not in counts or counts["tests found"] == 0:
        return CheckResult(outcome=Outcome.runtime_error, stderr_tail=detail, seconds=run.seconds, outputs=[run.stdout])
    if counts.get("containers failed", 0) > 0 and counts.get("tests successful", 0) == 0:
        # The tester could not even start (a static initialiser threw).
        return CheckResult(outcome=Outcome.runtime_error, stderr_tail=detail, seconds=run.seconds, outputs=[run.stdout])
    failed = counts.get("tests failed", 0) + counts.get("tests aborted", 0) + counts.get("containers failed", 0)
    outcome = Outcome.passed if failed == 0 and run.exit_code == 0 else Outcome.fail
    return CheckResult(outcome=outcome, stderr_tail="" if outcome is Outcome.passed else detail,
                       seconds=run.seconds, outputs=[run.stdout])
