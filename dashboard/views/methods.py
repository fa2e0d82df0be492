"""Methods compared: every editor of one concept on the localized window and on all layers (localization x editor,
what ``make compare`` runs), each cell the evaluation battery's headline numbers with their intervals."""

import functools

import streamlit as st

from locolab.contract import queries
from locolab.contract.method_grid import stored_evaluations
from locolab.dashboard import common, data, downloads, methods_view

snap = common.snapshot()
st.title("Methods compared")
choices = methods_view.evaluated(snap.edits)
if not choices:
    st.info(f"No edit in {common.code(snap.root)} has an evaluation battery yet. Run the grid localization x editor "
            "for one concept, for example:")
    st.code(f"make compare ARTIFACTS={snap.root}", language="bash")
    st.stop()
model, family, concept = st.selectbox("Concept", common.bounded(choices, "concepts"), key="methods_concept",
                                      format_func=methods_view.concept_label)
found = stored_evaluations(snap.edits, data.query(snap, queries.battery_evaluations, model, family, concept))
summaries = {summary.get("eval_id"): summary for _, summary in found}
eval_id = st.selectbox("Evaluation settings", methods_view.settings_choices(found), key="methods_eval",
                       format_func=functools.partial(methods_view.settings_label, summaries),
                       help="Edits compare under one set of evaluation settings (the same prompts, seeds and "
                            "sampling); an evaluation's id is a digest of its settings.")
rows = methods_view.concept_cells(found, eval_id)
measure = st.selectbox("Number in each cell", list(methods_view.MEASURES), key="methods_measure",
                       help="; ".join(f"{name}: {text}" for name, text in methods_view.MEASURES.items()))
st.markdown(f"**{common.escape(measure)}** per editor and where it acts: "
            + common.escape(methods_view.MEASURES[measure]))
st.dataframe(methods_view.grid_table(rows, measure), hide_index=True, width="stretch")
st.caption("localized window: the layers a stored sweep localized (`--from-run`) or chosen (`--layers`); all layers: "
           "every cross-attention layer; text encoder: DiffQuickFix. Intervals are the battery's "
           f"{summaries[eval_id]['battery']['level']:.0%} paired intervals (docs/method.md §4.2).")
st.subheader("Every cell's headline numbers")
st.dataframe(rows, hide_index=True, width="stretch", column_order=methods_view.SHOWN)
downloads.table(rows, f"{concept}-methods-grid-{eval_id}", "methods_grid_csv")
st.caption("The CSV also has each cell's method, edit and evaluation ids, the concept's rate and the CLIP distance.")
