"""Gallery: the images behind one (model, concept) on one screen: original, target and every window of one m (or,
for causal tracing, original, corrupted and every restored site), one column per seed, each row with what it
measured (normalized drop or recovery, with its interval); the focused row is highlighted and scrolled into view,
and its images are shown at full size below."""

import io
import os

import pyarrow.compute as pc
import streamlit as st

from contract import bounds
from contract.names import TRACE
from contract.store import is_url
from contract.summaries import DEFAULT_LEVEL, MIN_CORRUPTION_GAP, verdict
from dashboard import common, data, downloads, queries, url_state
from dashboard.figures import row_label, window_label
from dashboard.files import OutsideRoot, RootFiles
from dashboard.gallery_grid import SCROLL_SCRIPT, Cell, Row, grid_html, thumbnail

PAGE = "gallery"
MAX_SEEDS = 4
WINDOWS, TRACING = "LocoGen windows", "Causal tracing"
IMAGES = {"windows": WINDOWS, "trace": TRACING}  # the URL's names
LEVELS = (0.8, 0.9, 0.95, 0.99)


@st.cache_data(max_entries=4096, show_spinner=False)
def _thumbnail(root: str, fingerprint: str, relpath: str, stamp: tuple[int, int] | None) -> bytes:
    # stamp: a local image's (size, mtime), so that a rewritten file is redone; an object store's images are written
    # once under content-derived names, and its state is in ``fingerprint``.
    return thumbnail(io.BytesIO(data.image_bytes(snap, relpath)))


def _stamp(relpath: str) -> tuple[int, int] | None:
    if is_url(snap.root):
        return None
    path = RootFiles(snap.root).locate(relpath)
    if path is None:
        raise OutsideRoot(f"{relpath} leaves the artifact root")
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def cell(case: dict | None, caption: str) -> Cell | None:
    """A grid cell of one case's image (a note when it is missing, unreadable or outside the root)."""
    if case is None:
        return None
    if not case["image_path"]:
        return Cell(None, caption, "no image")
    try:
        return Cell(_thumbnail(snap.root, snap.fingerprint, case["image_path"], _stamp(case["image_path"])), caption)
    except OutsideRoot:
        return Cell(None, caption, "no image: path leaves the artifact root")
    except OSError:  # missing, unreadable, or not an image (PIL's UnidentifiedImageError is an OSError)
        return Cell(None, caption, "image missing or unreadable")


def grid_row(label: str, row_cases: list[dict], seeds: list[int], stat: str = "", focus: bool = False,
             anchor: str = "") -> Row:
    """One row: a cell per chosen seed, captioned with the seed and its score."""
    by_seed = {case["seed"]: case for case in row_cases}
    cells = [cell(by_seed.get(seed), f"seed {seed} · {common.score_text(by_seed[seed]['score'])}")
             if seed in by_seed else None for seed in seeds]
    scores = [case["score"] for case in row_cases if case["score"] is not None and case["seed"] in seeds]
    mean = f"mean score {sum(scores) / len(scores):.4f}" if scores else ""
    return Row(label, cells, " · ".join(part for part in (stat, mean) if part), focus, anchor)


def full_size(row_cases: list[dict], seeds: list[int], name: str) -> None:
    """The focused row's images at full size, one column per seed."""
    st.markdown(f"**{common.escape(name)}** at full size")
    by_seed = {case["seed"]: case for case in row_cases}
    for column, seed in zip(st.columns(max(len(seeds), MAX_SEEDS)), seeds):
        with column:
            if seed in by_seed:
                common.image(by_seed[seed]["image_path"], f"seed {seed} · {common.score_text(by_seed[seed]['score'])}")
            else:
                st.caption(f"seed {seed}: not generated")


def pick_prompt_and_seeds(cases: list[dict]) -> tuple[str, list[dict], list[int]]:
    prompts = common.bounded(list(dict.fromkeys(case["prompt"] for case in cases)), "prompts")
    prompt = st.selectbox("Prompt", prompts, key="gal_prompt") if len(prompts) > 1 else prompts[0]
    cases = [case for case in cases if case["prompt"] == prompt]
    all_seeds = common.bounded(sorted({case["seed"] for case in cases}), "seeds")
    seeds = st.multiselect("Seeds", all_seeds, default=all_seeds[:MAX_SEEDS], key=f"gal_seeds_{len(all_seeds)}")
    return prompt, cases, seeds


