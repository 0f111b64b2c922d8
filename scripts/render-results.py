#!/usr/bin/env python3
"""Write the measured figures of the README and docs/ from bench/results/ into their marked blocks.

    .venv/bin/python scripts/render-results.py           # rewrite the pages' <!-- figure: NAME --> blocks
    .venv/bin/python scripts/render-results.py --check   # exit 1 naming each page whose figures drifted

The renderers are the MkDocs hook's (docs/_hooks/results_figures.py), so the site and the committed
Markdown say the same.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_hook():
    """The docs hook as a module (docs/_hooks is not a package)."""
    spec = importlib.util.spec_from_file_location("results_figures", REPO / "docs" / "_hooks" / "results_figures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page differs from its files")
    args = parser.parse_args()
    hook = load_hook()
    stale = hook.drift()
    for d in stale:
        if args.check:
            print(f"{d.page}: {', '.join(d.figures)} differ from bench/results/; "
                  f"run scripts/render-results.py and commit", file=sys.stderr)
        else:
            path = REPO / d.page
            path.write_text(hook.fill(path.read_text(encoding="utf-8")), encoding="utf-8")
            print(f"rewrote {d.page}: {', '.join(d.figures)}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
