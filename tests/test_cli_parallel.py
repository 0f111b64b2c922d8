"""``reproduce --parallel-cells`` and ``--gpus``: what they refuse, in one line, before anything runs."""

from __future__ import annotations

from click.testing import CliRunner

from runner.cli import main


def test_gpu_ids_that_are_not_numbers_are_refused_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["reproduce", "--preset", "demo", "--gpus", "0,one", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "'0,one': give GPU ids as numbers separated by commas, e.g. 0,1,2,3" in result.output
    repeated = CliRunner().invoke(main, ["reproduce", "--preset", "demo", "--gpus", "1,1", "--runs-dir", str(tmp_path)])
    assert repeated.exit_code == 2 and "give distinct GPU ids" in repeated.output
    assert not any(tmp_path.iterdir())  # nothing written


def test_parallel_cells_and_gpus_are_for_this_host_not_a_ray_cluster(tmp_path):
    for flag in (["--parallel-cells", "2"], ["--gpus", "0,1"]):
        result = CliRunner().invoke(main, ["reproduce", "--preset", "demo", *flag, "--ray", "auto",
                                           "--runs-dir", str(tmp_path)])
        assert result.exit_code != 0 and "is for this host" in result.output and "Traceback" not in result.output
    zero = CliRunner().invoke(main, ["reproduce", "--preset", "demo", "--parallel-cells", "0"])
    assert zero.exit_code == 2 and "--parallel-cells" in zero.output
