"""`runner data fetch` and `runner tasks list` through click's test runner."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from runner.benchmarks import simcopilot_dir
from runner.benchmarks.fetch import URL_ENV
from runner.benchmarks.manifest import MANIFEST_ENV
from runner.cli import main


@pytest.fixture
def pinned(upstream_copy, monkeypatch):
    monkeypatch.setenv(MANIFEST_ENV, str(upstream_copy.manifest))
    return upstream_copy


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_fetch_from_a_directory_then_list_the_tasks(pinned):
    pinned.path("example_code/Python/word_freq/words.csv").unlink()

    fetched = run("data", "fetch", "simcopilot", "--from", str(pinned.root))

    assert fetched.exit_code == 0, fetched.output
    assert fetched.stdout.strip() == (
        f"SimCoPilot 1234567 installed in {simcopilot_dir()}: 17 files verified, 1 missing, 0 modified"
    )
    assert "missing   example_code/Python/word_freq/words.csv" in fetched.stderr
    assert "unavailable: python program word_freq: missing file words.csv" in fetched.stderr

    listed = run("tasks", "list", "--benchmark", "simcopilot")

    assert listed.exit_code == 0, listed.output
    rows = [[cell.strip() for cell in line.strip("│┃ ").split("│")] for line in listed.stdout.splitlines() if "│" in line]
    assert ["python", "infill", "stack_calc", "4", "0"] in rows
    assert ["python", "infill", "word_freq", "0", "1"] in rows
    assert ["python", "infill", "all programs", "4", "1"] in rows
    assert ["java", "completion", "QueueTester", "1", "0"] in rows
    assert ["all", "all", "all programs", "9", "2"] in rows
    assert "simcopilot: 9 of 11 tasks available" in listed.stdout


def test_tasks_list_json_gives_every_task(pinned):
    assert run("data", "fetch", "simcopilot", "--from", str(pinned.root)).exit_code == 0

    listed = run("tasks", "list", "--benchmark", "simcopilot", "--json")

    assert listed.exit_code == 0, listed.output
    tasks = [json.loads(line) for line in listed.stdout.splitlines()]  # one task a line
    assert len(tasks) == 11
    assert tasks[0] == {
        "task_id": "python/infill/stack_calc/4-5",
        "language": "python",
        "mode": "infill",
        "program": "stack_calc",
        "span": [4, 5],
        "categories": ["Short-Range", "Variable"],
        "available": True,
        "reason": None,
    }
    assert [t["task_id"] for t in tasks].count("python/infill/stack_calc/4-5#2") == 1


def test_fetch_downloads_from_the_url_in_the_environment(pinned, http_server, monkeypatch):
    served, base = http_server
    pinned.tarball(served / "SimCoPilot.tar.gz")
    monkeypatch.setenv(URL_ENV, f"{base}/SimCoPilot.tar.gz")

    result = run("data", "fetch", "simcopilot")

    assert result.exit_code == 0, result.output
    assert "18 files verified, 0 missing, 0 modified" in result.stdout
    assert json.loads((simcopilot_dir() / "source.json").read_text())["source"] == f"{base}/SimCoPilot.tar.gz"


def test_fetch_from_a_refused_address_fails_with_one_line(monkeypatch):
    monkeypatch.setenv(URL_ENV, "http://127.0.0.1:9/SimCoPilot.tar.gz")  # the discard port: refused

    result = run("data", "fetch", "simcopilot")

    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: cannot download http://127.0.0.1:9/SimCoPilot.tar.gz (")
    assert "runner data fetch simcopilot --from PATH" in result.stderr


def test_fetch_from_github_fails_offline_with_one_line_naming_from():
    result = run("data", "fetch", "simcopilot")

    if result.exit_code == 0:  # GitHub is reachable here: the real set was installed
        assert "100 files verified, 0 missing, 0 modified" in result.stdout
        return
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "cannot download https://codeload.github.com/mj33rice/SimCoPilot/tar.gz/" in result.stderr
    assert "--from PATH" in result.stderr
    assert "Traceback" not in result.output


def test_fetch_refuses_modified_files_with_the_list(pinned):
    pinned.path("example_code/Python/stack_calc/ops.txt").write_bytes(b"9\n")

    refused = run("data", "fetch", "simcopilot", "--from", str(pinned.root))

    assert refused.exit_code == 2
    assert "modified  example_code/Python/stack_calc/ops.txt (blob " in refused.stderr
    assert "17 files match the manifest, 0 missing, 1 differ" in refused.stderr
    assert refused.stderr.splitlines()[-1].startswith(f"Error: {pinned.root}: 1 file(s) differ")
    assert refused.stdout == ""

    allowed = run("data", "fetch", "simcopilot", "--from", str(pinned.root), "--allow-modified")

    assert allowed.exit_code == 0, allowed.output
    assert "17 files verified, 0 missing, 1 modified" in allowed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tasks", "list", "--benchmark", "humaneval"],
         "Error: unknown benchmark 'humaneval'; known benchmarks: starter, simcopilot"),
        (["tasks", "list", "--benchmark", "simcopilot"], "Error: SimCoPilot is not in "),
        (["data", "fetch", "simcopilot", "--from", "/no/such/copy"], "Error: /no/such/copy: no such file or directory"),
        (["data", "fetch", "humaneval"], "Error: only simcopilot is fetched"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message):
    result = run(*args)

    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_a_malformed_checkpoint_file_in_the_copy_exits_2_naming_it(pinned):
    assert run("data", "fetch", "simcopilot", "--from", str(pinned.root)).exit_code == 0
    (simcopilot_dir() / "example_code/Python/Python_tasks_checkpoints.json").write_text("[{")

    result = run("tasks", "list", "--benchmark", "simcopilot")

    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {simcopilot_dir()}/example_code/Python/Python_tasks_checkpoints.json: "
                                    "malformed JSON at line 1 column 3")


def test_tasks_list_defaults_to_the_starter_set():
    result = run("tasks", "list")

    assert result.exit_code == 0, result.output
    assert "starter: 121 of 121 tasks available" in result.stdout
    assert "│ all      │ all        │ all programs       │       121 │           0 │" in result.stdout
