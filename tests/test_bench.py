"""``python -m bench.generation``: the ways interleaved and repeated, medians with their spread; ``python -m
bench.dashboard_browser``: each page's first render in a fresh browser."""

import os

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


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists("/usr/bin/chromedriver"), reason="chromium-driver missing")
@pytest.mark.heavy  # the slow tier: make test-heavy
def test_the_browser_bench_times_each_page_and_the_heat_map_comes_first(tmp_path_factory, capsys):
    from dashboard_fixtures import real_root

    from bench.dashboard_browser import main as browser_bench

    result = browser_bench([str(real_root(tmp_path_factory)), "--repeats", "2", "--pages", "Layer map", "Overview"])

    out = capsys.readouterr().out
    assert {page: len(times) for page, times in result["times"].items()} == {"Layer map": 2, "Overview": 2}
    assert all(0 < t < 120 for times in result["times"].values() for t in times)
    assert "2 interleaved rounds, median [min, max] in s" in out and "(goal < 3 s)" in out
    # Charts first: on a 1280×800 screen the heat map's cells start under the title, one row of controls and the
    # figure's title (y ≈ 376 on the demo root; they started at y ≈ 690 under a radio row, two rows of controls and
    # the run's settings).
    assert max(result["tops"]["Layer map"]) < 420
