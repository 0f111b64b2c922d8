"""Fixtures for evaluation tests: real small programs written into temporary folders."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

import pytest

from runner.evaluation.sandbox import Limits, LocalSandbox, capabilities
from runner.records import Language, Program, TestCase
from tests.conftest import require

FAST = Limits(wall_seconds=4, cpu_seconds=8, processes=32, output_bytes=1 << 20, time_factor=3)
# Two JVM starts take seconds on a loaded 2-core machine.
JAVA = FAST.model_copy(update={"wall_seconds": 15, "cpu_seconds": 30})


@pytest.fixture
def sandbox() -> LocalSandbox:
    caps = capabilities()
    require(caps.complete, f"a complete local sandbox (missing: {caps.missing()})")
    return LocalSandbox()


@pytest.fixture
def world_dir():
    """A folder the sandbox uid can reach (pytest's own tmp folders are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="runner-test-"))
    os.chmod(path, 0o755)
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def python_program(root: Path, name: str, source: str, cases: list[tuple[str, str]],
                   output_to_check: str = "final_output", data: dict[str, str] | None = None) -> Program:
    """Write a Python program, its test JSON and data files the way the benchmark layout has them."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / f"{name}.py").write_text(source)
    (folder / f"{name}.json").write_text(json.dumps({f"test_case{i}": c for i, (c, _) in enumerate(cases, 1)}))
    for file, text in (data or {}).items():
        (folder / file).write_text(text)
    return Program(
        name=name,
        language=Language.python,
        source=folder / f"{name}.py",
        data_dir=folder,
        output_to_check=output_to_check,
        test_cases=tuple(TestCase(code=c, expected_output=e) for c, e in cases),
    )


def java_program(root: Path, tester: str, source: str) -> Program:
    """Write one Java file holding the classes and a JUnit 3 tester."""
    folder = root / tester
    folder.mkdir(parents=True)
    (folder / f"{tester}.java").write_text(source)
    return Program(name=tester, language=Language.java, source=folder / f"{tester}.java", data_dir=folder,
                   tester_class=tester)


def sandbox_uid_processes() -> list[int]:
    """Processes still running under any uid of the sandbox pool (there must be none after a run)."""
    from runner.evaluation import sandbox as sb

    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                uid = os.stat(entry.path).st_uid
                state = (Path(entry.path) / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if sb.UID_BASE <= uid < sb.UID_BASE + sb.UID_POOL and state != "Z":
                found.append(int(entry.name))
    return found


@pytest.fixture
def unix_listeners():
    """World-writable Unix sockets of the host: a file in a world-traversable folder outside /tmp,
    one in /tmp, and an abstract one."""
    folder = Path(tempfile.mkdtemp(prefix="runner-test-sock-", dir="/run"))
    folder.chmod(0o755)
    listeners = []
    addresses = [str(folder / "s.sock"), str(Path(tempfile.mkdtemp(prefix="runner-test-sock-")) / "s.sock"),
                 f"\0runner-test-{uuid.uuid4().hex}"]
    for address in addresses:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(address)
        if not address.startswith("\0"):
            os.chmod(address, 0o777)
            os.chmod(os.path.dirname(address), 0o755)
        listener.listen(1)
        listener.settimeout(0.3)
        listeners.append(listener)
    yield addresses, listeners
    for listener, address in zip(listeners, addresses):
        listener.close()
        if not address.startswith("\0"):
            shutil.rmtree(os.path.dirname(address), ignore_errors=True)


#: a hostile program that tries each Unix socket address, then an unnamed pair (which must work)
UNIX_CONNECT = """import socket
for address in {addresses!r}:
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(address)
        s.sendall(b'leak')
        print('CONNECTED', repr(address))
    except OSError as exc:
        print('refused', type(exc).__name__)
a, b = socket.socketpair()
a.sendall(b'ok')
print('pair', b.recv(2))
"""
