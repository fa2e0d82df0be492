"""Summaries of an artifact root's tables, as SQL over the DuckDB views of ``contract.store.Store.connect()``:
LocoGen's localization (per window: mean score, references, normalized drop), minimal localizing windows, causal
tracing's recovery per site, and attention contribution's per-site map and top-k interventions. Defined once here;
the compute commands and the dashboard both run them.
"""

import duckdb
import pyarrow as pa

from contract.names import ATTENTION_CONTRIBUTION, CONTRIBUTION, LOCOGEN, TOP_K, TRACE

# One row per scored case (a case scored again by a later run counts once), then per-concept references and
# per-window means. Normalized drop = (original - window) / (original - target); NULL when the two references tie.
_LOCALIZATION_SQL = """
WITH s AS (
    SELECT * FROM scores WHERE {locogen} AND {run_filter}
    QUALIFY row_number() OVER (PARTITION BY case_id, scorer_id, score_text ORDER BY run_id DESC) = 1
), refs AS (
    SELECT model, family, concept, scorer_id,
           avg(score) FILTER (WHERE kind = 'original') AS original_score,
           avg(score) FILTER (WHERE kind = 'target') AS target_score
    FROM s GROUP BY ALL
), windows AS (
    SELECT model, family, concept, scorer_id, window_size, window_start,
           avg(score) AS score_mean, stddev_samp(score) AS score_std,
           count(DISTINCT seed) AS n_seeds, count(*) AS n_images
    FROM s WHERE kind = 'window' GROUP BY ALL
)
SELECT w.model, w.family, w.concept, w.scorer_id, w.window_size, w.window_start, w.score_mean, w.score_std,
       w.n_seeds, w.n_images, r.original_score, r.target_score,
       (r.original_score - w.score_mean) / nullif(r.original_score - r.target_score, 0) AS normalized_drop,
       $threshold::DOUBLE AS threshold,
       coalesce(normalized_drop >= $threshold, false) AS localizes
FROM windows w LEFT JOIN refs r USING (model, family, concept, scorer_id)
"""

GROUP = "model, family, concept, scorer_id"  # what one localization summary is about
# LocoGen's rows of ``cases``/``scores`` (causal-tracing rows share those tables; older files have no method).
LOCOGEN_ROWS = f"coalesce(method, '{LOCOGEN}') = '{LOCOGEN}'"
TRACE_ROWS = f"method LIKE '{TRACE}-%'"  # causal tracing's rows (trace-unet, trace-text)


def minimal_windows_sql(localization_sql: str, partition: str) -> str:
    """The minimal localizing window per ``partition`` among the rows of ``localization_sql`` (which has
    ``localizes``, ``window_size``, ``normalized_drop`` and ``window_start``): the smallest window size with a
    localizing window and, at that size, the largest drop (ties: the earliest start)."""
    return (f"SELECT * FROM ({localization_sql}) WHERE localizes QUALIFY row_number() OVER "
            f"(PARTITION BY {partition} ORDER BY window_size, normalized_drop DESC, window_start) = 1")


def _run_filter(sql: str, run_ids: list[str] | None) -> tuple[str, dict]:
    params = {} if run_ids is None else {"run_ids": list(run_ids)}
    run_filter = "true" if run_ids is None else "list_contains($run_ids, run_id)"
    return sql.format(run_filter=run_filter, locogen=LOCOGEN_ROWS), params


def localization(con: duckdb.DuckDBPyConnection, threshold: float = 0.5,
                 run_ids: list[str] | None = None) -> pa.Table:
    """Per (model, family, concept, scorer_id, window_size, window_start): the window's mean score over its
    images, the concept's original and target reference scores (means over the concept's prompts and seeds),
    the normalized drop and whether it localizes (drop >= threshold).

    Args:
        con: a connection from ``Store.connect()``.
        threshold: fraction of the original-to-target gap a window must remove to localize.
        run_ids: restrict to these runs; all runs when None.

    Returns:
        A pyarrow Table sorted by model, family, concept, scorer_id, window_size, window_start.
    """
    sql, params = _run_filter(_LOCALIZATION_SQL, run_ids)
    query = f"{sql} ORDER BY {GROUP}, window_size, window_start"
    return con.sql(query, params={"threshold": threshold, **params}).to_arrow_table()


def minimal_windows(con: duckdb.DuckDBPyConnection, threshold: float = 0.5,
                    run_ids: list[str] | None = None) -> pa.Table:
    """Per (model, family, concept, scorer_id): the smallest window size with a localizing window, and at that
    size the window with the largest normalized drop (ties: the earliest start). Concepts with no localizing
    window have no row.

    Args, Returns: as ``localization``, one row per group with the same columns.
    """
    sql, params = _run_filter(_LOCALIZATION_SQL, run_ids)
    query = f"{minimal_windows_sql(sql, GROUP)} ORDER BY {GROUP}"
    return con.sql(query, params={"threshold": threshold, **params}).to_arrow_table()


