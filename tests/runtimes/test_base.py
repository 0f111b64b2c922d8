"""The runtime contract's shared pieces: Prometheus parsing, host placeholders, technique checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import UserError
from runner.records import Cell
from runner.runtimes import get_runtime
from runner.runtimes.base import ServerSpec, parse_prometheus

VLLM_STYLE = """\
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="m"} 3.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 5.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 5.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 0.75
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 23
"""


def test_prometheus_text_is_flattened_with_sorted_labels():
    values = parse_prometheus(VLLM_STYLE)
    assert values['vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="m"}'] == 3.0
    assert values['vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"}'] == 5.0
    assert values['vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"}'] == 0.75
    assert values["llamacpp:prompt_tokens_total"] == 23.0
    assert len(values) == 5


def test_bind_fills_host_and_port_in_argv_env_and_files():
    spec = ServerSpec(runtime="x", argv=["srv", "--host", "{host}", "--port", "{port}"], env={"BIND": "{host}:{port}"},
                      files={Path("/tmp/c-{port}.yml"): "host: {host}\nport: {port}\n"})
    filled = spec.bind("0.0.0.0", 8123)
    assert filled.argv == ["srv", "--host", "0.0.0.0", "--port", "8123"] and filled.env == {"BIND": "0.0.0.0:8123"}
    assert filled.files == {Path("/tmp/c-8123.yml"): "host: 0.0.0.0\nport: 8123\n"}
    assert spec.argv[-1] == "{port}"  # the original is untouched


def test_any_positive_integer_is_a_valid_count_switch():
    runtime = get_runtime("llamacpp")
    runtime.validate(Cell(model="m", runtime="llamacpp", quantization="q8_0", techniques={"parallel": "16"}))
    for bad in ("0", "-2", "four"):
        with pytest.raises(UserError, match=f"parallel={bad!r} is not offered"):
            runtime.validate(Cell(model="m", runtime="llamacpp", quantization="q8_0", techniques={"parallel": bad}))
