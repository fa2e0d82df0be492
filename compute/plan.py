"""The sweep plan: a deterministic table of cases, grouped into work units of one prompt each.

A unit is one (family, concept, prompt) with its references (the original prompt, the plain target prompt and the
all-layers swap: every layer fed the target) and every window x seed. Units are the grain of resumption and sharding:
a unit's results are written as one Parquet part per table, under a name derived from its cases, so rewriting a unit
replaces its files instead of adding rows.

A causal-tracing plan (``build_trace_plan``) has the same units, with original, corrupted and restored cases.
"""

import hashlib
import json
import os
from dataclasses import asdict, dataclass

from locolab.compute.settings import Settings
from locolab.compute.sweep.config import Concept, SweepConfig
from locolab.contract.names import ALL_LAYERS, CROSS_ATTENTION, LOCOGEN, ORIGINAL, TARGET, WINDOW

_ENCODER = json.JSONEncoder(sort_keys=True)  # json.dumps(..., sort_keys=True) builds one per call


def digest(*parts) -> str:
    """A short digest of JSON-able ``parts``: the one hash behind image keys, case ids and unit ids."""
    return hashlib.sha256(_ENCODER.encode(parts).encode()).hexdigest()[:16]


def case_digest(model: str, tuned: dict, family: str, concept: Concept, prompt: str, *settings) -> str:
    """A case's id, for every study kind: the model, the sampling settings, the family, the concept with the text its
    images are scored against (a study that changes only its score text scores its images anew), the prompt, and the
    method's own settings of the case (kind, window or site, seed, ...)."""
    return digest(model, tuned, family, concept.name, score_text(concept), prompt, *settings)


def score_text(concept: Concept) -> str:
    """The text ``concept``'s images are scored against."""
    return concept.score_text.format(concept=concept.name)


@dataclass(frozen=True)
class PlannedCase:
    """One row of the plan. ``image_key`` names the image: cases that must produce the same image share it (the
    target reference of a family, scored once per concept)."""

    case_id: str
    image_key: str
    family: str
    concept: str
    prompt: str
    target: str
    kind: str
    window_start: int | None
    window_size: int | None
    seed: int
    score_text: str
    method: str = LOCOGEN
    component: str = CROSS_ATTENTION
    noise: float | None = None
    blocks: tuple[int, ...] | None = None  # the sites an attention-contribution top-k case feeds the target
    site: int | None = None  # the site a causal-tracing case restores

    @property
    def window(self) -> tuple[int, int] | None:
        return None if self.window_start is None else (self.window_start, self.window_start + self.window_size)

    @property
    def generation_prompt(self) -> str:
        return self.target if self.kind == TARGET else self.prompt


@dataclass(frozen=True)
class Unit:
    unit_id: str
    family: str
    concept: str
    prompt: str
    cases: tuple[PlannedCase, ...]


def units_of(config: SweepConfig, make) -> list[Unit]:
    """The one planner loop of every study kind: a unit per (family, concept, prompt) in config order, holding the
    cases ``make(family_name, concept, prompt, target)`` returns (none: no unit); its id is a digest of the scorers and
    its case ids."""
    units = []
    for family in config.families:
        for concept in family.concepts:
            for prompt, target in family.prompts(concept):
                cases = make(family.name, concept, prompt, target)
                if cases:
                    unit_id = digest(config.scorer, [c.case_id for c in cases])
                    units.append(Unit(unit_id, family.name, concept.name, prompt, tuple(cases)))
    return units


# ``tuned`` is ``asdict(settings)``, computed once per plan: a plan of a real model has ~10^5 cases.
def _case(model: str, tuned: dict, family, concept, prompt, target, kind, start, size, seed) -> PlannedCase:
    generated = target if kind == TARGET else prompt
    window = None if start is None else [start, start + size]
    image_key = digest(model, tuned, generated, window, target if window else None, seed)
    case_id = case_digest(model, tuned, family, concept, prompt, target, kind, window, seed)
    return PlannedCase(case_id, image_key, family, concept.name, prompt, target, kind, start, size, seed,
                       score_text(concept))


