"""The report's charts (matplotlib, no pyplot state): inline SVG for the HTML, PNG files for the Markdown."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text

from runner.report.data import shared_latency_source
from runner.report.categories import CategoryTable
from runner.report.headline import HeadlineRow, LatencySummary
from runner.report.tables import Tables
from runner.report.tradeoff import frontier, trade_off
from runner.report.underload import CellLoad

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">")
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22")
STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.8,
    "axes.edgecolor": "#9ca3af",
    "axes.titleweight": "bold",
    "axes.titlesize": 10,
    # SVG text stays text (small, fast, selectable) in the reader's own sans-serif: no font is fetched
    "svg.fonttype": "none",
}


@dataclass(frozen=True)
class Plot:
    """One chart: inline SVG markup and the PNG file written beside the Markdown."""

    name: str
    title: str
    caption: str
    svg: str
    png: Path


def _colours(keys: list[str]) -> dict[str, str]:
    return {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(sorted(set(keys)))}


def _markers(keys: list[str]) -> dict[str, str]:
    return {k: MARKERS[i % len(MARKERS)] for i, k in enumerate(sorted(set(keys)))}


def _short(label: str, rows: list) -> str:
    """The cell label without the model when every cell shares one model."""
    models = {r.cell.cell.model for r in rows}
    if len(models) == 1:
        prefix = next(iter(models)) + "/"
        return label[len(prefix):] if label.startswith(prefix) else label
    return label


def _point_label(label: str, rows: list) -> str:
    """A chart point's label, decluttered: the model and the runtime when every point shares them, and
    the default ``baseline`` variant name (``q4_k_m``, ``q4_k_m/no-prefix-cache``)."""
    text = _short(label, rows)
    runtimes = {r.cell.cell.runtime for r in rows}
    if len(runtimes) == 1 and text.startswith(next(iter(runtimes)) + "/"):
        text = text.split("/", 1)[1]
    text = text.replace("/baseline @ ", " @ ")
    return text[: -len("/baseline")] if text.endswith("/baseline") else text


def _log_ticks(low: float, high: float) -> list[float]:
    """At least three readable ticks between ``low`` and ``high`` on a log axis: 1-2-5 steps, finer
    steps where the range spans less than a decade, evenly spaced values where even those are too few."""
    import math

    decades = range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
    for steps in ((1, 2, 5), (1, 1.5, 2, 3, 4, 5, 6, 8), (1, 1.2, 1.4, 1.6, 1.8, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 9)):
        ticks = sorted({round(s * 10 ** d, 12) for d in decades for s in steps if low <= s * 10 ** d <= high})
        if len(ticks) >= 3:
            return ticks if len(ticks) <= 8 else ticks[:: math.ceil(len(ticks) / 8)]
    return [float(v) for v in np.geomspace(low, high, 3)] if high > low else [low]


def _seconds_axis(axis, low: float, high: float) -> None:
    """Plain tick labels (``0.5 s``, ``2 s``) on a log axis instead of powers of ten, three at least:
    a range inside one decade would otherwise get one label, or none."""
    ticks = _log_ticks(low, high)
    axis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    axis.set_minor_locator(matplotlib.ticker.NullLocator())
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.3g} s"))


def _place_labels(fig: Figure, ax, points: list[tuple[float, float]], texts: list[str]) -> list:
    """Label each point where the label overlaps no earlier label and no point: the spots next to it
    first, then rings further out with a leader line back to the point. Returns the labels' boxes."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # settle the layout first: the overlap test uses display coordinates
    renderer = canvas.get_renderer()
    dots = [ax.transData.transform(p) for p in points]
    frame = ax.get_window_extent(renderer)
    placed = []
    near = [(8, 6, "left"), (8, -12, "left"), (-8, 6, "right"), (-8, -12, "right")]
    rings = [(dx * r, dy * r, align) for r in (2, 3, 4, 5, 6)
             for dx, dy, align in ((8, 10, "left"), (8, -12, "left"), (-8, 10, "right"), (-8, -12, "right"),
                                   (0, 14, "center"), (0, -16, "center"))]
    # last: a column of rows beside the point, each a line apart, either side
    rings += [(side * 40, 13 * k, "left" if side > 0 else "right") for k in range(-10, 11) for side in (1, -1)]
    order = sorted(range(len(points)), key=lambda i: points[i])
    for i in order:
        chosen = None
        for n, (dx, dy, align) in enumerate(near + rings):
            leader = dict(arrowstyle="-", color="#9ca3af", linewidth=0.6) if n >= len(near) else None
            label = ax.annotate(texts[i], points[i], xytext=(dx, dy), textcoords="offset points", fontsize=7.5,
                                ha=align, color="#1f2937", zorder=4, arrowprops=leader)
            # the text's own box: an annotation's extent includes its leader line, which reaches the point
            label.update_positions(renderer)
            box = Text.get_window_extent(label, renderer).expanded(1.06, 1.4)
            outside = box.x0 < frame.x0 or box.x1 > frame.x1 or box.y0 < frame.y0 or box.y1 > frame.y1
            clash = outside or any(box.overlaps(other) for other in placed) or any(
                box.contains(x, y) for j, (x, y) in enumerate(dots) if j != i)
            if not clash:
                chosen = box
                break
            label.remove()
        if chosen is None:  # no free spot anywhere near: leave it out rather than pile it on another
            continue
        placed.append(chosen)
    return placed


