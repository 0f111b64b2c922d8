"""SimCoPilot's editions through the command line: fetch, list, matrices, runs and `runner score`.

The scoring tests judge, in the local sandbox, answers whose verdict differs between the editions:
a two-line Python answer between upstream's BEGIN/END markers whose first line is indented. 2024's
extraction ``.strip()``s the answer (its first line loses its indentation: a compile error), 2025's
keeps it (a pass); a one-line answer passes under both (upstream's re-indentation fixes it).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.benchmarks import EDITIONS, load_benchmark, simcopilot_dir
from runner.cli import main
from runner.errors import UserError
from runner.evaluation.sandbox import capabilities
from runner.matrix import load_matrix
from tests.conftest import SIMCOPILOT_2025_ARCHIVE, require

PASS_BOTH = "python/infill/simplex_method/4-4"  # one line: 2024's stripped first line is re-indented
FLIPS = "python/infill/simplex_method/20-21"  # two lines: 2024 strips the first one's indent only


def invoke(*args: str, **kwargs):
    return CliRunner().invoke(main, list(args), **kwargs)


def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    [line] = [l for l in result.stderr.splitlines() if l.startswith("Error:")]
    for needle in needles:
        assert needle in line, line


# -- fetch and list ----------------------------------------------------------------------------
def test_fetch_edition_2025_installs_in_its_own_folder_and_lists_its_tasks(isolated_home):
    require(SIMCOPILOT_2025_ARCHIVE.is_file(), f"upstream Sim-CoPilot 2025 archive ({SIMCOPILOT_2025_ARCHIVE})")

    fetched = invoke("data", "fetch", "simcopilot", "--edition", "2025", "--from", str(SIMCOPILOT_2025_ARCHIVE))

    assert fetched.exit_code == 0, fetched.output[-3000:]
    dest = isolated_home / "data" / "simcopilot-2025"
    assert simcopilot_dir("2025") == dest and not simcopilot_dir("2024").exists()
    assert fetched.stdout.startswith(f"SimCoPilot 096d1c4 (edition 2025, mj33rice/Sim-CoPilot) installed in {dest}: ")
    source = json.loads((dest / "source.json").read_text())
    assert (source["edition"], source["repository"]) == ("2025", "mj33rice/Sim-CoPilot")

    listed = invoke("tasks", "list", "--benchmark", "simcopilot", "--edition", "2025")

    assert listed.exit_code == 0, listed.output
    assert "of 1163 tasks available (edition 2025)" in listed.stdout
    rows = [[c.strip() for c in line.strip("│┃ ").split("│")] for line in listed.stdout.splitlines() if "│" in line]
    [total] = [r for r in rows if r[:3] == ["all", "all", "all programs"]]
    assert int(total[3]) + int(total[4]) == 1163
    # the default edition is not there: its commands say how to get it
    one_line_error(invoke("tasks", "list", "--benchmark", "simcopilot"), "runner data fetch simcopilot`")


def test_a_missing_edition_says_how_to_fetch_it_in_one_line(simcopilot, tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"task_id": PASS_BOTH, "text": "x"}) + "\n")

    for args in (["tasks", "list", "--benchmark", "simcopilot", "--edition", "2025"],
                 ["tasks", "check", "--benchmark", "simcopilot", "--edition", "2025", "--program", "simplex_method"],
                 ["tasks", "rebaseline", "--benchmark", "simcopilot", "--edition", "2025"],
                 ["score", str(answers), "--benchmark", "simcopilot", "--edition", "2025"],
                 ["score", str(answers), "--benchmark", "simcopilot", "--edition", "2024", "--edition", "2025"]):
        one_line_error(invoke(*args), "runner data fetch simcopilot --edition 2025")


def test_the_starter_set_refuses_another_edition_and_an_edition_twice_is_refused(tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"task_id": "python/infill/expr_interpreter/49-50", "text": "x"}) + "\n")

    one_line_error(invoke("tasks", "list", "--edition", "2025"), "--edition 2025", "'starter' has no editions")
    one_line_error(invoke("score", str(answers), "--benchmark", "starter", "--edition", "2025"),
                   "'starter' has no editions")
    assert invoke("tasks", "list", "--edition", "2024").exit_code == 0  # the default edition: nothing to refuse
    one_line_error(invoke("score", str(answers), "--edition", "2025", "--edition", "2025"),
                   "--edition 2025 is given twice")
    unknown = invoke("tasks", "list", "--edition", "2030")
    assert unknown.exit_code == 2 and "'2030' is not one of '2024', '2025'" in unknown.output


def test_the_cli_offers_exactly_the_known_editions():
    from runner.cli import _EDITION_NAMES

    assert set(_EDITION_NAMES) == set(EDITIONS)


# -- matrices ------------------------------------------------------------------------------------
MATRIX = """
name = "ed"
benchmark = "simcopilot"
{head}
[tasks]
programs = ["simplex_method"]
[models.tiny]
name = "Tiny"
[models.tiny.quantizations.q4_k_m]
kind = "path"
path = "/models/tiny.gguf"
[[cells]]
model = "tiny"
runtime = "llamacpp"
quantization = "q4_k_m"
"""


def write_matrix(tmp_path: Path, head: str, benchmark: str = "simcopilot") -> Path:
    path = tmp_path / "ed.toml"
    path.write_text(MATRIX.format(head=textwrap.dedent(head)).replace('"simcopilot"', f'"{benchmark}"'))
    return path


@pytest.mark.parametrize("head, message", [
    ('edition = "2030"', "edition = '2030': unknown SimCoPilot edition; known editions: "
                         "2024 (mj33rice/SimCoPilot@90c5560), 2025 (mj33rice/Sim-CoPilot@096d1c4)"),
    ('edition = "2024"\ncompare_editions = ["2024"]',
     "compare_editions = '2024': that is the headline edition (edition = '2024')"),
    ('compare_editions = ["2024"]', "compare_editions = '2024': that is the headline edition"),
    ('edition = "2025"\ncompare_editions = ["1999"]', "compare_editions = '1999': unknown SimCoPilot edition"),
    ('edition = "2025"\ncompare_editions = ["2024", "2024"]', "compare_editions = '2024': listed twice"),
])
def test_a_bad_edition_in_a_matrix_is_one_line_naming_file_field_and_value(tmp_path, head, message):
    path = write_matrix(tmp_path, head)
    with pytest.raises(UserError) as info:
        load_matrix(path)
    [line] = str(info.value).splitlines()
    assert line == f"{path}: {message}" or line.startswith(f"{path}: {message}")

    result = invoke("reproduce", str(path), "--runs-dir", str(tmp_path / "runs"))
    one_line_error(result, str(path), message)


def test_a_matrix_names_its_edition_and_the_editions_it_compares_with(tmp_path):
    default = load_matrix(write_matrix(tmp_path, ""))
    assert (default.edition, default.compare_editions) == ("2024", ())

    both = load_matrix(write_matrix(tmp_path, 'edition = 2025\ncompare_editions = ["2024"]'))
    assert (both.edition, both.compare_editions) == ("2025", ("2024",))
    assert both.resolved()["edition"] == "2025" and both.resolved()["compare_editions"] == ["2024"]
    # `reproduce --edition` overrides the headline; the compared edition that became it leaves the list
    assert both.with_edition("2024").edition == "2024" and both.with_edition("2024").compare_editions == ()
    assert both.with_edition(None) is both

    with pytest.raises(UserError, match="benchmark 'starter' has no editions"):
        load_matrix(write_matrix(tmp_path, 'edition = "2025"', benchmark="starter"))
    starter = load_matrix(write_matrix(tmp_path, "", benchmark="starter"))
    with pytest.raises(UserError, match="--edition 2025: .* runs benchmark 'starter', which has no editions"):
        starter.with_edition("2025")


def test_a_run_records_its_edition_and_refuses_to_resume_under_another(simcopilot, simcopilot_2025, tmp_path):
    from runner.running.run import Reproduction, RunOptions
    from runner.store import RunStore

    matrix = load_matrix(write_matrix(tmp_path, ""))
    options = RunOptions(runs_dir=tmp_path / "runs")
    manifest = Reproduction(matrix, options)._open_store()
    assert manifest.edition.label == "2024 (mj33rice/SimCoPilot@90c5560)"
    assert manifest.edition.commit == EDITIONS["2024"].commit

    with pytest.raises(UserError, match="different matrix edition.*--fresh"):
        Reproduction(matrix.with_edition("2025"), options)._open_store()

    # a run made before editions was 2024's: it resumes under 2024, and only 2024
    store = RunStore(tmp_path / "runs" / "ed")
    old = store.read_manifest()
    store.write_manifest(old.model_copy(update={"edition": None, "matrix": {
        k: v for k, v in old.matrix.items() if k not in ("edition", "compare_editions")}}))
    assert Reproduction(matrix, options)._open_store().edition.name == "2024"
    store.write_manifest(old.model_copy(update={"edition": None, "matrix": {
        k: v for k, v in old.matrix.items() if k not in ("edition", "compare_editions")}}))
    with pytest.raises(UserError, match="different matrix edition"):
        Reproduction(matrix.with_edition("2025"), options)._open_store()

    fresh = Reproduction(matrix.with_edition("2025"), RunOptions(runs_dir=tmp_path / "runs", fresh=True))
    assert fresh._open_store().edition.label == "2025 (mj33rice/Sim-CoPilot@096d1c4)"
    assert fresh.benchmark.edition == "2025"


# -- the report header ---------------------------------------------------------------------------
def test_every_report_header_names_the_runs_edition(tmp_path):
    from runner.benchmarks.editions import edition_ref
    from runner.report import render
    from runner.report.data import load_run
    from tests.report.conftest import A100, BASELINE, H100, write_run

    new = write_run(tmp_path / "runs", "new", H100, [BASELINE], speed=1.0, seed=1, benchmark="simcopilot")
    new.write_manifest(new.read_manifest().model_copy(update={"edition": edition_ref("2025")}))
    old = write_run(tmp_path / "runs", "old", A100, [BASELINE], speed=1.0, seed=2, benchmark="simcopilot")
    starter = write_run(tmp_path / "runs", "starter", A100, [BASELINE], speed=1.0, seed=3)

    assert load_run(new.root).edition_label == "SimCoPilot 2025 (mj33rice/Sim-CoPilot@096d1c4)"
    assert load_run(old.root).edition_label == \
        "SimCoPilot 2024 (mj33rice/SimCoPilot@90c5560), assumed: the run predates editions"
    assert load_run(starter.root).edition_label == "the starter set"

    paths = render([new.root, old.root], tmp_path / "report")
    readme, html = paths.markdown.read_text(), paths.html.read_text()
    assert "judged on SimCoPilot 2025 (mj33rice/Sim-CoPilot@096d1c4)" in readme
    assert "judged on SimCoPilot 2024 (mj33rice/SimCoPilot@90c5560), assumed: the run predates editions" in readme
    assert "judged on SimCoPilot 2025 (mj33rice/Sim-CoPilot@096d1c4)" in html


# -- runner score --------------------------------------------------------------------------------
def marked(task) -> str:
    """An answer as Meta's models give it: the span between upstream's marker lines, first line indented."""
    return f"Sure:\n# --BEGIN MISSING CODE--\n{task.reference}\n# --END MISSING CODE--\nDone."


def test_score_judges_the_same_answers_under_each_edition_and_both(simcopilot, simcopilot_2025, tmp_path):
    require(capabilities().complete, "a complete local sandbox")
    bench = load_benchmark("simcopilot", "2025")
    first, flips = bench.task(PASS_BOTH), bench.task(FLIPS)
    assert flips.reference.startswith("   ") and "\n" in flips.reference.strip()
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"task_id": t.id, "text": marked(t)}) + "\n" for t in (first, flips)))
    common = ["--benchmark", "simcopilot", "--sandbox", "local", "--workers", "2"]

    def verdicts(*editions: str) -> dict[str, dict]:
        result = invoke("score", str(answers), "--json", *common, *[a for e in editions for a in ("--edition", e)])
        assert result.exit_code == 0, result.output[-3000:]
        return {r["task_id"]: r for r in map(json.loads, result.stdout.splitlines())}

    old = verdicts()  # the default edition: 2024
    assert {k: (r["edition"], r["outcome"], r["editions"]) for k, r in old.items()} == {
        PASS_BOTH: ("2024", "pass", []), FLIPS: ("2024", "compile_error", [])}
    new = verdicts("2025")
    assert {k: (r["edition"], r["outcome"]) for k, r in new.items()} == {PASS_BOTH: ("2025", "pass"),
                                                                          FLIPS: ("2025", "pass")}
    both = verdicts("2024", "2025")
    assert {k: (r["edition"], r["outcome"], [(v["edition"], v["outcome"], v["cascade"]) for v in r["editions"]])
            for k, r in both.items()} == {PASS_BOTH: ("2024", "pass", [("2025", "pass", "upstream")]),
                                         FLIPS: ("2024", "compile_error", [("2025", "pass", "upstream")])}

    table = invoke("score", str(answers), *common, "--edition", "2025", "--edition", "2024", env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output[-3000:]
    assert "simcopilot 2025: 2 answers, upstream cascade" in table.stdout
    assert "the same answers under each edition" in table.stdout
    rows = [[c.strip() for c in line.split("│") if c.strip()] for line in table.stdout.splitlines()
            if "python infill" in line]
    # the headline table, then the editions': 2025 2/2, 2024 1/2, one verdict flips of two
    assert rows[1] == ["python infill", "2/2", "100.0", "1/2", "50.0", "1/2"]
    assert "edition 2024: checking the environment" in table.stderr


def test_a_task_another_edition_lacks_is_unscoreable_there_with_why(simcopilot, simcopilot_2025):
    from runner.running import score as scoring

    class Nothing:  # no task is judged: the only answer's task is unavailable in 2024
        def evaluate_many(self, items, workers=None):
            assert items == []
            return iter(())

    new, old = load_benchmark("simcopilot", "2025"), load_benchmark("simcopilot")
    task = next(t for t in new.available() if not old.task(t.id).available)
    pairs = [(task, scoring.Answer(task_id=task.id, text="x"))]

    assert scoring.edition_tasks(pairs, old) == []
    [verdict] = scoring.edition_verdicts(pairs, old, Nothing()).values()
    assert (verdict.edition, verdict.outcome.value) == ("2024", "unscoreable")
    assert verdict.unscoreable_reason == f"not available in edition 2024: {old.task(task.id).reason}"
