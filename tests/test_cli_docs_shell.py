"""The shell lines the documentation shows run under `sh` as written (dash on Debian, not bash)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import require

REPO = Path(__file__).resolve().parents[1]
SH = "/bin/sh"


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```(?:sh|shell|bash|console)\n(.*?)^```", text, re.M | re.S)


def score_example() -> list[str]:
    text = (REPO / "docs" / "scoring.md").read_text(encoding="utf-8")
    (block, *_) = sh_blocks(text.split("## Re-scoring another tool's outputs", 1)[1])
    return block.splitlines()


def test_every_shell_block_of_the_docs_parses_under_sh():
    require(shutil.which(SH) is not None, SH)
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    checked = 0
    for path in files:
        for block in sh_blocks(path.read_text(encoding="utf-8")):
            done = subprocess.run([SH, "-n"], input=block, capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, f"{path.name}: `sh -n` refuses\n{block}\n{done.stderr}"
            checked += 1
    assert checked > 10


def test_the_score_example_writes_answers_that_score_reads_under_sh(tmp_path, simcopilot):
    # run the documented line itself under sh: with `echo`, dash would turn the JSON's \n into a newline
    from runner.benchmarks import load_benchmark
    from runner.running.score import read_answers

    require(Path(SH).exists(), SH)
    (write, *scoring) = score_example()
    assert write.endswith("> answers.jsonl") and all(line.startswith("runner score answers.jsonl") for line in scoring)
    done = subprocess.run([SH, "-c", write], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    ((task, answer),) = read_answers(tmp_path / "answers.jsonl", load_benchmark("simcopilot"))
    assert task.id == "python/infill/simplex_method/16-16"
    assert answer.text == "        return x\n"
