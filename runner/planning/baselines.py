"""Which cell a cell is compared with: a technique cell with its baseline, a quantized cell with its
model's full-precision cell. Pure functions of cells, used by the report's comparisons and by the
run (``settings.repeat_cells = "baselines"`` measures the noise floor of exactly these)."""

from __future__ import annotations

from collections.abc import Iterable

from runner.records import Cell

#: quantizations that count as a model's full-precision baseline (MLPerf's reference accuracy)
FULL_PRECISION = ("bf16", "fp16", "f16", "fp32", "f32")


def is_full_precision(cell: Cell) -> bool:
    return cell.quantization.lower() in FULL_PRECISION


def technique_baseline(cell: Cell, cells: Iterable[Cell]) -> Cell | None:
    """The cell of ``cells`` with the same model, runtime, quantization and prompt style whose switches
    are the fewest and a strict subset of ``cell``'s (None for a cell without techniques)."""
    if not cell.techniques:
        return None
    mine = set(cell.techniques.items())
    candidates = [o for o in cells if o.model == cell.model and o.runtime == cell.runtime
                  and o.quantization == cell.quantization and o.prompt_style == cell.prompt_style
                  and set(o.techniques.items()) < mine]
    return min(candidates, key=lambda o: len(o.techniques)) if candidates else None


def quantization_baseline(cell: Cell, cells: Iterable[Cell]) -> Cell | None:
    """The full-precision cell of ``cells`` with ``cell``'s model, runtime, techniques and prompt style
    (None for a full-precision cell)."""
    if is_full_precision(cell):
        return None
    return next((o for o in cells if is_full_precision(o) and o.model == cell.model and o.runtime == cell.runtime
                 and o.techniques == cell.techniques and o.prompt_style == cell.prompt_style), None)


def baseline_ids(cells: list[Cell]) -> set[str]:
    """The ids of the cells that some other cell of ``cells`` is compared with."""
    found = (technique_baseline(c, cells) for c in cells)
    quantized = (quantization_baseline(c, cells) for c in cells)
    return {b.id for b in (*found, *quantized) if b is not None}
