"""Summaries of an artifact root's tables over the DuckDB views of ``contract.store.Store.connect()``: LocoGen's
localization (per window: mean score, both references, normalized drop with a bootstrap interval, whether it
localizes), each concept's verdict and minimal localizing window, the runs' settings, causal tracing's recovery per
site, and attention contribution's per-site map and top-k interventions. Defined once here; the compute commands, the
notebook API and the dashboard all run them.

A summary is about one run, or about runs pooled because their settings match exactly (``check_poolable``); it never
mixes runs silently. The statistics (reference gap, noise floor, intervals, the rule) are in docs/statistics.md.

Usage::

    con = Store("artifacts").connect()
    concept_summary(con, run_ids=["toyworld-1a2b3c4d5e"]).to_pylist()
"""

import json
import math
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from locolab.contract import decision, intervals
from locolab.contract.errors import UserError
from locolab.contract.names import (
    ALL_LAYERS,
    ATTENTION_CONTRIBUTION,
    LOCOGEN,
    ORIGINAL,
    RANDOM_SCORER,
    TARGET,
    TOP_K,
    TRACE,
    WINDOW,
)
from locolab.contract.notation import window_label

DEFAULT_THRESHOLD = 0.5  # fraction of the original-to-reference gap a window must remove (the paper leaves it open)
DEFAULT_LEVEL = 0.95  # coverage of every interval
MIN_REFERENCE_GAP = 0.02  # CLIP-score units: a smaller original-to-reference gap is not a measurable attribute
# Prompt x seed units a concept needs before its noise can be measured: from 4 units a 95% bootstrap interval is about
# their range and covers ~87% (tests/test_statistics_simulation.py); from 8, ~94%.
MIN_UNITS = 8
# Prompts from which a concept's prompts are treated as a sample (resampled, the test over prompts); with fewer (the
# paper's configs have 2-4) the spread between prompts has at most 3 degrees of freedom, so the prompts are fixed and
# the conclusion is about them (docs/statistics.md).
CLUSTER_PROMPTS = 5
ADJUSTMENTS = ("holm", "none")  # over a concept's windows: Holm's step-down, or each window on its own
SELECTIONS = ("auto", "confirm", "all")  # how the minimal window is chosen and reported (docs/statistics.md)

GROUP = "model, family, concept, scorer_id"  # what one localization summary is about, within a run (set)
# LocoGen's rows of ``cases``/``scores`` (causal-tracing rows share those tables; older files have no method).
LOCOGEN_ROWS = f"coalesce(method, '{LOCOGEN}') = '{LOCOGEN}'"
TRACE_ROWS = f"method LIKE '{TRACE}-%'"  # causal tracing's rows (trace-unet, trace-text)
# What must be equal for runs to be pooled, in the order a difference is reported.
POOLED_SETTINGS = ("model", "steps", "guidance", "height", "width", "scheduler", "reference", "scorer_id")


@dataclass(frozen=True)
class Rule:
    """How windows are judged: ``threshold`` (fraction of the gap a window must remove, by the paired test at the
    one-sided error of the interval ``level``), the minimum reference gap ``min_gap``, the fewest prompt x seed units
    ``min_units``, the bootstrap's ``resamples`` and ``seed``, the ``meaningless_scorers`` whose scores cannot make a
    concept measurable (default: the random-weight ``tiny-clip``; tests that plant an answer clear it), the
    ``adjust``-ment over a concept's windows (``ADJUSTMENTS``), the ``selection`` of the minimal window
    (``SELECTIONS``) and the prompts from which prompts are resampled (``cluster_prompts``). The defaults are the ones
    docs/statistics.md explains."""

    threshold: float = DEFAULT_THRESHOLD
    level: float = DEFAULT_LEVEL
    min_gap: float = MIN_REFERENCE_GAP
    resamples: int = intervals.RESAMPLES
    seed: int = intervals.SEED
    min_units: int = MIN_UNITS
    meaningless_scorers: tuple[str, ...] = (RANDOM_SCORER,)
    adjust: str = ADJUSTMENTS[0]
    selection: str = SELECTIONS[0]
    cluster_prompts: int = CLUSTER_PROMPTS

    def __post_init__(self):
        if not 0 < self.level < 1:
            raise UserError(f"interval level must be between 0 and 1 (e.g. 0.95), got {self.level}")
        if self.resamples < 1:
            raise UserError(f"bootstrap resamples must be >= 1, got {self.resamples}")
        if self.adjust not in ADJUSTMENTS:
            raise UserError(f"adjustment must be one of {', '.join(ADJUSTMENTS)}, got {self.adjust!r}")
        if self.selection not in SELECTIONS:
            raise UserError(f"selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        if self.cluster_prompts < 2:
            raise UserError(f"prompts resampled from must be >= 2 (a single prompt has no spread), got "
                            f"{self.cluster_prompts}")

    def options(self) -> dict:
        """The keyword options of ``localization`` and ``concept_summary`` that give this rule."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


# ---------------------------------------------------------------------------------------------------------- runs

def _rows(method: str, alias: str = "") -> str:
    """The filter for one method's rows of ``cases``/``scores`` (``alias``: a table prefix such as 'c.')."""
    return (LOCOGEN_ROWS if method == LOCOGEN else TRACE_ROWS).replace("method", f"{alias}method")


def run_label(run_ids: list[str]) -> str:
    """The ``run_id`` a summary carries: the run's id, or the pooled runs' ids joined by '+' (run ids never hold
    '+')."""
    return "+".join(sorted(set(run_ids)))


_RUN_SETTINGS_SQL = f"""
WITH s AS (
    SELECT run_id, any_value(model) AS model, list(DISTINCT scorer_id ORDER BY scorer_id) AS scorer_ids,
           count(DISTINCT family || '/' || concept) AS concepts, count(*) FILTER (WHERE kind = '{WINDOW}') AS windows
    FROM scores WHERE {{rows}} AND {{chosen}} GROUP BY run_id
), c AS (
    SELECT run_id, list(DISTINCT steps ORDER BY steps) AS steps, list(DISTINCT guidance ORDER BY guidance) AS guidance,
           list(DISTINCT height ORDER BY height) AS height, list(DISTINCT width ORDER BY width) AS width,
           list(DISTINCT seed ORDER BY seed) AS seeds, count(DISTINCT prompt) AS prompts,
           list(DISTINCT window_size ORDER BY window_size) FILTER (WHERE kind = '{WINDOW}') AS window_sizes
    FROM cases WHERE {{rows}} AND {{chosen}} GROUP BY run_id
), r AS (
    SELECT run_id, any_value(config_name) AS config_name, any_value(config_json) AS config_json,
           list(DISTINCT scheduler ORDER BY scheduler) FILTER (WHERE scheduler IS NOT NULL) AS scheduler,
           list(DISTINCT reference ORDER BY reference) FILTER (WHERE reference IS NOT NULL) AS reference,
           string_agg(DISTINCT status, ', ' ORDER BY status) AS status,
           count(DISTINCT shard) FILTER (WHERE status = 'finished') AS finished_shards,
           coalesce(max(num_shards), 1) AS num_shards, min(created_at) AS created_at, max(finished_at) AS finished_at
    FROM runs WHERE {{chosen}} GROUP BY run_id
)
SELECT run_id, s.model, r.config_name, coalesce(r.status, 'no run record') AS status,
       coalesce(r.finished_shards = r.num_shards AND r.status = 'finished', false) AS finished,
       r.created_at, r.finished_at, c.steps, c.guidance, c.height, c.width, r.scheduler,
       -- runs written before the all-layers reference existed normalized by the target prompt
       coalesce(nullif(r.reference, []), ['{TARGET}']) AS reference, s.scorer_ids AS scorer_id, c.seeds,
       c.prompts, s.concepts, c.window_sizes, s.windows AS window_scores, r.config_json
FROM s LEFT JOIN c USING (run_id) LEFT JOIN r USING (run_id)
ORDER BY r.created_at DESC NULLS LAST, run_id
"""


def run_settings(con: duckdb.DuckDBPyConnection, run_ids: list[str] | None = None, method: str = LOCOGEN) -> pa.Table:
    """One row per run with scores: what its summary depends on, newest first.

    Columns: run_id, model, config_name, status (of its shards), finished (every shard finished), created_at,
    finished_at; the settings pooling compares (steps, guidance, height, width, scheduler, reference, scorer_id: each
    a list of the distinct values found, normally one; scheduler NULL for runs written before it was recorded);
    seeds, prompts, concepts, window_sizes, window_scores (how many window scores it has; none: nothing to map) and
    config_json (the study as run, e.g. its window search).

    Args:
        con: a connection from ``Store.connect()``.
        run_ids: only these runs; all when None.
        method: ``locogen`` (sweeps) or ``trace`` (causal-tracing runs).
    """
    rows = _rows(method)
    chosen = "true" if run_ids is None else "list_contains($runs, run_id)"
    params = {} if run_ids is None else {"runs": list(run_ids)}
    return con.sql(_RUN_SETTINGS_SQL.format(rows=rows, chosen=chosen), params=params).to_arrow_table()


def newest_finished(runs: pa.Table, model: str) -> str | None:
    """The newest run of ``model`` in ``runs`` (``run_settings``) whose shards all finished, else its newest run;
    None when it has none."""
    mine = [r for r in runs.to_pylist() if r["model"] == model]
    return next((r["run_id"] for r in mine if r["finished"]), mine[0]["run_id"] if mine else None)


def newest_finished_run(con: duckdb.DuckDBPyConnection, model: str, method: str = LOCOGEN) -> str | None:
    """``newest_finished`` among the runs of ``method`` in the store."""
    return newest_finished(run_settings(con, method=method), model)


def _shown(value) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, list):
        return ", ".join(_shown(v) for v in value) if value else "unknown"
    return repr(value) if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else str(value)


