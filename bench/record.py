"""Where a bench keeps its figures: ``--record PATH`` writes them as JSON with when, where and how they
were measured, for docs/_hooks/results_figures.py to render (the docs never copy a figure by hand)."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path


def machine() -> str:
    """The CPU model and core count, as the docs name a machine."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model or platform.machine()}, {os.cpu_count()} cores"


def write(path: Path, figures: dict) -> None:
    """``figures`` with the command that measured them, the date and the machine, to ``path``."""
    command = " ".join(["bench/" + Path(sys.argv[0]).name, *map(shlex.quote, sys.argv[1:])])
    record = {"command": command, "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": machine(), **figures}
    Path(path).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
