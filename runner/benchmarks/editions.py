"""SimCoPilot's two editions: the 2024 release and the repository the paper (arXiv 2505.21514) links.

Both hold the same programs and test cases (the 2025 one lacks one data file); they differ in
the scoring code (``helper_functions/post_gen_process.py`` and the answer extraction) and in
their published tables. Each edition is fetched, verified against its own bundled file list
and installed in its own folder, so both can sit side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.errors import UserError
from runner.records import EditionRef

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Edition:
    """One pinned edition of SimCoPilot: where it comes from and which file list checks it."""

    name: str  # "2024" | "2025": what users type (`--edition`, `edition = "2025"`)
    repository: str  # GitHub owner/name
    commit: str
    manifest: Path  # the kept files with their git blob ids (bundled with the package)
    folder: str  # the install folder's name under $RUNNER_HOME/data
    harness: str  # which of upstream's code layouts scores it (see runner.evaluation.upstream)
    description: str

    @property
    def label(self) -> str:
        """``2025 (mj33rice/Sim-CoPilot@096d1c4)``: the edition as a report header names it."""
        return f"{self.name} ({self.repository}@{self.commit[:7]})"


EDITIONS: dict[str, Edition] = {
    "2024": Edition(
        name="2024", repository="mj33rice/SimCoPilot", commit="90c5560e5c360b8da9fa0631998a17b7a1a5f0b4",
        manifest=_HERE / "simcopilot-90c5560-files.tsv", folder="simcopilot", harness="2024",
        description="the 2024 release (its README's leaderboard: 10 models)"),
    "2025": Edition(
        name="2025", repository="mj33rice/Sim-CoPilot", commit="096d1c42c90419ce2ade414a6ebf11b5a67a0664",
        manifest=_HERE / "simcopilot-096d1c4-files.tsv", folder="simcopilot-2025", harness="2025",
        description="the repository arXiv 2505.21514 links (the paper's table: 12 models)"),
}
#: the edition used when none is named: the 2024 release (see the README on which to pick)
DEFAULT_EDITION = "2024"


def get_edition(name: str | None) -> Edition:
    """The edition called ``name`` (the default for ``None``), or a ``UserError`` listing the known ones."""
    key = DEFAULT_EDITION if name is None else str(name).strip()
    if key not in EDITIONS:
        known = ", ".join(f"{e.name} ({e.repository}@{e.commit[:7]})" for e in EDITIONS.values())
        raise UserError(f"unknown SimCoPilot edition {name!r}; known editions: {known}")
    return EDITIONS[key]


def edition_ref(name: str | None) -> EditionRef:
    """Edition ``name`` as a run records it (the default edition for ``None``); a ``UserError`` if unknown."""
    edition = get_edition(name)
    return EditionRef(name=edition.name, repository=edition.repository, commit=edition.commit)


def edition_of_commit(commit: str) -> Edition | None:
    """The edition pinned at ``commit`` (a full or abbreviated sha), if any."""
    for edition in EDITIONS.values():
        if commit and edition.commit.startswith(commit):
            return edition
    return None
