"""The sweep's open-loop rates and the ``[slo]`` section: defaults with their sources, every rate above
zero, an objective dropped with ``inf``, a misspelled key named with its fix."""

from __future__ import annotations

import json
import math

from runner.matrix import Slo, load_matrix
from runner.store import Manifest
from tests.test_matrix import problems, write

CELL = """
    [[cells]]
    model = "tiny"
    runtime = "llamacpp"
    quantization = "q8_0"
    prompt_styles = ["codestral-fim"]
"""


def test_without_an_slo_section_the_code_generation_defaults_hold(tmp_path):
    matrix = load_matrix(write(tmp_path, CELL))
    slo = matrix.slo
    assert (slo.ttft_s, slo.ttft_percentile, slo.itl_ms, slo.itl_percentile) == (30.0, 95.0, 100.0, 99.0)
    assert math.isinf(slo.tpot_ms) and math.isinf(slo.e2e_s) and slo.attainment == 0.9
    assert matrix.settings.sweep_rates == []


def test_slo_and_rates_are_read_and_inf_drops_an_objective(tmp_path):
    matrix = load_matrix(write(tmp_path, """
        [settings]
        sweep_rates = [0.5, 2]
        sweep_requests = 0
        [slo]
        ttft_s = 5
        itl_ms = inf
        e2e_s = 60.5
        attainment = 0.95
    """ + CELL))
    assert matrix.settings.sweep_rates == [0.5, 2.0] and matrix.settings.sweep_requests == 0
    assert matrix.slo.ttft_s == 5.0 and math.isinf(matrix.slo.itl_ms) and matrix.slo.e2e_s == 60.5
    assert matrix.slo.attainment == 0.95


def test_a_rate_of_zero_is_refused_in_one_line_naming_the_key(tmp_path):
    path = write(tmp_path, """
        [settings]
        sweep_rates = [1, 0]
    """ + CELL)
    [line] = problems(path)
    assert line.startswith(f"{path}: settings.sweep_rates = [1, 0]: every sweep rate must be a finite number "
                           "of requests per second above 0 (got 0")
    assert "sweep_rates = [0.5, 1, 2]" in line


def test_an_infinite_rate_is_refused_too(tmp_path):
    path = write(tmp_path, """
        [settings]
        sweep_rates = [inf]
    """ + CELL)
    [line] = problems(path)
    assert f"{path}: settings.sweep_rates = [inf]: every sweep rate must be a finite number" in line


def test_a_misspelled_slo_key_gets_did_you_mean(tmp_path):
    path = write(tmp_path, """
        [slo]
        ttft_ms = 500
    """ + CELL)
    assert problems(path) == [f"{path}: slo.ttft_ms = 500: unknown key; did you mean `ttft_s`? rename it"]


def test_a_misspelled_slo_table_gets_did_you_mean(tmp_path):
    path = write(tmp_path, """
        [sol]
        ttft_s = 5
    """ + CELL)
    assert problems(path) == [f"{path}: sol: unknown table; did you mean `slo`? rename it"]


def test_an_attainment_above_one_and_a_zero_objective_are_refused(tmp_path):
    path = write(tmp_path, """
        [slo]
        attainment = 90
        itl_ms = 0
    """ + CELL)
    lines = problems(path)
    assert len(lines) == 2
    assert f"{path}: slo.attainment = 90: a share of the requests, above 0 and at most 1; write 0.9 for 90%" in lines
    assert any(line.startswith(f"{path}: slo.itl_ms = 0:") for line in lines)


def test_the_slo_comes_back_from_a_manifests_json_where_inf_is_written_null(tmp_path):
    matrix = load_matrix(write(tmp_path, "[slo]\nttft_s = 5\n" + CELL))
    manifest = Manifest(name="t", matrix=matrix.resolved(), cells=matrix.cells)
    written = json.loads(manifest.model_dump_json())["matrix"]["slo"]
    assert written["e2e_s"] is None  # JSON has no infinity
    assert Slo.from_json(written) == matrix.slo


def test_a_rate_search_without_rates_is_refused_in_one_line(tmp_path):
    path = write(tmp_path, """
        [settings]
        find_max_rate = 3
    """ + CELL)
    [line] = problems(path)
    assert line.startswith(f"{path}: settings")
    assert "find_max_rate = 3 searches between the sweep's rates, and sweep_rates is empty" in line
    assert "sweep_rates = [0.5, 2]" in line and "\n" not in line

