"""The Layer map's parts (``views/layer_map.py`` builds a ``MapState`` from its controls and the URL): the tables,
labels and titles it shows, computed from the state and the tables they are given, and the views that draw one
method's map with them."""

import functools
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import streamlit as st

from locolab.contract import bounds, queries
from locolab.contract.catalog.registry import MODELS
from locolab.contract.figures import SELECTION, contribution_map, heat_map, line_view, row_label, trace_map
from locolab.contract.names import CROSS_ATTENTION, TARGET
from locolab.contract.notation import window_label
from locolab.contract.summaries import ADJUSTMENTS, MIN_REFERENCE_GAP, SELECTIONS, concepts_of, config_of, judge
from locolab.dashboard import common, data, downloads, exports, url_state

PAGE, GALLERY = "layer_map", "views/gallery.py"
LOCOGEN, TRACING, CONTRIBUTION, BOTH = "LocoGen", "Causal tracing", "Attention contribution", "Side by side"
VIEWS = {"locogen": LOCOGEN, "tracing": TRACING, "contribution": CONTRIBUTION, "both": BOTH}  # the URL's names
LOCOGEN_CAPTION = ("**LocoGen** colour: normalized drop (original − window) / (original − reference) of the window of "
                   "m layers starting at that column, when those layers get the target prompt: 1 = the attribute is "
                   "gone as fully as in the reference, 0 = no effect. The reference is the target prompt, or on models "
                   "whose text also enters outside cross-attention (SD-XL, IF) the all-layers swap. ● = a paired "
                   "test over prompt × seed units shows the window removes more than the threshold, adjusted over the "
                   "concept's windows (Holm); hover: the bootstrap interval, p-values and units; grey rows: the "
                   "concept is not measurable (too few prompt × seed units, or an original − reference gap not "
                   f"clearly above {MIN_REFERENCE_GAP:g}). docs/statistics.md explains every number.")
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


@dataclass(frozen=True)
class MapState:
    """What the Layer map shows, from its controls and the URL.

    Attributes:
        model: the model shown.
        method: LOCOGEN, TRACING, CONTRIBUTION or BOTH.
        beside: what BOTH puts beside LocoGen (TRACING or CONTRIBUTION).
        run_id, trace_run: the LocoGen and causal-tracing runs shown (None: not shown).
        scorer: the scorer whose scores are shown (None: no scored data).
        threshold: the page's threshold, a fraction of the gap.
        level: the coverage of LocoGen's intervals.
        min_gap: causal tracing's minimum corruption gap.
        run, traced: the LocoGen and tracing runs' rows of ``queries.run_list`` (None: not shown).
        wanted_concept, wanted_window: the (family, concept) and window start the URL names, if any.
    """

    model: str
    method: str
    beside: str = TRACING
    run_id: str | None = None
    trace_run: str | None = None
    scorer: str | None = None
    threshold: float = 0.5
    level: float = 0.95
    min_gap: float = 0.0
    run: dict | None = None
    traced: dict | None = None
    wanted_concept: tuple[str, str] | None = None
    wanted_window: str | None = None


def only(table, **equal):
    """The rows of ``table`` whose columns equal the given values."""
    for column, value in equal.items():
        table = table.filter(pc.equal(table[column], value))
    return table


def concept_rows(cells) -> list[tuple[str, str]]:
    """The (family, concept) pairs of ``cells`` in their order, once each."""
    return list(dict.fromkeys(zip(cells["family"].to_pylist(), cells["concept"].to_pylist())))


def gallery_link(state: MapState, family: str, concept: str, size: int, start: int | None) -> dict[str, str]:
    """The Gallery's query parameters for one window: exactly those the Gallery publishes for that view (else its
    first run would add a history entry)."""
    return url_state.link({"model": state.model, **url_state.concept_params((family, concept)), "scorer": state.scorer,
                           "images": "windows", "run": state.run_id, "level": state.level,
                           "threshold": state.threshold, "m": size, "window": start})


