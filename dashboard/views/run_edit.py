"""Run an edit: launch ``python -m compute edit ... --eval`` as a background job, follow it beside the Launch button,
see its results, evaluate stored edits that have none, and see every job of the root.
What the form is about makes a ``job_view.FormState``, from which ``dashboard.job_view`` pre-fills the form."""

import os

import streamlit as st

from locolab.contract import bounds, queries
from locolab.contract.errors import UserError
from locolab.contract.figures import row_label
from locolab.contract.names import CHOSEN_LAYERS, CLOSED_FORM, EDIT_METHODS, FAMILIES, METHODS, POSITIONS
from locolab.contract.specs import EvalSpec
from locolab.contract.store import is_url
from locolab.contract.summaries import DEFAULT_LEVEL
from locolab.dashboard import common, data, downloads, edit_view, jobs
from locolab.dashboard.edit_form import (
    DEFAULT_UNRELATED,
    EditRequest,
    eval_job,
    family_target,
    preservation_size,
    runnable_models,
    suggested_keys,
    unevaluated,
)
from locolab.dashboard.job_view import REFRESH_S, FormState, layer_count, parse_seeds, prefill, show_jobs, watch
from locolab.dashboard.root import job_root_problem

MAX_UNRELATED = 1000  # the box's limit where the preservation set's size is unknown


snap = common.snapshot()
options = st.session_state[common.OPTIONS_KEY]
st.title("Run an edit")
job_root = snap.root if is_url(snap.root) else os.path.abspath(snap.root)
history = jobs.list_jobs(snap.root)
active = [job for job in history if job.active]
latest = history[0] if history else None
st.subheader("New edit")
store_models = data.query(snap, queries.models)
allowed = common.bounded(runnable_models(snap.root, store_models, options.models), "models")
default_model = st.session_state.get("chosen_model") or (store_models[0] if store_models else "tiny-sd1")
left, middle, right = st.columns(3)
model = left.selectbox("Model", allowed, index=allowed.index(default_model) if default_model in allowed else 0,
                       key="run_model", help="Registered models, models the operator allowed at launch, and model "
                                             "folders inside this artifact root.")
family = middle.selectbox("Family", FAMILIES, key="run_family")
known = common.bounded([concept for fam, concept in data.query(snap, queries.concepts, model) if fam == family],
                       "concepts")
concept = (right.selectbox("Concept", known, key=f"run_concept_{model}_{family}", accept_new_options=True,
                           help="Concepts of this family in the store; type another to add it.")
           if known else right.text_input("Concept", key=f"run_concept_text_{family}", max_chars=200))
concept = (concept or "").strip()[:200]
stored_targets = data.query(snap, queries.targets, model, family, concept) if concept else []
default_target = (family_target(model, family, concept) or "") if concept else ""
sweep_note = (f" The sweeps of this concept used the target prompt(s) "
              f"{', '.join(repr(t) for t in stored_targets[:5])}: a LocoGen target prompt, not an edit's target."
              if stored_targets else "")
target = st.text_input("Target", value=default_target[:200], max_chars=200,
                       key=f"run_target_{model}_{family}_{concept}",
                       help=common.escape("What the concept should become. Pre-filled with the family's target, "
                                          f"{default_target!r}, which the edit command uses when none is named."
                                          + sweep_note))

num_layers = layer_count(model, [i for i in data.query(snap, queries.layers, model) if 0 <= i < bounds.MAX_LAYERS])
# Widget state dies with the page: the Layer map leaves its threshold and run in the session.
form = FormState(model, family, concept, st.session_state.get("chosen_threshold", 0.5),
                 st.session_state.get("chosen_run"))
source_run, localized = prefill(snap, form, num_layers)
method = st.radio("Method", METHODS, horizontal=True, key="run_method",
                  help="loco: closed-form edit of the chosen layers; all-layers: the same on every layer; "
                       "neuron: hold the top-k key/value units of the chosen layers at their neutral means; "
                       "diffquickfix: the closed form on text-encoder layer 0's self-attention out_proj, the "
                       "predecessor's published recipe (no UNet layers); diffquickfix-family: ours, the family's "
                       "prompts to one target with the bias counted once.")
layers = st.multiselect(
    "Layers", list(range(num_layers)), default=localized, key=f"run_layers_{model}_{family}_{concept}",
    disabled=method not in CHOSEN_LAYERS,
    help=common.escape(f"Pre-filled with the minimal localizing window of {row_label(family, concept)} in run "
                       f"{source_run} (threshold {form.threshold:g} on the {DEFAULT_LEVEL:.0%} interval).") if localized
    else "No localizing window for this concept in the model's run: choose layers.")
if method == "neuron":
    topk = st.number_input("Units to hold per key/value matrix (top-k, as the official code)", 1, 10_000,
                           EditRequest.topk, key="run_topk")
    lam = EditRequest.lam
else:
    topk = EditRequest.topk
    lam = st.number_input("λ (ridge weight)", min_value=1e-6, value=EDIT_METHODS[method].lam, format="%.4g",
                          key=f"run_lambda_{method}")
