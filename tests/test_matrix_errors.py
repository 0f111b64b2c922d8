"""A matrix's mistakes, said so that a person can fix them: the key path, the value, "did you mean",
what to write instead, every mistake at once."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from runner.cli import main
from runner.errors import UserError
from runner.matrix import load_matrix
from runner.matrix.faults import MAX_PROBLEMS
from tests.test_matrix import problems, write

CELL = """
    [[cells]]
    model = "tiny"
    runtime = "llamacpp"
    quantization = "q8_0"
    prompt_styles = ["codestral-fim"]
"""


def test_a_misspelled_key_gets_did_you_mean_with_the_file_key_path_and_value(tmp_path):
    path = write(tmp_path, """
        [settings]
        max_tokns = 200
        paralel_cells = 2
    """ + CELL + """
        quantisation = "q8_0"
    """)
    assert problems(path) == [
        f"{path}: settings.max_tokns = 200: unknown key; did you mean `max_tokens`? rename it",
        f"{path}: settings.paralel_cells = 2: unknown key; did you mean `parallel_cells`? rename it",
        f"{path}: cells[0].quantisation = 'q8_0': unknown key; did you mean `quantization`? rename it",
    ]


def test_a_misspelled_table_gets_did_you_mean(tmp_path):
    path = write(tmp_path, """
        [setings]
        max_tokens = 200
    """ + CELL)
    assert problems(path) == [f"{path}: setings: unknown table; did you mean `settings`? rename it"]


def test_a_misspelled_array_of_tables_and_name_values_get_did_you_mean(tmp_path):
    path = write(tmp_path, 'backend = "dokcer"\n' + CELL.replace("[[cells]]", "[[cell]]") + """
        [[cells]]
        model = "tin"
        runtime = "llamacpp"
        quantization = "q8_0"
    """)
    assert problems(path) == [
        f"{path}: cell: unknown array of tables; did you mean `cells`? rename it",
        f"{path}: backend = 'dokcer': unknown backend; did you mean 'docker'? known: docker, local",
        f"{path}: cells[0].model = 'tin': unknown model; did you mean 'tiny'? known: tiny",
    ]


def test_a_technique_written_as_a_key_of_the_cell_says_where_it_goes(tmp_path):
    path = write(tmp_path, CELL + """
        parallel = 4
    """)
    assert problems(path) == [f'{path}: cells[0].parallel = 4: parallel is a technique, not a key of its own; '
                              'write techniques = { parallel = "4" }']


def test_a_number_given_as_text_is_refused_not_coerced(tmp_path):
    path = write(tmp_path, """
        [settings]
        max_tokens = "200"
        temperature = "0.5"
        reuse_verdicts = "true"
    """ + CELL)
    assert problems(path) == [
        f"{path}: settings.max_tokens = '200': a number is needed, not text; drop the quotes: max_tokens = 200",
        f"{path}: settings.temperature = '0.5': a number is needed, not text; drop the quotes: temperature = 0.5",
        f"{path}: settings.reuse_verdicts = 'true': true or false is needed, not text; drop the quotes: "
        "reuse_verdicts = true",
    ]


def test_a_boolean_is_not_a_number_and_an_integer_is_a_float(tmp_path):
    path = write(tmp_path, """
        [settings]
        max_tokens = true
    """ + CELL)
    (line,) = problems(path)
    assert line == f"{path}: settings.max_tokens = True: Input should be a valid integer"
    path.write_text(path.read_text().replace("max_tokens = true", "temperature = 1"))
    assert load_matrix(path).settings.temperature == 1.0


def test_an_unquoted_word_as_a_value_gets_the_quoted_form(tmp_path):
    path = write(tmp_path, CELL + """
        techniques = { spec = ngram }
    """)
    (line,) = problems(path)
    assert line.startswith(f"{path}: not valid TOML: ")
    assert line.endswith('; text values are quoted in TOML: write spec = "ngram"')


def test_mistakes_of_validation_and_of_the_checks_after_it_are_reported_together(tmp_path):
    # a misspelled key, a switch given as a list, a switch the runtime lacks and a runtime that does not
    # exist: all four, each on its own line, although the first two stop validation before the runtime
    # is looked up
    path = write(tmp_path, """
        [settings]
        max_tokns = 200
        [[cells]]
        model = "tiny"
        runtime = "llamacpp"
        quantization = "q8_0"
        prompt_styles = ["codestral-fim"]
        variants = [{ techniques = { parallel = [4] } }, { techniques = { kv_cache = "fp9" } }]
        [[cells]]
        model = "tiny"
        runtime = "vlm"
        quantization = "q8_0"
    """)
    lines = problems(path)
    assert lines[:2] == [
        f"{path}: settings.max_tokns = 200: unknown key; did you mean `max_tokens`? rename it",
        f"{path}: cells[0].variants[0].techniques.parallel = [4]: Input should be a valid string",
    ]
    # the positions are the file's, though variants[0] was set aside to check the rest
    assert lines[2].startswith(f"{path}: cells[0].variants[1]: cell tiny/llamacpp/q8_0/kv_cache=fp9: ")
    assert lines[3].startswith(f"{path}: cells[1].runtime = 'vlm': unknown runtime")
    assert len(lines) == 4


def test_a_model_at_fault_is_said_once_not_again_for_each_cell_that_uses_it(tmp_path):
    models = """
