"""Layer map: where each concept localizes, per run — LocoGen's normalized drop per window (with its interval and
verdict), causal tracing's recovery per site, attention contribution per site, or LocoGen beside one of the others on
the same rows, columns and 0–1 colour scale."""

import functools
import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import streamlit as st

from compute.models.registry import MODELS
from contract import bounds
from contract.names import COMPONENTS, CROSS_ATTENTION, TARGET, TRACE
from contract.summaries import DEFAULT_LEVEL, MIN_CORRUPTION_GAP, MIN_REFERENCE_GAP, concepts_of, config_of, judge
from dashboard import common, data, downloads, exports, queries, url_state
from dashboard.figures import contribution_map, heat_map, line_view, row_label, trace_map, window_label

PAGE, GALLERY = "layer_map", "views/gallery.py"
LOCOGEN, TRACING, CONTRIBUTION, BOTH = "LocoGen", "Causal tracing", "Attention contribution", "Side by side"
VIEWS = {"locogen": LOCOGEN, "tracing": TRACING, "contribution": CONTRIBUTION, "both": BOTH}  # the URL's names
LOCOGEN_CAPTION = ("**LocoGen** colour: normalized drop (original − window) / (original − reference) of the window of "
                   "m layers starting at that column, when those layers get the target prompt: 1 = the attribute is "
                   "gone as fully as in the reference, 0 = no effect. The reference is the target prompt, or on models "
                   "whose text also enters outside cross-attention (SD-XL, IF) the all-layers swap. ● = a paired "
                   "test over prompt × seed units shows the window removes more than the threshold, adjusted over the "
                   "concept's windows (Holm); hover: the bootstrap interval, p-values and units; grey rows: the "
                   "concept is not measurable (too "
                   "few prompt × seed units, or an original − reference gap not clearly above "
                   f"{MIN_REFERENCE_GAP:g}). docs/statistics.md explains every number.")
LEVELS = (0.8, 0.9, 0.95, 0.99)
TRACE_CAPTION = ("**Causal tracing** colour: recovery (restored − corrupted) / (original − corrupted): with the "
                 "subject's word embedding corrupted by noise, restoring that one site from the clean run brings the "
                 "attribute back fully (1) or not at all (0).")
CONTRIBUTION_CAPTION = ("**Attention contribution** colour: the site's mean contribution of the concept's tokens "
                        "(the norm of their share of the attention output through its output projection, averaged "
                        "over image tokens, steps, prompts and seeds), relative to the concept's dominant site. ● "
                        "marks the k dominant sites, which the top-k intervention feeds the target prompt. It pools "
                        "every attention-contribution run of the model in the root (no run picker yet).")
CONTRIBUTION_RUNS = "every attention-contribution run, pooled"  # what the exported contribution figures are over
CHART = {"displaylogo": False}


def open_gallery(model, scorer, family, concept, size, start=None) -> None:
    """Go to the Gallery page at that window: the choice travels in the URL (a new history entry, so Back returns
    here, to the view this page published last)."""
    st.session_state["map_clicks"] = st.session_state.get("map_clicks", 0) + 1
    # Exactly the parameters the Gallery publishes for this view: else its first run would add a history entry.
    st.switch_page(GALLERY, query_params=url_state.link({
        "model": model, **url_state.concept_params((family, concept)), "scorer": scorer, "images": "windows",
        "run": run_id, "level": level, "threshold": threshold, "m": size, "window": start}))


def stop() -> None:
    """Stop the page, with the view drawn so far in the URL."""
    url_state.publish(PAGE, view)
    st.stop()


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


def settings_rows(run: dict) -> list[tuple[str, str]]:
    """The chosen run's settings, (name, value) in display order: what every number on the page is about."""
    search = config_of(run).get("window_search")

    def listed(values):
        return ", ".join(str(v) for v in values) if values else "unknown"

    sizes = listed(run["window_sizes"]) + (f" (search up to {search['max_size']})" if search else "")
    reference = run["reference"][0]
    rows = [("run", run["run_id"]), ("status", run["status"]), ("created", common.when(run["created_at"])),
            ("steps", listed(run["steps"])), ("guidance", listed(run["guidance"])),
            ("size", f"{listed(run['width'])}×{listed(run['height'])}"), ("scheduler", listed(run["scheduler"])),
            ("scorer", listed(run["scorer_id"])), ("seeds", listed(run["seeds"])),
            ("prompts", run["prompts"]), ("window sizes", sizes),
            ("normalized by", "target prompt" if reference == TARGET else "all-layers swap")]
    return [(name, str(value)) for name, value in rows]


