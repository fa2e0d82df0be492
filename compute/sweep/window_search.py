"""A window search: each concept's minimal localizing window among every size up to a maximum, at a fraction of the
cost of sweeping every size (``window_search:`` in a sweep config).

First pass: every window of the coarse sizes (the config's ``window_sizes``). Then, per concept whose smallest
localizing coarse size is m_k, every size strictly between the coarse size below it (0 for the first) and m_k:
the refinement. The minimal window is then the smallest localizing size of all swept, exact under the assumption the
search rests on: a size that fails below the first localizing coarse size means no smaller size localizes either
(a window of m layers holds windows of every smaller size; docs/statistics.md).

The refinement is planned from the stored results of the first pass, so it needs all of the first pass (every shard)
finished; a shard that finishes first says so, and a rerun of the sweep (any shard) runs what is left. With several
scorers, a concept's refinement sweeps the sizes each scorer's result asks for.
"""

from dataclasses import dataclass, field

from locolab.compute.plan import Unit, build_plan
from locolab.compute.settings import Settings
from locolab.compute.sweep.config import SweepConfig, WindowSearch
from locolab.compute.sweep.run import unit_done
from locolab.contract import store, summaries


def refinement_sizes(search: WindowSearch, localizing: set[int]) -> list[int]:
    """The sizes a concept's refinement sweeps, given which coarse sizes localize: every size between the largest
    coarse size below the first localizing one and that one; none when nothing localizes or size 1 does."""
    found = [m for m in search.coarse if m in localizing]
    if not found:
        return []
    below = [m for m in search.coarse if m < found[0]]
    return list(range((below[-1] if below else 0) + 1, found[0]))


def images(units: list[Unit]) -> int:
    """Distinct images ``units`` render (units of one family share its target images)."""
    return len({case.image_key for unit in units for case in unit.cases})


@dataclass
class Refinement:
    """The second pass of a search run: ``pending`` when the first pass is not finished yet (then nothing is planned),
    else ``sizes`` per (family, concept) and the ``units`` planned for them (all shards')."""

    pending: int = 0
    total: int = 0
    sizes: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    units: list[Unit] = field(default_factory=list)


def plan_refinement(config: SweepConfig, settings: Settings, num_layers: int, first_pass: list[Unit],
                    root: str) -> Refinement:
    """The refinement of ``config``'s search from the first pass stored under ``root`` (all of ``first_pass``, every
    shard's, must be there; else ``pending`` counts the units still missing)."""
    missing = [u for u in first_pass if not unit_done(root, config.model, u, config.scorers)]
    if missing:
        return Refinement(pending=len(missing), total=len(first_pass))
    search = config.window_search
    rows = summaries.localization(store.Store(root).connect(), search.threshold, [config.run_id],
                                  level=search.level).to_pylist()
    localizing: dict[tuple[str, str, str], set[int]] = {}
    for row in rows:
        localizing.setdefault((row["family"], row["concept"], row["scorer_id"]), set())
        if row["localizes"]:
            localizing[row["family"], row["concept"], row["scorer_id"]].add(row["window_size"])
    wanted: dict[tuple[str, str], set[int]] = {}
    for (family, concept, _), found in localizing.items():
        wanted.setdefault((family, concept), set()).update(refinement_sizes(search, found))
    refinement = Refinement(total=len(first_pass))
    for key, found in wanted.items():
        sizes = sorted(found)
        if sizes:
            refinement.sizes[key] = sizes
            refinement.units += build_plan(config, settings, num_layers, sizes, {key}, references=False)
    return refinement


def search_cost(config: SweepConfig, settings: Settings, num_layers: int, first_pass: list[Unit]) -> dict:
    """Images a search costs: ``first_pass`` (exact), ``refinement_max`` (at most: every concept refined over the
    widest gap between coarse sizes) and ``every_size`` (what sweeping every size up to the maximum would cost)."""
    search = config.window_search
    concepts = {(u.family, u.concept) for u in first_pass}
    previous, gaps = 0, []
    for size in search.coarse:
        gaps.append(list(range(previous + 1, size)))
        previous = size
    worst = max(gaps, key=lambda sizes: sum(num_layers - m + 1 for m in sizes))
    refined = build_plan(config, settings, num_layers, worst, concepts, references=False) if worst else []
    every = build_plan(config, settings, num_layers, list(range(1, search.max_size + 1)), concepts)
    return {"first_pass": images(first_pass), "refinement_max": images(refined), "worst_sizes": worst,
            "every_size": images(every)}