_PROMPT_SETTINGS_SQL = f"""
SELECT c.run_id, c.family, c.concept, c.prompt, list(DISTINCT c.target ORDER BY c.target) AS target,
       list(DISTINCT s.score_text ORDER BY s.score_text) AS score_text
FROM cases c JOIN scores s ON s.case_id = c.case_id AND s.run_id = c.run_id
WHERE list_contains($runs, c.run_id) AND {{rows}} AND c.kind = '{ORIGINAL}'
GROUP BY ALL ORDER BY ALL
"""


def pool_problem(con: duckdb.DuckDBPyConnection, run_ids: list[str], method: str = LOCOGEN) -> str | None:
    """Why ``run_ids`` cannot be summarized together, or None when their settings match exactly: the same model,
    steps, guidance, size, scheduler, reference and scorer, and for every prompt of a concept that two runs share the
    same target prompt and score text."""
    ids = sorted(set(run_ids))
    settings = {r["run_id"]: r for r in run_settings(con, ids, method).to_pylist()}
    missing = [run for run in ids if run not in settings]
    if missing:
        return f"no {method} scores for run(s) {', '.join(missing)}"
    first = ids[0]
    for name in POOLED_SETTINGS:
        for run in ids[1:]:
            a, b = settings[first][name], settings[run][name]
            if a != b:
                return f"runs {first} and {run} differ in {name} ({first}: {_shown(a)}; {run}: {_shown(b)})"
    seen: dict[tuple, tuple[str, dict]] = {}
    for row in con.sql(_PROMPT_SETTINGS_SQL.format(rows=_rows(method, "c.")),
                       params={"runs": ids}).to_arrow_table().to_pylist():
        key = (row["family"], row["concept"], row["prompt"])
        if key in seen:
            run, other = seen[key]
            for name in ("target", "score_text"):
                if other[name] != row[name]:
                    return (f"runs {run} and {row['run_id']} differ in the {name.replace('_', ' ')} of "
                            f"{key[0]} / {key[1]}, prompt {key[2]!r} ({run}: {_shown(other[name])}; "
                            f"{row['run_id']}: {_shown(row[name])})")
        else:
            seen[key] = (row["run_id"], row)
    return None


def check_poolable(con: duckdb.DuckDBPyConnection, run_ids: list[str], method: str = LOCOGEN) -> None:
    """Raise a ``UserError`` naming the differing setting when ``run_ids`` cannot be summarized together."""
    problem = pool_problem(con, run_ids, method)
    if problem:
        raise UserError(f"cannot pool {len(set(run_ids))} runs: {problem}; summarize each run on its own")


def _run_sets(con: duckdb.DuckDBPyConnection, run_ids: list[str] | None, method: str) -> dict[str, str]:
    """run id -> the label of the summary it belongs to: each run alone when ``run_ids`` is None, else the given runs
    pooled (checked)."""
    if run_ids is None:
        rows = _rows(method)
        return {run: run for (run,) in con.execute(f"SELECT DISTINCT run_id FROM scores WHERE {rows}").fetchall()
                if run is not None}
    ids = sorted(set(run_ids))
    found = {run for (run,) in con.execute(f"SELECT DISTINCT run_id FROM scores WHERE {_rows(method)} AND "
                                           "list_contains($runs, run_id)", {"runs": ids}).fetchall()}
    missing = [run for run in ids if run not in found]
    if missing:
        known = [run for (run,) in con.execute(f"SELECT DISTINCT run_id FROM scores WHERE {_rows(method)} "
                                               "ORDER BY 1 LIMIT 5").fetchall()]
        raise UserError(f"no {method} scores for run {', '.join(missing)}: use a run id of the root"
                        + (f" (e.g. {', '.join(known)})" if known else ""))
    if len(ids) > 1:
        check_poolable(con, ids, method)
    return dict.fromkeys(ids, run_label(ids))


# -------------------------------------------------------------------------------------------------- localization

# Every LocoGen score of the chosen runs with its prompt, ordered so that one concept group, one unit (prompt, seed) and
# one cell (kind, window) are runs of adjacent rows; ``_cells`` numbers them. Scores without a case row (hand-written
# stores) count their seed as the unit.
_UNITS_SQL = f"""
WITH chosen AS (SELECT unnest($runs) AS run_id, unnest($labels) AS run_set),
c AS (SELECT run_id, case_id, prompt FROM cases WHERE list_contains($runs, run_id))
SELECT ch.run_set, s.model, s.family, s.concept, coalesce(s.scorer_id, '') AS scorer_id,
       coalesce(c.prompt, '') AS prompt, s.seed,
       list_position(['{ORIGINAL}', '{TARGET}', '{ALL_LAYERS}', '{WINDOW}'], s.kind) - 1 AS kind,
       coalesce(s.window_size, 0) AS window_size, coalesce(s.window_start, 0) AS window_start, s.score
FROM scores s JOIN chosen ch ON s.run_id = ch.run_id
LEFT JOIN c ON c.run_id = s.run_id AND c.case_id = s.case_id
WHERE {LOCOGEN_ROWS.replace("method", "s.method")} AND s.kind IN ('{ORIGINAL}', '{TARGET}', '{ALL_LAYERS}', '{WINDOW}')
ORDER BY ch.run_set, s.model, s.family, s.concept, scorer_id, prompt, s.seed, kind, window_size, window_start
"""
_KINDS = (ORIGINAL, TARGET, ALL_LAYERS, WINDOW)  # the codes of _UNITS_SQL's kind column

