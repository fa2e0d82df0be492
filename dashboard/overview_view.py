"""The Overview's parts: a headline per model saying what the root shows (how many concepts localize in the run the
Layer map opens on), and each run's and edit's link to the page that shows it."""

from urllib.parse import urlencode

import pyarrow as pa
import pyarrow.compute as pc

from locolab.contract import queries
from locolab.contract.names import ATTENTION_CONTRIBUTION, CONTRIBUTION, TRACE
from locolab.contract.summaries import DEFAULT_LEVEL
from locolab.dashboard import common, data
from locolab.dashboard.map_view import LEVELS

DEFAULT_THRESHOLD = 0.5  # the Layer map's
MAX_HEADLINES = 8  # models summarized in the headline; the runs table lists every run


def page_link(page: str, view: dict) -> str:
    """A link to ``page`` (its URL path) showing ``view`` (query parameters; None left out), relative to the
    dashboard's address."""
    return f"{page}?{urlencode({name: value for name, value in view.items() if value is not None})}"


def run_link(run: dict) -> str:
    """Where a row of ``queries.runs`` is shown: its map on the Layer map."""
    method = run["method"]
    if method == TRACE:
        return page_link("layer_map", {"view": "tracing", "model": run["model"], "trace_run": run["run_id"]})
    if method in (CONTRIBUTION, ATTENTION_CONTRIBUTION):
        return page_link("layer_map", {"view": "contribution", "model": run["model"]})
    return page_link("layer_map", {"view": "locogen", "model": run["model"], "run": run["run_id"]})


def edit_link(edit_id: str) -> str:
    return page_link("edits", {"edit": edit_id})


def localized(loc: pa.Table, threshold: float) -> tuple[int, int, str | None]:
    """(concepts that localize, concepts, scorer) in a run's ``queries.localization_table`` at ``threshold``, for its
    first scorer: a concept localizes when one of its windows' paired tests clears the threshold (Holm-adjusted over
    the concept's windows), the Layer map's ● and verdict."""
    if not loc.num_rows:
        return 0, 0, None
    scorer = sorted(set(loc["scorer_id"].to_pylist()))[0]
    mine = loc.filter(pc.equal(loc["scorer_id"], scorer))
    concepts = len(set(zip(mine["family"].to_pylist(), mine["concept"].to_pylist())))
    return queries.minimal_windows(loc, scorer, threshold).num_rows, concepts, scorer


def judged_at(threshold: str | None, level: str | None) -> tuple[float, float]:
    """The threshold and interval level the headline judges at: the ones the researcher last looked at (text from
    ``url_state.last``) when valid on the Layer map, else its defaults."""
    try:
        shown = float(threshold)
    except (TypeError, ValueError):
        shown = DEFAULT_THRESHOLD
    return (shown if 0.05 <= shown <= 1 else DEFAULT_THRESHOLD,
            next((value for value in LEVELS if str(value) == level), DEFAULT_LEVEL))


def headlines(snap: data.Snapshot, threshold: float, level: float) -> list[str]:
    """One Markdown line per model with a LocoGen run: how many of its concepts localize in the run the Layer map
    opens on (the newest finished), with the threshold and interval level, and a link to that map."""
    runs = data.query(snap, queries.run_list)
    lines = []
    for model in sorted(set(runs["model"].to_pylist()))[:MAX_HEADLINES]:
        run_id = queries.default_run(runs, model)
        found, concepts, scorer = localized(data.query(snap, queries.localization_table, run_id, level), threshold)
        if not concepts:
            continue
        link = page_link("layer_map", {"view": "locogen", "model": model, "run": run_id, "threshold": threshold,
                                       "level": level})
        lines.append(f"**{found} of {concepts} concepts localize** in run [{common.escape(run_id)}]({link}) of "
                     f"{common.escape(model)} (scorer {common.escape(scorer)}; a window removes more than "
                     f"{threshold:g} of the gap, {level:.0%} paired test)")
    return lines
