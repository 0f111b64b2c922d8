"""Checking small real Python programs: every outcome, both comparison modes, data files."""

from __future__ import annotations

import pytest

from runner.errors import UserError
from runner.evaluation.python_check import check_python, outputs_match
from runner.records import Outcome
from tests.evaluation.conftest import FAST, python_program

SOURCE = "import csv\n\ndef total(path):\n    with open(path) as f:\n        return sum(int(r['n']) for r in csv.DictReader(f))\n"
CASES = [("print(total('numbers.csv'))", "6"), ("print('sum:', total('numbers.csv') * 2)", "sum: 12")]


@pytest.fixture
def program(world_dir):
    return python_program(world_dir, "summer", SOURCE, CASES, data={"numbers.csv": "n\n1\n2\n3\n"})


def test_a_correct_program_passes_every_case_reading_its_data_file(program, sandbox):
    result = check_python(program, SOURCE, sandbox, FAST)
    assert result.outcome is Outcome.passed
    assert [o.strip() for o in result.outputs] == ["6", "sum: 12"]


def test_a_wrong_answer_fails_and_says_what_differed(program, sandbox):
    wrong = SOURCE.replace("sum(", "1 + sum(")
    result = check_python(program, wrong, sandbox, FAST)
    assert result.outcome is Outcome.fail
    assert "'7'" in result.stderr_tail and "'6'" in result.stderr_tail


def test_a_syntax_error_is_a_compile_error_found_before_running(program, sandbox):
    result = check_python(program, SOURCE.replace("return sum", "return sum)"), sandbox, FAST)
    assert result.outcome is Outcome.compile_error
    assert result.outputs == []


def test_an_exception_is_a_runtime_error_with_its_stderr(program, sandbox):
    result = check_python(program, SOURCE.replace("numbers.csv", "x") + "\nraise KeyError('boom')\n", sandbox, FAST)
    assert result.outcome is Outcome.runtime_error
    assert "KeyError: 'boom'" in result.stderr_tail


def test_a_hanging_program_times_out(program, sandbox):
    result = check_python(program, SOURCE + "\nimport time\ntime.sleep(60)\n", sandbox, FAST)
    assert result.outcome is Outcome.timeout


def test_final_output_compares_only_the_last_line_and_all_output_the_whole_text():
    assert outputs_match("debug\n  42  \n\n", "42", "final_output")
    assert not outputs_match("42\ndebug", "42", "final_output")
    assert outputs_match("a   b\n\tc\n", "a b c", "all_output")
    assert not outputs_match("a b\nc d", "a b c", "all_output")


def test_all_output_programs_fail_on_any_changed_line(world_dir, sandbox):
    program = python_program(world_dir, "lines", "print('x')\nprint('y')\n", [("", "x\ny")], output_to_check="all_output")
    assert check_python(program, "print('x')\nprint('y')\n", sandbox, FAST).outcome is Outcome.passed
    changed = check_python(program, "print('z')\nprint('y')\n", sandbox, FAST)
    assert changed.outcome is Outcome.fail
    # the last lines agree: the message points at the first word that does not
    assert "last line 'y', expected 'y'; word 1 of 2 is 'z', expected 'x'" in changed.stderr_tail


def test_a_program_without_test_cases_is_a_user_error(world_dir, sandbox):
    program = python_program(world_dir, "bare", "x = 1\n", [])
    with pytest.raises(UserError, match="no test cases"):
        check_python(program, "x = 1\n", sandbox, FAST)