def settings_line(run: dict) -> None:
    """The run's settings in one wrapped line above the map (a side panel cuts its labels on a narrow screen)."""
    st.markdown(" · ".join(f"**{name}** {common.escape(value)}" for name, value in settings_rows(run)))


def about(*, concept: tuple[str, str] | None = None, seeds=None) -> str:
    """What a figure shows, for its title: model, run, concept, scorer and seeds."""
    if seeds is None and run is not None:
        seeds = run["seeds"]
    parts = [model, f"run {run_id}" if run_id else None, row_label(*concept) if concept else None,
             f"scorer {scorer}" if scorer else None,
             f"seeds {', '.join(str(s) for s in seeds)}" if seeds else None]
    return " · ".join(p for p in parts if p)


def verdict_table(loc_run, threshold: float) -> list[dict]:
    """Per concept: the verdict with the point, the interval and the rule's inputs (gap, its interval)."""
    rows = []
    for c in concepts_of(judge(loc_run, threshold)).to_pylist():
        window = (window_label(c["window_start"], c["window_size"]) if c["window_start"] is not None else "–")
        rows.append({"family": c["family"], "concept": c["concept"], "localizes": c["localizes"],
                     "window": window if c["localizes"] else "none", "m": c["window_size"] if c["localizes"] else None,
                     "drop [interval]": _interval(c["normalized_drop"], c["drop_low"], c["drop_high"]),
                     "gap [interval]": _interval(c["gap"], c["gap_low"], c["gap_high"]), "units": c["n_units"],
                     "prompts": c["n_prompts"], "adjusted over": c["adjusted_over"], "selection": c["selection"],
                     "verdict": c["verdict"]})
    return rows


def _interval(point, low, high) -> str:
    """'0.750 [0.000, 1.000]' (the CSV below the table keeps the numbers as numbers)."""
    return "–" if point is None else f"{point:.3f} [{low:.3f}, {high:.3f}]" if low is not None else f"{point:.3f}"


