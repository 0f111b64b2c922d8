"""A matrix's lock (``runner models lock``), against a local stand-in for the Hugging Face Hub's API.

The real Hub cannot be reached from the tests; ``tests.hub_standin`` answers huggingface_hub's own calls
over HTTP on 127.0.0.1, reached through ``HF_ENDPOINT`` as a user would point it at a mirror.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import main
from runner.errors import UserError
from runner.matrix import load_matrix
from runner.serving.lock import load_lock, lock_path, split_parts
from runner.serving.models import fetch_source, prepare
from tests.hub_standin import Hub, git_blob_id
from tests.test_plan import cpu_host  # noqa: F401 - the plan sees a CPU host

ROOT = Path(__file__).resolve().parent.parent
SPLIT = "Q8_0/big-q8_0-00001-of-00003.gguf"


def blob(label: str, size: int) -> bytes:
    """``size`` bytes that differ from every other label's."""
    seed = hashlib.sha256(label.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


MATRIX = f"""
name = "locktest"
[models.tiny]
name = "Tiny"
[models.tiny.quantizations.q8_0]
kind = "hf"
repo = "acme/tiny-GGUF"
revision = "main"
filename = "tiny-q8_0.gguf"
[models.tiny.quantizations.q4_k_m]
kind = "quantize"
of = "q8_0"
type = "Q4_K_M"
[models.tiny.quantizations.bf16]
kind = "hf"
repo = "acme/tiny"
revision = "main"
allow_patterns = ["*.json", "*.safetensors"]
[models.big]
name = "Big"
[models.big.quantizations.q8_0]
kind = "hf"
repo = "acme/big-GGUF"
revision = "main"
filename = "{SPLIT}"
[models.gated]
name = "Gated"
[models.gated.quantizations.q8_0]
kind = "hf"
repo = "meta/gated-GGUF"
revision = "main"
filename = "gated-q8_0.gguf"
[[cells]]
model = "tiny"
runtime = "llamacpp"
quantization = "q4_k_m"
[[cells]]
model = "tiny"
runtime = "vllm"
quantization = "bf16"
[[cells]]
model = "big"
runtime = "llamacpp"
quantization = "q8_0"
[[cells]]
model = "gated"
runtime = "llamacpp"
quantization = "q8_0"
"""


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The stand-in Hub with four repositories, reached through HF_ENDPOINT; downloads land in a fresh cache."""
    hub = Hub().start()
    hub.repo("acme/tiny-GGUF").commit({"tiny-q8_0.gguf": blob("tiny-q8", 3000), "tiny-q4_k_m.gguf": blob("q4", 1800),
                                       "README.md": b"# tiny\n"})
    hub.repo("acme/tiny").commit({"config.json": b'{"model_type": "tiny"}\n', "model.safetensors": blob("st", 4000),
                                  "README.md": b"# tiny\n", "tokenizer.json": b"{}\n"})
    big = hub.repo("acme/big-GGUF")
    big.commit({**{part: blob(part, 2500 + n) for n, part in enumerate(split_parts(SPLIT))},
                "Q4_K_M/big-q4_k_m.gguf": blob("bq4", 900)})
    big.branches["fp16"] = big.commit({"big-f16.gguf": blob("f16", 10)}, branch="fp16")
    big.tags["v1"] = big.branches["main"]
    hub.repo("meta/gated-GGUF", gated="manual", license="llama3", readers={"hf_good"}).commit(
        {"gated-q8_0.gguf": blob("gated", 1200), "LICENSE": b"llama3\n"})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # never the user's token or hub cache
    hub.shared_cache = os.environ["RUNNER_CACHE"]  # conftest's: built servers, prepared test models
    monkeypatch.setenv("RUNNER_CACHE", str(tmp_path / "cache"))
    yield hub
    hub.stop()


def write(tmp_path: Path, text: str = MATRIX) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(text, encoding="utf-8")
    return path


def lock(path: Path, *args: str):
    return CliRunner().invoke(main, ["models", "lock", str(path), *args])


def test_the_lock_records_each_commit_file_size_and_sha256_and_checks_clean_hub_standin(tmp_path, hub):
    path = write(tmp_path)
    result = lock(path)
    assert result.exit_code == 0, result.output
    assert lock_path(path) == tmp_path / "m.lock" and (tmp_path / "m.lock").is_file()
    text = (tmp_path / "m.lock").read_text()
    assert text.startswith(f"# written by `runner models lock {path}`")
    raw = tomllib.loads(text)
    assert raw["version"] == 1 and raw["matrix"] == "m.toml"
    locked = load_lock(path)
    # the quantize rung is made here from its `of`, which is what gets locked; in the matrix's order
    assert [s.key for s in locked.sources] == ["models.tiny.quantizations.q8_0", "models.tiny.quantizations.bf16",
                                               "models.big.quantizations.q8_0", "models.gated.quantizations.q8_0"]
    tiny = locked.entry("tiny", "q8_0")
    assert tiny.commit == hub.repos["acme/tiny-GGUF"].branches["main"] and tiny.revision == "main"
    assert tiny.checked_on == "hub-api" and tiny.evidence == f"{hub.url}/acme/tiny-GGUF/commit/{tiny.commit}"
    (file,) = tiny.files
    content = blob("tiny-q8", 3000)
    assert (file.path, file.size, file.sha256) == ("tiny-q8_0.gguf", 3000, hashlib.sha256(content).hexdigest())
    folder = {f.path: f for f in locked.entry("tiny", "bf16").files}
    assert sorted(folder) == ["config.json", "model.safetensors", "tokenizer.json"]  # not README.md
    config = b'{"model_type": "tiny"}\n'
    # a small file outside LFS: the Hub gives its git blob id, no sha256
    assert folder["config.json"].sha256 is None and folder["config.json"].blob == git_blob_id(config)
    assert folder["model.safetensors"].sha256 == hashlib.sha256(blob("st", 4000)).hexdigest()
    assert "hf_hub" not in text and "apache-2.0" in text
    assert "models.tiny.quantizations.q8_0: acme/tiny-GGUF@main -> " in result.stdout

    started = time.monotonic()
    checked = lock(path, "--check")
    assert checked.exit_code == 0, checked.output
    assert "lock matches the Hub and the matrix" in checked.stdout
    assert time.monotonic() - started < 10
    assert hub.downloads() == []  # metadata only: nothing is downloaded to lock or to check


def test_json_lines_name_each_locked_source_hub_standin(tmp_path, hub):
    result = lock(write(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["model"], line["quantization"]) for line in lines] == [
        ("tiny", "q8_0"), ("tiny", "bf16"), ("big", "q8_0"), ("gated", "q8_0")]
    assert all(len(line["commit"]) == 40 and line["files"] for line in lines)


def test_a_gated_repository_is_locked_from_its_public_metadata_and_its_files_need_a_token_hub_standin(
        tmp_path, hub, monkeypatch):
    path = write(tmp_path)
    assert lock(path).exit_code == 0
    gated = load_lock(path).entry("gated", "q8_0")
    assert gated.gated is True and gated.license == "llama3"
    assert not load_lock(path).entry("tiny", "q8_0").gated
    matrix = load_matrix(path)
    with pytest.raises(UserError, match=r"models.gated.quantizations.q8_0: meta/gated-GGUF@[0-9a-f]{12} is gated; "
                                        "accept its license on its Hugging Face page and set HF_TOKEN"):
        fetch_source(matrix, "gated", "q8_0")
    monkeypatch.setenv("HF_TOKEN", "hf_other")
    with pytest.raises(UserError, match="is gated and HF_TOKEN has no access"):
        fetch_source(matrix, "gated", "q8_0")
    monkeypatch.setenv("HF_TOKEN", "hf_good")
    file, record = fetch_source(matrix, "gated", "q8_0")
    assert file.read_bytes() == blob("gated", 1200) and record.locked_commit == gated.commit

    # a mirror that refuses even the metadata: one line, what to do
    hub.repos["meta/gated-GGUF"].private_metadata = True
    monkeypatch.delenv("HF_TOKEN")
    result = lock(path)
    assert result.exit_code == 2
    (line,) = [x for x in result.output.splitlines() if x.strip()]
    assert line.startswith(f"Error: {path}: models.gated.quantizations.q8_0: meta/gated-GGUF is gated and the Hub "
                           "refuses even its metadata (no HF_TOKEN is set)")


def error_lines(result) -> list[str]:
    return [line.removeprefix("Error: ") for line in result.output.splitlines() if line.strip()]


def test_a_missing_repository_branch_and_file_are_each_one_line_with_what_the_hub_has_hub_standin(tmp_path, hub):
    text = (MATRIX.replace('repo = "acme/tiny"\n', 'repo = "acme/tiny-model"\n')
            .replace('repo = "acme/big-GGUF"\nrevision = "main"', 'repo = "acme/big-GGUF"\nrevision = "q8"')
            .replace('filename = "tiny-q8_0.gguf"', 'filename = "tiny-Q8_0.gguf"'))
    path = write(tmp_path, text)
    result = lock(path)
    assert result.exit_code == 2
    lines = error_lines(result)
    assert len(lines) == 3, result.output
    by_key = {line.split(": ")[1]: line for line in lines}
    big = hub.repos["acme/big-GGUF"]
    assert by_key["models.tiny.quantizations.q8_0"] == (
        f"{path}: models.tiny.quantizations.q8_0: filename = 'tiny-Q8_0.gguf': acme/tiny-GGUF@main (commit "
        f"{hub.repos['acme/tiny-GGUF'].branches['main'][:12]}) has no 'tiny-Q8_0.gguf'; nearest names there: "
        "tiny-q8_0.gguf, tiny-q4_k_m.gguf; fix `filename`")
    assert by_key["models.tiny.quantizations.bf16"] == (
        f"{path}: models.tiny.quantizations.bf16: repo = 'acme/tiny-model': no such repository at {hub.url}, or it "
        "is private: set HF_TOKEN; nearest repositories: acme/tiny, acme/tiny-GGUF; fix `repo`")
    assert by_key["models.big.quantizations.q8_0"] == (
        f"{path}: models.big.quantizations.q8_0: revision = 'q8': acme/big-GGUF has no such branch, tag or commit; "
        f"its branches: fp16 ({big.branches['fp16'][:12]}), main ({big.branches['main'][:12]}); its tags: v1 "
        f"({big.tags['v1'][:12]}); pin one of them (a commit is best)")
    assert not lock_path(path).exists()  # nothing is written while a source does not resolve

    # --check says the same of a matrix never locked, and that it has no lock
    checked = lock(path, "--check")
    assert checked.exit_code == 1
    assert f"{tmp_path / 'm.lock'}: no lock for the 4 Hugging Face sources of {path}" in checked.stdout
    assert sum(line.startswith(f"{path}: models.") for line in checked.stdout.splitlines()) == 3


def test_a_split_gguf_is_locked_downloaded_beside_its_first_part_and_checked_hub_standin(tmp_path, hub, caplog):
    path = write(tmp_path)
    assert lock(path).exit_code == 0
    entry = load_lock(path).entry("big", "q8_0")
    assert [f.path for f in entry.files] == split_parts(SPLIT) == [
        "Q8_0/big-q8_0-00001-of-00003.gguf", "Q8_0/big-q8_0-00002-of-00003.gguf", "Q8_0/big-q8_0-00003-of-00003.gguf"]
    matrix = load_matrix(path)
    cell = next(c for c in matrix.cells if c.model == "big")
    prepared = prepare(matrix, cell)
    first = prepared.files.path
    assert first.name == "big-q8_0-00001-of-00003.gguf" and entry.commit in str(first)
    for n, part in enumerate(split_parts(SPLIT)):  # every part beside the first, as llama.cpp looks for them
        assert (first.parent / Path(part).name).read_bytes() == blob(part, 2500 + n)
    assert hub.downloads() == [f"/acme/big-GGUF/resolve/{entry.commit}/{part}" for part in split_parts(SPLIT)
                               for _ in ("HEAD", "GET")]
    assert prepared.records[0].locked_commit == entry.commit

    # a part the Hub lacks: one line, with the part's number
    hub.repos["acme/big-GGUF"].commit({SPLIT: blob("x", 10), "Q8_0/big-q8_0-00003-of-00003.gguf": blob("y", 10)})
    lock_path(path).unlink()
    result = lock(path)
    assert result.exit_code == 2
    assert (f"models.big.quantizations.q8_0: filename = '{SPLIT}': acme/big-GGUF@main (commit "
            in result.output)
    assert "has no Q8_0/big-q8_0-00002-of-00003.gguf, part 2 of the split GGUF; nearest names there: " in result.output


def test_an_unlocked_split_gguf_comes_whole_with_a_warning_hub_standin(tmp_path, hub, caplog):
    matrix = load_matrix(write(tmp_path))
    with caplog.at_level(logging.WARNING):
        first, record = fetch_source(matrix, "big", "q8_0")
    assert "models.big.quantizations.q8_0: not locked: acme/big-GGUF@main is downloaded at whatever commit" \
        in caplog.text
    assert sorted(p.name for p in first.parent.glob("*.gguf")) == [Path(p).name for p in split_parts(SPLIT)]
    assert record.locked_commit is None and record.revision == hub.repos["acme/big-GGUF"].branches["main"]


def test_a_branch_that_moved_fails_the_check_in_seconds_naming_both_commits_hub_standin(tmp_path, hub):
    path = write(tmp_path)
    assert lock(path).exit_code == 0
    tiny = hub.repos["acme/tiny-GGUF"]
    before = tiny.branches["main"]
    after = tiny.commit({"tiny-q8_0.gguf": blob("tiny-q8-v2", 3000), "README.md": b"# tiny v2\n"})
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "runner.cli", "models", "lock", str(path), "--check"],
                          capture_output=True, text=True, env={**os.environ, "HF_ENDPOINT": hub.url}, cwd=tmp_path,
                          timeout=120)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert (f"{path}: models.tiny.quantizations.q8_0: revision = 'main': locked commit {before}, branch main now at "
            f"{after}; review the change, then run `runner models lock {path}` (or pin revision = '{before}')") in lines
    assert len(lines) == 1  # the locked commit still holds the locked file: only the move is news
    assert "1 problem(s)" in done.stderr and "Traceback" not in done.stderr
    assert elapsed < 30  # a fresh interpreter included; the check itself is a handful of metadata calls
    assert hub.downloads() == []


def test_preparation_downloads_the_locked_commit_never_the_branch_hub_standin(tmp_path, hub):
    path = write(tmp_path)
    assert lock(path).exit_code == 0
    locked = load_lock(path).entry("tiny", "q8_0").commit
    hub.repos["acme/tiny-GGUF"].commit({"tiny-q8_0.gguf": blob("moved", 3000)})  # main moves on
    file, record = fetch_source(load_matrix(path), "tiny", "q8_0")
    assert file.read_bytes() == blob("tiny-q8", 3000)
    assert (record.revision, record.locked_commit) == (locked, locked)
    assert all(f"/resolve/{locked}/" in p for p in hub.downloads())


def test_a_folder_source_checks_its_small_files_by_git_blob_id_hub_standin(tmp_path, hub):
    path = write(tmp_path)
    assert lock(path).exit_code == 0
    prepared = CliRunner().invoke(main, ["models", "prepare", str(path), "--cell", "tiny/vllm/bf16/baseline", "--json"])
    assert prepared.exit_code == 0, prepared.output
    (record,) = [json.loads(line) for line in prepared.stdout.splitlines()]
    commit = load_lock(path).entry("tiny", "bf16").commit
    assert record["key"] == "tiny:bf16" and record["revision"] == record["locked_commit"] == commit
    folder = Path(record["path"])
    assert folder.name == commit
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "config.json", "model.safetensors", "tokenizer.json"]
    # the Hub serves another config.json of the same size at the locked commit: its blob id tells
    hub.repos["acme/tiny"].served["config.json"] = b'{"model_type": "tinz"}\n'
    (folder / "config.json").unlink()
    locked = git_blob_id(b'{"model_type": "tiny"}\n')
    with pytest.raises(UserError, match=rf"models.tiny.quantizations.bf16: acme/tiny@[0-9a-f]{{12}}/config.json: the "
                                        rf"download \(.*config.json\) has git blob [0-9a-f]{{40}}, but .*m.lock locks "
                                        rf"git blob {locked}"):
        fetch_source(load_matrix(path), "tiny", "bf16")


def test_a_download_whose_sha256_differs_from_the_lock_is_refused_and_deleted_hub_standin(tmp_path, hub):
    path = write(tmp_path)
    assert lock(path).exit_code == 0
    entry = load_lock(path).entry("tiny", "q8_0")
    good = blob("tiny-q8", 3000)
    bad = bytes([good[0] ^ 1]) + good[1:]  # one bit flipped: the same size
    hub.repos["acme/tiny-GGUF"].served["tiny-q8_0.gguf"] = bad
    matrix = load_matrix(path)
    with pytest.raises(UserError) as caught:
        fetch_source(matrix, "tiny", "q8_0")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: models.tiny.quantizations.q8_0: acme/tiny-GGUF@{entry.commit[:12]}/"
                              "tiny-q8_0.gguf: the download (")
    assert (f"has sha256 {hashlib.sha256(bad).hexdigest()}, but {tmp_path / 'm.lock'} locks sha256 "
            f"{hashlib.sha256(good).hexdigest()}; it was deleted") in message
    target = Path(message.split("the download (")[1].split(")")[0])
    assert not target.exists()
    # the mirror fixed: the next preparation downloads it afresh and accepts it
    del hub.repos["acme/tiny-GGUF"].served["tiny-q8_0.gguf"]
    file, _ = fetch_source(matrix, "tiny", "q8_0")
    assert file == target and file.read_bytes() == good


def test_a_lock_that_no_longer_matches_its_matrix_is_said_by_check_plan_and_prepare_hub_standin(
        tmp_path, hub, cpu_host):
    from runner.planning.plan import make_plan

    path = write(tmp_path)
    assert lock(path).exit_code == 0
    plan = make_plan(load_matrix(path), host=cpu_host)
    by_id = {c.id: c for c in plan.cells}
    commit = load_lock(path).entry("tiny", "q8_0").commit
    assert by_id["tiny/llamacpp/q4_k_m/baseline"].lock == f"locked {commit[:8]}"  # made from the locked q8_0
    assert not any(p.startswith("lock stale") for p in plan.problems)
    row = next(line for line in plan.lines() if line.startswith("tiny/llamacpp/q4_k_m/baseline"))
    assert row.endswith(f"locked {commit[:8]}")

    # the matrix now names another revision of one source, and adds a source
    text = MATRIX.replace('repo = "acme/big-GGUF"\nrevision = "main"', 'repo = "acme/big-GGUF"\nrevision = "v1"')
    text += ('[models.tiny.quantizations.q4_0]\nkind = "hf"\nrepo = "acme/tiny-GGUF"\nrevision = "main"\n'
             'filename = "tiny-q4_k_m.gguf"\n[[cells]]\nmodel = "tiny"\nruntime = "llamacpp"\nquantization = "q4_0"\n')
    write(tmp_path, text)
    checked = lock(path, "--check")
    assert checked.exit_code == 1, checked.output
    lines = checked.stdout.splitlines()
    assert (f"{path}: models.big.quantizations.q8_0: the lock no longer matches its matrix (revision 'main' in the "
            f"lock, 'v1' in the matrix); run `runner models lock {path}`") in lines
    assert (f"{path}: models.tiny.quantizations.q4_0: not in m.lock: the lock no longer matches its matrix; run "
            f"`runner models lock {path}`") in lines
    assert len(lines) == 2

    matrix = load_matrix(path)
    plan = make_plan(matrix, host=cpu_host)
    stale = [p for p in plan.problems if p.startswith("lock stale: ")]
    assert len(stale) == 2 and not plan.complete
    by_id = {c.id: c for c in plan.cells}
    assert by_id["big/llamacpp/q8_0/baseline"].lock == "not locked" == by_id["tiny/llamacpp/q4_0/baseline"].lock
    planned = CliRunner().invoke(main, ["reproduce", str(path), "--plan"])
    assert planned.exit_code == 1
    assert f"cannot start: lock stale: {path}: models.big.quantizations.q8_0: the lock no longer" in planned.output
    with pytest.raises(UserError, match=rf"models.big.quantizations.q8_0: lock stale: revision 'main' in the lock, "
                                        rf"'v1' in the matrix; run `runner models lock {path}`"):
        fetch_source(matrix, "big", "q8_0")
    # an entry no cell uses any more is said too
    write(tmp_path, MATRIX.split("[[cells]]")[0] + '[[cells]]\nmodel = "tiny"\nruntime = "vllm"\nquantization = "bf16"\n')
    unused = lock(path, "--check")
    assert unused.exit_code == 1
    assert f"{tmp_path / 'm.lock'}: models.big.quantizations.q8_0: no cell of {path} uses this source" in unused.stdout


def test_a_malformed_lock_names_its_file_and_field(tmp_path, hub):
    path = write(tmp_path)
    assert lock(path).exit_code == 0
    text = lock_path(path).read_text()
    commit = load_lock(path).entry("tiny", "q8_0").commit
    lock_path(path).write_text(text.replace(commit, "not-a-commit", 1))
    with pytest.raises(UserError, match=r"m.lock: source\[0\].commit = 'not-a-commit': a commit is 40 hexadecimal "
                                        "digits"):
        load_lock(path)
    result = CliRunner().invoke(main, ["reproduce", str(path), "--plan"])
    assert result.exit_code == 2 and "source[0].commit = 'not-a-commit'" in result.output
    lock_path(path).write_text("version = 1\nmatrix = [")
    with pytest.raises(UserError, match=r"m.lock: not valid TOML: .*; write it again with `runner models lock"):
        load_lock(path)
    assert lock(path).exit_code == 0  # locking again replaces it
    assert load_lock(path).entry("tiny", "q8_0").commit == commit


def test_the_plan_says_not_locked_where_a_matrix_has_no_lock(tmp_path, cpu_host):
    from runner.planning.plan import make_plan

    plan = make_plan(load_matrix(write(tmp_path)), host=cpu_host)
    assert {c.lock for c in plan.cells} == {"not locked"}
    assert not any("lock" in p for p in plan.problems)


HAND_WRITTEN = """
# checked by hand on the Hub's public pages
version = 1
matrix = "m.toml"

[[source]]
model = "big"
quantization = "q8_0"
repo = "acme/big-GGUF"
revision = "main"
commit = "{commit}"
filename = "{split}"
allow_patterns = []
gated = false
license = "apache-2.0"
checked = 2026-12-07
checked_on = "hub-pages"
evidence = "https://huggingface.co/acme/big-GGUF/commit/{commit}"
replaces = "acme/big-q8-GGUF (no such repository)"
why = "the original's repository is gone"
{files}
"""


def test_a_lock_written_by_hand_from_the_hubs_pages_is_read_and_used_hub_standin(tmp_path, hub):
    # the schema's other origin: an entry read off the commit and file pages, with notes and a bare date
    path = write(tmp_path)
    big = hub.repos["acme/big-GGUF"]
    commit = big.branches["main"]
    files = "".join(f'\n[[source.files]]\npath = "{part}"\nsize = {2500 + n}\n'
                    f'sha256 = "{hashlib.sha256(blob(part, 2500 + n)).hexdigest()}"\n'
                    f'evidence = "https://huggingface.co/acme/big-GGUF/blob/{commit}/{part}"\n'
                    + ('size_note = "2.4 kB on the page"\n' if n == 0 else "")
                    for n, part in enumerate(split_parts(SPLIT)))
    lock_path(path).write_text(HAND_WRITTEN.format(commit=commit, split=SPLIT, files=files), encoding="utf-8")
    entry = load_lock(path).entry("big", "q8_0")
    assert (entry.checked, entry.checked_on, entry.files[0].size_note) == ("2026-12-07", "hub-pages", "2.4 kB on the page")
    first, record = fetch_source(load_matrix(path), "big", "q8_0")
    assert record.locked_commit == commit and first.read_bytes() == blob(SPLIT, 2500)
    # the other sources are not in it: --check says so, and that the Hub agrees with the entry it has
    checked = lock(path, "--check")
    assert checked.exit_code == 1
    assert sorted(line.split(": ")[1] for line in checked.stdout.splitlines()) == [
        "models.gated.quantizations.q8_0", "models.tiny.quantizations.bf16", "models.tiny.quantizations.q8_0"]
    assert all("not in m.lock: the lock no longer matches its matrix" in line for line in checked.stdout.splitlines())
    # locking again keeps what was written by hand about the source
    assert lock(path).exit_code == 0
    again = load_lock(path).entry("big", "q8_0")
    assert (again.replaces, again.why, again.checked_on) == ("acme/big-q8-GGUF (no such repository)",
                                                              "the original's repository is gone", "hub-api")
    assert again.files[0].size_note == "2.4 kB on the page"


def split_gguf(source: Path, out: Path, parts: int) -> list[Path]:
    """``source`` rewritten as a split GGUF of ``parts`` files (gguf-py's writer, as llama.cpp's gguf-split lays it out)."""
    import math

    import gguf
    from gguf.scripts.gguf_new_metadata import copy_with_new_metadata

    out.parent.mkdir(parents=True, exist_ok=True)
    reader = gguf.GGUFReader(source)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(out, arch, split_max_tensors=math.ceil(len(reader.tensors) / parts))
    copy_with_new_metadata(reader, writer, {}, [])
    return sorted(out.parent.glob(f"{out.stem}-*-of-*.gguf"))


@pytest.mark.timeout(600)
def test_llama_server_serves_a_locked_split_gguf_from_the_download_folder_hub_standin(tmp_path, hub, monkeypatch):
    # real llama.cpp: the parts the runner downloads beside the first are the ones it loads
    import httpx

    from runner.backends.local import LocalBackend
    from runner.runtimes import get_runtime
    from runner.runtimes.llamacpp import llama_server_path
    from tests.conftest import require
    from tests.llama_server import gemma_gguf

    cache = os.environ["RUNNER_CACHE"]
    monkeypatch.setenv("RUNNER_CACHE", hub.shared_cache)  # the shared llama-server and Gemma file
    binary = llama_server_path()
    require(binary.is_file() and os.access(binary, os.X_OK), f"llama-server at {binary}")
    parts = split_gguf(gemma_gguf(), tmp_path / "split" / "gemma-q4_k_m.gguf", 3)
    monkeypatch.setenv("RUNNER_LLAMA_SERVER", str(binary))
    monkeypatch.setenv("RUNNER_CACHE", cache)
    assert [p.name for p in parts] == [f"gemma-q4_k_m-0000{n}-of-00003.gguf" for n in (1, 2, 3)]
    hub.repo("acme/gemma-GGUF").commit({f"Q4_K_M/{p.name}": p.read_bytes() for p in parts})
    path = write(tmp_path, MATRIX + '[models.gemma]\nname = "Gemma"\n[models.gemma.quantizations.q4_k_m]\n'
                 'kind = "hf"\nrepo = "acme/gemma-GGUF"\nrevision = "main"\n'
                 f'filename = "Q4_K_M/{parts[0].name}"\n'
                 '[[cells]]\nmodel = "gemma"\nruntime = "llamacpp"\nquantization = "q4_k_m"\n')
    assert lock(path).exit_code == 0
    assert len(load_lock(path).entry("gemma", "q4_k_m").files) == 3
    matrix = load_matrix(path)
    cell = next(c for c in matrix.cells if c.model == "gemma")
    files = prepare(matrix, cell).files
    assert sorted(p.name for p in files.path.parent.iterdir()) == [p.name for p in parts]
    spec = get_runtime("llamacpp").server_spec(cell, files, threads=1)
    log = tmp_path / "server.log"
    with LocalBackend().serve(spec, log, health_timeout=300) as server:
        answer = httpx.post(f"{server.base_url}/v1/completions", timeout=120,
                            json={"prompt": "def add(a, b):\n", "max_tokens": 4, "temperature": 0}).json()
    assert answer["usage"]["completion_tokens"] > 0
    # the first part alone holds a third of the weights: the answer needed the parts beside it
    import gguf

    first = len(gguf.GGUFReader(parts[0]).tensors)
    assert 0 < first < sum(len(gguf.GGUFReader(p).tensors) for p in parts)


def _hand_made_folder_lock(path: Path, hub, *, sha256_of_model: bytes | None, with_config: bool) -> str:
    """A hub-pages entry for acme/tiny that lists fewer files than the selection takes, sizes unknown."""
    commit = hub.repos["acme/tiny"].branches["main"]
    files = ""
    if with_config:
        files += '\n[[source.files]]\npath = "config.json"\nnote = "not LFS: sha256 not shown on the page"\n'
    files += ('\n[[source.files]]\npath = "model.safetensors"\nsize_note = "rounded: 4 kB"\n'
              + (f'sha256 = "{hashlib.sha256(sha256_of_model).hexdigest()}"\n' if sha256_of_model else ""))
    lock_path(path).write_text(f"""
version = 1
matrix = "m.toml"
[[source]]
model = "tiny"
quantization = "bf16"
repo = "acme/tiny"
revision = "main"
commit = "{commit}"
allow_patterns = ["*.json", "*.safetensors"]
gated = false
checked = 2026-12-07
checked_on = "hub-pages"
evidence = "https://huggingface.co/acme/tiny/tree/{commit}"
complete = false
{files}""", encoding="utf-8")
    return commit


def test_an_incomplete_hand_made_entry_is_completed_from_the_hub_at_its_commit_hub_standin(tmp_path, hub):
    path = write(tmp_path)
    commit = _hand_made_folder_lock(path, hub, sha256_of_model=blob("st", 4000), with_config=True)
    hub.repos["acme/tiny"].commit({"config.json": b'{"model_type": "moved"}\n', "model.safetensors": blob("x", 9)})
    folder, record = fetch_source(load_matrix(path), "tiny", "bf16")
    # every file the selection takes at the locked commit, not the branch's new head, with exact sizes
    assert record.locked_commit == commit and folder.name == commit
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "config.json", "model.safetensors", "tokenizer.json"]
    assert (folder / "model.safetensors").read_bytes() == blob("st", 4000)
    assert (folder / "config.json").read_bytes() == b'{"model_type": "tiny"}\n'
    assert all(f"/resolve/{commit}/" in p for p in hub.downloads())
    # --check names the entry as incomplete, with the remedy
    checked = lock(path, "--check")
    assert checked.exit_code == 1
    assert any("models.tiny.quantizations.bf16" in line and "files the selection takes" in line
               and "to complete it" in line for line in checked.stdout.splitlines())


def test_a_hand_made_sha256_the_hub_contradicts_at_the_same_commit_is_refused_hub_standin(tmp_path, hub):
    path = write(tmp_path)
    _hand_made_folder_lock(path, hub, sha256_of_model=b"not the shard", with_config=False)
    with pytest.raises(UserError, match=r"models.tiny.quantizations.bf16: acme/tiny@[0-9a-f]{12}/model.safetensors: "
                                        r".*m.lock locks sha256 [0-9a-f]{64}, the Hub has [0-9a-f]{64} at the same commit"):
        fetch_source(load_matrix(path), "tiny", "bf16")


TOKENIZER_MATRIX = """
name = "retok"
[models.tiny]
name = "Tiny"
[models.tiny.quantizations.bf16]
kind = "hf"
repo = "acme/tiny-fixed"
revision = "main"
[models.tiny.quantizations."exl2-4.0"]
kind = "hf"
repo = "acme/tiny-exl2"
revision = "main"
tokenizer_of = "bf16"
[[cells]]
model = "tiny"
runtime = "exllama"
quantization = "exl2-4.0"
"""


def test_tokenizer_of_serves_the_weights_with_the_other_sources_tokenizer_files_hub_standin(tmp_path, hub):
    hub.repo("acme/tiny-fixed").commit({"config.json": b"{}\n", "model.safetensors": blob("bf16", 5000),
                                        "tokenizer.model": b"fixed-spm", "tokenizer_config.json": b'{"fim": true}\n'})
    hub.repo("acme/tiny-exl2").commit({"config.json": b'{"q": 4}\n', "output.safetensors": blob("exl2", 2000),
                                       "tokenizer.model": b"old-spm", "tokenizer_config.json": b'{"fim": false}\n'})
    path = write(tmp_path, TOKENIZER_MATRIX)
    matrix = load_matrix(path)
    # the lock covers the tokenizer's source too, though no cell serves it
    assert lock(path).exit_code == 0
    assert {(s.model, s.quantization) for s in load_lock(path).sources} == {("tiny", "bf16"), ("tiny", "exl2-4.0")}
    prepared = prepare(matrix, matrix.cells[0])
    folder = prepared.files.path
    assert (folder / "output.safetensors").read_bytes() == blob("exl2", 2000)
    assert (folder / "config.json").read_bytes() == b'{"q": 4}\n'
    assert (folder / "tokenizer.model").read_bytes() == b"fixed-spm"
    assert (folder / "tokenizer_config.json").read_bytes() == b'{"fim": true}\n'
    # hard links, not symbolic ones: a container that mounts the folder reads them
    assert not any(p.is_symlink() for p in folder.iterdir())
    assert [r.source.split(":")[0] for r in prepared.records][-1] == "retokenized"
    # a tokenizer_of that names nothing of the model is one line at load time
    bad = write(tmp_path, TOKENIZER_MATRIX.replace('tokenizer_of = "bf16"', 'tokenizer_of = "fp8"'))
    with pytest.raises(UserError, match=r'models.tiny.quantizations.exl2-4.0.tokenizer_of = .fp8.: name another '
                                        r'quantization of this model'):
        load_matrix(bad)


GPTQ_MATRIX = """
name = "gptq"
[models.tiny]
name = "Tiny"
[models.tiny.quantizations.gptq]
kind = "hf"
repo = "acme/tiny-GPTQ"
revision = "main"
allow_patterns = ["*.json", "*.safetensors"]
[[cells]]
model = "tiny"
runtime = "vllm"
quantization = "gptq"
"""


@pytest.mark.parametrize("desc_act,refused", [(True, True), (False, False)])
def test_check_reads_a_gptq_checkpoints_settings_and_names_what_vllm_would_refuse_hub_standin(tmp_path, hub, desc_act,
                                                                                              refused):
    settings = {"bits": 4, "group_size": 128, "desc_act": desc_act, "sym": True, "quant_method": "gptq"}
    hub.repo("acme/tiny-GPTQ").commit({"config.json": b'{"model_type": "llama"}\n',
                                       "quantize_config.json": json.dumps(settings).encode(),
                                       "model.safetensors": blob("gptq", 3000)})
    path = write(tmp_path, GPTQ_MATRIX)
    assert lock(path).exit_code == 0
    checked = lock(path, "--check")
    lines = checked.stdout.splitlines()
    if refused:
        assert checked.exit_code == 1
        (line,) = lines
        assert line.startswith(f"{path}: models.tiny.quantizations.gptq: quantize_config.json of acme/tiny-GPTQ@")
        assert "desc_act = true with group_size = 128, which vLLM 0.32.0 refuses" in line
    else:
        assert checked.exit_code == 0, checked.output
