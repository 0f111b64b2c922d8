"""The upstream-layout reader on a tiny repository built by the ``upstream_copy`` fixture."""

from __future__ import annotations

import json

import pytest

from runner.benchmarks import dump_test_json, load_layout, program_text
from runner.benchmarks.manifest import load_manifest
from runner.errors import UserError
from runner.records import Language, Mode
from runner.records import TestCase as Case  # aliased: pytest would collect a Test* name


def load(copy, **kwargs):
    return load_layout(copy.root, "tiny", **kwargs)


def test_counts_follow_the_checkpoint_lists(upstream_copy):
    bench = load(upstream_copy)

    assert len(bench.tasks) == 11
    assert len(bench.select(language="python", mode="infill")) == 5
    assert len(bench.select(language="python", mode="completion")) == 3
    assert len(bench.select(language=Language.java, mode=Mode.infill)) == 2
    assert len(bench.select(language="java", mode="completion")) == 1
    assert len(bench.select(program="stack_calc")) == 6
    assert bench.available() == bench.tasks
    assert [(c.language.value, c.mode.value, c.program, c.available) for c in bench.counts()] == [
        ("python", "infill", "stack_calc", 4),
        ("python", "infill", "word_freq", 1),
        ("python", "completion", "stack_calc", 2),
        ("python", "completion", "word_freq", 1),
        ("java", "infill", "QueueTester", 2),
        ("java", "completion", "QueueTester", 1),
    ]


def test_a_task_is_the_program_split_around_its_span_with_tabs_as_spaces(upstream_copy):
    task = load(upstream_copy).task("python/infill/stack_calc/4-5")

    assert task.span == (4, 5)
    assert task.before.split("\n") == ["import sys", "", "def push(stack, value):"]
    assert task.reference.split("\n") == ["    stack.append(value)", "    return stack"]
    assert task.after.split("\n") == [
        "",
        "def total(stack):",
        "    return sum(stack)",
        "",
        "def load(path):",
        "    with open(path) as handle:",
        "        return [int(line) for line in handle if line.strip()]",
        "",  # the file ends with a newline
    ]


def test_the_reference_put_back_rebuilds_the_program(upstream_copy):
    bench = load(upstream_copy)
    expanded = upstream_copy.path("example_code/Python/stack_calc/stack_calc.py").read_text().replace("\t", "    ")

    for task in bench.select(program="stack_calc"):
        if task.span[1] < 12:
            assert program_text(task, task.reference) == expanded
        else:  # the span ends the file: only its final newline is not restored
            assert program_text(task, task.reference) == expanded.removesuffix("\n")

    first_line = bench.task("python/completion/stack_calc/8-8")
    assert program_text(first_line, "    return 0").split("\n")[7] == "    return 0"


def test_a_span_listed_twice_gives_two_tasks(upstream_copy):
    ids = [t.id for t in load(upstream_copy).select(language="python", mode="infill", program="stack_calc")]

    assert ids == [
        "python/infill/stack_calc/4-5",
        "python/infill/stack_calc/8-8",
        "python/infill/stack_calc/4-5#2",
        "python/infill/stack_calc/11-12",
    ]


def test_tasks_carry_upstreams_categories_of_their_span(upstream_copy):
    bench = load(upstream_copy)

    # "if Body" is not a spelling upstream's expression knows: it counts for nothing
    assert bench.task("python/infill/stack_calc/4-5").categories == ("Short-Range", "Variable")
    # the distance is recomputed (sys: 11 lines, medium), and only the longest class is kept
    assert bench.task("python/infill/stack_calc/11-12").categories == (
        "List_Comprehension", "Loop Body", "Medium-Range", "Variable", "Library",
    )
    assert bench.task("python/infill/stack_calc/8-8").categories == ()
    assert bench.task("java/infill/QueueTester/5-5").categories == ("Short-Range", "Global_Variable")
    assert bench.task("python/infill/word_freq/3-3").categories == ()  # its reason file is empty


def test_python_programs_carry_their_test_cases_with_newlines_restored(upstream_copy):
    program = load(upstream_copy).programs["stack_calc"]

    assert program.language is Language.python
    assert program.output_to_check == "final_output"
    assert program.data_dir == upstream_copy.path("example_code/Python/stack_calc")
    assert program.test_cases == (
        Case(code="print(total(push([1, 2], 3)))", expected_output="6\n"),
        Case(code="for v in load('ops.txt'):\n    print(v)", expected_output="1\n2\n"),
    )


def test_java_programs_name_their_tester_class_jars_and_the_junit_launcher(upstream_copy):
    bench = load(upstream_copy)
    program = bench.programs["QueueTester"]

    assert program.tester_class == "QueueTester"
    assert program.source == upstream_copy.path("example_code/Java/C1/Test/QueueTester.java")
    assert program.jars == (upstream_copy.path("example_code/Java/C1/Test/queue.jar"),)
    assert program.test_cases == ()
    assert bench.junit_jar == upstream_copy.path("example_code/Java/junit-platform-console-standalone-1.9.3.jar")
    assert bench.task("java/completion/QueueTester/4-6").reference.split("\n") == [
        "    void add(int x) {", "        size++;", "    }",
    ]