def locogen_view(model: str, mine, size: int, threshold: float) -> None:
    """LocoGen's heat map (click a cell for its images) next to the run's settings, each concept's verdict, and one
    concept's line view."""
    cells = queries.layer_cells(loc, scorer, size, threshold)
    minimal = queries.minimal_windows(loc, scorer, threshold)
    layers, num_layers = locogen_columns(model, mine)
    chart_key = f"heat_map_{st.session_state.get('map_clicks', 0)}"
    settings_line(run)
    figure = heat_map(cells, minimal, layers, num_layers, size, threshold, about=about())
    st.plotly_chart(figure, key=chart_key, on_select=functools.partial(on_cell_click, chart_key),
                    selection_mode="points", config=CHART)
    downloads.figure(figure, figure_title("LocoGen heat map", model, m=size), f"{run_id}-heat-map-m{size}",
                     "heat_map_download")
    st.caption(LOCOGEN_CAPTION + " Click a cell to open its images.")
    unmeasurable_note(cells)
    rows = list(dict.fromkeys(zip(cells["family"].to_pylist(), cells["concept"].to_pylist())))
    clicked = st.session_state.pop("map_clicked", None)
    if clicked and clicked[0] < len(rows):
        open_gallery(model, scorer, *rows[clicked[0]], size, clicked[1])
    st.subheader(f"Minimal localizing windows (paired test: drop > {threshold:g} at error {(1 - level) / 2:g}, "
                 "Holm-adjusted over each concept's windows)")
    order = {key: i for i, key in enumerate(rows)}
    verdicts = sorted(verdict_table(mine, threshold), key=lambda r: order.get((r["family"], r["concept"]), len(order)))
    common.table(verdicts, "map_verdicts", {"verdict": st.column_config.Column(width="large")})
    downloads.table(verdicts, f"{run_id}-minimal-windows", "verdicts_csv", "Download this table (CSV)")
    buffer = io.BytesIO()
    pcsv.write_csv(judge(mine, threshold), buffer)
    st.download_button("Download every window (CSV: point, interval, verdict)", buffer.getvalue(),
                       file_name=f"{run_id}-localization.csv", mime="text/csv", key="map_csv")

    st.subheader("One concept")
    if wanted_concept in rows:
        st.session_state["map_concept"] = wanted_concept
    family, concept = st.selectbox("Concept", rows, format_func=lambda key: row_label(*key), key="map_concept")
    view.update(url_state.concept_params((family, concept)))
    concept_rows = only(judge(mine, threshold), family=family, concept=concept)
    seeds = data.query(snap, queries.seed_scores, run_id, scorer, family, concept)
    figure = line_view(concept_rows, seeds, size, threshold, layers, about(concept=(family, concept)))
    st.plotly_chart(figure, key="line_view", config=CHART)
    downloads.figure(figure, figure_title("LocoGen score per window", model, row_label(family, concept), m=size),
                     f"{run_id}-{family}-{concept}-m{size}", "line_view_download")
    starts = sorted(only(concept_rows, window_size=size)["window_start"].to_pylist())
    default = first_window(cells, minimal, (family, concept), size, starts)
    # The selector follows the concept, m and threshold (its default is their minimal window), unless the URL names one.
    if st.session_state.get("map_start_for") != (family, concept, size, default) or \
            st.session_state.get("map_start") not in starts:
        st.session_state.update(map_start=default, map_start_for=(family, concept, size, default))
    url_state.seed("map_start", wanted.get("window"), starts)
    pick, go = st.columns([3, 1], vertical_alignment="bottom")
    start = pick.selectbox("Window", starts, format_func=lambda s: window_label(s, size), key="map_start",
                           help="Default: the concept's minimal localizing window at this m, else its largest drop.")
    view["window"] = start
    if go.button("Open gallery", key="open_gallery"):
        open_gallery(model, scorer, family, concept, size, start)


def figure_title(what: str, model: str, concept: str | None = None, run: str | None = "", **more) -> str:
    """The self-describing title of an exported figure: ``what``, the model, the run (default: the LocoGen run), the
    concept, the scorer, the run's seeds and the page's threshold (and interval level for LocoGen) with ``more``."""
    locogen = run == ""
    shown = runs_by_id.get(run_id) if locogen else traces_by_id.get(run)
    return exports.title_text(what, model=model, run=run_id if locogen else run, concept=concept, scorer=scorer,
                              seeds=(shown or {}).get("seeds"), **more, threshold=f"{threshold:g}",
                              interval=f"{level:.0%}" if locogen else None)


def first_window(cells, minimal, key: tuple[str, str], size: int, starts: list[int]) -> int | None:
    """The window the one-concept selector starts on: the concept's minimal localizing window when it has this size,
    else its window of largest drop at this size, else the first."""
    found = [w["window_start"] for w in only(minimal, family=key[0], concept=key[1], window_size=size).to_pylist()]
    strongest = top(cells, key, "normalized_drop")
    start = found[0] if found else strongest["window_start"] if strongest else None
    return start if start in starts else (starts[0] if starts else None)


def unmeasurable_note(cells) -> None:
    """Name the grey rows' concepts with the reason their data cannot speak."""
    reasons = {(r["family"], r["concept"]): r["not_measurable"] for r in only(cells, measurable=False).to_pylist()}
    if reasons:
        st.caption("Grey rows, not measurable: " + "; ".join(
            f"{common.escape(row_label(*key))} ({common.escape(reason)})" for key, reason in reasons.items()) + ".")


