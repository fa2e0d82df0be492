"""The Edits page's tables (``views/edits.py`` builds an ``EditsState`` from its pickers and the URL): one row per
stored edit, and the edits of the chosen concept evaluated with the chosen evaluation's settings, compared."""

from dataclasses import dataclass

import streamlit as st

from locolab.contract.names import EVAL_METRICS
from locolab.contract.names import METHODS as METHOD_ORDER
from locolab.contract.summaries import MIN_UNITS
from locolab.dashboard import common, edit_view

# Short column labels keep the table within 1280 px; each column's help gives the metric's full definition.
SHORT_METRICS = {"efficacy_score_drop": "eff. drop", "efficacy_prompt_rate": "eff. prompts",
                 "efficacy_image_rate": "eff. images", "generalization_score_drop": "gen. drop",
                 "generalization_prompt_rate": "gen. prompts", "generalization_image_rate": "gen. images",
                 "specificity": "unrel. kept", "other_concepts_retained": "others kept", "new_fact_gain": "new fact"}
# On screen each table shows what fits 1280 px: the score drops (their intervals are on the cards) and the
# specificities with their interval (text such as "0.79 [0.70, 0.88]", under the short label); its CSV download has
# every column (every metric with its bounds, ids, dates).
SHOWN_METRICS = ("efficacy_score_drop", "generalization_score_drop", "specificity", "other_concepts_retained")
WITH_INTERVAL = ("specificity", "other_concepts_retained")
SHOWN_COLUMNS = tuple(SHORT_METRICS[name] if name in WITH_INTERVAL else name for name in SHOWN_METRICS)


@dataclass(frozen=True)
class EditsState:
    """The edit the Edits page shows and its chosen evaluation (None before evaluation)."""

    record: dict
    evaluation: dict | None = None

    @property
    def eval_id(self) -> str | None:
        return self.evaluation.get("eval_id") if self.evaluation else None


def edit_label(by_id: dict[str, dict], edit_id: str) -> str:
    """The Edit picker's text for one edit: its concept, method and id."""
    return f"{by_id[edit_id].get('concept')} · {by_id[edit_id].get('method')} · {edit_id}"


def with_interval(result: dict, name: str) -> str | None:
    """'0.91 [0.80, 1.00]', '0.91 (none)' (no interval), or None when the evaluation lacks the metric (the page's
    warnings say when an interval rests on few units: 1280 px has no room for a mark here)."""
    value = result.get(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    span = edit_view.interval(result, name)
    return f"{value:.2f} {span}" if span != "–" else f"{value:.2f} (none)"


def metrics(result: dict) -> dict:
    """An evaluation's metrics for a table row: each number with its bounds (the CSV), and the specificities as text
    with their interval (``WITH_INTERVAL``, under their short labels)."""
    return {**{SHORT_METRICS[name]: with_interval(result, name) for name in WITH_INTERVAL},
            **{f"{name}{end}": result.get(f"{name}{end}") for name in EVAL_METRICS for end in ("", "_low", "_high")}}


def summary_row(record: dict) -> dict:
    """One edit's row of the edits table: what it edited and its newest evaluation's metrics."""
    result = record["eval"] or {}
    return {"edit": record["edit_id"], "model": record.get("model"),
            "concept": f"{record.get('family')} / {record.get('concept')}", "target": record.get("target"),
            "method": record.get("method"), "edited": edit_view.edited(record),
            "λ / top-k": record.get("lambda", record.get("topk")), "evals": len(record["evals"]),
            **metrics(result), "evaluation": result.get("eval_id"), "created": common.when(record.get("created_at"))}


def metric_columns() -> dict:
    """Column settings of the edit tables: metrics under short labels with two decimals, the full name as help."""
    columns = {name: st.column_config.NumberColumn(SHORT_METRICS.get(name, name), help=EVAL_METRICS[name],
                                                   format="%.2f", width="small") for name in EVAL_METRICS}
    columns.update({SHORT_METRICS[name]: st.column_config.TextColumn(
        SHORT_METRICS[name], help=f"{EVAL_METRICS[name]}; the interval at the evaluation's level ('none': not "
                                  f"recorded; fewer than {MIN_UNITS} units: see the warnings above the cards)")
        for name in WITH_INTERVAL})
    return {**columns, "evals": st.column_config.NumberColumn("evals", help="evaluations stored (one per settings)",
                                                              width="small")}


def same_settings(state: EditsState, other: dict) -> dict | None:
    """``other``'s evaluation with the chosen evaluation's settings (the same eval_id), if it has one."""
    return next((e for e in other["evals"] if e.get("eval_id") == state.eval_id), None) if state.evaluation else None


def compared_edits(state: EditsState, records: list[dict]) -> list[tuple[dict, dict]]:
    """The edits of the chosen edit's model and concept evaluated with the chosen settings, each with that
    evaluation, in method order (``contract.names.METHODS``), then by edit id."""
    record = state.record
    same = [(r, same_settings(state, r)) for r in records
            if all(r.get(k) == record.get(k) for k in ("model", "family", "concept")) and same_settings(state, r)]
    return sorted(same, key=lambda pair: ((*METHOD_ORDER, pair[0]["method"]).index(pair[0]["method"]),
                                          pair[0]["edit_id"]))


def compared_rows(same: list[tuple[dict, dict]]) -> tuple[list[dict], list[dict]]:
    """(each compared edit's settings that a comparison depends on, each compared edit's row: its method, those
    settings first (at 1280 px they must be visible without scrolling sideways), its metrics, layers and id)."""
    settings_rows = [edit_view.compared_settings(r, e) for r, e in same]
    return settings_rows, [{"method": r["method"], **row, **metrics(e),
                            "edited": edit_view.edited(r), "edit": r["edit_id"]}
                           for (r, e), row in zip(same, settings_rows)]
