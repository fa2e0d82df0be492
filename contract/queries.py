"""The SQL behind each dashboard view (and the notebook API's heat map), over the views of
``contract.store.Store.connect()``.

Every function takes a DuckDB connection (or a table already read) and returns a pyarrow Table or plain values.
Nothing here caches, nor guards the store's connection: ``data`` does both.
"""

import threading

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from locolab.contract.names import COMPONENTS, CROSS_ATTENTION, FAMILIES, LOCOGEN, TRACE
from locolab.contract.summaries import (
    LOCOGEN_ROWS,
    TRACE_ROWS,
    Rule,
    contribution_map,
    judge,
    minimal_windows_sql,
    newest_finished,
    run_settings,
    top_k_interventions,
    trace_effects,
    window_estimates,
)

# Queries over tables already in memory run on cursors of this connection: a new connection costs ~20 ms, a cursor
# microseconds, and each thread gets its own cursor.
_MEMORY = duckdb.connect()
_MEMORY_LOCK = threading.Lock()


def _family_rank(column: str = "family") -> str:
    known = ", ".join(f"'{name}'" for name in FAMILIES)
    return f"coalesce(list_position([{known}], {column}), {len(FAMILIES) + 1})"


def runs(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """One row per run (LocoGen sweep or causal trace), newest first: model, method, config, status of its shards,
    case and score counts, dates."""
    return con.sql(f"""
        WITH r AS (
            SELECT run_id, any_value(model) AS model, coalesce(any_value(method), '{LOCOGEN}') AS method,
                   any_value(config_name) AS config,
                   string_agg(DISTINCT status, ', ' ORDER BY status) AS status,
                   count(DISTINCT shard)::VARCHAR || '/' || coalesce(max(num_shards), 1)::VARCHAR AS shards,
                   min(created_at) AS created_at, max(finished_at) AS finished_at
            FROM runs GROUP BY run_id),
        c AS (SELECT run_id, any_value(model) AS model, any_value(method) AS case_method, count(*) AS cases
              FROM cases GROUP BY run_id),
        s AS (SELECT run_id, any_value(model) AS model, count(*) AS scores,
                     count(DISTINCT family || '/' || concept) AS concepts FROM scores GROUP BY run_id)
        SELECT run_id, coalesce(r.model, c.model, s.model) AS model,
               coalesce(r.method, CASE WHEN {TRACE_ROWS.replace("method", "case_method")} THEN '{TRACE}'
                        ELSE '{LOCOGEN}' END) AS method,
               config, coalesce(status, 'no run record')
               AS status, shards, coalesce(concepts, 0) AS concepts, coalesce(cases, 0) AS cases,
               coalesce(scores, 0) AS scores, created_at, finished_at
        FROM r FULL JOIN c USING (run_id) FULL JOIN s USING (run_id)
        ORDER BY created_at DESC NULLS LAST, run_id""").to_arrow_table()


def models(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Models with runs or scores in the store, sorted."""
    rows = con.execute("SELECT model FROM runs UNION SELECT model FROM scores").fetchall()
    return sorted(model for (model,) in rows if model)


def run_list(con: duckdb.DuckDBPyConnection, method: str = LOCOGEN) -> pa.Table:
    """Every run of ``method`` (``locogen`` sweeps or ``trace`` runs) with its settings, newest first
    (``contract.summaries.run_settings``): what the run picker lists and shows next to the map. LocoGen runs without
    a scored window (nothing to map yet) are left out."""
    runs = run_settings(con, method=method)
    return runs.filter(pc.greater(runs["window_scores"], 0)) if method == LOCOGEN else runs


def default_run(runs: pa.Table, model: str) -> str | None:
    """The run a page shows first: the newest run of ``model`` whose shards all finished, else its newest run
    (``runs``: ``run_list``; ``contract.summaries.newest_finished``)."""
    return newest_finished(runs, model)


def localization_table(con: duckdb.DuckDBPyConnection, run_id: str, level: float) -> pa.Table:
    """One run's windows: mean score, references, gap, measurability, normalized drop and its interval at ``level``
    (``contract.summaries.window_estimates``).

    Neither depends on the threshold, so this one table, built once per (state of the store, run, level), serves every
    threshold: ``layer_cells`` and ``minimal_windows`` answer from it in milliseconds.
    """
    return window_estimates(con, [run_id], Rule(level=level))


def _over(loc: pa.Table) -> duckdb.DuckDBPyConnection:
    """A fresh cursor with ``loc`` (a localization or trace table) registered as the table ``loc``."""
    with _MEMORY_LOCK:
        con = _MEMORY.cursor()
    con.register("loc", loc)
    return con


_JUDGED: dict = {}  # the last judgement: the map's cells and its minimal windows ask for the same one in turn


def judged(loc: pa.Table, scorer_id: str, threshold: float) -> pa.Table:
    """One scorer's windows of ``loc`` judged at ``threshold`` (``contract.summaries.judge``: the paired test, adjusted
    over each concept's windows, and ``localizes``; ``contract.summaries.verdict`` words a row)."""
    key = (id(loc), scorer_id, threshold)
    with _MEMORY_LOCK:
        last = _JUDGED.get("last")
    if last is not None and last[0] == key and last[1] is loc:
        return last[2]
    table = judge(loc.filter(pc.equal(loc["scorer_id"], scorer_id)), threshold, words=False)
    with _MEMORY_LOCK:
        _JUDGED["last"] = (key, loc, table)
    return table


def _localization_rows() -> str:
    return f"SELECT *, {_family_rank()} AS family_rank FROM loc WHERE scorer_id = $scorer"


def layer_cells(loc: pa.Table, scorer_id: str, window_size: int, threshold: float) -> pa.Table:
    """The heat map's cells: every window of size m of one run's scorer, judged at the threshold (``judged``), ordered
    by family (style, objects, facts, color, then others), concept and window start.

    Args:
        loc: ``localization_table``.
    """
    with _over(judged(loc, scorer_id, threshold)) as con:
        return con.sql(f"SELECT * FROM ({_localization_rows()}) WHERE window_size = $size "
                       "ORDER BY family_rank, family, concept, window_start",
                       params={"scorer": scorer_id, "size": window_size}).to_arrow_table()


def minimal_windows(loc: pa.Table, scorer_id: str, threshold: float) -> pa.Table:
    """Per concept of one run's scorer: the smallest window size with a localizing window and, at that size, the
    largest drop (ties: the earliest start), the rule of ``contract.summaries.minimal_windows``; in family order.

    Args:
        loc: ``localization_table``.
    """
    with _over(judged(loc, scorer_id, threshold)) as con:
        return con.sql(f"{minimal_windows_sql(_localization_rows(), 'family, concept')} "
                       "ORDER BY family_rank, family, concept", params={"scorer": scorer_id}).to_arrow_table()


def trace_table(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Every trace run's sites with their recovery and references, per run (``contract.summaries.trace_effects``), for
    ``trace_cells``."""
    return trace_effects(con)


def trace_cells(trace: pa.Table, run_id: str, scorer_id: str, component: str, noise: float,
                min_gap: float = -1.0) -> pa.Table:
    """The causal-tracing map's cells: every site of one (trace run, scorer, component, noise), in family order, then
    concept and site. Where ``corruption_gap`` is below ``min_gap`` the noise did not remove the attribute, so
    recovery is a ratio of noise: it is NULL there and ``untraceable`` true
    (the default, -1, keeps every concept: scores are cosines, so gaps are above -2).

    Args:
        trace: ``trace_table``.
    """
    with _over(trace) as con:
        return con.sql("SELECT * REPLACE (CASE WHEN corruption_gap >= $gap THEN recovery END AS recovery), "
                       f"corruption_gap < $gap AS untraceable, {_family_rank()} AS family_rank FROM loc "
                       "WHERE run_id = $run AND scorer_id = $scorer AND component = $component AND noise = $noise "
                       "ORDER BY family_rank, family, concept, site",
                       params={"run": run_id, "scorer": scorer_id, "component": component, "noise": noise,
                               "gap": min_gap}).to_arrow_table()


def trace_gallery(con: duckdb.DuckDBPyConnection, model: str, scorer_id: str, family: str, concept: str,
                  component: str, noise: float, site: int | None) -> pa.Table:
    """A traced concept's original, corrupted and site-``site``-restored images (every site's when ``site`` is None)
    per prompt and seed, with scores; ``site`` is the restored site."""
    return con.sql(f"""
        WITH c AS (
            SELECT * FROM cases
            WHERE model = $model AND family = $family AND concept = $concept AND {TRACE_ROWS}
              AND component = $component AND noise = $noise
              AND (kind != 'restored' OR $site IS NULL OR site = $site)
            QUALIFY row_number() OVER (PARTITION BY case_id ORDER BY run_id DESC) = 1),
        s AS (SELECT case_id, avg(score) AS score FROM scores
              WHERE model = $model AND family = $family AND concept = $concept AND scorer_id = $scorer
              GROUP BY case_id)
        SELECT c.prompt, c.kind, c.seed, c.image_path, s.score,
               c.site
        FROM c LEFT JOIN s USING (case_id)
        ORDER BY prompt, list_position(['original', 'corrupted', 'restored'], kind), site, seed""",
                   params={"model": model, "scorer": scorer_id, "family": family, "concept": concept,
                           "component": component, "noise": noise, "site": site}).to_arrow_table()


def contribution_table(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Every site's mean attention contribution per concept (``contract.summaries.contribution_map``)."""
    return contribution_map(con)


def top_k_table(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Every top-k intervention's score, references and normalized drop (``contract.summaries.top_k_interventions``;
    the threshold is applied by the view)."""
    return top_k_interventions(con).drop_columns(["threshold", "localizes"])


def contribution_cells(contribution: pa.Table, model: str) -> pa.Table:
    """The attention-contribution map's cells of one model, in family order, then concept and site, with each site's
    contribution relative to its concept's dominant site (``relative``, 1 = dominant): raw norms differ between
    concepts, the ranking within a concept is what localizes.

    Args:
        contribution: ``contribution_table``.
    """
    with _over(contribution) as con:
        return con.sql(f"SELECT *, contribution / nullif(max(contribution) OVER (PARTITION BY family, concept), 0) "
                       f"AS relative, {_family_rank()} AS family_rank FROM loc WHERE model = $model "
                       "ORDER BY family_rank, family, concept, site", params={"model": model}).to_arrow_table()


def concept_order(keys) -> list[tuple[str, str]]:
    """Distinct (family, concept) pairs in the order of every view: family order, then names."""
    rank = {family: i for i, family in enumerate(FAMILIES)}
    return sorted(set(keys), key=lambda key: (rank.get(key[0], len(FAMILIES)), key))


def layers(con: duckdb.DuckDBPyConnection, model: str, component: str = CROSS_ATTENTION) -> dict[int, dict]:
    """Layer index -> {path, block, resolution} of one component of ``model`` (LocoGen's layers: cross-attention,
    also for files from before ``component`` existed); empty when no run recorded them."""
    rows = con.execute('SELECT "index", any_value(path), any_value(block), any_value(resolution) FROM layers '
                       "WHERE model = ? AND coalesce(component, 'cross-attention') = ? GROUP BY \"index\"",
                       [model, component]).fetchall()
    return {index: {"path": path, "block": block, "resolution": resolution} for index, path, block, resolution in rows}


def seed_scores(con: duckdb.DuckDBPyConnection, run_id: str, scorer_id: str, family: str, concept: str) -> pa.Table:
    """Mean score per (kind, window size, window start, seed) of one concept in one run: the seed spread of the line
    view."""
    return con.sql(f"""
        SELECT kind, window_size, window_start, seed, avg(score) AS score FROM scores
        WHERE run_id = $run AND scorer_id = $scorer AND family = $family AND concept = $concept AND {LOCOGEN_ROWS}
        GROUP BY ALL ORDER BY kind, window_size, window_start, seed""",
                   params={"run": run_id, "scorer": scorer_id, "family": family, "concept": concept}
                   ).to_arrow_table()


def gallery(con: duckdb.DuckDBPyConnection, model: str, scorer_id: str, family: str, concept: str,
            window_size: int) -> pa.Table:
    """The cases of one (model, concept) at window size m plus its original and target references, each with its
    image path and mean score; a case stored by several runs counts once (the latest run)."""
    return con.sql(f"""
        WITH c AS (
            SELECT * FROM cases
            WHERE model = $model AND family = $family AND concept = $concept AND {LOCOGEN_ROWS}
              AND (kind IN ('original', 'target') OR window_size = $size)
            QUALIFY row_number() OVER (PARTITION BY case_id ORDER BY run_id DESC) = 1),
        s AS (SELECT case_id, avg(score) AS score FROM scores
              WHERE model = $model AND family = $family AND concept = $concept AND scorer_id = $scorer
                AND {LOCOGEN_ROWS}
              GROUP BY case_id)
        SELECT c.case_id, c.prompt, c.target, c.kind, c.window_start, c.window_size, c.seed, c.image_path, s.score
        FROM c LEFT JOIN s USING (case_id)
        ORDER BY prompt, kind, window_start, seed""",
                   params={"model": model, "scorer": scorer_id, "family": family, "concept": concept,
                           "size": window_size}).to_arrow_table()


def concepts(con: duckdb.DuckDBPyConnection, model: str) -> list[tuple[str, str]]:
    """(family, concept) pairs with cases (LocoGen or tracing) for ``model``, in family order."""
    rows = con.execute(f"SELECT DISTINCT family, concept, {_family_rank()} AS rank FROM cases WHERE model = ? "
                       "ORDER BY rank, family, concept", [model]).fetchall()
    return [(family, concept) for family, concept, _ in rows]


def edit_pairs(con: duckdb.DuckDBPyConnection, edit_id: str, eval_id: str | None) -> pa.Table:
    """Before/after pairs of one evaluation of an edit (``eval_id`` None: the one from before evaluations had ids):
    per (group, prompt, seed), both scores, the delta and both images."""
    return con.sql("""
        SELECT "group", prompt, seed,
               any_value(score) FILTER (WHERE phase = 'before') AS before,
               any_value(score) FILTER (WHERE phase = 'after') AS after,
               after - before AS delta,
               any_value(image_path) FILTER (WHERE phase = 'before') AS before_image,
               any_value(image_path) FILTER (WHERE phase = 'after') AS after_image
        FROM edit_scores WHERE edit_id = $edit AND eval_id IS NOT DISTINCT FROM $eval
        GROUP BY ALL ORDER BY "group", prompt, seed""", params={"edit": edit_id, "eval": eval_id}).to_arrow_table()


def edit_group_means(con: duckdb.DuckDBPyConnection, model: str, family: str, concept: str,
                     eval_id: str | None) -> pa.Table:
    """Per edit of one concept and per prompt group: mean score before and after, for comparing methods, from the
    evaluations with one set of settings (``eval_id``: the same for every edit evaluated with those settings)."""
    return con.sql("""
        SELECT edit_id, any_value(method) AS method, "group",
               avg(score) FILTER (WHERE phase = 'before') AS before,
               avg(score) FILTER (WHERE phase = 'after') AS after,
               after - before AS delta
        FROM edit_scores WHERE model = $model AND family = $family AND concept = $concept
          AND eval_id IS NOT DISTINCT FROM $eval
        GROUP BY edit_id, "group" ORDER BY method, edit_id, "group\"""",
                   params={"model": model, "family": family, "concept": concept, "eval": eval_id}).to_arrow_table()


def battery_evaluations(con: duckdb.DuckDBPyConnection, model: str, family: str, concept: str) -> list[tuple[str, str]]:
    """(edit_id, eval_id) of every evaluation with an id of the concept's edits, sorted: the cells of the
    localization x editor grid (``contract.method_grid``)."""
    return con.execute("SELECT DISTINCT edit_id, eval_id FROM edit_scores WHERE model = ? AND family = ? AND "
                       "concept = ? AND eval_id IS NOT NULL ORDER BY 1, 2", [model, family, concept]).fetchall()


def scorers(con: duckdb.DuckDBPyConnection, model: str) -> list[str]:
    """Scorers with scores for ``model``, sorted."""
    return sorted(s for (s,) in con.execute("SELECT DISTINCT scorer_id FROM scores WHERE model = ?", [model]).fetchall()
                  if s)


def window_sizes(con: duckdb.DuckDBPyConnection, model: str, family: str, concept: str) -> list[int]:
    """Window sizes with cases for one (model, concept), ascending."""
    rows = con.execute("SELECT DISTINCT window_size FROM cases WHERE model = ? AND family = ? AND concept = ? "
                       f"AND kind = 'window' AND {LOCOGEN_ROWS} ORDER BY 1",
                       [model, family, concept]).fetchall()
    return [size for (size,) in rows]


def targets(con: duckdb.DuckDBPyConnection, model: str, family: str, concept: str) -> list[str]:
    """Target prompts the sweeps used for one (model, concept), most used first."""
    rows = con.execute("SELECT target FROM cases WHERE model = ? AND family = ? AND concept = ? AND target IS NOT NULL"
                       f" AND {LOCOGEN_ROWS} GROUP BY target ORDER BY count(*) DESC, target",
                       [model, family, concept]).fetchall()
    return [target for (target,) in rows]


def traced_components(con: duckdb.DuckDBPyConnection, model: str, family: str, concept: str) -> list[tuple[str, float]]:
    """(component, noise) pairs with causal-tracing images of one (model, concept), components in forward order."""
    rows = con.execute(f"SELECT DISTINCT component, noise FROM cases WHERE model = ? AND family = ? AND concept = ? "
                       f"AND {TRACE_ROWS} AND component IS NOT NULL AND noise IS NOT NULL ORDER BY 1, 2",
                       [model, family, concept]).fetchall()
    order = {name: i for i, name in enumerate(COMPONENTS)}
    return sorted(rows, key=lambda row: (order.get(row[0], len(order)), row))


def case_runs(con: duckdb.DuckDBPyConnection, model: str, family: str, concept: str) -> list[str]:
    """The LocoGen runs that stored cases of one (model, concept), sorted: what a gallery export names as its run."""
    rows = con.execute(f"SELECT DISTINCT run_id FROM cases WHERE model = ? AND family = ? AND concept = ? "
                       f"AND {LOCOGEN_ROWS} ORDER BY 1", [model, family, concept]).fetchall()
    return [run_id for (run_id,) in rows]


def localization_benchmark(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Every stored benchmark run's rows (``contract.planted``), the newest run first, then model, method, family."""
    return con.sql("SELECT * FROM localization_benchmark ORDER BY max(created_at) OVER (PARTITION BY benchmark_id) "
                   "DESC, benchmark_id, model, method, family").to_arrow_table()
