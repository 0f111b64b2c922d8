"""Loading SimCoPilot's own scoring code from the fetched copy, and what it leaves behind."""

from __future__ import annotations

import sys

from runner.benchmarks import load_benchmark
from runner.evaluation import upstream


def test_upstream_code_loads_from_the_fetched_copy_and_leaves_no_stub_behind(simcopilot):
    import pandas  # a real library a stub stands in for during the import

    up = upstream.load()
    assert up.root == simcopilot.resolve()
    assert up.post_gen_process.__file__ == str(simcopilot.resolve() / "helper_functions/post_gen_process.py")
    assert sys.modules["pandas"] is pandas
    for name in ("openai", "anthropic", "tiktoken", "torch", "transformers", "helper_functions"):
        module = sys.modules.get(name)
        assert module is None or "inert stand-in" not in (module.__doc__ or ""), name
    assert upstream.load() is up  # once per copy


def test_upstream_quirks_are_upstreams(simcopilot):
    up = upstream.load()
    task = load_benchmark("simcopilot").task("python/infill/simplex_method/20-21")
    # the marker extraction strips the first line's indentation
    raw = f"# --BEGIN MISSING CODE--\n{task.reference}\n# --END MISSING CODE--"
    assert upstream.extract(up, raw, task) == task.reference.strip()
    # without a fence, clean_code keeps only the lines its code regex recognises
    stages = upstream.post_process(up, "Here is the code:\n" + task.reference, task)
    assert stages["cleaned_code"] == task.reference
