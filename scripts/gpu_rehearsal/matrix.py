"""The rehearsal's matrix: the exllama runtime at both bit widths on a few starter tasks, every phase.

    python -m gpu_rehearsal.matrix OUT.toml --model 4.0=DIR --model 6.0=DIR [--python-only]

Small settings: random weights answer nonsense, so the tasks only need to produce samples in every
phase (accuracy, the noise floor's repeat, latency, sweep). Both prompt styles run: ``instruct``
through TabbyAPI's chat endpoint (the model's ChatML template), ``prefix`` through its completion
endpoint; the two cells of one bit width share one server (equal launch specs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gpu_rehearsal import pins

MODEL_KEY = "tiny-llama"
STYLES = ("instruct", "prefix")


def matrix_toml(models: dict[str, Path], *, python_only: bool, styles: tuple[str, ...] = STYLES) -> str:
    """The matrix as TOML text; ``models`` maps bits ("4.0") to its EXL2 folder."""
    languages = '["python"]' if python_only else "[]"  # no JDK on the host: the Java tasks could not be judged
    lines = [
        'name = "gpu-rehearsal"', 'benchmark = "starter"', 'backend = "local"', "",
        "[tasks]", f"languages = {languages}", "limit = 4", "",
        "[settings]", "max_tokens = 32", "temperature = 0.0", "concurrency = 2", "latency_tasks = 2",
        "warmup_requests = 1", 'cache_states = ["cold", "warm"]', "sweep = [1, 4]", "sweep_requests = 4",
        "repeat_tasks = 2", 'repeat_cells = "all"', "request_timeout_s = 120", "health_timeout_s = 300", "",
        f"[models.{MODEL_KEY}]", 'name = "Tiny Llama (random weights)"', 'family = "llama"',
        "context_length = 4096", "chat = true", f"prompt_styles = {json.dumps(list(styles))}",
    ]
    for bits, folder in models.items():
        lines += ["", f'[models.{MODEL_KEY}.quantizations."{pins.quantization(bits)}"]', 'kind = "path"',
                  f"path = {json.dumps(str(folder))}", "gpu_memory_gib = 1"]
    for bits in models:
        lines += ["", "[[cells]]", f'model = "{MODEL_KEY}"', 'runtime = "exllama"',
                  f'quantization = "{pins.quantization(bits)}"']
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="matrix", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", action="append", required=True, metavar="BITS=DIR")
    parser.add_argument("--python-only", action="store_true")
    args = parser.parse_args(argv)
    models = {}
    for item in args.model:
        bits, sep, folder = item.partition("=")
        if not sep or pins.quantization(bits) not in _served():
            print(f"matrix: --model {item}: give BITS=DIR with BITS one of {', '.join(pins.BITS)}", file=sys.stderr)
            return 2
        models[bits] = Path(folder).resolve()
    args.out.write_text(matrix_toml(models, python_only=args.python_only), encoding="utf-8")
    print(args.out)
    return 0


def _served() -> tuple[str, ...]:
    return tuple(pins.quantization(b) for b in pins.BITS)


if __name__ == "__main__":
    sys.exit(main())
