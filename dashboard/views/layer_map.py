"""Layer map: where each concept localizes, per model — LocoGen's normalized drop per window, causal tracing's
recovery per site, attention contribution per site, or LocoGen beside one of the others on the same rows, columns and
0–1 colour scale."""

import functools

import pyarrow as pa
import pyarrow.compute as pc
import streamlit as st

from compute.models.registry import MODELS
from contract import bounds
from contract.names import COMPONENTS, CROSS_ATTENTION
from contract.summaries import MIN_CORRUPTION_GAP
from dashboard import common, data, queries
from dashboard.figures import contribution_map, heat_map, line_view, row_label, trace_map, window_label

GALLERY = "views/gallery.py"
LOCOGEN, TRACING, CONTRIBUTION, BOTH = "LocoGen", "Causal tracing", "Attention contribution", "Side by side"
LOCOGEN_CAPTION = ("**LocoGen** colour: normalized drop (original − window) / (original − target) of the window of "
                   "m layers starting at that column, when those layers get the target prompt: 1 = the attribute is "
                   "gone as fully as with the target prompt, 0 = no effect.")
TRACE_CAPTION = ("**Causal tracing** colour: recovery (restored − corrupted) / (original − corrupted): with the "
                 "subject's word embedding corrupted by noise, restoring that one site from the clean run brings the "
                 "attribute back fully (1) or not at all (0).")
CONTRIBUTION_CAPTION = ("**Attention contribution** colour: the site's mean contribution of the concept's tokens "
                        "(the norm of their share of the attention output through its output projection, averaged "
                        "over image tokens, steps, prompts and seeds), relative to the concept's dominant site. ● "
                        "marks the k dominant sites, which the top-k intervention feeds the target prompt.")
CHART = {"displaylogo": False}


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


def only(table, **equal):
    for column, value in equal.items():
        table = table.filter(pc.equal(table[column], value))
    return table


def locogen_columns(model: str, mine) -> tuple[dict, int]:
    """The model's cross-attention layers and how many there are."""
    layers = {i: info for i, info in data.query(snap, queries.layers, model).items() if 0 <= i < bounds.MAX_LAYERS}
    ends = [s + n for s, n in zip(mine["window_start"].to_pylist(), mine["window_size"].to_pylist())]
    num = max([getattr(MODELS.get(model), "num_layers", None) or 0, len(layers) and max(layers) + 1, *ends])
    if not layers:
        st.caption("This store records no layer table for the model: hover shows layer indices only.")
    return layers, num


def trace_columns(model: str, component: str, cells) -> tuple[dict, int]:
    """The traced component's sites and how many there are."""
    layers = {i: info for i, info in data.query(snap, queries.layers, model, component).items()
              if 0 <= i < bounds.MAX_LAYERS}
    return layers, max([len(layers) and max(layers) + 1, *(s + 1 for s in cells["site"].to_pylist())])


def pick_noise(sites, component: str, column) -> float:
    """The noise level of the chosen component's tracing (a choice only when several were traced)."""
    noises = sorted(set(only(sites, component=component)["noise"].to_pylist()))
    return noises[0] if len(noises) == 1 else column.selectbox("Noise (× embedding std)", noises, key="trace_noise")


