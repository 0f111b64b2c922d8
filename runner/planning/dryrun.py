"""``runner reproduce --dry-run``: every cell's launch, source and first request, built and checked, nothing written.

The plan (``runner.planning.plan``) says whether a cell can run and what it costs. The dry run adds what a
reviewer checks before renting GPUs: the locked source of the cell's weights, the exact launch the
backend would start (argv, environment, image, the content of any file the runtime writes), the
body of the first request the client would send, and one verdict per check. It builds these with
the same functions a real run calls (``Runtime.server_spec``, ``DockerBackend.container_config``,
``client.request_body``), so what it prints is what would run. The model paths are where
``runner models prepare`` puts the files; the port is the backend's, chosen at start (``{port}``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, computed_field

from runner.errors import UserError
from runner.matrix import Matrix, ModelSource
from runner.planning.plan import Plan, PlannedCell
from runner.records import Cell, Task
from runner.runtimes import get_runtime
from runner.runtimes.base import ModelFiles, ServerSpec

#: the port a launch shows: the backend picks a free one when the server starts
PORT_PLACEHOLDER = "{port}"


class SourceFile(BaseModel):
    """One file of a locked source."""

    path: str
    size: int | None = None
    sha256: str | None = None


class SourceView(BaseModel):
    """Where a cell's weights come from: the matrix's words and, where locked, the commit and files."""

    key: str  # models.<model>.quantizations.<quantization> (of the file the chain starts from)
    kind: str
    describe: str
    repo: str | None = None
    revision: str | None = None
    commit: str | None = None  # None: not locked
    files: list[SourceFile] = Field(default_factory=list)


class Launch(BaseModel):
    """The server as the backend would start it."""

    backend: str
    image: str | None = None  # the compose service's image (docker backend)
    entrypoint: list[str] | None = None
    argv: list[str]
    env: dict[str, str] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)  # path -> content, written before the start
    mounts: dict[str, str] = Field(default_factory=dict)  # host path -> path in the container (read-only)
    gpus: int = 0


class Check(BaseModel):
    """One check's verdict on a cell."""

    name: str
    ok: bool
    detail: str = ""
    #: False where the check could not be made here (ok then means only "not failed")
    checked: bool = True


class DryCell(BaseModel):
    """One cell of the dry run (``--json`` prints one line of this per cell)."""

    cell: str
    runnable: bool
    reason: str | None = None
    source: SourceView | None = None
    argv: list[str] = Field(default_factory=list)
    launch: Launch | None = None
    endpoint: str | None = None
    request: dict[str, Any] | None = None
    request_note: str = ""
    checks: list[Check] = Field(default_factory=list)

    @computed_field
    @property
    def cell_id(self) -> str:
        """The cell's id under the name every other output gives it (``cell`` is the dry run's own)."""
        return self.cell


def _origin(matrix: Matrix, cell: Cell) -> tuple[str, ModelSource]:
    """The quantization a cell's weights start from: a derived source's chain followed to its file."""
    quant = cell.quantization
    source = matrix.models[cell.model].quantizations[quant]
    while source.kind in ("dequantize", "quantize"):
        quant = source.of
        source = matrix.models[cell.model].quantizations[quant]
    return quant, source


def source_view(matrix: Matrix, cell: Cell, lock) -> SourceView:
    """The cell's weight source, with the lock's commit and files where the lock has them."""
    quant, source = _origin(matrix, cell)
    view = SourceView(key=f"models.{cell.model}.quantizations.{quant}", kind=source.kind,
                      describe=matrix.source(cell).describe(), repo=source.repo, revision=source.revision)
    entry = lock.entry(cell.model, quant) if lock is not None else None
    if entry is not None:
        view.commit = entry.commit
        view.files = [SourceFile(path=f.path, size=f.size, sha256=f.sha256) for f in entry.files]
    return view


def planned_files(matrix: Matrix, cell: Cell, lock) -> ModelFiles:
    """The ``ModelFiles`` ``runner models prepare`` would hand the runtime (paths as they will be)."""
    from runner.prompts import chat_templates
    from runner.serving.models import planned_path

    spec = matrix.model(cell)
    path = planned_path(matrix, cell, lock)
    return ModelFiles(path=path, served_name=cell.model, context_length=spec.context_length,
                      tokenizer_path=path if path.suffix != ".gguf" else None,
                      chat_template=chat_templates.load(spec.chat_template) if spec.chat_template else None)