def untraceable_note(cells) -> None:
    """Name the concepts whose corruption moved the score less than the minimum gap (their rows stay blank)."""
    rows = only(cells, untraceable=True).to_pylist()
    gaps = {(r["family"], r["concept"]): r["corruption_gap"] for r in rows}
    if gaps:
        st.caption(f"Blank rows: the noise moved the score by less than {min_gap:g}, so recovery would be a ratio of "
                   "noise: " + ", ".join(f"{common.escape(row_label(*key))} ({gap:+.3f})" for key, gap in gaps.items())
                   + ". Raise --noise, or lower the minimum gap.")


def partial_note(cells, what: str) -> None:
    """Say so when the map's run has not finished: its cells may rest on fewer units than the run will have."""
    if "partial" in cells.column_names and any(cells["partial"].to_pylist()):
        st.warning(f"Partial run: this {what} run has not finished, so some sites rest on fewer units than it will "
                   "have (the hover gives each site's units and interval).")


def trace_view(model: str, component: str, noise: float, threshold: float) -> None:
    """Causal tracing's heat map of one component, and one concept's original / corrupted / restored images."""
    cells = queries.trace_cells(trace, trace_run, scorer, component, noise, min_gap)
    layers, num_sites = trace_columns(model, component, cells)
    figure = trace_map(cells, layers, num_sites, component, threshold, about=about())
    st.plotly_chart(figure, key="trace_map", config=CHART)
    downloads.figure(figure, figure_title("Causal tracing map", model, run=trace_run, component=component, noise=noise),
                     f"{trace_run}-trace-{component}", "trace_map_download")
    st.caption(TRACE_CAPTION)
    untraceable_note(cells)
    partial_note(cells, "trace")
    st.subheader("One concept")
    rows = list(dict.fromkeys(zip(cells["family"].to_pylist(), cells["concept"].to_pylist())))
    pick, where = st.columns([3, 1])
    if wanted_concept in rows:
        st.session_state["trace_concept"] = wanted_concept
    family, concept = pick.selectbox("Concept", rows, format_func=lambda key: row_label(*key), key="trace_concept")
    view.update(url_state.concept_params((family, concept)))
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


def shared_label(key: tuple[str, str], cells, traced=None) -> str:
    """One row label for both maps of Side by side (the same labels keep their columns aligned), saying what either
    method cannot speak to."""
    notes = []
    if any(not r["measurable"] for r in only(cells, family=key[0], concept=key[1]).to_pylist()):
        notes.append("LocoGen: not measurable")
    if traced is not None and any(r["untraceable"] for r in only(traced, family=key[0], concept=key[1]).to_pylist()):
        notes.append("tracing: untraceable")
    return row_label(*key) + (f" ({'; '.join(notes)})" if notes else "")


