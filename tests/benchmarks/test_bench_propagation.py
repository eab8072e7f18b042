"""The latency benchmark still runs end to end (its numbers are not checked here: benchmarks, not timed tests)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture()
def bench_propagation(benchmark_module):  # noqa: ANN001, ANN201
    return benchmark_module("bench_propagation")


@pytest.mark.parametrize("extra", [[], ["--amp"]])
def test_light_benchmark_covers_the_object_and_prints_a_table(bench_propagation, capsys, extra) -> None:  # noqa: ANN001
    results = bench_propagation.main(["--configs", "light", "--spans", "20", "--repeat", "1", "--threads", "1", *extra])
    assert len(results) == 1 and results[0]["dice"] > 0.95
    assert results[0]["rounds"] >= 1 and results[0]["gflops"] > 0
    table = capsys.readouterr().out
    assert "| light | 20 | 0 |" in table and "total s" in table


def test_walker_weights_run_side_by_side(bench_propagation, capsys) -> None:  # noqa: ANN001
    args = ["--configs", "light", "--spans", "20", "--repeat", "1", "--threads", "1", "--walker-weights", "0", "0.7"]
    results = bench_propagation.main(args)
    assert [r["walker_weight"] for r in results] == [0.0, 0.7]
    assert all(r["dice"] > 0.95 for r in results)
    assert results[0]["seconds"]["random_walker"] < 0.01 < results[1]["seconds"]["random_walker"]
    table = capsys.readouterr().out
    assert "| light | 20 | 0 |" in table and "| light | 20 | 0.7 |" in table and "random_walker s" in table


def test_peers_benchmark_calls_the_propagation_benchmark_as_it_is_defined(bench_propagation) -> None:  # noqa: ANN001
    import inspect

    from pam_monai.inferers import PropagationInferer

    # bench_peers.py calls bench(config, span, repeat, folder, inferer): the rest must have defaults
    signature = inspect.signature(bench_propagation.bench)
    signature.bind("light", 100, 1, Path("."), PropagationInferer())
