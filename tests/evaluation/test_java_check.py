"""Checking small real Java programs: javac and the JUnit console launcher on a JUnit 3 tester."""

from __future__ import annotations

import pytest

from runner.errors import UserError
from runner.evaluation.java_check import check_java, java_toolchain
from runner.records import Outcome
from tests.conftest import require
from tests.evaluation.conftest import JAVA, java_program

TESTER = """import junit.framework.TestCase;

class Counter {
    private int n;
    void inc() { BODY }
    int get() { return n; }
}

public class CounterTester extends TestCase {
    public void testIncrementsOnce() {
        Counter c = new Counter();
        c.inc();
        assertEquals(1, c.get());
    }
    public void testIncrementsTwice() {
        Counter c = new Counter();
        c.inc(); c.inc();
        assertEquals(2, c.get());
    }
}
"""


@pytest.fixture
def toolchain():
    try:
        return java_toolchain()
    except UserError as exc:
        require(False, f"JDK and JUnit jars ({exc})")


@pytest.fixture
def program(world_dir):
    return java_program(world_dir, "CounterTester", TESTER.replace("BODY", "n++;"))


@pytest.mark.parametrize("fast", [False, True], ids=["javac-then-java", "one-jvm"])
@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        ("n++;", Outcome.passed),
        ("n += 2;", Outcome.fail),
        ("n++", Outcome.compile_error),
        ("System.exit(3);", Outcome.runtime_error),
        ("while (true) { n++; }", Outcome.timeout),
    ],
)
def test_java_outcomes(program, sandbox, toolchain, body, outcome, fast):
    result = check_java(program, TESTER.replace("BODY", body), sandbox, JAVA, toolchain, fast=fast)
    assert result.outcome is outcome, result.stderr_tail


@pytest.mark.parametrize("fast", [False, True], ids=["javac-then-java", "one-jvm"])
def test_a_compile_error_names_the_javac_message(program, sandbox, toolchain, fast):
    result = check_java(program, TESTER.replace("BODY", "n++"), sandbox, JAVA, toolchain, fast=fast)
    assert "';' expected" in result.stderr_tail


def test_a_missing_junit_jar_is_a_user_error_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNNER_JUNIT4_JAR", str(tmp_path / "nowhere.jar"))
    with pytest.raises(UserError, match="RUNNER_JUNIT4_JAR=.*nowhere.jar"):
        java_toolchain()


def test_a_jvm_without_a_security_manager_is_refused_jdk24_standin(tmp_path):
    """Java 24 removed the Security Manager the launchers confine testers with (a stand-in script
    prints its banner: no JDK 24 is installed here)."""
    from runner.errors import UserError
    from runner.evaluation.java_check import _check_security_manager

    fake = tmp_path / "java"
    fake.write_text('#!/bin/sh\necho \'openjdk version "24.0.1" 2025-04-15\' >&2\n')
    fake.chmod(0o755)
    with pytest.raises(UserError, match="Security Manager.*Java 24 no longer has"):
        _check_security_manager(str(fake))
    _check_security_manager("java")  # this machine's JDK 17 has it
