"""Make the rehearsal's bundle on a machine with PyPI: wheels, exllamav2, the runner, TabbyAPI's source.

    python -m gpu_rehearsal.bundle DIR [--python-version 3.12] [--tabbyapi GIT_DIR_OR_ARCHIVE]
                                   [--flash-attn WHEEL]

The GPU host has no network, and files reach it in batches of at most 64 MiB: the bundle is split
into ``DIR/batch-1``, ``DIR/batch-2``... each under ``--batch-mib`` (default 60, leaving room for
the rest of a carry), each with a copy of ``manifest.json`` (every file, its sha256 and batch).
Carry them all to the same ``DIR`` on the host; the rehearsal checks that every file is there.

Two environments are bundled, as in production where TabbyAPI runs in its own image: the serving
one (TabbyAPI's pinned requirements, pydantic 2.11.0 among them, and exllamav2's) and the runner's.
torch and its CUDA wheels are never bundled: the host has its own (``pins.EXCLUDED``).

exllamav2 0.3.2 has no sdist on PyPI: its one file there is the ``py3-none-any`` wheel, which
carries the C++/CUDA sources and builds its extension at first import with torch's cpp_extension
and ninja, against whatever torch the host has. That is the build the GPU host needs (the release's
prebuilt wheels are for torch 2.8 + CUDA 12.8; the host has torch 2.11 + CUDA 13).

``--flash-attn WHEEL`` carries a flash-attn wheel built for the host's torch, Python and C++ ABI
(none is published for torch 2.11 + CUDA 13: it must be built on a machine like the host). With it
the rehearsal serves in TabbyAPI's paged (batched) mode; without it in its compatibility mode, one
sequence at a time. A file larger than a batch (a flash-attn wheel is ~250 MB) is carried in parts
(``NAME.part-01``...), listed in the manifest's ``parts`` with the whole file's sha256; the
rehearsal joins and checks them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from gpu_rehearsal import pins

#: manylinux tags a current Linux x86_64 host accepts (pip does not widen one --platform by itself)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux_2_12_x86_64", "manylinux2010_x86_64", "manylinux_2_5_x86_64",
             "manylinux1_x86_64", "linux_x86_64")
MIB = 2**20


class BundleError(Exception):
    """A problem the person making the bundle can fix: one line, no traceback."""


def target_args(python_version: str) -> list[str]:
    """pip's options for wheels that install on the host's Python, not this machine's."""
    major, minor = python_version.split(".")[:2]
    args = ["--only-binary=:all:", "--python-version", f"{major}.{minor}", "--implementation", "cp",
            "--abi", f"cp{major}{minor}", "--abi", "abi3", "--abi", "none"]
    for platform in PLATFORMS:
        args += ["--platform", platform]
    return args


def environments() -> dict[str, list[str]]:
    """The two environments' requirement lists (what ``pip install -r`` gets on the host)."""
    return {"tabby": pins.tabby_env_requirements(), "runner": pins.runner_requirements()}


