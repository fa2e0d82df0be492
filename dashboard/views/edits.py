"""Edits: stored edits with their settings, before/after pairs per prompt group, and the methods (LocoEdit, all
layers, neurons, DiffQuickFix) compared on one concept. The chosen edit and evaluation make an
``edit_tables.EditsState``; the tables of ``dashboard.edit_tables`` are computed from it."""

import functools

import streamlit as st

from locolab.contract import bounds, queries
from locolab.contract.figures import method_comparison
from locolab.contract.names import EVAL_GROUPS
from locolab.dashboard import battery_view, common, data, downloads, edit_export, edit_view, exports, url_state
from locolab.dashboard.edit_tables import (
    SHOWN_COLUMNS,
    EditsState,
    compared_edits,
    compared_rows,
    edit_label,
    metric_columns,
    summary_row,
)

snap = common.snapshot()
st.title("Edits")
if not snap.edits:
    st.info(f"No edits in {common.code(snap.root)} yet. Launch one from **Run an edit**, or run for example:")
    st.code(f'python -m compute edit --model tiny-sd1 --family style --concept "van gogh" --layers 8,9 --eval '
            f"--artifacts {snap.root}", language="bash")
    st.stop()
shown_edits = snap.edits[:bounds.MAX_OPTIONS]
if len(snap.edits) > len(shown_edits):
    st.caption(f"Showing the newest {len(shown_edits)} of {len(snap.edits)} edits.")
summaries = [summary_row(record) for record in shown_edits]
st.dataframe(summaries, hide_index=True, width="stretch", column_config=metric_columns(),
             column_order=("edit", "concept", "method", "edited", "λ / top-k", *SHOWN_COLUMNS, "evals"))
downloads.table(summaries, "edits-summary", "edits_csv")
st.caption("Metrics of each edit's newest evaluation (hover a column for its definition; the CSV has every metric, "
           "the targets and the evaluation ids); an edit evaluated with other settings has one evaluation per set of "
           "settings (choose it below).")
by_id = {record["edit_id"]: record for record in shown_edits}
if st.session_state.get("edit_choice") not in by_id:
    st.session_state["edit_choice"] = shown_edits[0]["edit_id"]
wanted = url_state.incoming("edits")
url_state.unknown(wanted, "edit", by_id, "the edit")
url_state.seed("edit_choice", wanted.get("edit"), by_id)
edit_id = st.selectbox("Edit", list(by_id), key="edit_choice",
                       format_func=functools.partial(edit_label, by_id))
url_state.publish("edits", {"edit": edit_id})
record = by_id[edit_id]
# The summary takes the page's width: beside the settings its cards' labels and deltas were cut at 1280 px.
st.subheader("Summary")
evaluation = edit_view.choose_evaluation(record)
state = EditsState(record, evaluation)
edit_view.summary(record, evaluation)
eval_id = state.eval_id
pairs = data.query(snap, queries.edit_pairs, edit_id, eval_id).to_pylist()
downloads.edit(snap.root, record, evaluation, pairs, key="edit_zip")
edit_export.offer(snap.root, record, key="edit_export")
st.subheader("Settings")
edit_view.settings(record)
st.subheader("Before / after")
edit_view.pairs(snap, edit_id, eval_id, (evaluation or {}).get("battery"))

st.subheader(f"Methods compared on “{common.escape(record.get('concept'))}”")
same = compared_edits(state, shown_edits)
means = data.query(snap, queries.edit_group_means, record.get("model"), record.get("family"), record.get("concept"),
                   eval_id)
if len(same) < 2:
    st.caption("Only one edit of this concept evaluated with these settings: make another (e.g. all-layers, neuron or "
               "diffquickfix) and evaluate it with the same settings to compare.")
else:
    settings_rows, compared = compared_rows(same)
    differ = edit_view.differing(settings_rows)
    if differ:
        st.warning("These edits differ in " + ", ".join(differ) + ": their metrics compare the methods together "
                   "with those settings, not the methods alone. Make the edits with the same settings to compare "
                   "methods.")
    st.dataframe(compared, hide_index=True, width="stretch", column_config=metric_columns(),
                 column_order=("method", *settings_rows[0], *SHOWN_COLUMNS))
    downloads.table(compared, f"{record.get('concept')}-methods-{eval_id}", key="methods_csv",
                    meta={"model": record.get("model"), "concept": f"{record.get('family')} · {record.get('concept')}",
                          "evaluation": eval_id, "settings": edit_view.settings_text(evaluation)})
    st.caption(common.escape(f"Summary metrics per edit, all evaluated with {edit_view.settings_text(evaluation)} "
                             "(hover a metric above for its meaning): *_score_drop = normalized drop of the mean "
                             "score, 1 = as far from the concept as the target prompt; *_prompt_rate / *_image_rate "
                             "= share of prompts / images scoring below the target reference (about 0.5 when they "
                             "look like the target's)."))
    chart = method_comparison(means, EVAL_GROUPS)
    st.vega_lite_chart(chart, key="methods", width="stretch")
    downloads.figure(chart, exports.title_text(
        "Methods compared: mean score change per prompt group", model=record.get("model"),
        concept=f"{record.get('family')} · {record.get('concept')}", scorer=evaluation.get("scorer_id"),
        seeds=evaluation.get("seeds"), evaluation=eval_id), f"{record.get('concept')}-methods", key="methods_fig")
    st.dataframe(means, hide_index=True, width="stretch")
    st.markdown("**Evaluation battery per method** (removed: the concept's rate fell; flags: other rates that fell)")
    st.dataframe([battery_view.compare_row(r, e) for r, e in same], hide_index=True, width="stretch")
    st.markdown("**The same prompts, before and after each method**")
    edit_view.side_by_side(snap, same, key="compare_images")

# The battery of the chosen evaluation last, so the tables above keep their places (docs/method.md §4.2).
st.subheader(f"Evaluation battery of {edit_id}")
battery_view.show(evaluation)
