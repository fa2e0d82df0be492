"""The Gallery's parts (``views/gallery.py`` builds a ``GalleryState`` from its controls and the URL): the grid's rows
and their measured values, computed from the state and the tables they are given, and the views of one window size
or one traced component."""

import io
import os
from dataclasses import dataclass, field

import pyarrow.compute as pc
import streamlit as st

from locolab.contract import bounds, queries
from locolab.contract.figures import row_label
from locolab.contract.names import TRACE
from locolab.contract.notation import window_label
from locolab.contract.store import is_url
from locolab.contract.summaries import DEFAULT_LEVEL, MIN_CORRUPTION_GAP, verdict
from locolab.dashboard import common, data, downloads, url_state
from locolab.dashboard.files import OutsideRoot, RootFiles
from locolab.dashboard.gallery_grid import SCROLL_SCRIPT, THUMB, Cell, Row, grid_html, thumb_side, thumbnail

PAGE = "gallery"
MAX_SEEDS = 4
WINDOWS, TRACING = "LocoGen windows", "Causal tracing"
IMAGES = {"windows": WINDOWS, "trace": TRACING}  # the URL's names
LEVELS = (0.8, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class GalleryState:
    """Whose images the Gallery shows, from its controls and the URL.

    Attributes:
        model, family, concept, scorer: the model, the concept and the scorer of the shown scores.
        wanted: the URL's query parameters when they are news to the page (``url_state.incoming``), else {}.
    """

    model: str
    family: str
    concept: str
    scorer: str | None
    wanted: dict = field(default_factory=dict)


@st.cache_data(max_entries=4096, show_spinner=False)
def _thumbnail(_snap: data.Snapshot, root: str, fingerprint: str, relpath: str,
               stamp: tuple[int, int] | None, side: int) -> bytes:
    # Cached by the root, its fingerprint, the path and stamp: a local image's (size, mtime), so that a rewritten file
    # is redone; an object store's images are written once under content-derived names, and its state is in
    # ``fingerprint``.
    return thumbnail(io.BytesIO(data.image_bytes(_snap, relpath)), side)


def _stamp(root: str, relpath: str) -> tuple[int, int] | None:
    if is_url(root):
        return None
    path = RootFiles(root).locate(relpath)
    if path is None:
        raise OutsideRoot(f"{relpath} leaves the artifact root")
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def cell(snap: data.Snapshot, case: dict | None, caption: str, side: int = THUMB) -> Cell | None:
    """A grid cell of one case's image, a thumbnail of longest side ``side`` (a note when it is missing, unreadable
    or outside the root)."""
    if case is None:
        return None
    if not case["image_path"]:
        return Cell(None, caption, "no image")
    try:
        return Cell(_thumbnail(snap, snap.root, snap.fingerprint, case["image_path"],
                               _stamp(snap.root, case["image_path"]), side), caption)
    except OutsideRoot:
        return Cell(None, caption, "no image: path leaves the artifact root")
    except OSError:  # missing, unreadable, or not an image (PIL's UnidentifiedImageError is an OSError)
        return Cell(None, caption, "image missing or unreadable")


def row_stat(row_cases: list[dict], seeds: list[int], stat: str = "") -> str:
    """What a grid row measured: ``stat`` and the mean score of the chosen seeds' cases."""
    scores = [case["score"] for case in row_cases if case["score"] is not None and case["seed"] in seeds]
    mean = f"mean score {sum(scores) / len(scores):.4f}" if scores else ""
    return " · ".join(part for part in (stat, mean) if part)


def grid_row(snap: data.Snapshot, label: str, row_cases: list[dict], seeds: list[int], stat: str = "",
             focus: bool = False, anchor: str = "", side: int = THUMB) -> Row:
    """One row: a cell per chosen seed, captioned with the seed and its score."""
    by_seed = {case["seed"]: case for case in row_cases}
    cells = [cell(snap, by_seed.get(seed), f"seed {seed} · {common.score_text(by_seed[seed]['score'])}", side)
             if seed in by_seed else None for seed in seeds]
    return Row(label, cells, row_stat(row_cases, seeds, stat), focus, anchor)


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


def seeds_text(seeds: list[int]) -> str:
    """Seeds as the URL writes them: '0,1,3'."""
    return ",".join(str(seed) for seed in seeds)


def wanted_seeds(text: str | None, available: list[int]) -> list[int] | None:
    """The seeds a URL names ('0,1,3'), when it names some and all of them are available; else None."""
    try:
        seeds = [int(part) for part in (text or "").split(",") if part.strip()]
    except ValueError:
        return None
    return seeds if seeds and all(seed in available for seed in seeds) else None


def pick_prompt_and_seeds(cases: list[dict], wanted: dict, columns) -> tuple[str, list[dict], list[int]]:
    """The prompt and seeds shown (from the URL's ``prompt`` and ``seeds`` when it names them; pickers in the two
    ``columns``), and the cases of that prompt."""
    prompts = common.bounded(list(dict.fromkeys(case["prompt"] for case in cases)), "prompts")
    url_state.unknown(wanted, "prompt", prompts, "the prompt")
    if st.session_state.get("gal_prompt") not in prompts:
        st.session_state["gal_prompt"] = prompts[0]
    url_state.seed("gal_prompt", wanted.get("prompt"), prompts)
    prompt = columns[0].selectbox("Prompt", prompts, key="gal_prompt", disabled=len(prompts) == 1)
    cases = [case for case in cases if case["prompt"] == prompt]
    all_seeds = common.bounded(sorted({case["seed"] for case in cases}), "seeds")
    key = f"gal_seeds_{seeds_text(all_seeds)}"
    named = wanted_seeds(wanted.get("seeds"), all_seeds)
    if named is not None:
        st.session_state[key] = named
    url_state.default(key, all_seeds[:MAX_SEEDS])
    seeds = columns[1].multiselect("Seeds", all_seeds, key=key)
    return prompt, cases, seeds


def show_grid(columns: list[str], rows: list[Row], legend: str) -> None:
    st.html(grid_html(columns, rows, legend))
    st.html(SCROLL_SCRIPT, unsafe_allow_javascript=True)


def _judged_windows(loc, state: GalleryState, size: int, threshold: float) -> list[dict]:
    """The state's concept's windows of size ``size`` in ``loc``, judged at ``threshold``."""
    judged = queries.judged(loc, state.scorer, threshold)
    return judged.filter(pc.and_(pc.and_(pc.equal(judged["family"], state.family),
                                         pc.equal(judged["concept"], state.concept)),
                                 pc.equal(judged["window_size"], size))).to_pylist()


def strongest_window(loc, state: GalleryState, size: int, threshold: float) -> int | None:
    """The window the Gallery focuses on first: of the concept's windows of size ``size``, the localizing one with
    the largest normalized drop (the minimal localizing window, when it has this size), else the largest drop (ties:
    the earliest); None when no window was measured."""
    rows = [r for r in _judged_windows(loc, state, size, threshold) if r["normalized_drop"] is not None]
    if not rows:
        return None
    return max(rows, key=lambda r: (bool(r["localizes"]), r["normalized_drop"], -r["window_start"]))["window_start"]


def drop_texts(loc, state: GalleryState, size: int, threshold: float) -> dict[int, str]:
    """Window start -> its normalized drop with interval and verdict (● when the paired test, adjusted over the
    concept's windows of every size, clears ``threshold``), from a run's ``queries.localization_table`` ``loc``, for
    the state's concept and scorer at window size ``size``."""
    found = {}
    for r in _judged_windows(loc, state, size, threshold):
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


def recovery_texts(cells, state: GalleryState) -> dict[int, str]:
    """Site -> its recovery, flagged untraceable when the corruption moved the score less than the minimum gap, from
    ``queries.trace_cells`` of one run, for the state's concept."""
    recovery = {}
    for r in cells.to_pylist():
        if (r["family"], r["concept"]) == (state.family, state.concept):
            untraceable = r["corruption_gap"] is None or r["corruption_gap"] < MIN_CORRUPTION_GAP
            recovery[r["site"]] = (f"recovery {r['recovery']:.3f}" if r["recovery"] is not None else "–") + (
                f" (untraceable: gap {r['corruption_gap']:+.3f})" if untraceable else "")
    return recovery


def windows_view(snap: data.Snapshot, state: GalleryState, size: int) -> dict:
    """The compact grid of every window of size m, with each window's normalized drop. Returns what it adds to the
    URL."""
    model, scorer, family, concept, wanted = state.model, state.scorer, state.family, state.concept, state.wanted
    cases = data.query(snap, queries.gallery, model, scorer, family, concept, size).to_pylist()
    if not cases:
        st.info(f"No cases for {common.escape(row_label(family, concept))} at m = {size}.")
        return {}
    pickers = st.columns([3, 3, 2])
    prompt, cases, seeds = pick_prompt_and_seeds(cases, wanted, pickers)
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
    loc = data.query(snap, queries.localization_table, run_id, level) if run_id is not None else None
    measured = drop_texts(loc, state, size, threshold) if loc is not None else {}
    starts = sorted({case["window_start"] for case in cases
                     if case["kind"] == "window" and 0 <= case["window_start"] < bounds.MAX_LAYERS})
    if not starts:
        st.info(f"No window images for {common.escape(row_label(family, concept))} at m = {size}.")
        return {}
    if st.session_state.get("gal_focus") not in starts:
        strongest = strongest_window(loc, state, size, threshold) if loc is not None else None
        st.session_state["gal_focus"] = strongest if strongest in starts else starts[0]
    url_state.seed("gal_focus", wanted.get("window"), starts)
    focus = pickers[2].selectbox("Focused window", starts, format_func=lambda s: window_label(s, size), key="gal_focus",
                         help="Highlighted in the grid and shown at full size below it. Default: the localizing "
                              "window of largest drop at this m (the minimal window), else the largest drop.")
    st.caption(common.escape(
        f"Original prompt: “{prompt}” · target prompt: “{cases[0]['target']}” · scorer {scorer} · drop: normalized "
        f"drop of the window over all prompts and seeds of run {run_id} with its {level:.0%} interval (● interval ≥ "
        f"{threshold:g})"))
    side = thumb_side((len(starts) + 2) * len(seeds))
    by_kind = {kind: [case for case in cases if case["kind"] == kind] for kind in ("original", "target")}
    rows = [grid_row(snap, "Original", by_kind["original"], seeds, side=side),
            grid_row(snap, "Target", by_kind["target"], seeds, side=side)]
    windows = {start: [case for case in cases if case["kind"] == "window" and case["window_start"] == start]
               for start in starts}
    rows += [grid_row(snap, window_label(start, size), windows[start], seeds, measured.get(start, "–"),
                      start == focus, str(start), side) for start in starts]
    show_grid([f"seed {seed}" for seed in seeds], rows, f"Windows of m = {size}: {len(starts)} windows × {len(seeds)} "
              "seeds; under each window its normalized drop [interval] and the mean score of the seeds shown")
    full_size(windows[focus], seeds, window_label(focus, size))
    downloads.concept_sheet(snap, cases, model, scorer, family, concept, size, prompt)
    return {"run": run_id, "level": level, "threshold": threshold, "m": size, "window": focus, "prompt": prompt,
            "seeds": seeds_text(seeds)}


def trace_view(snap: data.Snapshot, state: GalleryState, component: str, noise: float) -> dict:
    """The compact grid of causal tracing's images: original, corrupted, and every restored site of one component,
    with each site's recovery. Returns what it adds to the URL."""
    model, scorer, family, concept, wanted = state.model, state.scorer, state.family, state.concept, state.wanted
    cases = data.query(snap, queries.trace_gallery, model, scorer, family, concept, component, noise, None).to_pylist()
    if not cases:
        st.info(f"No traced images for {common.escape(row_label(family, concept))} scored by {common.escape(scorer)}.")
        return {}
    pickers = st.columns([3, 3, 2])
    prompt, cases, seeds = pick_prompt_and_seeds(cases, wanted, pickers)
    trace_run = queries.default_run(data.query(snap, queries.run_list, TRACE), model)
    recovery = recovery_texts(queries.trace_cells(data.query(snap, queries.trace_table), trace_run, scorer, component,
                                                  noise), state) if trace_run else {}
    sites = sorted({case["site"] for case in cases if case["kind"] == "restored"
                    and case["site"] is not None and 0 <= case["site"] < bounds.MAX_LAYERS})
    if not sites:
        st.info("No restored sites were generated for this component.")
        return {}
    if st.session_state.get("gal_site") not in sites:
        st.session_state["gal_site"] = sites[0]
    url_state.seed("gal_site", state.wanted.get("site"), sites)
    focus = pickers[2].selectbox("Focused site", sites, key="gal_site", format_func=lambda s: f"site {s} restored",
                         help="Highlighted in the grid and shown at full size below it.")
    st.caption(common.escape(f"Original prompt: “{prompt}” · scorer {scorer} · recovery (restored − corrupted) / "
                             f"(original − corrupted) over all prompts and seeds of trace run {trace_run}, noise "
                             f"{noise:g} × embedding std"))
    side = thumb_side((len(sites) + 2) * len(seeds))
    rows = [grid_row(snap, kind, [case for case in cases if case["kind"] == kind], seeds, side=side)
            for kind in ("original", "corrupted")]
    restored = {site: [case for case in cases if case["kind"] == "restored" and case["site"] == site]
                for site in sites}
    rows += [grid_row(snap, f"site {site} restored", restored[site], seeds, recovery.get(site, "–"), site == focus,
                      str(site), side) for site in sites]
    show_grid([f"seed {seed}" for seed in seeds], rows, f"{component}: {len(sites)} sites × {len(seeds)} seeds; under "
              "each site its recovery and the mean score of the seeds shown")
    full_size(restored[focus], seeds, f"site {focus} restored")
    return {"trace_run": trace_run, "component": component, "noise": noise, "site": focus, "prompt": prompt,
            "seeds": seeds_text(seeds)}
