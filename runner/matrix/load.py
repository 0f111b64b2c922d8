"""``load_matrix``: a matrix file read, checked against the registered benchmarks' editions, backends, runtimes
and prompt styles, and expanded into cells; every problem reported at once, one line each, with file, key path
and value."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from runner.benchmarks.editions import DEFAULT_EDITION, EDITIONS
from runner.errors import UserError
from runner.matrix.faults import Pruned, capped, did_you_mean, error_lines, toml_hint, validate
from runner.matrix.spec import (CellLimits, CellRequest, Matrix, MatrixFile, ModelSource, ModelSpec,
                                _known_editions)
from runner.records import Cell

if TYPE_CHECKING:
    from runner.runtimes.base import Runtime


def _edition_problems(key: str, benchmark: str, edition: str | None, compare: list[str]) -> list[str]:
    """What is wrong with a matrix's ``edition`` (named ``key``) and ``compare_editions``, one line each."""
    problems = []
    if edition is not None and edition not in EDITIONS:
        problems.append(f"{key} = {edition!r}: unknown SimCoPilot edition; known editions: {_known_editions()}")
    elif benchmark != "simcopilot" and edition not in (None, DEFAULT_EDITION):
        problems.append(f"{key} = {edition!r}: benchmark {benchmark!r} has no editions (only simcopilot does); "
                        "remove it or use benchmark = \"simcopilot\"")
    headline = edition or DEFAULT_EDITION
    seen: set[str] = set()
    for other in compare:
        if other not in EDITIONS:
            problems.append(f"compare_editions = {other!r}: unknown SimCoPilot edition; known editions: "
                            f"{_known_editions()}")
        elif other == headline:
            problems.append(f"compare_editions = {other!r}: that is the headline edition (edition = {headline!r}); "
                            "list only the other editions to score the answers under")
        elif other in seen:
            problems.append(f"compare_editions = {other!r}: listed twice")
        elif benchmark != "simcopilot":
            problems.append(f"compare_editions = {other!r}: benchmark {benchmark!r} has no editions "
                            "(only simcopilot does); remove it")
        seen.add(other)
    return problems


def _dotted(table: dict, fields: set[str], prefix: str = "") -> list[str]:
    # the names a table split at an unquoted dot stands for: it holds none of the entry's keys, only
    # tables, down to the one that holds them ("qwen2" > "5-coder-0" > "5b" is "qwen2.5-coder-0.5b")
    if not isinstance(table, dict) or not table or fields & set(table) or not all(isinstance(v, dict)
                                                                                 for v in table.values()):
        return []
    names = []
    for key, value in table.items():
        name = f"{prefix}.{key}"
        names += [name] if fields & set(value) or not value else _dotted(value, fields, name)
    return names


def _split_dotted_keys(document: dict) -> list[tuple[tuple[str, ...], tuple[str, ...], str]]:
    """Each model or quantization that TOML split at an unquoted dot: its key path as read, as meant,
    and the line saying to quote it."""
    # TOML reads [models.m.quantizations.exl2-6.0] as table "exl2-6" holding table "0"
    found = []
    models = document.get("models")
    for key, spec in (models.items() if isinstance(models, dict) else ()):
        split = _dotted(spec, set(ModelSpec.model_fields), key)
        for dotted in split:
            found.append((("models", key), ("models", dotted),
                          f'models.{dotted}: a key with a dot must be quoted in TOML; write [models."{dotted}"] '
                          f'(and [models."{dotted}".quantizations...])'))
        quants = spec.get("quantizations") if isinstance(spec, dict) and not split else None
        for quant, value in (quants.items() if isinstance(quants, dict) else ()):
            for dotted in _dotted(value, set(ModelSource.model_fields), quant):
                found.append((("models", key, "quantizations", quant), ("models", key, "quantizations", dotted),
                              f"models.{key}.quantizations.{dotted}: a key with a dot must be quoted in TOML; "
                              f'write [models.{key}.quantizations."{dotted}"]'))
    return found


def _validation_lines(where: str, exc: ValidationError) -> list[str]:
    """One line per error of ``exc`` (runner.serving.lock reads its lock file's with it)."""
    return error_lines(where, exc)


def _techniques() -> set[str]:
    from runner.runtimes import get_runtime, runtime_names

    return {name for runtime in runtime_names() for name in get_runtime(runtime).techniques}