def side_by_side(model: str, mine, size: int, noise: float, threshold: float) -> None:
    """The LocoGen map at window size m above the cross-attention tracing map, on the same concept rows, with a
    per-concept count of what each method marks."""
    cells = queries.layer_cells(loc, scorer, size, threshold)
    traced = queries.trace_cells(trace, trace_run, scorer, CROSS_ATTENTION, noise, min_gap)
    rows = queries.concept_order([*zip(cells["family"].to_pylist(), cells["concept"].to_pylist()),
                                  *zip(traced["family"].to_pylist(), traced["concept"].to_pylist())])
    layers, num_layers = locogen_columns(model, mine)
    minimal = queries.minimal_windows(loc, scorer, threshold)
    labels = {key: shared_label(key, cells, traced) for key in rows}
    figure = heat_map(cells, minimal, layers, num_layers, size, threshold, rows, labels, about())
    st.plotly_chart(figure, key="both_locogen", config=CHART)
    downloads.figure(figure, figure_title("LocoGen heat map", model, m=size), f"{run_id}-heat-map-m{size}",
                     "both_locogen_download")
    st.caption(LOCOGEN_CAPTION)
    figure = trace_map(traced, layers, num_layers, CROSS_ATTENTION, threshold, rows, labels,
                       f"{model} · trace run {trace_run} · scorer {scorer}")
    st.plotly_chart(figure, key="both_trace", config=CHART)
    downloads.figure(figure, figure_title("Causal tracing map", model, run=trace_run, component=CROSS_ATTENTION,
                                          noise=noise), f"{trace_run}-trace", "both_trace_download")
    st.caption(TRACE_CAPTION)
    untraceable_note(traced)
    st.subheader(f"Cells marked ● (value ≥ {threshold:g}) and the strongest cell, per concept")
    marked_windows, marked_sites = f"LocoGen windows (m = {size}) marked", "tracing sites marked"
    common.table([{"concept": row_label(*key),
                   marked_windows: count(cells, key, "normalized_drop", threshold),
                   marked_sites: count(traced, key, "recovery", threshold),
                   "LocoGen strongest window": shown(top(cells, key, "normalized_drop"), "window_start",
                                                     "normalized_drop"),
                   "tracing strongest site": shown(top(traced, key, "recovery"), "site", "recovery")} for key in rows],
                 "map_marked")


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
    figure = contribution_map(cells, layers, num_sites, k, rows, about=model)
    st.plotly_chart(figure, key="contribution_map", config=CHART)
    downloads.figure(figure, figure_title("Attention contribution map", model, run=CONTRIBUTION_RUNS, k=k),
                     f"{model}-contribution", "contribution_map_download")
    st.caption(CONTRIBUTION_CAPTION)
    partial_note(cells, "attention-contribution")
    st.subheader(f"Top-{k} interventions: the {k} dominant sites fed the target prompt")
    st.caption("Normalized drop (original − top-k) / (original − target), the original and target references of the "
               f"same run, scored by {scorer}; blank where the run has not intervened yet.")
    common.table(intervention_rows(model, k, threshold, rows), "map_interventions")


def beside_contribution(model: str, mine, size: int, k: int, threshold: float) -> None:
    """The LocoGen map at window size m above the attention-contribution map, on the same concept rows and site
    columns, with each concept's strongest window, dominant sites and top-k drop."""
    cells = queries.layer_cells(loc, scorer, size, threshold)
    found = queries.contribution_cells(contrib, model)
    rows = queries.concept_order([*zip(cells["family"].to_pylist(), cells["concept"].to_pylist()),
                                  *zip(found["family"].to_pylist(), found["concept"].to_pylist())])
    layers, num_layers = locogen_columns(model, mine)
    minimal = queries.minimal_windows(loc, scorer, threshold)
    # One label per row for both maps, so their columns line up.
    labels = {key: shared_label(key, cells) for key in rows}
    figure = heat_map(cells, minimal, layers, num_layers, size, threshold, rows, labels, about())
    st.plotly_chart(figure, key="both_locogen", config=CHART)
    downloads.figure(figure, figure_title("LocoGen heat map", model, m=size), f"{run_id}-heat-map-m{size}",
                     "both_locogen_download")
    st.caption(LOCOGEN_CAPTION)
    figure = contribution_map(found, layers, num_layers, k, rows, labels, model)
    st.plotly_chart(figure, key="both_contribution", config=CHART)
    downloads.figure(figure, figure_title("Attention contribution map", model, run=CONTRIBUTION_RUNS, k=k),
                     f"{model}-contribution", "both_contribution_download")
    st.caption(CONTRIBUTION_CAPTION)
    interventions = {row["concept"]: row for row in intervention_rows(model, k, threshold, rows)}
    st.subheader("Per concept: LocoGen's strongest window and the dominant sites' intervention")
    common.table([{"concept": row_label(*key),
                   "LocoGen strongest window": shown(top(cells, key, "normalized_drop"), "window_start",
                                                     "normalized_drop"),
                   f"top-{k} sites": interventions[row_label(*key)]["sites fed the target"],
                   f"top-{k} drop": interventions[row_label(*key)]["drop"]} for key in rows],
                 "map_beside_table")


def count(cells, key: tuple[str, str], value: str, threshold: float) -> int:
    return sum(v is not None and v >= threshold for v in only(cells, family=key[0], concept=key[1])[value].to_pylist())


def top(cells, key: tuple[str, str], value: str) -> dict | None:
    """The concept's cell with the largest ``value``."""
    rows = [r for r in only(cells, family=key[0], concept=key[1]).to_pylist() if r[value] is not None]
    return max(rows, key=lambda r: r[value], default=None)


