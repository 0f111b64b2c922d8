"""``runner reproduce --dry-run``: each cell's source, exact launch and first request, checked, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from runner.cli import main
from runner.matrix import load_matrix
from runner.paths import matrices_dir
from runner.runtimes import get_runtime

SMOKE = matrices_dir() / "gemma-smoke.toml"


def _lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_dry_run_json_prints_each_cells_launch_and_first_request_and_writes_nothing(tmp_path, monkeypatch,
                                                                                      isolated_home):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(isolated_home) for p in isolated_home.rglob("*"))
    result = CliRunner().invoke(main, ["reproduce", str(SMOKE), "--dry-run", "--json", "--backend", "local"])
    assert result.exit_code in (0, 1), result.output
    cells = _lines(result.stdout)
    matrix = load_matrix(SMOKE)
    assert [c["cell"] for c in cells] == [c.id for c in matrix.cells]
    for line in cells:
        assert {"cell", "runnable", "reason", "source", "argv", "request", "checks"} <= set(line)
        cell = next(c for c in matrix.cells if c.id == line["cell"])
        # the argv is the runtime's own, with the port the backend picks left as a placeholder
        assert line["argv"][0].endswith(("llama-server", "vllm-cpu"))
        assert "{port}" in line["argv"]
        if cell.techniques.get("spec") == "ngram":
            assert "--spec-type" in line["argv"]
        if cell.techniques.get("prefix_cache") == "off" and cell.runtime == "llamacpp":
            assert "--no-cache-prompt" in line["argv"]
        # the first request carries every sampling parameter, as the run sends it
        body = line["request"]
        assert body["model"] == cell.model and body["stream"] is True
        assert body["temperature"] == matrix.settings.temperature
        assert body["max_tokens"] == matrix.settings.max_tokens and body["seed"] == matrix.settings.seed
        assert line["source"]["describe"] == matrix.source(cell).describe()
        assert {c["name"] for c in line["checks"]} >= {"plan", "launch", "request"}
    # nothing written: no run folder, nothing new in the runner's home
    assert not (tmp_path / "runs").exists()
    assert sorted(p.relative_to(isolated_home) for p in isolated_home.rglob("*")) == before


def test_dry_run_argv_is_what_the_runtime_builds_for_the_planned_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["reproduce", str(SMOKE), "--dry-run", "--json", "--backend", "local"])
    matrix = load_matrix(SMOKE)
    from runner.planning.dryrun import planned_files

    for line in _lines(result.stdout):
        cell = next(c for c in matrix.cells if c.id == line["cell"])
        spec = get_runtime(cell.runtime).server_spec(cell, planned_files(matrix, cell, None),
                                                     threads=matrix.settings.threads, gpus=0)
        assert line["argv"] == spec.bind("127.0.0.1", "{port}").argv


def test_dry_run_on_docker_shows_the_image_the_mounts_and_the_container_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["reproduce", str(SMOKE), "--dry-run", "--json", "--backend", "docker"])
    assert result.exit_code in (0, 1), result.output
    from runner.infra.compose import load_compose

    compose = load_compose()
    for line in _lines(result.stdout):
        launch = line["launch"]
        runtime = line["cell"].split("/")[1]
        service = compose.service({"llamacpp": "llamacpp", "vllm": "vllm"}[runtime])
        assert launch["backend"] == "docker" and launch["image"] == service.image
        # model files are mounted read-only under /models and the arguments name them there
        assert launch["mounts"] and all(inside.startswith("/models/") for inside in launch["mounts"].values())
        assert not any(str(Path.home()) in arg for arg in launch["argv"] if arg.startswith("/"))
        assert launch["env"]["PORT"] == "{port}"


def test_dry_run_text_names_every_cell_and_says_nothing_was_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["reproduce", str(SMOKE), "--dry-run", "--backend", "local"])
    matrix = load_matrix(SMOKE)
    for cell in matrix.cells:
        assert f"== {cell.id}: " in result.stdout
    assert "first request: POST /v1/" in result.stdout
    assert "nothing was written" in result.stdout


def test_json_without_dry_run_is_refused_in_one_line():
    result = CliRunner().invoke(main, ["reproduce", str(SMOKE), "--json"])
    assert result.exit_code == 2
    assert "--json goes with --dry-run" in result.output and "Traceback" not in result.output


HUB_MATRIX = """
name = "hubdry"
backend = "local"
[models.tiny]
name = "Tiny"
[models.tiny.quantizations.q8_0]
kind = "hf"
repo = "acme/tiny-GGUF"
revision = "0123456789abcdef0123456789abcdef01234567"
filename = "tiny-q8_0.gguf"
[[cells]]
model = "tiny"
runtime = "llamacpp"
quantization = "q8_0"
"""


def test_a_hub_source_without_a_lock_is_not_checked_as_in_the_plan_and_counts_as_runnable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    matrix = tmp_path / "hubdry.toml"
    matrix.write_text(HUB_MATRIX, encoding="utf-8")
    result = CliRunner().invoke(main, ["reproduce", str(matrix), "--dry-run", "--json"])
    (line,) = _lines(result.stdout)
    # the plan's rule (docs/reproducing.md): not checked is said, never "ok", and the run checks it on download
    locked = next(c for c in line["checks"] if c["name"] == "locked")
    assert locked["checked"] is False and locked["detail"].startswith("not checked: ")
    assert "runner models lock" in locked["detail"]
    assert line["runnable"] is True and result.exit_code == 0, result.output
    text = CliRunner().invoke(main, ["reproduce", str(matrix), "--dry-run"]).output
    assert "  check locked: not checked: " in text and "tiny/llamacpp/q8_0/baseline  not checked " in text
    # with a lock beside the matrix, the source shows its commit and files, and the check passes
    commit = "0123456789abcdef0123456789abcdef01234567"
    (tmp_path / "hubdry.lock").write_text(f"""version = 1
matrix = "hubdry.toml"
[[source]]
model = "tiny"
quantization = "q8_0"
repo = "acme/tiny-GGUF"
revision = "{commit}"
commit = "{commit}"
filename = "tiny-q8_0.gguf"
gated = false
checked = "2026-12-07"
checked_on = "hub-pages"
evidence = "https://huggingface.co/acme/tiny-GGUF/tree/{commit}"
[[source.files]]
path = "tiny-q8_0.gguf"
size = 3000
sha256 = "{'a' * 64}"
""", encoding="utf-8")
    result = CliRunner().invoke(main, ["reproduce", str(matrix), "--dry-run", "--json"])
    (line,) = _lines(result.stdout)
    assert line["source"]["commit"] == commit
    assert line["source"]["files"] == [{"path": "tiny-q8_0.gguf", "size": 3000, "sha256": "a" * 64}]
    assert next(c for c in line["checks"] if c["name"] == "locked")["ok"]
    # the launch names the file where preparation puts it: the folder of the locked commit
    assert any(arg.endswith(f"/acme--tiny-GGUF/{commit}/tiny-q8_0.gguf") for arg in line["argv"])
