"""Hostile code in the Docker sandbox: each limit is proven by a program that tries to break it.

These run the real engine and the CPU (standard-library) variant of Dockerfile.sandbox; the
full image (SimCoPilot's TensorFlow stack) differs only by its Python packages.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest

from runner.benchmarks import load_benchmark
from runner.evaluation import Evaluator
from runner.evaluation.docker_sandbox import DockerSandbox, choose_sandbox, command_in_image
from runner.evaluation.python_check import check_python
from runner.records import Outcome
from tests.docker_images import SANDBOX_CPU_ENV, engine, sandbox_cpu_image
from tests.evaluation.conftest import FAST, UNIX_CONNECT, python_program

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def docker_sandbox() -> DockerSandbox:
    client = engine()
    sandbox_cpu_image(client)
    return DockerSandbox(env=SANDBOX_CPU_ENV, client=client)


def leftover_sandbox_containers() -> list[str]:
    """Sandbox containers this test process started that are still there (another run's, on a
    shared engine, are not ours to count)."""
    from runner.infra.docker_engine import OWNER, owner_label

    mine = f"{OWNER}={owner_label()[OWNER]}"
    return [c.name for c in engine().containers.list(all=True, filters={"label": ["runner.component=sandbox", mine]})]


def hostile(tmp_path, sandbox, code: str, limits=FAST):
    program = python_program(tmp_path, "hostile", code, [("", "done")])
    started = time.monotonic()
    result = check_python(program, code, sandbox, limits)
    return result, time.monotonic() - started


def run_file(sandbox, code: str, limits=FAST):
    with sandbox.workdir() as workdir:
        (workdir / "p.py").write_text(code)
        return sandbox.run([sys.executable, "p.py"], workdir, limits)


def test_host_interpreter_paths_become_the_images_commands():
    assert command_in_image("/work/main/.venv/bin/python") == "python3"
    assert command_in_image("/usr/bin/python3.11") == "python3"
    assert command_in_image("/usr/lib/jvm/java-17-openjdk-amd64/bin/javac") == "javac"


def test_code_runs_as_an_unprivileged_user_in_python_3_10(docker_sandbox):
    run = run_file(docker_sandbox, "import os, sys\nprint(os.getuid(), sys.version_info[:2])\n")
    assert run.exit_code == 0
    assert run.stdout.strip() == "1000 (3, 10)"
    assert leftover_sandbox_containers() == []


def test_infinite_loop_is_killed_at_the_wall_clock_limit(tmp_path, docker_sandbox):
    result, seconds = hostile(tmp_path, docker_sandbox, "while True:\n    pass\n")
    assert result.outcome is Outcome.timeout
    assert seconds < FAST.wall_seconds + 10
    assert leftover_sandbox_containers() == []


def test_fork_bomb_is_stopped_by_the_pids_limit(docker_sandbox):
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
    run = run_file(docker_sandbox, code, FAST.model_copy(update={"processes": 20}))
    assert run.exit_code == 0
    assert 0 < int(run.stdout) < 20  # docker-init and the interpreter count too
    assert leftover_sandbox_containers() == []


def test_endless_fork_bomb_times_out_and_leaves_nothing(tmp_path, docker_sandbox):
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result, _ = hostile(tmp_path, docker_sandbox, code)
    assert result.outcome is Outcome.timeout
    assert leftover_sandbox_containers() == []


def test_memory_hog_hits_the_memory_limit(tmp_path, docker_sandbox):
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 * 1024))\n"
    result, _ = hostile(tmp_path, docker_sandbox, code, FAST.model_copy(update={"memory_mb": 512}))
    assert result.outcome is Outcome.runtime_error
    assert "MemoryError" in result.stderr_tail


def test_touched_memory_beyond_the_cgroup_limit_is_killed(docker_sandbox):
    # Pages actually written count against the container's memory cgroup (no swap).
    code = "b = []\nwhile True:\n    b.append(b'x' * (64 * 1024 * 1024))\n"
    run = run_file(docker_sandbox, code, FAST.model_copy(update={"memory_mb": 256}))
    assert run.exit_code != 0


def test_no_network_not_even_a_loopback_listener_of_the_host(tmp_path, docker_sandbox):
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    code = (f"import socket\nfor host in ('127.0.0.1', '172.17.0.1'):\n"
            f"    try:\n        socket.create_connection((host, {port}), timeout=2).sendall(b'leak')\n"
            f"    except OSError as exc:\n        print(host, type(exc).__name__)\n"
            "socket.create_connection(('1.1.1.1', 80), timeout=2)\n")
    try:
        result, _ = hostile(tmp_path, docker_sandbox, code)
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()
    assert result.outcome is Outcome.runtime_error
    assert "unreachable" in result.stderr_tail


def test_writes_outside_the_run_directory_are_refused(docker_sandbox):
    code = ("import os\nfor path in ('/etc/passwd', '/usr/local/lib/python3.10/os.py', '/home/x', '/work/../escape'):\n"
            "    try:\n        open(path, 'a').write('pwned')\n        print('WROTE', path)\n"
            "    except OSError as exc:\n        print('refused', path, exc.errno)\n")
    run = run_file(docker_sandbox, code)
    assert run.exit_code == 0
    assert "WROTE" not in run.stdout
    assert run.stdout.count("refused") == 4


def test_a_gigabyte_on_stdout_is_cut_at_the_output_cap(tmp_path, docker_sandbox):
    code = "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n"
    started = time.monotonic()
    run = run_file(docker_sandbox, code)
    assert run.output_truncated
    assert len(run.stdout) == FAST.output_bytes
    assert time.monotonic() - started < 30
    result, _ = hostile(tmp_path, docker_sandbox, code)
    assert result.outcome is Outcome.runtime_error
    assert leftover_sandbox_containers() == []


def test_starter_reference_solutions_pass_in_the_image(docker_sandbox):
    # One Python and one Java program of the starter set, end to end through the evaluator.
    bench = load_benchmark("starter")
    evaluator = Evaluator(bench.programs, sandbox=docker_sandbox, junit_console=bench.junit_jar)
    for name in ("lu_solver", "LRUCacheTester"):
        program = bench.programs[name]
        source = program.source.read_text(encoding="utf-8").replace("\t", "    ")
        result = evaluator.run_source(program, source)
        assert result.outcome is Outcome.passed, (name, result.stderr_tail)
    assert leftover_sandbox_containers() == []


def test_auto_picks_docker_only_when_the_image_is_built(docker_sandbox):
    from runner.evaluation.sandbox import LocalSandbox

    assert isinstance(choose_sandbox("auto", env=SANDBOX_CPU_ENV), DockerSandbox)
    missing = {**SANDBOX_CPU_ENV, "SANDBOX_TAG": "never-built"}
    assert isinstance(choose_sandbox("auto", env=missing, allow_unsandboxed=True), LocalSandbox)
    assert isinstance(choose_sandbox("local", env=SANDBOX_CPU_ENV, allow_unsandboxed=True), LocalSandbox)


def test_tasks_check_runs_in_the_sandbox_image(docker_sandbox, monkeypatch):
    from click.testing import CliRunner

    from runner.cli import main

    for key, value in SANDBOX_CPU_ENV.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["tasks", "check", "--program", "SparseMatrixTester", "--mode", "completion",
                                       "--sandbox", "docker", "--json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records and all(r["outcome"] == "pass" for r in records)
    assert leftover_sandbox_containers() == []


# -- nothing shared with the host: temp folders, Unix sockets, the runner's own files ------------
def test_files_written_to_tmp_and_dev_shm_outlive_nothing(docker_sandbox):
    tag = uuid.uuid4().hex
    places = [f"/tmp/leak-{tag}", f"/dev/shm/leak-{tag}", f"/var/tmp/leak-{tag}"]
    write = (f"import os\nfor path in {places!r}:\n    try:\n        open(path, 'wb').write(b'x' * (1 << 20))\n"
             "        print('wrote', path)\n    except OSError as exc:\n        print('refused', path, exc.errno)\n")
    run = run_file(docker_sandbox, write)
    assert run.exit_code == 0 and run.stdout.count("wrote") >= 2, run.stdout + run.stderr_tail
    assert not any(Path(p).exists() for p in places)
    again = run_file(docker_sandbox, f"import os\nprint([os.path.exists(p) for p in {places!r}])\n")
    assert again.stdout.strip() == "[False, False, False]"


def test_a_unix_socket_of_the_host_cannot_be_reached(docker_sandbox, unix_listeners):
    addresses, listeners = unix_listeners
    run = run_file(docker_sandbox, UNIX_CONNECT.format(addresses=addresses))
    for listener in listeners:
        with pytest.raises(socket.timeout):
            listener.accept()
    assert "CONNECTED" not in run.stdout and run.stdout.count("refused") == 3, run.stdout + run.stderr_tail


def test_references_and_the_runner_cache_cannot_be_read(docker_sandbox):
    from runner.paths import cache_dir

    reference = next(p for p in load_benchmark("starter").programs.values()).source
    targets = [str(reference), str(cache_dir())]
    code = (f"import os\nfor path in {targets!r}:\n    try:\n        open(path).read() if os.path.isfile(path) "
            "else os.listdir(path)\n        print('READ', path)\n"
            "    except OSError as exc:\n        print('refused', type(exc).__name__)\n")
    run = run_file(docker_sandbox, code)
    assert "READ" not in run.stdout and run.stdout.count("refused") == 2, run.stdout + run.stderr_tail
