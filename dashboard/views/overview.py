"""Overview: the artifact root in use, its runs and edits."""

import streamlit as st

from dashboard import common, data, downloads, edit_view, jobs, queries

snap = common.snapshot()
st.title("LocoLab")
st.markdown(f"Artifact root: {common.code(common.shown_root(snap.root))} (from {st.session_state[common.SOURCE_KEY]})")
if not data.query(snap, queries.models):
    common.explain_empty(snap.root)
runs = data.query(snap, queries.runs)
if runs.num_rows:
    st.subheader(f"Runs ({runs.num_rows}): LocoGen sweeps and causal traces")
    st.dataframe(runs, hide_index=True, width="stretch")
    downloads.table(runs, "runs", "runs_csv")
if snap.edits:
    st.subheader(f"Edits ({len(snap.edits)})")
    st.dataframe([{"edit": e["edit_id"], "model": e.get("model"), "concept": e.get("concept"),
                   "method": e.get("method"), "edited": edit_view.edited(e), "evaluated": e["eval"] is not None,
                   "created_at": e.get("created_at")} for e in snap.edits], hide_index=True, width="stretch")
    downloads.table([{key: value for key, value in e.items() if key not in ("eval", "evals")} for e in snap.edits],
                    "edits", "edits_csv")
active = [job for job in jobs.list_jobs(snap.root) if job.active]
if active:
    st.info(common.escape(f"Job {active[0].job_id} ({active[0].spec.get('label')}) is {active[0].status}: see Run an "
                          "edit."))
