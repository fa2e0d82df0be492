"""How one stored edit is shown (Edits and Run-an-edit pages): its settings, summary and before/after pairs."""

import streamlit as st

from contract.names import EVAL_GROUPS, EVAL_METRICS
from dashboard import common, data, queries

PAIRS_PER_PAGE = 6
SETTINGS = ("edit_id", "model", "family", "concept", "target", "method", "layers", "layer_paths", "modules", "lambda",
            "topk", "selection", "position", "positions", "preserve_prompts", "prompt_set", "source_prompts",
            "target_prompts", "bias_in_values", "created_at")


def edited(record: dict) -> str:
    """What an edit changed: its UNet layers, else the modules it names (DiffQuickFix: a text-encoder layer)."""
    if record.get("layers") is not None:
        return str(record["layers"])
    return ", ".join(record.get("modules") or []) or "–"


def settings(record: dict) -> None:
    """The edit's sidecar (``edit.json``): the main settings, and everything in an expander."""
    st.dataframe([{"setting": key, "value": str(record[key])} for key in SETTINGS if key in record],
                 hide_index=True, width="stretch")
    with st.expander("Full record (edit.json)"):
        st.json({key: value for key, value in record.items() if key != "eval"}, expanded=False)


def metric_label(name: str) -> str:
    """'efficacy_score_drop' -> 'efficacy · score drop': the group, then which kind of number."""
    group, _, kind = name.partition("_")
    kind = kind.replace("_", " ")
    return f"{group} · {kind}" if kind in ("score drop", "prompt rate", "image rate") else name.replace("_", " ")


def interval(result: dict, name: str) -> str:
    low, high = result.get(f"{name}_low"), result.get(f"{name}_high")
    return "–" if low is None or high is None else f"[{low:.2f}, {high:.2f}]"


def summary(record: dict) -> None:
    """The summary metrics of ``eval.json``: per group the normalized score drop and the rates of prompts and images
    pushed below the target reference (each named, with its interval and its value before the edit), then
    specificity; a table holds every number."""
    result = record.get("eval")
    if not result:
        st.info("Not evaluated yet: run `python -m compute eval-edit "
                f"{record['edit_id']}` or launch it with evaluation from Run an edit.")
        return
    shown = [name for name in EVAL_METRICS if result.get(name) is not None]
    for start in range(0, len(shown), 3):
        for column, name in zip(st.columns(3), shown[start:start + 3]):
            before = result.get(f"{name}_before")
            column.metric(metric_label(name), f"{result[name]:.2f} {interval(result, name)}".rstrip(" –"),
                          None if before is None else f"{result[name] - before:+.2f} vs before",
                          help=EVAL_METRICS[name])
    st.dataframe([{"metric": metric_label(name), "value": result[name], "interval": interval(result, name),
                   "before": result.get(f"{name}_before"), "of": result.get(f"{name.rsplit('_', 1)[0]}s"),
                   "what": EVAL_METRICS[name]} for name in shown], hide_index=True, width="stretch")
    level = result.get("level")
    st.caption(f"scorer {result.get('scorer_id')}, seeds {result.get('seeds')}, {result.get('steps')} steps, "
               f"{result.get('width')}×{result.get('height')} px"
               + (f"; {level:.0%} intervals (rates: Wilson; score drop: bootstrap)" if level else
                  "; evaluated before intervals were recorded"))


def pairs(snap: data.Snapshot, edit_id: str) -> None:
    """Before/after image pairs, one tab per prompt group, paged, each with both scores and their delta."""
    table = data.query(snap, queries.edit_pairs, edit_id).to_pylist()
    if not table:
        st.caption("No evaluation images stored for this edit.")
        return
    groups = [g for g in EVAL_GROUPS if any(r["group"] == g for r in table)]
    groups += sorted({r["group"] for r in table} - set(groups))
    for tab, group in zip(st.tabs([EVAL_GROUPS.get(g, g) for g in groups]), groups):
        with tab:
            rows = [r for r in table if r["group"] == group]
            deltas = [r["delta"] for r in rows if r["delta"] is not None]
            if deltas:
                st.caption(f"{len(rows)} pairs · mean score change {sum(deltas) / len(deltas):+.4f}")
            pages = max(1, -(-len(rows) // PAIRS_PER_PAGE))
            page = st.pagination(pages, key=f"pairs_{edit_id}_{group}") if pages > 1 else 1
            for row in rows[(page - 1) * PAIRS_PER_PAGE:page * PAIRS_PER_PAGE]:
                text, before, after = st.columns([2, 1, 1])
                text.markdown(f"“{row['prompt']}” · seed {row['seed']}")
                delta = "–" if row["delta"] is None else f"{row['delta']:+.4f}"
                text.caption(f"before {common.score_text(row['before'])} → after {common.score_text(row['after'])}"
                             f" (Δ {delta})")
                with before:
                    common.image(row["before_image"], "before")
                with after:
                    common.image(row["after_image"], "after")
