"""Overview: the artifact root in use, its runs and edits."""

import streamlit as st

from locolab.contract import queries
from locolab.dashboard import common, data, downloads, edit_view, jobs

snap = common.snapshot()
st.title("LocoLab")
st.markdown(f"Artifact root: {common.code(common.shown_root(snap.root))} (from {st.session_state[common.SOURCE_KEY]})")
if not data.query(snap, queries.models):
    common.explain_empty(snap.root)
runs = data.query(snap, queries.runs)
# Narrow columns for short values, so that every column fits beside the sidebar on a 1280-pixel screen.
SMALL = {name: st.column_config.Column(width="small") for name in
         ("status", "shards", "concepts", "cases", "scores", "evaluated")}
if runs.num_rows:
    st.subheader(f"Runs ({runs.num_rows}): LocoGen sweeps and causal traces")
    # When each run started; its finish time would push the table past a 1280-pixel screen, and so would the config
    # name where every run id already starts with it (run ids are "<config>-<digest>"). The CSV has every column.
    left_out = ["finished_at"] + (["config"] if all(run_id.startswith(f"{config}-") for run_id, config in zip(
        runs["run_id"].to_pylist(), runs["config"].to_pylist()) if config) else [])
    common.table(common.with_times(runs.drop_columns(left_out)), "overview_runs", SMALL)
    downloads.table(runs, "runs", "runs_csv")
if snap.edits:
    st.subheader(f"Edits ({len(snap.edits)})")
    common.table([{"edit": e["edit_id"], "model": e.get("model"), "concept": e.get("concept"),
                   "method": e.get("method"), "edited": edit_view.edited(e), "evaluated": e["eval"] is not None,
                   "created_at": common.when(e.get("created_at"))} for e in snap.edits], "overview_edits", SMALL)
    downloads.table([{key: value for key, value in e.items() if key not in ("eval", "evals")} for e in snap.edits],
                    "edits", "edits_csv")
active = [job for job in jobs.list_jobs(snap.root) if job.active]
if active:
    st.info(common.escape(f"Job {active[0].job_id} ({active[0].spec.get('label')}) is {active[0].status}: see Run an "
                          "edit."))