def locogen_view(model: str, mine, size: int, threshold: float) -> None:
    """LocoGen's heat map (click a cell for its images), minimal windows and one concept's line view."""
    cells = queries.layer_cells(loc, model, scorer, size, threshold)
    minimal = queries.minimal_windows(loc, model, scorer, threshold)
    layers, num_layers = locogen_columns(model, mine)
    chart_key = f"heat_map_{st.session_state.get('map_clicks', 0)}"
    st.plotly_chart(heat_map(cells, minimal, layers, num_layers, size, threshold), key=chart_key,
                    on_select=functools.partial(on_cell_click, chart_key), selection_mode="points", config=CHART)
    st.caption(LOCOGEN_CAPTION + " Click a cell to open its images.")
    rows = list(dict.fromkeys(zip(cells["family"].to_pylist(), cells["concept"].to_pylist())))
    clicked = st.session_state.pop("map_clicked", None)
    if clicked and clicked[0] < len(rows):
        open_gallery(model, scorer, *rows[clicked[0]], size, clicked[1])
    found = {(w["family"], w["concept"]): w for w in minimal.to_pylist()}
    st.subheader(f"Minimal localizing windows (drop ≥ {threshold:g})")
    st.dataframe([{"family": family, "concept": concept,
                   "window": window_label(found[(family, concept)]["window_start"],
                                          found[(family, concept)]["window_size"])
                   if (family, concept) in found else "none at this threshold",
                   "m": found.get((family, concept), {}).get("window_size"),
                   "drop": found.get((family, concept), {}).get("normalized_drop")} for family, concept in rows],
                 hide_index=True, width="stretch")

    st.subheader("One concept")
    family, concept = st.selectbox("Concept", rows, format_func=lambda key: row_label(*key), key="map_concept")
    concept_rows = only(mine, family=family, concept=concept)
    seeds = data.query(snap, queries.seed_scores, model, scorer, family, concept)
    st.plotly_chart(line_view(concept_rows, seeds, size, threshold, layers), key="line_view", config=CHART)
    starts = sorted(only(concept_rows, window_size=size)["window_start"].to_pylist())
    pick, go = st.columns([3, 1], vertical_alignment="bottom")
    start = pick.selectbox("Window", starts, format_func=lambda s: window_label(s, size), key="map_start")
    if go.button("Open gallery", key="open_gallery"):
        open_gallery(model, scorer, family, concept, size, start)


def untraceable_note(cells) -> None:
    """Name the concepts whose corruption moved the score less than the minimum gap (their rows stay blank)."""
    rows = only(cells, untraceable=True).to_pylist()
    gaps = {(r["family"], r["concept"]): r["corruption_gap"] for r in rows}
    if gaps:
        st.caption(f"Blank rows: the noise moved the score by less than {min_gap:g}, so recovery would be a ratio of "
                   "noise: " + ", ".join(f"{common.escape(row_label(*key))} ({gap:+.3f})" for key, gap in gaps.items())
                   + ". Raise --noise, or lower the minimum gap.")


def trace_view(model: str, component: str, noise: float, threshold: float) -> None:
    """Causal tracing's heat map of one component, and one concept's original / corrupted / restored images."""
    cells = queries.trace_cells(trace, model, scorer, component, noise, min_gap)
    layers, num_sites = trace_columns(model, component, cells)
    st.plotly_chart(trace_map(cells, layers, num_sites, component, threshold), key="trace_map", config=CHART)
    st.caption(TRACE_CAPTION)
    untraceable_note(cells)
    st.subheader("One concept")
    rows = list(dict.fromkeys(zip(cells["family"].to_pylist(), cells["concept"].to_pylist())))
    pick, where = st.columns([3, 1])
    family, concept = pick.selectbox("Concept", rows, format_func=lambda key: row_label(*key), key="trace_concept")
    strongest = top(cells, (family, concept), "recovery")
    site = where.selectbox("Restored site", range(num_sites), index=strongest["site"] if strongest else 0,
                           key=f"trace_site_{component}_{family}_{concept}", help="Default: the strongest site.")
    images = data.query(snap, queries.trace_gallery, model, scorer, family, concept, component, noise, site)
    for prompt in dict.fromkeys(images["prompt"].to_pylist()):
        st.markdown(f"“{common.escape(prompt)}”")
        for column, row in zip(st.columns(6), only(images, prompt=prompt).to_pylist()):
            with column:
                name = f"site {site} restored" if row["kind"] == "restored" else row["kind"]
                common.image(row["image_path"], f"{name} · seed {row['seed']} · {common.score_text(row['score'])}")