def load_matrix(path: Path | str) -> Matrix:
    """Read, validate and expand a matrix file; a ``UserError`` lists every problem, one a line."""
    path = Path(path)
    where = str(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{where}: no such matrix file; shipped ones are in matrices/ "
                        "(e.g. matrices/demo.toml)") from None
    except IsADirectoryError:
        raise UserError(f"{where}: is a folder, not a matrix file; name a .toml file in it "
                        "(e.g. matrices/demo.toml)") from None
    except PermissionError:
        raise UserError(f"{where}: cannot be read (permission denied); make it readable or copy it") from None
    except UnicodeDecodeError as exc:
        # TOML is UTF-8 by definition: a Latin-1 file or a binary one fails here, not in the parser
        raise UserError(f"{where}: not a UTF-8 text file (byte {exc.start} is 0x{exc.object[exc.start]:02x}); "
                        "a matrix is TOML in UTF-8: re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{where}: not valid TOML: {exc}{toml_hint(path.read_text(encoding='utf-8'), exc)}") from None
    # every mistake at once: a part at fault is taken out so that the checks of the rest still run
    split = _split_dotted_keys(document)
    problems = [f"{where}: {line}" for _, _, line in split]
    # the name as meant is set aside too, so that a cell naming it is not told the name is unknown
    parsed, lines, pruned = validate(MatrixFile, document, where, _techniques(),
                                     {loc for read, meant, _ in split for loc in (read, meant)})
    problems += lines
    if parsed is not None:
        try:
            matrix = _expand(parsed, path, pruned)
        except UserError as exc:
            problems += str(exc).splitlines()
        else:
            if not problems:
                return matrix
    raise UserError(capped(problems, where))


