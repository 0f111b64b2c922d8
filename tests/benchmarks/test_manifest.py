"""Git blob ids and manifest verification, checked against the real ``git``."""

from __future__ import annotations

import os
import subprocess

import pytest

from runner.benchmarks.manifest import (
    BUNDLED_MANIFEST,
    MANIFEST_ENV,
    SIMCOPILOT_COMMIT,
    active_manifest,
    file_blob_sha1,
    git_blob_sha1,
    load_manifest,
    verify_tree,
)
from runner.errors import UserError


def git_hash_object(path) -> str:
    return subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize(
    "content",
    [b"", b"hello\n", "tab\tand ünïcode\r\n".encode(), bytes(range(256)) * 3, os.urandom(3 << 20)],
    ids=["empty", "text", "crlf-unicode", "binary", "3MiB-random"],
)
def test_blob_ids_match_git_hash_object(tmp_path, content):
    path = tmp_path / "file"
    path.write_bytes(content)

    expected = git_hash_object(path)

    assert git_blob_sha1(content) == expected
    assert file_blob_sha1(path) == expected


def test_the_bundled_manifest_lists_the_pinned_commit(tmp_path):
    manifest = load_manifest()

    assert manifest.commit == SIMCOPILOT_COMMIT
    # 100 data and template files, the 13 upstream code files the scoring loads at run time, and
    # the category analysers and notebook the category test compares with
    assert len(manifest.entries) == 117
    cascade = manifest.entries["helper_functions/post_gen_process.py"]
    assert (cascade.blob_sha1, cascade.size) == ("9f944c390185003754ae339e3fa8c9028f9dfdea", 40061)
    simplex = manifest.entries["example_code/Python/simplex_method/simplex_method.py"]
    assert (simplex.blob_sha1, simplex.size) == ("a722758adb130589cb4a454bebd28bf7e8ace10e", 5830)
    assert manifest.entries["example_code/Java/COMP215/A1/Test/allWordsBig"].size is None  # "unknown"
    assert [e.path.rsplit("/", 1)[1] for e in manifest.under("example_code/Java/COMP215/A7/Test")] == [
        "AVLTopKMachine.jar", "MTreeTester.java", "MTreeTester.json", "doublevector.jar", "mtree.jar",
    ]
    # The empty file upstream ships has git's well-known empty blob id.
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert manifest.entries["example_code/Python/simplex_method/input_output.txt"].blob_sha1 == git_hash_object(empty)


def test_verification_names_missing_and_modified_files(upstream_copy):
    manifest = load_manifest(upstream_copy.manifest)
    upstream_copy.path("example_code/Python/word_freq/words.csv").unlink()
    upstream_copy.path("example_code/Python/stack_calc/ops.txt").write_bytes(b"1\n3\n")

    report = verify_tree(upstream_copy.root, manifest)

    assert report.missing == ["example_code/Python/word_freq/words.csv"]
    assert [m.path for m in report.modified] == ["example_code/Python/stack_calc/ops.txt"]
    modified = report.modified[0]
    assert modified.actual_sha1 == git_hash_object(upstream_copy.path("example_code/Python/stack_calc/ops.txt"))
    assert modified.expected_sha1 != modified.actual_sha1
    assert (modified.expected_size, modified.actual_size) == (4, 4)
    assert len(report.ok) == len(manifest.entries) - 2
    assert not report.complete
    assert report.summary() == {
        "ok": len(manifest.entries) - 2,
        "missing": ["example_code/Python/word_freq/words.csv"],
        "modified": ["example_code/Python/stack_calc/ops.txt"],
    }


def test_an_intact_copy_verifies_completely(upstream_copy):
    report = verify_tree(upstream_copy.root, load_manifest(upstream_copy.manifest))

    assert report.complete
    assert "README.md" not in report.ok  # files outside the manifest are not its business


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path\tsha\n", "line 1 must be the header"),
        ("path\tgit_blob_sha1\tsize_bytes\na.txt\t1234\t5\n", "line 2: '1234' is not a 40-digit git blob id"),
        ("path\tgit_blob_sha1\tsize_bytes\na.txt\t" + "a" * 40 + "\tbig\n", "line 2: size 'big'"),
        ("path\tgit_blob_sha1\tsize_bytes\n../a.txt\t" + "a" * 40 + "\t5\n", "line 2: '../a.txt' is not a relative"),
        ("path\tgit_blob_sha1\tsize_bytes\na.txt\t" + "a" * 40 + "\n", "line 2 has 2 columns, expected 3"),
    ],
)
def test_a_malformed_manifest_is_a_user_error_with_its_line(tmp_path, text, message):
    path = tmp_path / "files.tsv"
    path.write_text(text)

    with pytest.raises(UserError, match=str(path)) as error:
        load_manifest(path)

    assert message in str(error.value)


def test_the_manifest_can_be_replaced_by_environment(upstream_copy, monkeypatch):
    assert active_manifest().source == BUNDLED_MANIFEST

    monkeypatch.setenv(MANIFEST_ENV, str(upstream_copy.manifest))
    manifest = active_manifest()

    assert manifest.commit == upstream_copy.commit  # read from simcopilot-<commit>-files.tsv
    assert "example_code/Python/stack_calc/ops.txt" in manifest.entries