def side_by_side(model: str, mine, size: int, noise: float, threshold: float) -> None:
    """The LocoGen map at window size m above the cross-attention tracing map, on the same concept rows, with a
    per-concept count of what each method marks."""
    cells = queries.layer_cells(loc, model, scorer, size, threshold)
    traced = queries.trace_cells(trace, model, scorer, CROSS_ATTENTION, noise, min_gap)
    rows = queries.concept_order([*zip(cells["family"].to_pylist(), cells["concept"].to_pylist()),
                                  *zip(traced["family"].to_pylist(), traced["concept"].to_pylist())])
    layers, num_layers = locogen_columns(model, mine)
    minimal = queries.minimal_windows(loc, model, scorer, threshold)
    st.plotly_chart(heat_map(cells, minimal, layers, num_layers, size, threshold, rows), key="both_locogen",
                    config=CHART)
    st.caption(LOCOGEN_CAPTION)
    st.plotly_chart(trace_map(traced, layers, num_layers, CROSS_ATTENTION, threshold, rows), key="both_trace",
                    config=CHART)
    st.caption(TRACE_CAPTION)
    untraceable_note(traced)
    st.subheader(f"Cells marked ● (value ≥ {threshold:g}) and the strongest cell, per concept")
    marked_windows, marked_sites = f"LocoGen windows (m = {size}) marked", "tracing sites marked"
    st.dataframe([{"concept": row_label(*key),
                   marked_windows: count(cells, key, "normalized_drop", threshold),
                   marked_sites: count(traced, key, "recovery", threshold),
                   "LocoGen strongest window": shown(top(cells, key, "normalized_drop"), "window_start",
                                                     "normalized_drop"),
                   "tracing strongest site": shown(top(traced, key, "recovery"), "site", "recovery")} for key in rows],
                 hide_index=True, width="stretch")


def contribution_columns(model: str, cells) -> tuple[dict, int]:
    """The model's text-reading sites and how many there are."""
    layers = {i: info for i, info in data.query(snap, queries.layers, model).items() if 0 <= i < bounds.MAX_LAYERS}
    return layers, max([len(layers) and max(layers) + 1, *(s + 1 for s in cells["site"].to_pylist())])


def pick_k(model: str, column) -> int:
    """The k whose dominant sites are marked: the k of the model's top-k interventions (a choice when several)."""
    ks = sorted(set(only(top_k, model=model)["k"].to_pylist())) or [6]
    return ks[0] if len(ks) == 1 else column.selectbox("Dominant sites k", ks, key="contribution_k")


def intervention_rows(model: str, k: int, threshold: float, rows: list[tuple[str, str]]) -> list[dict]:
    """One row per concept: its k dominant sites and their top-k intervention's drop (scored by the page's scorer)."""
    found = {(r["family"], r["concept"]): r for r in only(top_k, model=model, scorer_id=scorer, k=k).to_pylist()}
    table = []
    for key in rows:
        row = found.get(key, {})
        drop = row.get("normalized_drop")
        table.append({"concept": row_label(*key), "sites fed the target": row.get("blocks"),
                      "drop": drop, f"drop ≥ {threshold:g}": None if drop is None else drop >= threshold,
                      "images": row.get("n_images"), "score": row.get("score_mean"),
                      "original": row.get("original_score"), "target": row.get("target_score")})
    return table


def contribution_view(model: str, k: int, threshold: float) -> None:
    """Attention contribution's map and each concept's top-k intervention, scored like a LocoGen window."""
    cells = queries.contribution_cells(contrib, model)
    layers, num_sites = contribution_columns(model, cells)
    rows = list(dict.fromkeys(zip(cells["family"].to_pylist(), cells["concept"].to_pylist())))
    st.plotly_chart(contribution_map(cells, layers, num_sites, k, rows), key="contribution_map", config=CHART)
    st.caption(CONTRIBUTION_CAPTION)
    st.subheader(f"Top-{k} interventions: the {k} dominant sites fed the target prompt")
    st.caption("Normalized drop (original − top-k) / (original − target), the original and target references of the "
               f"same run, scored by {scorer}; blank where the run has not intervened yet.")
    st.dataframe(intervention_rows(model, k, threshold, rows), hide_index=True, width="stretch")