def _expand(parsed: MatrixFile, path: Path, pruned: Pruned | None = None) -> Matrix:
    from runner.backends import backend_names
    from runner.paths import run_name_problem
    from runner.runtimes import get_runtime, runtime_names

    where = str(path)
    pruned = pruned or Pruned()
    problems: list[str] = [f"{where}: {line}" for line in
                           _edition_problems("edition", parsed.benchmark, parsed.edition, parsed.compare_editions)]
    if why := run_name_problem(parsed.name):
        problems.append(f"{where}: name = {parsed.name!r}: {why}; use a plain name such as 'demo-2'")
    runtimes = runtime_names()
    if parsed.backend not in backend_names():
        problems.append(f"{where}: backend = {parsed.backend!r}: unknown backend;"
                        f"{did_you_mean(parsed.backend, backend_names())} "
                        f"known: {', '.join(backend_names())}")
    from runner.prompts import STYLES

    for key, spec in parsed.models.items():
        for style in spec.prompt_styles:
            if style not in STYLES:
                problems.append(f"{where}: models.{key}.prompt_styles = {style!r}: unknown prompt style; "
                                f"known: {', '.join(STYLES)}")
        for quant, source in spec.quantizations.items():
            if (source.kind in ("dequantize", "quantize") and source.of not in spec.quantizations
                    and not pruned.dropped("models", key, "quantizations", source.of)):
                problems.append(f"{where}: models.{key}.quantizations.{quant}.of = {source.of!r}: "
                                f"no such quantization; this model has {', '.join(spec.quantizations)}")
            if source.tokenizer_of is not None and (source.tokenizer_of == quant
                                                    or source.tokenizer_of not in spec.quantizations) \
                    and not pruned.dropped("models", key, "quantizations", source.tokenizer_of):
                problems.append(f"{where}: models.{key}.quantizations.{quant}.tokenizer_of = {source.tokenizer_of!r}: "
                                f"name another quantization of this model: {', '.join(spec.quantizations)}")
            seen, step = {quant}, source
            while step.kind in ("dequantize", "quantize") and step.of in spec.quantizations:
                if step.of in seen:
                    problems.append(f"{where}: models.{key}.quantizations.{quant}.of = {source.of!r}: a quantization "
                                    "cannot be made from itself (the `of` chain comes back to it); name another "
                                    "quantization of this model")
                    break
                seen.add(step.of)
                step = spec.quantizations[step.of]
            if source.kind == "path" and not source.path.is_absolute():
                source.path = (path.parent / source.path).resolve()
        if spec.draft is not None:
            draft_model = parsed.models.get(spec.draft.model)
            gone = pruned.dropped("models", spec.draft.model) or pruned.dropped(
                "models", spec.draft.model, "quantizations", spec.draft.quantization)
            if not gone and (draft_model is None or spec.draft.quantization not in draft_model.quantizations):
                problems.append(f"{where}: models.{key}.draft = {spec.draft.model}:{spec.draft.quantization}: "
                                f"not a model and quantization of this matrix")

    cells: list[Cell] = []
    requests: dict[str, CellRequest] = {}
    limits: dict[str, CellLimits] = {}
    seen: dict[str, str] = {}
    for index, group in enumerate(parsed.cells):
        index = pruned.written(("cells",), index)
        at = f"{where}: cells[{index}]"
        spec = parsed.models.get(group.model)
        if pruned.dropped("models", group.model) or pruned.dropped("models", group.model, "quantizations",
                                                                   group.quantization):
            continue  # its model's or weights' own mistake is already said
        if spec is None:
            problems.append(f"{at}.model = {group.model!r}: unknown model;{did_you_mean(group.model, parsed.models)} "
                            f"known: {', '.join(parsed.models)}")
            continue
        if group.runtime not in runtimes:
            problems.append(f"{at}.runtime = {group.runtime!r}: unknown runtime;{did_you_mean(group.runtime, runtimes)} "
                            f"known: {', '.join(runtimes)}")
            continue
        if group.quantization not in spec.quantizations:
            problems.append(f"{at}.quantization = {group.quantization!r}: model {group.model} has no such "
                            f"weights; add [models.{group.model}.quantizations.{group.quantization}] "
                            f"or use one of {', '.join(spec.quantizations)}")
            continue
        styles = group.prompt_styles or spec.prompt_styles
        for style in styles:
            if style not in spec.prompt_styles and group.prompt_styles is not None:
                problems.append(f"{at}.prompt_styles = {style!r}: not a prompt style of model "
                                f"{group.model} ({', '.join(spec.prompt_styles)})")
        # each entry with the switches it writes itself: a refused switch is named where it is written
        entries: list[tuple[str, dict[str, str], str | None, dict[str, str]]] = []
        if group.baseline:
            entries.append((f"{at}", group.techniques, group.label or ("baseline" if not group.techniques else None),
                            group.techniques))
        for v_index, variant in enumerate(group.variants):
            v_index = pruned.written(("cells", index, "variants"), v_index)
            entries.append((f"{at}.variants[{v_index}]", {**group.techniques, **variant.techniques}, variant.label,
                            variant.techniques))
        runtime = get_runtime(group.runtime)
        gpus = group.gpus if group.gpus is not None else spec.quantizations[group.quantization].gpus
        for entry_at, techniques, label, own in entries:
            for style in styles:
                base = Cell(model=group.model, runtime=group.runtime, quantization=group.quantization,
                            techniques=techniques, prompt_style=style, label=label)
                tail = base.id.rsplit("/", 1)[1]
                cell = base.model_copy(update={"label": f"{tail}-{style}"}) if len(styles) > 1 else base
                try:
                    runtime.validate(cell)
                except UserError as exc:
                    problems.append(f"{entry_at}: {exc}")
                    continue
                if line := _cpu_refusal(runtime, cell, gpus, parsed.backend,
                                        entry_at if (switch := runtime.gpu_switch(cell)) and switch.key in own else at):
                    if line not in problems:  # once, not once per prompt style
                        problems.append(line)
                    continue
                if techniques.get("spec") == "draft" and spec.draft is None:
                    problems.append(f"{entry_at}.techniques.spec = 'draft': model {group.model} has no "
                                    f"draft model; add models.{group.model}.draft = "
                                    "{ model = ..., quantization = ... }")
                    continue
                if cell.id in seen and not pruned.touched("cells", index):
                    problems.append(f"{entry_at}: cell id {cell.id} repeats {seen[cell.id]}; give it a label")
                    continue
                if not pruned.touched("cells", index):
                    seen[cell.id] = entry_at.removeprefix(f"{where}: ")
                cells.append(cell)
                requests[cell.id] = CellRequest(gpus=gpus, gpu_type=group.gpu_type or parsed.gpu_type)
                if group.limit is not None or group.latency_tasks is not None or group.sweep_requests is not None:
                    limits[cell.id] = CellLimits(tasks=group.limit, latency_tasks=group.latency_tasks,
                                                 sweep_requests=group.sweep_requests)
    if problems:
        raise UserError("\n".join(problems))
    return Matrix(name=parsed.name, path=path, benchmark=parsed.benchmark,
                  edition=parsed.edition or DEFAULT_EDITION, compare_editions=tuple(parsed.compare_editions),
                  backend=parsed.backend,
                  tasks=parsed.tasks, settings=parsed.settings, slo=parsed.slo, models=parsed.models, cells=cells,
                  requests=requests, limits=limits)


def _cpu_refusal(runtime: "Runtime", cell: Cell, gpus: int, backend: str, at: str) -> str | None:
    """The line refusing a technique switch only a GPU serves (``Runtime.gpu_switch``) in a cell the matrix
    itself puts on the CPU: ``gpus = 0``, or a backend whose build of the runtime has no GPU support; None
    otherwise (a host without a GPU is the plan's to refuse: the matrix does not know the host)."""
    switch = runtime.gpu_switch(cell)
    if switch is None:
        return None
    if gpus == 0:
        cpu, fix = "gpus = 0: CPUs only", "give the group gpus >= 1"
    elif cpu_build := runtime.cpu_build(backend):
        cpu, fix = f'backend = "{backend}": {cpu_build}', 'use backend = "docker" (the CUDA image) on a GPU host'
    else:
        return None
    return (f"{at}.techniques.{switch.key} = {switch.value!r}: {switch.why}, and this cell runs on the CPU "
            f"({cpu}); drop it, or run it on a GPU cell: {fix}")
