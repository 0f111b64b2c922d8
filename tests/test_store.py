"""The run directory survives crashes, full disks, bad bytes and a second runner."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.errors import UserError
from runner.records import Cell, Sample
from runner.store import Manifest, RunStore

CELL = Cell(model="m", runtime="llamacpp", quantization="q4", label="baseline")


def sample(task: str, text: str = "x = 1") -> Sample:
    return Sample(task_id=task, cell_id=CELL.id, prompt_style="instruct", prompt_sha256="0" * 64, raw_text=text)


def test_a_crash_mid_write_inside_a_utf8_character_is_moved_aside_and_the_resume_glues_nothing(tmp_path, caplog):
    store = RunStore(tmp_path / "run")  # notices go to the log unless the run passes its events
    for task in ("python/infill/a/1-2", "python/infill/a/3-4"):
        store.append_sample(CELL, sample(task, "naïve = '日本'"))
    # the run dies while writing the third sample: the bytes end inside a 3-byte UTF-8 character
    line = (sample("python/infill/a/5-6", "s = '日本語'").model_dump_json() + "\n").encode()
    cut = line.index("語".encode()) + 1
    with open(store.samples_path(CELL), "ab") as fh:
        fh.write(line[:cut])

    # the resumed run reads what is there: two done, the torn one is asked again
    assert {t for _, t in store.done_keys(CELL)} == {"python/infill/a/1-2", "python/infill/a/3-4"}
    store.append_sample(CELL, sample("python/infill/a/5-6", "s = '日本語'"))
    store.append_sample(CELL, sample("python/infill/a/7-8"))

    raw = store.samples_path(CELL).read_bytes()
    records = [json.loads(part.decode("utf-8")) for part in raw.splitlines()]  # every line parses on its own
    ids = [r["task_id"] for r in records]
    assert ids == ["python/infill/a/1-2", "python/infill/a/3-4", "python/infill/a/5-6", "python/infill/a/7-8"]
    assert records[2]["raw_text"] == "s = '日本語'"
    torn = store.samples_path(CELL).with_name("samples.jsonl.torn")
    assert torn.read_bytes() == line[:cut] + b"\n"
    notices = [r.getMessage() for r in caplog.records if "torn" in r.getMessage()]
    assert len(notices) == 1 and "samples.jsonl.torn" in notices[0] and "\n" not in notices[0]


def test_bad_bytes_in_the_middle_of_samples_are_one_error_naming_file_and_line(tmp_path):
    store = RunStore(tmp_path / "run")
    store.append_sample(CELL, sample("t/1"))
    with open(store.samples_path(CELL), "ab") as fh:
        fh.write(b'{"task_id": "t/\xff\xfe"}\n')
    store.append_sample(CELL, sample("t/3"))
    with pytest.raises(UserError) as info:
        store.samples(CELL)
    message = str(info.value)
    assert f"{store.samples_path(CELL)}:2:" in message and "not UTF-8" in message and "\n" not in message
    assert "--fresh" not in message


def test_a_corrupt_manifest_is_one_line_that_never_advises_deleting_samples_silently(tmp_path):
    store = RunStore(tmp_path / "run")
    store.write_manifest(Manifest(name="run"))
    store.manifest_path.write_text('{"name": "run", "cells": 7}')
    with pytest.raises(UserError) as info:
        store.read_manifest()
    message = str(info.value)
    assert "\n" not in message and str(store.manifest_path) in message and "cells" in message
    assert "--fresh" not in message or "delete" in message.split("--fresh", 1)[1][:40]
    store.manifest_path.write_bytes(b'{"name": "r\xc3')  # torn inside a character
    with pytest.raises(UserError, match="not UTF-8"):
        store.read_manifest()


def test_report_of_a_run_with_a_corrupt_manifest_exits_2_with_one_line(tmp_path):
    from click.testing import CliRunner

    from runner.cli import main

    store = RunStore(tmp_path / "run")
    store.write_manifest(Manifest(name="run"))
    store.manifest_path.write_text("{not json")
    result = CliRunner().invoke(main, ["report", str(store.root), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    (line,) = [l for l in result.output.splitlines() if l.strip()]
    assert "manifest.json" in line and "samples in cells/ are kept" in line


def test_a_full_disk_mid_append_leaves_a_readable_store_and_the_next_append_repairs_it(tmp_path):
    """RLIMIT_FSIZE in a child stands in for a full disk: the write stops part-way."""
    store = RunStore(tmp_path / "run")
    store.append_sample(CELL, sample("t/1"))
    size = store.samples_path(CELL).stat().st_size
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({size + 40}, {size + 40}))
        from runner.store import RunStore
        from tests.test_store import CELL, sample
        try:
            RunStore(sys.argv[1]).append_sample(CELL, sample("t/2", "y" * 4000))
        except OSError as exc:
            print("OSError", exc.errno)
    """)
    done = subprocess.run([sys.executable, "-c", script, str(store.root)], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1], timeout=60)
    assert "OSError 27" in done.stdout, done.stderr  # EFBIG: the disk is "full" mid-line
    assert [s.task_id for s in store.samples(CELL)] == ["t/1"]  # the torn tail is not a sample
    store.append_sample(CELL, sample("t/2"))
    assert [s.task_id for s in store.samples(CELL)] == ["t/1", "t/2"]


