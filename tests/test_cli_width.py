"""Tables take the terminal's width (an 80-column terminal gets 80 columns), and whole rows off a terminal."""

from __future__ import annotations

import hashlib
import re

from click.testing import CliRunner

from runner.cli import main

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MATRIX = """
name = "t"
[models.tiny]
name = "Tiny"
prompt_styles = ["instruct"]
[models.tiny.quantizations.q4_k_m]
kind = "path"
path = "tiny.gguf"
[[cells]]
model = "tiny"
runtime = "llamacpp"
quantization = "q4_k_m"
"""


def lines(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return ANSI.sub("", result.stdout).splitlines()


def test_models_prepare_fits_an_80_column_terminal_and_keeps_the_whole_sha256(tmp_path):
    (tmp_path / "tiny.gguf").write_bytes(b"GGUF tiny")
    (tmp_path / "m.toml").write_text(MATRIX)
    digest = hashlib.sha256(b"GGUF tiny").hexdigest()
    terminal = {"TTY_COMPATIBLE": "1", "COLUMNS": "80"}  # rich takes this for an 80-column terminal
    narrow = lines(CliRunner().invoke(main, ["models", "prepare", str(tmp_path / "m.toml")], env=terminal))
    assert narrow and max(len(line) for line in narrow) <= 80
    folded = "".join(cell.strip() for line in narrow for cell in line.split("│")[4:5])
    assert digest in folded  # folded over lines, never cut
    wide = lines(CliRunner().invoke(main, ["models", "prepare", str(tmp_path / "m.toml")], env={"COLUMNS": None}))
    assert any(digest in line for line in wide)  # off a terminal: whole rows