positions, preserve = None, False
if method in CLOSED_FORM:
    suggested = suggested_keys(model)
    keys, keep = st.columns(2)
    choices = ("method default", *POSITIONS)
    choice = keys.radio("Key positions", choices, horizontal=True, key=f"run_positions_{model}",
                        index=choices.index(suggested["positions"]) if suggested else 0,
                        help="The last subject token alone, or with every later (end-of-text, padding) position. "
                             "Default: subject for loco/all-layers (the paper), subject+padding for the "
                             "diffquickfix recipes.")
    positions = None if choice == "method default" else choice
    preserve = keep.checkbox("Preserve the family's other concepts", key=f"run_preserve_{model}",
                             value=bool(suggested.get("preserve_others")),
                             help="Also key the other concepts' prompts, mapped to themselves (not in the paper).")
    if suggested:
        st.caption(common.escape(f"Suggested for {model} (pre-set, not the paper's setting): key positions "
                                 f"{suggested['positions']} and preserving the other concepts, because "
                                 f"{suggested['why']}."))
with st.expander("Evaluation settings"):
    seeds_text = st.text_input("Seeds", ",".join(map(str, EditRequest.seeds)), key="run_seeds", max_chars=2000,
                               help=f"Comma-separated, at most {bounds.MAX_SEEDS}; the same before and after.")
    steps = st.number_input("Steps (0: model default)", 0, bounds.MAX_STEPS, 0, key="run_steps")
    size = st.number_input("Image side in px (0: model default)", 0, bounds.MAX_SIZE, 0, step=bounds.SIZE_MULTIPLE,
                           key="run_size")
    available = preservation_size(model, concept) if concept else None
    most = min(available or MAX_UNRELATED, MAX_UNRELATED)
    unrelated = st.number_input(
        "Unrelated prompts (specificity): a random subset of the preservation set", 1, max(most, 1),
        min(DEFAULT_UNRELATED, max(most, 1)), key=f"run_unrelated_{model}_{concept}",
        help=f"At most {available}: the preservation set of {model} holds {available} prompts that do not name "
             f"this concept." if available else "A random subset of the model's preservation prompts.")
    if available is not None and available < DEFAULT_UNRELATED:
        st.caption(f"The preservation set of {common.escape(model)} has {available} prompts without "
                   f"“{common.escape(concept)}”: specificity uses at most {available}.")

not_here = job_root_problem(snap.root, options)
if not_here:
    st.warning(common.escape(not_here))
# The job's progress beside the button that launched it: after a click it is where the eye is.
button, monitor = st.columns([1, 4])
if button.button("Launch edit", type="primary", key="launch",
                 disabled=len(active) >= options.max_jobs or bool(not_here)):
    try:
        request = EditRequest(model, family, concept, target.strip() or None, tuple(layers), float(lam), method,
                              int(topk), parse_seeds(seeds_text), int(steps) or None, int(size) or None,
                              int(unrelated), positions, preserve)
        args, spec = request.job(job_root, set(allowed), num_layers)
        job = jobs.launch(snap.root, args, f"{method} edit of {concept} on {model}", request.to_dict(),
                          options.max_jobs, spec)
    except UserError as error:
        st.error(common.escape(error))
    else:
        st.session_state["watching"] = job.job_id
        st.rerun()
with monitor:
    watch(snap.root, latest, "No job on this root yet: the launched job's progress shows here.")

result = latest.result() if latest and latest.status in ("succeeded", "cancelled", "failed") else {}
record = next((r for r in snap.edits if r["edit_id"] == result.get("edit_id")), None)
if record and record.get("evals"):
    st.subheader(f"Result: {common.escape(record['edit_id'])}")
    chosen = edit_view.choose_evaluation(record, result.get("eval_id"))
    edit_view.summary(record, chosen)
    eval_id = chosen.get("eval_id") if chosen else None
    downloads.edit(snap.root, record, chosen,
                   data.query(snap, queries.edit_pairs, record["edit_id"], eval_id).to_pylist(), key="result_zip")
    edit_view.pairs(snap, record["edit_id"], eval_id)

waiting = unevaluated(snap.edits)
if waiting:
    st.subheader("Edits without an evaluation")
    ids = [r["edit_id"] for r in waiting]
    pick, go = st.columns([4, 1], vertical_alignment="bottom")
    first = ids.index(record["edit_id"]) if record and record["edit_id"] in ids else 0
    edit_id = pick.selectbox("Edit", ids, index=first, key="eval_edit",
                             help="Stored edits with no evaluation, e.g. from a job cancelled while it evaluated (the "
                                  "edit was saved whole, weights and record, before its evaluation began). The "
                                  "evaluation uses the Evaluation settings above.")
    chosen_record = waiting[ids.index(edit_id)]
    why_not = not_here or (None if chosen_record.get("model") in allowed else
                           f"its model {chosen_record.get('model')!r} is not one a job may name here")
    if go.button("Evaluate", key="evaluate", disabled=len(active) >= options.max_jobs or bool(why_not),
                 help=common.escape(why_not) if why_not else None):
        try:
            evaluation = EvalSpec(seeds=parse_seeds(seeds_text), steps=int(steps) or None, size=int(size) or None,
                                  unrelated=int(unrelated))
            job = jobs.launch(snap.root, eval_job(job_root, edit_id, evaluation), f"evaluation of {edit_id}",
                              {"model": chosen_record.get("model"), "edit_id": edit_id, **evaluation.to_dict()},
                              options.max_jobs)
        except UserError as error:
            st.error(common.escape(error))
        else:
            st.session_state["watching"] = job.job_id
            st.rerun()

st.fragment(show_jobs, run_every=REFRESH_S if latest and latest.active else None)(snap.root)
