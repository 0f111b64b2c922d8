"""SimCoPilot's task categories, per language x mode, against upstream's own analysis code."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import json
import sys
import types
from collections import Counter

from runner.benchmarks import categories, load_benchmark
from runner.records import Language
from tests.conftest import require


def _module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def notebook_label_mapping(path) -> dict:
    """The ``label_mapping`` literal of upstream's analysis notebook."""
    for cell in json.loads(path.read_text())["cells"]:
        source = "".join(cell["source"])
        if "label_mapping = {" in source:
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "label_mapping":
                    return ast.literal_eval(node.value)
    raise AssertionError("no label_mapping in the notebook")


def test_category_counts_per_split_equal_upstreams_analysis(simcopilot):
    try:
        import pandas as pd
    except ImportError:
        pd = None
    require(pd is not None, "pandas (upstream's analysis code reads the records with it)")
    root = simcopilot
    # javalang parses Java sources, which reading the verified records never does: a stand-in
    sys.modules.setdefault("javalang", types.ModuleType("javalang"))
    python_analyzer = _module(root / "dependency_analyzer/analyzer.py", "upstream_analyzer").DependencyAnalyzer
    java_analyzer = _module(root / "dependency_analyzer/Java_analyzer.py", "upstream_java_analyzer").JavaDependencyAnalyzer
    frequency = _module(root / "helper_functions/dependency_result_analysis.py", "upstream_dependency_result_analysis")
    analysis = _module(root / "helper_functions/code_gen_result_analysis.py", "upstream_code_gen_result_analysis")
    mapping = notebook_label_mapping(root / "helper_functions/code_gen_result_display.ipynb")
    assert categories.LABEL_MAPPING == mapping
    horizon_pattern, reason_pattern = frequency.define_patterns()

    bench = load_benchmark("simcopilot")
    rows: dict[tuple[str, str], list[dict]] = {}
    for program in bench.programs.values():
        cls = python_analyzer if program.language is Language.python else java_analyzer
        folder = "Python" if program.language is Language.python else "Java"
        analyzer = object.__new__(cls)  # the constructor parses the source, which this path never reads
        analyzer.csv_save_path = f"{root}/Analysis_Results/Dependency_Records/{folder}/"
        analyzer.short_range, analyzer.medium_range = 10, 30  # upstream's script defaults
        for task in bench.select(program=program.name):
            analyzer.start_line, analyzer.end_line = task.span
            with contextlib.redirect_stdout(io.StringIO()):  # upstream prints every record
                _, _, reasons, horizons = analyzer.analyze_dependencies(str(program.source), read_from_results=True)
            reason_freq = frequency.perform_frequency_analysis(reasons, reason_pattern)
            horizon_freq = frequency.perform_frequency_analysis(horizons, horizon_pattern)
            # CodeAnalysis.overwrite_cols, row by row (its ``df.at[i, col] = dict`` fails on current pandas)
            rows.setdefault((task.language.value, task.mode.value), []).append({
                "reason_freq_analysis": {mapping.get(k, k): v for k, v in reason_freq.items()},
                "horizon_freq_analysis": analysis.overwrite_first_word_in_dict_keys(horizon_freq, mapping),
                "gen_code_pass_ratio": "1/1"})
    for (language, mode), split in rows.items():
        code_analysis = analysis.CodeAnalysis(use_max_range=True)
        frame = pd.DataFrame(split)
        theirs = {}
        for label in code_analysis.labels_reasons + code_analysis.labels_horizons:
            column = code_analysis.reason_analysis_col if label in code_analysis.labels_reasons \
                else code_analysis.horizon_analysis_col
            _, applicable = code_analysis.boolean_pass_ratio(frame, label, column)
            if applicable and label not in categories.DROPPED[Language(language)]:
                theirs[label] = applicable
        ours = Counter(label for t in bench.select(language=language, mode=mode) for label in t.categories)
        assert dict(ours) == theirs, (language, mode)
    # the paper's splits are all there, and the distance classes are upstream's (longest per task)
    assert len(rows) == 4
    assert all(sum(l in categories.RANGES for l in t.categories) <= 1 for t in bench.tasks)


def test_distance_class_is_the_longest_and_thresholds_are_10_and_30():
    records = categories.Records(reasons=(("Elif Body", 5), (" If Body", 5), ("Loop Body", 40)),
                                 dependencies=((5, 4, "local"), (6, 30, "function"), (6, 6, "local")))
    assert categories.labels(records, Language.python, 5, 6) == ("If Body", "Medium-Range", "Variable", "Function")
    # 11 lines is medium, 31 long; a record on its own definition line counts only in Java
    records = categories.Records(reasons=(), dependencies=((50, 39, "locals"), (50, 19, "globals"), (50, 50, "locals")))
    assert categories.labels(records, Language.java, 50, 50) == ("Long-Range", "Variable", "Global_Variable")
