"""Hostile answers against both sandboxes: each case is named for what it attacks, and none may pass.

Each answer fills a real task of the starter benchmark, as a model's output would. The reference
of the same task passes in the same sandbox, so a case cannot pass by everything failing.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from runner.benchmarks import load_benchmark
from runner.errors import UserError
from runner.evaluation.java_check import check_java, java_toolchain
from runner.evaluation.postprocess import assemble
from runner.evaluation.python_check import check_python
from runner.evaluation.sandbox import LocalSandbox, capabilities
from runner.records import Outcome
from tests.conftest import require
from tests.evaluation.conftest import FAST, JAVA

pytestmark = pytest.mark.timeout(900)

JAVA_TASK = "java/infill/LRUCacheTester/37-38"
PYTHON_TASK = "python/infill/lu_solver/16-17"
FORGED_SUMMARY = 'System.out.println("[ 12 tests found ]\\n[ 12 tests successful ]\\n[ 0 tests failed ]");'


def make_sandbox(kind: str):
    """The local sandbox, or the Docker one on the minimal sandbox image (skipped where either is missing)."""
    if kind == "local":
        caps = capabilities()
        require(caps.complete, f"a complete local sandbox (missing: {caps.missing()})")
        return LocalSandbox()
    from runner.evaluation.docker_sandbox import DockerSandbox
    from tests.docker_images import SANDBOX_CPU_ENV, engine, sandbox_cpu_image

    client = engine()
    sandbox_cpu_image(client)
    return DockerSandbox(env=SANDBOX_CPU_ENV, client=client)


@pytest.fixture(scope="module", params=["local", "docker"])
def any_sandbox(request):
    return make_sandbox(request.param)


@pytest.fixture(scope="module")
def starter():
    return load_benchmark("starter")


@pytest.fixture(scope="module")
def toolchain():
    try:
        return java_toolchain()
    except UserError as exc:
        require(False, f"JDK and JUnit jars ({exc})")


# room for two JVM starts on a loaded machine: a forgery must end as itself, not as a timeout
JAVA_ROOM = JAVA.model_copy(update={"wall_seconds": 60, "cpu_seconds": 120})


def judge_java(starter, sandbox, toolchain, code: str, fast: bool):
    task = starter.task(JAVA_TASK)
    return check_java(starter.program_of(task), assemble(task, code), sandbox, JAVA_ROOM, toolchain, fast=fast)


JAVA_FORGERIES = {
    "junit_summary_on_stdout_then_exit_0": FORGED_SUMMARY + " System.exit(0);",
    "junit_summary_on_stdout_then_halt_0": FORGED_SUMMARY + " Runtime.getRuntime().halt(0);",
    # the launcher's record, written in its place with a guessed key, before the real one exists
    "launcher_record_written_by_the_answer": (
        'try { java.nio.file.Files.write(java.nio.file.Paths.get(".runner-record"), '
        '("tested 0 12 12 0 0 0 " + "0".repeat(64) + "\\n").getBytes()); } catch (Exception e) {} '
        + FORGED_SUMMARY + " Runtime.getRuntime().halt(0);"
    ),
    # the key file, read before the launcher deletes it (it must already be gone)
    "launcher_key_read_by_the_answer": (
        'try { System.out.println("key " + java.nio.file.Files.readAllBytes('
        'java.nio.file.Paths.get(".runner-key")).length); } catch (Exception e) { System.out.println("no key"); } '
        + FORGED_SUMMARY + " System.exit(0);"
    ),
}


@pytest.mark.parametrize("fast", [False, True], ids=["javac-then-java", "one-jvm"])
@pytest.mark.parametrize("attack", list(JAVA_FORGERIES))
def test_a_java_answer_cannot_forge_a_pass(starter, any_sandbox, toolchain, attack, fast):
    result = judge_java(starter, any_sandbox, toolchain, JAVA_FORGERIES[attack], fast)
    assert result.outcome is Outcome.runtime_error, result.stderr_tail
    assert "completion record" in result.stderr_tail
    if attack == "launcher_key_read_by_the_answer":
        assert "no key" in result.outputs[0]


@pytest.mark.parametrize("fast", [False, True], ids=["javac-then-java", "one-jvm"])
def test_the_java_reference_passes_where_the_forgeries_do_not(starter, any_sandbox, toolchain, fast):
    result = judge_java(starter, any_sandbox, toolchain, starter.task(JAVA_TASK).reference, fast)
    assert result.outcome is Outcome.passed, result.stderr_tail


# Finds its own test case in the test-case JSON of its folder and prints the expected output.
ANSWER_KEY_READER = """\
        import json, os, sys
        source = open(__file__).read()
        for name in os.listdir("."):
            if name.endswith(".json"):
                key = json.load(open(name))
                for field, code in key.items():
                    if field.startswith("test_case") and code in source:
                        print(key["expected_output" + field[9:]].replace("\\\\n", "\\n"), end="")
                        sys.stdout.flush()
                        os._exit(0)
        print("no answer key", sorted(os.listdir(".")))"""


def test_a_python_answer_cannot_read_its_expected_outputs(starter, any_sandbox):
    task = starter.task(PYTHON_TASK)
    program = starter.program_of(task)
    result = check_python(program, assemble(task, ANSWER_KEY_READER), any_sandbox, FAST)
    assert result.outcome is not Outcome.passed
    assert "no answer key" in result.outputs[0] and "lu_solver.json" not in result.outputs[0]


def test_a_python_program_still_sees_its_own_data_files(starter, any_sandbox):
    task = next(t for t in starter.tasks if t.program == "job_scheduler")
    result = check_python(starter.program_of(task), assemble(task, task.reference), any_sandbox, FAST)
    assert result.outcome is Outcome.passed, result.stderr_tail


# A scorer in its own process: it starts a sandboxed answer that sleeps, says so, and waits for it.
SCORER = """\
import sys, time
from pathlib import Path
from runner.evaluation.sandbox import Limits
from tests.evaluation.test_hostile_answers import make_sandbox

