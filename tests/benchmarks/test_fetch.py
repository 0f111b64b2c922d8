"""Downloading (from a local HTTP server) and importing SimCoPilot copies, for real."""

from __future__ import annotations

import json

import pytest

from runner.benchmarks import load_benchmark, simcopilot_dir
from runner.benchmarks.fetch import URL_ENV, ImportRefused, fetch_simcopilot, import_simcopilot, read_source_record
from runner.benchmarks.manifest import MANIFEST_ENV
from runner.errors import UserError


@pytest.fixture
def pinned(upstream_copy, monkeypatch):
    """Imports check against the tiny copy's manifest instead of the real SimCoPilot one."""
    monkeypatch.setenv(MANIFEST_ENV, str(upstream_copy.manifest))
    return upstream_copy


def leftovers():
    """Staging or download folders an import left in the data folder."""
    data = simcopilot_dir().parent
    return sorted(p.name for p in data.iterdir() if p.name.startswith(".")) if data.exists() else []


def test_fetch_downloads_verifies_and_installs_the_tarball(pinned, http_server, monkeypatch):
    served, base = http_server
    pinned.tarball(served / "snapshot.tar.gz")
    monkeypatch.setenv(URL_ENV, f"{base}/snapshot.tar.gz")
    seen = []

    result = fetch_simcopilot(progress=lambda done, total: seen.append((done, total)))

    assert result.dest == simcopilot_dir()
    assert result.verification.complete
    assert len(result.verification.ok) == 18
    size = (served / "snapshot.tar.gz").stat().st_size
    assert seen[-1] == (size, size)
    assert (result.dest / "example_code/Python/stack_calc/ops.txt").read_bytes() == b"1\n2\n"
    assert not (result.dest / "README.md").exists()  # outside the manifest: left behind
    record = read_source_record()
    assert record["kind"] == "download"
    assert record["source"] == f"{base}/snapshot.tar.gz"
    assert record["commit"] == pinned.commit
    assert record["verification"] == {"ok": 18, "missing": [], "modified": []}
    assert leftovers() == []
    bench = load_benchmark("simcopilot")
    assert len(bench.tasks) == 11 and len(bench.available()) == 11


def test_fetch_reports_an_http_error_and_installs_nothing(pinned, http_server, monkeypatch):
    _, base = http_server
    monkeypatch.setenv(URL_ENV, f"{base}/no-such.tar.gz")

    with pytest.raises(UserError, match="HTTP 404; to import a local copy instead, run `runner data fetch simcopilot --from PATH`"):
        fetch_simcopilot()

    assert not simcopilot_dir().exists()
    assert leftovers() == []


def test_fetch_from_github_installs_the_real_set_or_says_how_to_import_a_local_copy():
    # The real request. Where GitHub is unreachable (as on the development machine) it must fail
    # with one line naming --from; where it is reachable, the pinned commit must verify and load.
    try:
        result = fetch_simcopilot(timeout=60)
    except UserError as error:
        message = str(error)
        assert message.startswith(
            "cannot download https://codeload.github.com/mj33rice/SimCoPilot/tar.gz/90c5560e5c360b8")
        assert "runner data fetch simcopilot --from PATH" in message
        assert "\n" not in message
        assert not simcopilot_dir().exists()
        assert leftovers() == []
    else:
        assert result.verification.complete
        bench = load_benchmark("simcopilot")
        assert len(bench.select(language="python", mode="infill")) == 382
        assert len(bench.select(language="python", mode="completion")) == 212
        assert len(bench.select(language="java", mode="infill")) == 283
        assert len(bench.select(language="java", mode="completion")) == 286
        assert len(bench.available()) == 1163


@pytest.mark.parametrize("where", ["repository", "parent folder"])
def test_import_from_a_directory(pinned, where):
    source = pinned.root if where == "repository" else pinned.root.parent / "unpacked"
    if where == "parent folder":
        source.mkdir()
        pinned.root.rename(source / f"SimCoPilot-{pinned.commit}")

    result = import_simcopilot(source)

    assert result.kind == "directory"
    assert result.verification.complete
    assert (simcopilot_dir() / "example_code/Java/C1/Test/queue.jar").is_file()
    assert load_benchmark("simcopilot").programs["QueueTester"].available


