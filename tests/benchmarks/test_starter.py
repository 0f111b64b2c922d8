"""The shipped starter set, read by the same upstream-layout loader as SimCoPilot."""

from __future__ import annotations

import json

from runner import paths
from runner.benchmarks import load_benchmark
from runner.records import Language


def test_the_starter_set_has_the_tasks_its_author_listed():
    bench = load_benchmark("starter")

    assert len(bench.tasks) == 121
    assert len(bench.available()) == 121
    assert sorted(bench.programs) == [
        "LRUCacheTester", "SparseMatrixTester", "expr_interpreter", "job_scheduler", "lu_solver", "shortest_paths",
    ]
    assert (len(bench.select(language="python")), len(bench.select(language="java"))) == (81, 40)
    assert len(bench.select(language="python", mode="infill")) == 51
    assert len(bench.select(language="java", mode="completion")) == 19
    assert len({t.id for t in bench.tasks}) == 121


def test_a_python_infill_task_is_cut_at_its_span():
    bench = load_benchmark("starter")
    task = bench.task("python/infill/expr_interpreter/49-50")
    source = bench.programs["expr_interpreter"].source.read_text().split("\n")

    assert task.reference.split("\n") == ['        if kind == "SKIP":', "            continue"]
    before = task.before.split("\n")
    assert len(before) == 48
    assert before[-2:] == ["        kind = match.lastgroup", "        text = match.group()"]
    assert before == source[:48]
    assert task.after.split("\n")[0] == '        if kind == "MISMATCH":'
    assert task.after.split("\n") == source[50:]
    assert task.categories == ("If Condition", "If Body", "Loop Body", "Short-Range", "Variable")


def test_a_completion_task_at_the_end_of_the_file():
    task = load_benchmark("starter").task("python/completion/expr_interpreter/229-231")

    assert task.reference.split("\n") == [
        '    ok = sum(1 for status, _ in history if status == "ok")',
        "    errors = len(history) - ok",
        '    return "%d ok, %d errors" % (ok, errors)',
    ]
    assert task.before.split("\n")[-1] == "def summarize(history):"
    assert task.after == ""  # only the file's final newline follows


def test_a_java_task_and_its_program():
    bench = load_benchmark("starter")
    task = bench.task("java/infill/LRUCacheTester/83-85")
    program = bench.program_of(task)

    assert task.language is Language.java
    assert task.reference.split("\n") == ["    if (index.size() == capacity) {", "      evictOldest();", "    }"]
    assert task.before.split("\n")[-2:] == ["      return old;", "    }"]
    assert task.after.split("\n")[0] == "    node = new Node<K, V>(key, value);"
    assert task.categories == ("If Condition", "If Body", "Long-Range", "Global_Variable", "Function")
    assert program.tester_class == "LRUCacheTester"
    assert program.jars == ()
    assert program.source.name == "LRUCacheTester.java"


def test_python_programs_carry_unescaped_expected_outputs():
    program = load_benchmark("starter").programs["expr_interpreter"]

    assert program.output_to_check == "final_output"
    assert program.test_cases[0].code.startswith('if __name__ == "__main__":\n    interp = Interpreter()\n')
    assert program.test_cases[0].expected_output == (
        "['3', '7', '46', '-4', '512', '-1.5', '5', '9', '17', '1', '1', '5.414214']\n"
    )


def test_a_folder_of_old_rebaselined_outputs_no_longer_replaces_upstreams():
    # it applied to every environment alike; drifted outputs are now re-recorded per environment
    # and per program by the environment check (runner.evaluation.environment)
    folder = paths.runner_home() / "rebaseline" / "starter"  # where runner 0.1 kept them
    folder.mkdir(parents=True)
    (folder / "lu_solver.json").write_text(json.dumps({"test_case1": "print(1)", "expected_output1": "1\\n"}))

    bench = load_benchmark("starter")

    assert bench.programs["lu_solver"].test_cases[0].code != "print(1)"
    assert bench.programs["lu_solver"].tests_json == bench.programs["lu_solver"].source.with_suffix(".json")
