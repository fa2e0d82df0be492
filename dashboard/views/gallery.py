"""Gallery: the images behind one (model, concept) on one screen: original, target and every window of one m (or,
for causal tracing, original, corrupted and every restored site), one column per seed, each row with what it
measured (normalized drop or recovery, with its interval); the focused row is highlighted and scrolled into view,
and its images are shown at full size below. The controls and the URL make a ``gallery_view.GalleryState``; the
views of ``dashboard.gallery_view`` draw from it."""

import streamlit as st

from locolab.contract import bounds, queries
from locolab.contract.figures import row_label
from locolab.dashboard import common, data, url_state
from locolab.dashboard.gallery_view import IMAGES, PAGE, TRACING, WINDOWS, GalleryState, trace_view, windows_view

snap = common.snapshot()
common.require_results(snap)
st.title("Gallery")
wanted = url_state.incoming(PAGE)  # a shared link, Back or Forward, or the Layer map's click: the view to show
view: dict = {}

top = st.columns([3, 3, 2, 2])
models = common.bounded(data.query(snap, queries.models), "models")
url_state.unknown(wanted, "model", models, "the model")
url_state.seed("gal_model", wanted.get("model"), models)
model = top[0].selectbox("Model", models, key="gal_model")
view["model"] = model
concepts = common.bounded(data.query(snap, queries.concepts, model), "concepts")
if not concepts:
    st.info(f"No cases for {common.escape(model)} yet.")
    url_state.publish(PAGE, view)
    st.stop()
url_state.unknown(wanted, "concept", [c for _, c in concepts], "the concept")
if url_state.wanted_concept(wanted) in concepts:
    st.session_state["gal_concept"] = url_state.wanted_concept(wanted)
elif st.session_state.get("gal_concept") not in concepts:
    st.session_state["gal_concept"] = concepts[0]
family, concept = top[1].selectbox("Concept", concepts, format_func=lambda key: row_label(*key), key="gal_concept")
view.update(url_state.concept_params((family, concept)))
scorers = common.bounded(data.query(snap, queries.scorers, model), "scorers") or [None]
if st.session_state.get("gal_scorer") not in scorers:
    st.session_state["gal_scorer"] = scorers[0]
url_state.seed("gal_scorer", wanted.get("scorer"), scorers)
scorer = top[3].selectbox("Scorer", scorers, key="gal_scorer")
view["scorer"] = scorer
sizes = [m for m in data.query(snap, queries.window_sizes, model, family, concept) if 0 < m <= bounds.MAX_LAYERS]
traced = data.query(snap, queries.traced_components, model, family, concept)
kinds = [kind for kind, present in ((WINDOWS, sizes), (TRACING, traced)) if present]
if not kinds:
    st.info(f"No window or tracing images for {common.escape(row_label(family, concept))} yet.")
    url_state.publish(PAGE, view)
    st.stop()
if st.session_state.get("gal_images") not in kinds:
    st.session_state["gal_images"] = kinds[0]
if wanted.get("images") in IMAGES:
    url_state.seed("gal_images", IMAGES[wanted["images"]], kinds)
shown = st.radio("Images of", kinds, key="gal_images", horizontal=True) if len(kinds) > 1 else kinds[0]
view["images"] = next(name for name, kind in IMAGES.items() if kind == shown)
state = GalleryState(model, family, concept, scorer, wanted)
if shown == WINDOWS:
    if st.session_state.get("gal_size") not in sizes:
        st.session_state["gal_size"] = sizes[0]
    url_state.seed("gal_size", wanted.get("m"), sizes)
    view.update(windows_view(snap, state, top[2].selectbox("Window size m", sizes, key="gal_size")))
else:
    options = [f"{component} · noise {noise:g}" for component, noise in traced]
    if st.session_state.get("gal_trace") not in options:
        st.session_state["gal_trace"] = options[0]
    wanted_trace = next((o for (c, n), o in zip(traced, options)
                         if c == wanted.get("component") and str(n) == wanted.get("noise")), None)
    url_state.seed("gal_trace", wanted_trace, options)
    view.update(trace_view(snap, state, *traced[options.index(top[2].selectbox("Traced", options, key="gal_trace"))]))
url_state.publish(PAGE, view)
