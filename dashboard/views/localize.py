"""Localize a concept: a concept, its prompts (pre-filled with the family's shipped templates), the attribute-free
target, window sizes and seeds become a ``StudySpec`` (``dashboard.localize_form``), whose cost is shown before it
runs as ``python -m compute sweep --spec FILE``, a background job on the root like an edit job; its map is on the
Layer map when it finishes."""

import os

import streamlit as st

from locolab.contract import bounds, queries
from locolab.contract.catalog.registry import MODELS
from locolab.contract.errors import UserError
from locolab.contract.names import FAMILIES
from locolab.contract.store import is_url
from locolab.dashboard import common, data, jobs
from locolab.dashboard.edit_form import runnable_models
from locolab.dashboard.job_view import REFRESH_S, layer_count, parse_seeds, show_jobs, watch
from locolab.dashboard.localize_form import (
    ARROW,
    DEFAULT_SEEDS,
    DEFAULT_SIZES,
    LocalizeRequest,
    catalog_prompts,
    cost,
    parse_sizes,
)
from locolab.dashboard.root import job_root_problem

snap = common.snapshot()
options = st.session_state[common.OPTIONS_KEY]
st.title("Localize a concept")
history = jobs.list_jobs(snap.root)
active = [job for job in history if job.active]
latest = history[0] if history else None

store_models = data.query(snap, queries.models)
allowed = common.bounded(runnable_models(snap.root, store_models, options.models), "models")
default_model = st.session_state.get("chosen_model") or (store_models[0] if store_models else "tiny-sd1")
left, middle, right = st.columns(3)
model = left.selectbox("Model", allowed, index=allowed.index(default_model) if default_model in allowed else 0,
                       key="loc_model", help="Registered models, models the operator allowed at launch, and model "
                                             "folders inside this artifact root.")
family = middle.selectbox("Family", FAMILIES, key="loc_family",
                          help="The map's row label, and the shipped family whose templates pre-fill the prompts.")
concept = right.text_input("Concept", key="loc_concept", max_chars=200, placeholder="e.g. van gogh").strip()
shipped = catalog_prompts(model, family)
prompts = st.text_area(
    "Prompts", value=shipped[0] if shipped else "", key=f"loc_prompts_{model}_{family}", max_chars=8000,
    help=f"One per line: a template with {{concept}}, or a prompt as written; add '{ARROW.strip()} TARGET' for a "
         "prompt's own attribute-free target. Pre-filled with the family's templates from the catalog"
         + ("." if shipped else f" ({family} has none in {model}'s prompt set)."))
first, second = st.columns(2)
target = first.text_input("Target (attribute-free prompt)", value=shipped[1] if shipped else "", max_chars=200,
                          key=f"loc_target_{model}_{family}",
                          help="Fed to a window's layers in place of the prompt, for prompts without their own.")
score_text = second.text_input("Score text", value=shipped[2] if shipped else "{concept}", max_chars=200,
                               key=f"loc_score_{model}_{family}",
                               help="The CLIP text the images are scored against; {concept} is filled in.")
num_layers = layer_count(model, [i for i in data.query(snap, queries.layers, model) if 0 <= i < bounds.MAX_LAYERS])
registered = MODELS.get(model)
sizes_box, seeds_box, steps_box, size_box = st.columns(4)
sizes_text = sizes_box.text_input("Window sizes", ",".join(map(str, DEFAULT_SIZES)), key="loc_sizes", max_chars=200,
                                  help=f"Comma-separated, from 1 to {num_layers} (the model's cross-attention "
                                       "layers).")
seeds_text = seeds_box.text_input("Seeds", ",".join(map(str, DEFAULT_SEEDS)), key="loc_seeds", max_chars=2000,
                                  help=f"Comma-separated, at most {bounds.MAX_SEEDS}.")
steps = steps_box.number_input("Steps (0: model default)", 0, bounds.MAX_STEPS, 0, key="loc_steps",
                               help=f"{model}'s default: {registered.steps}." if registered else None)
size = size_box.number_input("Image side in px (0: model default)", 0, bounds.MAX_SIZE, 0,
                             step=bounds.SIZE_MULTIPLE, key="loc_size",
                             help=f"{model}'s default: {registered.resolution}." if registered else None)

request = study = None
try:
    request = LocalizeRequest(model, family, concept, prompts, target, score_text, parse_sizes(sizes_text, num_layers),
                              parse_seeds(seeds_text), int(steps) or None, int(size) or None)
    study = request.study(num_layers)
except UserError as error:
    st.info(common.escape(f"Not ready to launch: {error}."))
if study:
    count = cost(study, num_layers)
    st.markdown(common.escape(
        f"Dry run: run {study.run_id}, {count['units']} prompt(s) × {len(study.seeds)} seed(s): "
        f"{count['cases']:,} cases, {count['images']:,} images ({len(study.window_sizes)} window size(s) over "
        f"{num_layers} layers, with the original, target and all-layers references), scored by "
        f"{study.scorers[0]}."))

not_here = job_root_problem(snap.root, options)
if not_here:
    st.warning(common.escape(not_here))
button, monitor = st.columns([1, 4])
if button.button("Launch sweep", type="primary", key="loc_launch",
                 disabled=len(active) >= options.max_jobs or bool(not_here) or study is None):
    try:
        args, spec, study = request.job(snap.root if is_url(snap.root) else os.path.abspath(snap.root), set(allowed),
                                     num_layers)
        job = jobs.launch(snap.root, args, f"localize {concept} on {model}", request.to_dict(), options.max_jobs,
                          spec)
    except UserError as error:
        st.error(common.escape(error))
    else:
        st.session_state["watching"] = job.job_id
        st.rerun()
with monitor:
    watch(snap.root, latest, "No job on this root yet: the launched sweep's progress shows here.")
st.fragment(show_jobs, run_every=REFRESH_S if latest and latest.active else None)(snap.root)