def test_a_missing_data_file_makes_only_its_program_unavailable(upstream_copy):
    upstream_copy.path("example_code/Python/word_freq/words.csv").unlink()

    bench = load(upstream_copy, manifest=load_manifest(upstream_copy.manifest))

    word_freq = bench.select(program="word_freq")
    assert [t.available for t in word_freq] == [False, False]
    assert all(t.reason == "missing file words.csv" for t in word_freq)
    assert bench.programs["word_freq"].reason == "missing file words.csv"
    assert word_freq[0].reference == "    rows = list(csv.reader(open(path)))"  # still readable
    assert len(bench.available()) == 9
    # Without a manifest nothing says the file is needed.
    assert load(upstream_copy).programs["word_freq"].available


def test_a_missing_jar_makes_the_java_program_unavailable_but_its_console_json_does_not(upstream_copy):
    manifest = load_manifest(upstream_copy.manifest)
    upstream_copy.path("example_code/Java/C1/Test/QueueTester.json").unlink()
    assert load(upstream_copy, manifest=manifest).programs["QueueTester"].available

    upstream_copy.path("example_code/Java/C1/Test/queue.jar").unlink()
    assert load(upstream_copy, manifest=manifest).programs["QueueTester"].reason == "missing file queue.jar"


@pytest.mark.parametrize(
    ("rel", "content", "reason"),
    [
        ("example_code/Python/stack_calc/stack_calc.py", None, "missing source stack_calc.py"),
        ("example_code/Python/stack_calc/stack_calc.json", None, "missing test file stack_calc.json"),
        ("example_code/Python/stack_calc/stack_calc.json", b"{\"test_case1\": ",
         "malformed JSON in stack_calc.json at line 1: Expecting value"),
        ("example_code/Python/stack_calc/stack_calc.json", b"{\"test_case1\": \"print(1)\"}",
         "stack_calc.json: test_case1 has no expected_output1"),
    ],
)
def test_a_broken_program_makes_only_its_own_tasks_unavailable(upstream_copy, rel, content, reason):
    path = upstream_copy.path(rel)
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)

    bench = load(upstream_copy)

    assert {t.reason for t in bench.select(program="stack_calc")} == {reason}
    assert not any(t.available for t in bench.select(program="stack_calc"))
    assert all(t.available for t in bench.tasks if t.program != "stack_calc")
    assert len(bench.tasks) == 11


def test_a_span_past_the_end_of_the_program_makes_that_task_unavailable(upstream_copy):
    checkpoints = upstream_copy.path("example_code/Java/Java_tasks_checkpoints.json")
    data = json.loads(checkpoints.read_text())
    data[0]["checkpoint_LN_infilling"].append([10, 40])
    checkpoints.write_text(json.dumps(data))

    bench = load(upstream_copy)

    task = bench.task("java/infill/QueueTester/10-40")
    assert not task.available
    assert task.reason == "span 10-40 ends after line 11, the last of QueueTester.java"
    assert bench.task("java/infill/QueueTester/3-3").available


@pytest.mark.parametrize(
    ("rel", "content", "message"),
    [
        ("example_code/Python/Python_tasks_checkpoints.json", "[{\"Task_Name\": ",
         "Python_tasks_checkpoints.json: malformed JSON at line 1 column 16"),
        ("example_code/Python/Python_tasks_checkpoints.json", "{}",
         "Python_tasks_checkpoints.json: expected a list of programs, found dict"),
        ("example_code/Java/Java_tasks_checkpoints.json",
         "[{\"Task_Name\": \"QueueTester\", \"checkpoint_LN_infilling\": [[5, 3]], \"checkpoint_LN_Completion\": []}]",
         "Java_tasks_checkpoints.json: QueueTester: checkpoint_LN_infilling holds [5, 3]"),
        ("example_code/Java/Java_tasks_checkpoints.json",
         "[{\"Task_Name\": \"QueueTester\", \"checkpoint_LN_infilling\": []}]",
         "Java_tasks_checkpoints.json: QueueTester: checkpoint_LN_Completion must be a list"),
        ("example_code/tasks_path.json", "[]", "tasks_path.json: expected an object"),
        ("example_code/tasks_path.json", "{\"Python\": {\"stack_calc\": \"../../etc/passwd\"}}",
         "tasks_path.json: Python.stack_calc = '../../etc/passwd' is not a relative path inside the layout"),
        ("Analysis_Results/Dependency_Records/Python/Verified/stack_calc_reason_verified.csv",
         "reason_category,usage_line\nIf Body,four\n", "stack_calc_reason_verified.csv: line 2: usage_line"),
    ],
)
def test_a_malformed_top_level_file_is_a_user_error_naming_it(upstream_copy, rel, content, message):
    upstream_copy.path(rel).write_text(content)

    with pytest.raises(UserError, match="^" + str(upstream_copy.root).replace("\\", "\\\\")) as error:
        load(upstream_copy)

    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_checkpoint_file_is_a_user_error_naming_it(upstream_copy):
    upstream_copy.path("example_code/Java/Java_tasks_checkpoints.json").unlink()

    with pytest.raises(UserError, match="Java_tasks_checkpoints.json: file is missing; SimCoPilot's upstream"):
        load(upstream_copy)
    with pytest.raises(UserError, match="Java_tasks_checkpoints.json: file is missing; re-import it: runner data"):
        load_layout(upstream_copy.root, "simcopilot")


def test_a_folder_without_example_code_is_not_a_layout(tmp_path):
    with pytest.raises(UserError, match="no example_code/ folder"):
        load_layout(tmp_path, "tiny")
