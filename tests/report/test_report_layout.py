"""The report package's layout: one concept per module, each under 600 lines, and no import circle."""

from __future__ import annotations

import ast
from pathlib import Path

import runner.report

PACKAGE = Path(runner.report.__file__).parent


def _report_imports(path: Path) -> set[str]:
    """The ``runner.report`` modules ``path`` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("runner.report."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.ImportFrom) and node.module == "runner.report":
            found.update(a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists())
    return found


def test_every_report_module_is_under_600_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert all(n < 600 for n in sizes.values()), sizes


def test_the_report_modules_import_one_another_without_a_circle():
    graph = {p.stem: _report_imports(p) - {p.stem} for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert "tables" not in graph["editions"]  # the circle this layout broke
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join(path + (module,))
        if module in done:
            return
        for other in graph.get(module, ()):
            visit(other, path + (module,))
        done.add(module)

    for module in graph:
        visit(module, ())