# Causal tracing: per site, recovery = (restored - corrupted) / (original - corrupted), with the references of the
# same (method, component, noise); NULL when the two references tie. corruption_gap = original - corrupted.
MIN_CORRUPTION_GAP = 0.02  # CLIP-score units; below it a concept is untraceable at this noise
_TRACE_SQL = f"""
WITH s AS (
    SELECT * FROM scores WHERE {TRACE_ROWS} AND {{run_filter}}
    QUALIFY row_number() OVER (PARTITION BY case_id, scorer_id, score_text ORDER BY run_id DESC) = 1
), refs AS (
    SELECT model, family, concept, scorer_id, method, component, noise,
           avg(score) FILTER (WHERE kind = 'original') AS original_score,
           avg(score) FILTER (WHERE kind = 'corrupted') AS corrupted_score
    FROM s GROUP BY ALL
), sites AS (
    SELECT model, family, concept, scorer_id, method, component, noise, window_start AS site,
           avg(score) AS score_mean, stddev_samp(score) AS score_std,
           count(DISTINCT seed) AS n_seeds, count(*) AS n_images
    FROM s WHERE kind = 'restored' GROUP BY ALL
)
SELECT t.*, r.original_score, r.corrupted_score, r.original_score - r.corrupted_score AS corruption_gap,
       (t.score_mean - r.corrupted_score) / nullif(corruption_gap, 0) AS recovery
FROM sites t LEFT JOIN refs r USING (model, family, concept, scorer_id, method, component, noise)
ORDER BY model, family, concept, scorer_id, method, component, noise, site
"""


def trace_effects(con: duckdb.DuckDBPyConnection, run_ids: list[str] | None = None) -> pa.Table:
    """Causal tracing's analogue of ``localization``: per (model, family, concept, scorer_id, method, component,
    noise, site): the restored images' mean score, the original and corrupted reference scores, their difference
    ``corruption_gap`` and the recovery ``(restored - corrupted) / corruption_gap``. Where the gap is below
    ``MIN_CORRUPTION_GAP`` the noise did not remove the attribute and the recovery is a ratio of noise.

    Args:
        con: a connection from ``Store.connect()``.
        run_ids: restrict to these runs; all runs when None.
    """
    sql, params = _run_filter(_TRACE_SQL, run_ids)
    return con.sql(sql, params=params).to_arrow_table()


# Attention contribution: per site, the mean over the concept's images (prompts x seeds) of the site's contribution,
# its share of the concept's total over sites (comparable between concepts, whose raw norms are not), and its rank
# (1 = dominant). A rerun's rows replace the earlier run's for the same case and site.
_CONTRIBUTION_SQL = f"""
WITH s AS (
    SELECT * FROM scores WHERE method = '{ATTENTION_CONTRIBUTION}' AND kind = '{CONTRIBUTION}' AND {{run_filter}}
    QUALIFY row_number() OVER (PARTITION BY case_id, window_start ORDER BY run_id DESC) = 1
), sites AS (
    SELECT model, family, concept, window_start AS site, avg(score) AS contribution,
           stddev_samp(score) AS contribution_std, count(DISTINCT seed) AS n_seeds, count(*) AS n_images
    FROM s GROUP BY ALL
)
SELECT *, contribution / nullif(sum(contribution) OVER (PARTITION BY model, family, concept), 0) AS share,
       rank() OVER (PARTITION BY model, family, concept ORDER BY contribution DESC, site) AS site_rank
FROM sites ORDER BY model, family, concept, site
"""


def contribution_map(con: duckdb.DuckDBPyConnection, run_ids: list[str] | None = None) -> pa.Table:
    """Attention contribution's analogue of ``trace_effects``: per (model, family, concept, site): the mean
    contribution over the concept's localization images, its spread, image and seed counts, its share of the
    concept's total and its rank (1 = the dominant site).

    Args:
        con: a connection from ``Store.connect()``.
        run_ids: restrict to these runs; all runs when None.
    """
    sql, params = _run_filter(_CONTRIBUTION_SQL, run_ids)
    return con.sql(sql, params=params).to_arrow_table()


# The top-k interventions, scored like LocoGen's windows against the same run's references.
_TOP_K_SQL = f"""
WITH s AS (
    SELECT * FROM scores WHERE method = '{ATTENTION_CONTRIBUTION}' AND kind IN ('original', 'target', '{TOP_K}')
        AND {{run_filter}}
    QUALIFY row_number() OVER (PARTITION BY case_id, scorer_id, score_text ORDER BY run_id DESC) = 1
), refs AS (
    SELECT model, family, concept, scorer_id,
           avg(score) FILTER (WHERE kind = 'original') AS original_score,
           avg(score) FILTER (WHERE kind = 'target') AS target_score
    FROM s GROUP BY ALL
), top AS (
    SELECT model, family, concept, scorer_id, window_size AS k, any_value(blocks) AS blocks,
           avg(score) AS score_mean, stddev_samp(score) AS score_std, count(DISTINCT seed) AS n_seeds,
           count(*) AS n_images
    FROM s WHERE kind = '{TOP_K}' GROUP BY model, family, concept, scorer_id, window_size
)
SELECT t.*, r.original_score, r.target_score,
       (r.original_score - t.score_mean) / nullif(r.original_score - r.target_score, 0) AS normalized_drop,
       $threshold::DOUBLE AS threshold, coalesce(normalized_drop >= $threshold, false) AS localizes
FROM top t LEFT JOIN refs r USING (model, family, concept, scorer_id)
ORDER BY model, family, concept, scorer_id, k
"""


def top_k_interventions(con: duckdb.DuckDBPyConnection, threshold: float = 0.5,
                        run_ids: list[str] | None = None) -> pa.Table:
    """Per (model, family, concept, scorer_id, k): the k dominant sites fed the target (``blocks``), the mean score
    of those images, the original and target references of the same run, the normalized drop
    (original − top-k) / (original − target) and whether it removes at least ``threshold`` of the gap.

    Args: as ``localization``.
    """
    sql, params = _run_filter(_TOP_K_SQL, run_ids)
    return con.sql(sql, params={"threshold": threshold, **params}).to_arrow_table()