#: bits per weight of GGUF and vLLM formats (llama.cpp's own figures for a 7B model), for ordering a ladder
BITS = {"f32": 32.0, "fp32": 32.0, "f16": 16.0, "fp16": 16.0, "bf16": 16.0, "q8_0": 8.5, "fp8": 8.0,
        "q6_k": 6.56, "q5_k_m": 5.69, "q5_k_s": 5.54, "q5_0": 5.5, "q4_k_m": 4.89, "q4_k_s": 4.58, "iq4_xs": 4.25,
        "q4_0": 4.5, "awq": 4.0, "gptq": 4.0, "q3_k_m": 3.91, "q3_k_s": 3.5, "q2_k": 2.96}


def ladders(rows: list[HeadlineRow]) -> list[list[HeadlineRow]]:
    """Groups of cells that differ only in quantization (same run, model, runtime, techniques and
    style), three rungs at least, ordered from the most bits to the fewest."""
    groups: dict[tuple, list[HeadlineRow]] = {}
    for r in rows:
        c = r.cell.cell
        if r.overall.n:
            key = (r.cell.run.name, c.model, c.runtime, tuple(sorted(c.techniques.items())), c.prompt_style)
            groups.setdefault(key, []).append(r)
    return [sorted(g, key=lambda r: -BITS.get(r.cell.cell.quantization, 0.0))
            for g in groups.values() if len({r.cell.cell.quantization for r in g}) >= 3]


def source_words(source: str) -> str:
    """How the requests of a latency source were sent, in words (``latency/warm``: one at a time, warm cache)."""
    phase, _, state = source.partition("/")
    if phase == "accuracy":
        return "queued at the run's concurrency"
    return f"one request at a time, {state} cache" if state else "one request at a time"


