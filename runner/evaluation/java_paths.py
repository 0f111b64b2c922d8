"""Upstream's Java check two ways, and how their verdicts are compared.

``upstream.SandboxedExecution`` runs SimCoPilot's Java check as upstream's harness does by default
(``javac+java``: ``javac -cp CP FILE``, then the JUnit console launcher in a second JVM), or, with
``java_path="one-jvm"`` (ours, an opt-in), both in one JVM (``RunnerUpstreamOneJvm.java``: javac's
same arguments through ``javax.tools``). ``JavaPathEvaluator`` is an ``Evaluator`` whose
``java_fast`` switch picks the one-JVM path for upstream's scoring too (it already does for this
project's own cascade, ``java_check.check_java``), so that the verdict cache, whose key holds
``java_fast``, keeps the two paths' verdicts apart.

Two verdicts agree (``differences`` is empty) when their outcome, stage, cleaned-stage outcome,
upstream's pass ratio and the kinds of the answers of every test run the judging made
(``result_kind`` of each string upstream's ``execute_with_timeout`` got back, whole: a verdict's
detail is cut to its last 4,000 characters) are equal, and, for a compile error, javac's text too.
"""

from __future__ import annotations

import threading

from runner.evaluation import upstream
from runner.evaluation.evaluator import Evaluator
from runner.records import Verdict

#: the fields two verdicts must share (``differences``)
VERDICT_FIELDS = ("outcome", "stage", "cleaned_outcome", "pass_ratio", "result_kinds")
_SEEN = threading.local()


class _Recorded(upstream.SandboxedExecution):
    """``SandboxedExecution`` that notes the kind of each answer on the judging thread (``JavaPathEvaluator.judge``)."""

    def __call__(self, merged_code: str, test_case: str, source_code_path: str, timeout: float) -> str:
        text = super().__call__(merged_code, test_case, source_code_path, timeout)
        kinds = getattr(_SEEN, "kinds", None)
        if kinds is not None:
            kinds.append(result_kind(text))
        return text


class JavaPathEvaluator(Evaluator):
    """An ``Evaluator`` whose ``java_fast=True`` runs upstream's Java check in one JVM as well (``one-jvm``)."""

    def judge(self, task, raw_text: str) -> tuple[Verdict, list[str]]:
        """``evaluate``, and the kind of each of upstream's test-run answers it got, in order."""
        previous = getattr(_SEEN, "kinds", None)
        _SEEN.kinds = []
        try:
            return self.evaluate(task, raw_text), _SEEN.kinds
        finally:
            _SEEN.kinds = previous

    @property
    def java_path(self) -> str:
        one_jvm, two_jvms = "one-jvm", "javac+java"
        assert {one_jvm, two_jvms} == set(upstream.JAVA_PATHS)
        return one_jvm if self.java_fast else two_jvms

    def upstream_execution(self, program):
        execution = super().upstream_execution(program)
        return _Recorded(execution.program, execution.sandbox, execution.limits, execution.python,
                         toolchain=execution.toolchain, junit_jar=execution.junit_jar, java_path=self.java_path)


def result_kind(answer: str) -> str:
    """The kind of an answer of upstream's ``execute_with_timeout``: its program's stdout, or which error."""
    detail = answer
    if detail.startswith("Timeout"):
        return "timeout"
    if detail.startswith("Error: Compilation error"):
        return "compile_error"
    if detail.startswith("Error: the JVM ended without"):
        return "no_record"
    if detail.startswith("Error"):
        return "error_tests_failed" if "tests failed" in detail else "error"
    if detail.startswith("Unexpected error"):
        return "unexpected_error"
    return "stdout"


def summary(verdict: Verdict, kinds: list[str]) -> dict:
    """What ``differences`` compares of a verdict judged by upstream's cascade (``JavaPathEvaluator.judge``)."""
    up = verdict.upstream
    return {"outcome": verdict.outcome.value, "stage": verdict.stage.value if verdict.stage else None,
            "cleaned_outcome": verdict.cleaned_outcome.value, "pass_ratio": up.pass_ratio if up else None,
            "result_kinds": list(kinds), "detail": verdict.stderr_tail}


def differences(a: dict, b: dict) -> list[str]:
    """How two ``summary`` dicts differ (empty: the verdicts agree)."""
    out = [f"{f}: {a[f]} / {b[f]}" for f in VERDICT_FIELDS if a[f] != b[f]]
    if not out and "compile_error" in a["result_kinds"] and a["detail"] != b["detail"]:
        out.append("the compile error's text differs")
    return out


__all__ = ["JavaPathEvaluator", "VERDICT_FIELDS", "differences", "result_kind", "summary"]