def open_gallery(state: MapState, family: str, concept: str, size: int, start: int | None = None) -> None:
    """Go to the Gallery page at that window: the choice travels in the URL (a new history entry, so Back returns
    here, to the view this page published last)."""
    st.session_state["map_clicks"] = st.session_state.get("map_clicks", 0) + 1
    st.switch_page(GALLERY, query_params=gallery_link(state, family, concept, size, start))


def on_cell_click(key: str) -> None:
    """Keeps the clicked cell (row, column) of the heat map under ``key`` for the page to open its window. A callback
    runs only when the selection changes, so returning to this page does not bounce to the gallery."""
    points = [point for point in st.session_state[key].selection.get(SELECTION) or []
              if point.get("row") is not None and point.get("column") is not None]  # a cell, not a block's label
    if points:
        st.session_state["map_clicked"] = (int(points[0]["row"]), int(points[0]["column"]))


def bounded_layers(layers: dict) -> dict:
    """The layer table's entries inside ``bounds.MAX_LAYERS``."""
    return {i: info for i, info in layers.items() if 0 <= i < bounds.MAX_LAYERS}


def locogen_columns(model: str, layers: dict, mine) -> int:
    """How many columns LocoGen's map of ``model`` has: its registered layers, those of its layer table
    (``layers``), or as many as the windows of ``mine`` reach, whichever is most."""
    ends = [s + n for s, n in zip(mine["window_start"].to_pylist(), mine["window_size"].to_pylist())]
    return max([getattr(MODELS.get(model), "num_layers", None) or 0, len(layers) and max(layers) + 1, *ends])


def site_columns(layers: dict, cells) -> int:
    """How many columns a map of sites has: those of its layer table or as many as ``cells`` reach."""
    return max([len(layers) and max(layers) + 1, *(s + 1 for s in cells["site"].to_pylist())])


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


def settings_line(run: dict) -> str:
    """The run's settings in one wrapped line of Markdown (a side panel cuts its labels on a narrow screen)."""
    return " · ".join(f"**{name}** {common.escape(value)}" for name, value in settings_rows(run))


def about(state: MapState, concept: tuple[str, str] | None = None, seeds=None) -> str:
    """What a figure shows, for its title: model, LocoGen run, concept, scorer and seeds (default: the run's)."""
    if seeds is None and state.run is not None:
        seeds = state.run["seeds"]
    parts = [state.model, f"run {state.run_id}" if state.run_id else None, row_label(*concept) if concept else None,
             f"scorer {state.scorer}" if state.scorer else None,
             f"seeds {', '.join(str(s) for s in seeds)}" if seeds else None]
    return " · ".join(p for p in parts if p)


def figure_title(state: MapState, what: str, concept: str | None = None, run: str | None = "", **more) -> str:
    """The self-describing title of an exported figure: ``what``, the model, the run (default: the LocoGen run), the
    concept, the scorer, the run's seeds and the page's threshold (and interval level for LocoGen) with ``more``."""
    locogen = run == ""
    shown = state.run if locogen else state.traced if run is not None and run == state.trace_run else None
    return exports.title_text(what, model=state.model, run=state.run_id if locogen else run, concept=concept,
                              scorer=state.scorer, seeds=(shown or {}).get("seeds"), **more,
                              threshold=f"{state.threshold:g}", interval=f"{state.level:.0%}" if locogen else None)


def csv_meta(state: MapState, size: int | None = None) -> dict:
    """What the Layer map's CSVs are about (``exports.csv_header``): model, run, scorer, seeds, threshold, interval
    level, the test's adjustment and selection, and the window size shown."""
    seeds = (state.run or {}).get("seeds") or []
    return {"model": state.model, "run": state.run_id, "scorer": state.scorer,
            "seeds": ", ".join(str(s) for s in seeds), "threshold": f"{state.threshold:g}",
            "level": f"{state.level:.0%}", "adjustment": f"{ADJUSTMENTS[0]} (over each concept's windows)",
            "selection": f"{SELECTIONS[0]} (the verdict says whether the window was confirmed on held-out seeds)",
            "window size shown": size}