def ladder(groups: list[list[HeadlineRow]], fig: Figure) -> str:
    """Per ladder: pass rate with its Wilson interval (left axis) and output tokens/s (right axis)
    against the quantization, most bits first: the trade-off the quantizations make."""
    ax = fig.add_subplot()
    speed_ax = ax.twinx()
    speed_ax.grid(False)
    speed_ax.spines["right"].set_visible(True)
    names: list[str] = []
    for g in groups:
        for r in g:
            if r.cell.cell.quantization not in names:
                names.append(r.cell.cell.quantization)
    xs = {q: i for i, q in enumerate(names)}
    sources = set()
    for n, g in enumerate(groups):
        colour, speed_colour = PALETTE[(2 * n) % len(PALETTE)], PALETTE[(2 * n + 4) % len(PALETTE)]
        label = f"{g[0].cell.cell.model}/{g[0].cell.cell.runtime}" + (f" ({g[0].cell.run.name})" if len(groups) > 1 else "")
        x = [xs[r.cell.cell.quantization] for r in g]
        y = [100 * r.overall.rate for r in g]
        err = [[yy - 100 * r.overall.wilson_low for yy, r in zip(y, g)],
               [100 * r.overall.wilson_high - yy for yy, r in zip(y, g)]]
        ax.errorbar(x, y, yerr=err, fmt="-o", color=colour, capsize=4, linewidth=1.6, markersize=7,
                    label=f"{label}: pass rate", zorder=3)
        # one source for every rung, so the dashed line compares like with like: rungs without a
        # latency phase (a matrix can leave it to the techniques) move the whole ladder to "accuracy"
        source = shared_latency_source([r.cell for r in g])
        speeds = [LatencySummary.of(r.cell, source).output_tokens_per_s for r in g]
        timed = [(xx, speed) for xx, speed in zip(x, speeds) if speed]
        if timed:
            sources.add(source)
        if timed:
            speed_ax.plot([t[0] for t in timed], [t[1] for t in timed], "--s", color=speed_colour, alpha=0.85,
                          markersize=6, label=f"{label}: output tokens/s")
    ax.set_xticks(range(len(names)), [f"{q}\n{BITS[q]:g} bits" if q in BITS else q for q in names])
    ax.set_xlabel("quantization  →  fewer bits per weight")
    ax.set_ylabel("pass rate %, best of cascade (Wilson 95%)")
    speed_ax.set_ylabel("output tokens/s (dashed)  →  faster")
    ax.set_ylim(bottom=0)
    speed_ax.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()
    more = speed_ax.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left", bbox_to_anchor=(1.08, 1.0),
              frameon=False, fontsize=8)
    ax.set_title("Quantization ladder: what each step down in bits costs in accuracy and buys in speed")
    where = " and ".join(f"{s} samples ({source_words(s)})" for s in sorted(sources)) or "no timed samples"
    return (f"Solid: pass rate over all tasks with its Wilson 95% interval; dashed: output tokens / e2e seconds "
            f"from the {where}, the same phase for every rung. Most bits on the left.")


def pareto(rows: list[HeadlineRow], fig: Figure) -> str:
    """Pass rate against e2e latency p50, one point per cell with its Wilson interval; returns a caption."""
    ax = fig.add_subplot()
    trade = trade_off(rows)
    usable = [p for p in trade.points if p.latency.e2e_p50]
    colours = _colours([r.cell.cell.runtime for r in usable])
    markers = _markers([r.cell.cell.quantization for r in usable])
    points = [(r.latency.e2e_p50, 100 * r.overall.rate) for r in usable]
    best = frontier(points)
    if len(best) > 1:
        xs = [points[i][0] for i in best]
        ys = [points[i][1] for i in best]
        ax.step(xs, ys, where="post", color="#9ca3af", linestyle="--", linewidth=1.3, zorder=2)
    for i, (r, (x, y)) in enumerate(zip(usable, points)):
        err = [[y - 100 * r.overall.wilson_low], [100 * r.overall.wilson_high - y]]
        ax.errorbar([x], [y], yerr=err, fmt=markers[r.cell.cell.quantization], color=colours[r.cell.cell.runtime],
                    markersize=9 if i in best else 7, capsize=3, elinewidth=1.1, alpha=0.95,
                    markeredgecolor="#111827" if i in best else "white", markeredgewidth=1.0, zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("end-to-end latency p50 (log scale)  →  slower")
    ax.set_ylabel("pass rate %, best of cascade  →  better")
    ys_all = [100 * r.overall.wilson_low for r in usable] + [100 * r.overall.wilson_high for r in usable]
    if usable:
        ax.set_ylim(max(-3, min(ys_all) - 8), min(103, max(ys_all) + 8))
        xs = [p[0] for p in points]
        ax.set_xlim(min(xs) / 1.3, max(xs) * 1.3)
        _seconds_axis(ax.xaxis, min(xs) / 1.3, max(xs) * 1.3)
    handles = [Line2D([], [], color=c, marker="o", linestyle="", markersize=7, label=f"runtime: {k}")
               for k, c in colours.items()]
    handles += [Line2D([], [], color="#4b5563", marker=m, linestyle="", markersize=7, label=f"quant: {k}")
                for k, m in markers.items()]
    if len(best) > 1:
        handles.append(Line2D([], [], color="#9ca3af", linestyle="--", label="Pareto frontier"))
        handles.append(Line2D([], [], color="#4b5563", marker="o", markeredgecolor="#111827", linestyle="",
                              label="on the frontier"))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    ax.set_title("Latency–accuracy trade-off: up and to the left is better")
    _place_labels(fig, ax, points, [_point_label(r.cell.label, usable) for r in usable])
    on_frontier = ", ".join(_short(usable[i].cell.label, usable) for i in best)
    left_out = f" {trade.note()}." if trade.note() else ""
    return (f"{len(usable)} cells scored on the same number of tasks; latency from the {trade.source} samples "
            f"of every one; error bars: Wilson 95% interval of the pass rate over all tasks. On the frontier "
            f"(no other cell is both faster and more accurate): {on_frontier or 'none'}.{left_out}")


def latency_cdfs(rows: list[HeadlineRow], fig: Figure) -> str:
    """Empirical CDFs of e2e latency and TTFT per cell."""
    usable = [r for r in rows if r.cell.latency_samples]
    axes = fig.subplots(1, 2, sharey=True)
    for ax, attr, title in ((axes[0], "e2e_s", "end-to-end latency"), (axes[1], "ttft_s", "time to first token")):
        for i, r in enumerate(usable):
            values = np.sort([getattr(s, attr) for s in r.cell.latency_samples if getattr(s, attr) is not None])
            if values.size == 0:
                continue
            ys = np.arange(1, values.size + 1) / values.size
            ax.step(np.concatenate([[values[0]], values]), np.concatenate([[0], ys]), where="post",
                    color=PALETTE[i % len(PALETTE)], linewidth=1.5, label=_short(r.cell.label, usable))
        ax.set_xscale("log")
        if ax.has_data():
            _seconds_axis(ax.xaxis, *ax.get_xlim())
        ax.set_xlabel(f"{title} (log scale)")
        ax.set_title(title)
    axes[0].set_ylabel("fraction of requests")
    if usable:
        axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8)
    sources = sorted({r.latency.source for r in usable})
    return f"From the {' and '.join(sources) or 'no'} phase; one line per cell."


