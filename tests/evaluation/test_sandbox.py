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
    # a checkout's package is not in the sandbox's root at all; one installed in the kept venv is read-only
    assert "PermissionError" in result.stderr_tail or "FileNotFoundError" in result.stderr_tail
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


# -- the interpreter's installation stays visible, read-only, wherever it lives -------------------
#: what each interpreter test runs: the prefix, a module from the venv's site-packages, one from a
#: folder a .pth file there names, and the uid it ran as
PREFIX_PROBE = ("import json, os, sys, tinypkg, pthmod\n"
                "print(json.dumps([sys.prefix, tinypkg.VALUE, pthmod.VALUE, os.getuid()]))\n")


def make_venv(parent: Path, base: str = "/usr/bin/python3") -> Path:
    """A venv under ``parent`` with a package in site-packages and a .pth-named folder, all world-readable."""
    require(Path(base).is_file(), base)
    venv = parent / ".venv"
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next(venv.glob("lib/python3*/site-packages"))
    (site / "tinypkg").mkdir()
    (site / "tinypkg" / "__init__.py").write_text("VALUE = 7\n")
    (venv / "extra").mkdir()
    (venv / "extra" / "pthmod.py").write_text("VALUE = 8\n")
    (site / "extra.pth").write_text(f"{venv / 'extra'}\n")
    os.system(f"chmod -R a+rX {venv}")
    return venv


def in_sandbox(sandbox: LocalSandbox, python: str, code: str, limits: Limits = FAST):
    with sandbox.workdir() as workdir:
        (workdir / "probe.py").write_text(code)
        return sandbox.run([python, "probe.py"], workdir, limits)


def prefix_run(sandbox: LocalSandbox, python: str) -> list:
    import json

    run = in_sandbox(sandbox, python, PREFIX_PROBE)
    assert run.exit_code == 0, run.stderr_tail
    return json.loads(run.stdout)


@pytest.fixture
def tmp_venv():
    """A venv made under /tmp (the issue's case), in mkdtemp's 0700 folder beside a secret."""
    parent = Path(tempfile.mkdtemp(prefix="runner-test-venv-", dir="/tmp"))
    (parent / "secret.txt").write_text("s3cret")
    (parent / "secret.txt").chmod(0o644)
    try:
        yield make_venv(parent)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def private_venv():
    """A venv two levels below a 0700 folder outside /tmp, beside a world-readable secret."""
    home = Path(tempfile.mkdtemp(prefix="runner-test-home-", dir=Path.home()))
    home.chmod(0o700)
    (home / "secret.txt").write_text("s3cret")
    (home / "secret.txt").chmod(0o644)
    (home / "project").mkdir(mode=0o755)
    try:
        yield make_venv(home / "project"), home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_venv_under_tmp_as_the_evaluation_interpreter_runs_with_its_own_packages(tmp_venv, monkeypatch, sandbox):
    from runner.evaluation.sandbox import UID_BASE

    python = str(tmp_venv / "bin" / "python3")
    monkeypatch.setenv("RUNNER_EVAL_PYTHON", python)
    local = LocalSandbox()  # learns the interpreter from RUNNER_EVAL_PYTHON, as the CLI's does
    prefix, tiny, pth, uid = prefix_run(local, python)
    assert (prefix, tiny, pth) == (str(tmp_venv), 7, 8) and uid >= UID_BASE
    # the rest of the host's /tmp stays out of sight, even the venv's own neighbour
    secret = tmp_venv.parent / "secret.txt"
    seen = in_sandbox(local, python, f"import os\nprint(os.path.exists({str(secret)!r}), len(os.listdir('/tmp')))\n")
    assert seen.stdout.split() == ["False", "2"], seen.stdout + seen.stderr_tail  # the venv's folder and the runs'


def test_a_kept_prefix_is_read_only_even_where_its_files_are_world_writable(tmp_venv, sandbox):
    python = str(tmp_venv / "bin" / "python3")
    site = next(tmp_venv.glob("lib/python3*/site-packages"))
    site.chmod(0o777)  # only the read-only mount can refuse now
    code = (f"import errno\ntry:\n    open({str(site / 'planted.py')!r}, 'w').write('x')\n    print('WROTE')\n"
            "except OSError as exc:\n    print(errno.errorcode[exc.errno])\n")
    run = in_sandbox(LocalSandbox(interpreters=(python,)), python, code)
    assert run.stdout.strip() == "EROFS", run.stdout + run.stderr_tail
    assert not (site / "planted.py").exists()