def verdict_table(loc_run, threshold: float) -> list[dict]:
    """Per concept: the verdict with the point, the interval and the rule's inputs (gap, its interval); the verdict
    itself states the units, whether prompts were resampled, the adjustment and the selection (1280 px has no room for
    them as columns)."""
    rows = []
    for c in concepts_of(judge(loc_run, threshold)).to_pylist():
        window = (window_label(c["window_start"], c["window_size"]) if c["window_start"] is not None else "–")
        rows.append({"family": c["family"], "concept": c["concept"], "localizes": c["localizes"],
                     "window": window if c["localizes"] else "none", "m": c["window_size"] if c["localizes"] else None,
                     "drop [interval]": interval_text(c["normalized_drop"], c["drop_low"], c["drop_high"]),
                     "gap [interval]": interval_text(c["gap"], c["gap_low"], c["gap_high"]), "units": c["n_units"],
                     "verdict": c["verdict"]})
    return rows


def shown_verdict(row: dict) -> dict:
    """A ``verdict_table`` row as the page's table shows it: as text, without the verdict (listed in full below)."""
    shown = {k: v for k, v in row.items() if k != "verdict"}
    return {**shown, "localizes": "yes" if row["localizes"] else "no", "m": "–" if row["m"] is None else str(row["m"])}


def family_heat_map(state: MapState, cells, minimal, layers: dict, num_layers: int, size: int, family: str):
    """The heat map of one family's concepts (the paper figure's top)."""
    rows = [key for key in concept_rows(cells) if key[0] == family]
    return heat_map(cells, minimal, layers, num_layers, size, state.threshold, rows, about=about(state),
                    partial=run_partial(state.run))


def verdict_list(rows: list[dict]) -> str:
    """Every concept's full verdict as a Markdown list (``verdict_table`` rows): wrapped, never cut."""
    return "\n".join(f"- **{common.escape(row_label(row['family'], row['concept']))}**: {common.escape(row['verdict'])}"
                     for row in rows)


def interval_text(point, low, high) -> str:
    """'0.750 [0.000, 1.000]' (the CSV below the table keeps the numbers as numbers)."""
    return "–" if point is None else f"{point:.3f} [{low:.3f}, {high:.3f}]" if low is not None else f"{point:.3f}"


def first_window(cells, minimal, key: tuple[str, str], size: int, starts: list[int]) -> int | None:
    """The window the one-concept selector starts on: the concept's minimal localizing window when it has this size,
    else its window of largest drop at this size, else the first."""
    found = [w["window_start"] for w in only(minimal, family=key[0], concept=key[1], window_size=size).to_pylist()]
    strongest = top(cells, key, "normalized_drop")
    start = found[0] if found else strongest["window_start"] if strongest else None
    return start if start in starts else (starts[0] if starts else None)


def unmeasurable_note(cells) -> str | None:
    """The grey rows' concepts with the reason their data cannot speak (None when every row is measurable)."""
    reasons = {(r["family"], r["concept"]): r["not_measurable"] for r in only(cells, measurable=False).to_pylist()}
    return ("Grey rows, not measurable: " + "; ".join(
        f"{common.escape(row_label(*key))} ({common.escape(reason)})" for key, reason in reasons.items()) + "."
        if reasons else None)


def untraceable_note(cells, min_gap: float) -> str | None:
    """The concepts whose corruption moved the score less than ``min_gap`` (their rows stay blank), or None."""
    gaps = {(r["family"], r["concept"]): r["corruption_gap"] for r in only(cells, untraceable=True).to_pylist()}
    return (f"Blank rows: the noise moved the score by less than {min_gap:g}, so recovery would be a ratio of noise: "
            + ", ".join(f"{common.escape(row_label(*key))} ({gap:+.3f})" for key, gap in gaps.items())
            + ". Raise --noise, or lower the minimum gap." if gaps else None)


def run_partial(run: dict | None) -> str:
    """Why a LocoGen run is not complete ("status running": a shard has not finished), or "" (the figures' titles
    and their exports say so)."""
    return "" if run is None or run.get("finished", True) else f"status {run['status']}: not every shard has finished"