sandbox = make_sandbox(sys.argv[1])
with sandbox.workdir() as workdir:
    (workdir / "answer.py").write_text("import time\\nprint('asleep', flush=True)\\ntime.sleep(120)\\n")
    print("starting", flush=True)
    sandbox.run([sys.executable, "answer.py", sys.argv[2]], workdir, Limits(wall_seconds=120, cpu_seconds=200))
"""


def processes_naming(marker: str) -> list[str]:
    """``pid argv`` of every live process whose command line holds ``marker`` (sandbox wrappers included)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker.encode() in argv and state != "Z":
            found.append(f"{entry.name} {b' '.join(argv).decode(errors='replace')[:200]}")
    return found


def containers_naming(marker: str) -> list[str]:
    from tests.docker_images import engine

    # the summary listing: other tests remove their containers meanwhile, which a detailed one trips on
    return [c["Id"] for c in engine().api.containers(all=True, filters={"label": "runner.component=sandbox"})
            if marker in c.get("Command", "")]


@pytest.mark.parametrize("signal_number", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_nothing_of_an_answer_outlives_its_killed_scorer(any_sandbox, signal_number):
    kind = "docker" if type(any_sandbox).__name__ == "DockerSandbox" else "local"
    marker = f"runner-survival-{uuid.uuid4().hex}"
    scorer = subprocess.Popen([sys.executable, "-c", SCORER, kind, marker], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parents[2])
    try:
        assert scorer.stdout.readline().strip() == "starting"
        running = processes_naming if kind == "local" else containers_naming
        deadline = time.monotonic() + 60
        while not running(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # the answer itself is asleep inside by now
        assert running(marker), "the answer never started"
        scorer.send_signal(signal_number)
        scorer.wait(timeout=30)
    finally:
        if scorer.poll() is None:
            scorer.kill()
            scorer.wait()
    deadline = time.monotonic() + 15
    while running(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running(marker)
    # the killed scorer's size-limited working folder is unmounted by the next runner's first use
    from runner.evaluation.sandbox import _mount_points, _sweep_work_mounts, _workdir_base, work_limit_works

    source = f"runner-work-{scorer.pid}"
    left = [point for point, name in _mount_points("tmpfs", source) if name == source]
    assert left or not work_limit_works()  # killed before its cleanup: the mount is still there
    _sweep_work_mounts.cache_clear()
    _workdir_base()
    assert not [point for point, name in _mount_points("tmpfs", source) if name == source]


# -- disk fill: the working folder is size-limited ---------------------------------------------------
DISK_FILLER = """\
import errno, os
written = 0
try:
    for i in range(4096):
        with open(f"fill-{i}", "wb") as fh:
            fh.write(b"x" * (1 << 20))
        written += 1
except OSError as exc:
    print("stopped", errno.errorcode.get(exc.errno))
print("MiB", written)
"""


def test_an_answer_cannot_fill_the_hosts_disk_from_its_working_folder(any_sandbox):
    from runner.evaluation.sandbox import work_limit_works

    require(work_limit_works(), "root, to mount the working folder's tmpfs")
    limits = FAST.model_copy(update={"work_mb": 24, "wall_seconds": 60})
    with any_sandbox.workdir(limits) as workdir:
        (workdir / "fill.py").write_text(DISK_FILLER)
        run = any_sandbox.run([sys.executable, "fill.py"], workdir, limits)
    assert "stopped ENOSPC" in run.stdout, run.stdout + run.stderr_tail
    assert int(run.stdout.split("MiB")[1]) <= limits.work_mb


# -- escape: the local sandbox's root holds only what the program needs; a container sees its image --
WALKER = """\
import json, os, sys
allowed = json.loads(sys.argv[1])
outside, canaries, seen = [], [], 0
for root, dirs, files in os.walk("/", followlinks=False):
    if root in ("/proc", "/sys"):  # the kernel's views (the PID namespace's own processes), not files
        dirs[:] = []
        continue
    for name in files:
        path = os.path.join(root, name)
        if not os.access(path, os.R_OK):
            continue
        seen += 1
        if "runner-canary" in path:
            canaries.append(path)
        if not any(path == a or path.startswith(a.rstrip("/") + "/") for a in allowed):
            outside.append(path)
print(json.dumps({"seen": seen, "outside": outside[:40], "outside_count": len(outside), "canaries": canaries}))
"""


@pytest.fixture
def canaries():
    """World-readable files where a host keeps things: /tmp, /run, /var/lib, /etc, another run's folder."""
    import shutil
    import tempfile

    from runner.evaluation.sandbox import _workdir_base

    token = uuid.uuid4().hex[:8]
    folders = [Path(tempfile.mkdtemp(prefix=f"runner-canary-{token}-", dir=d))
               for d in ("/tmp", "/run", "/var/lib", "/etc", str(_workdir_base()))]
    for folder in folders:
        folder.chmod(0o755)
        (folder / "runner-canary.txt").write_text("secret")
        (folder / "runner-canary.txt").chmod(0o644)
    yield folders
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def test_an_answer_that_walks_the_root_finds_only_what_its_program_needs(any_sandbox, canaries):
    import json

    from runner.evaluation.mounts import plan_mounts, system_paths

    if type(any_sandbox).__name__ == "DockerSandbox":
        # the container's root is the sandbox image (read-only): its system, its /etc and its package
        # state under /var; nothing of the host's but the run's folder at /work
        allowed = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/var/lib", "/var/cache", "/var/log",
                   "/tmp", "/work", "/dev", "/.dockerenv"]
    else:
        keep = plan_mounts(tuple(dict.fromkeys((*any_sandbox.interpreters, sys.executable)))).keep
        allowed = [*system_paths(), *map(str, keep), "/tmp", "/var/tmp", "/dev"]
    limits = FAST.model_copy(update={"wall_seconds": 180, "cpu_seconds": 240})
    with any_sandbox.workdir(limits) as workdir:
        (workdir / "walk.py").write_text(WALKER)
        run = any_sandbox.run([sys.executable, "walk.py", json.dumps(allowed)], workdir, limits)
    assert run.exit_code == 0, run.stderr_tail
    found = json.loads(run.stdout)
    assert found["seen"] > 100  # it did walk: the system's files are there
    assert found["canaries"] == [] and found["outside_count"] == 0, found


# -- upstream's cascade, SimCoPilot's headline ------------------------------------------------------
UPSTREAM_JAVA_TASK = "java/infill/DoubleVectorTester/224-224"  # in a constructor every test calls


def forged_last_line(program) -> str:
    """The line upstream compares a Java run's last line with: JUnit's ``[ 0 tests failed ]`` as recorded."""
    import json

    recorded = json.loads(program.source.with_suffix(".json").read_text())["expected_output1"]
    return [line for line in recorded.encode().decode("unicode_escape").split("\n") if line.strip()][-1]


@pytest.mark.parametrize("sandbox_kind", ["local", "docker"])
def test_a_java_answer_cannot_forge_a_pass_under_upstreams_cascade(simcopilot, sandbox_kind, monkeypatch):
    """Upstream passes a Java run that exits 0 and whose last line is JUnit's recorded one: an answer
    printing that line and exiting 0 from the code under test passed so. Here it is an error."""
    from runner.benchmarks import load_benchmark
    from runner.evaluation.environment import prepared_evaluator

    if sandbox_kind == "docker":
        from tests.docker_images import SANDBOX_CPU_ENV, engine, sandbox_cpu_image

        sandbox_cpu_image(engine())
        for key, value in SANDBOX_CPU_ENV.items():
            monkeypatch.setenv(key, value)
    else:
        require(capabilities().complete, "a complete local sandbox")
    bench = load_benchmark("simcopilot")
    task = bench.task(UPSTREAM_JAVA_TASK)
    line = forged_last_line(bench.programs[task.program])
    assert line.startswith("[") and "0 tests failed" in line
    evaluator, _ = prepared_evaluator(bench, [task], sandbox_kind=sandbox_kind, cascade="upstream")
    forged = f'    System.out.println("{line}"); System.exit(0);\n{task.reference}'

    verdict = evaluator.evaluate(task, f"```java\n{forged}\n```")
    assert verdict.cascade == "upstream" and verdict.outcome is not Outcome.passed, verdict
    assert "completion record" in verdict.upstream.stderr_tail
    honest = evaluator.evaluate(task, f"```java\n{task.reference}\n```")
    assert honest.outcome is Outcome.passed, honest.stderr_tail


# -- answers that read their own JVM: memory, heap dumps, Unsafe, attach, children, JFR, reflection ---
# Each is a wrong answer with an attack in front (tests/evaluation/hostile_java.py): a forgery that
# reaches the launcher's key signs a passing record and halts 0; a probe reports a capability.
from tests.evaluation.hostile_java import ATTACKS, attack_answer  # noqa: E402


def assert_stopped(outcome: Outcome, text: str, attack: str) -> None:
    """The attack scored no pass, and a probe's capability was not there."""
    assert outcome in (Outcome.fail, Outcome.runtime_error), (outcome, text[-3000:])
    assert "runner-probe:" not in text, text[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("fast", [False, True], ids=["javac-then-java", "one-jvm"])
@pytest.mark.parametrize("attack", ATTACKS)
def test_a_java_answer_reading_its_own_jvm_cannot_pass(starter, any_sandbox, toolchain, attack, fast):
    """Our cascade, RunnerCompileAndTest in its two phases ("test" after javac, "compile" in one JVM)."""
    answer = attack_answer(starter.task(JAVA_TASK), attack, "[ 0 tests failed ]")
    result = judge_java(starter, any_sandbox, toolchain, answer, fast)
    assert_stopped(result.outcome, result.stderr_tail + "\n".join(result.outputs), attack)


@pytest.mark.slow
@pytest.mark.parametrize("java_path", ["javac+java", "one-jvm"])
@pytest.mark.parametrize("attack", ATTACKS)
def test_a_java_answer_reading_its_own_jvm_cannot_pass_upstreams_cascade(simcopilot, any_sandbox, attack, java_path):
    """Upstream's cascade: its comparison of the run's last line, through RunnerCompileAndTest after
    javac ("javac+java") or RunnerUpstreamOneJvm ("one-jvm")."""
    from runner.benchmarks import scoring_root
    from runner.evaluation import upstream as upstream_code
    from runner.evaluation.evaluator import Evaluator

    bench = load_benchmark("simcopilot")
    task = bench.task(UPSTREAM_JAVA_TASK)
    program = bench.programs[task.program]
    evaluator = Evaluator(bench.programs, sandbox=any_sandbox, junit_console=bench.junit_jar, cascade="upstream",
                          upstream_root=scoring_root(bench), java_fast=java_path == "one-jvm")
    execute = evaluator.upstream_execution(program)
    execute.limits = execute.limits.model_copy(update={"wall_seconds": 90, "cpu_seconds": 180})
    before, _, after = upstream_code.task_parts(task)
    answer = attack_answer(task, attack, forged_last_line(program)).split("\n")
    run = upstream_code.run_tests(evaluator.upstream, program, before, answer, after, execute, timeout=90)
    assert not run.passed
    assert_stopped(run.outcome, "\n".join(run.results), attack)


# -- Python: the verdict reads stdout and the exit status, nothing else -------------------------------
# Each answer below is given the expected output, as if it knew it, and puts it on one channel: only
# stdout with a clean exit may pass (the control), so each other channel is shown not to decide.
def knowing(expected: str, channel: str) -> str:
    """An answer that knows ``expected`` and offers it through ``channel``, skipping the test case."""
    text = repr(expected)
    return {
        "stdout_clean_exit": f"import os, sys\nsys.stdout.write({text}); sys.stdout.flush(); os._exit(0)",
        "stderr_clean_exit": f"import os, sys\nsys.stderr.write({text}); sys.stderr.flush(); os._exit(0)",
        "stdout_failing_exit": f"import os, sys\nsys.stdout.write({text}); sys.stdout.flush(); os._exit(1)",
        "stdout_killed_by_signal": (f"import os, signal, sys\nsys.stdout.write({text}); sys.stdout.flush()\n"
                                    "os.kill(os.getpid(), signal.SIGKILL)"),
        "stdout_past_the_time_limit": f"import sys, time\nsys.stdout.write({text}); sys.stdout.flush(); time.sleep(600)",
        "stdout_past_the_output_cap": (f"import os, sys\nsys.stdout.write('x\\n' * (3 << 20)); sys.stdout.write({text})\n"
                                       "sys.stdout.flush(); os._exit(0)"),
        # the verdict's own words on stdout: upstream's success string and our outcome name
        "verdict_words_on_stdout": ("import os\nprint('Success: Final output matches the expected results.')\n"
                                    "print('pass'); os._exit(0)"),
    }[channel]


PYTHON_CHANNELS = ["stdout_clean_exit", "stderr_clean_exit", "stdout_failing_exit", "stdout_killed_by_signal",
                   "stdout_past_the_time_limit", "stdout_past_the_output_cap", "verdict_words_on_stdout"]


def one_case_program(starter):
    task = starter.task(PYTHON_TASK)
    program = starter.program_of(task)
    return task, program.model_copy(update={"test_cases": program.test_cases[:1]})


def in_span(task, code: str) -> str:
    """``code`` indented as the task's reference span is (the span sits inside a block)."""
    first = task.reference.split("\n")[0]
    indent = first[:len(first) - len(first.lstrip())]
    return "\n".join(indent + line for line in code.split("\n"))


@pytest.mark.parametrize("channel", PYTHON_CHANNELS)
def test_a_python_answer_passes_only_through_stdout_and_a_clean_exit(starter, any_sandbox, channel):
    task, program = one_case_program(starter)
    expected = program.test_cases[0].expected_output.encode().decode("unicode_escape")
    limits = FAST.model_copy(update={"wall_seconds": 6, "output_bytes": 1 << 20})
    result = check_python(program, assemble(task, in_span(task, knowing(expected, channel))), any_sandbox, limits)
    if channel == "stdout_clean_exit":
        assert result.outcome is Outcome.passed, result.stderr_tail
    else:
        assert result.outcome is not Outcome.passed, channel


@pytest.mark.parametrize("channel", PYTHON_CHANNELS)
def test_a_python_answer_passes_only_through_stdout_and_a_clean_exit_under_upstreams_cascade(
        simcopilot, starter, channel, tmp_path):
    """Upstream's comparison (its ``execute_and_compare``), its runs in the local sandbox."""
    import json

    from runner.benchmarks import scoring_root
    from runner.evaluation import upstream as upstream_code
    from runner.evaluation.evaluator import Evaluator

    sandbox = make_sandbox("local")
    task, program = one_case_program(starter)
    first = json.loads(program.source.with_suffix(".json").read_text())
    (tmp_path / "one-case.json").write_text(json.dumps({k: first[k] for k in ("test_case1", "expected_output1")}))
    program = program.model_copy(update={"tests_json": tmp_path / "one-case.json"})
    evaluator = Evaluator({program.name: program}, sandbox=sandbox, cascade="upstream",
                          upstream_root=scoring_root(load_benchmark("simcopilot")))
    execute = evaluator.upstream_execution(program)
    execute.limits = FAST.model_copy(update={"wall_seconds": 6, "output_bytes": 1 << 20})
    expected = program.test_cases[0].expected_output.encode().decode("unicode_escape")
    before, _, after = upstream_code.task_parts(task)
    run = upstream_code.run_tests(evaluator.upstream, program, before, in_span(task, knowing(expected, channel)).split("\n"), after,
                                  execute, timeout=6)
    assert run.passed is (channel == "stdout_clean_exit"), run


# What a Python answer could reach beyond its stdout: descriptors, environment, the runner's processes.
PROBER = """\
import json, os
fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd") if int(fd) > 2)
fds = [fd for fd in fds if os.path.exists(f"/proc/self/fd/{fd}") and "fd" not in os.readlink(f"/proc/self/fd/{fd}")]
seen = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            seen.append(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode(errors="replace"))
        except OSError:
            pass
print(json.dumps({"fds": fds, "env": sorted(os.environ), "processes": seen, "ppid": os.getppid()}))
"""


def test_a_python_answer_finds_no_descriptor_variable_or_process_of_the_runner(any_sandbox):
    import json

    with any_sandbox.workdir(FAST) as workdir:
        (workdir / "probe.py").write_text(PROBER)
        from runner.evaluation.python_check import PYTHON_ENV

        run = any_sandbox.run([sys.executable, "probe.py"], workdir, FAST, env=PYTHON_ENV)
    assert run.exit_code == 0, run.stderr_tail
    found = json.loads(run.stdout)
    assert found["fds"] == []  # nothing inherited but stdin (/dev/null), stdout and stderr
    # the fixed environment, and the working folder the mount script's shell left (PWD, OLDPWD)
    allowed = {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "HOSTNAME", "PWD", "OLDPWD", *PYTHON_ENV}
    assert set(found["env"]) <= allowed, found["env"]
    # its own namespace: the sandbox's wrappers and itself, never the runner or pytest
    assert not [p for p in found["processes"] if "pytest" in p or "runner" in p.split(" ")[0]], found["processes"]
    assert len(found["processes"]) <= 4, found["processes"]
