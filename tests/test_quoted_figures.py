"""The measured figures the docs quote are the committed results files' (issue 32 item 4): the page
matches a fresh rendering, an edited file changes the page (committed text and built site), and no
hand-copied figure sits among the generated ones."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path("scripts") / "render-results.py"
HOOK = Path("docs") / "_hooks" / "results_figures.py"
RESULTS_PAGE = REPO / "docs" / "results.md"


@pytest.fixture
def hook(monkeypatch):
    spec = importlib.util.spec_from_file_location("results_figures", REPO / HOOK)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A copy of the docs, the hook, the script and bench/results: edits there leave the repo alone."""
    for part in ("docs", "bench/results", "scripts"):
        shutil.copytree(REPO / part, tmp_path / part)
    for name in ("README.md", "mkdocs.yml"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def render_script(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(root / SCRIPT), *args], capture_output=True, text=True, timeout=60)


def edit_client_speed(root: Path, lag_p50_ms: float) -> None:
    path = root / "bench" / "results" / "client-speed.json"
    data = json.loads(path.read_text())
    row = next(f for f in data["figures"] if (f["streams"], f["gap_ms"]) == (64, 5))
    row["itl_added_p50_ms"] = lag_p50_ms
    path.write_text(json.dumps(data))


def test_committed_pages_match_their_results_files(hook):
    # every marked block of the committed Markdown equals what the files give today
    assert hook.drift() == []
    done = render_script(REPO, "--check")
    assert done.returncode == 0, done.stderr
    names = {m.group("name") for page in hook.PAGES for m in hook.BLOCK.finditer((REPO / page).read_text())}
    assert names == set(hook.FIGURES)  # every renderer is used, every block has a renderer


def test_an_edited_results_file_fails_the_check_and_the_script_rewrites_the_page(checkout):
    edit_client_speed(checkout, 0.77)
    page = checkout / "docs" / "results.md"
    assert "**0.77 ms**" not in page.read_text()

    done = render_script(checkout, "--check")
    assert done.returncode == 1
    assert "docs/results.md: client-speed differ from bench/results/" in done.stderr
    assert page.read_text() == RESULTS_PAGE.read_text()  # --check changes nothing

    done = render_script(checkout)
    assert done.returncode == 0, done.stderr
    assert "| **64 × 5 ms** | **0.15 ms** | **0.77 ms** |" in page.read_text()
    assert render_script(checkout, "--check").returncode == 0


def test_an_oracle_verdict_moves_its_split_row(hook, checkout):
    path = checkout / "bench" / "results" / "oracle-simcopilot-2024-upstream.jsonl"
    lines = path.read_text().splitlines()
    java = next(i for i, line in enumerate(lines) if line.startswith('{"task_id":"java/infill/'))
    record = json.loads(lines[java])
    record["outcome"] = "fail"
    lines[java] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    table = hook.render("oracle-2024", checkout / "bench" / "results")
    assert "| Java infill | 283 | 30 | 253 | 0 | 252 | 99.6 | 99.6 |" in table
    assert "| Java infill | 283 | 30 | 253 | 0 | 253 | 100.0 | 100.0 |" in RESULTS_PAGE.read_text()


def test_the_built_site_renders_from_the_files_not_the_committed_text(checkout):
    for module in ("mkdocs", "material", "mkdocs_click"):
        require(importlib.util.find_spec(module) is not None, f"{module} (pip install -e '.[docs]')")
    edit_client_speed(checkout, 0.66)  # the committed results.md still says 0.03 ms
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(checkout / "mkdocs.yml"),
                           "-d", str(checkout / "site")], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    html = (checkout / "site" / "results" / "index.html").read_text()
    assert "<strong>0.66 ms</strong>" in html
    assert "5–11 ms" in html  # the 256 × 1 ms row's spread over its three runs, from the file
    assert "<strong>0.03 ms</strong>" not in html  # the committed text's figure, replaced at build time


def test_an_unknown_figure_name_is_an_error(hook):
    with pytest.raises(ValueError, match="no figure named 'client-sped'"):
        hook.fill("<!-- figure: client-sped -->\n<!-- /figure -->\n")


#: a measured quantity: a number with a unit; a setting such as "64 × 5 ms" is not one
FIGURE = re.compile(r"(?<![×\w.])(?<!× )\d[\d,.]*\s?(?:ms|µs|s|min|minutes|h|hours|%|GiB|MiB|J)\b(?! ×)")


def test_no_hand_copied_figure_among_the_generated_ones(hook):
    text = RESULTS_PAGE.read_text()
    generated, _, by_hand = text.partition("## Not generated: from runs not committed")
    assert by_hand, "the page keeps its hand-copied figures in one labelled section"
    prose = hook.BLOCK.sub("", generated)
    prose = re.sub(r"```.*?```", "", prose, flags=re.S)
    assert FIGURE.findall(prose) == []
    assert 'Copied by hand, not generated' in by_hand


def test_the_demos_duration_is_stated_once_with_its_source():
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    minutes = re.compile(r"\b\d+(?:\.\d+)? ?(?:min|minutes)\b|\d+ min \d+ s")
    quoted = [(page, line) for page in pages for line in page.read_text().splitlines()
              if minutes.search(line) and ("demo" in line.lower() or line.startswith("| "))
              and "demo" in page.read_text().lower()]
    # one generated table, from the kept run; elsewhere only links to it
    text = RESULTS_PAGE.read_text()
    section = text[text.index("### The demo's duration"):text.index("### The quantization ladder")]
    assert "<!-- figure: demo-duration -->" in section
    run = json.loads((REPO / "bench" / "results" / "demo" / "run.json").read_text())
    stated = f"{run['run_minutes']:.1f} min"
    assert stated in section
    demo_lines = [(page, line) for page, line in quoted if "demo" in line.lower() or stated in line]
    assert demo_lines and all(page == RESULTS_PAGE and line in section for page, line in demo_lines), demo_lines
    everywhere = "".join(page.read_text() for page in pages)
    assert everywhere.count(stated) == 1