def partial_note(cells, what: str) -> str | None:
    """A warning when the map's run has not finished (its cells may rest on fewer units than it will have), or
    None."""
    if "partial" in cells.column_names and any(cells["partial"].to_pylist()):
        return (f"Partial run: this {what} run has not finished, so some sites rest on fewer units than it will have "
                "(the hover gives each site's units and interval).")
    return None


def shared_label(key: tuple[str, str], cells, traced=None) -> str:
    """One row label for both maps of Side by side (the same labels keep their columns aligned), saying what either
    method cannot speak to."""
    notes = []
    if any(not r["measurable"] for r in only(cells, family=key[0], concept=key[1]).to_pylist()):
        notes.append("LocoGen: not measurable")
    if traced is not None and any(r["untraceable"] for r in only(traced, family=key[0], concept=key[1]).to_pylist()):
        notes.append("tracing: untraceable")
    return row_label(*key) + (f" ({'; '.join(notes)})" if notes else "")


def count(cells, key: tuple[str, str], value: str, threshold: float) -> int:
    """How many of the concept's cells have ``value`` at or above ``threshold``."""
    return sum(v is not None and v >= threshold for v in only(cells, family=key[0], concept=key[1])[value].to_pylist())


def top(cells, key: tuple[str, str], value: str) -> dict | None:
    """The concept's cell with the largest ``value``."""
    rows = [r for r in only(cells, family=key[0], concept=key[1]).to_pylist() if r[value] is not None]
    return max(rows, key=lambda r: r[value], default=None)


def shown(cell: dict | None, column: str, value: str) -> str:
    """'8 (0.75)': a cell's column and value, or '–' without a cell."""
    return "–" if cell is None else f"{cell[column]} ({cell[value]:.2f})"


def marked_rows(cells, traced, rows: list[tuple[str, str]], size: int, threshold: float) -> list[dict]:
    """Side by side with tracing, per concept: how many cells each method marks and each method's strongest cell."""
    marked_windows, marked_sites = f"LocoGen windows (m = {size}) marked", "tracing sites marked"
    return [{"concept": row_label(*key),
             marked_windows: count(cells, key, "normalized_drop", threshold),
             marked_sites: count(traced, key, "recovery", threshold),
             "LocoGen strongest window": shown(top(cells, key, "normalized_drop"), "window_start", "normalized_drop"),
             "tracing strongest site": shown(top(traced, key, "recovery"), "site", "recovery")} for key in rows]


def intervention_rows(top_k, state: MapState, k: int, rows: list[tuple[str, str]]) -> list[dict]:
    """One row per concept: its k dominant sites and their top-k intervention's drop (scored by the page's scorer)."""
    found = {(r["family"], r["concept"]): r
             for r in only(top_k, model=state.model, scorer_id=state.scorer, k=k).to_pylist()}
    table = []
    for key in rows:
        row = found.get(key, {})
        drop = row.get("normalized_drop")
        table.append({"concept": row_label(*key), "sites fed the target": row.get("blocks"),
                      "drop": drop, f"drop ≥ {state.threshold:g}": None if drop is None else drop >= state.threshold,
                      "images": row.get("n_images"), "score": row.get("score_mean"),
                      "original": row.get("original_score"), "target": row.get("target_score")})
    return table


def beside_rows(cells, interventions: list[dict], rows: list[tuple[str, str]], k: int) -> list[dict]:
    """Side by side with attention contribution, per concept: LocoGen's strongest window, the k dominant sites and
    their top-k drop (``interventions``: ``intervention_rows`` of the same rows)."""
    by_label = {row["concept"]: row for row in interventions}
    return [{"concept": row_label(*key),
             "LocoGen strongest window": shown(top(cells, key, "normalized_drop"), "window_start", "normalized_drop"),
             f"top-{k} sites": by_label[row_label(*key)]["sites fed the target"],
             f"top-{k} drop": by_label[row_label(*key)]["drop"]} for key in rows]


