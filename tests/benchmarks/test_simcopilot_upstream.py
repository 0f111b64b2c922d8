"""Upstream SimCoPilot at the pinned commit, imported from shared/ as a user's offline copy would be."""

from runner.benchmarks import load_benchmark


def test_imported_upstream_has_the_published_task_totals(simcopilot):
    bench = load_benchmark("simcopilot")
    counts = {}
    for task in bench.tasks:
        key = (task.language.value, task.mode.value)
        counts[key] = counts.get(key, 0) + 1
    assert counts == {("python", "infill"): 382, ("python", "completion"): 212,
                      ("java", "infill"): 283, ("java", "completion"): 286}