@pytest.mark.parametrize("kind", ["tar.gz with top folder", "tar.gz flat", "zip"])
def test_import_from_an_archive(pinned, tmp_path, kind):
    if kind == "zip":
        archive = pinned.zipfile(tmp_path / "SimCoPilot.zip")
    else:
        archive = pinned.tarball(tmp_path / "SimCoPilot.tar.gz", top=None if "top" in kind else "")

    result = import_simcopilot(archive)

    assert result.kind == "archive"
    assert result.verification.complete
    assert read_source_record()["source"] == str(archive)
    assert len(load_benchmark("simcopilot").available()) == 11


def test_missing_files_are_imported_around_and_their_programs_become_unavailable(pinned):
    pinned.path("example_code/Python/word_freq/words.csv").unlink()

    result = import_simcopilot(pinned.root)

    assert result.verification.missing == ["example_code/Python/word_freq/words.csv"]
    assert read_source_record()["verification"]["missing"] == ["example_code/Python/word_freq/words.csv"]
    bench = load_benchmark("simcopilot")
    assert bench.programs["word_freq"].reason == "missing file words.csv"
    assert len(bench.available()) == 9


def test_modified_files_are_refused_unless_allowed(pinned):
    pinned.path("example_code/Python/stack_calc/ops.txt").write_bytes(b"7\n")

    with pytest.raises(ImportRefused) as error:
        import_simcopilot(pinned.root)

    assert [m.path for m in error.value.verification.modified] == ["example_code/Python/stack_calc/ops.txt"]
    assert "1 file(s) differ" in str(error.value) and "--allow-modified" in str(error.value)
    assert not simcopilot_dir().exists()
    assert leftovers() == []

    result = import_simcopilot(pinned.root, allow_modified=True)

    assert (result.dest / "example_code/Python/stack_calc/ops.txt").read_bytes() == b"7\n"
    record = read_source_record()
    assert record["allow_modified"] is True
    assert record["verification"]["modified"] == ["example_code/Python/stack_calc/ops.txt"]


def test_a_second_import_replaces_the_first_whole(pinned, tmp_path):
    import_simcopilot(pinned.root)
    pinned.path("example_code/Python/word_freq/words.csv").unlink()

    import_simcopilot(pinned.root)

    assert not (simcopilot_dir() / "example_code/Python/word_freq/words.csv").exists()
    assert leftovers() == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "nowhere", "no such file or directory"),
        (lambda tmp: tmp, "no example_code/ folder here or in a single subfolder"),
        (lambda tmp: (tmp / "notes.txt", (tmp / "notes.txt").write_text("hi"))[0], "not a .tar.gz, .tar or .zip archive"),
    ],
    ids=["missing path", "wrong folder", "not an archive"],
)
def test_bad_sources_are_user_errors(pinned, tmp_path, make, message):
    (tmp_path / "empty").mkdir()
    source = make(tmp_path / "empty")

    with pytest.raises(UserError, match=message):
        import_simcopilot(source)

    assert not simcopilot_dir().exists()


def test_an_archive_of_something_else_is_refused(pinned, tmp_path):
    other = tmp_path / "other"
    (other / "example_code").mkdir(parents=True)
    (other / "example_code" / "unrelated.txt").write_text("x")

    with pytest.raises(UserError, match="none of the 18 files of SimCoPilot 1234567 is there; nothing imported"):
        import_simcopilot(other)


def test_loading_before_fetching_says_how_to_fetch():
    with pytest.raises(UserError, match=r"run `runner data fetch simcopilot` \(or .*--from PATH"):
        load_benchmark("simcopilot")


def test_the_installed_copy_keeps_its_manifest_for_the_loader(pinned, monkeypatch):
    import_simcopilot(pinned.root)
    monkeypatch.delenv(MANIFEST_ENV)
    (simcopilot_dir() / "example_code/Java/C1/Test/queue.jar").unlink()

    # The loader reads files.tsv from the copy, not the bundled SimCoPilot manifest.
    bench = load_benchmark("simcopilot")

    assert bench.programs["QueueTester"].reason == "missing file queue.jar"
    assert json.loads((simcopilot_dir() / "source.json").read_text())["kind"] == "directory"