def category_groups(categories: list[str]) -> list[tuple[str, list[str]]]:
    """SimCoPilot's categories in its three families: the reason for the code, the dependency
    distance (the longest of the task) and the dependency scope, each in upstream's order."""
    from runner.benchmarks.categories import HORIZON_LABELS, RANGES, REASON_LABELS

    order = {label: i for i, label in enumerate(REASON_LABELS + HORIZON_LABELS)}
    groups: dict[str, list[str]] = {"code reason": [], "dependency distance": [], "dependency scope": []}
    for category in sorted(categories, key=lambda c: (order.get(c, len(order)), c)):
        if category in RANGES:
            groups["dependency distance"].append(category)
        elif category in HORIZON_LABELS:
            groups["dependency scope"].append(category)
        else:
            groups["code reason"].append(category)
    return [(name, members) for name, members in groups.items() if members]


def category_heatmap(table: CategoryTable, rows: list[HeadlineRow], fig: Figure) -> str:
    """Pass rate per SimCoPilot category (columns, one panel per family) per cell and language x mode (rows)."""
    labels = [r.key for r in table.rows]
    groups = category_groups(table.categories)
    axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#f3f4f6")
    image = None
    for ax, (family, members) in zip(axes, groups):
        grid = np.full((len(labels), len(members)), np.nan)
        for i, label in enumerate(labels):
            for j, category in enumerate(members):
                rate = table.rates.get((label, category))
                if rate is not None and rate.n:
                    grid[i, j] = 100 * rate.rate
                    text = f"{grid[i, j]:.0f}" if len(members) > 10 else f"{grid[i, j]:.0f}\nn={rate.n}"
                    dark = grid[i, j] < 22 or grid[i, j] > 88  # the colour map's deep ends
                    ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "#111827")
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(members)), [m.split(":", 1)[-1] for m in members], rotation=30, ha="right")
        ax.set_yticks(range(len(labels)), [f"{_short(r.cell.label, rows)} · {r.language} {r.mode}" for r in table.rows])
        ax.grid(False)
        ax.set_title(f"pass rate % by {family}", loc="left")
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="pass rate %", fraction=0.02, pad=0.01)
    return "Cell text: pass rate % (with the number of tasks where there is room); grey: no task of that category."