def beside_contribution(model: str, mine, size: int, k: int, threshold: float) -> None:
    """The LocoGen map at window size m above the attention-contribution map, on the same concept rows and site
    columns, with each concept's strongest window, dominant sites and top-k drop."""
    cells = queries.layer_cells(loc, model, scorer, size, threshold)
    found = queries.contribution_cells(contrib, model)
    rows = queries.concept_order([*zip(cells["family"].to_pylist(), cells["concept"].to_pylist()),
                                  *zip(found["family"].to_pylist(), found["concept"].to_pylist())])
    layers, num_layers = locogen_columns(model, mine)
    minimal = queries.minimal_windows(loc, model, scorer, threshold)
    st.plotly_chart(heat_map(cells, minimal, layers, num_layers, size, threshold, rows), key="both_locogen",
                    config=CHART)
    st.caption(LOCOGEN_CAPTION)
    st.plotly_chart(contribution_map(found, layers, num_layers, k, rows), key="both_contribution", config=CHART)
    st.caption(CONTRIBUTION_CAPTION)
    interventions = {row["concept"]: row for row in intervention_rows(model, k, threshold, rows)}
    st.subheader("Per concept: LocoGen's strongest window and the dominant sites' intervention")
    st.dataframe([{"concept": row_label(*key),
                   "LocoGen strongest window": shown(top(cells, key, "normalized_drop"), "window_start",
                                                     "normalized_drop"),
                   f"top-{k} sites": interventions[row_label(*key)]["sites fed the target"],
                   f"top-{k} drop": interventions[row_label(*key)]["drop"]} for key in rows],
                 hide_index=True, width="stretch")


def count(cells, key: tuple[str, str], value: str, threshold: float) -> int:
    return sum(v is not None and v >= threshold for v in only(cells, family=key[0], concept=key[1])[value].to_pylist())


def top(cells, key: tuple[str, str], value: str) -> dict | None:
    """The concept's cell with the largest ``value``."""
    rows = [r for r in only(cells, family=key[0], concept=key[1]).to_pylist() if r[value] is not None]
    return max(rows, key=lambda r: r[value], default=None)


def shown(cell: dict | None, column: str, value: str) -> str:
    return "–" if cell is None else f"{cell[column]} ({cell[value]:.2f})"


def within_bounds(loc, trace, contrib):
    """The localization, tracing and contribution rows the page draws: windows and sites inside
    ``bounds.MAX_LAYERS`` layers (a crafted row must not make a picker or a map that wide), and the first
    ``bounds.MAX_ROWS`` concepts of each model in family order; a note says what was left out."""
    loc = loc.filter(pc.and_(pc.greater_equal(loc["window_start"], 0), pc.less_equal(
        pc.add(loc["window_start"], loc["window_size"]), bounds.MAX_LAYERS)))
    trace, contrib = (table.filter(pc.and_(pc.greater_equal(table["site"], 0), pc.less(table["site"],
                                                                                        bounds.MAX_LAYERS)))
                      for table in (trace, contrib))
    kept, dropped = set(), 0
    for table in (loc, trace, contrib):
        for model in set(table["model"].to_pylist()):
            keys = queries.concept_order(zip(*(only(table, model=model)[c].to_pylist() for c in ("family", "concept"))))
            kept |= {(model, *key) for key in keys[:bounds.MAX_ROWS]}
            dropped += max(0, len(keys) - bounds.MAX_ROWS)
    if not dropped:
        return loc, trace, contrib
    st.caption(f"Showing the first {bounds.MAX_ROWS} concepts of each model; {dropped} more are left out.")

    def first(table):
        keys = zip(*(table[c].to_pylist() for c in ("model", "family", "concept")))
        return table.filter(pa.array([key in kept for key in keys], pa.bool_()))

    return first(loc), first(trace), first(contrib)


snap = common.snapshot()
common.require_results(snap)
st.title("Layer map")
loc = data.query(snap, queries.localization_table)
trace = data.query(snap, queries.trace_table)
contrib = data.query(snap, queries.contribution_table)
top_k = data.query(snap, queries.top_k_table)
loc, trace, contrib = within_bounds(loc, trace, contrib)
models = common.bounded(sorted(set(loc["model"].to_pylist()) | set(trace["model"].to_pylist())
                               | set(contrib["model"].to_pylist())), "models")
