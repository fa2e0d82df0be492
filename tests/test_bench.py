"""``python -m bench.generation``: the ways interleaved and repeated, medians with their spread."""

import pytest

from bench.generation import main, schedule


def test_every_round_runs_every_way_once_in_a_rotated_order():
    assert schedule(["a", "b", "c"], 3) == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


@pytest.mark.slow  # nine timed generations
def test_the_benchmark_prints_medians_and_ranges_of_interleaved_rounds(capsys):
    result = main(["--model", "tiny-sd1", "--steps", "1", "--size", "32", "--windows", "2", "--seeds", "1",
                   "--batch-size", "2", "--repeats", "3", "--device", "cpu"])
    out = capsys.readouterr().out
    assert {name: len(times) for name, times in result["times"].items()} == {"batched": 3, "per_case": 3, "plain": 3}
    assert "3 interleaved rounds, median [min, max]" in out
    for line in ("(a) batched", "(b) per_case", "(c) plain", "a/b = ", "a/c = "):
        assert line in out
