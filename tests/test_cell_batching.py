"""A cell's record says whether its server batched: ``cell.json`` of an ExLlamaV2 cell whose
TabbyAPI fell back to one sequence at a time. TabbyAPI needs a CUDA GPU (ExLlamaV2 has no CPU
build), so a stand-in answers its HTTP API here, as TabbyAPI at the pinned commit answers it."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runner.backends import get_backend
from runner.backends.base import RunningServer
from runner.matrix import load_matrix
from runner.running.cell import CellContext, CellRun
from runner.runtimes import get_runtime
from runner.runtimes.base import ModelFiles
from runner.store import CellResult, RunStore


def tabbyapi_standin(max_batch_size: int) -> ThreadingHTTPServer:
    """``GET /v1/model`` as TabbyAPI's ModelCard (max_batch_size is 1 in its compatibility mode); 404 else."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path == "/v1/model":
                body = json.dumps({"id": "tiny-exl2", "object": "model", "owned_by": "tabbyAPI",
                                   "parameters": {"max_seq_len": 4096, "max_batch_size": max_batch_size}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
            else:
                body = b'{"detail": "Not Found"}'
                self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Sink:
    log_path = Path("/dev/null")

    def write(self, sample): ...
    def judge(self, task, sample): ...
    def update(self, result): ...
    def done_keys(self): return set()
    def activity(self, record): ...


@pytest.mark.parametrize(("served", "batched", "label"), [(1, False, "unbatched (no flash-attn)"), (8, True, None)])
def test_cell_json_says_whether_the_exllama_server_batched_tabbyapi_standin(tmp_path, served, batched, label):
    folder = tmp_path / "tiny-exl2"
    folder.mkdir()
    matrix_path = tmp_path / "m.toml"
    matrix_path.write_text(f'''name = "batching"
benchmark = "starter"
backend = "local"
[models.tiny]
name = "Tiny"
family = "llama"
[models.tiny.quantizations."exl2-4.0"]
kind = "path"
path = "{folder}"
[[cells]]
model = "tiny"
runtime = "exllama"
quantization = "exl2-4.0"
''', encoding="utf-8")
    matrix = load_matrix(matrix_path)
    (cell,) = matrix.cells
    standin = tabbyapi_standin(served)
    try:
        result = CellResult(cell=cell, status="running")
        server = RunningServer(base_url=f"http://127.0.0.1:{standin.server_port}", load_seconds=0.0, ident="standin")
        run = CellRun(CellContext(matrix=matrix, tasks=[], latency_tasks=[]), cell, get_runtime("exllama"),
                      get_backend("local"), server, ModelFiles(path=folder, served_name="tiny"), Sink(), result)
        asyncio.run(run.run([], [], []))
    finally:
        standin.shutdown()
    store = RunStore(tmp_path / "runs" / "batching")
    store.write_cell(result)
    record = json.loads((store.cell_dir(cell) / "cell.json").read_text())
    assert (record["batched"], record["batching"]) == (batched, label)
