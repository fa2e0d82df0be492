"""Layer map: where each concept localizes, per model, as a heat map of normalized drops over layers."""

import functools

import pyarrow.compute as pc
import streamlit as st

from compute.registry import MODELS
from dashboard import common, data, queries
from dashboard.figures import heat_map, line_view, row_label, window_label

GALLERY = "views/gallery.py"


def open_gallery(model, scorer, family, concept, size, start=None) -> None:
    """Hand the choice to the Gallery page (it reads ``gallery_request`` once) and go there."""
    st.session_state["gallery_request"] = {"model": model, "scorer": scorer, "family": family, "concept": concept,
                                           "size": size, "start": start}
    st.session_state["map_clicks"] = st.session_state.get("map_clicks", 0) + 1
    st.switch_page(GALLERY)


def on_cell_click(key: str) -> None:
    # A callback runs only when the selection changes, so returning to this page does not bounce to the gallery.
    points = st.session_state[key].selection.points
    if points:
        st.session_state["map_clicked"] = (int(points[0]["y"]), int(points[0]["x"]))


snap = common.snapshot()
common.require_results(snap)
st.title("Layer map")
loc = data.query(snap, queries.localization_table)
models = sorted(set(loc["model"].to_pylist()))
if not models:
    st.info("The store has cases but no scored windows yet: wait for the sweep to score its first work unit.")
    st.stop()
left, middle, right, far = st.columns([3, 2, 1, 2])
model = left.selectbox("Model", models, key="map_model")
mine = loc.filter(pc.equal(loc["model"], model))
scorer = middle.selectbox("Scorer", sorted(set(mine["scorer_id"].to_pylist())), key="map_scorer")
mine = mine.filter(pc.equal(mine["scorer_id"], scorer))
size = right.selectbox("Window size m", sorted(set(mine["window_size"].to_pylist())), key="map_size")
threshold = far.slider("Threshold (fraction of the original→target gap)", 0.05, 1.0, 0.5, 0.05, key="threshold")
# Widget state dies with the page; Run an edit pre-fills its form from these.
st.session_state.update(chosen_model=model, chosen_threshold=threshold)

cells = queries.layer_cells(loc, model, scorer, size, threshold)
minimal = queries.minimal_windows(loc, model, scorer, threshold)
layers = data.query(snap, queries.layers, model)
ends = [s + n for s, n in zip(mine["window_start"].to_pylist(), mine["window_size"].to_pylist())]
num_layers = max([getattr(MODELS.get(model), "num_layers", None) or 0, len(layers) and max(layers) + 1, *ends])
if not layers:
    st.caption("This store records no layer table for the model: hover shows layer indices only.")

chart_key = f"heat_map_{st.session_state.get('map_clicks', 0)}"
st.plotly_chart(heat_map(cells, minimal, layers, num_layers, size, threshold), key=chart_key,
                on_select=functools.partial(on_cell_click, chart_key), selection_mode="points",
                config={"displaylogo": False})
st.caption("Colour: normalized drop (original − window) / (original − target) of the window of m layers starting at "
           "that column. Click a cell to open its images.")
rows = list(dict.fromkeys(zip(cells["family"].to_pylist(), cells["concept"].to_pylist())))
clicked = st.session_state.pop("map_clicked", None)
if clicked and clicked[0] < len(rows):
    open_gallery(model, scorer, *rows[clicked[0]], size, clicked[1])
found = {(w["family"], w["concept"]): w for w in minimal.to_pylist()}
st.subheader(f"Minimal localizing windows (drop ≥ {threshold:g})")
st.dataframe([{"family": family, "concept": concept,
               "window": window_label(found[(family, concept)]["window_start"], found[(family, concept)]["window_size"])
               if (family, concept) in found else "none at this threshold",
               "m": found.get((family, concept), {}).get("window_size"),
               "drop": found.get((family, concept), {}).get("normalized_drop")} for family, concept in rows],
             hide_index=True, width="stretch")

st.subheader("One concept")
family, concept = st.selectbox("Concept", rows, format_func=lambda key: row_label(*key), key="map_concept")
concept_rows = mine.filter(pc.and_(pc.equal(mine["family"], family), pc.equal(mine["concept"], concept)))
seeds = data.query(snap, queries.seed_scores, model, scorer, family, concept)
st.plotly_chart(line_view(concept_rows, seeds, size, threshold, layers), key="line_view",
                config={"displaylogo": False})
starts = sorted(concept_rows.filter(pc.equal(concept_rows["window_size"], size))["window_start"].to_pylist())
pick, go = st.columns([3, 1], vertical_alignment="bottom")
start = pick.selectbox("Window", starts, format_func=lambda s: window_label(s, size), key="map_start")
if go.button("Open gallery", key="open_gallery"):
    open_gallery(model, scorer, family, concept, size, start)
