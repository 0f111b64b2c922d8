"""The two editions of SimCoPilot side by side: each verified against its own file list, installed apart."""

from __future__ import annotations

import json

import pytest

from runner.benchmarks import benchmark_commit, load_benchmark
from runner.benchmarks.editions import EDITIONS, get_edition
from runner.errors import UserError
from runner.evaluation import upstream


def test_both_editions_load_side_by_side_with_their_own_commit(simcopilot, simcopilot_2025):
    old, new = load_benchmark("simcopilot"), load_benchmark("simcopilot", "2025")

    assert (old.edition, new.edition) == ("2024", "2025")
    assert benchmark_commit(old).startswith("90c5560") and benchmark_commit(new).startswith("096d1c4")
    assert json.loads((simcopilot_2025 / "source.json").read_text())["repository"] == "mj33rice/Sim-CoPilot"
    # the same 1,163 tasks, cut identically from identical programs
    assert len(old.tasks) == len(new.tasks) == 1163
    assert [(t.id, t.before, t.reference, t.after) for t in old.tasks] == \
        [(t.id, t.before, t.reference, t.after) for t in new.tasks]


def test_each_edition_is_scored_by_its_own_code(simcopilot, simcopilot_2025):
    old, new = upstream.load(simcopilot), upstream.load(simcopilot_2025)

    assert (old.edition, new.edition) == ("2024", "2025")
    assert old.hf_llms_gen is not None and new.hf_llms_gen is None
    # 2025's cleaner gained detect_natural_language; 2024's has none
    assert hasattr(new.post_gen_process, "detect_natural_language")
    assert not hasattr(old.post_gen_process, "detect_natural_language")


def test_the_2024_extraction_strips_the_first_lines_indent_and_2025s_keeps_it(simcopilot, simcopilot_2025):
    task = next(t for t in load_benchmark("simcopilot", "2025").tasks
                if t.id == "python/infill/simplex_method/4-4")
    raw = f"Sure:\n# --BEGIN MISSING CODE--\n{task.reference}\n\n# --END MISSING CODE--\nDone."

    assert upstream.extract(upstream.load(simcopilot), raw, task) == task.reference.strip()
    assert upstream.extract(upstream.load(simcopilot_2025), raw, task) == task.reference
    assert task.reference.startswith("   ")


def test_an_unknown_edition_is_refused_naming_the_known_ones():
    with pytest.raises(UserError, match=r"unknown SimCoPilot edition '2023'; known editions: 2024 .*, 2025 "):
        get_edition("2023")
    assert set(EDITIONS) == {"2024", "2025"}


def test_a_missing_edition_says_how_to_fetch_it(simcopilot):
    with pytest.raises(UserError, match=r"run `runner data fetch simcopilot --edition 2025`"):
        load_benchmark("simcopilot", "2025")


@pytest.mark.parametrize("name, listing", [("2024", "simcopilot-90c5560-files.tsv"),
                                           ("2025", "sim-copilot-096d1c4-files.tsv")])
def test_each_bundled_file_list_is_a_subset_of_its_commits_listing(name, listing):
    from runner.benchmarks.manifest import load_manifest
    from tests.conftest import SHARED_DIR, require

    require((SHARED_DIR / listing).is_file(), f"upstream file list {listing}")
    edition = get_edition(name)
    bundled = load_manifest(edition.manifest, commit=edition.commit).entries
    published = {line.split("\t")[0]: line.split("\t")[1]
                 for line in (SHARED_DIR / listing).read_text().splitlines()[1:] if line}

    # shared/'s 2024 list holds the data files only; every file it does list must agree
    listed = {path: e.blob_sha1 for path, e in bundled.items() if name == "2025" or path in published}
    assert len(listed) > 80 and listed.items() <= published.items()
    # the scoring code each edition's harness imports is in its list
    harness = upstream.HARNESSES[edition.harness]
    assert set(harness.sources.values()) <= set(bundled)


def test_2025_tasks_take_their_categories_from_the_2024_records_which_its_commit_lacks(simcopilot, simcopilot_2025):
    old, new = load_benchmark("simcopilot"), load_benchmark("simcopilot", "2025")

    assert not (simcopilot_2025 / "Analysis_Results").exists()
    assert [t.categories for t in new.tasks] == [t.categories for t in old.tasks]
    assert sum(bool(t.categories) for t in new.tasks) > 1000
    assert new.notes[0].startswith("categories: from SimCoPilot 2024 (mj33rice/SimCoPilot@90c5560)")


def test_without_the_2024_copy_the_2025_tasks_carry_no_categories_and_say_so(simcopilot_2025):
    new = load_benchmark("simcopilot", "2025")

    assert not any(t.categories for t in new.tasks)
    assert new.notes[0].startswith("categories: none (the 2025 commit has no Analysis_Results")
