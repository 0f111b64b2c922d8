"""Upstream's test runs in this project's sandbox: ``SandboxedExecution`` stands in for SimCoPilot's
``execute_with_timeout`` (``runner.evaluation.upstream`` swaps it in, per thread), answering with the
same strings from a run in a ``Sandbox`` under ``Limits``; for Java through our launchers, whose
record (not the JVM's stdout) says whether JUnit reported.
"""

from __future__ import annotations

from pathlib import Path

from runner.records import Language, Program


#: How upstream's Java check runs here. ``javac+java``: as upstream's ``execute_java_code`` does it,
#: ``javac -cp CP FILE`` in one JVM, then the console launcher in a second. ``one-jvm`` (ours, an
#: opt-in): the same javac arguments through ``javax.tools`` and the same launcher run, in one JVM
#: (``RunnerUpstreamOneJvm.java``), compile and tests then sharing one run's time, CPU and heap limits.
#: ``bench/eval_throughput.py --java-paths`` compares the two on the Java oracle.
JAVA_PATHS = ("javac+java", "one-jvm")
DEFAULT_JAVA_PATH = "javac+java"


class SandboxedExecution:
    """Upstream's ``execute_with_timeout`` for one program, run in a ``Sandbox`` under ``Limits``.

    It answers as upstream's does: the program's stdout, or ``"Error: <stderr>"`` for a non-zero
    exit (``"Error: Compilation error: ..."`` when ``javac`` fails), or ``"Timeout: ..."``. Python
    runs the joined code, a newline and the test case, in a private folder holding the program's
    data files; Java compiles with upstream's class path (its JUnit console jar, the jars beside
    the program, the folder) and runs the console launcher on the tester class.
    """

    def __init__(self, program: Program, sandbox, limits, python: str, toolchain=None, junit_jar: Path | None = None,
                 java_path: str | None = None):
        self.program, self.sandbox, self.limits, self.python = program, sandbox, limits, python
        self.toolchain, self.junit_jar = toolchain, junit_jar
        self.java_path = java_path or DEFAULT_JAVA_PATH
        if self.java_path not in JAVA_PATHS:
            raise ValueError(f"java_path {self.java_path!r}: one of {', '.join(JAVA_PATHS)}")

    def __call__(self, merged_code: str, test_case: str, source_code_path: str, timeout: float) -> str:
        from runner.evaluation.python_check import PYTHON_ENV, copy_data

        filename = Path(source_code_path).name
        with self.sandbox.workdir(self.limits) as workdir:
            copy_data(self.program, workdir)
            if self.program.language is Language.python:
                (workdir / filename).write_text(merged_code + "\n" + test_case, encoding="utf-8")
                return self._answer(self.sandbox.run([self.python, filename], workdir, self.limits, env=PYTHON_ENV))
            return self._java(merged_code, filename, workdir)

    def _java(self, merged_code: str, filename: str, workdir: Path) -> str:
        import shutil

        from runner.evaluation import java_check

        tool = self.toolchain
        limits = self.limits.for_jvm()
        flags = tool.jvm_flags(self.limits)
        jars = []
        for jar in self.program.jars:
            if not (workdir / jar.name).exists():
                shutil.copy2(jar, workdir / jar.name)
            jars.append(jar.name)
        console = self.junit_jar or tool.junit_console
        if self.junit_jar is not None:
            shutil.copy2(self.junit_jar, workdir / self.junit_jar.name)  # readable by the sandbox uid wherever it lives
            console = Path(self.junit_jar.name)
        # Upstream's class path: its console jar, the program's jars, the folder. Debian's console
        # jar needs the JUnit 4 jars beside it for JUnit 3 testers (see java_check); upstream's does not.
        extra = [] if self.junit_jar is not None else [str(p) for p in tool.classpath]
        cp = ":".join([str(console), *jars, ".", *extra])
        (workdir / filename).write_text(merged_code, encoding="utf-8")
        if self.java_path == "one-jvm":
            return self._java_one_jvm(tool, workdir, flags, cp, filename, limits, [str(console), *extra])
        compiled = self.sandbox.run([tool.javac, *[f"-J{f}" for f in flags], "-cp", cp, filename], workdir, limits)
        if compiled.timed_out:
            return "Timeout: Execution exceeded time limit."
        if compiled.exit_code != 0:
            return f"Error: Compilation error: {compiled.stderr_tail or compiled.stdout[-4000:]}"
        # Upstream runs JUnit's console launcher; here our launcher runs it inside the same JVM, the
        # tester's classes confined, and reports through a record only it can write, so that a tester
        # that ends the JVM early (after printing a summary of its own) is an error, not the line it forged.
        java_check.install_launcher(tool, workdir)
        run, record = java_check.launch_recorded(self.sandbox, workdir, tool.java, flags, cp, "test",
                                                 Path(filename).stem, limits, [str(console), *extra])
        if not run.timed_out and (record is None or record.phase != "tested" or record.exit_code != run.exit_code):
            return f"Error: the JVM ended without the launcher's completion record\n{run.stderr_tail}"
        return self._answer(run)

    def _java_one_jvm(self, tool, workdir: Path, flags: list[str], cp: str, filename: str, limits,
                      trusted: list[str]) -> str:
        """``_java``'s two runs in one JVM, answering as they do (``java_path="one-jvm"``)."""
        from runner.evaluation import java_check

        java_check.install_launcher(tool, workdir, java_check.ONE_JVM_LAUNCHER)
        run, record = java_check.launch_one_jvm(self.sandbox, workdir, tool.java, flags, cp, filename,
                                                Path(filename).stem, limits, trusted)
        if run.timed_out:
            return "Timeout: Execution exceeded time limit."
        if record is not None and record.phase == "compile_error" and record.exit_code == run.exit_code:
            return f"Error: Compilation error: {run.stderr_tail or run.stdout[-4000:]}"
        if record is None or record.phase != "tested" or record.exit_code != run.exit_code:
            return f"Error: the JVM ended without the launcher's completion record\n{run.stderr_tail}"
        return self._answer(run)

    @staticmethod
    def _answer(result) -> str:
        if result.timed_out:
            return "Timeout: Execution exceeded time limit."
        if result.exit_code != 0 or result.killed_by_signal or result.output_truncated:
            why = result.stderr_tail
            if result.output_truncated:
                why = f"stdout exceeded the output limit; killed\n{why}"
            elif result.killed_by_signal:
                why = f"killed by signal {result.killed_by_signal}\n{why}"
            if not why.strip():
                why = result.stdout[-4000:]  # the console launcher reports failed tests on stdout
            return f"Error: {why}"
        return result.stdout
