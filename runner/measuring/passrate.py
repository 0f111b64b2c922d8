"""The one pass-rate definition, used by the terminal summary, the report, its CSV and its JSON.

A cell's pass rate is over every accuracy-phase task that has a verdict or a request error:
a request error (no answer: timeout, HTTP error, server gone) counts as not passing, and is
also counted apart (``errors``) so that a reader sees how much of the failure is the server's.
Answers still waiting for their tests (no verdict yet) are not counted.

A task no answer can pass here (outcome ``unscoreable``: its own reference fails in this
environment) is never the model's failure. Every rate is given two ways: over the scoreable
tasks (``rate``, the headline) and over all tasks with the unscoreable ones counted as failures
(``all_rate``, the denominator of SimCoPilot's published table).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from runner.records import Outcome, Sample


@dataclass(frozen=True)
class PassCount:
    """Passes out of counted tasks, best-of-cascade and cleaned-only, and the request errors among them."""

    passed: int
    cleaned_passed: int
    tasks: int  # judged answers plus request errors, unscoreable tasks included
    errors: int  # request errors (counted in ``tasks``, never passing)
    unscoreable: int = 0  # tasks no answer can pass here (counted in ``tasks``, never passing)

    @property
    def scoreable(self) -> int:
        return self.tasks - self.unscoreable

    @property
    def rate(self) -> float | None:
        """The headline: passes over the scoreable tasks."""
        return self.passed / self.scoreable if self.scoreable else None

    @property
    def all_rate(self) -> float | None:
        """The paper's denominator: passes over all tasks, unscoreable ones counted as failures."""
        return self.passed / self.tasks if self.tasks else None

    @property
    def cleaned_rate(self) -> float | None:
        return self.cleaned_passed / self.scoreable if self.scoreable else None


def counted(samples: Iterable[Sample]) -> list[Sample]:
    """The accuracy-phase samples a pass rate counts: those with a verdict or a request error."""
    return [s for s in samples if s.phase == "accuracy" and s.outcome is not None]


def pass_count(samples: Iterable[Sample]) -> PassCount:
    """Count ``samples`` (any phases; only the accuracy phase counts) by the definition above."""
    chosen = counted(samples)
    return PassCount(passed=sum(s.outcome == Outcome.passed for s in chosen),
                     cleaned_passed=sum(s.cleaned_outcome == Outcome.passed for s in chosen
                                        if s.outcome != Outcome.error),
                     tasks=len(chosen), errors=sum(s.outcome == Outcome.error for s in chosen),
                     unscoreable=sum(s.outcome == Outcome.unscoreable for s in chosen))