def launch_of(spec: ServerSpec, backend: str, gpus: int) -> Launch:
    """``spec`` as ``backend`` would start it; the port left as ``{port}``."""
    if backend != "docker":
        bound = spec.bind("127.0.0.1", PORT_PLACEHOLDER)  # type: ignore[arg-type]
        return Launch(backend=backend, argv=bound.argv, env=bound.env, gpus=gpus,
                      files={str(p): c for p, c in bound.files.items()})
    from runner.backends.docker import DockerBackend, container_paths

    docker = DockerBackend()
    service = docker.service_for(spec)
    config = docker.container_config(spec, service, PORT_PLACEHOLDER)  # type: ignore[arg-type]
    bound = spec.bind("0.0.0.0", PORT_PLACEHOLDER)  # type: ignore[arg-type]
    _moved, rewrite = container_paths(bound)
    return Launch(backend=backend, image=service.image, entrypoint=config.get("entrypoint"),
                  argv=[*(config.get("entrypoint") or []), *config["command"]], env=config["environment"],
                  files={str(p): rewrite(c) for p, c in bound.files.items()},
                  mounts={host: v["bind"] for host, v in config["volumes"].items()}, gpus=gpus)


def first_request(matrix: Matrix, cell: Cell, tasks: list[Task] | None) -> tuple[str | None, dict | None, str]:
    """The endpoint and JSON body of the cell's first accuracy request, and a note on what it leaves out."""
    from runner import prompts
    from runner.measuring import client
    from runner.planning.selection import cell_tasks

    if not tasks:
        return None, None, "not checked: no tasks, the benchmark's data is not here (`runner data fetch`)"
    from runner.benchmarks import load_benchmark

    benchmark = load_benchmark(matrix.benchmark, matrix.edition)
    mine = cell_tasks(matrix, benchmark, tasks, cell)
    task = mine[0]
    runtime = get_runtime(cell.runtime)
    prompt = prompts.render(task, cell.prompt_style, chat=matrix.model(cell).chat, edition=benchmark.edition)
    s = matrix.settings
    params = client.SamplingParams(temperature=s.temperature, seed=s.seed, max_tokens=s.max_tokens)
    body = client.request_body(cell, runtime, prompt, params, model=cell.model)
    room = matrix.model(cell).context_length - s.max_tokens
    note = f"task {task.id}"
    if len(prompt.token_text().encode("utf-8")) > room:
        note += ("; may be cut to fit the context by the server's tokenizer at run time (its bytes exceed "
                 f"{room} tokens' worth)")
    return client.endpoint(runtime, prompt), body, note


def dry_run(matrix: Matrix, plan: Plan, *, backend: str, lock=None, tasks: list[Task] | None = None) -> list[DryCell]:
    """One ``DryCell`` per planned cell: source, launch, first request and every check's verdict."""
    out = []
    from runner.serving.lock import matrix_problems

    # the lock's own findings (stale, not locked), by the matrix key they name
    lock_problems = {p.where.rsplit(": ", 1)[-1]: p.message for p in matrix_problems(matrix, lock)} \
        if lock is not None else {}
    for planned in plan.cells:
        out.append(_dry_cell(matrix, planned, backend=backend, lock=lock, tasks=tasks, lock_problems=lock_problems))
    return out


