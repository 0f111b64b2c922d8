"""Evaluation of generated code: post-processing cascade, sandboxed Python and Java checks, oracles.

Typical use::

    evaluator = Evaluator(benchmark.programs)            # refuses if the sandbox is incomplete
    verdict = evaluator.evaluate(task, raw_model_text)    # Verdict(outcome, stage, cleaned_outcome, ...)
    for task, verdict in evaluator.evaluate_many(pairs, workers=4): ...

``Evaluator(..., limits=Limits(...), sandbox=..., java_fast=True)`` tunes the limits, swaps in
another ``Sandbox`` implementation, or compiles and tests Java in one JVM.
``Evaluator(..., cascade="upstream", both=True)`` makes SimCoPilot's own scoring (loaded from the
fetched copy by ``runner.evaluation.upstream``) the headline and keeps our cascade's verdict beside it.
"""

from runner.evaluation.evaluator import Evaluator, default_workers
from runner.evaluation.java_check import JavaToolchain, check_java, java_toolchain
from runner.evaluation.oracle import (
    SOLUTIONS,
    SUSPECTS,
    TaskCheck,
    append_check,
    check_solution,
    diagnose,
    load_checks,
)
from runner.evaluation.postprocess import assemble, balance, cascade, clean, reindent, trim
from runner.evaluation.python_check import CheckResult, check_python, outputs_match
from runner.evaluation.sandbox import Capabilities, ExecResult, Limits, LocalSandbox, Sandbox, capabilities

__all__ = [
    "SOLUTIONS",
    "SUSPECTS",
    "Capabilities",
    "CheckResult",
    "Evaluator",
    "ExecResult",
    "JavaToolchain",
    "Limits",
    "LocalSandbox",
    "Sandbox",
    "TaskCheck",
    "append_check",
    "assemble",
    "balance",
    "capabilities",
    "cascade",
    "check_java",
    "check_python",
    "check_solution",
    "clean",
    "default_workers",
    "diagnose",
    "java_toolchain",
    "load_checks",
    "outputs_match",
    "reindent",
    "trim",
]
