#!/usr/bin/env python3
"""Load every ExLlamaV2 cell's generated ``config.yml`` with TabbyAPI's own code at the pinned commit.

Usage: scripts/check-tabbyapi-config.py TABBYAPI_DIR [--matrix matrices/paper.toml] [--out FILE]
       [--venv DIR] [--commit SHA]

TABBYAPI_DIR is a checkout of theroyallab/tabbyAPI at ``TABBYAPI_COMMIT`` of Dockerfile.exllama
(a git checkout, or an unpacked archive with ``--commit``); its code is only read, never copied.
Run it with the runner's Python (it builds each launch as ``runner.serving.launch_check`` does).
Per cell, TabbyAPI's startup path up to loading the model runs in a throwaway venv holding the
packages TabbyAPI's config code imports (scripts/tabbyapi-config-check.requirements.txt, pydantic
at TabbyAPI's pin): ``common.args.init_argparser`` parses the launch's arguments (``--config
FILE``), ``convert_args_to_dict`` and ``TabbyConfig.load`` read the file (ruamel.yaml) and validate
it with ``TabbyConfigModel`` (common/config_models.py). TabbyAPI logs a file it cannot read and
starts with defaults instead of failing, so a verdict is OK only when nothing was logged at
warning level or above and every value of the generated file is what the loaded config holds.

Writes bench/results/tabbyapi-config-check.json: the commit, the packages, and per cell the
config's sha256 and the verdict; tests/runtimes/test_paper_launches.py regenerates every config
and fails when one no longer matches a recorded OK verdict.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.matrix import load_matrix  # noqa: E402
from runner.paths import cache_dir  # noqa: E402
from runner.serving.launch_check import (  # noqa: E402
                                         TABBYAPI_CHECK, planned_launches, sha256_text, tabbyapi_config_text,
                                         )

REQUIREMENTS = ROOT / "scripts" / "tabbyapi-config-check.requirements.txt"

# runs in the throwaway venv, with TABBYAPI_DIR first on sys.path and the cases on stdin
CHECKER = r'''
import json, os, sys
from loguru import logger
from ruamel.yaml import YAML
from common.args import convert_args_to_dict, init_argparser
from common.tabby_config import TabbyConfig

logged = []
logger.remove()
logger.add(lambda message: logged.append(message.record["level"].name + ": " + message.record["message"]),
           level="WARNING")
out = []
for case in json.load(sys.stdin):
    logged.clear()
    verdict = {"id": case["id"], "ok": False, "problems": []}
    try:
        parser = init_argparser()
        args = parser.parse_args(case["argv"])
        config = TabbyConfig()
        config.load(convert_args_to_dict(args, parser))
        written = YAML(typ="safe").load(open(case["file"], encoding="utf-8"))
        for section, values in written.items():
            loaded = getattr(config, section)
            for key, value in values.items():
                if key == "api_servers":  # TabbyAPI lowercases them (NetworkConfig.api_server_validator)
                    value = [v.lower() for v in value]
                if getattr(loaded, key) != value:
                    verdict["problems"].append(f"{section}.{key}: file says {value!r}, TabbyAPI loaded "
                                               f"{getattr(loaded, key)!r}")
    except SystemExit as exc:
        verdict["problems"].append(f"TabbyAPI's argument parser refused the arguments (exit {exc.code})")
    except Exception as exc:
        verdict["problems"].append(f"{type(exc).__name__}: {exc}")
    verdict["problems"] += logged
    verdict["ok"] = not verdict["problems"]
    out.append(verdict)
print(json.dumps(out))
'''


#: (what, text in the generated config, replacement): each must be refused
CONTROLS = [("model.cache_mode Q5 (not a cache mode)", "cache_mode: FP16", "cache_mode: Q5"),
            ("model.cache_size 1000 (not a multiple of 256)", "cache_size: 32768", "cache_size: 1000")]


def pinned_commit() -> str:
    found = re.search(r"^ARG TABBYAPI_COMMIT=([0-9a-f]{40})$", (ROOT / "Dockerfile.exllama").read_text(), re.M)
    if not found:
        sys.exit("Dockerfile.exllama: no ARG TABBYAPI_COMMIT=<40 hex> line")
    return found.group(1)


def checkout_commit(tabby: Path, given: str | None) -> str:
    if given:
        return given
    done = subprocess.run(["git", "-C", str(tabby), "rev-parse", "HEAD"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{tabby}: not a git checkout; name its commit with --commit")
    return done.stdout.strip()


def ensure_venv(venv: Path, tabby: Path) -> Path:
    """The throwaway venv with TabbyAPI's config imports, pydantic at the pin of TabbyAPI's pyproject."""
    pyproject = (tabby / "pyproject.toml").read_text(encoding="utf-8")
    pin = re.search(r'"pydantic\s*==\s*([\d.]+)"', pyproject)
    wanted = re.search(r"^pydantic==([\d.]+)", REQUIREMENTS.read_text(), re.M)
    if not pin or not wanted or pin.group(1) != wanted.group(1):
        sys.exit(f"{tabby}/pyproject.toml pins pydantic {pin and pin.group(1)}, {REQUIREMENTS.name} has "
                 f"{wanted and wanted.group(1)}: update the requirements (with hashes) to TabbyAPI's pin")
    python = venv / "bin" / "python"
    stamp = venv / ".requirements"
    if not (python.is_file() and stamp.is_file() and stamp.read_text() == REQUIREMENTS.read_text()):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--require-hashes", "--no-deps",
                        "--only-binary", ":all:", "-r", str(REQUIREMENTS)], check=True)
        stamp.write_text(REQUIREMENTS.read_text())
    return python


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tabbyapi_dir", type=Path)
    parser.add_argument("--matrix", type=Path, default=ROOT / "matrices" / "paper.toml")
    parser.add_argument("--out", type=Path, default=TABBYAPI_CHECK)
    parser.add_argument("--venv", type=Path, default=cache_dir() / "venvs" / "tabbyapi-config-check")
    parser.add_argument("--commit", help="the checkout's commit, where TABBYAPI_DIR is not a git checkout")
    opts = parser.parse_args()
    tabby = opts.tabbyapi_dir.resolve()
    if not (tabby / "common" / "config_models.py").is_file():
        sys.exit(f"{tabby}: no common/config_models.py; point at a TabbyAPI checkout")
    commit, pinned = checkout_commit(tabby, opts.commit), pinned_commit()
    if commit != pinned:
        sys.exit(f"{tabby} is at {commit}, Dockerfile.exllama pins TABBYAPI_COMMIT={pinned}: check out the pin")
    python = ensure_venv(opts.venv, tabby)

    launches = planned_launches(load_matrix(opts.matrix), "exllama")
    with tempfile.TemporaryDirectory(prefix="tabbyapi-check-") as tmp:
        cases, texts = [], {}
        for n, launch in enumerate(launches):
            text = tabbyapi_config_text(launch)
            path = Path(tmp) / f"{n}.yml"
            path.write_text(text, encoding="utf-8")
            texts[launch.cell.id] = text
            # the launch's own arguments after `main.py`, its config file swapped for the written copy
            argv = launch.spec.argv[2:]
            argv[argv.index("--config") + 1] = str(path)
            cases.append({"id": launch.cell.id, "argv": argv, "file": str(path)})
        # controls: the first config broken two ways TabbyAPI's models refuse, to show the check can fail
        for n, (change, old, new) in enumerate(CONTROLS):
            text = next(iter(texts.values()))
            assert old in text, (old, text)
            path = Path(tmp) / f"control-{n}.yml"
            path.write_text(text.replace(old, new), encoding="utf-8")
            cases.append({"id": f"control: {change}", "argv": ["--config", str(path)], "file": str(path)})
        empty = Path(tmp) / "cwd"  # TabbyAPI also reads ./config.yml: none there
        empty.mkdir()
        done = subprocess.run([str(python), "-c", f"import sys; sys.path.insert(0, {str(tabby)!r})\n" + CHECKER],
                              input=json.dumps(cases), capture_output=True, text=True, cwd=empty)
    if done.returncode != 0:
        sys.exit(f"TabbyAPI's config check failed to run: {done.stderr[-2000:]}")
    verdicts = json.loads(done.stdout)
    controls = [v for v in verdicts if v["id"].startswith("control: ")]
    verdicts = [v for v in verdicts if not v["id"].startswith("control: ")]
    versions = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True,
                              text=True, check=True).stdout.split()
    record = {
        "tabbyapi_commit": commit,
        "checked_with": "TabbyAPI common.args.init_argparser + convert_args_to_dict + common.tabby_config."
                        "TabbyConfig.load (TabbyConfigModel, common/config_models.py)",
        "packages": sorted(v for v in versions if not v.startswith(("pip==", "setuptools=="))),
        "matrix": str(opts.matrix.resolve().relative_to(ROOT)) if opts.matrix.resolve().is_relative_to(ROOT)
        else str(opts.matrix),
        "cells": [{"cell": v["id"], "config_sha256": sha256_text(texts[v["id"]]),
                   "verdict": "OK" if v["ok"] else "REFUSED", "problems": v["problems"]} for v in verdicts],
        "controls": [{"change": v["id"].removeprefix("control: "), "verdict": "OK" if v["ok"] else "REFUSED",
                      "problems": [" / ".join(p.splitlines()[:3]) for p in v["problems"]]} for v in controls],
    }
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    refused = [c["cell"] for c in record["cells"] if c["verdict"] != "OK"]
    print(f"{len(record['cells'])} configs checked with TabbyAPI {commit[:7]}: "
          + (f"{len(refused)} refused: {', '.join(refused)}" if refused else "all OK") + f"; wrote {opts.out}")
    accepted = [c["change"] for c in record["controls"] if c["verdict"] == "OK"]
    if accepted:
        print(f"the check accepted broken configs ({', '.join(accepted)}): it proves nothing", file=sys.stderr)
    return 1 if refused or accepted else 0


if __name__ == "__main__":
    sys.exit(main())
