"""What the rehearsal can prove before it spends GPU time: run first on the host, and on any machine.

    python -m gpu_rehearsal.preflight configs OUT_DIR --tabbyapi DIR   # in the runner's environment
    python -m gpu_rehearsal.preflight check --tabbyapi DIR --configs OUT_DIR [--exllamav2 SRC] [--bundle DIR]
                                                                 # in TabbyAPI's environment

``configs`` writes the TabbyAPI configs the exllama runtime makes for the rehearsal's cells and for
every technique switch it offers (with their launch argv). ``check`` then proves, with TabbyAPI's
own code from the carried source: its argument parser takes the argv, its config loader reads the
file, its config model validates it, and every key written is one of its fields (its models ignore
unknown keys silently, so a misspelt key would otherwise pass unnoticed). It also checks every
option the rehearsal passes to exllamav2's converter against that converter's argparse (read with
``ast`` from its source, never imported: importing exllamav2 builds its CUDA extension), that the
carried requirement list covers TabbyAPI's own, and, given ``--bundle``, that the bundle is whole
and that each environment's requirements resolve from it alone (``pip install --dry-run --no-index``).
One line per check, ``ok`` or ``FAIL``; exit status 1 if any failed.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import io
import json
import os
import re
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from gpu_rehearsal import pins

CONVERTER = "exllamav2/conversion/convert_exl2.py"


# --- exllamav2's converter ---------------------------------------------------------------------------
def converter_source(source: Path | None) -> tuple[str, str]:
    """(text, where) of exllamav2's convert_exl2.py: from a wheel, a folder holding the package, the
    file itself, or (None) the installed package, found without importing it."""
    if source is None:
        spec = importlib.util.find_spec("exllamav2")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("exllamav2 is not installed here; give --exllamav2 WHEEL_OR_DIR")
        source = Path(list(spec.submodule_search_locations)[0]).parent
    if source.is_file() and source.suffix == ".whl":
        with zipfile.ZipFile(source) as whl:
            return whl.read(CONVERTER).decode("utf-8"), f"{source.name}:{CONVERTER}"
    path = source if source.is_file() else source / CONVERTER
    return path.read_text(encoding="utf-8"), str(path)


def argparse_options(text: str) -> dict[str, str | None]:
    """Every option string of every ``add_argument`` call in ``text`` -> its ``type=`` name (None:
    none given, or an action such as ``store_true``)."""
    options: dict[str, str | None] = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
            kind = next((k.value.id for k in node.keywords if k.arg == "type" and isinstance(k.value, ast.Name)), None)
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("-"):
                    options[arg.value] = kind
    return options


def check_converter_argv(options: dict[str, str | None], argvs: list[list[str]]) -> list[str]:
    """Problems with ``argvs`` (``-m exllamav2.conversion.convert_exl2 ...``) against ``options``."""
    problems = []
    for argv in argvs:
        if argv[:2] != ["-m", "exllamav2.conversion.convert_exl2"]:
            problems.append(f"not the converter module: {' '.join(argv[:2])}")
        args = argv[2:]
        for i, arg in enumerate(args):
            if not arg.startswith("-") or pins.is_number(arg):
                continue
            if arg not in options:
                problems.append(f"the converter has no option {arg}")
                continue
            kind = options[arg]
            value = args[i + 1] if i + 1 < len(args) else None
            if kind in ("int", "float") and not _typed(value, kind):
                problems.append(f"{arg} takes {kind}, the rehearsal passes {value!r}")
            if kind is None and value is not None and not value.startswith("-"):
                problems.append(f"{arg} is a flag, the rehearsal passes it a value {value!r}")
    return problems


def _typed(value: str | None, kind: str) -> bool:
    try:
        (int if kind == "int" else float)(value)
    except (TypeError, ValueError):
        return False
    return True


def rehearsal_converter_argvs() -> list[list[str]]:
    p = Path("/model")
    return [pins.measure_argv(p, p, p)] + [pins.convert_argv(p, p, p, bits, p) for bits in pins.BITS]


# --- the configs the runtime writes (runner side) ----------------------------------------------------
def write_configs(out: Path) -> list[dict]:
    """The exllama runtime's launch for each rehearsal cell and each technique switch, written under
    ``out`` (``RUNNER_CACHE`` points there), listed in ``out/configs.json``."""
    os.environ["RUNNER_CACHE"] = str(out / "cache")
    from runner.matrix import load_matrix
    from runner.records import Cell
    from runner.runtimes import get_runtime
    from runner.runtimes.base import ModelFiles
    from gpu_rehearsal.matrix import MODEL_KEY, matrix_toml

    folders = {bits: out / "models" / f"{MODEL_KEY}-{pins.quantization(bits)}" for bits in pins.BITS}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    matrix_path = out / "rehearsal.toml"
    matrix_path.write_text(matrix_toml(folders, python_only=True), encoding="utf-8")
    matrix = load_matrix(matrix_path)
    runtime = get_runtime("exllama")
    cells = [(c, folders[c.quantization.removeprefix("exl2-")]) for c in matrix.cells]
    base = matrix.cells[0]
    for techniques in ({"kv_cache": "q8"}, {"kv_cache": "q6"}, {"kv_cache": "q4"}, {"kv_cache": "fp16"},
                       {"parallel": "3"}, {"spec": "draft"}):
        cells.append((Cell(model=base.model, runtime="exllama", quantization=base.quantization,
                           techniques=techniques, label="-".join(next(iter(techniques.items())))),
                      folders[pins.BITS[0]]))
    entries = []
    for i, (cell, folder) in enumerate(cells):
        files = ModelFiles(path=folder, served_name=cell.model, context_length=matrix.model(base).context_length,
                           draft_path=folders[pins.BITS[0]], tokenizer_path=folder)
        spec = runtime.server_spec(cell, files).bind("127.0.0.1", 5100 + i)
        for path, text in spec.files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        entries.append({"cell": cell.id, "argv": spec.argv, "env": spec.env,
                        "files": {str(p): t for p, t in spec.files.items()}})
    (out / "configs.json").write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return entries


# --- TabbyAPI's side ---------------------------------------------------------------------------------
def check_tabby_configs(tabby: Path, entries: list[dict]) -> list[tuple[bool, str]]:
    """Each launch through TabbyAPI's own parser, loader and config model; (ok, line) per launch."""
    sys.path.insert(0, str(tabby))
    from loguru import logger

    logger.remove()  # TabbyAPI logs each file it reads at INFO: the check prints one line per launch
    from common.args import convert_args_to_dict, init_argparser
    from common.config_models import TabbyConfigModel
    from common.tabby_config import TabbyConfig

    results = []
    for entry in entries:
        argv = entry["argv"]
        where = entry["cell"]
        problems = []
        if argv[0] != "python3" or Path(argv[1]) != tabby / "main.py":
            problems.append(f"argv {argv[:2]} is not python3 {tabby / 'main.py'}")
        ((path, text),) = entry["files"].items()
        parser = init_argparser()
        with tempfile.TemporaryDirectory() as cwd, _chdir(cwd), contextlib.redirect_stderr(io.StringIO()) as err:
            try:
                args = parser.parse_args(argv[2:])
                config = TabbyConfig()
                config.load(convert_args_to_dict(args, parser))
            except SystemExit:
                problems.append(f"TabbyAPI's parser refuses {argv[2:]}: {err.getvalue().strip()}")
                config = None
            except Exception as exc:  # TabbyAPI's validation error, said on one line
                problems.append(f"TabbyAPI refuses the config: {type(exc).__name__}: {' '.join(str(exc).split())}")
                config = None
        written = _yaml_load(text)
        for section, values in written.items():
            model = TabbyConfigModel.model_fields.get(section)
            if model is None:
                problems.append(f"no section {section!r} in TabbyAPI's config")
                continue
            fields = _section_model(model.annotation).model_fields
            for key, value in values.items():
                if key not in fields:
                    problems.append(f"TabbyAPI ignores {section}.{key}: no such field")
                elif config is not None:
                    loaded = getattr(getattr(config, section), key)
                    if _norm(loaded) != _norm(value):
                        problems.append(f"{section}.{key} = {value!r} loads as {loaded!r}")
        results.append((not problems, f"{where}: " + ("; ".join(problems) if problems else
                                                    f"TabbyAPI loads {Path(path).name} ({len(written)} sections)")))
    return results