def test_a_venv_below_a_0700_folder_runs_and_the_rest_of_that_folder_stays_hidden(private_venv, sandbox):
    venv, home = private_venv
    python = str(venv / "bin" / "python3")
    local = LocalSandbox(interpreters=(python,))
    prefix, tiny, pth, _ = prefix_run(local, python)
    assert (prefix, tiny, pth) == (str(venv), 7, 8)
    code = (f"import os\nprint(os.path.exists({str(home / 'secret.txt')!r}), sorted(os.listdir({str(home)!r})))\n"
            f"print(os.path.exists({str(Path.home() / '.bashrc')!r}))\n")
    seen = in_sandbox(local, python, code)
    assert seen.stdout.split("\n")[:2] == ["False ['project']", "False"], seen.stdout + seen.stderr_tail


def test_the_base_interpreter_of_this_venv_runs_wherever_it_is_installed(sandbox):
    """This machine's is pyenv's under /root (0700); elsewhere it may be /usr: both must run."""
    base = Path(os.path.realpath(sys.base_prefix))
    python = next(str(p) for p in (base / "bin" / "python3", base / "bin" / "python") if p.exists())
    prefix, = [line for line in in_sandbox(LocalSandbox(), python,
                                            "import json, sys\nprint(sys.prefix)\n").stdout.splitlines()]
    assert Path(prefix) == base


def test_an_evaluator_given_its_own_interpreter_gets_it_kept_without_telling_the_sandbox(tmp_venv, world_dir, sandbox):
    """``Evaluator(python=...)`` builds its sandbox before it knows the interpreter: each run keeps its own command."""
    from runner.evaluation import Evaluator

    python = str(tmp_venv / "bin" / "python3")
    program = python_program(world_dir, "uses_venv", "import tinypkg\n", [("print(tinypkg.VALUE)", "7")])
    evaluator = Evaluator({program.name: program}, limits=FAST, python=python)
    result = evaluator.run_source(program, "import tinypkg\n")
    assert result.outcome is Outcome.passed, result.stderr_tail


def test_hidden_folders_stay_hidden_above_and_inside_a_kept_venv(tmp_venv, sandbox):
    """A runner installed into a venv under /tmp: its shipped benchmarks lie inside the kept prefix."""
    python = str(tmp_venv / "bin" / "python3")
    site = next(tmp_venv.glob("lib/python3*/site-packages"))
    inside = site / "runner" / "benchmarks"
    inside.mkdir(parents=True)
    (inside / "reference.py").write_text("ANSWER = 1\n")
    above = tmp_venv.parent  # holds the venv and the secret beside it
    os.system(f"chmod -R a+rX {above}")
    for hide in ((inside,), (above, inside)):
        local = LocalSandbox(interpreters=(python,), hide=hide)
        assert all(Path(os.path.realpath(h)) in local.hidden for h in hide)
        prefix, tiny, _, _ = prefix_run(local, python)
        assert (prefix, tiny) == (str(tmp_venv), 7)
        # the secret beside the venv is out of sight either way: /tmp is the sandbox's own
        targets = [str(inside / "reference.py"), str(above / "secret.txt")]
        seen = in_sandbox(local, python, f"import os\nprint([os.path.exists(p) for p in {targets!r}])\n")
        assert seen.stdout.strip() == "[False, False]", (hide, seen.stdout, seen.stderr_tail)


def test_the_fresh_root_binds_each_interpreters_own_prefix_and_nothing_above_it(tmp_venv, private_venv):
    from runner.evaluation.mounts import plan_mounts

    venv, home = private_venv
    plan = plan_mounts((str(tmp_venv / "bin" / "python3"), str(venv / "bin" / "python3"), "/usr/bin/python3"))
    assert Path(os.path.realpath(tmp_venv)) in plan.keep and Path(os.path.realpath(venv)) in plan.keep
    # /usr is bound as the system; the 0700 home and /tmp, which hold the venvs, are never bound
    for folder in (Path("/usr"), Path("/"), Path("/tmp"), Path(os.path.realpath(home)), Path.home()):
        assert folder not in plan.keep
    # a hidden folder inside a kept venv is covered after the bind; one outside is simply absent
    inside = Path(os.path.realpath(tmp_venv)) / "lib"
    covered = plan_mounts((str(tmp_venv / "bin" / "python3"),), hidden=(inside, Path(os.path.realpath(home))))
    assert covered.hide == (inside,)