def resolve(requirements: list[str], python_version: str, *, find_links: list[Path] | None = None,
            pip: list[str] | None = None) -> list[dict]:
    """``pip install --dry-run`` of ``requirements`` for the host's Python: from PyPI, or with
    ``find_links`` from those folders alone (``--no-index``). Returns pip's report's ``install`` list."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        # --target: older pips take another Python's tags only for it (with --dry-run nothing is written)
        cmd = [*(pip or [sys.executable, "-m", "pip"]), "install", "--dry-run", "--ignore-installed", "--quiet",
               "--target", str(Path(tmp) / "target"), "--report", str(report), *target_args(python_version)]
        if find_links:
            cmd.append("--no-index")
            for folder in find_links:
                cmd += ["--find-links", str(folder)]
        done = subprocess.run([*cmd, *requirements], capture_output=True, text=True)
        if done.returncode != 0:
            raise BundleError("pip cannot resolve the requirements: " + _last_error(done.stderr))
        return json.loads(report.read_text(encoding="utf-8"))["install"]


def excluded(installs: list[dict]) -> list[str]:
    """Names of resolved packages the bundle must never carry (torch and its CUDA wheels)."""
    return [i["metadata"]["name"] for i in installs if pins.EXCLUDED.match(i["metadata"]["name"])]


def _last_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("WARNING: Location")]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["(no output)"])[-1].strip()


def _pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise BundleError(f"pip {args[0]} failed: {_last_error(done.stderr)}")


def dist_name(filename: str) -> str:
    """The normalized distribution name of a wheel or sdist file name."""
    stem = re.split(r"-\d", filename, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", stem).lower()


def split(files: dict[str, int], limit: int) -> list[list[str]]:
    """File names in batches of at most ``limit`` bytes each (first fit, largest first)."""
    batches: list[tuple[int, list[str]]] = []
    for name, size in sorted(files.items(), key=lambda item: (-item[1], item[0])):
        if size > limit:
            raise BundleError(f"{name} is {size / MIB:.1f} MiB, over the {limit / MIB:.0f} MiB a batch may hold")
        for i, (used, names) in enumerate(batches):
            if used + size <= limit:
                batches[i] = (used + size, names + [name])
                break
        else:
            batches.append((size, [name]))
    return [sorted(names) for _, names in batches]


def cut(path: Path, limit: int) -> list[Path]:
    """``path`` as parts of at most ``limit`` bytes beside it (``NAME.part-01``...), ``path`` removed."""
    parts = []
    with path.open("rb") as fh:
        while block := fh.read(limit):
            part = path.with_name(f"{path.name}.part-{len(parts) + 1:02d}")
            part.write_bytes(block)
            parts.append(part)
    path.unlink()
    return parts


def tabbyapi_archive(source: Path, out_dir: Path) -> tuple[Path, str, str]:
    """TabbyAPI's source as ``tabbyAPI-<commit>.tar.gz`` in ``out_dir``, from a git directory (the
    pinned commit, else HEAD, said in the note) or an archive given as is. Returns (path, commit, note)."""
    if source.is_file():
        out = out_dir / source.name
        shutil.copy2(source, out)
        match = re.search(r"[0-9a-f]{40}", source.name)
        return out, match.group(0) if match else "unknown", f"archive {source.name} carried as given"

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "--git-dir", str(source), *args], capture_output=True, text=True)

    if git("rev-parse", "--git-dir").returncode != 0:
        source = source / ".git" if (source / ".git").exists() else source
        if git("rev-parse", "--git-dir").returncode != 0:
            raise BundleError(f"--tabbyapi {source}: neither a git directory nor an archive")
    commit, note = pins.TABBYAPI_COMMIT, f"the pinned commit {pins.TABBYAPI_COMMIT}"
    if git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        commit = git("rev-parse", "HEAD").stdout.strip()
        note = f"the pinned commit {pins.TABBYAPI_COMMIT} is not in {source}: its HEAD {commit} instead"
    out = out_dir / f"tabbyAPI-{commit}.tar.gz"
    done = git("archive", "--format=tar.gz", "--prefix=tabbyAPI/", "-o", str(out), commit)
    if done.returncode != 0:
        raise BundleError(f"git archive of {commit} failed: {done.stderr.strip()}")
    return out, commit, note


def make(out: Path, python_version: str, tabbyapi: Path | None, batch_mib: float,
         flash_attn: Path | None = None) -> dict:
    """Download, build and stage everything into batches under ``out``; returns the manifest."""
    if out.exists() and any(out.iterdir()):
        raise BundleError(f"{out} is not empty: give a new folder (or remove it)")
    staging = out / ".staging"
    staging.mkdir(parents=True)
    envs = environments()
    for name, requirements in envs.items():
        installs = resolve(requirements, python_version)
        if excluded(installs):
            raise BundleError(f"the {name} environment would pull {', '.join(excluded(installs))}: "
                              "the host's own torch must serve it; install that package with --no-deps")
        _pip("download", "--quiet", "--dest", str(staging), *target_args(python_version), *requirements)
    # exllamav2 with --no-deps: its requirements are in the tabby list, less torch
    _pip("download", "--quiet", "--no-deps", "--dest", str(staging), f"exllamav2=={pins.EXLLAMAV2_VERSION}")
    # a current pip for the host's venvs: an older one (ensurepip's) mishandles some wheels' tags
    _pip("download", "--quiet", "--no-deps", "--dest", str(staging), *target_args(python_version), "pip")
    _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(staging), str(pins.ROOT))
    note = "TabbyAPI not staged (no --tabbyapi): the rehearsal's preflight will say it is missing"
    tabby_commit = None
    if tabbyapi is not None:
        _, tabby_commit, note = tabbyapi_archive(tabbyapi, staging)
    carried = [p.name for p in staging.iterdir() if pins.EXCLUDED.match(dist_name(p.name))]
    if carried:
        raise BundleError(f"torch or CUDA wheels reached the bundle: {', '.join(carried)}")
    parts: dict[str, dict] = {}
    flash_attn_name = None
    if flash_attn is not None:
        if not re.fullmatch(r"flash_attn-[^-]+-cp\d+-cp\d+-linux_x86_64\.whl", flash_attn.name):
            raise BundleError(f"--flash-attn {flash_attn}: not a flash_attn Linux x86_64 wheel")
        if f"-cp{python_version.replace('.', '')}-" not in flash_attn.name:
            raise BundleError(f"--flash-attn {flash_attn.name}: not for Python {python_version}")
        flash_attn_name = flash_attn.name
        shutil.copy2(flash_attn, staging / flash_attn.name)
    limit = int(batch_mib * MIB)
    for path in [p for p in staging.iterdir() if p.stat().st_size > limit]:
        parts[path.name] = {"sha256": _sha256(path), "parts": [p.name for p in cut(path, limit)]}
    files = {p.name: p.stat().st_size for p in staging.iterdir()}
    batches = split(files, limit)
    manifest = {
        "python_version": python_version, "exllamav2": pins.EXLLAMAV2_VERSION, "tabbyapi_commit": tabby_commit,
        "tabbyapi_note": note, "requirements": envs, "batch_mib": batch_mib, "flash_attn": flash_attn_name,
        "parts": parts,
        "files": {n: {"batch": i + 1, "bytes": files[n], "sha256": _sha256(staging / n)}
                  for i, names in enumerate(batches) for n in names},
    }
    for i, names in enumerate(batches, start=1):
        folder = out / f"batch-{i}"
        folder.mkdir()
        for n in names:
            (staging / n).rename(folder / n)
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    staging.rmdir()
    return manifest


def join(bundle: Path, out: Path) -> list[Path]:
    """The manifest's files that were carried in parts, joined into ``out`` and checked against the
    whole file's sha256 (joined once: a file already there with that sha256 is kept)."""
    manifest = json.loads(next(bundle.glob("batch-*/manifest.json")).read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    joined = []
    for name, entry in manifest.get("parts", {}).items():
        target = out / name
        if not (target.is_file() and _sha256(target) == entry["sha256"]):
            with target.open("wb") as fh:
                for part in entry["parts"]:
                    found = list(bundle.glob(f"batch-*/{part}"))
                    if not found:
                        raise BundleError(f"{part} is missing: carry every batch of the bundle")
                    fh.write(found[0].read_bytes())
            if _sha256(target) != entry["sha256"]:
                target.unlink()
                raise BundleError(f"{name} joined from its parts does not have its sha256 {entry['sha256']}")
        joined.append(target)
    return joined


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-rehearsal-bundle.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="a new folder for the bundle (gitignored: .gpu-bundle)")
    parser.add_argument("--python-version", default=pins.DEFAULT_PYTHON,
                        help=f"the GPU host's python3 (default {pins.DEFAULT_PYTHON}, assumed)")
    parser.add_argument("--tabbyapi", type=Path, help="TabbyAPI's git directory or source archive")
    parser.add_argument("--batch-mib", type=float, default=60.0, help="the most one batch may hold (default 60)")
    parser.add_argument("--flash-attn", type=Path, help="a flash-attn wheel built for the host's torch (batched mode)")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"3\.\d+", args.python_version):
        print(f"--python-version {args.python_version}: give major.minor, e.g. 3.12", file=sys.stderr)
        return 2
    try:
        manifest = make(args.out, args.python_version, args.tabbyapi, args.batch_mib, args.flash_attn)
    except BundleError as exc:
        print(f"bundle: {exc}", file=sys.stderr)
        return 1
    sizes: dict[int, int] = {}
    for entry in manifest["files"].values():
        sizes[entry["batch"]] = sizes.get(entry["batch"], 0) + entry["bytes"]
    for batch, size in sorted(sizes.items()):
        print(f"{args.out}/batch-{batch}: {size / MIB:.1f} MiB")
    print(f"total {sum(sizes.values()) / MIB:.1f} MiB in {len(manifest['files'])} files for Python "
          f"{args.python_version}; {manifest['tabbyapi_note']}; "
          + (f"flash-attn {manifest['flash_attn']}: batched" if manifest["flash_attn"] else "no flash-attn: unbatched"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
