"""The latency–accuracy trade-off: the comparable cells, the frontier, the most accurate and the fastest."""

from __future__ import annotations

from dataclasses import dataclass

from runner.report.data import CellData, shared_latency_source
from runner.report.headline import HeadlineRow, LatencySummary
from runner.report.rates import PassRate


def frontier(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the Pareto-optimal points (lower x, higher y), in increasing x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    best, out = float("-inf"), []
    for i in order:
        if points[i][1] > best:
            out.append(i)
            best = points[i][1]
    return out


@dataclass(frozen=True)
class TradePoint:
    """One cell on the latency–accuracy trade-off, its latency from the comparison's common source."""

    row: HeadlineRow
    latency: LatencySummary

    @property
    def cell(self) -> CellData:
        return self.row.cell

    @property
    def overall(self) -> PassRate:
        return self.row.overall


@dataclass(frozen=True)
class TradeOff:
    """The cells the trade-off compares, like with like: those scored on the most tasks, their
    latency from one phase every one of them has (accuracy when some were never timed)."""

    points: list[TradePoint]
    source: str | None
    left_out: list[HeadlineRow]  # scored on fewer tasks (a group's limit): compared in the technique table

    def note(self) -> str | None:
        """Why some cells are not on the chart, or None."""
        if not self.left_out:
            return None
        names = ", ".join(r.cell.label for r in self.left_out)
        return (f"{len(self.left_out)} cell(s) scored on fewer tasks are compared with their baseline "
                f"task by task in the technique table instead: {names}")


def trade_off(rows: list[HeadlineRow]) -> TradeOff:
    """The comparable cells of ``rows`` and the latency source they share."""
    judged = [r for r in rows if r.overall.n]
    if not judged:
        return TradeOff(points=[], source=None, left_out=[])
    most = max(r.overall.n for r in judged)
    full = [r for r in judged if r.overall.n == most]
    source = shared_latency_source([r.cell for r in full])
    return TradeOff(points=[TradePoint(r, LatencySummary.of(r.cell, source)) for r in full], source=source,
                    left_out=[r for r in judged if r.overall.n < most])


@dataclass(frozen=True)
class Highlights:
    """What a reader should see first, among the cells ``trade`` compares: the most accurate and the
    fastest (several where their intervals overlap the leader's: a tie, never a crown), and the frontier."""

    most_accurate: list[TradePoint]  # the leader first, then those tied with it
    fastest: list[TradePoint]
    frontier: list[TradePoint]
    trade: TradeOff
    cells: int
    done: int
    failed: int
    skipped: int
    answers: int
    errors: int


def _tied_on_accuracy(points: list[TradePoint]) -> list[TradePoint]:
    """The most accurate point and every point whose Wilson interval overlaps its interval."""
    if not points:
        return []
    leader = max(points, key=lambda p: (p.overall.rate, -(p.latency.e2e_p50 or 0)))
    tied = [p for p in points if p is not leader and p.overall.wilson_high >= leader.overall.wilson_low]
    return [leader] + sorted(tied, key=lambda p: -p.overall.rate)


def _tied_on_speed(points: list[TradePoint]) -> list[TradePoint]:
    """The fastest point and every point whose e2e median interval overlaps its interval."""
    if not points:
        return []
    leader = min(points, key=lambda p: p.latency.e2e_p50)
    reach = leader.latency.e2e_p50_high if leader.latency.e2e_p50_high is not None else leader.latency.e2e_p50
    tied = [p for p in points if p is not leader
            and (p.latency.e2e_p50_low if p.latency.e2e_p50_low is not None else p.latency.e2e_p50) <= reach]
    return [leader] + sorted(tied, key=lambda p: p.latency.e2e_p50)


def highlights(rows: list[HeadlineRow]) -> Highlights:
    """The highlights of ``rows``: ties named where the intervals overlap."""
    trade = trade_off(rows)
    timed = [p for p in trade.points if p.latency.e2e_p50]
    on_frontier = [timed[i] for i in frontier([(p.latency.e2e_p50, p.overall.rate) for p in timed])]
    status = [r.status for r in rows]
    return Highlights(
        most_accurate=_tied_on_accuracy(trade.points), fastest=_tied_on_speed(timed),
        frontier=on_frontier, trade=trade, cells=len(rows), done=status.count("done"), failed=status.count("failed"),
        skipped=status.count("skipped"), answers=sum(r.overall.n for r in rows), errors=sum(r.errors for r in rows))