_KEYS = ("run_id", "model", "family", "concept", "scorer_id")


def _references(con: duckdb.DuckDBPyConnection, runs: dict[str, str]) -> dict[str, str]:
    """run set -> the reference its drops are normalized by (all its runs agree: pooling checks it); runs written
    before the reference was recorded normalized by the target."""
    rows = con.execute("SELECT run_id, any_value(reference) FROM runs WHERE list_contains($runs, run_id) "
                       "AND reference IS NOT NULL GROUP BY run_id", {"runs": list(runs)}).fetchall()
    found = {runs[run]: reference for run, reference in rows}
    return {label: found.get(label, TARGET) for label in runs.values()}


def _starts(table: pa.Table, names: list[str]) -> np.ndarray:
    """True at each row whose ``names`` differ from the previous row's (and at the first row)."""
    starts = np.zeros(table.num_rows, dtype=bool)
    starts[:1] = True
    for name in names:
        column = table[name].combine_chunks()
        changed = pc.fill_null(pc.not_equal(column.slice(1), column.slice(0, len(column) - 1)), True)
        starts[1:] |= changed.to_numpy(zero_copy_only=False)
    return starts


def _cells(table: pa.Table) -> dict:
    """The ordered rows of ``_UNITS_SQL`` as numbers: per distinct (group, unit, kind, window) cell its group, its
    unit within the group and its mean score (a case scored by two pooled runs, or kept twice, counts once)."""
    group_starts = _starts(table, ["run_set", *_KEYS[1:]])
    unit_starts = group_starts | _starts(table, ["prompt", "seed"])
    cell_starts = unit_starts | _starts(table, ["kind", "window_size", "window_start"])
    first = np.flatnonzero(cell_starts)
    scores = np.add.reduceat(table["score"].to_numpy(), first) / np.diff(np.append(first, table.num_rows))
    group, unit = np.cumsum(group_starts) - 1, np.cumsum(unit_starts) - 1
    unit -= unit[np.flatnonzero(group_starts)][group]  # units count from 0 in each group
    prompt_starts = group_starts | _starts(table, ["prompt"])
    prompt = np.cumsum(prompt_starts) - 1
    prompt -= prompt[np.flatnonzero(group_starts)][np.cumsum(group_starts) - 1]  # prompts count from 0 in each group
    return {"group": group[first], "unit": unit[first], "score": scores, "prompt": prompt[first],
            "kind": table["kind"].to_numpy()[first], "seed": table["seed"].to_numpy()[first],
            "size": table["window_size"].to_numpy()[first], "start": table["window_start"].to_numpy()[first],
            "prompts": np.add.reduceat(prompt_starts, np.flatnonzero(group_starts)),
            "names": table.select(["run_set", *_KEYS[1:]]).filter(pa.array(group_starts)).to_pylist()}


def _not_measurable(scorer_id: str, n_units: int, gap: float, low: float, high: float, rule: Rule) -> str | None:
    """Why a concept's gap cannot carry a localization claim (every reason that applies), or None: the rule of
    docs/statistics.md."""
    reasons = []
    if n_units < rule.min_units:
        reasons.append(f"{n_units} prompt x seed unit{'s' if n_units != 1 else ''}, at least {rule.min_units} are "
                       "needed to measure noise (add seeds or prompts)")
    if not gap >= rule.min_gap:
        reasons.append(f"original - reference gap {_num(gap)} is below the minimum {rule.min_gap:g}")
    elif not low >= rule.min_gap:
        reasons.append(f"original - reference gap {_num(gap)} is not clearly above noise: its {rule.level:.0%} "
                       f"interval [{_num(low)}, {_num(high)}] reaches below {rule.min_gap:g}")
    if scorer_id in rule.meaningless_scorers:
        reasons.append(f"scored by {scorer_id}, a CLIP with random weights whose scores mean nothing (it tests the "
                       "machinery; score with a trained CLIP)")
    return "; ".join(reasons) or None


def _num(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}".replace(f"-0.{'0' * digits}", f"0.{'0' * digits}")


def _column(values, kind: pa.DataType) -> pa.Array:
    array = np.asarray(values, dtype=np.float64 if pa.types.is_floating(kind) else None)
    if pa.types.is_floating(kind):
        return pa.array(array, kind, mask=np.isnan(array))
    return pa.array(array, kind)


_WINDOW_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("model", pa.string()), ("family", pa.string()), ("concept", pa.string()),
    ("scorer_id", pa.string()), ("window_size", pa.int32()), ("window_start", pa.int32()),
    ("score_mean", pa.float64()), ("score_std", pa.float64()), ("n_seeds", pa.int64()), ("n_images", pa.int64()),
    ("original_score", pa.float64()), ("target_score", pa.float64()), ("all_layers_score", pa.float64()),
    ("reference", pa.string()), ("reference_score", pa.float64()), ("n_prompts", pa.int64()),
    ("n_units", pa.int64()), ("gap", pa.float64()), ("gap_std", pa.float64()), ("gap_low", pa.float64()),
    ("gap_high", pa.float64()), ("measurable", pa.bool_()), ("not_measurable", pa.string()),
    ("normalized_drop", pa.float64()), ("drop_low", pa.float64()), ("drop_high", pa.float64()),
    ("level", pa.float64()), ("clustered", pa.bool_()),
    # The paired test's sufficient statistics (contract.decision.PairedStats) on every unit and on each half of the
    # seeds, and the drop on the confirming half (``concepts_of``; NaN when the rule's selection reports no half).
    *[(f"{half}{name}", kind) for half in ("", "select_", "confirm_") for name, kind in
      (("test_units", pa.int64()), ("test_df", pa.int64()), ("removed", pa.float64()), ("unit_gap", pa.float64()),
       ("removed_var", pa.float64()), ("unit_gap_var", pa.float64()), ("removed_gap_cov", pa.float64()))],
    ("select_seeds", pa.string()), ("confirm_seeds", pa.string()),
    ("confirm_drop", pa.float64()), ("confirm_low", pa.float64()), ("confirm_high", pa.float64()),
])
_STATS = ("test_units", "test_df", "removed", "unit_gap", "removed_var", "unit_gap_var", "removed_gap_cov")


