"""The rehearsal's pins and the arguments it hands to other tools, in one place.

The versions come from ``Dockerfile.exllama`` (its ``ARG`` lines), so the rehearsal runs what the
image runs; the lists of requirements are TabbyAPI's and exllamav2's own, less torch (the GPU host
has its own PyTorch, and its CUDA wheels are far over the 64 MiB a batch may carry).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile.exllama"


def dockerfile_args(path: Path = DOCKERFILE) -> dict[str, str]:
    """``ARG NAME=value`` lines of a Dockerfile, as a dict."""
    return dict(re.findall(r"^ARG\s+(\w+)=(\S+)\s*$", path.read_text(encoding="utf-8"), flags=re.M))


_ARGS = dockerfile_args()
EXLLAMAV2_VERSION = _ARGS["EXLLAMAV2_VERSION"]
TABBYAPI_COMMIT = _ARGS["TABBYAPI_COMMIT"]

#: the GPU host's python3 is assumed to be 3.12 (a current Ubuntu with PyTorch 2.11); the bundle is
#: made for one version (``--python-version``) and the rehearsal refuses another
DEFAULT_PYTHON = "3.12"

#: never bundled: the host's own PyTorch and its CUDA libraries (GiBs, and they must match its driver);
#: nvidia-ml-py (NVML's bindings, a few hundred KiB) is the runner's and stays
EXCLUDED = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-(?!ml-py$).*|cuda-.*)$", re.I)

#: exllamav2's own requirements (its wheel's METADATA, 0.3.2) less torch: it is installed with
#: --no-deps so that the resolver never reaches for a torch wheel
EXLLAMAV2_REQUIREMENTS = ["pandas", "ninja", "fastparquet", "safetensors>=0.3.2", "pygments", "websockets",
                          "regex", "numpy", "rich", "pillow>=9.1.0"]

#: TabbyAPI's [project] dependencies at TABBYAPI_COMMIT (its pyproject.toml; the preflight checks this
#: list against the carried source); the uvloop marker is resolved for the Linux x86_64 host
TABBYAPI_REQUIREMENTS = ["fastapi-slim>=0.115", "pydantic==2.11.0", "ruamel.yaml", "rich", "uvicorn>=0.28.1",
                         "jinja2>=3.0.0", "loguru", "sse-starlette>=2.2.0", "packaging", "tokenizers>=0.21.0",
                         "formatron>=0.4.11", "kbnf>=0.4.1", "aiofiles", "aiohttp", "async_lru",
                         "huggingface_hub", "psutil", "httptools>=0.5.0", "pillow", "uvloop", "setuptools"]

#: the rehearsal's two bit widths, as the exllama runtime names them (exl2-<bits>)
BITS = ("4.0", "6.0")
HEAD_BITS = 6  # exllamav2's default head width: one of qparams_headoptions (6, 8)
#: calibration rows of 512 tokens, not 2048: the model is tiny and its weights random, and the
#: default calibration on one GPU would take minutes of the host's 15
CAL_LENGTH = 512


def runner_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The runner's own dependencies (its pyproject), less the ones it never uses on the GPU host
    only through extras."""
    return list(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"])


#: flash-attn's own requirement besides torch (its wheel, when carried, is installed with --no-deps)
FLASH_ATTN_REQUIREMENTS = ["einops"]


def tabby_env_requirements() -> list[str]:
    """Everything the serving environment needs from the bundle (TabbyAPI and exllamav2; torch is the host's)."""
    return _unique(TABBYAPI_REQUIREMENTS + EXLLAMAV2_REQUIREMENTS + FLASH_ATTN_REQUIREMENTS)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def measure_argv(model_dir: Path, work_dir: Path, measurement: Path) -> list[str]:
    """exllamav2's converter, measurement pass only (done once, reused by both bit widths)."""
    return ["-m", "exllamav2.conversion.convert_exl2", "-i", str(model_dir), "-o", str(work_dir), "-nr",
            "-om", str(measurement), "-ml", str(CAL_LENGTH), "-l", str(CAL_LENGTH)]


def convert_argv(model_dir: Path, work_dir: Path, out_dir: Path, bits: str, measurement: Path) -> list[str]:
    """exllamav2's converter at ``bits`` bits per weight, reusing the measurement, writing the
    complete EXL2 folder (weights, config, tokenizer) to ``out_dir``."""
    return ["-m", "exllamav2.conversion.convert_exl2", "-i", str(model_dir), "-o", str(work_dir), "-nr",
            "-m", str(measurement), "-cf", str(out_dir), "-b", bits, "-hb", str(HEAD_BITS),
            "-l", str(CAL_LENGTH), "-ml", str(CAL_LENGTH)]


def converter_flags() -> list[str]:
    """Every option the rehearsal passes to the converter (for the check against its argparse)."""
    p = Path("/m")
    argvs = [measure_argv(p, p, p)] + [convert_argv(p, p, p, bits, p) for bits in BITS]
    return _unique([a for argv in argvs for a in argv[2:] if a.startswith("-") and not is_number(a)])


def is_number(text: str) -> bool:
    """Whether ``text`` is a number (a value, not a flag, even when it starts with ``-``)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def quantization(bits: str) -> str:
    """The exllama runtime's name for an EXL2 folder of ``bits`` bits per weight."""
    return f"exl2-{bits}"
