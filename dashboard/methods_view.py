"""The "Methods compared" page's tables, without Streamlit: the concepts with evaluated edits, the evaluation
settings they share, and the grid editor x {localized window, all layers} of one concept
(``contract.method_grid``, what ``make compare`` prints)."""

from collections import Counter

from locolab.contract.method_grid import cells, grid

# The headline numbers a grid can show, each with what it measures (docs/method.md §4.2).
MEASURES = {
    "efficacy": "change of the concept's rate on its prompts, with its paired interval (should fall)",
    "concept rate": "the concept's rate on its prompts, before -> after",
    "removed": "whether the concept's rate fell (every detector of it, interval below 0)",
    "worst other change": "the other rate whose change interval reaches lowest (specificity; below 0 is a flag)",
    "flags": "other rates that fell (collateral damage)",
    "1 - SSIM": "paired 1 - SSIM of the preservation images before and after (preservation; 0: unchanged)",
    "CLIP distance": "paired 1 - cosine of the preservation images' CLIP embeddings",
    "changed": "share of preservation images with SSIM < 0.8",
    "CMMD (p)": "distribution shift of the preservation images, with its permutation p-value",
    "under attack": "the concept's rate under the recovery attack and whether it came back (--attack; - without it)",
}
# The columns of the every-cell table on a 1280-pixel screen (the CSV has them all).
SHOWN = ("editor", "scope", "layers", "removed", "efficacy", "flags", "worst other change", "1 - SSIM", "changed",
         "CMMD (p)")


def evaluated(records: list[dict]) -> list[tuple[str, str, str]]:
    """(model, family, concept) of every edit with an evaluation battery, most evaluated edits first."""
    counts = Counter((r.get("model"), r.get("family"), r.get("concept")) for r in records
                     if any("battery" in s for s in r.get("evals", [])))
    return [key for key, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def settings_choices(found: list[tuple[dict, dict]]) -> list[str]:
    """The evaluation ids among ``found``, the one shared by most edits first: edits compare under one set of
    evaluation settings (an evaluation's id is a digest of its settings)."""
    counts = Counter(summary.get("eval_id") for _, summary in found if "battery" in summary)
    return [eval_id for eval_id, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def concept_cells(found: list[tuple[dict, dict]], eval_id: str) -> list[dict]:
    """``method_grid.cells`` of the evaluations in ``found`` with ``eval_id``."""
    return cells([(record, summary) for record, summary in found if summary.get("eval_id") == eval_id])


def grid_table(rows: list[dict], measure: str) -> list[dict]:
    """The grid editor x scope of one of ``MEASURES``."""
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}: one of {', '.join(MEASURES)}")
    return grid(rows, measure)


def concept_label(key: tuple[str, str, str]) -> str:
    """(model, family, concept) as the concept picker shows it."""
    return f"{key[2]} ({key[1]}, {key[0]})"


def settings_label(summaries: dict, eval_id: str) -> str:
    """An evaluation id with its settings in a line: scorer, seeds, steps, size, preservation set."""
    summary = summaries[eval_id]
    return (f"{eval_id}: {summary.get('scorer_id')}, seeds {summary.get('seeds')}, {summary.get('steps')} steps, "
            f"{summary.get('width')}x{summary.get('height')} px, {summary.get('unrelated') or 'all'} unrelated prompts")
