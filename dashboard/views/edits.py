"""Edits: stored edits with their settings, before/after pairs per prompt group, and the methods (LocoEdit, all
layers, neurons, DiffQuickFix) compared on one concept."""

import streamlit as st

from contract import bounds
from contract.names import EVAL_GROUPS, EVAL_METRICS
from contract.names import METHODS as METHOD_ORDER
from dashboard import common, data, edit_view, queries, url_state
from dashboard.figures import method_comparison

snap = common.snapshot()
st.title("Edits")
if not snap.edits:
    st.info(f"No edits in {common.code(snap.root)} yet. Launch one from **Run an edit**, or run for example:")
    st.code(f'python -m compute edit --model tiny-sd1 --family style --concept "van gogh" --layers 8,9 --eval '
            f"--artifacts {snap.root}", language="bash")
    st.stop()


def summary_row(record: dict) -> dict:
    result = record["eval"] or {}
    return {"edit": record["edit_id"], "model": record.get("model"), "family": record.get("family"),
            "concept": record.get("concept"), "target": record.get("target"), "method": record.get("method"),
            "edited": edit_view.edited(record), "λ / top-k": record.get("lambda", record.get("topk")),
            "evaluations": len(record["evals"]), **{name: result.get(name) for name in EVAL_METRICS},
            "evaluation": result.get("eval_id"), "created_at": record.get("created_at")}


shown_edits = snap.edits[:bounds.MAX_OPTIONS]
if len(snap.edits) > len(shown_edits):
    st.caption(f"Showing the newest {len(shown_edits)} of {len(snap.edits)} edits.")
st.dataframe([summary_row(record) for record in shown_edits], hide_index=True, width="stretch")
st.caption("Metrics of each edit's newest evaluation; an edit evaluated with other settings has one evaluation per "
           "set of settings (choose it below).")
by_id = {record["edit_id"]: record for record in shown_edits}
if st.session_state.get("edit_choice") not in by_id:
    st.session_state["edit_choice"] = shown_edits[0]["edit_id"]
url_state.seed("edit_choice", url_state.incoming("edits").get("edit"), by_id)
edit_id = st.selectbox("Edit", list(by_id), key="edit_choice",
                       format_func=lambda i: f"{by_id[i].get('concept')} · {by_id[i].get('method')} · {i}")
url_state.publish("edits", {"edit": edit_id})
record = by_id[edit_id]
settings, results = st.columns([2, 3])
with settings:
    st.subheader("Settings")
    edit_view.settings(record)
with results:
    st.subheader("Summary")
    evaluation = edit_view.choose_evaluation(record)
    edit_view.summary(record, evaluation)
eval_id = evaluation.get("eval_id") if evaluation else None
st.subheader("Before / after")
edit_view.pairs(snap, edit_id, eval_id)

st.subheader(f"Methods compared on “{common.escape(record.get('concept'))}”")


def same_settings(other: dict) -> dict | None:
    """``other``'s evaluation with the chosen evaluation's settings (the same eval_id), if it has one."""
    return next((e for e in other["evals"] if e.get("eval_id") == eval_id), None) if evaluation else None


same = [(r, same_settings(r)) for r in shown_edits
        if all(r.get(k) == record.get(k) for k in ("model", "family", "concept")) and same_settings(r)]
means = data.query(snap, queries.edit_group_means, record.get("model"), record.get("family"), record.get("concept"),
                   eval_id)
if len(same) < 2:
    st.caption("Only one edit of this concept evaluated with these settings: make another (e.g. all-layers, neuron or "
               "diffquickfix) and evaluate it with the same settings to compare.")
else:
    st.dataframe([{"method": r["method"], "edited": edit_view.edited(r),
                   **{name: e.get(name) for name in EVAL_METRICS}, "edit": r["edit_id"]}
                  for r, e in sorted(same, key=lambda pair: (*METHOD_ORDER, pair[0]["method"]).index(
                      pair[0]["method"]))],
                 hide_index=True, width="stretch")
    st.caption(common.escape(f"Summary metrics per edit, all evaluated with {edit_view.settings_text(evaluation)} "
                             "(hover a metric above for its meaning): *_score_drop = normalized drop of the mean "
                             "score, 1 = as far from the concept as the target prompt; *_prompt_rate / *_image_rate "
                             "= share of prompts / images scoring below the target reference (about 0.5 when they "
                             "look like the target's)."))
    st.plotly_chart(method_comparison(means, EVAL_GROUPS), key="methods", config={"displaylogo": False})
    st.dataframe(means, hide_index=True, width="stretch")