def within_bounds(loc, trace, contrib):
    """The localization (one run's, or None), tracing and contribution rows the page draws: windows and sites inside
    ``bounds.MAX_LAYERS`` layers (a crafted row must not make a picker or a map that wide), and the first
    ``bounds.MAX_ROWS`` concepts of each model in family order.

    Returns:
        (loc, trace, contrib, how many concepts were left out).
    """
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
        return loc, trace, contrib, 0

    def first(table):
        if table is None:
            return None
        keys = zip(*(table[c].to_pylist() for c in ("model", "family", "concept")))
        return table.filter(pa.array([key in kept for key in keys], pa.bool_()))

    return first(loc), first(trace), first(contrib), dropped


def run_label(runs: dict[str, dict], run_id: str) -> str:
    """A run picker's text for one run: its config, when it was made, its status and its id."""
    run = runs[run_id]
    return f"{run['config_name'] or run_id} · {common.when(run['created_at'])} · {run['status']} · {run_id}"


def pick_run(runs_table, model: str, wanted: dict, method: str, column, key: str, label: str) -> str | None:
    """A picker of ``model``'s runs of ``method``, newest finished first by default (reset when the model changes),
    seeded from the URL (``wanted``)."""
    runs = {r["run_id"]: r for r in runs_table.to_pylist() if r["model"] == model}
    if not runs:
        return None
    default = queries.default_run(runs_table, model)
    options = common.bounded(list(runs), "runs")
    options = options if default in options else [default, *options[:-1]]
    url_state.default(f"{key}_{model}", default)
    url_state.unknown(wanted, "run" if key == "map_run" else key, runs, "the run")
    url_state.seed(f"{key}_{model}", wanted.get("run" if key == "map_run" else key), options)
    return column.selectbox(label, options, key=f"{key}_{model}",
                            format_func=functools.partial(run_label, runs),
                            help=f"A map summarizes one {method} run (its settings on the right). Default: the "
                                 "newest run whose shards all finished.")


def pick_noise(sites, component: str, column) -> float:
    """The noise level of the chosen component's tracing (a choice only when several were traced)."""
    noises = sorted(set(only(sites, component=component)["noise"].to_pylist()))
    return noises[0] if len(noises) == 1 else column.selectbox("Noise (× embedding std)", noises, key="trace_noise")


def pick_k(top_k, model: str, column) -> int:
    """The k whose dominant sites are marked: the k of the model's top-k interventions (a choice when several)."""
    ks = sorted(set(only(top_k, model=model)["k"].to_pylist())) or [6]
    return ks[0] if len(ks) == 1 else column.selectbox("Dominant sites k", ks, key="contribution_k")


def layer_table(snap: data.Snapshot, model: str, component: str | None = None) -> dict:
    """The model's layer table (of ``component``'s sites when given), inside ``bounds.MAX_LAYERS``."""
    return bounded_layers(data.query(snap, queries.layers, model, *([component] if component else [])))


