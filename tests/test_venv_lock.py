"""The runner's own venv installs from a lock: uv.lock, exported to requirements/*.txt with hashes.
Every direct dependency of pyproject.toml is in its export at an admitted version, every pin carries
sha256s, the Makefile installs only from the exports with --require-hashes, and a fresh resolve with
the recorded command and upload cutoff gives the same lock. Each check is also run on an edited copy
of the project, where it must object."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent
#: the machines the lock is for: CPython 3.11 and 3.12 on Linux x86_64 and aarch64
PLATFORMS = [(python, machine) for python in ("3.11", "3.12") for machine in ("x86_64", "aarch64")]
#: export -> what it must hold besides the project's dependencies (None: the build group alone)
EXPORTS = {"build": None, "base": (), "test": ("test",), "ray": ("ray",), "demo": ("demo",)}
#: the files a lock check reads (the edited copies hold these and nothing else)
LOCK_FILES = ["pyproject.toml", "uv.lock", "Makefile", *(f"requirements/{name}.txt" for name in EXPORTS)]
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}\b")


@dataclass(frozen=True)
class Pin:
    """One requirement of an export: ``name==version ; marker`` and its hashes."""

    requirement: Requirement
    hashes: int

    @property
    def version(self) -> str:
        return next(iter(self.requirement.specifier)).version


def environment(python: str, machine: str) -> dict[str, str]:
    """Marker values of CPython ``python`` on Linux ``machine``."""
    return {**default_environment(), "implementation_name": "cpython", "platform_python_implementation": "CPython",
            "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "platform_machine": machine,
            "python_version": python, "python_full_version": f"{python}.0"}


def export_blocks(path: Path) -> list[str]:
    """The requirement blocks of an export (a requirement line and its indented continuations)."""
    body = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    return [block for block in re.split(r"\n(?=\S)", body) if block.strip()]


def export_pins(path: Path) -> tuple[list[Pin], list[str]]:
    """An export's pins, and what is wrong with its lines (unpinned, unhashed, not a requirement)."""
    pins, problems = [], []
    for block in export_blocks(path):
        first = block.splitlines()[0].rstrip(" \\")
        try:
            requirement = Requirement(first)
        except Exception:  # noqa: BLE001 - an option line (--index-url, -e ...) or garbage
            problems.append(f"{path.name}: {first!r} is not a pinned requirement")
            continue
        specs = list(requirement.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or requirement.url:
            problems.append(f"{path.name}: {first!r} is not pinned with ==")
            continue
        hashes = len(HASH.findall(block))
        if not hashes or hashes != block.count("--hash="):
            problems.append(f"{path.name}: {requirement.name} carries no --hash=sha256: (run `make lock`)")
        pins.append(Pin(requirement, hashes))
    return pins, problems


def project_inputs(pyproject: dict, export: str) -> list[Requirement]:
    """What ``export`` must satisfy: the build group and build-system's backend, or the project's
    dependencies with the export's extras."""
    if EXPORTS[export] is None:
        return [Requirement(r) for r in pyproject["dependency-groups"]["build"] + pyproject["build-system"]["requires"]]
    extras = pyproject["project"]["optional-dependencies"]
    return [Requirement(r) for r in pyproject["project"]["dependencies"]
            + [r for extra in EXPORTS[export] for r in extras[extra]]]


def lock_problems(root: Path) -> list[str]:
    """Where pyproject.toml and requirements/*.txt disagree, one line each (offline)."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    cutoff = pyproject["tool"]["uv"]["exclude-newer"]
    problems = []
    locked_cutoff = tomllib.loads((root / "uv.lock").read_text()).get("options", {}).get("exclude-newer")
    if locked_cutoff != cutoff:
        problems.append(f"uv.lock: exclude-newer {locked_cutoff!r}, pyproject.toml's [tool.uv] {cutoff!r}")
    for export in EXPORTS:
        path = root / "requirements" / f"{export}.txt"
        header = [line for line in path.read_text().splitlines() if line.startswith("#")]
        if not any(line.startswith("#   uv lock ") and f'exclude-newer = "{cutoff}"' in line for line in header):
            problems.append(f"{path.name}: its header does not record `uv lock` with exclude-newer {cutoff}")
        pins, bad_lines = export_pins(path)
        problems += bad_lines
        for python, machine in PLATFORMS:
            env = environment(python, machine)
            held = [pin for pin in pins if pin.requirement.marker is None or pin.requirement.marker.evaluate(env)]
            versions = {canonicalize_name(pin.requirement.name): pin.version for pin in held}
            if len(versions) != len(held):
                problems.append(f"{path.name}: a package pinned twice on Python {python} {machine}")
            for requirement in project_inputs(pyproject, export):
                if requirement.marker is not None and not requirement.marker.evaluate(env):
                    continue
                version = versions.get(canonicalize_name(requirement.name))
                if version is None:
                    problems.append(f"{path.name}: {requirement} is not in the lock on Python {python} {machine}"
                                    " (run `make lock`)")
                elif not requirement.specifier.contains(version, prereleases=True):
                    problems.append(f"{path.name}: {requirement} but the lock has {version} (run `make lock`)")
    return sorted(set(problems))


def pip_installs(root: Path, target: str) -> list[list[str]]:
    """The pip installs that ``make`` would run to build ``target`` in a venv that does not exist yet."""
    venv = "/nonexistent/venv-lock-check"
    done = subprocess.run(["make", "-n", "--no-print-directory", f"VENV={venv}", target.format(venv=venv)],
                          cwd=root, capture_output=True, text=True, check=True)
    return [args[args.index("install") + 1:] for args in map(shlex.split, done.stdout.splitlines())
            if args and args[0].endswith("/pip") and "install" in args]


def makefile_problems(root: Path) -> list[str]:
    """Where the Makefile's venv would install anything but the locks, with hashes and no resolving."""
    problems = []
    for target, locks in (("{venv}/bin/runner", ["build", "base"]),
                          ("{venv}/.test-extras", ["build", "base", "test"])):
        installs = pip_installs(root, target)
        from_locks = []
        for args in installs:
            flags = {a for a in args if a.startswith("-") and a not in ("-r", "-e")}
            if args[-2:] == ["-e", "."] and flags == {"--quiet", "--no-deps", "--no-build-isolation"}:
                continue  # the runner itself, built by the locked hatchling
            if len(args) >= 2 and args[-2] == "-r" and {"--require-hashes", "--no-deps"} <= flags:
                from_locks.append(args[-1])
                continue
            problems.append(f"Makefile: `pip install {shlex.join(args)}` for {target.format(venv='.venv')} "
                            "installs outside the locks (--require-hashes --no-deps -r requirements/…)")
        if from_locks != [f"requirements/{lock}.txt" for lock in locks]:
            problems.append(f"Makefile: {target.format(venv='.venv')} installs {from_locks}, not {locks}")
    return problems


def export_commands(path: Path) -> list[str]:
    """The ``uv …`` commands recorded in an export's header."""
    return [line.removeprefix("#").strip() for line in path.read_text().splitlines()
            if re.match(r"#\s+uv (lock|export)\b", line)]


def export_body(path: Path) -> str:
    return "".join(line for line in path.read_text().splitlines(keepends=True) if not line.startswith("#"))


def uv_bin() -> str:
    try:
        from uv import find_uv_bin
    except ImportError:
        find_uv_bin = None
    require(find_uv_bin is not None, "uv (the test extras: pip install -e '.[test]')")
    return find_uv_bin()


def uv(args: list[str], cwd: Path) -> str:
    done = subprocess.run([uv_bin(), *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"uv {shlex.join(args)}: {done.stderr[-2000:]}"
    return done.stdout


def export_differences(root: Path) -> list[str]:
    """The exports that differ from what their recorded ``uv export`` gives from root's uv.lock."""
    differing = []
    for export in EXPORTS:
        path = root / "requirements" / f"{export}.txt"
        commands = [shlex.split(c) for c in export_commands(path) if c.startswith("uv export ")]
        assert len(commands) == 1 and "--frozen" in commands[0], f"{path.name}: no `uv export --frozen` in its header"
        if uv(commands[0][1:], root) != export_body(path):
            differing.append(path.name)
    return differing


def fresh_lock_differences(root: Path, scratch: Path) -> list[str]:
    """What differs when pyproject.toml is resolved afresh (no uv.lock to start from) with the
    recorded command: uv.lock, then every export."""
    (scratch / "requirements").mkdir(parents=True)
    shutil.copy(root / "pyproject.toml", scratch)
    commands = {c for export in EXPORTS for c in export_commands(root / "requirements" / f"{export}.txt")
                if c.startswith("uv lock")}
    assert len(commands) == 1, commands
    uv(["lock", "--refresh", "--quiet"], scratch)  # the header's `uv lock`; its parenthesis is its settings
    # --refresh: a stale index cache would hide a release inside the cutoff, as a fresh CI machine would not
    differing = [] if (scratch / "uv.lock").read_text() == (root / "uv.lock").read_text() else ["uv.lock"]
    for export in EXPORTS:
        (scratch / "requirements" / f"{export}.txt").write_text((root / "requirements" / f"{export}.txt").read_text())
    return differing + export_differences(scratch)


def edited_copy(tmp_path: Path, path: str, pattern: str, new: str) -> Path:
    """The lock's files copied to tmp_path, with the first match of ``pattern`` (multiline) in ``path``
    replaced by ``new``."""
    for name in LOCK_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    text = (tmp_path / path).read_text()
    edited = re.sub(pattern, new, text, count=1, flags=re.M)
    assert edited != text, (path, pattern)
    (tmp_path / path).write_text(edited)
    return tmp_path


def test_every_direct_dependency_is_locked_at_an_admitted_version_with_hashes():
    assert lock_problems(ROOT) == []
    pins, _ = export_pins(ROOT / "requirements" / "test.txt")
    # transitive packages included: Ray's and pydantic's own dependencies, not only the direct ones
    names = {canonicalize_name(pin.requirement.name) for pin in pins}
    assert {"pydantic-core", "grpcio", "msgpack", "ray", "uv"} <= names
    assert all(pin.hashes for pin in pins)


def test_the_makefile_installs_only_from_the_locks_with_require_hashes():
    assert makefile_problems(ROOT) == []


def test_the_exports_are_what_uv_exports_from_the_lock():
    assert export_differences(ROOT) == [], "requirements/*.txt is stale: run `make lock`"


def test_a_fresh_resolve_gives_the_same_lock(tmp_path):
    """Network (PyPI): the cutoff holds the resolution still; about 2 s, empty cache or not."""
    started = time.monotonic()
    assert fresh_lock_differences(ROOT, tmp_path) == [], "uv.lock does not resolve the same: run `make lock`"
    assert time.monotonic() - started < 120


# edits that `make lock` would not undo by chance: patterns, not today's versions
@pytest.mark.parametrize(("path", "pattern", "new", "expected"), [
    ("pyproject.toml", r'"click>=8.1"', '"click>=99"', r"base\.txt: click>=99 but the lock has "),
    ("pyproject.toml", r'"pytest>=8"', '"pytest>=8", "tabulate>=0.9"', r"test\.txt: tabulate>=0\.9 is not in the lock"),
    ("pyproject.toml", r'"hatchling>=1.25"\]', '"hatchling>=99"]', r"build\.txt: hatchling>=99 but the lock has "),
    ("pyproject.toml", r'^exclude-newer = "', 'exclude-newer = "1', r"uv\.lock: exclude-newer "),
    ("requirements/test.txt", r"( \\\n    --hash=sha256:[0-9a-f]{64})+", "",
     r"test\.txt: [\w.-]+ carries no --hash=sha256:"),
    ("requirements/base.txt", r"^rich==\S+", "rich>=1", r"base\.txt: .rich>=1 ; .*. is not pinned with =="),
    ("requirements/ray.txt", r"^ray==\S+", "ray==2.0.0", r"ray\.txt: ray\[client\]==\S+ but the lock has 2\.0\.0"),
    ("requirements/test.txt", r"^", "--extra-index-url https://example.org/simple\n", r"test\.txt: '--extra-index-url"),
], ids=["base-bound", "new-test-dependency", "build-backend", "cutoff", "hash-dropped", "unpinned", "ray-version",
        "index-option"])
def test_the_lock_check_objects_to_an_edited_copy(tmp_path, path, pattern, new, expected):
    problems = lock_problems(edited_copy(tmp_path, path, pattern, new))
    assert any(re.match(expected, problem) for problem in problems), problems


@pytest.mark.parametrize(("pattern", "new", "expected"), [
    (r"--quiet --require-hashes --no-deps", "--quiet --no-deps", "installs outside the locks"),
    (r"^(\t\$\(PIP_LOCKED\) -r requirements/build\.txt)$", r"\1\n\t$(BIN)/pip install --quiet --upgrade pip",
     "Makefile: `pip install --quiet --upgrade pip`"),
    (r"--no-deps --no-build-isolation -e \.", "-e .", "Makefile: `pip install --quiet -e .`"),
    (r"\$\(PIP_LOCKED\) -r requirements/test\.txt", "$(BIN)/pip install --quiet -e '.[test]'", "installs outside"),
], ids=["no-require-hashes", "pip-upgrade", "editable-resolves", "test-extras-unlocked"])
def test_the_makefile_check_objects_to_an_edited_copy(tmp_path, pattern, new, expected):
    problems = makefile_problems(edited_copy(tmp_path, "Makefile", pattern, new))
    assert any(expected in problem for problem in problems), problems


def test_a_fresh_resolve_of_an_edited_pyproject_differs(tmp_path):
    """Network (PyPI): a tighter bound (still one import-linter admits: click>=8.2) moves the resolution, and the comparison says so."""
    copy = edited_copy(tmp_path / "copy", "pyproject.toml", r'"click>=8.1"', '"click>=8.2,<8.5"')
    assert fresh_lock_differences(copy, tmp_path / "fresh")[:2] == ["uv.lock", "base.txt"]
