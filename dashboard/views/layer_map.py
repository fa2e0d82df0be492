"""Layer map: where each concept localizes, per run — LocoGen's normalized drop per window (with its interval and
verdict), causal tracing's recovery per site, attention contribution per site, or LocoGen beside one of the others on
the same rows, columns and 0–1 colour scale. The controls and the URL make a ``map_view.MapState``; the views of
``dashboard.map_view`` draw from it."""

import streamlit as st

from locolab.contract import bounds, queries
from locolab.contract.names import COMPONENTS, CROSS_ATTENTION, TRACE
from locolab.contract.summaries import DEFAULT_LEVEL, MIN_CORRUPTION_GAP
from locolab.dashboard import common, data, url_state
from locolab.dashboard.map_view import (
    BOTH,
    CONTRIBUTION,
    LEVELS,
    LOCOGEN,
    PAGE,
    TRACING,
    VIEWS,
    MapState,
    beside_contribution,
    contribution_view,
    locogen_view,
    only,
    pick_k,
    pick_noise,
    pick_run,
    side_by_side,
    trace_view,
    within_bounds,
)

snap = common.snapshot()
common.require_results(snap)
# The title, the method and one row of controls, so that the map starts high on a 1280×800 screen; the run's
# settings are under the map.
heading, methods = st.columns([1, 3], vertical_alignment="bottom")
heading.title("Layer map")
wanted = url_state.incoming(PAGE)  # a shared link, Back or Forward: the view to restore
view: dict = {}  # what this run shows, published to the URL once at the end (or where it stops)
sweeps = data.query(snap, queries.run_list)
traces = data.query(snap, queries.run_list, TRACE)
trace = data.query(snap, queries.trace_table)
contrib = data.query(snap, queries.contribution_table)
top_k = data.query(snap, queries.top_k_table)
models = common.bounded(sorted(set(sweeps["model"].to_pylist()) | set(traces["model"].to_pylist())
                               | set(contrib["model"].to_pylist())), "models")
if not models:
    st.info("The store has cases but no scored windows or traced sites yet: wait for the first work unit's scores.")
    st.stop()
url_state.default("map_method", LOCOGEN if sweeps.num_rows else TRACING if traces.num_rows else CONTRIBUTION)
if wanted.get("view") in VIEWS:
    st.session_state["map_method"] = VIEWS[wanted["view"]]
method = methods.radio("Method", (LOCOGEN, TRACING, CONTRIBUTION, BOTH), horizontal=True, key="map_method",
                  help="LocoGen: swap the prompt in a window of cross-attention layers. Causal "
                  "tracing: corrupt the subject's embedding, restore one site. Attention contribution: how much each "
                  "site's attention output owes to the concept's tokens. Side by side: LocoGen beside another.")
left, run_column, right, far, middle, farther = st.columns([2, 4, 1.4, 2, 2, 1.3])
# Side by side's own choices on a second row.
beside_column, trace_column, gap_column = st.columns(3) if method == BOTH else (None, run_column, farther)
url_state.unknown(wanted, "model", models, "the model")
url_state.seed("map_model", wanted.get("model"), models)
model = left.selectbox("Model", models, key="map_model")
view.update(view=next(name for name, shown in VIEWS.items() if shown == method), model=model)
beside = TRACING
if method == BOTH and only(contrib, model=model).num_rows:
    url_state.default("map_beside", TRACING if model in traces["model"].to_pylist() else CONTRIBUTION)
    if wanted.get("beside") in VIEWS:
        url_state.seed("map_beside", VIEWS[wanted["beside"]], (TRACING, CONTRIBUTION))
    beside = beside_column.selectbox("Beside LocoGen", (TRACING, CONTRIBUTION), key="map_beside")
    view["beside"] = next(name for name, shown in VIEWS.items() if shown == beside)
run_id = (pick_run(sweeps, model, wanted, "LocoGen", run_column, "map_run", "Run") if method in (LOCOGEN, BOTH)
          else None)
trace_run = (pick_run(traces, model, wanted, "trace", trace_column, "trace_run", "Trace run")
             if method == TRACING or (method == BOTH and beside == TRACING) else None)
url_state.default("threshold", 0.5)
url_state.seed_float("threshold", wanted.get("threshold"), 0.05, 1.0, 0.05)
threshold = far.slider("Threshold", 0.05, 1.0, step=0.05, key="threshold",
                       help="A fraction of the gap. LocoGen: of the original→reference gap, judged by a paired test; "
                            "tracing: of the corrupted→original gap.")
url_state.default("map_level", DEFAULT_LEVEL)
url_state.seed("map_level", wanted.get("level"), LEVELS)
level = (farther.selectbox("Interval level", LEVELS, key="map_level", format_func=lambda value: f"{value:.0%}",
                           help="Coverage of the drop's and the gap's bootstrap intervals (docs/statistics.md).")
         if method != TRACING else st.session_state["map_level"])
