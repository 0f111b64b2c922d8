"""Dockerfile.exllama's pins, read from the file (the GPU image cannot be built here): flash-attn's
wheel agrees with the image's torch, CUDA, C++ ABI and Python and carries its published sha256; the
Python lock agrees with its inputs and with what uv resolves from them; TabbyAPI's file list is whole."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import require
from tests.test_dockerfiles import arg_defaults, instructions

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile.exllama"
LOCK = ROOT / "docker" / "exllama-requirements.lock"
INPUTS = ROOT / "docker" / "exllama-requirements.in"
sys.path.insert(0, str(ROOT / "docker"))
from exllama_image import flash_attn_wheel  # noqa: E402

# Dao-AILab/flash-attention v2.8.3's release assets for torch 2.8 on x86_64, and their sha256 as
# published: a Dockerfile and a script that pin the cxx11abiTRUE cp311 asset give 3d41b2fc...,
# and a lock generated from the release's assets (base64 there) gives every one of these
PUBLISHED_FLASH_ATTN = {
    "flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp310-cp310-linux_x86_64.whl":
        "75c51f34bb93c5a4438d6b767547ca6c22a9bfc6b29b5646dda98e943cd75d99",
    "flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp311-cp311-linux_x86_64.whl":
        "3d41b2fc55753faa7f45d6568ea73a96b96afb48b82994ab9b49bcbcb6c87588",
    "flash_attn-2.8.3+cu12torch2.8cxx11abiFALSE-cp311-cp311-linux_x86_64.whl":
        "f1a9e6cb4dfbd1647e56235d81fd6b56e6cd01c7ea3249968ca4aa36c389371a",
    "flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp312-cp312-linux_x86_64.whl":
        "f25da18657a87fc83dc1bfb8b7751b82246e9db355510226b674fd437c34b5fb",
    "flash_attn-2.8.3+cu12torch2.8cxx11abiFALSE-cp312-cp312-linux_x86_64.whl":
        "2605b2653e7b9d6615bbb154896ae4d3f0b95d3120af7a6374ee97092e61df02",
}
# PyPI's only file of exllamav2 0.3.2 (the py3-none-any wheel carrying the extension's sources)
EXLLAMAV2_PYPI_SHA256 = "7cd61ae4bf1d8d12034595ab9731f0f43bac415d6394fbb273d4383293d6079e"
#: the image's torch and its CUDA wheels: never in the lock (the base image has them)
BASE_IMAGE_PACKAGES = re.compile(r"^(torch|triton|nvidia-.*)$")


def args() -> dict[str, str]:
    return {k: v for k, v in arg_defaults(instructions(DOCKERFILE)).items() if v is not None}


def flash_attn_problems(a: dict[str, str]) -> list[str]:
    """Where the flash-attn pins disagree with the image's torch, CUDA, C++ ABI and Python pins."""
    cuda = a["CUDA_TAG"].removeprefix("cu")  # cu128 -> 12.8
    wanted = flash_attn_wheel(a["FLASH_ATTN_VERSION"], a["TORCH_VERSION"], f"{cuda[:-1]}.{cuda[-1]}",
                              a["CXX11_ABI"] == "TRUE", a["PYTHON_VERSION"])
    problems = []
    if a["FLASH_ATTN_WHEEL"] != wanted:
        problems.append(f"FLASH_ATTN_WHEEL {a['FLASH_ATTN_WHEEL']}, but the image's pins need {wanted}")
    if PUBLISHED_FLASH_ATTN.get(a["FLASH_ATTN_WHEEL"]) != a["FLASH_ATTN_SHA256"]:
        problems.append(f"FLASH_ATTN_SHA256 is not the published sha256 of {a['FLASH_ATTN_WHEEL']}")
    base = a["BASE"].split("@")[0]
    if f":{a['TORCH_VERSION']}-cuda{cuda[:-1]}.{cuda[-1]}-" not in base:
        problems.append(f"BASE {base} is not torch {a['TORCH_VERSION']} with CUDA {a['CUDA_TAG']}")
    return problems


def test_flash_attn_wheel_matches_the_image_torch_cuda_abi_and_python():
    pinned = args()
    assert flash_attn_problems(pinned) == []
    assert pinned["FLASH_ATTN_WHEEL"] == "flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp311-cp311-linux_x86_64.whl"
    # each pin moved alone is caught: the ABI, torch, Python, the hash of the other ABI's wheel, the base image
    for change in ({"CXX11_ABI": "FALSE"}, {"TORCH_VERSION": "2.9.0"}, {"PYTHON_VERSION": "3.12"},
                   {"FLASH_ATTN_SHA256": PUBLISHED_FLASH_ATTN[pinned["FLASH_ATTN_WHEEL"].replace("TRUE", "FALSE")]},
                   {"BASE": "pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime"}):
        assert flash_attn_problems({**pinned, **change}), change
    # moved together, the pins agree again
    assert flash_attn_problems({**pinned, "PYTHON_VERSION": "3.12",
                                "FLASH_ATTN_WHEEL": pinned["FLASH_ATTN_WHEEL"].replace("cp311", "cp312"),
                                "FLASH_ATTN_SHA256": PUBLISHED_FLASH_ATTN[
                                    pinned["FLASH_ATTN_WHEEL"].replace("cp311", "cp312")]}) == []


