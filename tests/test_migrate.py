"""Schema v3's method-neutral columns and the exact migration of older roots (``locolab.compute.migrate``): a root
written before v3 with causal-tracing or attention-contribution rows is refused with one line naming the command, and
that command rewrites it into what v3's writers write."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from locolab.compute.migrate import main, migrate
from locolab.contract import store, summaries
from locolab.contract.errors import UserError

MODEL, SCORER = "tiny-sd1", "tiny-clip"
TRACE = dict(method="trace-unet", component="cross-attention", noise=3.0)
CONTRIBUTION = dict(method="attention-contribution", component="cross-attention")


def _row(case_id, kind, score, seed=0, **columns):
    return dict(case_id=case_id, run_id="run", model=MODEL, family="style", concept="van gogh", kind=kind, seed=seed,
                scorer_id=SCORER, score_text="style of van gogh", score=score, **columns)


def _v3():
    """(scores parts, contributions parts) as v3's writers write them: part name -> rows."""
    locogen = [_row(f"w{start}", "window", 0.5, window_start=start, window_size=2, method="locogen",
                    component="cross-attention") for start in range(3)]
    trace = [_row(f"o{seed}", "original", 0.75, seed, **TRACE) for seed in (0, 1)]
    trace += [_row(f"c{seed}", "corrupted", 0.25, seed, **TRACE) for seed in (0, 1)]
    trace += [_row(f"r{site}-{seed}", "restored", 0.25 + 0.125 * site, seed, site=site, **TRACE)
              for site in range(3) for seed in (0, 1)]
    top = [_row("a0", "original", 0.8, **CONTRIBUTION), _row("t0", "target", 0.2, **CONTRIBUTION),
           _row("k0", "top-k", 0.5, blocks=[1, 4], **CONTRIBUTION)]
    contributions = [dict(case_id="a0", run_id="run", model=MODEL, family="style", concept="van gogh", seed=0,
                          component="cross-attention", site=site, contribution=float(site)) for site in range(5)]
    return {"locogen": locogen, "trace": trace, "top": top}, {"contribution-a0": contributions}


def _as_v2(scores: dict, contributions: dict) -> dict:
    """The same results as the writers before v3 stored them: every part of ``scores``."""
    old = {}
    for part, rows in scores.items():
        old[part] = []
        for row in rows:
            row = dict(row)
            if row.get("method", "").startswith("trace-") and row["kind"] == "restored":
                row.update(window_start=row["site"], window_size=1)
            if row["kind"] == "top-k":
                row["window_size"] = len(row["blocks"])
            row.pop("site", None)
            old[part].append(row)
    for part, rows in contributions.items():
        old[part] = [dict(case_id=r["case_id"], run_id=r["run_id"], model=r["model"], family=r["family"],
                          concept=r["concept"], kind="contribution", window_start=r["site"], window_size=1,
                          seed=r["seed"], scorer_id="attention-contribution", score_text=r["concept"],
                          score=r["contribution"], **CONTRIBUTION) for r in rows]
    return old


def _write_v2(root, parts: dict) -> None:
    v2 = pa.schema([field for field in store.SCHEMAS["scores"] if field.name != "site"])
    for part, rows in parts.items():
        data = pa.Table.from_pylist([{**row, "schema_version": 2} for row in rows], schema=v2)
        path = store.part_path("scores", part, {"model": MODEL, "family": "style"}, root)
        store.atomic_write(path, lambda file, data=data: pq.write_table(data, file))


def _write_v3(root, scores: dict, contributions: dict) -> None:
    for part, rows in scores.items():
        store.write_table("scores", rows, part, root=root)
    for part, rows in contributions.items():
        store.write_table("contributions", rows, part, root=root)


def _tables(root) -> dict:
    """Every row of both tables, but the version of the writer (LocoGen's older files are read as they are)."""
    con = store.Store(root).connect()
    return {table: sorted(con.sql(f"SELECT * EXCLUDE (schema_version) FROM {table}").to_arrow_table().to_pylist(),
                          key=str)
            for table in ("scores", "contributions")}


def test_an_older_root_with_trace_or_contribution_rows_is_refused_with_the_command_that_migrates_it(tmp_path):
    _write_v2(tmp_path, _as_v2(*_v3()))
    message = (f"artifact root {tmp_path} has 3 file(s) of causal tracing or attention contribution from before "
               f"schema v3 (their sites are in other columns now): run `python -m locolab.compute.migrate {tmp_path}` "
               "to rewrite them exactly, then open it again")
    with pytest.raises(UserError) as refused:
        store.Store(tmp_path).connect()
    assert str(refused.value) == message
    with pytest.raises(UserError) as refused:  # nothing is written into it either
        store.Store(tmp_path).check_writable()
    assert str(refused.value) == message


def test_an_older_root_of_locogen_rows_only_reads_as_it_is(tmp_path):
    scores, _ = _v3()
    _write_v2(tmp_path, {"locogen": scores["locogen"]})
    rows = store.Store(tmp_path).connect().sql("SELECT window_start, site, schema_version FROM scores").fetchall()
    assert sorted(rows) == [(0, None, 2), (1, None, 2), (2, None, 2)]


def test_migration_rewrites_an_older_root_into_what_v3_writes(tmp_path, capsys):
    scores, contributions = _v3()
    _write_v3(tmp_path / "v3", scores, contributions)
    _write_v2(tmp_path / "old", _as_v2(scores, contributions))

    assert main([str(tmp_path / "old")]) == 0
    assert capsys.readouterr().out == (f"{tmp_path / 'old'}: rewrote 3 file(s) as schema v3, moved 5 "
                                       "attention-contribution row(s) to tables/contributions\n")
    assert _tables(tmp_path / "old") == _tables(tmp_path / "v3")
    assert migrate(str(tmp_path / "old")) == (0, 0)  # nothing left to do
    con = store.Store(tmp_path / "old").connect()
    assert [(r["site"], r["recovery"]) for r in summaries.trace_effects(con).to_pylist()] == [
        (0, 0.0), (1, 0.25), (2, 0.5)]
    assert [(r["site"], r["site_rank"]) for r in summaries.contribution_map(con).to_pylist()] == [
        (0, 5), (1, 4), (2, 3), (3, 2), (4, 1)]
    (top,) = summaries.top_k_interventions(con).to_pylist()
    assert (top["k"], top["blocks"], top["normalized_drop"]) == (2, [1, 4], pytest.approx(0.5))


def test_a_migration_stopped_after_moving_contributions_finishes_on_the_next_run(tmp_path):
    scores, contributions = _v3()
    _write_v3(tmp_path / "v3", scores, contributions)
    _write_v2(tmp_path / "old", _as_v2(scores, contributions))
    # As if stopped between writing the contributions part and removing the old scores part.
    store.write_table("contributions", contributions["contribution-a0"], "contribution-a0", root=tmp_path / "old")

    assert migrate(str(tmp_path / "old")) == (3, 5)
    assert _tables(tmp_path / "old") == _tables(tmp_path / "v3")
