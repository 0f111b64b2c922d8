"""Hostile code in the local sandbox: each limit is proven by a program that tries to break it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import runner
from runner.evaluation.python_check import check_python
from runner.evaluation.sandbox import Limits, LocalSandbox, capabilities
from runner.records import Outcome
from tests.conftest import require
from tests.evaluation.conftest import FAST, UNIX_CONNECT, python_program, sandbox_uid_processes


def hostile(world_dir: Path, sandbox: LocalSandbox, code: str, limits: Limits = FAST, name: str = "hostile"):
    program = python_program(world_dir, name, code, [("", "done")])
    started = time.monotonic()
    result = check_python(program, code, sandbox, limits)
    return result, time.monotonic() - started


def test_capabilities_probe_reports_a_complete_sandbox_as_root(sandbox):
    caps = capabilities()
    assert caps.complete and caps.missing() == []


def test_infinite_loop_is_killed_at_the_wall_clock_limit(world_dir, sandbox):
    result, seconds = hostile(world_dir, sandbox, "while True:\n    pass\n")
    assert result.outcome is Outcome.timeout
    assert seconds < FAST.wall_seconds + 3
    assert sandbox_uid_processes() == []


def test_fork_bomb_is_stopped_by_the_process_limit_and_cleaned_up(world_dir, sandbox):
    # Children sleep and detach into their own sessions; the parent counts successful forks.
    code = (
        "import os, time\n"
        "n = 0\n"
        "for _ in range(500):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        os.setsid(); time.sleep(120); os._exit(0)\n"
        "    n += 1\n"
        "print(n)\n"
    )
    limits = FAST.model_copy(update={"processes": 20})
    with sandbox.workdir() as workdir:
        (workdir / "bomb.py").write_text(code)
        run = sandbox.run([sys.executable, "bomb.py"], workdir, limits)
    assert run.exit_code == 0
    assert 0 < int(run.stdout) < 20
    assert sandbox_uid_processes() == []


def test_endless_fork_bomb_is_classified_and_leaves_nothing_behind(world_dir, sandbox):
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result, seconds = hostile(world_dir, sandbox, code)
    assert result.outcome is Outcome.timeout
    assert seconds < FAST.wall_seconds + 5
    assert sandbox_uid_processes() == []


def test_memory_hog_hits_the_address_space_limit(world_dir, sandbox):
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 * 1024))\n"
    result, seconds = hostile(world_dir, sandbox, code, FAST.model_copy(update={"memory_mb": 512}))
    assert result.outcome is Outcome.runtime_error
    assert "MemoryError" in result.stderr_tail
    assert seconds < 5


def test_socket_connect_to_a_loopback_listener_fails_inside(world_dir, sandbox):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'leak')\n"
    try:
        result, _ = hostile(world_dir, sandbox, code)
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()
    assert result.outcome is Outcome.runtime_error
    assert "unreachable" in result.stderr_tail or "refused" in result.stderr_tail


def test_writes_outside_the_private_directory_are_refused(world_dir, sandbox):
    target = world_dir / "owned-by-the-test.txt"
    target.write_text("original")
    target.chmod(0o644)
    result, _ = hostile(world_dir, sandbox, f"open({str(target)!r}, 'a').write('pwned')\n")
    assert result.outcome is Outcome.runtime_error
    # the host's /tmp is not even there: the sandbox has its own
    assert "PermissionError" in result.stderr_tail or "FileNotFoundError" in result.stderr_tail
    assert target.read_text() == "original"


def test_the_runner_package_is_not_writable_from_inside(world_dir, sandbox):
    package_file = Path(runner.__file__)
    before = package_file.read_bytes()
    result, _ = hostile(world_dir, sandbox, f"open({str(package_file)!r}, 'a').write('# pwned')\n")
    assert result.outcome is Outcome.runtime_error
    assert "PermissionError" in result.stderr_tail
    assert package_file.read_bytes() == before


def test_a_gigabyte_on_stdout_is_cut_at_the_output_cap(world_dir, sandbox):
    code = "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n"
    with sandbox.workdir() as workdir:
        (workdir / "flood.py").write_text(code)
        started = time.monotonic()
        run = sandbox.run([sys.executable, "flood.py"], workdir, FAST)
    assert run.output_truncated
    assert len(run.stdout) == FAST.output_bytes
    assert time.monotonic() - started < 5
    result, _ = hostile(world_dir, sandbox, code)
    assert result.outcome is Outcome.runtime_error


def test_the_private_directory_is_removed_after_the_run(sandbox):
    with sandbox.workdir() as workdir:
        (workdir / "w.py").write_text("open('made-inside.txt', 'w').write('x')\n")
        run = sandbox.run([sys.executable, "w.py"], workdir, FAST)
        assert run.exit_code == 0 and (workdir / "made-inside.txt").exists()
    assert not workdir.exists()


def test_without_root_the_sandbox_refuses_unless_the_risk_is_accepted(sandbox):
    # Run the CLI as ``nobody``: no private uid can be taken, so untrusted code must not run.
    home = Path(tempfile.mkdtemp(prefix="runner-home-"))
    home.chmod(0o777)
    # The venv's interpreter lives under root's private home; the system one is open to all.
    env = {**os.environ, "RUNNER_HOME": str(home), "RUNNER_CACHE": str(home), "RUNNER_EVAL_PYTHON": "/usr/bin/python3"}
    runner_bin = str(Path(sys.executable).with_name("runner"))
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", runner_bin,
            "tasks", "check", "--program", "job_scheduler", "--mode", "completion"]
    refused = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "--allow-unsandboxed" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    accepted = subprocess.run(argv + ["--allow-unsandboxed"], env=env, capture_output=True, text=True, timeout=300)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


# -- nothing shared with the host: temp folders, Unix sockets, the runner's own files ------------
def test_files_written_to_tmp_var_tmp_and_dev_shm_outlive_nothing(world_dir, sandbox):
    tag = uuid.uuid4().hex
    host_file = Path("/tmp") / f"runner-host-{tag}"
    host_file.write_text("the host's")
    host_file.chmod(0o644)
    places = [f"/tmp/leak-{tag}", f"/var/tmp/leak-{tag}", f"/dev/shm/leak-{tag}"]
    write = (f"import os\nprint('host file seen', os.path.exists({str(host_file)!r}))\n"
             f"for path in {places!r}:\n    open(path, 'wb').write(b'x' * (1 << 20))\n"
             "    print('wrote', path, os.path.getsize(path))\n")
    try:
        with sandbox.workdir() as workdir:
            (workdir / "w.py").write_text(write)
            run = sandbox.run([sys.executable, "w.py"], workdir, FAST)
        assert run.exit_code == 0, run.stderr_tail
        assert "host file seen False" in run.stdout and run.stdout.count("wrote") == 3
        assert not any(Path(p).exists() for p in places)  # the host never sees them
        with sandbox.workdir() as workdir:  # nor does the next run
            (workdir / "r.py").write_text(f"import os\nprint([os.path.exists(p) for p in {places!r}])\n")
            again = sandbox.run([sys.executable, "r.py"], workdir, FAST)
        assert again.stdout.strip() == "[False, False, False]"
    finally:
        host_file.unlink()
        for path in places:
            Path(path).unlink(missing_ok=True)


def test_a_private_tmpfs_is_size_limited(sandbox):
    limits = FAST.model_copy(update={"tmp_mb": 8})
    code = ("import errno\ntry:\n    open('/dev/shm/big', 'wb').write(b'x' * (32 << 20))\n"
            "except OSError as exc:\n    print('full', errno.errorcode[exc.errno])\n")
    with sandbox.workdir() as workdir:
        (workdir / "big.py").write_text(code)
        run = sandbox.run([sys.executable, "big.py"], workdir, limits)
    assert "full ENOSPC" in run.stdout, run.stderr_tail


def test_a_unix_socket_of_the_host_cannot_be_reached(sandbox, unix_listeners):
    addresses, listeners = unix_listeners
    code = UNIX_CONNECT.format(addresses=addresses)
    with sandbox.workdir() as workdir:
        (workdir / "u.py").write_text(code)
        run = sandbox.run([sys.executable, "u.py"], workdir, FAST)
    for listener in listeners:
        with pytest.raises(socket.timeout):
            listener.accept()
    assert "CONNECTED" not in run.stdout and run.stdout.count("refused") == 3, run.stdout + run.stderr_tail
    assert "pair b'ok'" in run.stdout  # an unnamed pair reaches nothing and still works


def test_references_run_directories_and_the_cache_cannot_be_read(world_dir, monkeypatch):
    """Even where the runner's folders are world-readable, the sandbox sees them empty; the
    program's own data file, copied in, is still there."""
    from runner.benchmarks import load_benchmark
    from runner.evaluation.docker_sandbox import choose_sandbox

    require(capabilities().complete, "a complete local sandbox")
    open_root = Path(tempfile.mkdtemp(prefix="runner-test-open-", dir="/run"))
    try:
        for name in ("home", "cache", "runs/other-run"):
            (open_root / name).mkdir(parents=True)
        os.system(f"chmod -R a+rX {open_root}")
        secret_run = open_root / "runs" / "other-run" / "samples.jsonl"
        secret_run.write_text('{"raw_text": "secret answer"}\n')
        (open_root / "cache" / "model.gguf").write_text("weights")
        os.system(f"chmod -R a+rX {open_root}")
        monkeypatch.setenv("RUNNER_HOME", str(open_root / "home"))
        monkeypatch.setenv("RUNNER_CACHE", str(open_root / "cache"))
        reference = next(p for p in load_benchmark("starter").programs.values()).source
        sandbox = choose_sandbox("local", hide=(open_root / "runs",))
        targets = [str(reference), str(secret_run), str(open_root / "cache" / "model.gguf")]
        code = (f"for path in {targets!r}:\n    try:\n        open(path).read()\n        print('READ', path)\n"
                "    except OSError as exc:\n        print('refused', type(exc).__name__)\n"
                "print('data', open('data.txt').read())\n")
        program = python_program(world_dir, "reader", code, [("", "data mine")], data={"data.txt": "mine"})
        result = check_python(program, code, sandbox, FAST)
        assert result.outcome is Outcome.passed, result.stderr_tail
        assert "READ" not in result.outputs[0] and result.outputs[0].count("refused") == 3
        assert reference.is_file() and secret_run.is_file()  # hidden, not touched
    finally:
        shutil.rmtree(open_root, ignore_errors=True)