def window_estimates(con: duckdb.DuckDBPyConnection, run_ids: list[str] | None = None,
                     rule: Rule = Rule()) -> pa.Table:
    """``localization`` without the threshold's columns (what does not change when the threshold does): per window
    its scores, both references, the gap and its interval, measurability, the normalized drop and its interval."""
    runs = _run_sets(con, run_ids, LOCOGEN)
    if not runs:
        return _WINDOW_SCHEMA.empty_table()
    references = _references(con, runs)
    table = con.sql(_UNITS_SQL, params={"runs": list(runs), "labels": list(runs.values())}).to_arrow_table()
    if not table.num_rows:
        return _WINDOW_SCHEMA.empty_table()
    cells = _cells(table)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(cells["group"])) + 1, [len(cells["group"])]])
    kind, unit, seed, score = cells["kind"], cells["unit"], cells["seed"], cells["score"]
    size, start, n_prompts, prompt = cells["size"], cells["start"], cells["prompts"], cells["prompt"]
    columns: dict[str, list] = {name: [] for name in _WINDOW_SCHEMA.names}
    for index, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        key = tuple(cells["names"][index].values())
        reference = references.get(key[0], TARGET)
        rows = slice(lo, hi)
        n = int(unit[rows].max()) + 1
        refs = {}
        for code, name in enumerate(_KINDS[:3]):
            values = np.full(n, np.nan)
            mine = kind[rows] == code
            values[unit[rows][mine]] = score[rows][mine]
            refs[name] = values
        is_window = kind[rows] == _KINDS.index(WINDOW)
        window_keys, column = np.unique(size[rows][is_window].astype(np.int64) * 1_000_000 + start[rows][is_window],
                                        return_inverse=True)
        windows = np.full((n, len(window_keys)), np.nan)
        windows[unit[rows][is_window], column] = score[rows][is_window]
        rng = intervals.rng_for(rule.seed, *key)
        unit_seed, unit_prompt = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        unit_seed[unit[rows]] = seed[rows]
        unit_prompt[unit[rows]] = prompt[rows]
        clustered = int(n_prompts[index]) >= rule.cluster_prompts
        est = intervals.drop_intervals(refs[ORIGINAL], refs[reference], windows, rule.level, rule.resamples, rng,
                                       unit_prompt, clustered)
        seed_values, seed_of_unit = np.unique(unit_seed, return_inverse=True)
        halves = {"": np.ones(n, bool), "select_": seed_of_unit % 2 == 0, "confirm_": seed_of_unit % 2 == 1}
        for half, mine in halves.items():
            _, prompt_of = np.unique(unit_prompt[mine], return_inverse=True)
            stats = decision.paired_stats(refs[ORIGINAL][mine], refs[reference][mine], windows[mine], prompt_of,
                                          clustered)
            for name, value in zip(_STATS, (stats.n, stats.df, stats.removed, stats.gap, stats.removed_var,
                                            stats.gap_var, stats.cov)):
                columns[half + name] += list(value)
        mine = halves["confirm_"]
        smaller = min(int(mine.sum()), int((~mine).sum()))
        if rule.selection == "confirm" or (rule.selection == "auto" and smaller >= rule.min_units):
            _, prompt_of = np.unique(unit_prompt[mine], return_inverse=True)
            held_out = intervals.drop_intervals(refs[ORIGINAL][mine], refs[reference][mine], windows[mine],
                                                rule.level, rule.resamples, rng, prompt_of, clustered)
            shown = (held_out.drop, held_out.drop_low, held_out.drop_high)
        else:  # no held-out half is reported: spare its bootstrap
            shown = (np.full(len(window_keys), np.nan),) * 3
        for name, values in zip(("confirm_drop", "confirm_low", "confirm_high"), shown):
            columns[name] += list(values)
        columns["clustered"] += [clustered] * len(window_keys)
        for half, values in (("select_", seed_values[0::2]), ("confirm_", seed_values[1::2])):
            columns[f"{half}seeds"] += [", ".join(str(v) for v in values)] * len(window_keys)
        has_window = ~np.isnan(windows) & ~np.isnan(refs[ORIGINAL])[:, None] & ~np.isnan(refs[reference])[:, None]
        n_seeds = ((has_window.T.astype(np.int64) @ np.eye(len(seed_values), dtype=np.int64)[seed_of_unit]) > 0).sum(1)
        problem = _not_measurable(key[4], est.n_units, est.gap, est.gap_low, est.gap_high, rule)
        k = len(window_keys)
        means = {name: float(np.nanmean(values)) if not np.isnan(values).all() else np.nan
                 for name, values in refs.items()}
        for name, value in zip(("run_id", *_KEYS[1:]), key):
            columns[name] += [value] * k
        columns["window_size"] += list(window_keys // 1_000_000)
        columns["window_start"] += list(window_keys % 1_000_000)
        columns["score_mean"] += list(est.score_mean)
        columns["score_std"] += list(est.score_std)
        columns["n_seeds"] += list(n_seeds)
        columns["n_images"] += list(est.n_images)
        columns["original_score"] += [means[ORIGINAL]] * k
        columns["target_score"] += [means[TARGET]] * k
        columns["all_layers_score"] += [means[ALL_LAYERS]] * k
        columns["reference"] += [reference] * k
        columns["reference_score"] += [means[reference]] * k
        columns["n_prompts"] += [int(n_prompts[index])] * k
        columns["n_units"] += [est.n_units] * k
        for name in ("gap", "gap_std", "gap_low", "gap_high"):
            columns[name] += [getattr(est, name)] * k
        columns["measurable"] += [problem is None] * k
        columns["not_measurable"] += [problem] * k
        columns["normalized_drop"] += list(est.drop)
        columns["drop_low"] += list(est.drop_low)
        columns["drop_high"] += list(est.drop_high)
        columns["level"] += [rule.level] * k
    arrays = [_column(columns[f.name], f.type) if pa.types.is_floating(f.type) else pa.array(columns[f.name], f.type)
              for f in _WINDOW_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=_WINDOW_SCHEMA)


def _stats(rows: dict, half: str = "") -> decision.PairedStats:
    """The paired test's statistics of ``half`` ('', 'select_', 'confirm_') from a table's columns as arrays."""
    return decision.PairedStats(*(np.asarray(rows[half + name], dtype=np.float64 if i > 1 else np.int64)
                                  for i, name in enumerate(_STATS)))


def _adjusted(p: np.ndarray, families: np.ndarray, adjust: str) -> tuple[np.ndarray, np.ndarray]:
    """(adjusted p-values, windows adjusted over) with each of ``families``' p-values adjusted together."""
    if adjust == "none":
        return p, np.where(np.isnan(p), 0, 1)
    adjusted, over = np.full(len(p), np.nan), np.zeros(len(p), np.int64)
    for family in np.unique(families):
        mine = families == family
        adjusted[mine] = decision.holm(p[mine])
        over[mine] = int((~np.isnan(p[mine])).sum())
    return adjusted, over


def _units_text(row: dict) -> str:
    prompts = row["n_prompts"]
    if prompts <= 1:
        return f"{row['n_units']} units"
    return (f"{row['n_units']} units of {prompts} prompts, "
            + ("prompts resampled" if row["clustered"] else "prompts fixed"))


def _test_text(row: dict) -> str:
    """The decision in words: the test at the threshold, its adjustment and its units."""
    alpha = decision.alpha_of(row["level"])
    test = f"paired test at {row['threshold']:g}: p = {_p(row['p_value'])}"
    if row["adjustment"] == "holm":
        test += f", adjusted over {row['adjusted_over']} windows (Holm) p = {_p(row['p_adjusted'])}"
    else:
        test += ", unadjusted"
    passed = row["p_adjusted"] is not None and row["p_adjusted"] <= alpha
    return f"{test}, {'<=' if passed else '>'} {alpha:g}; {_units_text(row)}"


def _p(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2g}" if value >= 0.001 or value == 0 else f"{value:.1e}"


def verdict(row: dict) -> str:
    """What a judged window row (``judge``) says, in words: the point, the interval, the test and its adjustment."""
    if not row["measurable"]:
        return f"not measurable: {row['not_measurable']}"
    drop, low, high = row["normalized_drop"], row["drop_low"], row["drop_high"]
    if drop is None:
        return "no drop: the original and the reference score the same"
    interval = f"drop {_num(drop, 2)}, {row['level']:.0%} interval [{_num(low, 2)}, {_num(high, 2)}]"
    if row["localizes"]:
        return f"localizes: {interval}; {_test_text(row)}"
    if drop >= row["threshold"]:
        return f"not shown to localize: {interval}; {_test_text(row)}"
    return f"does not localize: {interval}, below {row['threshold']:g}; {_test_text(row)}"


def judge(estimates: pa.Table, threshold: float, adjust: str = ADJUSTMENTS[0], words: bool = True) -> pa.Table:
    """``estimates`` (``window_estimates``) with the threshold's columns: threshold, p_value (the paired one-sided
    test that the window removes more than ``threshold`` of the gap), adjustment, adjusted_over (the concept's windows
    the p-value is adjusted over; 1: unadjusted), p_adjusted, localizes (measurable and p_adjusted at most the
    interval level's one-sided error) and, with ``words``, verdict (``verdict`` of each row: the slow part, which a
    view showing a few rows leaves to them)."""
    k = estimates.num_rows
    columns = {name: estimates[name].to_numpy() for name in (*_STATS, "measurable", "level")}
    p = decision.p_values(_stats(columns), threshold) if k else np.zeros(0)
    families = pc.binary_join_element_wise(*(estimates[name] for name in _KEYS), "\x1f")
    families = families.combine_chunks().dictionary_encode().indices.to_numpy() if k else np.zeros(0, np.int64)
    measurable = columns["measurable"].astype(bool)
    adjusted, over = _adjusted(np.where(measurable, p, np.nan), families, adjust)
    alpha = decision.alpha_of(columns["level"])
    found = measurable & (adjusted <= alpha)
    table = (estimates.append_column("threshold", pa.array([float(threshold)] * k, pa.float64()))
             .append_column("p_value", _column(p, pa.float64()))
             .append_column("adjustment", pa.array([adjust] * k, pa.string()))
             .append_column("adjusted_over", pa.array(over, pa.int64()))
             .append_column("p_adjusted", _column(adjusted, pa.float64()))
             .append_column("localizes", pa.array(found, pa.bool_())))
    if not words:
        return table
    shown = table.select(_VERDICT_COLUMNS).to_pylist()  # what ``verdict`` reads: far fewer columns than the rows have
    return table.append_column("verdict", pa.array([verdict(r) for r in shown], pa.string()))


_VERDICT_COLUMNS = ["measurable", "not_measurable", "normalized_drop", "drop_low", "drop_high", "level", "threshold",
                    "localizes", "p_value", "p_adjusted", "adjustment", "adjusted_over", "n_units", "n_prompts",
                    "clustered"]


def localization(con: duckdb.DuckDBPyConnection, threshold: float = DEFAULT_THRESHOLD,
                 run_ids: list[str] | None = None, *, level: float = DEFAULT_LEVEL,
                 min_gap: float = MIN_REFERENCE_GAP, resamples: int = intervals.RESAMPLES,
                 seed: int = intervals.SEED, min_units: int = MIN_UNITS,
                 meaningless_scorers: tuple[str, ...] = (RANDOM_SCORER,), adjust: str = ADJUSTMENTS[0],
                 selection: str = SELECTIONS[0], cluster_prompts: int = CLUSTER_PROMPTS) -> pa.Table:
    """Per (run, model, family, concept, scorer_id, window_size, window_start): the window's mean score over its
    images, the concept's references (original, target, all-layers; ``reference`` names the one that normalizes,
    ``reference_score`` its mean), the gap original - reference with its spread and interval, whether the concept is
    measurable (``not_measurable`` says why not), the normalized drop ``(original - window) / (original - reference)``
    with its bootstrap interval (``drop_low``, ``drop_high`` at ``level``), and at ``threshold`` the paired test's
    p-value, adjusted over the concept's windows, whether it localizes (measurable and the adjusted p-value at most
    ``(1 - level) / 2``) and the ``verdict`` in words.

    Args:
        con: a connection from ``Store.connect()``.
        threshold: fraction of the original-to-reference gap a window must remove, by the paired test.
        run_ids: None: every run on its own (``run_id`` names it). A list: those runs pooled, refused with a
            ``UserError`` naming the differing setting unless their settings match (``run_id`` is 'a+b').
        level: the intervals' coverage (and the test's one-sided error, ``(1 - level) / 2``).
        min_gap: the smallest original-to-reference gap (CLIP-score units) a concept must clearly exceed.
        resamples, seed: the bootstrap's resamples and seed (reproducible).
        min_units: the fewest prompt x seed units a measurable concept has.
        meaningless_scorers: scorers whose scores never make a concept measurable (the random-weight ``tiny-clip``).
        adjust: 'holm' (a concept's windows adjusted together) or 'none'.
        selection: how ``concept_summary`` chooses the minimal window (not used here; ``SELECTIONS``).
        cluster_prompts: the prompts from which a concept's prompts are resampled (fewer: fixed).

    Returns:
        A pyarrow Table sorted by run_id, model, family, concept, scorer_id, window_size, window_start.
    """
    rule = Rule(threshold, level, min_gap, resamples, seed, min_units, tuple(meaningless_scorers), adjust, selection,
                cluster_prompts)
    return judge(window_estimates(con, run_ids, rule), threshold, adjust)


def minimal_windows_sql(localization_sql: str, partition: str) -> str:
    """The minimal localizing window per ``partition`` among the rows of ``localization_sql`` (which has
    ``localizes``, ``window_size``, ``normalized_drop`` and ``window_start``): the smallest window size with a
    localizing window and, at that size, the largest drop (ties: the earliest start)."""
    return (f"SELECT * FROM ({localization_sql}) WHERE localizes QUALIFY row_number() OVER "
            f"(PARTITION BY {partition} ORDER BY window_size, normalized_drop DESC, window_start) = 1")


def minimal_windows_of(table: pa.Table) -> pa.Table:
    """``minimal_windows`` from a ``localization`` table already computed."""
    with duckdb.connect() as con:
        con.register("loc", table)
        return con.sql(f"{minimal_windows_sql('SELECT * FROM loc', 'run_id, ' + GROUP)} "
                       f"ORDER BY run_id, {GROUP}").to_arrow_table()


def minimal_windows(con: duckdb.DuckDBPyConnection, threshold: float = DEFAULT_THRESHOLD,
                    run_ids: list[str] | None = None, **rule) -> pa.Table:
    """Per (run, model, family, concept, scorer_id): the smallest window size with a localizing window, and at that
    size the window with the largest normalized drop (ties: the earliest start), judged on every unit (the
    selection is optimistic: ``concept_summary`` confirms it on held-out seeds where it can). Concepts with no
    localizing window (or not measurable) have no row: ``concept_summary`` says why.

    Args, Returns: as ``localization`` (its keyword options), one row per group with the same columns.
    """
    return minimal_windows_of(localization(con, threshold, run_ids, **rule))


def concept_summary(con: duckdb.DuckDBPyConnection, threshold: float = DEFAULT_THRESHOLD,
                    run_ids: list[str] | None = None, **rule) -> pa.Table:
    """One row per (run, model, family, concept, scorer_id), every concept: its references and gap (with spread and
    interval), whether it is measurable, and its window: the minimal localizing window when one localizes, else the
    window with the largest drop (``localizes`` false); no window when not measurable. ``localizing_windows`` lists
    every localizing window of the minimal size; ``selection`` says whether the window was chosen on half the seeds
    and its drop measured on the other half, or chosen and measured on the same units (optimistic). ``verdict`` says
    it in words.

    Args, Returns: as ``localization`` (its keyword options; ``selection``: ``SELECTIONS``).
    """
    return concepts_of(localization(con, threshold, run_ids, **rule), rule.get("selection", SELECTIONS[0]),
                       rule.get("min_units", MIN_UNITS))


CONFIRMED = "confirmed on held-out seeds"
OPTIMISTIC = "selected (optimistic)"


def _window_name(row: dict) -> str:
    return window_label(row["window_start"], row["window_size"])


def _minimal(rows: list[dict], found: np.ndarray, drops: np.ndarray) -> list[int]:
    """Indices of the localizing windows of the smallest localizing size, the largest drop first."""
    sizes = [rows[i]["window_size"] for i in np.flatnonzero(found)]
    if not sizes:
        return []
    chosen = [i for i in np.flatnonzero(found) if rows[i]["window_size"] == min(sizes)]
    return sorted(chosen, key=lambda i: (-drops[i], rows[i]["window_start"]))


def _concept(rows: list[dict], selection: str, min_units: int) -> dict:
    """One concept's summary from its judged window rows."""
    first = rows[0]
    threshold, adjust, level = first["threshold"], first["adjustment"], first["level"]
    alpha = decision.alpha_of(level)
    columns = {name: [r[name] for r in rows] for name in rows[0]}
    halves = min(max(columns["select_test_units"]), max(columns["confirm_test_units"]))
    confirm = first["measurable"] and (selection == "confirm" or (selection == "auto" and halves >= min_units))
    drops = np.array([-math.inf if r["normalized_drop"] is None else r["normalized_drop"] for r in rows])
    out = {"selection": None, "localizing_windows": [], "confirm_units": None}
    if not first["measurable"]:
        chosen, found = None, False
    elif confirm:
        p = decision.p_values(_stats(columns, "select_"), threshold)
        picked, _ = _adjusted(p, np.zeros(len(rows)), adjust)
        selected_drop = np.nan_to_num(np.asarray(columns["select_removed"], dtype=float)
                                      / np.asarray(columns["select_unit_gap"], dtype=float), nan=-math.inf)
        candidates = _minimal(rows, picked <= alpha, selected_drop)
        held = decision.p_values(_stats({k: [columns[k][i] for i in candidates] for k in columns}, "confirm_"),
                                 threshold)
        held, over = _adjusted(held, np.zeros(len(candidates)), adjust)
        confirmed = [i for i, q in zip(candidates, held) if q <= alpha]
        found = bool(confirmed)
        chosen = (confirmed or candidates or [int(np.argmax(drops))])[0]
        out.update(selection=CONFIRMED, localizing_windows=[_window_name(rows[i]) for i in confirmed],
                   confirm_units=rows[chosen]["confirm_test_units"])
        out["held_out"] = (held[candidates.index(chosen)] if chosen in candidates else None,
                           int(over[0]) if len(candidates) else 0, len(candidates))
    else:
        minimal = _minimal(rows, np.array(columns["localizes"]), drops)
        found = bool(minimal)
        chosen = minimal[0] if minimal else int(np.argmax(drops))
        out.update(selection=OPTIMISTIC, localizing_windows=[_window_name(rows[i]) for i in minimal])
    window = None if chosen is None or rows[chosen]["normalized_drop"] is None else rows[chosen]
    return {**out, "window": window, "found": found, "confirm": confirm}


def concepts_of(table: pa.Table, selection: str = SELECTIONS[0], min_units: int = MIN_UNITS) -> pa.Table:
    """``concept_summary`` from a ``localization`` table (or ``judge``'s output) already computed."""
    groups: dict[tuple, list[dict]] = {}
    for row in table.to_pylist():  # in window order: ties go to the smaller, earlier window
        groups.setdefault(tuple(row[k] for k in _KEYS), []).append(row)
    rows = []
    for windows in groups.values():
        row = windows[0]
        result = _concept(windows, selection, min_units)
        chosen = result["window"]
        shown = {k: chosen[k] if chosen else None for k in ("window_size", "window_start", "normalized_drop",
                                                              "drop_low", "drop_high", "p_adjusted")}
        if chosen and result["confirm"] and result["held_out"][2]:  # a window was chosen: its held-out numbers
            shown.update(normalized_drop=chosen["confirm_drop"], drop_low=chosen["confirm_low"],
                         drop_high=chosen["confirm_high"], p_adjusted=result["held_out"][0])
        rows.append({
            **{k: row[k] for k in _KEYS}, "n_prompts": row["n_prompts"], "n_units": row["n_units"],
            **{k: row[k] for k in ("original_score", "target_score", "all_layers_score", "reference",
                                   "reference_score", "gap", "gap_std", "gap_low", "gap_high", "measurable",
                                   "not_measurable")},
            **shown, "level": row["level"], "threshold": row["threshold"], "localizes": result["found"],
            "adjustment": row["adjustment"], "adjusted_over": row["adjusted_over"],
            "clustered": row["clustered"], "selection": result["selection"],
            "localizing_windows": result["localizing_windows"], "confirm_units": result["confirm_units"],
            "verdict": _concept_verdict(row, result)})
    return pa.Table.from_pylist(rows, schema=_CONCEPT_SCHEMA)


_CONCEPT_SCHEMA = pa.schema(
    [_WINDOW_SCHEMA.field(k) for k in (*_KEYS, "n_prompts", "n_units", "original_score", "target_score",
                                       "all_layers_score", "reference", "reference_score", "gap", "gap_std",
                                       "gap_low", "gap_high", "measurable", "not_measurable", "window_size",
                                       "window_start", "normalized_drop", "drop_low", "drop_high")]
    + [pa.field("p_adjusted", pa.float64()), _WINDOW_SCHEMA.field("level"), pa.field("threshold", pa.float64()),
       pa.field("localizes", pa.bool_()), pa.field("adjustment", pa.string()), pa.field("adjusted_over", pa.int64()),
       _WINDOW_SCHEMA.field("clustered"), pa.field("selection", pa.string()),
       pa.field("localizing_windows", pa.list_(pa.string())), pa.field("confirm_units", pa.int64()),
       pa.field("verdict", pa.string())])


def _concept_verdict(row: dict, result: dict) -> str:
    if not row["measurable"]:
        return f"not measurable: {row['not_measurable']}"
    window = result["window"]
    if window is None:
        return "no window measured"
    where = f"{_window_name(window)} (m={window['window_size']})"
    if result["confirm"]:
        p, over, listed = result["held_out"]
        half = (f"chosen on seeds {window['select_seeds']} ({window['select_test_units']} units), measured on "
                f"seeds {window['confirm_seeds']} ({window['confirm_test_units']} units)")
        interval = (f"drop {_num(window['confirm_drop'], 2)}, {row['level']:.0%} interval "
                    f"[{_num(window['confirm_low'], 2)}, {_num(window['confirm_high'], 2)}]")
        if not listed:
            return (f"no window localizes on seeds {window['select_seeds']} (adjusted over "
                    f"{window['adjusted_over']} windows); strongest {where}: {verdict(window)}")
        test = f"held-out paired test p = {_p(p)} adjusted over {over} window{'s' if over != 1 else ''}"
        if result["found"]:
            others = [w for w in result["localizing_windows"] if w != _window_name(window)]
            also = f" (also {', '.join(others)})" if others else ""
            return f"localizes at {where}{also}, {CONFIRMED}: {interval}; {test}; {half}"
        return f"not confirmed: {where} localizes on the choosing half but not on the held-out one: {interval}; " \
               f"{test}; {half}"
    if result["found"]:
        others = [w for w in result["localizing_windows"] if w != _window_name(window)]
        also = f" (also {', '.join(others)})" if others else ""
        return f"localizes at {where}{also}, {OPTIMISTIC}: {verdict(window).removeprefix('localizes: ')}"
    return f"no window localizes; strongest {where}: {verdict(window)}"


# -------------------------------------------------------------------------------------------------- causal tracing

# Per site, recovery = (restored - corrupted) / (original - corrupted), with the references of the same (run set,
# method, component, noise); NULL when the two references tie. corruption_gap = original - corrupted.
MIN_CORRUPTION_GAP = 0.02  # CLIP-score units; below it a concept is untraceable at this noise
_TRACE_SQL = f"""
WITH chosen AS (SELECT unnest($runs) AS run_id, unnest($labels) AS run_set),
s AS (
    SELECT ch.run_set, s.* EXCLUDE (run_id) FROM scores s JOIN chosen ch USING (run_id) WHERE {TRACE_ROWS}
    QUALIFY row_number() OVER (PARTITION BY ch.run_set, case_id, scorer_id, score_text ORDER BY s.run_id DESC) = 1
), refs AS (
    SELECT run_set, model, family, concept, scorer_id, method, component, noise,
           avg(score) FILTER (WHERE kind = 'original') AS original_score,
           avg(score) FILTER (WHERE kind = 'corrupted') AS corrupted_score
    FROM s GROUP BY ALL
), sites AS (
    SELECT run_set, model, family, concept, scorer_id, method, component, noise, site,
           avg(score) AS score_mean, stddev_samp(score) AS score_std,
           count(DISTINCT seed) AS n_seeds, count(*) AS n_images
    FROM s WHERE kind = 'restored' GROUP BY ALL
)
SELECT t.run_set AS run_id, t.* EXCLUDE (run_set), r.original_score, r.corrupted_score,
       r.original_score - r.corrupted_score AS corruption_gap,
       (t.score_mean - r.corrupted_score) / nullif(corruption_gap, 0) AS recovery
FROM sites t LEFT JOIN refs r USING (run_set, model, family, concept, scorer_id, method, component, noise)
ORDER BY run_id, model, family, concept, scorer_id, method, component, noise, site
"""


# Each traced unit's (prompt, seed) scores, for the intervals: one row per (summary, unit, kind, site).
_TRACE_UNITS_SQL = f"""
WITH chosen AS (SELECT unnest($runs) AS run_id, unnest($labels) AS run_set),
c AS (SELECT run_id, case_id, prompt FROM cases WHERE list_contains($runs, run_id))
SELECT ch.run_set AS run_id, s.model, s.family, s.concept, s.scorer_id, s.method, s.component, s.noise,
       coalesce(c.prompt, '') AS prompt, s.seed, s.kind, coalesce(s.site, -1) AS site, avg(s.score) AS score
FROM scores s JOIN chosen ch ON s.run_id = ch.run_id LEFT JOIN c ON c.run_id = s.run_id AND c.case_id = s.case_id
WHERE {TRACE_ROWS.replace("method", "s.method")} AND s.kind IN ('original', 'corrupted', 'restored')
GROUP BY ALL ORDER BY ALL
"""
_TRACE_GROUP = ("run_id", "model", "family", "concept", "scorer_id", "method", "component", "noise")


def _trace_intervals(rows: list[dict], rule: Rule) -> dict[tuple, dict]:
    """Per (trace group, site): units, recovery interval, corruption-gap interval. Recovery is one minus LocoGen's
    drop with the corrupted image as the reference and the restored one as the window, so its interval is
    ``drop_intervals``' reflected: units (prompt x seed) resampled the same way, prompts fixed or resampled."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in _TRACE_GROUP), []).append(row)
    found = {}
    for key, mine in groups.items():
        units = sorted({(r["prompt"], r["seed"]) for r in mine})
        sites = sorted({r["site"] for r in mine if r["kind"] == "restored"})
        index, column = {u: i for i, u in enumerate(units)}, {s: j for j, s in enumerate(sites)}
        prompts = sorted({u[0] for u in units})
        prompt = np.array([prompts.index(u[0]) for u in units], dtype=np.int64)
        original, corrupted = np.full(len(units), np.nan), np.full(len(units), np.nan)
        restored = np.full((len(units), len(sites)), np.nan)
        for r in mine:
            i = index[r["prompt"], r["seed"]]
            if r["kind"] == "restored":
                restored[i, column[r["site"]]] = r["score"]
            else:
                (original if r["kind"] == "original" else corrupted)[i] = r["score"]
        est = intervals.drop_intervals(original, corrupted, restored, rule.level, rule.resamples,
                                       intervals.rng_for(rule.seed, *key), prompt, len(prompts) >= rule.cluster_prompts)
        for j, site in enumerate(sites):
            found[(*key, site)] = {"n_units": est.n_units, "recovery_low": 1 - est.drop_high[j],
                                   "recovery_high": 1 - est.drop_low[j], "gap_low": est.gap_low,
                                   "gap_high": est.gap_high}
    return found


def _partial(con: duckdb.DuckDBPyConnection, runs: dict[str, str], method: str) -> dict[str, bool]:
    """Summary label -> whether any of its runs is unfinished (a shard still running, failed, or never recorded)."""
    finished = {r["run_id"]: r["finished"] for r in run_settings(con, list(runs), method).to_pylist()}
    partial: dict[str, bool] = {}
    for run, label in runs.items():
        partial[label] = partial.get(label, False) or not finished.get(run, False)
    return partial


def trace_effects(con: duckdb.DuckDBPyConnection, run_ids: list[str] | None = None, level: float = DEFAULT_LEVEL,
                  resamples: int = intervals.RESAMPLES, seed: int = intervals.SEED) -> pa.Table:
    """Causal tracing's analogue of ``localization``: per (run, model, family, concept, scorer_id, method, component,
    noise, site): the restored images' mean score, the original and corrupted reference scores, their difference
    ``corruption_gap`` and the recovery ``(restored - corrupted) / corruption_gap``, with the units (prompt x seed)
    and bootstrap intervals at ``level`` of the recovery and the gap (``recovery_low/high``, ``gap_low/high``, as
    LocoGen's; docs/statistics.md), ``traceable`` (the gap's interval lies at or above ``MIN_CORRUPTION_GAP``: else
    the noise did not clearly remove the attribute and the recovery is a ratio of noise), and ``partial`` (a run of
    the summary has not finished: its sites may lack units).

    Args:
        con: a connection from ``Store.connect()``.
        run_ids: None: every trace run on its own. A list: those runs pooled, refused unless their settings match.
        level, resamples, seed: the intervals' coverage and the bootstrap's resamples and seed.
    """
    runs = _run_sets(con, run_ids, TRACE)
    params = {"runs": list(runs), "labels": list(runs.values())}
    table = con.sql(_TRACE_SQL, params=params).to_arrow_table()
    rule = Rule(level=level, resamples=resamples, seed=seed)
    found = _trace_intervals(con.sql(_TRACE_UNITS_SQL, params=params).to_arrow_table().to_pylist(), rule)
    partial = _partial(con, runs, TRACE)
    keys = zip(*(table[k].to_pylist() for k in (*_TRACE_GROUP, "site")))
    extra = [found.get(key, {}) for key in keys]
    for name in ("recovery_low", "recovery_high", "gap_low", "gap_high"):
        table = table.append_column(name, _column([e.get(name, np.nan) for e in extra], pa.float64()))
    table = table.append_column("n_units", pa.array([e.get("n_units", 0) for e in extra], pa.int64()))
    traceable = [bool(e.get("gap_low", np.nan) >= MIN_CORRUPTION_GAP) for e in extra]
    return (table.append_column("traceable", pa.array(traceable, pa.bool_()))
            .append_column("partial", pa.array([partial[r] for r in table["run_id"].to_pylist()], pa.bool_())))


def config_of(settings_row: dict) -> dict:
    """The study a run row of ``run_settings`` ran (its ``config_json``), or {} when not recorded."""
    try:
        return json.loads(settings_row.get("config_json") or "{}")
    except json.JSONDecodeError:
        return {}


def _run_filter(sql: str, run_ids: list[str] | None, case_ids: list[str] | None = None) -> tuple[str, dict]:
    """``sql`` restricted to the rows of ``run_ids`` (all runs when None), for the attention-contribution summaries,
    plus the rows of ``case_ids`` whichever run wrote them: a study's localization cases are shared by every run of
    the same prompts and settings (a rerun with other top-k finds them done), so its run alone may not hold them."""
    if run_ids is None:
        return sql.format(run_filter="true"), {}
    shared = " OR list_contains($case_ids, case_id)" if case_ids else ""
    params = {"run_ids": list(run_ids), **({"case_ids": list(case_ids)} if case_ids else {})}
    return sql.format(run_filter=f"(list_contains($run_ids, run_id){shared})"), params


# Attention contribution: per site, the mean over the concept's images (prompts x seeds) of the site's contribution,
# its share of the concept's total over sites (comparable between concepts, whose raw norms are not), and its rank
# (1 = dominant). A rerun's rows replace the earlier run's for the same case and site.
_CONTRIBUTION_SQL = """
WITH s AS (
    SELECT * FROM contributions WHERE {run_filter}
    QUALIFY row_number() OVER (PARTITION BY case_id, site ORDER BY run_id DESC) = 1
), sites AS (
    SELECT model, family, concept, site, avg(contribution) AS contribution,
           stddev_samp(contribution) AS contribution_std, count(DISTINCT seed) AS n_seeds, count(*) AS n_images
    FROM s GROUP BY ALL
)
SELECT *, contribution / nullif(sum(contribution) OVER (PARTITION BY model, family, concept), 0) AS share,
       rank() OVER (PARTITION BY model, family, concept ORDER BY contribution DESC, site) AS site_rank