@contextlib.contextmanager
def _chdir(path: str):
    # TabbyAPI also reads ./config.yml: an empty folder keeps a stray one out of the check
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _yaml_load(text: str) -> dict:
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(text)


def _section_model(annotation):
    from pydantic import BaseModel

    for arg in getattr(annotation, "__args__", (annotation,)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    raise TypeError(annotation)


def _norm(value):
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value.lower() if isinstance(value, str) else value


def tabby_requirements(tabby: Path) -> list[str]:
    """TabbyAPI's [project] dependencies (its pyproject), for Linux x86_64 hosts."""
    deps = tomllib.loads((tabby / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    return [d for d in deps if "Windows" not in d]


def _names(requirements: list[str]) -> set[str]:
    return {re.sub(r"[-_.]+", "-", re.split(r"[\s<>=!~;\[@]", r, maxsplit=1)[0]).lower() for r in requirements}


def tabby_commit(tabby: Path) -> str | None:
    """The commit the carried source is from: the rehearsal writes it beside the unpacked archive."""
    mark = tabby / ".commit"
    return mark.read_text(encoding="utf-8").strip() if mark.is_file() else None


def check_bundle(bundle: Path) -> list[tuple[bool, str]]:
    """The bundle whole (every file of the manifest, its sha256) and each environment resolving from it alone."""
    from gpu_rehearsal.bundle import _sha256, resolve

    manifests = sorted(bundle.glob("batch-*/manifest.json"))
    if not manifests:
        return [(False, f"bundle {bundle}: no batch-*/manifest.json")]
    manifest = json.loads(manifests[0].read_text(encoding="utf-8"))
    results = []
    bad = []
    for name, entry in manifest["files"].items():
        path = bundle / f"batch-{entry['batch']}" / name
        if not path.is_file():
            bad.append(f"{name} (batch-{entry['batch']}) missing")
        elif path.stat().st_size != entry["bytes"] or _sha256(path) != entry["sha256"]:
            bad.append(f"{name} differs from the manifest")
    batches = sorted({e["batch"] for e in manifest["files"].values()})
    results.append((not bad, f"bundle: {len(manifest['files'])} files in {len(batches)} batches"
                    + (": " + "; ".join(bad[:5]) if bad else ", all present and intact")))
    if bad:
        return results
    links = [bundle / f"batch-{b}" for b in batches]
    version = manifest["python_version"]
    for env, requirements in manifest["requirements"].items():
        wanted = list(requirements) + (["runner"] if env == "runner" else [])
        try:
            installs = resolve(wanted, version, find_links=links)
            results.append((True, f"bundle: the {env} environment resolves from the bundle alone for Python "
                                  f"{version} ({len(installs)} packages)"))
        except Exception as exc:
            results.append((False, f"bundle: the {env} environment does not resolve: {exc}"))
    exl = [n for n in manifest["files"] if n.startswith(f"exllamav2-{pins.EXLLAMAV2_VERSION}-")]
    results.append((bool(exl), f"bundle: exllamav2 {pins.EXLLAMAV2_VERSION}: {exl[0] if exl else 'missing'}"))
    return results


def check(tabby: Path, configs: Path, exllamav2: Path | None, bundle: Path | None) -> list[tuple[bool, str]]:
    results: list[tuple[bool, str]] = []
    if not (tabby / "main.py").is_file():
        return [(False, f"TabbyAPI: no main.py in {tabby}")]
    commit = tabby_commit(tabby)
    results.append((commit == pins.TABBYAPI_COMMIT,
                    f"TabbyAPI source at {commit or 'an unknown commit'} (Dockerfile.exllama pins {pins.TABBYAPI_COMMIT})"))
    missing = _names(tabby_requirements(tabby)) - _names(pins.TABBYAPI_REQUIREMENTS)
    results.append((not missing, "TabbyAPI's requirements " + (f"not carried: {', '.join(sorted(missing))}" if missing
                                                               else "are all in the carried list (pins.py)")))
    model_py = (tabby / "backends/exllamav2/model.py").read_text(encoding="utf-8")
    floor = re.search(r'check_package_version\("exllamav2",\s*"([\d.]+)"\)', model_py)
    results.append((bool(floor) and _version(pins.EXLLAMAV2_VERSION) >= _version(floor.group(1)),
                    f"TabbyAPI asks for exllamav2 >= {floor.group(1) if floor else '?'}; "
                    f"the rehearsal carries {pins.EXLLAMAV2_VERSION}"))
    results += check_tabby_configs(tabby, json.loads((configs / "configs.json").read_text(encoding="utf-8")))
    try:
        text, where = converter_source(exllamav2)
    except (FileNotFoundError, KeyError) as exc:
        results.append((False, f"exllamav2's converter: {exc}"))
    else:
        options = argparse_options(text)
        problems = check_converter_argv(options, rehearsal_converter_argvs())
        results.append((not problems, f"exllamav2's converter ({where}, {len(options)} option strings): "
                        + ("; ".join(problems) if problems else
                           f"takes every option the rehearsal passes ({' '.join(pins.converter_flags())})")))
    if bundle is not None:
        results += check_bundle(bundle)
    return results


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="preflight", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    configs = sub.add_parser("configs", help="write the runtime's TabbyAPI configs (runner environment)")
    configs.add_argument("out", type=Path)
    configs.add_argument("--tabbyapi", type=Path, required=True, help="TabbyAPI's unpacked source")
    chk = sub.add_parser("check", help="check them, the converter's options and the bundle (TabbyAPI environment)")
    chk.add_argument("--tabbyapi", type=Path, required=True, help="TabbyAPI's unpacked source")
    chk.add_argument("--configs", type=Path, required=True, help="the folder `configs` wrote")
    chk.add_argument("--exllamav2", type=Path, help="exllamav2's wheel or source folder (default: the installed one)")
    chk.add_argument("--bundle", type=Path, help="the carried bundle (its batch-* folders)")
    args = parser.parse_args(argv)
    if args.command == "configs":
        # the runtime launches TabbyAPI's main.py from here: the argv checked is the argv run
        os.environ["RUNNER_TABBYAPI_DIR"] = str(args.tabbyapi.resolve())
        args.out.mkdir(parents=True, exist_ok=True)
        entries = write_configs(args.out.resolve())
        print(f"ok   runner: {len(entries)} TabbyAPI launches written to {args.out / 'configs.json'}")
        return 0
    if not (args.configs / "configs.json").is_file():
        print(f"preflight: no {args.configs / 'configs.json'}: run `preflight configs` first", file=sys.stderr)
        return 2
    results = check(args.tabbyapi.resolve(), args.configs, args.exllamav2, args.bundle)
    for ok, line in results:
        print(f"{'ok  ' if ok else 'FAIL'} {line}")
    failed = sum(not ok for ok, _ in results)
    print(f"preflight: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
