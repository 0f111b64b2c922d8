"""The GPU rehearsal's parts that need no GPU (issue 19): its pins, the converter's options read from
exllamav2's own source, the bundle's requirements resolving on PyPI, the matrix and the configs.

TabbyAPI's source is not on PyPI, so its config model is checked by the rehearsal's preflight
(``scripts/gpu-rehearsal.sh --preflight``; its output here: bench/results/gpu-rehearsal-preflight.txt).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from gpu_rehearsal import bundle, check_run, make_model, pins, preflight  # noqa: E402
from gpu_rehearsal.matrix import matrix_toml  # noqa: E402


def test_pins_are_the_images():
    assert pins.EXLLAMAV2_VERSION == "0.3.2"
    assert len(pins.TABBYAPI_COMMIT) == 40 and int(pins.TABBYAPI_COMMIT, 16) >= 0
    assert "pydantic==2.11.0" in pins.TABBYAPI_REQUIREMENTS
    names = [r.split(">")[0].split("=")[0] for r in pins.tabby_env_requirements() + pins.runner_requirements()]
    assert not [n for n in names if pins.EXCLUDED.match(n)]  # never torch, whose CUDA wheels are GiBs
    assert pins.EXCLUDED.match("nvidia-cublas-cu12") and not pins.EXCLUDED.match("nvidia-ml-py")


@pytest.fixture(scope="module")
def exllamav2_wheel(tmp_path_factory) -> Path:
    """exllamav2 at the pinned version from PyPI (1.5 MB: its one file there, sources included)."""
    out = tmp_path_factory.mktemp("exllamav2")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(out),
                    f"exllamav2=={pins.EXLLAMAV2_VERSION}"], check=True, timeout=120)
    (wheel,) = out.glob("exllamav2-*.whl")
    return wheel


def test_converter_takes_every_option_the_rehearsal_passes(exllamav2_wheel):
    text, where = preflight.converter_source(exllamav2_wheel)
    options = preflight.argparse_options(text)
    assert {"-i", "-o", "-b", "-hb", "-cf", "-om", "-m"} <= set(options) and options["-b"] == "float"
    assert preflight.check_converter_argv(options, preflight.rehearsal_converter_argvs()) == []
    assert set(pins.converter_flags()) <= set(options)


def test_converter_check_fails_on_a_wrong_option(exllamav2_wheel):
    options = preflight.argparse_options(preflight.converter_source(exllamav2_wheel)[0])
    argv = ["-m", "exllamav2.conversion.convert_exl2", "-i", "/m", "--bits-per-weight", "4", "-hb", "six", "-nr", "x"]
    problems = preflight.check_converter_argv(options, [argv])
    assert "the converter has no option --bits-per-weight" in problems
    assert "-hb takes int, the rehearsal passes 'six'" in problems
    assert "-nr is a flag, the rehearsal passes it a value 'x'" in problems


def test_exllamav2_wheel_carries_its_extension_sources(exllamav2_wheel):
    # the host builds the extension from these with torch's cpp_extension (no prebuilt wheel fits torch 2.11)
    names = zipfile.ZipFile(exllamav2_wheel).namelist()
    assert "exllamav2/ext.py" in names and any(n.endswith(".cu") for n in names)
    assert "exllamav2/conversion/standard_cal_data/code.utf8" in names  # make_model's tokenizer corpus


@pytest.mark.parametrize("env", ["tabby", "runner"])
def test_bundle_requirements_resolve_on_pypi_without_torch(env):
    installs = bundle.resolve(bundle.environments()[env], pins.DEFAULT_PYTHON)
    names = {i["metadata"]["name"].lower() for i in installs}
    assert bundle.excluded(installs) == []
    assert ("pydantic" in names and "uvicorn" in names) if env == "tabby" else ("scipy" in names)
    if env == "tabby":
        assert next(i for i in installs if i["metadata"]["name"].lower() == "pydantic")["metadata"]["version"] == "2.11.0"


def test_resolve_fails_in_one_line():
    with pytest.raises(bundle.BundleError, match="cannot resolve"):
        bundle.resolve(["pydantic==0.0.0.999"], pins.DEFAULT_PYTHON)


def test_split_keeps_every_batch_under_the_limit():
    files = {"a.whl": 40, "b.whl": 30, "c.whl": 25, "d.whl": 5, "e.whl": 1}
    batches = bundle.split(files, 60)
    assert sorted(n for b in batches for n in b) == sorted(files)
    assert all(sum(files[n] for n in b) <= 60 for b in batches) and len(batches) == 2
    with pytest.raises(bundle.BundleError, match="over the"):
        bundle.split({"big.whl": 61}, 60)
    assert bundle.dist_name("nvidia_cublas_cu12-12.8.4.1-py3-none-manylinux_2_27_x86_64.whl") == "nvidia-cublas-cu12"


def test_the_model_is_small_and_shaped_for_exl2():
    dims = make_model.DIMS
    assert make_model.parameters() * 2 < make_model.MAX_MB * 1e6 / 4  # float16, far under the bound
    assert all(dims[k] % 128 == 0 for k in ("vocab_size", "hidden_size", "intermediate_size"))
    assert dims["hidden_size"] // dims["num_attention_heads"] == 64
    from runner.serving.convert import CHATML_TEMPLATE

    assert make_model.chat_template() == CHATML_TEMPLATE


def test_the_matrix_loads_with_both_bit_widths_and_every_phase(tmp_path):
    from runner.matrix import load_matrix
    from runner.runtimes import get_runtime

    folders = {b: tmp_path / f"exl2-{b}" for b in pins.BITS}
    path = tmp_path / "m.toml"
    path.write_text(matrix_toml(folders, python_only=True), encoding="utf-8")
    matrix = load_matrix(path)
    assert sorted({c.quantization for c in matrix.cells}) == ["exl2-4.0", "exl2-6.0"]
    assert {c.runtime for c in matrix.cells} == {"exllama"} and len(matrix.cells) == 4
    for cell in matrix.cells:
        get_runtime("exllama").validate(cell)
    s = matrix.settings
    assert s.latency_tasks and s.sweep_requests and s.repeat_tasks and s.repeat_cells == "all"


def test_configs_for_every_switch_are_written(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNNER_TABBYAPI_DIR", str(tmp_path / "tabbyAPI"))
    monkeypatch.setenv("RUNNER_CACHE", str(tmp_path / "cache"))  # write_configs sets it; restored after
    entries = preflight.write_configs(tmp_path)
    assert len(entries) == 10
    for entry in entries:
        assert entry["argv"][:2] == ["python3", str(tmp_path / "tabbyAPI" / "main.py")]
        ((path, text),) = entry["files"].items()
        assert Path(path).is_file() and "{port}" not in text


def test_rehearsal_script_says_a_usage_error_in_one_line(tmp_path):
    script = ROOT / "scripts" / "gpu-rehearsal.sh"
    for args, expected in (([], "usage: scripts/gpu-rehearsal.sh"), ([str(tmp_path / "none")], "no bundle folder"),
                           ([str(tmp_path)], "has no batch-*/manifest.json")):
        done = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr


def test_a_file_over_a_batch_travels_in_parts_and_joins_whole(tmp_path):
    # a flash-attn wheel (~250 MB) is over the 60 MiB a batch carries: cut, carried, joined, checked
    wheel = tmp_path / "flash_attn-2.8.3-cp312-cp312-linux_x86_64.whl"
    data = bytes(range(256)) * 41  # 10,496 bytes
    wheel.write_bytes(data)
    parts = bundle.cut(wheel, 4000)
    assert [p.name for p in parts] == [f"{wheel.name}.part-0{i}" for i in (1, 2, 3)] and not wheel.exists()
    assert all(p.stat().st_size <= 4000 for p in parts)
    carried = tmp_path / "bundle"
    for i, part in enumerate(parts, start=1):  # each part in its own batch, as split() may place them
        (carried / f"batch-{i}").mkdir(parents=True)
        part.rename(carried / f"batch-{i}" / part.name)
    import hashlib
    import json

    manifest = {"parts": {wheel.name: {"sha256": hashlib.sha256(data).hexdigest(), "parts": [p.name for p in parts]}}}
    (carried / "batch-1" / "manifest.json").write_text(json.dumps(manifest))
    (joined,) = bundle.join(carried, tmp_path / "joined")
    assert joined.read_bytes() == data
    (carried / "batch-2" / parts[1].name).write_bytes(b"x" * 4000)  # a damaged part
    joined.unlink()
    with pytest.raises(bundle.BundleError, match="does not have its sha256"):
        bundle.join(carried, tmp_path / "joined")


def test_check_run_holds_the_run_to_the_mode_the_rehearsal_chose(tmp_path, monkeypatch):
    # the run's ExLlamaV2 cell recorded what TabbyAPI reported: unbatched; the report labels its sweep
    from runner.records import Cell
    from runner.report import render
    from tests.report import conftest
    from tests.report.conftest import H100, write_run

    cell = Cell(model="llama3-70b", runtime="exllama", quantization="exl2-4.0", label="baseline")
    monkeypatch.setitem(conftest.PROFILE, cell.id, (0.5, 3.0, 0.4))
    store = write_run(tmp_path / "runs", "gpu-rehearsal", H100, [cell], speed=1.0, seed=4)
    store.write_cell(store.read_cell(cell).model_copy(update={"batched": False, "batching": "unbatched (no flash-attn)"}))
    render([store.root], tmp_path / "report")
    _, as_unbatched = check_run.problems_of(store.root, tmp_path / "report", batched=False)
    _, as_batched = check_run.problems_of(store.root, tmp_path / "report", batched=True)
    mode = [p for p in as_batched if "expected batched=True" in p or "labelled unbatched" in p]
    assert len(mode) == 2 and not [p for p in as_unbatched if "batched=" in p or "labelled" in p]


def test_the_image_builds_every_extension_source_the_wheel_carries(exllamav2_wheel):
    # Dockerfile.exllama compiles exllamav2_ext from this wheel (docker/exllamav2_ext_setup.py): the
    # count it expects is exllamav2's own setup.py's list, and the wheel carries exactly those sources
    import re

    expected = int(re.search(r"^EXPECTED_SOURCES = (\d+)$", (ROOT / "docker" / "exllamav2_ext_setup.py").read_text(),
                             re.M).group(1))
    names = zipfile.ZipFile(exllamav2_wheel).namelist()
    sources = [n for n in names if n.startswith("exllamav2/exllamav2_ext/") and n.endswith((".cpp", ".cu"))]
    assert len(sources) == expected == 47