def locogen_view(snap: data.Snapshot, state: MapState, loc, mine, size: int) -> dict:
    """LocoGen's heat map (click a cell for its images) under the run's settings, each concept's verdict, and one
    concept's line view. Returns what it adds to the URL (the concept and window)."""
    threshold, run_id = state.threshold, state.run_id
    cells = queries.layer_cells(loc, state.scorer, size, threshold)
    minimal = queries.minimal_windows(loc, state.scorer, threshold)
    layers = layer_table(snap, state.model)
    num_layers = locogen_columns(state.model, layers, mine)
    chart_key = f"heat_map_{st.session_state.get('map_clicks', 0)}"
    if run_partial(state.run):
        st.warning(f"Partial run ({run_partial(state.run)}): the map, the verdicts and their units are those of the "
                   "windows scored so far.")
    figure = heat_map(cells, minimal, layers, num_layers, size, threshold, about=about(state),
                      partial=run_partial(state.run))
    st.vega_lite_chart(figure, key=chart_key, on_select=functools.partial(on_cell_click, chart_key),
                       selection_mode=SELECTION, width="stretch")
    st.markdown(settings_line(state.run))
    if not layers:
        st.caption("This store records no layer table for the model: tooltips show layer indices only.")
    downloads.figure(figure, figure_title(state, "LocoGen heat map", m=size), f"{run_id}-heat-map-m{size}",
                     "heat_map_download")
    st.caption(LOCOGEN_CAPTION + " Click a cell to open its images.")
    note = unmeasurable_note(cells)
    if note:
        st.caption(note)
    rows = concept_rows(cells)
    clicked = st.session_state.pop("map_clicked", None)
    if clicked and clicked[0] < len(rows):
        open_gallery(state, *rows[clicked[0]], size, clicked[1])
    st.subheader(f"Minimal localizing windows (paired test: drop > {threshold:g} at error {(1 - state.level) / 2:g}, "
                 "Holm-adjusted over each concept's windows)")
    order = {key: i for i, key in enumerate(rows)}
    verdicts = sorted(verdict_table(mine, threshold), key=lambda r: order.get((r["family"], r["concept"]), len(order)))
    # The numbers in the table; each verdict in full below it, wrapped (a table cell cuts it even at 1920 px).
    # A static table: the data grid's script would be the heaviest the page loads, and it is loaded before the heat
    # map is drawn (bench/dashboard_browser.py).
    common.table([shown_verdict(row) for row in verdicts], "map_verdicts", static=True)
    st.markdown(verdict_list(verdicts))
    downloads.paper(snap, state.model, state.scorer, functools.partial(family_heat_map, state, cells, minimal, layers,
                                                                       num_layers, size), minimal, verdicts,
                    lambda family: figure_title(state, f"LocoGen paper figure of {family}", m=size),
                    f"{run_id}-m{size}")
    meta = csv_meta(state, size)
    downloads.table(verdicts, f"{run_id}-minimal-windows", "verdicts_csv", "Download this table (CSV)", meta)
    downloads.table(judge(mine, threshold), f"{run_id}-localization", "map_csv",
                    "Download every window (CSV: point, interval, verdict)", meta)

    url_state.unknown(url_state.concept_params(state.wanted_concept), "concept", [c for _, c in rows], "the concept")
    # Drawn when opened, or when the URL names a concept (a link, or coming back from another page) unless closed
    # here since (closing it drops the concept from the URL): drawn on every visit, the second chart would hold back
    # the first.
    if state.wanted_concept in rows and ("one_concept" not in st.session_state
                                         or st.session_state.get("one_concept_for") != state.wanted_concept):
        st.session_state.update(one_concept=True, one_concept_for=state.wanted_concept)
    section = st.expander("One concept: its score per window, and a window's images", key="one_concept",
                          on_change="rerun")
    if not section.open:
        return {}
    with section:
        return one_concept(snap, state, rows, cells, minimal, layers, mine, size)


def one_concept(snap: data.Snapshot, state: MapState, rows: list, cells, minimal, layers: dict, mine,
                size: int) -> dict:
    """One concept's score per window (its line view) and a window to open in the Gallery. Returns what it adds to
    the URL (the concept and window)."""
    threshold, run_id = state.threshold, state.run_id
    if state.wanted_concept in rows:
        st.session_state["map_concept"] = state.wanted_concept
    family, concept = st.selectbox("Concept", rows, format_func=lambda key: row_label(*key), key="map_concept")
    shown_view = url_state.concept_params((family, concept))
    concept_cells = only(judge(mine, threshold), family=family, concept=concept)
    seeds = data.query(snap, queries.seed_scores, run_id, state.scorer, family, concept)
    figure = line_view(concept_cells, seeds, size, threshold, layers, about(state, (family, concept)),
                       run_partial(state.run))
    st.vega_lite_chart(figure, key="line_view", width="stretch")
    downloads.figure(figure, figure_title(state, "LocoGen score per window", row_label(family, concept), m=size),
                     f"{run_id}-{family}-{concept}-m{size}", "line_view_download")
    starts = sorted(only(concept_cells, window_size=size)["window_start"].to_pylist())
    default = first_window(cells, minimal, (family, concept), size, starts)
    # The selector follows the concept, m and threshold (its default is their minimal window), unless the URL names one.
    if st.session_state.get("map_start_for") != (family, concept, size, default) or \
            st.session_state.get("map_start") not in starts:
        st.session_state.update(map_start=default, map_start_for=(family, concept, size, default))
    url_state.seed("map_start", state.wanted_window, starts)
    pick, go = st.columns([3, 1], vertical_alignment="bottom")
    start = pick.selectbox("Window", starts, format_func=lambda s: window_label(s, size), key="map_start",
                           help="Default: the concept's minimal localizing window at this m, else its largest drop.")
    shown_view["window"] = start
    if go.button("Open gallery", key="open_gallery"):
        open_gallery(state, family, concept, size, start)
    return shown_view


