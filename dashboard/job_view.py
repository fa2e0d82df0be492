"""The job pages' parts (``views/run_edit.py``, ``views/localize.py``): a job followed through its files, the jobs of
the root, the Seeds box, and what the edit form pre-fills for the concept it is about (a ``FormState``: the form's
model, family and concept, and what the Layer map handed over)."""

from dataclasses import dataclass
from urllib.parse import urlencode

import streamlit as st

from locolab.contract import bounds, queries
from locolab.contract.catalog.registry import MODELS
from locolab.contract.errors import UserError
from locolab.contract.names import LOCOGEN  # the Layer map's URL name of its LocoGen view
from locolab.contract.summaries import DEFAULT_LEVEL
from locolab.dashboard import common, data, job_progress, jobs

DEFAULT_LAYERS = 16  # the Layers picker's width for a model neither registered nor with a layer table


@dataclass(frozen=True)
class FormState:
    """What the Run-an-edit form is about so far.

    Attributes:
        model, family, concept: the form's choices (concept "" before one is named).
        threshold: the Layer map's threshold (its minimal windows pre-fill the layers).
        chosen_run: the LocoGen run the Layer map showed last, if any.
    """

    model: str
    family: str
    concept: str
    threshold: float = 0.5
    chosen_run: str | None = None


def parse_seeds(text: str) -> tuple[int, ...]:
    """The Seeds box: comma-separated seeds, at most ``bounds.MAX_SEEDS``.

    Raises:
        UserError: not integers, out of range, repeated, or too many.
    """
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if len(parts) > bounds.MAX_SEEDS:
        raise UserError(f"{len(parts)} seeds: give at most {bounds.MAX_SEEDS}")
    try:
        seeds = tuple(int(part) for part in parts)
    except ValueError:
        raise UserError(f"seeds {text[:80]!r}: write comma-separated integers, e.g. 0,1") from None
    if len(set(seeds)) != len(seeds):
        raise UserError("seeds: list each seed once")
    return seeds


def layer_count(model: str, layer_indices: list[int]) -> int:
    """How many layers the Layers picker offers: the registered model's, else as many as its stored layer table
    names (``layer_indices``), else ``DEFAULT_LAYERS``."""
    registered = MODELS[model].num_layers if model in MODELS else None
    return registered or (max(layer_indices) + 1 if layer_indices else DEFAULT_LAYERS)


def source_run(sweeps, state: FormState) -> str | None:
    """The run whose localization pre-fills the layers: the one the Layer map showed for this model, else the
    model's newest finished run (``sweeps``: ``queries.run_list``)."""
    mine = {r["run_id"] for r in sweeps.to_pylist() if r["model"] == state.model}
    return state.chosen_run if state.chosen_run in mine else queries.default_run(sweeps, state.model)


def localized_layers(loc, state: FormState, num_layers: int) -> list[int]:
    """The layers of the concept's minimal localizing window at the state's threshold (first scorer of ``loc``, a
    run's ``queries.localization_table``), inside the model's ``num_layers``; [] when none localizes."""
    scorers = sorted(set(loc["scorer_id"].to_pylist()))
    minimal = queries.minimal_windows(loc, scorers[0], state.threshold) if scorers else loc.slice(0, 0)
    window = next((w for w in minimal.to_pylist() if (w["family"], w["concept"]) == (state.family, state.concept)),
                  None)
    return [i for i in range(window["window_start"], window["window_start"] + window["window_size"])
            if i < num_layers] if window else []


def prefill(snap: data.Snapshot, state: FormState, num_layers: int) -> tuple[str | None, list[int]]:
    """(the run that pre-fills the layers, the layers it localizes the concept to)."""
    run_id = source_run(data.query(snap, queries.run_list), state)
    if not (state.concept and run_id):
        return run_id, []
    return run_id, localized_layers(data.query(snap, queries.localization_table, run_id, DEFAULT_LEVEL), state,
                                    num_layers)


def result_links(job: jobs.Job) -> dict[str, str | None]:
    """Links to what a job produced, from its report: the edit (Edits page) and the run (Layer map); None where it
    produced none (yet). A cancelled edit job that got as far as saving its edit links to it."""
    result, request = job.result(), job.spec.get("request") or {}
    edit_id, run_id, model = result.get("edit_id"), result.get("run_id"), request.get("model")
    edit = f"/edits?{urlencode({'edit': edit_id})}" if isinstance(edit_id, str) else None
    run = (f"/layer_map?{urlencode({'view': LOCOGEN, 'model': model, 'run': run_id})}"
           if isinstance(run_id, str) and isinstance(model, str) else None)
    return {"edit": edit, "run": run}


def job_rows(history: list[jobs.Job]) -> list[dict]:
    """The Jobs table: every job of the root, newest first, whoever launched it, with what it produced and the
    command it runs (shell-quoted)."""
    return [{"job": job.job_id, "launched by": job.user, "launched": common.when(job.spec.get("created_at")),
             "what": job.label, "state": job.status, "exit": job.returncode, **result_links(job),
             "command": job.command} for job in history]


JOB_COLUMNS = {"edit": st.column_config.LinkColumn("edit", display_text=r"edit=(.*)$"),
               "run": st.column_config.LinkColumn("run", display_text=r"run=(.*)$")}


def show_jobs(root: str) -> None:
    """Every job of the root, for everyone working on it (a fragment of its own: refreshed while one runs)."""
    history = jobs.list_jobs(root)
    st.subheader("Jobs on this root")
    if not history:
        st.caption("No jobs yet.")
        return
    common.table(job_rows(history), key="jobs_page", column_config=JOB_COLUMNS)


def show_job(root: str, job_id: str) -> None:
    """The job's state, a progress bar with what it is doing now and the time left, its results' links, a cancel
    button and its log; when it ends, rerun the page to show its results."""
    try:
        job = jobs.load(jobs.jobs_dir(root) / job_id)
    except (OSError, ValueError):
        st.warning(common.escape(f"Job {job_id} no longer reads back (its job.json is gone or damaged)."))
        return
    st.markdown(f"**Job {common.escape(job.job_id)}** ({common.escape(job.user)}): {common.escape(job.label)} — "
                f"**{job.status}**")
    if job.active:
        fraction, text = job_progress.progress(job.report())
        bar, cancel = st.columns([5, 1], vertical_alignment="bottom")
        bar.progress(fraction, text=common.escape(text))
        if cancel.button("Cancel job", key=f"cancel_{job.job_id}", disabled=job.status == "cancelling"):
            jobs.cancel(job)
            st.rerun()
    links = [f"[{name} {common.escape(url.rsplit('=', 1)[-1])}]({url})"
             for name, url in result_links(job).items() if url]
    if links:
        st.markdown("Produced: " + " · ".join(links))
    with st.expander("Command and log", expanded=job.status == "failed"):
        # Wrapped: the command's line is longer than the box, and a cut command cannot be rerun from it.
        st.code(job.log()[-6000:] or "(no output yet)", language=None, wrap_lines=True)
    if not job.active and st.session_state.get("watching") == job.job_id:
        st.session_state.pop("watching")
        st.rerun(scope="app")


REFRESH_S = 1.5  # how often a running job's progress and the jobs list are read again


def watch(root: str, latest: jobs.Job | None, empty: str) -> None:
    """The latest job's progress, refreshed while it runs (and remembered as the job this session watches), or
    ``empty`` when the root has no job yet."""
    if latest:
        if latest.active:
            st.session_state["watching"] = latest.job_id
        st.fragment(show_job, run_every=REFRESH_S if latest.active else None)(root, latest.job_id)
    else:
        st.caption(empty)