# -- a command the sandbox cannot start is an environment failure, never a verdict ---------------
def test_an_interpreter_that_does_not_exist_is_an_environment_failure(world_dir, sandbox):
    from runner.errors import EnvironmentFailure

    missing = str(world_dir / "no-such-python3")
    with pytest.raises(EnvironmentFailure) as raised:
        in_sandbox(sandbox, missing, "print(1)\n")
    message = str(raised.value)
    assert "\n" not in message and "failed to execute" in message and missing in message
    assert "RUNNER_EVAL_PYTHON" in message  # the fix


def test_an_interpreter_the_private_uid_may_not_execute_is_an_environment_failure(world_dir, sandbox):
    from runner.errors import EnvironmentFailure

    wrapper = world_dir / "bin" / "python3"
    wrapper.parent.mkdir(mode=0o755)
    wrapper.write_text('#!/bin/sh\nexec /usr/bin/python3 "$@"\n')
    wrapper.chmod(0o700)  # root's alone
    with pytest.raises(EnvironmentFailure, match="Permission denied"):
        in_sandbox(sandbox, str(wrapper), "print(1)\n")


def test_an_answer_that_fakes_the_sandboxs_exec_failure_is_judged_as_itself(world_dir, sandbox):
    fake = ("import sys\nsys.stderr.write('setpriv: failed to execute /usr/bin/python3: No such file or directory\\n')\n"
            "sys.exit(127)\n")
    run = in_sandbox(sandbox, sys.executable, fake)
    assert run.exit_code == 127 and run.stderr_tail.startswith("setpriv: failed to execute")
    result, _ = hostile(world_dir, sandbox, fake)
    assert result.outcome is Outcome.runtime_error  # the answer's own doing: an ordinary verdict


def test_a_mount_script_that_stops_looks_like_the_sandboxs_failure():
    """The shape ``looks_unstarted`` must recognise, from a real failing mount in a real namespace."""
    from runner.evaluation.mounts import MountPlan
    from runner.evaluation.sandbox import ExecResult, looks_unstarted, unstarted_line

    require(capabilities().private_mounts, "a mount namespace")
    with tempfile.TemporaryDirectory() as base:
        plan = MountPlan(keep=(Path("/no/such/prefix"),)).script(Path("/no/such/run"), 1, Path(base))
        done = subprocess.run(["unshare", "--mount", "--", *plan, "true"], capture_output=True, text=True, timeout=30)
    result = ExecResult(exit_code=done.returncode, stdout=done.stdout, stderr_tail=done.stderr)
    assert done.returncode != 0 and looks_unstarted(result), done.stderr
    assert unstarted_line(done.stderr).startswith(("mount: ", "mkdir: "))


def test_the_docker_sandbox_reports_a_command_its_image_cannot_start(world_dir):
    from runner.errors import EnvironmentFailure
    from runner.evaluation.docker_sandbox import DockerSandbox
    from tests.docker_images import SANDBOX_CPU_ENV, engine, sandbox_cpu_image

    client = engine()
    sandbox_cpu_image(client)
    docker = DockerSandbox(env=SANDBOX_CPU_ENV, client=client)
    with pytest.raises(EnvironmentFailure, match="no-such-command"):
        with docker.workdir() as workdir:
            docker.run(["no-such-command", "x"], workdir, FAST)
    fake = "import sys\nsys.stderr.write('prlimit: failed to execute python3: No such file or directory\\n')\nsys.exit(127)\n"
    with docker.workdir() as workdir:
        (workdir / "fake.py").write_text(fake)
        run = docker.run([sys.executable, "fake.py"], workdir, FAST)
    assert run.exit_code == 127  # the answer's own doing