def show_grid(columns: list[str], rows: list[Row], stat_heading: str) -> None:
    st.html(grid_html(columns, rows, stat_heading))
    st.html(SCROLL_SCRIPT, unsafe_allow_javascript=True)


def drops(run_id: str | None, size: int, threshold: float, level: float) -> dict[int, str]:
    """Window start -> its normalized drop with interval and verdict in run ``run_id`` (all prompts and seeds)."""
    if run_id is None:
        return {}
    loc = data.query(snap, queries.localization_table, run_id, level)
    judged = queries.judged(loc, scorer, threshold)  # adjusted over the concept's windows of every size
    mine = judged.filter(pc.and_(pc.and_(pc.equal(judged["family"], family), pc.equal(judged["concept"], concept)),
                                 pc.equal(judged["window_size"], size)))
    found = {}
    for r in mine.to_pylist():
        if not r["measurable"]:
            found[r["window_start"]] = "not measurable"
            continue
        if r["normalized_drop"] is None or r["drop_low"] is None:
            found[r["window_start"]] = verdict(r)
            continue
        mark = " ●" if r["localizes"] else ""
        found[r["window_start"]] = (f"drop {r['normalized_drop']:.3f} [{r['drop_low']:.3f}, {r['drop_high']:.3f}]"
                                    f"{mark}")
    return found


def windows_view(size: int) -> None:
    """The compact grid of every window of size m, with each window's normalized drop."""
    cases = data.query(snap, queries.gallery, model, scorer, family, concept, size).to_pylist()
    if not cases:
        st.info(f"No cases for {common.escape(row_label(family, concept))} at m = {size}.")
        return
    prompt, cases, seeds = pick_prompt_and_seeds(cases)
    runs = data.query(snap, queries.run_list)
    model_runs = [r["run_id"] for r in runs.to_pylist() if r["model"] == model]
    run_id = wanted.get("run") if wanted.get("run") in model_runs else st.session_state.get("gal_run")
    run_id = run_id if run_id in model_runs else queries.default_run(runs, model)
    st.session_state["gal_run"] = run_id
    # Not widgets: the Layer map's level and threshold (from the URL), which the drops are judged with.
    url_state.seed("gal_level", wanted.get("level"), LEVELS)
    url_state.seed_float("gal_threshold", wanted.get("threshold"), 0.05, 1.0, 0.05)
    level = st.session_state.setdefault("gal_level", DEFAULT_LEVEL)
    threshold = st.session_state.setdefault("gal_threshold", 0.5)
    measured = drops(run_id, size, threshold, level)
    starts = sorted({case["window_start"] for case in cases
                     if case["kind"] == "window" and 0 <= case["window_start"] < bounds.MAX_LAYERS})
    if not starts:
        st.info(f"No window images for {common.escape(row_label(family, concept))} at m = {size}.")
        return
    if st.session_state.get("gal_focus") not in starts:
        st.session_state["gal_focus"] = starts[0]
    url_state.seed("gal_focus", wanted.get("window"), starts)
    focus = st.selectbox("Focused window", starts, format_func=lambda s: window_label(s, size), key="gal_focus",
                         help="Highlighted in the grid and shown at full size below it.")
    view.update(run=run_id, level=level, threshold=threshold, m=size, window=focus)
    st.caption(common.escape(
        f"Original prompt: “{prompt}” · target prompt: “{cases[0]['target']}” · scorer {scorer} · drop: normalized "
        f"drop of the window over all prompts and seeds of run {run_id} with its {level:.0%} interval (● interval ≥ "
        f"{threshold:g})"))
    downloads.concept_sheet(snap, cases, model, scorer, family, concept, size, prompt)
    by_kind = {kind: [case for case in cases if case["kind"] == kind] for kind in ("original", "target")}
    rows = [grid_row("Original", by_kind["original"], seeds), grid_row("Target", by_kind["target"], seeds)]
    windows = {start: [case for case in cases if case["kind"] == "window" and case["window_start"] == start]
               for start in starts}
    rows += [grid_row(window_label(start, size), windows[start], seeds, measured.get(start, "–"), start == focus,
                      str(start)) for start in starts]
    st.markdown(f"**Windows of m = {size}** ({len(starts)} windows × {len(seeds)} seeds)")
    show_grid([f"seed {seed}" for seed in seeds], rows, "normalized drop [interval]")
    full_size(windows[focus], seeds, window_label(focus, size))


