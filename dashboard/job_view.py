"""The Run-an-edit page's parts (``views/run_edit.py``): a job followed through its files, the Seeds box, and what
the form pre-fills for the concept it is about (a ``FormState``: the form's model, family and concept, and what the
Layer map handed over)."""

from dataclasses import dataclass

import streamlit as st

from locolab.contract import bounds, queries
from locolab.contract.catalog.registry import MODELS
from locolab.contract.errors import UserError
from locolab.contract.summaries import DEFAULT_LEVEL
from locolab.dashboard import common, data, jobs

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


def earlier_rows(history: list[jobs.Job]) -> list[dict]:
    """The Earlier jobs table: every job but the newest."""
    return [{"job": job.job_id, "what": job.label, "status": job.status, "exit": job.returncode,
             "created_at": str(job.spec.get("created_at"))} for job in history[1:]]


def show_job(root: str, job_id: str) -> None:
    """The job's status, progress, cancel button and log; when it ends, rerun the page to show its results."""
    try:
        job = jobs.load(jobs.jobs_dir(root) / job_id)
    except (OSError, ValueError):
        st.warning(common.escape(f"Job {job_id} no longer reads back (its job.json is gone or damaged)."))
        return
    log = job.log()
    st.markdown(f"**Job {common.escape(job.job_id)}**: {common.escape(job.label)} — **{job.status}**")
    if job.active:
        fraction, text = jobs.progress(job.report())
        st.progress(fraction, text=text)
        if st.button("Cancel job", key=f"cancel_{job.job_id}", disabled=job.status == "cancelling"):
            jobs.cancel(job)
            st.rerun()
    # Wrapped: the command's line is longer than the box, and a cut command cannot be rerun from it.
    st.code(log[-6000:] or "(no output yet)", language=None, wrap_lines=True)
    if not job.active and st.session_state.get("watching") == job.job_id:
        st.session_state.pop("watching")
        st.rerun(scope="app")