def trace_view(snap: data.Snapshot, state: MapState, trace, component: str, noise: float) -> dict:
    """Causal tracing's heat map of one component, and one concept's original / corrupted / restored images.
    Returns what it adds to the URL (the concept)."""
    cells = queries.trace_cells(trace, state.trace_run, state.scorer, component, noise, state.min_gap)
    layers = layer_table(snap, state.model, component)
    num_sites = site_columns(layers, cells)
    figure = trace_map(cells, layers, num_sites, component, state.threshold, about=about(state))
    st.vega_lite_chart(figure, key="trace_map", width="stretch")
    downloads.figure(figure, figure_title(state, "Causal tracing map", run=state.trace_run, component=component,
                                          noise=noise), f"{state.trace_run}-trace-{component}", "trace_map_download")
    st.caption(TRACE_CAPTION)
    note = untraceable_note(cells, state.min_gap)
    if note:
        st.caption(note)
    partial = partial_note(cells, "trace")
    if partial:
        st.warning(partial)
    st.subheader("One concept")
    rows = concept_rows(cells)
    pick, where = st.columns([3, 1])
    url_state.unknown(url_state.concept_params(state.wanted_concept), "concept", [c for _, c in rows], "the concept")
    if state.wanted_concept in rows:
        st.session_state["trace_concept"] = state.wanted_concept
    family, concept = pick.selectbox("Concept", rows, format_func=lambda key: row_label(*key), key="trace_concept")
    strongest = top(cells, (family, concept), "recovery")
    site = where.selectbox("Restored site", range(num_sites), index=strongest["site"] if strongest else 0,
                           key=f"trace_site_{component}_{family}_{concept}", help="Default: the strongest site.")
    images = data.query(snap, queries.trace_gallery, state.model, state.scorer, family, concept, component, noise,
                        site)
    for prompt in dict.fromkeys(images["prompt"].to_pylist()):
        st.markdown(f"“{common.escape(prompt)}”")
        for column, row in zip(st.columns(6), only(images, prompt=prompt).to_pylist()):
            with column:
                name = f"site {site} restored" if row["kind"] == "restored" else row["kind"]
                common.image(row["image_path"], f"{name} · seed {row['seed']} · {common.score_text(row['score'])}")
    return url_state.concept_params((family, concept))


def side_by_side(snap: data.Snapshot, state: MapState, loc, trace, mine, size: int, noise: float) -> None:
    """The LocoGen map at window size m above the cross-attention tracing map, on the same concept rows, with a
    per-concept count of what each method marks."""
    threshold = state.threshold
    cells = queries.layer_cells(loc, state.scorer, size, threshold)
    traced = queries.trace_cells(trace, state.trace_run, state.scorer, CROSS_ATTENTION, noise, state.min_gap)
    rows = queries.concept_order([*concept_rows(cells), *concept_rows(traced)])
    layers = layer_table(snap, state.model)
    num_layers = locogen_columns(state.model, layers, mine)
    if not layers:
        st.caption("This store records no layer table for the model: tooltips show layer indices only.")
    minimal = queries.minimal_windows(loc, state.scorer, threshold)
    labels = {key: shared_label(key, cells, traced) for key in rows}
    figure = heat_map(cells, minimal, layers, num_layers, size, threshold, rows, labels, about(state),
                      run_partial(state.run))
    st.vega_lite_chart(figure, key="both_locogen", width="stretch")
    downloads.figure(figure, figure_title(state, "LocoGen heat map", m=size), f"{state.run_id}-heat-map-m{size}",
                     "both_locogen_download")
    st.caption(LOCOGEN_CAPTION)
    figure = trace_map(traced, layers, num_layers, CROSS_ATTENTION, threshold, rows, labels,
                       f"{state.model} · trace run {state.trace_run} · scorer {state.scorer}")
    st.vega_lite_chart(figure, key="both_trace", width="stretch")
    downloads.figure(figure, figure_title(state, "Causal tracing map", run=state.trace_run, component=CROSS_ATTENTION,
                                          noise=noise), f"{state.trace_run}-trace", "both_trace_download")
    st.caption(TRACE_CAPTION)
    note = untraceable_note(traced, state.min_gap)
    if note:
        st.caption(note)
    st.subheader(f"Cells marked ● (value ≥ {threshold:g}) and the strongest cell, per concept")
    common.table(marked_rows(cells, traced, rows, size, threshold), "map_marked")