def test_a_second_runner_on_the_same_run_is_refused_with_the_holders_pid_and_host(tmp_path):
    from runner.store import LOCK_NAME, RunLock

    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from runner.store import RunLock
        RunLock(sys.argv[1]).acquire()
        print("held", flush=True)
        time.sleep(60)
    """), str(tmp_path / "run")], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError) as info:
            RunLock(tmp_path / "run").acquire()
        message = str(info.value)
        assert f"pid {holder.pid}" in message and socket.gethostname() in message and "\n" not in message
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock file stays, and is taken over
    assert json.loads((tmp_path / "run" / LOCK_NAME).read_text())["pid"] == holder.pid
    with RunLock(tmp_path / "run"):
        assert json.loads((tmp_path / "run" / LOCK_NAME).read_text())["pid"] == os.getpid()


SMALL_MATRIX = """
name = "small"
benchmark = "starter"
[tasks]
languages = ["python"]
limit = 1
[models.m]
name = "M"
[models.m.quantizations.q4_k_m]
kind = "path"
path = "{model}"
[[cells]]
model = "m"
runtime = "llamacpp"
quantization = "q4_k_m"
"""


def test_a_second_reproduce_on_the_same_run_exits_2_naming_the_holder(tmp_path):
    """Two ``runner reproduce`` with the same name: the second stops before it starts any server."""
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")  # never loaded: the lock refuses before any server starts
    matrix = tmp_path / "small.toml"
    matrix.write_text(SMALL_MATRIX.format(model=model))
    runs = tmp_path / "runs"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom runner.store import RunLock\n"
                               "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)",
                               str(runs / "small")], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    try:
        assert holder.stdout.readline().strip() == "held"
        done = subprocess.run([sys.executable, "-m", "runner.cli", "reproduce", str(matrix), "--runs-dir", str(runs)],
                              capture_output=True, text=True, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2, done.stderr
    lines = [l for l in done.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and f"pid {holder.pid}" in lines[0] and socket.gethostname() in lines[0]
    assert not (runs / "small" / "manifest.json").exists()


def test_reproduce_on_a_full_disk_exits_2_with_one_line(tmp_path):
    """RLIMIT_FSIZE (with SIGXFSZ ignored, so writes fail with EFBIG) stands in for a full disk."""
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    matrix = tmp_path / "small.toml"
    matrix.write_text(SMALL_MATRIX.format(model=model))

    def small_disk() -> None:
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))

    done = subprocess.run([sys.executable, "-m", "runner.cli", "reproduce", str(matrix), "--runs-dir",
                           str(tmp_path / "runs")], capture_output=True, text=True, timeout=300, preexec_fn=small_disk)
    assert done.returncode == 2, done.stderr
    (line,) = [l for l in done.stderr.splitlines() if l.strip()]
    assert "disk full writing" in line and "manifest.json" in line and "Traceback" not in done.stderr



def test_fresh_deletes_the_runs_samples_but_not_the_lock_it_holds(tmp_path):
    from runner.matrix import load_matrix
    from runner.running.run import Reproduction, RunOptions
    from runner.store import LOCK_NAME, RunLock

    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    path = tmp_path / "small.toml"
    path.write_text(SMALL_MATRIX.format(model=model))
    runs = tmp_path / "runs"
    first = Reproduction(load_matrix(path), RunOptions(runs_dir=runs))
    first._open_store()
    first.store.append_sample(CELL, sample("t/1"))
    again = Reproduction(load_matrix(path), RunOptions(runs_dir=runs, fresh=True))
    with RunLock(again.store.root):
        again._open_store()
        assert not first.store.samples_path(CELL).exists() and again.store.exists()
        assert (again.store.root / LOCK_NAME).is_file()
        with pytest.raises(UserError, match="in use by another runner"):  # still held through --fresh
            RunLock(again.store.root).acquire()


@pytest.fixture
def umask():
    """Set the process umask for one test, and put the old one back."""
    saved = os.umask(0o022)
    yield os.umask
    os.umask(saved)


def modes_under(root: Path) -> dict[str, int]:
    """Every path from ``root`` down (``root`` itself as "."), with its permission bits."""
    found = {".": root.stat().st_mode & 0o777}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = path.stat().st_mode & 0o777
    return found


def fill_run(root: Path) -> None:
    """A run directory as a run leaves it: manifest, cell record, samples (one torn), server log, lock."""
    from runner.store import CellResult, RunLock

    store = RunStore(root)
    with RunLock(root):
        store.write_manifest(Manifest(name="run", cells=[CELL]))
        store.write_cell(CellResult(cell=CELL))
        store.append_sample(CELL, sample("t/1"))
        with open(store.samples_path(CELL), "ab") as fh:
            fh.write(b'{"task_id": "t/')  # a crash mid-line: the next append moves it to .torn
        store.append_sample(CELL, sample("t/2"))
        with open(store.server_log(CELL), "ab") as fh:  # as the backends write it
            fh.write(b"llama-server started\n")


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o000])
def test_a_runs_folders_are_0700_and_its_files_0600_whatever_the_umask_allows(tmp_path, umask, mask):
    umask(mask)
    fill_run(tmp_path / "runs" / "run")
    modes = modes_under(tmp_path / "runs")
    assert {"run/manifest.json", "run/run.lock", "run/cells/m__llamacpp__q4__baseline/samples.jsonl.torn",
            "run/cells/m__llamacpp__q4__baseline/server.log"} <= set(modes)
    wrong = {path: oct(mode) for path, mode in modes.items()
             if mode != (0o700 if (tmp_path / "runs" / path).is_dir() else 0o600)}
    assert not wrong



@pytest.mark.parametrize("name", ["../../x", "/tmp/runner-escape", "a\nb"])
def test_reproduce_refuses_a_run_name_outside_the_runs_folder_in_one_line(tmp_path, name):
    from click.testing import CliRunner

    from runner.cli import main

    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")  # never loaded: the name is refused first
    matrix = tmp_path / "small.toml"
    matrix.write_text(SMALL_MATRIX.format(model=model))
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    result = CliRunner().invoke(main, ["reproduce", str(matrix), "--runs-dir", str(work / "runs"), "--name", name])
    assert result.exit_code == 2, result.output
    (line,) = [l for l in result.output.splitlines() if l.strip()]
    assert f"--name {name!r}: a run name" in line and "'demo-2'" in line
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "model.gguf", "small.toml"]
    assert not Path("/tmp/runner-escape").exists()