[models.tiny]
name = "Tiny"
[models.tiny.quantizations.q8_0]
kind = "hf"
repo = "org/tiny"
"""
    path = write(tmp_path, CELL.replace('prompt_styles = ["codestral-fim"]', "") + """
        [[cells]]
        model = "tiny"
        runtime = "nope"
        quantization = "q8_0"
    """, models)
    assert problems(path) == [f"{path}: models.tiny.quantizations.q8_0: kind 'hf' needs revision"]


def test_a_required_key_missing_in_one_group_leaves_the_others_checked(tmp_path):
    path = write(tmp_path, """
        [[cells]]
        model = "tiny"
        quantization = "q8_0"
        [[cells]]
        model = "tiny"
        runtime = "vlm"
        quantization = "q8_0"
    """)
    lines = problems(path)
    assert lines[0] == f"{path}: cells[0].runtime: required key is missing"
    assert lines[1].startswith(f"{path}: cells[1].runtime = 'vlm': unknown runtime")
    assert len(lines) == 2


def test_many_mistakes_are_listed_up_to_a_cap_with_a_count_of_the_rest(tmp_path):
    body = "[settings]\n" + "".join(f"key_{i} = {i}\n" for i in range(MAX_PROBLEMS + 5)) + CELL
    lines = problems(write(tmp_path, body))
    assert len(lines) == MAX_PROBLEMS + 1
    assert lines[-1].endswith(": … and 5 more problems; fix these and run again")


def test_the_cli_prints_each_of_thirty_mistakes_whole_on_its_own_line(tmp_path):
    body = "[settings]\n" + "".join(f"a_rather_long_key_that_is_not_a_setting_{i} = {i}\n"
                                    for i in range(MAX_PROBLEMS + 5)) + CELL
    path = write(tmp_path, body)
    result = CliRunner().invoke(main, ["reproduce", str(path), "--plan"])
    assert result.exit_code == 2
    lines = [line.removeprefix("Error: ") for line in result.output.splitlines()]
    assert lines == problems(path) and len(lines) == MAX_PROBLEMS + 1
    assert all(line.startswith(f"{path}: ") for line in lines)


def test_the_cli_says_every_mistake_one_a_line_without_a_traceback(tmp_path):
    path = write(tmp_path, """
        [settings]
        max_tokens = "200"
        concurency = 2
    """ + CELL)
    result = CliRunner().invoke(main, ["reproduce", str(path), "--plan"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert f"settings.max_tokens = '200': a number is needed" in result.output
    assert "settings.concurency = 2: unknown key; did you mean `concurrency`?" in result.output


@pytest.mark.parametrize("shipped", ["demo", "cpu-study", "paper", "paper-shaped", "gemma-smoke", "prompt-styles"])
def test_every_shipped_matrix_still_loads_under_strict_types(shipped):
    from runner.paths import matrices_dir

    try:
        assert load_matrix(matrices_dir() / f"{shipped}.toml").cells
    except UserError as exc:  # pragma: no cover - the message is the point
        pytest.fail(str(exc))


def test_a_long_error_keeps_whole_lines_and_its_last_line_which_says_what_to_do():
    from runner.cli.common import _lines

    text = "\n".join(f"cell {i}: cannot run" for i in range(60)) + "\npass --skip-unrunnable"
    lines = _lines(text).splitlines()
    assert len(lines) == 41 and lines[:39] == [f"cell {i}: cannot run" for i in range(39)]
    assert lines[39:] == ["… and 21 more lines", "pass --skip-unrunnable"]


def test_a_list_item_of_the_wrong_type_gets_the_fix_without_a_key(tmp_path):
    path = write(tmp_path, """
        [settings]
        sweep = [1, "4"]
    """ + CELL)
    assert problems(path) == [f"{path}: settings.sweep[1] = '4': a number is needed, not text; drop the quotes: 4"]


def test_an_unquoted_dotted_model_key_gets_the_quoted_form_and_its_cells_no_second_line(tmp_path):
    models = """
[models.qwen2.5-coder-0.5b]
name = "Qwen"
[models.qwen2.5-coder-0.5b.quantizations.q8_0]
kind = "path"
path = "/m.gguf"
"""
    path = write(tmp_path, """
        [[cells]]
        model = "qwen2.5-coder-0.5b"
        runtime = "llamacpp"
        quantization = "q8_0"
    """, models)
    assert problems(path) == [f'{path}: models.qwen2.5-coder-0.5b: a key with a dot must be quoted in TOML; '
                              'write [models."qwen2.5-coder-0.5b"] (and [models."qwen2.5-coder-0.5b".quantizations...])']
    path.write_text(path.read_text().replace("models.qwen2.5-coder-0.5b", 'models."qwen2.5-coder-0.5b"'))
    assert [c.id for c in load_matrix(path).cells] == ["qwen2.5-coder-0.5b/llamacpp/q8_0/baseline"]


def test_an_unquoted_dotted_quantization_beside_others_is_one_line_not_two(tmp_path):
    models = """
[models.big]
name = "Big"
[models.big.quantizations.exl2-6.0]
kind = "hf"
repo = "org/big-exl2"
revision = "6.0bpw"
[models.big.quantizations."exl2-4.0"]
kind = "hf"
repo = "org/big-exl2"
revision = "4.0bpw"
"""
    path = write(tmp_path, """
        [[cells]]
        model = "big"
        runtime = "exllama"
        quantization = "exl2-6.0"
    """, models)
    # the cell naming exl2-6.0 is not told the model lacks it: the one mistake is the unquoted key
    assert problems(path) == [f'{path}: models.big.quantizations.exl2-6.0: a key with a dot must be quoted in '
                              'TOML; write [models.big.quantizations."exl2-6.0"]']