def throughput(rows: list[HeadlineRow], fig: Figure) -> str:
    """Output tokens/s and requests/s against concurrency per cell."""
    usable = [r for r in rows if r.sweep]
    axes = fig.subplots(1, 2)
    for i, r in enumerate(usable):
        levels = sorted(r.sweep)
        colour = PALETTE[i % len(PALETTE)]
        # a server that served one request at a time is drawn dashed and says so: its curve is no batching's
        label = _short(r.cell.label, usable) + (f" — {r.unbatched}" if r.unbatched else "")
        style = "--" if r.unbatched else "-"
        axes[0].plot(levels, [r.sweep[c][1] for c in levels], marker="o", color=colour, label=label, linestyle=style)
        axes[1].plot(levels, [r.sweep[c][0] for c in levels], marker="o", color=colour, label=label, linestyle=style)
    for ax, what in ((axes[0], "output tokens/s"), (axes[1], "requests/s")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel(what)
        ax.set_title(f"{what} vs concurrency")
        levels = sorted({c for r in usable for c in r.sweep})
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_ylim(bottom=0)
    if usable:
        axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8)
    dashed = " Dashed: a server that served one request at a time (unbatched), labelled with why." \
        if any(r.unbatched for r in usable) else ""
    return "Fixed-length generation (ignore_eos, max_tokens) so that cells compare." + dashed


def _load_x(point, kind: str) -> float:
    return float(point.concurrency if kind == "concurrency" else point.offered_rps)


