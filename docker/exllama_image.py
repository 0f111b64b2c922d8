"""Dockerfile.exllama's checks, run inside the image build: each fails the build with one line.

    python3 exllama_image.py check-torch TORCH_VERSION CUDA_TAG PYTHON_VERSION CXX11_ABI
    python3 exllama_image.py flash-attn-wheel FLASH_ATTN_VERSION EXPECTED_WHEEL
    python3 exllama_image.py fetch URL SHA256|- OUT

Standard library only (it runs before anything is installed); ``flash_attn_wheel`` is also what
tests/test_exllama_image.py checks the Dockerfile's pins with.
"""

from __future__ import annotations

import hashlib
import sys
import urllib.parse
import urllib.request
from pathlib import Path


def flash_attn_wheel(version: str, torch_version: str, cuda_version: str, cxx11_abi: bool, python: str) -> str:
    """The release asset flash-attn's own setup.py downloads for this torch: ``+cu<CUDA major>``,
    ``torch<major.minor>``, ``cxx11abi<torch._C._GLIBCXX_USE_CXX11_ABI>``, ``cp<XY>`` (Linux x86_64)."""
    major, minor = torch_version.split("+")[0].split(".")[:2]
    tag = "cp" + "".join(python.split(".")[:2])
    return (f"flash_attn-{version}+cu{cuda_version.split('.')[0]}torch{major}.{minor}"
            f"cxx11abi{str(cxx11_abi).upper()}-{tag}-{tag}-linux_x86_64.whl")


def _fail(message: str) -> None:
    print(f"Dockerfile.exllama: {message}", file=sys.stderr)
    sys.exit(1)


def check_torch(torch_version: str, cuda_tag: str, python_version: str, cxx11_abi: str) -> None:
    """The base image's torch, CUDA, Python and C++ ABI are the ones the pins were chosen for."""
    import torch

    cuda = torch.version.cuda or "none"  # a CPU build says None
    have = {"torch": torch.__version__.split("+")[0], "CUDA": f"cu{cuda.replace('.', '')}",
            "Python": f"{sys.version_info[0]}.{sys.version_info[1]}",
            "C++11 ABI": str(torch._C._GLIBCXX_USE_CXX11_ABI).upper()}
    want = {"torch": torch_version, "CUDA": cuda_tag, "Python": python_version, "C++11 ABI": cxx11_abi}
    wrong = [f"{k} {have[k]} (pinned {want[k]})" for k in want if have[k] != want[k]]
    if wrong:
        _fail("the base image has " + ", ".join(wrong) + ": change BASE or the pins together "
              "(flash-attn's wheel and its sha256, docker/exllama-requirements.lock)")


def check_flash_attn_wheel(version: str, expected: str) -> None:
    """FLASH_ATTN_WHEEL is the asset flash-attn itself would pick for the image's torch."""
    import torch

    picked = flash_attn_wheel(version, torch.__version__, torch.version.cuda or "none", torch._C._GLIBCXX_USE_CXX11_ABI,
                              f"{sys.version_info[0]}.{sys.version_info[1]}")
    if picked != expected:
        _fail(f"FLASH_ATTN_WHEEL is {expected}, but flash-attn's setup would pick {picked} for this torch")


def fetch(url: str, sha256: str, out: Path) -> None:
    """Download ``url`` to ``out``; with a sha256 (not ``-``), fail unless the bytes have it."""
    parts = urllib.parse.urlsplit(url)
    quoted = urllib.parse.urlunsplit(parts._replace(path=urllib.parse.quote(parts.path)))  # '+' as %2B
    digest = hashlib.sha256()
    with urllib.request.urlopen(quoted, timeout=300) as response, out.open("wb") as fh:
        while block := response.read(1 << 20):
            digest.update(block)
            fh.write(block)
    if sha256 != "-" and digest.hexdigest() != sha256:
        out.unlink()
        _fail(f"{url} has sha256 {digest.hexdigest()}, pinned {sha256}")


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "check-torch":
        check_torch(*args)
    elif command == "flash-attn-wheel":
        check_flash_attn_wheel(*args)
    elif command == "fetch":
        fetch(args[0], args[1], Path(args[2]))
    else:
        _fail(f"unknown check {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
