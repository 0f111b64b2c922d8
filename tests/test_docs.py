"""The documentation: `mkdocs build --strict` passes, its generated references are whole, the README is a
short front door whose every relative link resolves."""

from __future__ import annotations

import html
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import types
import typing
from pathlib import Path

import click
import pytest
from pydantic import BaseModel

from runner.cli import main
from runner.matrix import MatrixFile
from tests.conftest import require

REPO = Path(__file__).resolve().parents[1]


def _mkdocs_installed() -> None:
    for module in ("mkdocs", "material", "mkdocs_click"):
        require(importlib.util.find_spec(module) is not None, f"{module} (pip install -e '.[docs]')")


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    _mkdocs_installed()
    out = tmp_path_factory.mktemp("site")
    done = build(REPO / "mkdocs.yml", out)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def matrix_keys(model: type[BaseModel] = MatrixFile, prefix: str = "") -> list[str]:
    """Every key a matrix file may hold, as a dotted path (written apart from the docs hook, to check it)."""
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        annotation = field.annotation
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += matrix_keys(annotation, f"{prefix}{name}.")
        elif origin is dict and isinstance(args[1], type) and issubclass(args[1], BaseModel):
            keys += matrix_keys(args[1], f"{prefix}{name}.<{name.removesuffix('s')}>.")
        elif origin is list and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            keys += matrix_keys(args[0], f"{prefix}{name}[].")
    return keys


def test_matrix_reference_lists_every_key_with_its_meaning(site):
    page = (site / "matrix" / "index.html").read_text()
    keys = matrix_keys()
    # the nested tables are reached too, not only the top level
    assert {"settings.repeat_tasks", "models.<model>.quantizations.<quantization>.sha256",
            "cells[].variants[].techniques", "models.<model>.architecture.head_dim"} <= set(keys)
    missing = [k for k in keys if f"<code>{html.escape(k, quote=False)}</code>" not in page]
    assert missing == []
    # a row carries the field's description and default, not only its name
    assert "Requests in flight during the accuracy phase." in page
    assert re.search(r"<code>settings\.concurrency</code></td>\s*<td>integer \(&gt; 0\)</td>\s*<td><code>8</code>", page)
    # the runtimes' switches, generated from their declarations
    assert "<code>tensor_parallel</code>" in page and "<code>flash_attn</code>" in page
    assert "<!-- matrix-reference -->" not in page
    # a type reads as a matrix author writes it, never as Python's repr (a strict-mode Annotated enum)
    assert "typing." not in page and "Annotated" not in page and "runner.records" not in page


def _commands(group: click.Group, path: str) -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((f"{path} {name}", command))
        if isinstance(command, click.Group):
            found += _commands(command, f"{path} {name}")
    return found


def test_cli_reference_lists_every_command_and_option(site):
    page = (site / "cli" / "index.html").read_text()
    commands = _commands(main, "runner")
    assert len(commands) > 12
    # the help texts' examples stay one command a line, as code (docs/_hooks/click_examples.py)
    assert re.search(r"<pre>.*<code>runner reproduce --preset demo +# the CPU demo", page)
    assert "Sentinel" not in page  # a default the page could not render
    for path, command in commands:
        anchor = path.replace(" ", "-")
        assert f'id="{anchor}"' in page, path
        section = page[page.index(f'id="{anchor}"'):]
        for param in command.params:
            if isinstance(param, click.Option):
                flag = max(param.opts, key=len)
                assert flag in section, f"{path}: {flag}"


def test_strict_build_fails_on_a_broken_link(tmp_path):
    _mkdocs_installed()
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    page = tmp_path / "docs" / "limits.md"
    page.write_text(page.read_text() + "\nSee [the old page](no-such-page.md#nowhere).\n")
    done = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "no-such-page.md" in done.stdout + done.stderr


def test_a_matrix_key_without_a_description_fails_the_build(monkeypatch):
    spec = importlib.util.spec_from_file_location("matrix_reference", REPO / "docs" / "_hooks" / "matrix_reference.py")
    hook = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, hook)  # its dataclass looks its module up there
    spec.loader.exec_module(hook)

    class Undocumented(BaseModel):
        """A table with an undescribed key."""

        depth: int = 3

    with pytest.raises(ValueError, match="Undocumented.depth has no description"):
        hook.table_markdown(hook.Table("[x]", Undocumented, "x."))


README = REPO / "README.md"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 200


def test_every_relative_link_in_the_readme_resolves():
    text = README.read_text()
    targets = [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]
    assert targets, "the README links to the docs"
    broken = []
    for target in targets:
        path, _, anchor = target.partition("#")
        file = (README.parent / path).resolve() if path else README
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md":
            headings = {_slug(h) for h in re.findall(r"^#+\s+(.*)$", file.read_text(), re.M)}
            if anchor not in headings:
                broken.append(target)
    assert broken == []
    assert "docs/img/report.png" in targets


def _slug(heading: str) -> str:
    # MkDocs' and GitHub's anchors alike for plain headings: lower case, punctuation dropped, spaces to dashes
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")
