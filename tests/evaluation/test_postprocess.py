"""The post-processing cascade on crafted answers: fences, markers, repeated context, indentation, braces."""

from __future__ import annotations

from runner.evaluation.postprocess import assemble, balance, cascade, clean, reindent, trim
from runner.records import Language, Mode, Stage, Task


def make_task(before: str, reference: str, after: str, language: Language = Language.python) -> Task:
    return Task(
        id=f"{language.value}/infill/demo/1-1",
        benchmark="test",
        language=language,
        mode=Mode.infill,
        program="demo",
        span=(1, 1),
        before=before,
        reference=reference,
        after=after,
    )


def test_clean_takes_the_first_fenced_block_and_keeps_its_indentation():
    raw = "Here is the code:\n```python\n    x = 1\n    y = x + 1\n```\nand an explanation\n```\nother\n```"
    assert clean(raw) == "    x = 1\n    y = x + 1"


def test_clean_takes_the_text_between_marker_lines():
    raw = "Sure.\n# BEGIN MISSING CODE\n        total += v\n# END MISSING CODE\nDone."
    assert clean(raw) == "        total += v"


def test_clean_drops_an_unclosed_fence_of_a_truncated_answer():
    assert clean("```java\nint x = 1;\nint y = 2;") == "int x = 1;\nint y = 2;"


def test_clean_leaves_plain_code_alone_but_expands_tabs():
    assert clean("\n\tif x:\n\t\treturn 1\n\n") == "    if x:\n        return 1"


def test_trim_removes_repeated_end_of_before_and_start_of_after():
    before = "def f(xs):\n    total = 0\n    for v in xs:"
    after = "    return total\n\nprint(f([1, 2]))"
    code = "    total = 0\n    for v in xs:\n        total += v\n    return total"
    assert trim(code, before, after) == "        total += v"


def test_trim_keeps_code_that_only_resembles_the_context():
    before = "x = 1"
    after = "print(x)"
    assert trim("x = 2\ny = 3", before, after) == "x = 2\ny = 3"


def test_reindent_indents_a_flush_left_block_under_a_colon():
    before = "def f(xs):\n    total = 0\n    for v in xs:"
    code = "total += v\nif v > 3:\n    break"
    assert reindent(code, before, "    return total") == "        total += v\n        if v > 3:\n            break"


def test_reindent_dedents_after_return_and_aligns_else_with_its_if():
    before = "def g(x):\n    if x > 0:\n        return 1"
    assert reindent("        else:\n            return 2", before, "") == "    else:\n        return 2"


def test_balance_adds_missing_closing_braces():
    before = "class A {\n  int f(int x) {"
    after = "}"  # closes the class only
    code = "    if (x > 0) {\n      return 1;\n    }\n    return 0;"
    balanced = balance(code, before, after)
    program = before + "\n" + balanced + "\n" + after
    assert program.count("{") == program.count("}")
    assert balanced.endswith("return 0;\n}")


def test_balance_drops_surplus_closing_braces_but_ignores_braces_in_strings():
    before = "class A {\n  String f() {"
    after = "  }\n}"
    code = '    return "}{";\n  }\n}'
    balanced = balance(code, before, after)
    assert balanced == '    return "}{";'


def test_cascade_lists_distinct_candidates_in_upstream_order():
    task = make_task("def f():", "    return 1", "print(f())")
    stages = cascade("```\ndef f():\nreturn 1\n```", task)
    assert [s for s, _ in stages] == [Stage.cleaned, Stage.trimmed, Stage.reindented]
    assert stages[-1][1] == "    return 1"
    # A clean answer needs no later stage: identical candidates are not tried twice.
    assert [s for s, _ in cascade("    return 1", task)] == [Stage.cleaned]


def test_assemble_runs_after_and_joins_with_newlines():
    task = make_task("a = 1", "b = 2", "print(a + b)")
    assert assemble(task, "b = 2") == "a = 1\nb = 2\nprint(a + b)"
    assert assemble(task, "") == "a = 1\nprint(a + b)"