def test_the_build_checks_the_pins_against_the_image_and_imports_flash_attn():
    text = DOCKERFILE.read_text()
    # the image's own torch is checked against the pins, the wheel name against flash-attn's choice,
    # the download against the sha256, and the extension is imported against the image's torch
    assert 'exllama_image.py check-torch "${TORCH_VERSION}" "${CUDA_TAG}" "${PYTHON_VERSION}" "${CXX11_ABI}"' in text
    assert 'exllama_image.py flash-attn-wheel "${FLASH_ATTN_VERSION}" "${FLASH_ATTN_WHEEL}"' in text
    assert '"${FLASH_ATTN_SHA256}" "${FLASH_ATTN_WHEEL}"' in text
    assert "import torch, flash_attn_2_cuda" in text and "has_flash_attn_with_paged" in text
    for base in ("BASE", "BUILD_BASE"):
        assert re.fullmatch(r"pytorch/pytorch:2\.8\.0-cuda12\.8-cudnn9-\w+@sha256:[0-9a-f]{64}", args()[base])
    # every pip install of the image is locked: by hash, or a file the build verified or built itself
    for line in re.findall(r"pip install [^;]*", text):
        assert "--require-hashes" in line or "./${FLASH_ATTN_WHEEL}" in line, line


def lock_pins() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of the lock."""
    pins: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=\S)", LOCK.read_text()):
        if match := re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block):
            pins[canonicalize_name(match.group(1))] = (match.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return pins


def input_requirements(python: str = "3.11") -> list[Requirement]:
    """The lock's inputs whose markers hold on the image (Linux x86_64, ``python``)."""
    env = {**default_environment(), "platform_system": "Linux", "platform_machine": "x86_64", "sys_platform": "linux",
           "python_version": python, "python_full_version": f"{python}.0"}
    lines = [line.split("#")[0].strip() for line in INPUTS.read_text().splitlines()]
    return [r for r in (Requirement(line) for line in lines if line) if r.marker is None or r.marker.evaluate(env)]


def test_the_lock_agrees_with_its_inputs_and_the_dockerfile():
    pins, pinned = lock_pins(), args()
    assert pins and all(hashes for _, hashes in pins.values())
    assert not [name for name in pins if BASE_IMAGE_PACKAGES.match(name)]
    for requirement in input_requirements():
        name = canonicalize_name(requirement.name)
        if BASE_IMAGE_PACKAGES.match(name):
            continue
        assert name in pins, f"{requirement} is not in the lock: run `make exllama-lock`"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), f"{requirement} vs {pins[name][0]}"
    specs = {canonicalize_name(r.name): str(r.specifier) for r in input_requirements()}
    assert specs["exllamav2"] == f"=={pinned['EXLLAMAV2_VERSION']}" and specs["torch"] == f"=={pinned['TORCH_VERSION']}"
    assert pins["exllamav2"] == (pinned["EXLLAMAV2_VERSION"], [EXLLAMAV2_PYPI_SHA256])
    # TabbyAPI's requirements are the rehearsal's too (its preflight checks them against TabbyAPI's
    # own pyproject at the pinned commit); the rehearsal's host runs Python 3.12
    sys.path.insert(0, str(ROOT / "scripts"))
    from gpu_rehearsal import pins as rehearsal

    tabby = {canonicalize_name(Requirement(r).name) for r in rehearsal.TABBYAPI_REQUIREMENTS}
    assert tabby <= {canonicalize_name(r.name) for r in input_requirements("3.12")}
    assert rehearsal.TABBYAPI_COMMIT == pinned["TABBYAPI_COMMIT"]


def test_the_lock_is_what_uv_resolves_from_its_inputs(tmp_path):
    try:
        from uv import find_uv_bin
    except ImportError:
        find_uv_bin = None
    require(find_uv_bin is not None, "uv (the test extras: pip install -e '.[test]')")
    make = subprocess.run(["make", "-s", "--no-print-directory", "--eval",
                           "print-lock-args: ; $(info $(EXLLAMA_LOCK_ARGS))", "print-lock-args"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    out = tmp_path / "exllama-requirements.lock"
    # --exclude-newer in the arguments: PyPI's later uploads cannot change the resolution
    done = subprocess.run([find_uv_bin(), "pip", "compile", "--quiet", "docker/exllama-requirements.in",
                           *shlex.split(make.stdout), "-o", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.read_text() == LOCK.read_text(), "docker/exllama-requirements.lock is stale: run `make exllama-lock`"


def test_tabbyapi_file_list_is_a_whole_tree():
    entries = [line.split("  ", 1) for line in (ROOT / "docker" / "tabbyapi-files.sha256").read_text().splitlines()]
    paths = [p for _, p in entries]
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h, _ in entries)
    assert paths == sorted(set(paths)) and len(paths) == 108
    assert {"main.py", "pyproject.toml", "backends/exllamav2/model.py", "common/hardware.py"} <= set(paths)


@pytest.mark.parametrize(("abi", "python", "expected"), [
    (True, "3.11", "flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp311-cp311-linux_x86_64.whl"),
    (False, "3.12", "flash_attn-2.8.3+cu12torch2.8cxx11abiFALSE-cp312-cp312-linux_x86_64.whl"),
])
def test_wheel_name_is_flash_attn_setup_naming(abi, python, expected):
    # setup.py of flash-attn v2.8.3 (get_wheel_url): cu<torch.version.cuda major>, torch<major.minor>
    assert flash_attn_wheel("2.8.3", "2.8.0+cu128", "12.8", abi, python) == expected
