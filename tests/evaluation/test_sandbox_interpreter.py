"""The local sandbox keeps the interpreter it runs visible, read-only, wherever it lives; a sandbox
that cannot start a program is an environment failure, never a verdict on an answer.

Each case runs real programs as the sandbox's private uid: a venv made under /tmp (hidden before by
the sandbox's private /tmp), a venv under a 0700 folder, and an answer that fakes the failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from runner.errors import EnvironmentFailure, UserError
from runner.evaluation import Evaluator
from runner.evaluation.sandbox import Limits, LocalSandbox, kept_paths
from runner.evaluation.selfcheck import self_check, self_check_problem
from runner.records import Language
from tests.conftest import require
from tests.evaluation.conftest import FAST

SYSTEM_PYTHON = "/usr/bin/python3"


def make_venv(parent: Path) -> Path:
    """A venv under ``parent`` with a module of its own in site-packages; returns its python."""
    require(Path(SYSTEM_PYTHON).is_file(), SYSTEM_PYTHON)
    venv = parent / ".venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python3*/site-packages"))
    (site / "venvmod.py").write_text("VALUE = 7\n")
    return str(venv / "bin" / "python3")


def run(sandbox: LocalSandbox, python: str, code: str):
    with sandbox.workdir() as work:
        (work / "probe.py").write_text(code)
        return sandbox.run([python, "probe.py"], work, FAST)


@pytest.fixture
def tmp_venv(sandbox):
    parent = Path(tempfile.mkdtemp(prefix="runner-venv-", dir="/tmp"))
    try:
        yield make_venv(parent)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def private_venv(sandbox):
    """A venv inside a 0700 folder (a home, not under /tmp), beside a secret file."""
    home = Path(tempfile.mkdtemp(prefix="runner-home-", dir=Path.home()))
    os.chmod(home, 0o700)
    (home / "secret.txt").write_text("s3cret")
    try:
        yield make_venv(home / "project"), home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_venv_under_tmp_runs_its_programs_with_its_own_packages(tmp_venv):
    sandbox = LocalSandbox(interpreters=(tmp_venv,))
    result = run(sandbox, tmp_venv, "import os, sys, venvmod\nprint(sys.prefix, venvmod.VALUE, os.getuid())\n")
    assert result.exit_code == 0, result.stderr_tail
    prefix, value, uid = result.stdout.split()
    assert prefix == str(Path(tmp_venv).parent.parent) and value == "7" and int(uid) != 0
    # read-only, and the rest of /tmp is still the sandbox's own
    written = run(sandbox, tmp_venv, "import sys, os\n"
                                     "try:\n    open(os.path.join(sys.prefix, 'x'), 'w')\nexcept OSError as e:\n"
                                     "    print(type(e).__name__)\nprint(sorted(os.listdir('/tmp')))\n")
    assert written.stdout.split("\n")[0] in ("OSError", "PermissionError") and written.exit_code == 0
    assert Path(tmp_venv).parts[2] in written.stdout  # only the venv's own folder chain was recreated
    assert not (Path(tmp_venv).parent.parent / "x").exists()


def test_a_venv_under_a_0700_folder_runs_and_its_neighbours_stay_hidden(private_venv):
    python, home = private_venv
    sandbox = LocalSandbox(interpreters=(python,))
    keep = kept_paths((python,))
    real = Path(os.path.realpath(home))
    # the venv alone is bound into the fresh root: the 0700 folder above it is never there
    assert any(real in k.parents for k in keep) and not any(k == real or k in real.parents for k in keep)
    result = run(sandbox, python, "import venvmod, os\nprint(venvmod.VALUE)\n"
                                  f"print(os.path.exists({str(home / 'secret.txt')!r}))\n")
    assert result.exit_code == 0, result.stderr_tail
    assert result.stdout.split() == ["7", "False"]


def test_a_venv_reached_through_a_symlink_in_a_0700_folder_runs(private_venv, tmp_venv):
    # a checkout in a 0700 home whose .venv links to a venv elsewhere (here under /tmp)
    _, home = private_venv
    checkout = home / "checkout"
    checkout.mkdir()
    (checkout / ".venv").symlink_to(Path(tmp_venv).parent.parent)
    python = str(checkout / ".venv" / "bin" / "python3")
    sandbox = LocalSandbox(interpreters=(python,))

    result = run(sandbox, python, "import venvmod, os\nprint(venvmod.VALUE)\n"
                                  f"print(os.path.exists({str(home / 'secret.txt')!r}))\n")

    assert result.exit_code == 0, result.stderr_tail
    assert result.stdout.split() == ["7", "False"]


def test_an_interpreter_the_sandbox_cannot_start_is_an_environment_failure(world_dir, sandbox):
    with pytest.raises(EnvironmentFailure, match="no-such-python"):
        run(sandbox, str(world_dir / "no-such-python"), "print(1)\n")


def test_an_answer_that_fakes_the_sandboxs_failure_is_judged_as_itself(sandbox):
    fake = "import sys\nsys.stderr.write('setpriv: failed to execute python3: No such file or directory\\n')\nsys.exit(127)\n"
    result = run(sandbox, sys.executable, fake)
    assert result.exit_code == 127 and "failed to execute" in result.stderr_tail  # no EnvironmentFailure


def test_the_self_check_passes_here_for_both_languages(sandbox):
    evaluator = Evaluator({}, limits=Limits(wall_seconds=30, cpu_seconds=60))
    self_check(evaluator, {Language.python, Language.java})


def test_the_self_check_names_an_interpreter_the_sandbox_cannot_run_in_one_line(sandbox, world_dir):
    evaluator = Evaluator({}, limits=FAST, python=str(world_dir / "no-such-python"))
    problem = self_check_problem(evaluator, Language.python)
    assert problem is not None and "\n" not in problem
    assert "no-such-python" in problem and "RUNNER_EVAL_PYTHON" in problem
    with pytest.raises(UserError):
        self_check(evaluator, {Language.python})


def test_a_runner_installed_in_a_venv_under_tmp_scores_the_starter_references_as_pass(sandbox, tmp_path):
    """A checkout's venv under /tmp (the issue: every answer was a runtime_error there, exit 0)."""
    import json
    import site

    parent = Path(tempfile.mkdtemp(prefix="runner-clone-", dir="/tmp"))
    try:
        venv = parent / ".venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        # this checkout's packages, seen from the new venv (as an install into it would place them)
        site_dir = next(venv.glob("lib/python3*/site-packages"))
        (site_dir / "runner-deps.pth").write_text("\n".join(site.getsitepackages() + [str(Path(__file__).parents[2])]) + "\n")
        from runner.benchmarks import load_benchmark

        tasks = [t for t in load_benchmark("starter").available() if t.language is Language.python][::9]
        answers = tmp_path / "answers.jsonl"
        answers.write_text("".join(json.dumps({"task_id": t.id, "text": t.reference}) + "\n" for t in tasks))
        env = {k: v for k, v in os.environ.items() if k != "RUNNER_EVAL_PYTHON"}
        done = subprocess.run([str(venv / "bin" / "python"), "-m", "runner.cli", "score", str(answers), "--benchmark",
                               "starter", "--cascade", "runner", "--sandbox", "local", "--json"],
                              capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        records = [json.loads(line) for line in done.stdout.splitlines()]
        assert len(records) == len(tasks) and {r["outcome"] for r in records} == {"pass"}
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_score_stops_in_one_line_when_the_sandbox_cannot_start_the_interpreter(sandbox, tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from runner.benchmarks import load_benchmark
    from runner.cli import main

    task = next(t for t in load_benchmark("starter").available() if t.language is Language.python)
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"task_id": task.id, "text": task.reference}) + "\n")
    monkeypatch.setenv("RUNNER_EVAL_PYTHON", str(tmp_path / "no-such-python"))
    result = CliRunner().invoke(main, ["score", str(answers), "--benchmark", "starter", "--sandbox", "local"])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "sandbox self-check failed" in line and "no-such-python" in line and "RUNNER_EVAL_PYTHON" in line
