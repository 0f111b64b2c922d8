"""What a cell asks a cluster for, and the plan's reasons when no node can hold it (no cluster needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from runner.errors import UserError
from runner.executors.ray_cluster import RAY_VERSION, NodeInfo, import_ray, place
from runner.matrix import load_matrix

MATRIX = """
name = "placement"
gpu_type = "H100"
[models.big]
name = "Big"
[models.big.quantizations.bf16]
kind = "path"
path = "weights"
gpus = 2
[models.big.quantizations.q4_k_m]
kind = "path"
path = "weights.gguf"
[[cells]]
model = "big"
runtime = "vllm"
quantization = "bf16"
[[cells]]
model = "big"
runtime = "llamacpp"
quantization = "q4_k_m"
gpus = 0
label = "cpu"
[[cells]]
model = "big"
runtime = "llamacpp"
quantization = "q4_k_m"
gpus = 4
gpu_type = "A100"
label = "four"
[[cells]]
model = "big"
runtime = "exllama"
quantization = "exl2-4.0"
gpus = 0
label = "exl2-cpu"
"""


def matrix(tmp_path: Path):
    path = tmp_path / "placement.toml"
    text = MATRIX.replace('[models.big.quantizations.q4_k_m]', '[models.big.quantizations."exl2-4.0"]\nkind = "path"\n'
                          'path = "exl2"\n[models.big.quantizations.q4_k_m]')
    path.write_text(text)
    return load_matrix(path)


H100_NODE = NodeInfo(node_id="a", host="10.0.0.1", cpus=16, gpus=8, gpu_types={"H100": 8})
A100_NODE = NodeInfo(node_id="b", host="10.0.0.2", cpus=16, gpus=2, gpu_types={"A100": 2})
HEAD = NodeInfo(node_id="h", host="10.0.0.3", cpus=0, head=True)


def test_a_cell_asks_for_its_groups_gpus_else_its_weights_and_the_named_type(tmp_path):
    m = matrix(tmp_path)
    vllm, cpu, four, exl2 = m.cells
    assert (m.request(vllm).gpus, m.request(vllm).gpu_type) == (2, "H100")  # the weights' gpus, the matrix's type
    assert m.request(vllm).resources == {"gpu:H100": 2.0}
    assert m.request(cpu).gpus == 0 and m.request(cpu).resources == {}  # CPUs only: no GPU type to ask for
    assert (m.request(four).gpus, m.request(four).gpu_type) == (4, "A100")  # the group overrides both


def test_the_plan_says_why_no_node_can_hold_a_cell(tmp_path):
    m = matrix(tmp_path)
    vllm, cpu, four, exl2 = m.cells
    nodes = [HEAD, H100_NODE, A100_NODE]
    assert place(m, vllm, nodes) is None and place(m, cpu, nodes) is None
    assert place(m, four, nodes) == ("needs 4 GPUs of type A100 on one node and the largest node of type A100 has 2; "
                                     "lower its gpus (tensor parallel) or add a larger node")
    assert "runtime exllama runs on NVIDIA GPUs only and this cell asks for none" in place(m, exl2, nodes)
    no_h100 = place(m, vllm, [HEAD, A100_NODE])
    assert no_h100.startswith("asks for GPU type H100 and no node offers resource gpu:H100 (types here: A100)")
    assert "CPUs only (gpus = 0), 1 of them on one node" in place(m, cpu, [HEAD])


def test_without_ray_the_hint_installs_from_the_checkout_not_pypis_other_runner(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(UserError) as info:
        import_ray()
    assert f"pip install -e '.[ray]' in the runner checkout (Ray {RAY_VERSION}" in str(info.value)
    assert "runner[ray]" not in str(info.value)