def shown(cell: dict | None, column: str, value: str) -> str:
    return "–" if cell is None else f"{cell[column]} ({cell[value]:.2f})"


def within_bounds(loc, trace, contrib):
    """The localization (one run's, or None), tracing and contribution rows the page draws: windows and sites inside
    ``bounds.MAX_LAYERS`` layers (a crafted row must not make a picker or a map that wide), and the first
    ``bounds.MAX_ROWS`` concepts of each model in family order; a note says what was left out."""
    if loc is not None:
        loc = loc.filter(pc.and_(pc.greater_equal(loc["window_start"], 0), pc.less_equal(
            pc.add(loc["window_start"], loc["window_size"]), bounds.MAX_LAYERS)))
    trace, contrib = (table.filter(pc.and_(pc.greater_equal(table["site"], 0), pc.less(table["site"],
                                                                                        bounds.MAX_LAYERS)))
                      for table in (trace, contrib))
    kept, dropped = set(), 0
    for table in (t for t in (loc, trace, contrib) if t is not None):
        for model in set(table["model"].to_pylist()):
            keys = queries.concept_order(zip(*(only(table, model=model)[c].to_pylist() for c in ("family", "concept"))))
            kept |= {(model, *key) for key in keys[:bounds.MAX_ROWS]}
            dropped += max(0, len(keys) - bounds.MAX_ROWS)
    if not dropped:
        return loc, trace, contrib
    st.caption(f"Showing the first {bounds.MAX_ROWS} concepts of each model; {dropped} more are left out.")

    def first(table):
        if table is None:
            return None
        keys = zip(*(table[c].to_pylist() for c in ("model", "family", "concept")))
        return table.filter(pa.array([key in kept for key in keys], pa.bool_()))

    return first(loc), first(trace), first(contrib)


def run_label(runs: dict[str, dict], run_id: str) -> str:
    run = runs[run_id]
    return f"{run['config_name'] or run_id} · {common.when(run['created_at'])} · {run['status']} · {run_id}"


def pick_run(runs_table, method: str, column, key: str, label: str) -> str | None:
    """A picker of the model's runs of ``method``, newest finished first by default (reset when the model changes)."""
    runs = {r["run_id"]: r for r in runs_table.to_pylist() if r["model"] == model}
    if not runs:
        return None
    default = queries.default_run(runs_table, model)
    options = common.bounded(list(runs), "runs")
    options = options if default in options else [default, *options[:-1]]
    url_state.default(f"{key}_{model}", default)
    url_state.seed(f"{key}_{model}", wanted.get("run" if key == "map_run" else key), options)
    return column.selectbox(label, options, key=f"{key}_{model}",
                            format_func=functools.partial(run_label, runs),
                            help=f"A map summarizes one {method} run (its settings on the right). Default: the "
                                 "newest run whose shards all finished.")


snap = common.snapshot()
common.require_results(snap)
st.title("Layer map")
wanted = url_state.incoming(PAGE)  # a shared link, Back or Forward: the view to restore
wanted_concept = url_state.wanted_concept(wanted)
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
method = st.radio("Method", (LOCOGEN, TRACING, CONTRIBUTION, BOTH), horizontal=True, key="map_method",
                  help="LocoGen: swap the prompt in a window of cross-attention layers. Causal "
                  "tracing: corrupt the subject's embedding, restore one site. Attention contribution: how much each "
                  "site's attention output owes to the concept's tokens. Side by side: LocoGen beside another.")
# One row of controls, so that the map starts above the fold of a 1280×800 screen.
left, middle, right, far, farther = st.columns([3, 2, 2, 2, 2])
url_state.seed("map_model", wanted.get("model"), models)
model = left.selectbox("Model", models, key="map_model")
view.update(view=next(name for name, shown in VIEWS.items() if shown == method), model=model)
found = only(contrib, model=model)
beside = TRACING
if method == BOTH and found.num_rows:
    traced_model = model in traces["model"].to_pylist()
    url_state.default("map_beside", TRACING if traced_model else CONTRIBUTION)
    if wanted.get("beside") in VIEWS:
        url_state.seed("map_beside", VIEWS[wanted["beside"]], (TRACING, CONTRIBUTION))
    beside = middle.selectbox("Beside LocoGen", (TRACING, CONTRIBUTION), key="map_beside")
    view["beside"] = next(name for name, shown in VIEWS.items() if shown == beside)