def build_plan(config: SweepConfig, settings: Settings, num_layers: int, window_sizes: list[int] | None = None,
               concepts: set[tuple[str, str]] | None = None, references: bool = True) -> list[Unit]:
    """All units of a sweep, in a fixed order (families, concepts, templates as written in the config).

    Within a unit: original references, target references, all-layers references (the window of every layer, whose
    image a window of size ``num_layers`` shares), then each window size and start, each seed.

    Args:
        config: the study.
        settings: its sampling settings.
        num_layers: the model's cross-attention layer count.
        window_sizes: the sizes to plan (default: ``config.window_sizes``; a window search's refinement passes others).
        concepts: only these (family, concept) pairs (default: all).
        references: include the reference cases (a refinement's units leave them out: the first pass has them).
    """
    tuned = asdict(settings)
    sizes = config.window_sizes if window_sizes is None else window_sizes

    def make(family: str, concept: Concept, prompt: str, target: str) -> list[PlannedCase]:
        if concepts is not None and (family, concept.name) not in concepts:
            return []
        args = (config.model, tuned, family, concept, prompt, target)
        cases = []
        if references:
            cases += [_case(*args, ORIGINAL, None, None, seed) for seed in config.seeds]
            cases += [_case(*args, TARGET, None, None, seed) for seed in config.seeds]
            cases += [_case(*args, ALL_LAYERS, 0, num_layers, seed) for seed in config.seeds]
        return cases + [_case(*args, WINDOW, start, size, seed)
                        for size in sizes for start in range(num_layers - size + 1) for seed in config.seeds]

    return units_of(config, make)


def _trace_case(model: str, tuned: dict, family, concept, prompt, method, component, noise, kind, site,
                seed) -> PlannedCase:
    # The clean image is the LocoGen original's; the corrupted image is shared by every (method, component).
    if kind == "original":
        image_key = digest(model, tuned, prompt, None, None, seed)
    elif kind == "corrupted":
        image_key = digest(model, tuned, prompt, concept.name, noise, kind, seed)
    else:
        image_key = digest(model, tuned, prompt, concept.name, method, component, noise, kind, site, seed)
    case_id = case_digest(model, tuned, family, concept, prompt, method, component, noise, kind, site, seed)
    return PlannedCase(case_id, image_key, family, concept.name, prompt, None, kind, None, None, seed,
                       score_text(concept), method, component, noise, site=site)


def build_trace_plan(config: SweepConfig, settings: Settings, sites: dict[tuple[str, str], int]) -> list[Unit]:
    """All units of a causal trace, one per prompt as in ``build_plan``.

    Args:
        sites: site count per (method, component) to trace, e.g. ``{(TRACE_UNET, CROSS_ATTENTION): 16,
            (TRACE_TEXT, TEXT_ENCODER): 12}``. Each group gets its own original and corrupted references.

    Within a unit, per group and seed: original, corrupted, then each site restored.
    """
    tuned, noise = asdict(settings), config.trace.noise

    def make(family: str, concept: Concept, prompt: str, target: str) -> list[PlannedCase]:
        cases = []
        for (method, component), count in sites.items():
            args = (config.model, tuned, family, concept, prompt, method, component, noise)
            for seed in config.seeds:
                cases += [_trace_case(*args, kind, None, seed) for kind in ("original", "corrupted")]
                cases += [_trace_case(*args, "restored", site, seed) for site in range(count)]
        return cases

    return units_of(config, make)


def shard_units(units: list[Unit], shard: int, num_shards: int) -> list[Unit]:
    """The units of shard ``shard`` of ``num_shards`` (round robin, so shards get similar work)."""
    return units[shard::num_shards]


def launcher_shard(index: int, count: int, device: str) -> tuple[int, int, str]:
    """Under ``accelerate launch`` or ``torchrun`` (which set RANK / WORLD_SIZE / LOCAL_RANK), split shard ``index``
    of ``count`` further across the launched processes, one GPU each; returns this process's (shard, num_shards,
    device). Shards are independent: no process group is needed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return index, count, device
    rank = int(os.environ["RANK"])
    if device == "auto":
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()}"
    return index * world + rank, count * world, device
