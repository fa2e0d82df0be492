"""Overview: the artifact root in use, its runs and edits."""

import streamlit as st

from locolab.contract import queries
from locolab.dashboard import common, data, downloads, edit_view, jobs, url_state
from locolab.dashboard.overview_view import edit_link, headlines, judged_at, run_link

snap = common.snapshot()
st.title("LocoLab")
st.markdown(f"Artifact root: {common.code(common.shown_root(snap.root))} (from {st.session_state[common.SOURCE_KEY]})")
if not data.query(snap, queries.models):
    common.explain_empty(snap.root)
# What the root shows, at the threshold and level the researcher last looked at (else the Layer map's defaults).
for line in headlines(snap, *judged_at(url_state.last("threshold"), url_state.last("level"))):
    st.markdown(line)
runs = data.query(snap, queries.runs)
# Narrow columns for short values, so that every column fits beside the sidebar on a 1280-pixel screen.
SMALL = {name: st.column_config.Column(width="small") for name in
         ("status", "shards", "concepts", "cases", "scores", "evaluated")}
OPEN = {"open": st.column_config.LinkColumn("open", display_text="open", width=48,
                                            help="The page that shows it (a new tab)")}
if runs.num_rows:
    st.subheader(f"Runs ({runs.num_rows}): LocoGen sweeps and causal traces")
    # When each run started; its finish time would push the table past a 1280-pixel screen, and so would the config
    # name where every run id already starts with it (run ids are "<config>-<digest>"). The CSV has every column.
    left_out = ["finished_at"] + (["config"] if all(run_id.startswith(f"{config}-") for run_id, config in zip(
        runs["run_id"].to_pylist(), runs["config"].to_pylist()) if config) else [])
    shown_runs = common.with_times(runs.drop_columns(left_out))
    shown_runs = shown_runs.add_column(0, "open", [[run_link(run) for run in runs.to_pylist()]])
    common.table(shown_runs, "overview_runs", SMALL | OPEN)
    downloads.table(runs, "runs", "runs_csv")
if snap.edits:
    st.subheader(f"Edits ({len(snap.edits)})")
    common.table([{"open": edit_link(e["edit_id"]), "edit": e["edit_id"], "model": e.get("model"),
                   "concept": e.get("concept"), "method": e.get("method"), "edited": edit_view.edited(e),
                   "evaluated": e["eval"] is not None, "created_at": common.when(e.get("created_at"))}
                  for e in snap.edits], "overview_edits", SMALL | OPEN)
    downloads.table([{key: value for key, value in e.items() if key not in ("eval", "evals")} for e in snap.edits],
                    "edits", "edits_csv")
active = [job for job in jobs.list_jobs(snap.root) if job.active]
if active:
    st.info(common.escape(f"Job {active[0].job_id} ({active[0].spec.get('label')}) is {active[0].status}: see Run an "
                          "edit."))
