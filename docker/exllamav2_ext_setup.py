"""exllamav2's C++/CUDA extension, ``exllamav2_ext``, built ahead of time as a wheel from the sources
exllamav2's PyPI wheel carries. exllamav2 imports a prebuilt ``exllamav2_ext`` before it would
compile one at first use, so the image needs no CUDA compiler and no build at start.

Dockerfile.exllama's build stage copies this file as ``setup.py`` beside the installed wheel's
``exllamav2_ext`` folder and runs ``pip wheel --no-build-isolation`` there, with the torch the
extension must load against; the compiler flags are the ones exllamav2's own setup.py passes.
"""

import os
from pathlib import Path

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CUDAExtension

#: exllamav2 0.3.2's setup.py compiles 47 sources: every .cpp and .cu under exllamav2_ext
EXPECTED_SOURCES = 47

sources = sorted(str(p) for p in Path("exllamav2_ext").rglob("*") if p.suffix in (".cpp", ".cu"))
if len(sources) != EXPECTED_SOURCES:
    raise SystemExit(f"exllamav2_ext has {len(sources)} sources, {EXPECTED_SOURCES} expected: "
                     "another exllamav2 release? compare with its setup.py")

setup(
    name="exllamav2_ext",
    version=os.environ["EXLLAMAV2_VERSION"],
    ext_modules=[CUDAExtension("exllamav2_ext", sources,
                               extra_compile_args={"cxx": ["-O3"], "nvcc": ["-lineinfo", "-O3"]})],
    cmdclass={"build_ext": BuildExtension},
)