def under_load(loads: list[CellLoad], fig: Figure) -> str:
    """One model's cells under load: pass rate with its Wilson interval (top) and pass-goodput with
    goodput (bottom) against the load; a column per kind of load (concurrency, offered rate)."""
    kinds = [k for k in ("concurrency", "rate")
             if any((p.concurrency is not None) == (k == "concurrency") for c in loads for p in c.points)]
    axes = fig.subplots(2, len(kinds), squeeze=False, sharex="col")
    for col, kind in enumerate(kinds):
        top, bottom = axes[0][col], axes[1][col]
        xs_all = [_load_x(p, kind) for c in loads for p in c.points
                  if (p.concurrency is not None) == (kind == "concurrency")]
        spread = max(xs_all) - min(xs_all) or 1.0
        for i, load in enumerate(loads):
            points = sorted((p for p in load.points if (p.concurrency is not None) == (kind == "concurrency")),
                            key=lambda p: _load_x(p, kind))
            if not points:
                continue
            colour = PALETTE[i % len(PALETTE)]
            label = _short(load.cell.label, loads)
            rated = [p for p in points if p.pass_rate is not None]
            if rated:
                ys = [100 * p.pass_rate for p in rated]
                err = [[y - 100 * p.pass_low for y, p in zip(ys, rated)],
                       [100 * p.pass_high - y for y, p in zip(ys, rated)]]
                # cells side by side at each load, so that their intervals do not hide one another
                shift = (i - (len(loads) - 1) / 2) * 0.03
                dodged = [_load_x(p, kind) * 2 ** shift if kind == "concurrency" else _load_x(p, kind) + shift * spread
                          for p in rated]
                top.errorbar(dodged, ys, yerr=err, fmt="-o", color=colour, capsize=3,
                             linewidth=1.5, markersize=5, label=label)
            timed = [p for p in points if p.goodput.pass_goodput_rps is not None]
            xs = [_load_x(p, kind) for p in timed]
            bottom.plot(xs, [p.goodput.pass_goodput_rps for p in timed], "-", color=colour, linewidth=1.5)
            bottom.plot(xs, [p.goodput.goodput_rps for p in timed], ":", color=colour, linewidth=1.2, alpha=0.7)
            # filled: the point is within the SLO; hollow: below its attainment target
            bottom.scatter(xs, [p.goodput.pass_goodput_rps for p in timed], s=30, zorder=3, edgecolors=colour,
                           facecolors=[colour if p.goodput.within_slo else "white" for p in timed])
        top.set_ylim(0, 103)
        bottom.set_ylim(bottom=0)
        if kind == "concurrency":
            levels = sorted({p.concurrency for c in loads for p in c.points if p.concurrency is not None})
            bottom.set_xscale("log", base=2)
            bottom.set_xticks(levels, [str(c) for c in levels])
            bottom.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            bottom.set_xlabel("concurrent requests (closed loop)")
            top.set_title("pass rate vs concurrency")
            bottom.set_title("pass-goodput vs concurrency")
        else:
            bottom.set_xticks(sorted(set(xs_all)), [f"{x:g}" for x in sorted(set(xs_all))])
            bottom.set_xlabel("offered rate, requests/s (Poisson arrivals)")
            top.set_title("pass rate vs offered rate")
            bottom.set_title("pass-goodput vs offered rate")
        top.set_ylabel("pass rate % (Wilson 95%)")
        bottom.set_ylabel("requests/s")
    handles, names = axes[0][-1].get_legend_handles_labels()
    for row in axes[0][:-1]:
        more = row.get_legend_handles_labels()
        handles += [h for h, n in zip(*more) if n not in names]
        names += [n for n in more[1] if n not in names]
    handles += [Line2D([], [], color="#4b5563", linestyle="-", marker="o", label="pass-goodput: passed and met "
                       "the SLO"),
                Line2D([], [], color="#4b5563", linestyle=":", label="goodput: met the SLO"),
                Line2D([], [], color="#4b5563", linestyle="", marker="o", markerfacecolor="white",
                       label="point below the attainment target")]
    axes[0][-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8)
    targets = " / ".join(dict.fromkeys(f"{100 * c.slo.attainment:g}%" for c in loads))
    return (f"Top: the pass rate of each sweep point's answers with its Wilson 95% interval. Bottom: requests per "
            f"second that met the SLO and whose answer passed (pass-goodput, solid) and that met the SLO whatever "
            f"the answer (goodput, dotted); a filled marker: the point's attainment reached {targets}, hollow: it "
            f"did not. One line per cell.")


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    # inline markup needs the <svg> element only, not the XML prolog and DOCTYPE
    text = text[text.index("<svg"):]
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def render_all(tables: Tables, plot_dir: Path) -> list[Plot]:
    """Draw every chart the data allows; PNGs go to ``plot_dir``."""
    plot_dir.mkdir(parents=True, exist_ok=True)
    for stale in plot_dir.glob("*.png"):  # a chart the data no longer allows must not linger
        stale.unlink()
    rows = tables.headline
    specs = []
    groups = ladders(rows)
    if groups:  # the first chart when the run has a quantization ladder: the trade-off it measures
        specs.append(("ladder", "Quantization ladder", (11, 5), lambda f: ladder(groups, f)))
    if any(r.latency.e2e_p50 and r.overall.n for r in rows):
        specs.append(("pareto", "Latency vs accuracy", (11, 5.2), lambda f: pareto(rows, f)))
    if any(r.cell.latency_samples for r in rows):
        specs.append(("latency-cdf", "Latency distributions", (11, 4), lambda f: latency_cdfs(rows, f)))
    if tables.categories is not None:
        table = tables.categories
        widest = max(len(m) for _, m in category_groups(table.categories))
        panels = len(category_groups(table.categories))
        size = (min(15, max(8, 0.6 * widest + 4)), panels * (0.3 * len(table.rows) + 1.4))
        specs.append(("categories", "Pass rate by category", size, lambda f: category_heatmap(table, rows, f)))
    if any(r.sweep for r in rows):
        specs.append(("throughput", "Throughput vs concurrency", (11, 4), lambda f: throughput(rows, f)))
    for name, model, loads in tables.underload.charts if tables.underload else []:
        columns = len({p.concurrency is None for c in loads for p in c.points})
        specs.append((name, f"Accuracy under load: {model}", (11 if columns == 1 else 13, 6),
                      lambda f, loads=loads: under_load(loads, f)))
    plots = []
    for name, title, size, draw in specs:
        # a salt per chart keeps element ids unique when several SVGs share one page, and stable
        with matplotlib.rc_context({**STYLE, "svg.hashsalt": f"runner-{name}"}):
            fig = Figure(figsize=size, layout="constrained")
            caption = draw(fig)
            svg = _svg(fig)
            png = plot_dir / f"{name}.png"
            fig.savefig(png, format="png", dpi=120, metadata={"Software": None})
        plots.append(Plot(name=name, title=title, caption=caption, svg=svg, png=png))
    return plots