FROM sites ORDER BY model, family, concept, site
"""


def contribution_map(con: duckdb.DuckDBPyConnection, run_ids: list[str] | None = None,
                     case_ids: list[str] | None = None, level: float = DEFAULT_LEVEL) -> pa.Table:
    """Attention contribution's analogue of ``trace_effects``: per (model, family, concept, site): the mean
    contribution over the concept's localization images, its spread, image and seed counts, its t interval at
    ``level`` over the images (``contribution_low``, ``contribution_high``; each image is one prompt x seed), its share
    of the concept's total, its rank (1 = the dominant site) and ``partial`` (a contribution run of the model has
    not finished: sites may rest on fewer images than it will have).

    Args:
        con: a connection from ``Store.connect()``.
        run_ids: restrict to these runs; all runs when None.
        case_ids: with ``run_ids``, also these localization cases, whichever run wrote them (``_run_filter``).
        level: the intervals' coverage.
    """
    sql, params = _run_filter(_CONTRIBUTION_SQL, run_ids, case_ids)
    table = con.sql(sql, params=params).to_arrow_table()
    n = np.asarray(table["n_images"].to_numpy(zero_copy_only=False), dtype=np.float64)
    spread = np.asarray(table["contribution_std"].to_numpy(zero_copy_only=False), dtype=np.float64)
    quantiles = np.array([intervals.t_quantile(1 - (1 - level) / 2, int(k) - 1) if k > 1 else np.nan for k in n])
    half = quantiles * spread / np.sqrt(n)
    mean = np.asarray(table["contribution"].to_numpy(zero_copy_only=False), dtype=np.float64)
    unfinished = {model for (model,) in con.execute(
        f"SELECT model FROM runs WHERE method = '{ATTENTION_CONTRIBUTION}' AND "
        f"{'true' if run_ids is None else 'list_contains($runs, run_id)'} GROUP BY run_id, model "
        "HAVING bool_or(status != 'finished') OR count(DISTINCT shard) < coalesce(max(num_shards), 1)",
        {} if run_ids is None else {"runs": list(run_ids)}).fetchall()}
    return (table.append_column("contribution_low", _column(mean - half, pa.float64()))
            .append_column("contribution_high", _column(mean + half, pa.float64()))
            .append_column("partial", pa.array([m in unfinished for m in table["model"].to_pylist()], pa.bool_())))


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
    SELECT model, family, concept, scorer_id, len(blocks)::INTEGER AS k, any_value(blocks) AS blocks,
           avg(score) AS score_mean, stddev_samp(score) AS score_std, count(DISTINCT seed) AS n_seeds,
           count(*) AS n_images
    FROM s WHERE kind = '{TOP_K}' GROUP BY model, family, concept, scorer_id, k
)
SELECT t.*, r.original_score, r.target_score,
       (r.original_score - t.score_mean) / nullif(r.original_score - r.target_score, 0) AS normalized_drop,
       $threshold::DOUBLE AS threshold, coalesce(normalized_drop >= $threshold, false) AS localizes
FROM top t LEFT JOIN refs r USING (model, family, concept, scorer_id)
ORDER BY model, family, concept, scorer_id, k
"""


def top_k_interventions(con: duckdb.DuckDBPyConnection, threshold: float = 0.5,
                        run_ids: list[str] | None = None, case_ids: list[str] | None = None) -> pa.Table:
    """Per (model, family, concept, scorer_id, k): the k dominant sites fed the target (``blocks``), the mean score
    of those images, the original and target references of the same run, the normalized drop
    (original − top-k) / (original − target) and whether it removes at least ``threshold`` of the gap.

    Args: as ``localization``; ``case_ids``: with ``run_ids``, also these localization cases (their references),
    whichever run wrote them (``_run_filter``).
    """
    sql, params = _run_filter(_TOP_K_SQL, run_ids, case_ids)
    return con.sql(sql, params={"threshold": threshold, **params}).to_arrow_table()
