"""``locolab many-concepts``: efficacy and preservation against the number of concepts in one edit. On the toy world
one and two backgrounds are edited on the localized layer and evaluated; each concept's efficacy is the battery's
concept rows over its own images, which add up to the pooled rows; bad counts and methods are one line."""

import pytest

from locolab.compute.cli import main
from locolab.compute.edit.many_concepts import check_counts, default_counts
from locolab.contract.errors import UserError

TOY = ["many-concepts", "--model", "toyworld", "--family", "style", "--layers", "12", "--positions",
       "subject+padding"]


def test_the_default_counts_double_up_to_every_concept():
    assert [default_counts(n) for n in (1, 3, 4, 8, 50)] == [
        [1], [1, 2, 3], [1, 2, 4], [1, 2, 4, 8], [1, 2, 4, 8, 16, 32, 50]]
    assert check_counts([4, 1, 2], 4) == [1, 2, 4]
    with pytest.raises(UserError, match="--counts 5,10: more than the 4 concepts given"):
        check_counts([1, 5, 10], 4)


@pytest.mark.parametrize("argv, message", [
    (["--counts", "1,4"], "--counts 4: more than the 3 concepts given; give at most 3 or more --concepts"),
    (["--method", "time"], "many-concepts edits several concepts in one solve: use --method loco, all-layers, uce, "
                           "not time"),
    (["--counts", "0"], "bad --counts '0'"),
])
def test_bad_counts_and_methods_are_one_line(tmp_path, capsys, argv, message):
    assert main([*TOY, *argv, "--artifacts", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.slow
@pytest.mark.heavy  # the slow tier: make test-heavy
def test_each_concepts_efficacy_adds_up_to_the_pooled_rows_and_the_table_names_every_count(tmp_path, capsys):
    import json

    assert main([*TOY, "--counts", "1,2", "--seeds", "0", "--unrelated", "4", "--artifacts", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 concept(s) (stripes-loco-" in out and "2 concept(s) (stripes-loco-" in out
    assert [line.split()[:2] for line in out.splitlines() if line.strip().startswith("efficacy")] == [
        ["efficacy", "stripes"], ["efficacy", "stripes"], ["efficacy", "dots"]]
    (two,) = [json.loads(p.read_text()) for p in tmp_path.glob("edits/*/evals/*/eval.json")
              if "by_concept" in json.loads(p.read_text())["battery"]]
    battery = two["battery"]
    assert list(battery["by_concept"]) == ["stripes", "dots"]
    for pooled in [r for r in battery["detection"] if r["group"] == "concept" and r["role"] == "efficacy"]:
        parts = [next(r for r in rows if r["detector"] == pooled["detector"])
                 for rows in battery["by_concept"].values()]
        assert sum(r["units"] for r in parts) == pooled["units"]
        for key in ("before", "after"):  # rates of the parts weighted by their images: the pooled rate exactly
            assert sum(r[key] * r["units"] for r in parts) == pytest.approx(pooled[key] * pooled["units"], abs=1e-9)