min_gap = (gap_column.number_input("Minimum corruption gap", -1.0, 1.0, MIN_CORRUPTION_GAP, 0.01, key="min_gap",
                                help="Causal tracing: concepts whose corrupted score is not at least this below the "
                                "original are left blank: the noise did not remove the attribute. -1 shows all.")
           if trace_run else MIN_CORRUPTION_GAP)
view.update(run=run_id, trace_run=trace_run, threshold=threshold, level=level if method != TRACING else None)
loc = data.query(snap, queries.localization_table, run_id, level) if run_id else None
loc, trace, contrib, dropped = within_bounds(loc, trace, contrib)
if dropped:
    st.caption(f"Showing the first {bounds.MAX_ROWS} concepts of each model; {dropped} more are left out.")
found = only(contrib, model=model)
sites = only(trace, run_id=trace_run) if trace_run else None
other = {TRACING: sites, CONTRIBUTION: only(top_k, model=model)}.get(beside if method == BOTH else method)
scorers = sorted(set(loc["scorer_id"].to_pylist() if loc is not None else [])
                 | set(other["scorer_id"].to_pylist() if other is not None and method != LOCOGEN else []))
# A picker left without options (a method with no data) keeps no value: choose again once there are scorers.
if not url_state.seed("map_scorer", wanted.get("scorer"), scorers) and scorers \
        and st.session_state.get("map_scorer") not in scorers:
    st.session_state["map_scorer"] = scorers[0]
scorer = middle.selectbox("Scorer", scorers, key="map_scorer",
                          help="Attention contribution's map needs no scorer; its top-k interventions are scored."
                          ) if scorers else None
view["scorer"] = scorer
state = MapState(model=model, method=method, beside=beside, run_id=run_id, trace_run=trace_run, scorer=scorer,
                 threshold=threshold, level=level, min_gap=min_gap,
                 run={r["run_id"]: r for r in sweeps.to_pylist()}.get(run_id),
                 traced={r["run_id"]: r for r in traces.to_pylist()}.get(trace_run),
                 wanted_concept=url_state.wanted_concept(wanted), wanted_window=wanted.get("window"))
mine = only(loc, scorer_id=scorer) if loc is not None else None
sites = only(sites, scorer_id=scorer) if sites is not None else None
# Widget state dies with the page; Run an edit pre-fills its form from these.
st.session_state.update(chosen_model=model, chosen_threshold=threshold, chosen_run=run_id)
second = (only(sites, component=CROSS_ATTENTION) if sites is not None else None) if beside == TRACING else found
needs = {LOCOGEN: [mine], TRACING: [sites], CONTRIBUTION: [found], BOTH: [mine, second]}[method]
if not all(table is not None and table.num_rows for table in needs):
    no_sweep = method in (LOCOGEN, BOTH) and (mine is None or not mine.num_rows)
    if not no_sweep and (method == CONTRIBUTION or beside == CONTRIBUTION and method == BOTH):
        st.info(f"{model} has no attention contribution: run `python -m compute contribution CONFIG`.")
    else:
        missing = ("LocoGen sweep" if no_sweep else
                   "causal tracing" + (" of cross-attention" if sites is not None and sites.num_rows else ""))
        st.info(f"{common.escape(model)} has no {missing}{f' scored by {common.escape(scorer)}' if scorer else ''}: "
                f"run `python -m compute {'sweep' if no_sweep else 'trace'} CONFIG`.")
    url_state.publish(PAGE, view)
    st.stop()
if method == CONTRIBUTION:
    contribution_view(snap, state, contrib, top_k, pick_k(top_k, model, right))
elif method == TRACING:
    traced = sorted(set(sites["component"].to_pylist()), key=lambda c: (COMPONENTS + (c,)).index(c))
    url_state.seed("trace_component", wanted.get("component"), traced)
    component = right.selectbox("Component", traced, key="trace_component")
    view["component"] = component
    view.update(trace_view(snap, state, trace, component, pick_noise(sites, component, right)))
else:
    sizes = sorted(set(mine["window_size"].to_pylist()))
    if st.session_state.get("map_size") not in sizes or st.session_state.get("map_size_for") != method:
        # Side by side compares single layers with single sites: m = 1 when there is one.
        st.session_state.update(map_size=1 if method == BOTH and 1 in sizes else sizes[0], map_size_for=method)
    url_state.seed("map_size", wanted.get("m"), sizes)
    size = right.selectbox("Window size m", sizes, key="map_size")
    view["m"] = size
    if method == LOCOGEN:
        view.update(locogen_view(snap, state, loc, mine, size))
    elif beside == CONTRIBUTION:
        beside_contribution(snap, state, loc, contrib, top_k, mine, size, pick_k(top_k, model, right))
    else:
        side_by_side(snap, state, loc, trace, mine, size, pick_noise(sites, CROSS_ATTENTION, right))
url_state.publish(PAGE, view)
