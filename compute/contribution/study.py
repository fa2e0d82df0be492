"""An attention-contribution study (the DiT paper's localization) of a sweep config's prompts, as its own run in the
store (method ``attention-contribution``), resumable and shardable like a sweep, in two stages:

1. Localize: every prompt of a concept is generated once per seed while each site's contribution of the concept's
   tokens is recorded (``contribution.record_contributions``); the image is scored as the ``original`` reference,
   the target prompt as the ``target`` reference, and every site's contribution is stored (table ``contributions``).
2. Intervene: once every prompt of a concept is localized (by any shard), its k dominant sites (largest mean
   contribution over its prompts and seeds) are fed the target prompt, LocoGen's swap at those sites instead of a
   window, and the images are scored (kind ``top-k``, the k sites in ``blocks``), so the
   normalized drop (original − top-k) / (original − target) compares with LocoGen's windows.

A shard whose concepts are not fully localized yet leaves their interventions for a rerun.
"""

from dataclasses import asdict, dataclass

import numpy as np

from locolab.compute.contribution.measure import concept_positions, record_contributions
from locolab.compute.generation import Case, generate_batch, make_encoder
from locolab.compute.models.loading import Model
from locolab.compute.plan import PlannedCase, Unit, case_digest, digest, score_text, units_of
from locolab.compute.settings import Settings
from locolab.compute.sweep.config import SweepConfig
from locolab.contract import store, summaries
from locolab.contract.errors import UserError
from locolab.contract.names import ATTENTION_CONTRIBUTION, CONTRIBUTION, CROSS_ATTENTION, TOP_K


def _case(config: SweepConfig, settings: Settings, family: str, concept, prompt: str, target: str, kind: str,
          seed: int, blocks: tuple[int, ...] | None = None, swap_pooled: bool = False) -> PlannedCase:
    model, tuned = config.model, asdict(settings)
    if kind == "target":  # the LocoGen target reference's image
        image_key = digest(model, tuned, target, None, None, seed)
    else:  # originals are generated again to record contributions; top-k images are this method's own
        image_key = digest(model, tuned, prompt, ATTENTION_CONTRIBUTION, kind, blocks, target, swap_pooled, seed)
    case_id = case_digest(model, tuned, family, concept, prompt, target, ATTENTION_CONTRIBUTION, kind, blocks,
                          swap_pooled, seed)
    return PlannedCase(case_id, image_key, family, concept.name, prompt, target, kind, None, None, seed,
                       score_text(concept), ATTENTION_CONTRIBUTION, CROSS_ATTENTION, None, blocks)


def plan_localization(config: SweepConfig, settings: Settings) -> list[Unit]:
    """Stage 1: per prompt, its original (contributions recorded) and target references, for every seed."""
    return units_of(config, lambda family, concept, prompt, target: [
        _case(config, settings, family, concept, prompt, target, kind, seed)
        for kind in ("original", "target") for seed in config.seeds])


def plan_intervention(config: SweepConfig, settings: Settings, dominant: dict[tuple[str, str], list[int]],
                      swap_pooled: bool) -> list[Unit]:
    """Stage 2: per prompt of each concept in ``dominant`` (its sites, most contributing first), the top-k
    intervention for every k of the config and every seed."""
    return units_of(config, lambda family, concept, prompt, target: [
        _case(config, settings, family, concept, prompt, target, TOP_K, seed,
              tuple(sorted(dominant[family, concept.name][:k])), swap_pooled)
        for k in config.contribution.top_k for seed in config.seeds] if (family, concept.name) in dominant else [])


@dataclass
class Dominance:
    """What stage 1 found so far, per (family, concept): its sites by falling mean contribution, and the concepts
    whose prompts are not all localized yet (with how many of their images are)."""

    dominant: dict[tuple[str, str], list[int]]
    pending: dict[tuple[str, str], tuple[int, int]]


def localization_cases(units: list[Unit]) -> list[str]:
    """The case ids of stage 1 (``plan_localization``): shared by every run of the same prompts and settings, so a
    rerun with other top-k reads the contributions and references an earlier run stored."""
    return [case.case_id for unit in units for case in unit.cases]


def dominance(root: str, config: SweepConfig, units: list[Unit]) -> Dominance:
    """Rank each concept's sites by its mean contribution in run ``config.run_id`` (or an earlier run of the same
    localization cases), for concepts whose every localization image (``units``: all of stage 1, every shard's) has
    its contributions stored."""
    expected: dict[tuple[str, str], int] = {}
    for unit in units:
        key = (unit.family, unit.concept)
        expected[key] = expected.get(key, 0) + sum(case.kind == "original" for case in unit.cases)
    rows = summaries.contribution_map(store.Store(root).connect(), run_ids=[config.run_id],
                                      case_ids=localization_cases(units)).to_pylist()
    found: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        if row["model"] == config.model:
            found.setdefault((row["family"], row["concept"]), []).append(row)
    dominant, pending = {}, {}
    for key, count in expected.items():
        sites = found.get(key, [])
        done = min((site["n_images"] for site in sites), default=0)
        if done < count:
            pending[key] = (done, count)
        else:
            dominant[key] = [site["site"] for site in sorted(sites, key=lambda s: (-s["contribution"], s["site"]))]
    return Dominance(dominant, pending)