def _dry_cell(matrix: Matrix, planned: PlannedCell, *, backend: str, lock, tasks, lock_problems) -> DryCell:
    cell = planned.cell
    checks = [Check(name="plan", ok=planned.runnable, detail=planned.reason or f"runs on {planned.estimated_on}")]
    if planned.gpus and planned.gpu_memory_gib is not None:
        here = ("" if planned.gpu_memory_here_gib is None
                else f" of the {planned.gpu_memory_here_gib:.1f} GiB its {planned.gpus} GPU(s) report")
        checks.append(Check(name="gpu memory", ok=planned.runnable or "GiB" not in (planned.reason or ""),
                            detail=f"needs {planned.gpu_memory_gib:.1f} GiB{here} ({planned.gpu_memory_basis})"))
    view = source_view(matrix, cell, lock)
    if view.kind == "hf":
        problem = lock_problems.get(view.key)
        if lock is None:
            # as the plan: not checked, not refused; the run checks the source on download
            checks.append(Check(name="locked", ok=True, checked=False,
                                detail="not checked: no lock beside the matrix and the dry run does not ask the Hub; "
                                       f"run `runner models lock {matrix.path or matrix.name}`"))
        elif problem:
            checks.append(Check(name="locked", ok=False, detail=problem))
        elif view.commit is None:
            checks.append(Check(name="locked", ok=False, detail=f"{view.key} is not in the lock: run `runner models "
                                                                f"lock {matrix.path or matrix.name}`"))
        else:
            entry = lock.entry(cell.model, _origin(matrix, cell)[0])
            partial = [f.path for f in entry.files if not f.sha256 or f.size is None]
            note = ""
            if not entry.complete or partial:
                note = (f"; {'the file list and ' if not entry.complete else ''}{len(partial)} file(s) without a "
                        "sha256 or an exact size here are completed from the Hub's metadata at this commit on "
                        "download, every sha256 here checked against it")
            checks.append(Check(name="locked", ok=True, detail=f"commit {view.commit[:12]}, {len(view.files)} files "
                                f"({entry.checked_on}, {entry.checked}){note}"))
    dry = DryCell(cell=cell.id, runnable=planned.runnable, reason=planned.reason, source=view, checks=checks)
    runtime = get_runtime(cell.runtime)
    try:
        files = planned_files(matrix, cell, lock)
        spec = runtime.server_spec(cell, files, threads=matrix.settings.threads, gpus=planned.gpus)
        dry.launch = launch_of(spec, backend, planned.gpus)
        dry.argv = dry.launch.argv
        checks.append(Check(name="launch", ok=True, detail=f"{runtime.name} on {backend}"
                            + (f", {planned.gpus} GPU(s)" if planned.gpus else ", CPU")))
    except UserError as exc:
        checks.append(Check(name="launch", ok=False, detail=str(exc)))
    try:
        dry.endpoint, dry.request, dry.request_note = first_request(matrix, cell, tasks)
        # without the data nothing is asked: the plan's "cannot start" already says so, for every cell
        checks.append(Check(name="request", ok=True, checked=False, detail=dry.request_note) if tasks is None
                      else Check(name="request", ok=dry.request is not None, detail=dry.request_note))
    except UserError as exc:
        checks.append(Check(name="request", ok=False, detail=str(exc)))
    dry.checks = checks  # pydantic copied the list it was built with
    failed = [c for c in checks if not c.ok and c.name != "plan"]
    if failed and dry.runnable:
        dry.runnable = False
        dry.reason = f"{failed[0].name}: {failed[0].detail}"
    return dry


def lines(cells: list[DryCell]) -> list[str]:
    """The dry run as text, a block per cell (after the plan's own lines)."""
    out: list[str] = []
    for c in cells:
        out.append("")
        out.append(f"== {c.cell}: {'runnable' if c.runnable else 'NOT runnable: ' + (c.reason or '')}")
        if c.source is not None:
            s = c.source
            locked = " (locked)" if s.commit else " (not locked)" if s.kind == "hf" else ""
            out.append(f"  source: {s.describe}{locked}")
            for f in s.files:
                size = "size ?" if f.size is None else f"{f.size} B"
                out.append(f"    {f.path}  {size}  sha256 {f.sha256 or '-'}")
        if c.launch is not None:
            l = c.launch
            if l.image:
                out.append(f"  image: {l.image}")
            out.append(f"  argv: {' '.join(_quote(a) for a in l.argv)}")
            for k, v in sorted(l.env.items()):
                out.append(f"  env: {k}={v}")
            for host, inside in l.mounts.items():
                out.append(f"  mount: {host} -> {inside} (read-only)")
            for path, content in l.files.items():
                out.append(f"  file {path}:")
                out += [f"    {line}" for line in content.splitlines()]
        if c.request is not None:
            import json

            out.append(f"  first request: POST {c.endpoint} ({c.request_note})")
            text = json.dumps(c.request, ensure_ascii=False)
            out.append(f"    {text if len(text) <= 600 else text[:600] + f'... ({len(text)} characters)'}")
        for check in c.checks:
            verdict = "not checked" if not check.checked else "ok" if check.ok else "FAILED"
            out.append(f"  check {check.name}: {verdict}{': ' + check.detail if check.detail else ''}")
    return out


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