def trace_view(component: str, noise: float) -> None:
    """The compact grid of causal tracing's images: original, corrupted, and every restored site of one component,
    with each site's recovery."""
    cases = data.query(snap, queries.trace_gallery, model, scorer, family, concept, component, noise, None).to_pylist()
    if not cases:
        st.info(f"No traced images for {common.escape(row_label(family, concept))} scored by {common.escape(scorer)}.")
        return
    prompt, cases, seeds = pick_prompt_and_seeds(cases)
    traces = data.query(snap, queries.run_list, TRACE)
    trace_run = queries.default_run(traces, model)
    recovery = {}
    if trace_run:
        cells = queries.trace_cells(data.query(snap, queries.trace_table), trace_run, scorer, component, noise)
        for r in cells.to_pylist():
            if (r["family"], r["concept"]) == (family, concept):
                untraceable = r["corruption_gap"] is None or r["corruption_gap"] < MIN_CORRUPTION_GAP
                recovery[r["site"]] = (f"recovery {r['recovery']:.3f}" if r["recovery"] is not None else "–") + (
                    f" (untraceable: gap {r['corruption_gap']:+.3f})" if untraceable else "")
    sites = sorted({case["site"] for case in cases if case["kind"] == "restored"
                    and case["site"] is not None and 0 <= case["site"] < bounds.MAX_LAYERS})
    if not sites:
        st.info("No restored sites were generated for this component.")
        return
    if st.session_state.get("gal_site") not in sites:
        st.session_state["gal_site"] = sites[0]
    url_state.seed("gal_site", wanted.get("site"), sites)
    focus = st.selectbox("Focused site", sites, key="gal_site", format_func=lambda s: f"site {s} restored",
                         help="Highlighted in the grid and shown at full size below it.")
    view.update(trace_run=trace_run, component=component, noise=noise, site=focus)
    st.caption(common.escape(f"Original prompt: “{prompt}” · scorer {scorer} · recovery (restored − corrupted) / "
                             f"(original − corrupted) over all prompts and seeds of trace run {trace_run}, noise "
                             f"{noise:g} × embedding std"))
    rows = [grid_row(kind, [case for case in cases if case["kind"] == kind], seeds) for kind in ("original",
                                                                                               "corrupted")]
    restored = {site: [case for case in cases if case["kind"] == "restored" and case["site"] == site]
                for site in sites}
    rows += [grid_row(f"site {site} restored", restored[site], seeds, recovery.get(site, "–"), site == focus,
                      str(site)) for site in sites]
    st.markdown(f"**{common.escape(component)}: {len(sites)} sites × {len(seeds)} seeds**")
    show_grid([f"seed {seed}" for seed in seeds], rows, "recovery")
    full_size(restored[focus], seeds, f"site {focus} restored")


snap = common.snapshot()
common.require_results(snap)
st.title("Gallery")
wanted = url_state.incoming(PAGE)  # a shared link, Back or Forward, or the Layer map's click: the view to show
view: dict = {}

top = st.columns([3, 3, 2, 2])
models = common.bounded(data.query(snap, queries.models), "models")
url_state.seed("gal_model", wanted.get("model"), models)
model = top[0].selectbox("Model", models, key="gal_model")
view["model"] = model
concepts = common.bounded(data.query(snap, queries.concepts, model), "concepts")
if not concepts:
    st.info(f"No cases for {common.escape(model)} yet.")
    url_state.publish(PAGE, view)
    st.stop()
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
if shown == WINDOWS:
    if st.session_state.get("gal_size") not in sizes:
        st.session_state["gal_size"] = sizes[0]
    url_state.seed("gal_size", wanted.get("m"), sizes)
    windows_view(top[2].selectbox("Window size m", sizes, key="gal_size"))
else:
    options = [f"{component} · noise {noise:g}" for component, noise in traced]
    if st.session_state.get("gal_trace") not in options:
        st.session_state["gal_trace"] = options[0]
    wanted_trace = next((o for (c, n), o in zip(traced, options)
                         if c == wanted.get("component") and str(n) == wanted.get("noise")), None)
    url_state.seed("gal_trace", wanted_trace, options)
    trace_view(*traced[options.index(top[2].selectbox("Traced", options, key="gal_trace"))])
url_state.publish(PAGE, view)
