"""One runner for every study: ``run(spec, model, context)`` plans the study (LocoGen, with a window search planning
its own second pass from the stored first; causal tracing; attention contribution), takes this process's shard,
skips what an earlier run finished, runs the rest into the artifact root and says what it did. The command line,
``compute.reproduce`` and the notebook's ``localize`` all call it.

Usage::

    outcome = run(spec, load_model(spec.model), Context(root="artifacts"))
"""

import time
from dataclasses import dataclass, field

from locolab.compute.models.loading import Model, resolve
from locolab.compute.plan import Unit, build_plan, shard_units
from locolab.compute.settings import Settings
from locolab.compute.sweep.run import SweepStats, run_study
from locolab.compute.sweep.window_search import Refinement, plan_refinement
from locolab.contract.names import ATTENTION_CONTRIBUTION, LOCOGEN, TRACE
from locolab.contract.specs import StudySpec


@dataclass(frozen=True)
class Context:
    """Where and how a study runs (nothing here changes its results).

    Attributes:
        root: the artifact root.
        shard, num_shards: this process's share of the units (round robin).
        limit: at most this many work units (per stage).
        batch_size: images per pipeline call (None: the spec's, else chosen from free memory).
        progress: draw progress bars.
        began: ``time.perf_counter()`` when loading the model started (for the recorded load time).
        details: added to the run's recorded config (e.g. what a reproduction reproduces).
    """

    root: str
    shard: int = 0
    num_shards: int = 1
    limit: int | None = None
    batch_size: int | None = None
    progress: bool = True
    began: float | None = None
    details: dict = field(default_factory=dict)


@dataclass
class Plan:
    """A LocoGen study's first pass: its sampling settings, every unit (all shards') and this shard's."""

    settings: Settings
    num_layers: int
    units: list[Unit]
    mine: list[Unit]

    @property
    def images(self) -> int:
        """Distinct images this shard's units render."""
        return len({case.image_key for unit in self.mine for case in unit.cases})


@dataclass
class Outcome:
    """What a run did: its (LocoGen) plan, the work of each stage, and the window search's second pass or the
    attention-contribution study's result where the study has one."""

    run_id: str
    stats: SweepStats
    plan: Plan | None = None
    refinement: Refinement | None = None
    contribution: object = None  # contribution_study.StudyResult


def settings_of(spec: StudySpec, model: Model | None = None) -> Settings:
    """The study's sampling settings: its own, else the model's defaults (of ``model``, else its registry entry)."""
    return Settings.defaults(model.spec if model else resolve(spec.model), spec.steps, spec.guidance,
                             spec.resolution)


def plan(spec: StudySpec, num_layers: int, context: Context, model: Model | None = None) -> Plan:
    """The first pass of a LocoGen study on a model with ``num_layers`` cross-attention layers (checked here), and
    this shard's part of it; no model needs to be loaded."""
    spec.check_layers(num_layers)
    settings = settings_of(spec, model)
    units = build_plan(spec, settings, num_layers)
    return Plan(settings, num_layers, units, shard_units(units, context.shard, context.num_shards)[:context.limit])


def run(spec: StudySpec, model: Model, context: Context) -> Outcome:
    """Run study ``spec`` on a loaded model into ``context.root`` (resuming: finished units are skipped)."""
    began = time.perf_counter() if context.began is None else context.began
    batch_size = context.batch_size or spec.batch_size
    if spec.method == ATTENTION_CONTRIBUTION:
        from locolab.compute.contribution.study import run_study as run_contribution

        result = run_contribution(spec, model, settings_of(spec, model), context.root, batch_size, context.shard,
                                  context.num_shards, context.limit, context.progress, began)
        return Outcome(spec.run_id, result.localized, contribution=result)
    if spec.method == TRACE:
        from locolab.compute.trace import TraceRenderer, plan_trace

        settings = settings_of(spec, model)
        traced = plan_trace(model, spec, settings)
        mine = shard_units(traced.units, context.shard, context.num_shards)[:context.limit]
        stats = run_study(spec, model, mine, settings, context.root, batch_size, context.shard, context.num_shards,
                          context.progress, TraceRenderer(model, settings, traced.sites, traced.text),
                          traced.layer_rows, {**traced.details, **context.details}, began)
        return Outcome(spec.run_id, stats)
    if spec.method != LOCOGEN:
        raise ValueError(f"unknown study method {spec.method!r}")
    first = plan(spec, len(model.layers), context, model)
    refinement = []

    def second_pass() -> list[Unit]:
        """A window search's refinement, planned from the stored first pass (all shards')."""
        refinement.append(plan_refinement(spec, first.settings, first.num_layers, first.units, context.root))
        return shard_units(refinement[0].units, context.shard, context.num_shards)

    stats = run_study(spec, model, first.mine, first.settings, context.root, batch_size, context.shard,
                      context.num_shards, context.progress, details=context.details or None, began=began,
                      follow_up=second_pass if spec.window_search else None)
    return Outcome(spec.run_id, stats, first, refinement[0] if refinement else None)
