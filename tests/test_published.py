"""SimCoPilot's published tables as data: equal to each README, named by matrices, compared by the report."""

from __future__ import annotations

import re
import tarfile

import pytest

from runner.benchmarks.published import SPLITS, load_tables, lookup, references
from runner.errors import UserError
from tests.conftest import SHARED_DIR, require

ARCHIVES = {"2024": "simcopilot-90c5560.tar.gz", "2025": "sim-copilot-096d1c4.tar.gz"}


def readme_leaderboard(edition: str) -> dict[str, list[tuple[float, float]]]:
    """The README's leaderboard rows from upstream's archive: model -> the four splits' (rate, ±)."""
    archive = SHARED_DIR / ARCHIVES[edition]
    require(archive.is_file(), f"upstream's archive {archive}")
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.count("/") == 1 and m.name.endswith("/README.md"))
        text = tar.extractfile(member).read().decode("utf-8")
    board = text[text.index("LeaderBoard"):]
    rows = {}
    for line in board.splitlines()[1:]:
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or not re.fullmatch(r"[\d.]+±[\d.]+", cells[1]):
            if rows:
                break
            continue
        rows[cells[0]] = [tuple(float(x) for x in cell.split("±")) for cell in cells[1:5]]
    return rows


@pytest.mark.parametrize("edition", ["2024", "2025"])
def test_the_shipped_table_equals_the_readme_of_its_pinned_commit_cell_for_cell(edition):
    [table] = [t for t in load_tables() if t.edition == edition]
    readme = readme_leaderboard(edition)
    assert len(readme) == {"2024": 10, "2025": 12}[edition]
    shipped = {row.model: [(row.rate(*k).rate, row.rate(*k).half_width) for k in SPLITS] for row in table.rows}
    assert shipped == readme
    assert table.commit.startswith(ARCHIVES[edition].split("-")[-1].split(".")[0])


def test_the_2025_table_says_where_its_open_models_were_served():
    [table] = [t for t in load_tables() if t.edition == "2025"]
    assert "Together" in table.note and table.repository == "mj33rice/Sim-CoPilot"
    assert lookup("2025: Qwen2.5-Coder-32B").rate("python", "infill").rate == 70.2


def test_an_unknown_row_is_one_error_naming_the_value_and_the_choices():
    with pytest.raises(UserError) as raised:
        lookup("2024: Llama 3 70B")  # the 2024 table spells it "LLaMA 3 70B"
    message = str(raised.value)
    assert "'2024: Llama 3 70B'" in message and "2024: LLaMA 3 70B" in message and "\n" not in message
    assert len(references()) == 22


def test_a_matrix_naming_an_unknown_row_fails_to_load_naming_the_field(tmp_path):
    from runner.matrix import load_matrix

    path = tmp_path / "m.toml"
    path.write_text('name = "m"\nbenchmark = "starter"\n[models.qwen]\nname = "Qwen"\npublished = "2025: Qwen 7B"\n'
                    '[models.qwen.quantizations.q4]\nkind = "path"\npath = "/x.gguf"\n'
                    '[[cells]]\nmodel = "qwen"\nruntime = "llamacpp"\nquantization = "q4"\n')
    with pytest.raises(UserError) as raised:
        load_matrix(path)
    message = str(raised.value)
    assert str(path) in message and "published" in message and "2025: Qwen 7B" in message
    assert "2025: Qwen2.5-Coder-32B" in message


def test_the_report_puts_a_cell_beside_its_models_published_row_both_ways(tmp_path):
    from runner.records import Cascade, Cell, Outcome, Sample
    from runner.report import render
    from runner.store import CellResult, Manifest, RunStore

    cell = Cell(model="qwen32", runtime="vllm", quantization="bf16", label="baseline")
    store = RunStore(tmp_path / "runs" / "q")
    store.write_manifest(Manifest(name="q", cells=[cell], matrix={
        "name": "q", "benchmark": "simcopilot", "models": {"qwen32": {"name": "Qwen", "published": "2025: Qwen2.5-Coder-32B"}}}))
    outcomes = [Outcome.passed, Outcome.fail, Outcome.unscoreable]
    for n, outcome in enumerate(outcomes):
        store.append_sample(cell, Sample(task_id=f"python/infill/prog/{n + 1}-{n + 1}", cell_id=cell.id, prompt_style="instruct",
                                         prompt_sha256="0" * 64, outcome=outcome, cleaned_outcome=outcome,
                                         cascade=Cascade.upstream))
    store.write_cell(CellResult(cell=cell, status="done", backend="docker"))

    markdown = render([store.root], tmp_path / "report").markdown.read_text()
    [row] = [line for line in markdown.splitlines() if line.startswith("| qwen32")
             and "2025: Qwen2.5-Coder-32B" in line and "| python infill |" in line]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "2025: Qwen2.5-Coder-32B (mj33rice/Sim-CoPilot@096d1c4 README.md)"
    assert cells[2] == "python infill" and cells[3] == "70.2 ± 4.5"
    assert cells[4].startswith("50.0") and "(n=2)" in cells[4]  # 1 of 2 scoreable
    assert cells[6].startswith("33.3") and "(n=3)" in cells[6]  # 1 of 3, the unscoreable one a failure
    assert "1 unscoreable here" in cells[8] and "379 of 382 tasks not asked or unavailable" in cells[8]