if not models:
    st.info("The store has cases but no scored windows or traced sites yet: wait for the first work unit's scores.")
    st.stop()
method = st.radio("Method", (LOCOGEN, TRACING, CONTRIBUTION, BOTH),
                  index=0 if loc.num_rows else 1 if trace.num_rows else 2, horizontal=True,
                  key="map_method", help="LocoGen: swap the prompt in a window of cross-attention layers. Causal "
                  "tracing: corrupt the subject's embedding, restore one site. Attention contribution: how much each "
                  "site's attention output owes to the concept's tokens. Side by side: LocoGen beside another.")
left, middle, right, far = st.columns([3, 2, 2, 2])
model = left.selectbox("Model", models, key="map_model")
mine, sites, found = only(loc, model=model), only(trace, model=model), only(contrib, model=model)
beside = TRACING
if method == BOTH and found.num_rows:
    beside = middle.selectbox("Beside LocoGen", (TRACING, CONTRIBUTION), index=0 if sites.num_rows else 1,
                              key="map_beside")
other = {TRACING: sites, CONTRIBUTION: only(top_k, model=model)}
scorers = sorted(set(mine["scorer_id"].to_pylist() if method in (LOCOGEN, BOTH) else [])
                 | set(other[beside if method == BOTH else method]["scorer_id"].to_pylist()
                       if method != LOCOGEN else []))
scorer = middle.selectbox("Scorer", scorers, key="map_scorer",
                          help="Attention contribution's map needs no scorer; its top-k interventions are scored.")
mine, sites = only(mine, scorer_id=scorer), only(sites, scorer_id=scorer)
threshold = far.slider("Threshold (fraction of the gap)", 0.05, 1.0, 0.5, 0.05, key="threshold",
                       help="LocoGen: of the original→target gap; tracing: of the corrupted→original gap.")
min_gap = far.number_input("Tracing: minimum corruption gap", -1.0, 1.0, MIN_CORRUPTION_GAP, 0.01, key="min_gap",
                           disabled=method in (LOCOGEN, CONTRIBUTION), help="Concepts whose corrupted score is not at "
                           "least this below the original are left blank: the noise did not remove the attribute. -1 "
                           "shows all.")
# Widget state dies with the page; Run an edit pre-fills its form from these.
st.session_state.update(chosen_model=model, chosen_threshold=threshold)
second = only(sites, component=CROSS_ATTENTION) if beside == TRACING else found
needs = {LOCOGEN: [mine], TRACING: [sites], CONTRIBUTION: [found], BOTH: [mine, second]}[method]
if not all(table.num_rows for table in needs):
    if method == CONTRIBUTION or (method == BOTH and mine.num_rows and beside == CONTRIBUTION):
        st.info(f"{model} has no attention contribution: run `python -m compute contribution CONFIG`.")
        st.stop()
    missing = "LocoGen sweep" if not mine.num_rows else "causal tracing" + (" of cross-attention" if sites else "")
    st.info(f"{common.escape(model)} has no {missing}{f' scored by {common.escape(scorer)}' if scorer else ''}: run "
            f"`python -m compute {'sweep' if not mine.num_rows else 'trace'} CONFIG`.")
    st.stop()
if method == CONTRIBUTION:
    contribution_view(model, pick_k(model, right), threshold)
elif method == TRACING:
    traced = sorted(set(sites["component"].to_pylist()), key=lambda c: (COMPONENTS + (c,)).index(c))
    component = right.selectbox("Component", traced, key="trace_component")
    trace_view(model, component, pick_noise(sites, component, right), threshold)
else:
    sizes = sorted(set(mine["window_size"].to_pylist()))
    size = right.selectbox("Window size m", sizes, index=sizes.index(1) if method == BOTH and 1 in sizes else 0,
                           key="map_size")
    if method == LOCOGEN:
        locogen_view(model, mine, size, threshold)
    elif beside == CONTRIBUTION:
        beside_contribution(model, mine, size, pick_k(model, right), threshold)
    else:
        side_by_side(model, mine, size, pick_noise(sites, CROSS_ATTENTION, right), threshold)
