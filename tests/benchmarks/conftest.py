"""A tiny repository in SimCoPilot's upstream layout (our own programs), with its manifest.

The manifest's blob ids come from the real ``git hash-object``, so the code under test is
checked against git, not against itself.
"""

from __future__ import annotations

import functools
import io
import json
import subprocess
import tarfile
import threading
import zipfile
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

STACK_CALC = (
    "import sys\n"
    "\n"
    "def push(stack, value):\n"
    "\tstack.append(value)\n"
    "\treturn stack\n"
    "\n"
    "def total(stack):\n"
    "\treturn sum(stack)\n"
    "\n"
    "def load(path):\n"
    "\twith open(path) as handle:\n"
    "\t\treturn [int(line) for line in handle if line.strip()]\n"
)

WORD_FREQ = (
    "import csv\n"
    "def counts(path):\n"
    "    rows = list(csv.reader(open(path)))\n"
    "    return {word: int(n) for word, n in rows}\n"
)

QUEUE_TESTER = (
    "import junit.framework.TestCase;\n"
    "class Queue {\n"
    "\tint size = 0;\n"
    "\tvoid add(int x) {\n"
    "\t\tsize++;\n"
    "\t}\n"
    "}\n"
    "public class QueueTester extends TestCase {\n"
    "\tpublic void testAdd() { Queue q = new Queue(); q.add(1); assertEquals(1, q.size); }\n"
    "}\n"
)

PYTHON_CHECKPOINTS = [
    {
        "Task_Name": "stack_calc",
        "LN_range": [[1, 12]],
        "output_to_check": "final_output",
        "checkpoint_LN_infilling": [[4, 5], [8, 8], [4, 5], [11, 12]],
        "checkpoint_LN_Completion": [[8, 8], [10, 12]],
    },
    {
        "Task_Name": "word_freq",
        "LN_range": [[1, 4]],
        "output_to_check": "all_output",
        "checkpoint_LN_infilling": [[3, 3]],
        "checkpoint_LN_Completion": [[3, 4]],
    },
]

JAVA_CHECKPOINTS = [
    {
        "Task_Name": "QueueTester",
        "LN_range": [[1, 10]],
        "output_to_check": "final_output",
        "checkpoint_LN_infilling": [[3, 3], [5, 5]],
        "checkpoint_LN_Completion": [[4, 6]],
    }
]

TASKS_PATH = {
    "Python": {
        "stack_calc": "./example_code/Python/stack_calc/stack_calc",
        "word_freq": "./example_code/Python/word_freq/word_freq",
    },
    "Java": {"QueueTester": "./example_code/Java/C1/Test/QueueTester"},
}

# Upstream's records carry a lower-case "if Body" and a stray space before a line number.
STACK_CALC_REASONS = "reason_category,usage_line\nif Body,4\nLoop Body, 12\nList_Comprehension,12\n"
STACK_CALC_DEPENDENCIES = (
    "var_name,usage_line,def_line,scope_type,range_type\n"
    "stack,4,3,local,Short-Range\n"
    "handle,12,11,local,Short-Range\n"
    "sys,12,1,library,Long-Range\n"
)
QUEUE_DEPENDENCIES = "name,usage_line,def_line,scope_type,range_type\nsize,5,3,globals,Short-Range\n"


def _jar_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
    return buffer.getvalue()