def contribution_view(snap: data.Snapshot, state: MapState, contrib, top_k, k: int) -> None:
    """Attention contribution's map and each concept's top-k intervention, scored like a LocoGen window."""
    cells = queries.contribution_cells(contrib, state.model)
    layers = layer_table(snap, state.model)
    num_sites = site_columns(layers, cells)
    rows = concept_rows(cells)
    figure = contribution_map(cells, layers, num_sites, k, rows, about=state.model)
    st.vega_lite_chart(figure, key="contribution_map", width="stretch")
    downloads.figure(figure, figure_title(state, "Attention contribution map", run=CONTRIBUTION_RUNS, k=k),
                     f"{state.model}-contribution", "contribution_map_download")
    st.caption(CONTRIBUTION_CAPTION)
    partial = partial_note(cells, "attention-contribution")
    if partial:
        st.warning(partial)
    st.subheader(f"Top-{k} interventions: the {k} dominant sites fed the target prompt")
    st.caption("Normalized drop (original − top-k) / (original − target), the original and target references of the "
               f"same run, scored by {state.scorer}; blank where the run has not intervened yet.")
    common.table(intervention_rows(top_k, state, k, rows), "map_interventions")


def beside_contribution(snap: data.Snapshot, state: MapState, loc, contrib, top_k, mine, size: int, k: int) -> None:
    """The LocoGen map at window size m above the attention-contribution map, on the same concept rows and site
    columns, with each concept's strongest window, dominant sites and top-k drop."""
    threshold = state.threshold
    cells = queries.layer_cells(loc, state.scorer, size, threshold)
    found = queries.contribution_cells(contrib, state.model)
    rows = queries.concept_order([*concept_rows(cells), *concept_rows(found)])
    layers = layer_table(snap, state.model)
    num_layers = locogen_columns(state.model, layers, mine)
    if not layers:
        st.caption("This store records no layer table for the model: tooltips show layer indices only.")
    minimal = queries.minimal_windows(loc, state.scorer, threshold)
    # One label per row for both maps, so their columns line up.
    labels = {key: shared_label(key, cells) for key in rows}
    figure = heat_map(cells, minimal, layers, num_layers, size, threshold, rows, labels, about(state),
                      run_partial(state.run))
    st.vega_lite_chart(figure, key="both_locogen", width="stretch")
    downloads.figure(figure, figure_title(state, "LocoGen heat map", m=size), f"{state.run_id}-heat-map-m{size}",
                     "both_locogen_download")
    st.caption(LOCOGEN_CAPTION)
    figure = contribution_map(found, layers, num_layers, k, rows, labels, state.model)
    st.vega_lite_chart(figure, key="both_contribution", width="stretch")
    downloads.figure(figure, figure_title(state, "Attention contribution map", run=CONTRIBUTION_RUNS, k=k),
                     f"{state.model}-contribution", "both_contribution_download")
    st.caption(CONTRIBUTION_CAPTION)
    st.subheader("Per concept: LocoGen's strongest window and the dominant sites' intervention")
    common.table(beside_rows(cells, intervention_rows(top_k, state, k, rows), rows, k), "map_beside_table")