class LocalizeRenderer:
    """Generates stage-1 batches (a ``sweep.Render``), recording each original's contributions and writing them
    to the store before its images are written, so a unit whose images exist has its contributions too.

    Args:
        model: the loaded model.
        settings: sampling settings.
        config: the study (its run id and model name tag the rows).
        root: the artifact root.
    """

    def __init__(self, model: Model, settings: Settings, config: SweepConfig, root: str):
        self.model, self.settings, self.config, self.root = model, settings, config, root
        self.encoder = make_encoder(model)

    def __call__(self, batch: list[PlannedCase]) -> np.ndarray:
        positions = [concept_positions(self.model, c.prompt, c.concept) if c.kind == "original" else [] for c in batch]
        with record_contributions(self.model, positions) as found:
            images = generate_batch(self.model, [Case(c.generation_prompt, c.seed) for c in batch], self.settings,
                                    self.encoder)
        means = found.mean()
        rows = [{"case_id": case.case_id, "run_id": self.config.run_id, "model": self.config.model,
                 "family": case.family, "concept": case.concept, "seed": case.seed, "component": CROSS_ATTENTION,
                 "site": site, "contribution": float(means[i, site])}
                for i, case in enumerate(batch) if case.kind == "original" for site in range(means.shape[1])]
        if rows:
            store.write_table("contributions", rows, part=f"{CONTRIBUTION}-{batch[0].case_id}", root=self.root)
        return images


def intervention_renderer(model: Model, settings: Settings, swap_pooled: bool):
    """Generates stage-2 batches: each prompt with its top-k sites fed the target (and, with ``swap_pooled``, the
    target's pooled text embedding)."""
    encoder = make_encoder(model)
    return lambda batch: generate_batch(model, [Case(c.prompt, c.seed, sites=c.blocks, target=c.target,
                                                     swap_pooled=swap_pooled) for c in batch], settings, encoder)


@dataclass
class StudyResult:
    """What a run of both stages did: each stage's ``sweep.SweepStats`` (None when it had nothing to run) and the
    concepts' dominance after stage 1."""

    localized: object
    intervened: object
    dominance: Dominance
    swap_pooled: bool


def check_top_k(config: SweepConfig, num_sites: int) -> None:
    """Refuse a top-k larger than the model's sites: it would feed every site, as k = ``num_sites`` does, and store
    the same intervention twice under two names."""
    over = [k for k in config.contribution.top_k if k > num_sites]
    if over:
        raise UserError(f"top-k {over[0]} exceeds the {num_sites} text-reading sites of {config.model}: use k from 1 "
                        f"to {num_sites} (--top-k or the config's contribution.top_k)")


def run_study(config: SweepConfig, model: Model, settings: Settings, root: str, batch_size: int | None = None,
              shard: int = 0, num_shards: int = 1, limit: int | None = None, show_progress: bool = True,
              began: float | None = None) -> StudyResult:
    """Run both stages of the study ``config`` (method ``attention-contribution``) on a loaded model.

    Args:
        config, model, settings, root: as ``sweep.run_study``.
        batch_size: images per pipeline call (None: ``batching.auto_batch_size``).
        shard, num_shards: this process's share of each stage's units.
        limit: at most this many units per stage.
        show_progress: draw progress bars.
        began: ``time.perf_counter()`` when loading started.
    """
    from locolab.compute.batching import auto_batch_size
    from locolab.compute.plan import shard_units
    from locolab.compute.sweep import run as sweep

    check_top_k(config, len(model.layers))
    spec = config.contribution
    swap_pooled = model.arch.topk_swaps_pooled if spec.swap_pooled is None else spec.swap_pooled
    details = {"swap_pooled": swap_pooled, "swap": model.arch.swap_note,
               "measure": "mean over image tokens of ||W_o (P[:, concept] V[concept]) + b_o|| (single-stream: no W_o, "
                          "b_o), averaged over steps, prompts and seeds"}
    batch_size = batch_size or auto_batch_size(model, settings)
    localization = plan_localization(config, settings)
    mine = shard_units(localization, shard, num_shards)[:limit]
    localized = sweep.run_study(config, model, mine, settings, root, batch_size, shard, num_shards, show_progress,
                                LocalizeRenderer(model, settings, config, root), details=details, began=began)
    found = dominance(root, config, localization)
    intervention = shard_units(plan_intervention(config, settings, found.dominant, swap_pooled), shard,
                               num_shards)[:limit]
    intervened = None
    if intervention:
        intervened = sweep.run_study(config, model, intervention, settings, root, batch_size, shard, num_shards,
                                     show_progress, intervention_renderer(model, settings, swap_pooled),
                                     details=details)
    return StudyResult(localized, intervened, found, swap_pooled)
