"""The post-processing cascade upstream applies to a model's answer before testing it.

Stages, in order: **cleaned** (the code pulled out of fences or marker lines), **trimmed**
(lines that repeat the end of ``before`` or the start of ``after`` removed), then
**reindented** (Python: the block shifted to the indentation the span needs) or
**balanced** (Java: unmatched closing braces dropped, missing ones added). The published score
is the best of the cascade; the cleaned-only score is kept beside it.
"""

from __future__ import annotations

import re
from collections import Counter

from runner.records import Language, Stage, Task

BEGIN_MARKER = "BEGIN MISSING CODE"
END_MARKER = "END MISSING CODE"
_FENCE = re.compile(r"^\s*```")
# A line ending a block in Python: the next statement sits one level out.
_DEDENT_AFTER = re.compile(r"^(return|break|continue|pass|raise)\b")
_CONTINUATION = {"elif": ("if", "elif"), "else": ("if", "elif", "for", "while", "try", "except"),
                 "except": ("try", "except"), "finally": ("try", "except", "else")}


def _strip_blank_edges(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def clean(raw: str) -> str:
    """The code in a raw answer: between marker lines, else the first fenced block, else all non-fence lines."""
    lines = raw.replace("\r\n", "\n").replace("\t", "    ").split("\n")
    begin = next((i for i, l in enumerate(lines) if BEGIN_MARKER in l), None)
    if begin is not None:
        end = next((i for i in range(begin + 1, len(lines)) if END_MARKER in lines[i]), len(lines))
        lines = lines[begin + 1 : end]
    else:
        lines = [l for l in lines if END_MARKER not in l]
    fences = [i for i, l in enumerate(lines) if _FENCE.match(l)]
    if len(fences) >= 2:
        lines = lines[fences[0] + 1 : fences[1]]
    else:
        # An unclosed fence (the answer was cut at max tokens) or none at all.
        lines = [l for l in lines if not _FENCE.match(l)]
    return "\n".join(l.rstrip() for l in _strip_blank_edges(lines))


def _content(lines: list[str]) -> list[tuple[int, str]]:
    return [(i, l.strip()) for i, l in enumerate(lines) if l.strip()]


def trim(code: str, before: str, after: str) -> str:
    """Drop the code's leading lines that repeat the end of ``before`` and trailing lines that repeat the start of ``after``."""
    lines = code.split("\n")
    body = _content(lines)
    tail = [l.strip() for l in before.split("\n") if l.strip()]
    head = [l.strip() for l in after.split("\n") if l.strip()]
    drop: set[int] = set()
    # The longest overlap wins: a model that repeats the whole context loses all of it.
    for k in range(min(len(body), len(tail)), 0, -1):
        if [s for _, s in body[:k]] == tail[-k:]:
            drop.update(i for i, _ in body[:k])
            break
    rest = [(i, s) for i, s in body if i not in drop]
    for k in range(min(len(rest), len(head)), 0, -1):
        if [s for _, s in rest[-k:]] == head[:k]:
            drop.update(i for i, _ in rest[-k:])
            break
    return "\n".join(_strip_blank_edges([l for i, l in enumerate(lines) if i not in drop]))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _indent_unit(text: str) -> int:
    """The program's indentation step: the most common increase between consecutive code lines."""
    steps: Counter[int] = Counter()
    previous = 0
    for line in text.split("\n"):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        width = _indent(line)
        if width > previous:
            steps[width - previous] += 1
        previous = width
    return steps.most_common(1)[0][0] if steps else 4


def _first_word(line: str) -> str:
    match = re.match(r"\s*([A-Za-z_]+)", line)
    return match.group(1) if match else ""


def reindent(code: str, before: str, after: str) -> str:
    """Shift a Python block so that its first line sits at the indentation the span needs."""
    lines = code.split("\n")
    first = next((l for l in lines if l.strip()), None)
    if first is None:
        return code
    context = [l for l in before.split("\n") if l.strip() and not l.lstrip().startswith("#")]
    unit = _indent_unit(before + "\n" + after)
    if not context:
        target = 0
    else:
        last = context[-1]
        target = _indent(last)
        if last.rstrip().endswith(":"):
            target += unit
        elif _DEDENT_AFTER.match(last.strip()):
            target = max(target - unit, 0)
    opener = _CONTINUATION.get(_first_word(first))
    if opener:
        # ``else:``/``except`` align with the nearest statement that can own them.
        owner = next((l for l in reversed(context) if _first_word(l) in opener and _indent(l) <= target), None)
        if owner is not None:
            target = _indent(owner)
    shift = target - _indent(first)
    shifted = []
    for line in lines:
        if not line.strip():
            shifted.append("")
        else:
            shifted.append(" " * max(_indent(line) + shift, 0) + line.lstrip(" "))
    return "\n".join(shifted)


_JAVA_TOKENS = re.compile(
    r'//[^\n]*|/\*.*?\*/|"""(?:.|\n)*?"""|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|[{}]',
    re.DOTALL,
)


def _brace_positions(text: str) -> list[tuple[int, str]]:
    """Positions of the braces that are code, not inside strings, chars or comments."""
    return [(m.start(), m.group()) for m in _JAVA_TOKENS.finditer(text) if m.group() in "{}"]


def balance(code: str, before: str, after: str) -> str:
    """Make the Java program's braces balance by editing only the generated code."""
    depth = 0
    for _, brace in _brace_positions(before):
        depth += 1 if brace == "{" else -1
    # A closing brace in the code that would close a block ``after`` closes itself is extra.
    after_need = 0
    low = 0
    for _, brace in _brace_positions(after):
        after_need += -1 if brace == "}" else 1
        low = min(low, after_need)
    closes_in_after = -low  # braces ``after`` closes that were opened before it
    drop: list[int] = []
    level = depth
    for pos, brace in _brace_positions(code):
        if brace == "{":
            level += 1
        elif level <= 0:
            drop.append(pos)  # closes nothing at all
        else:
            level -= 1
    chars = list(code)
    for pos in reversed(drop):
        del chars[pos]
    code = "".join(chars)
    extra = level - closes_in_after
    if extra > 0:
        code = code.rstrip() + "\n" + "\n".join("}" for _ in range(extra))
    elif extra < 0:
        # Remove surplus closing braces from the end of the code, last first.
        positions = [p for p, b in _brace_positions(code) if b == "}"]
        chars = list(code)
        for pos in sorted(positions[extra:], reverse=True):
            del chars[pos]
        # Lines left holding only the removed brace's indentation go too.
        code = "\n".join(l for l in "".join(chars).split("\n") if l.strip() or not l).rstrip()
    return code


def cascade(raw: str, task: Task) -> list[tuple[Stage, str]]:
    """The candidate codes in the order they are tried, with repeats of an earlier candidate left out."""
    cleaned = clean(raw)
    trimmed = trim(cleaned, task.before, task.after)
    if task.language is Language.python:
        last = (Stage.reindented, reindent(trimmed, task.before, task.after))
    else:
        last = (Stage.balanced, balance(trimmed, task.before, task.after))
    stages: list[tuple[Stage, str]] = []
    for stage, code in [(Stage.cleaned, cleaned), (Stage.trimmed, trimmed), last]:
        if all(code != seen for _, seen in stages):
            stages.append((stage, code))
    return stages


def assemble(task: Task, code: str) -> str:
    """The program to run: ``before``, the code, then ``after`` (run in completion mode too)."""
    return "\n".join(part for part in (task.before, code, task.after) if part)