FILES: dict[str, bytes] = {
    "example_code/tasks_path.json": json.dumps(TASKS_PATH, indent=4).encode(),
    "example_code/Python/Python_tasks_checkpoints.json": json.dumps(PYTHON_CHECKPOINTS, indent=4).encode(),
    "example_code/Java/Java_tasks_checkpoints.json": json.dumps(JAVA_CHECKPOINTS, indent=4).encode(),
    "example_code/Python/stack_calc/stack_calc.py": STACK_CALC.encode(),
    "example_code/Python/stack_calc/stack_calc.json": json.dumps({
        "test_case1": "print(total(push([1, 2], 3)))",
        "expected_output1": "6\\n",
        "test_case2": "for v in load('ops.txt'):\n    print(v)",
        "expected_output2": "1\\n2\\n",
    }).encode(),
    "example_code/Python/stack_calc/ops.txt": b"1\n2\n",
    "example_code/Python/word_freq/word_freq.py": WORD_FREQ.encode(),
    "example_code/Python/word_freq/word_freq.json": json.dumps({
        "test_case1": "print(counts('words.csv'))",
        "expected_output1": "{'a': 2}\\n",
    }).encode(),
    "example_code/Python/word_freq/words.csv": b"a,2\n",
    "example_code/Java/C1/Test/QueueTester.java": QUEUE_TESTER.encode(),
    "example_code/Java/C1/Test/QueueTester.json": json.dumps({"test_case1": "", "expected_output1": "OK"}).encode(),
    "example_code/Java/C1/Test/queue.jar": _jar_bytes(),
    "example_code/Java/junit-platform-console-standalone-1.9.3.jar": _jar_bytes(),
    "Analysis_Results/Dependency_Records/Python/Verified/stack_calc_reason_verified.csv": STACK_CALC_REASONS.encode(),
    "Analysis_Results/Dependency_Records/Python/Verified/stack_calc_dependency_verified.csv":
        STACK_CALC_DEPENDENCIES.encode(),
    "Analysis_Results/Dependency_Records/Python/Verified/word_freq_reason_verified.csv": b"\n",
    "Analysis_Results/Dependency_Records/Java/Verified/QueueTester_dependency_verified.csv":
        QUEUE_DEPENDENCIES.encode(),
    "helper_functions/prompt_templates/before_after_template.txt": b"Fill in the missing code.\n",
}

# Files a real checkout also holds, outside the manifest; an import must leave them behind.
EXTRA_FILES = {"README.md": b"# a checkout\n", "helper_functions/eval_code.py": b"print('not kept')\n"}


@dataclass
class UpstreamCopy:
    """A repository in the upstream layout and a manifest describing it."""

    root: Path
    manifest: Path
    commit: str = "1234567890abcdef1234567890abcdef12345678"

    def path(self, rel: str) -> Path:
        return self.root / rel

    def tarball(self, dest: Path, top: str | None = None) -> Path:
        """A .tar.gz of the copy, under ``top/`` (GitHub's ``SimCoPilot-<sha>/``) unless ``top`` is ``""``."""
        top = f"SimCoPilot-{self.commit}" if top is None else top
        with tarfile.open(dest, "w:gz") as tar:
            tar.add(self.root, arcname=top or ".", recursive=True)
        return dest

    def zipfile(self, dest: Path) -> Path:
        with zipfile.ZipFile(dest, "w") as archive:
            for path in sorted(self.root.rglob("*")):
                if path.is_file():
                    archive.write(path, f"SimCoPilot-{self.commit}/{path.relative_to(self.root)}")
        return dest


def write_manifest(root: Path, rels: list[str], dest: Path) -> Path:
    """A manifest TSV of ``rels`` under ``root``, blob ids from ``git hash-object``."""
    shas = subprocess.run(
        ["git", "hash-object", "--stdin-paths"],
        input="\n".join(str(root / rel) for rel in rels) + "\n",
        capture_output=True, text=True, check=True,
    ).stdout.split()
    lines = ["path\tgit_blob_sha1\tsize_bytes"]
    lines += [f"{rel}\t{sha}\t{(root / rel).stat().st_size}" for rel, sha in zip(rels, shas, strict=True)]
    dest.write_text("\n".join(lines) + "\n")
    return dest


@pytest.fixture
def upstream_copy(tmp_path) -> UpstreamCopy:
    """A fresh copy in ``tmp/SimCoPilot`` and ``tmp/simcopilot-<commit>-files.tsv``."""
    root = tmp_path / "SimCoPilot"
    for rel, content in {**FILES, **EXTRA_FILES}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    copy = UpstreamCopy(root=root, manifest=tmp_path / "placeholder")
    copy.manifest = write_manifest(root, sorted(FILES), tmp_path / f"simcopilot-{copy.commit}-files.tsv")
    return copy


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp/served``; yields (folder, base url)."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