run_column, trace_column = st.columns(2)
run_id = pick_run(sweeps, "LocoGen", run_column, "map_run", "Run") if method in (LOCOGEN, BOTH) else None
trace_run = (pick_run(traces, "trace", trace_column, "trace_run", "Trace run")
             if method == TRACING or (method == BOTH and beside == TRACING) else None)
url_state.default("threshold", 0.5)
url_state.seed_float("threshold", wanted.get("threshold"), 0.05, 1.0, 0.05)
threshold = far.slider("Threshold (fraction of the gap)", 0.05, 1.0, step=0.05, key="threshold",
                       help="LocoGen: of the original→reference gap, judged by a paired test; tracing: of the "
                            "corrupted→original gap.")
url_state.default("map_level", DEFAULT_LEVEL)
url_state.seed("map_level", wanted.get("level"), LEVELS)
level = (farther.selectbox("Interval level", LEVELS, key="map_level", format_func=lambda value: f"{value:.0%}",
                           help="Coverage of the drop's and the gap's bootstrap intervals (docs/statistics.md).")
         if method != TRACING else st.session_state["map_level"])
min_gap = (farther.number_input("Minimum corruption gap", -1.0, 1.0, MIN_CORRUPTION_GAP, 0.01, key="min_gap",
                                help="Causal tracing: concepts whose corrupted score is not at least this below the "
                                "original are left blank: the noise did not remove the attribute. -1 shows all.")
           if trace_run else MIN_CORRUPTION_GAP)
view.update(run=run_id, trace_run=trace_run, threshold=threshold, level=level if method != TRACING else None)
runs_by_id = {r["run_id"]: r for r in sweeps.to_pylist()}
traces_by_id = {r["run_id"]: r for r in traces.to_pylist()}
run = runs_by_id.get(run_id)
loc = data.query(snap, queries.localization_table, run_id, level) if run_id else None
loc, trace, contrib = within_bounds(loc, trace, contrib)
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
        stop()
    missing = ("LocoGen sweep" if no_sweep else
               "causal tracing" + (" of cross-attention" if sites is not None and sites.num_rows else ""))
    st.info(f"{common.escape(model)} has no {missing}{f' scored by {common.escape(scorer)}' if scorer else ''}: run "
            f"`python -m compute {'sweep' if no_sweep else 'trace'} CONFIG`.")
    stop()
if method == CONTRIBUTION:
    contribution_view(model, pick_k(model, right), threshold)
elif method == TRACING:
    traced = sorted(set(sites["component"].to_pylist()), key=lambda c: (COMPONENTS + (c,)).index(c))
    url_state.seed("trace_component", wanted.get("component"), traced)
    component = right.selectbox("Component", traced, key="trace_component")
    view["component"] = component
    trace_view(model, component, pick_noise(sites, component, right), threshold)
else:
    sizes = sorted(set(mine["window_size"].to_pylist()))
    if st.session_state.get("map_size") not in sizes or st.session_state.get("map_size_for") != method:
        # Side by side compares single layers with single sites: m = 1 when there is one.
        st.session_state.update(map_size=1 if method == BOTH and 1 in sizes else sizes[0], map_size_for=method)
    url_state.seed("map_size", wanted.get("m"), sizes)
    size = right.selectbox("Window size m", sizes, key="map_size")
    view["m"] = size
    if method == LOCOGEN:
        locogen_view(model, mine, size, threshold)
    elif beside == CONTRIBUTION:
        beside_contribution(model, mine, size, pick_k(model, right), threshold)
    else:
        side_by_side(model, mine, size, pick_noise(sites, CROSS_ATTENTION, right), threshold)
url_state.publish(PAGE, view)
