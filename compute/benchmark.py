"""The localization benchmark: each method run on planted toy worlds (answers known by construction) and scored
against their plans (``contract.planted``).

Per planted model, the benchmark study (``compute/configs/toyworld-planted.yaml``, the model and seeds overridden)
runs through the ordinary runner into the artifact root, so its images and scores are a normal run's (resumable,
shown by the dashboard). What each method names per concept:

- LocoGen: the minimal localizing window's layers (``contract.summaries.concept_summary``; none when no window
  localizes or the concept is not measurable);
- causal tracing (cross-attention outputs restored, ``trace``): the k sites of highest recovery;
- attention contribution: the k sites of highest contribution (``contract.summaries.contribution_map``);

with k the number of planted layers of the family (1 for an empty plan): the top-k methods are told the answer's
size, LocoGen is not. So that LocoGen can be compared on their terms too, its run also gives the rows of
``locogen-top-k``: per concept the window of k layers with the largest normalized drop, significant or not (nothing
for a concept that is not measurable). Images are scored by the toy world's exact detectors (``toyworld-detect``)
unless another scorer is named, so a miss is the method's and not the measurement's. The table
(``contract.planted.hit_rates``) is written to the root's ``localization_benchmark`` table, one part per benchmark
run.
"""

import hashlib
import json
import math
import time
from dataclasses import replace
from datetime import UTC, datetime

import pyarrow as pa

from locolab.compute.models.loading import load_model, resolve
from locolab.compute.runner import Context, run
from locolab.compute.sweep.config import load_config, with_contribution, with_trace
from locolab.compute.toyworld.detect import DETECTOR_SCORER
from locolab.compute.toyworld.train_planted import plan_for
from locolab.contract import planted, store, summaries
from locolab.contract.errors import UserError

CONFIG = "toyworld-planted"
METHODS = ("locogen", "trace", "contribution")
TOLD_K = "locogen-top-k"  # LocoGen's strongest window of the plan's size, from the LocoGen run (no run of its own)
# The planted toy worlds and the two controls: every family readable everywhere (LocoGen should name no layer), and
# random weights (nothing drawn: LocoGen should find every concept not measurable).
PLANTED_MODELS = ("toyworld-planted-a", "toyworld-planted-b", "toyworld-planted-control", "toyworld-random")
# Four seeds: 16 prompt x seed units per concept. With 8, a window whose every unit but one drops to the target's
# rate is not significant after Holm's adjustment over a concept's 31 windows (p 0.0011 x 31 > 0.025).
SEEDS = (0, 1, 2, 3)


def plan_of(model: str) -> dict[str, list[int]]:
    """The plan of a registered planted model (``plan.json`` beside its UNet)."""
    plan = plan_for(resolve(model))
    if plan is None:
        raise UserError(f"{model!r} has no planted plan: use a planted model ({', '.join(PLANTED_MODELS)})")
    return plan


def study(model: str, seeds: tuple[int, ...], families: tuple[str, ...] | None = None,
          window_sizes: tuple[int, ...] | None = None, concepts: int | None = None, scorer: str = DETECTOR_SCORER):
    """The benchmark's LocoGen study on ``model``: the shipped config with the model, seeds and scorer, and optionally
    the families, window sizes and the number of concepts per family (the first ones) replaced."""
    config = load_config(CONFIG)
    chosen = config.families
    if families:
        unknown = sorted(set(families) - {f.name for f in config.families})
        if unknown:
            raise UserError(f"unknown family {unknown[0]!r}: use {', '.join(f.name for f in config.families)}")
        chosen = tuple(f for f in config.families if f.name in families)
    chosen = tuple(replace(f, concepts=f.concepts[:concepts or None]) for f in chosen)
    return replace(config, model=model, seeds=tuple(seeds), families=chosen, scorer=scorer,
                   window_sizes=tuple(window_sizes or config.window_sizes))


def _top(rows: list[dict], key: str, k: int) -> list[int]:
    """The ``k`` sites with the largest ``key`` (ties: the earlier site)."""
    ranked = sorted((r for r in rows if r[key] is not None), key=lambda r: (-r[key], r["site"]))
    return sorted(r["site"] for r in ranked[:k])


def named_layers(method: str, con, run_id: str, plan: dict, rule: summaries.Rule) -> list[dict]:
    """Per (family, concept) of a finished run: the layers ``method`` names."""
    if method == "locogen":
        rows = summaries.concept_summary(con, run_ids=[run_id], **rule.options()).to_pylist()
        return [{"family": r["family"], "concept": r["concept"], "measurable": r["measurable"],
                 "layers": list(range(r["window_start"], r["window_start"] + r["window_size"]))
                 if r["localizes"] else []} for r in rows]
    groups: dict[tuple, list[dict]] = {}
    if method == "trace":
        for r in summaries.trace_effects(con, [run_id], rule.level, rule.resamples, rule.seed).to_pylist():
            groups.setdefault((r["family"], r["concept"]), []).append(r)
        key = "recovery"
    else:
        for r in summaries.contribution_map(con, [run_id]).to_pylist():
            groups.setdefault((r["family"], r["concept"]), []).append(r)
        key = "contribution"
    return [{"family": f, "concept": c, "layers": _top(rows, key, len(plan.get(f, [])) or 1)}
            for (f, c), rows in groups.items()]


def strongest_windows(rows: list[dict], plan: dict) -> list[dict]:
    """Per (family, concept) of LocoGen's window estimates (``summaries.window_estimates`` rows): the window of k
    layers (k the family's planted count, 1 for an empty plan) with the largest normalized drop (ties: the earlier
    window); none named when the concept is not measurable. Families without a window of k layers are left out."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["window_size"] == (len(plan.get(r["family"], [])) or 1):
            groups.setdefault((r["family"], r["concept"]), []).append(r)

    def strength(r: dict) -> tuple:
        drop = r["normalized_drop"]
        return (-math.inf if drop is None or math.isnan(drop) else drop, -r["window_start"])

    chosen = {key: max(group, key=strength) for key, group in groups.items()}
    return [{"family": f, "concept": c, "measurable": r["measurable"],
             "layers": list(range(r["window_start"], r["window_start"] + r["window_size"])) if r["measurable"] else []}
            for (f, c), r in chosen.items()]


def benchmark_id(*settings) -> str:
    """A short hash of the settings (a rerun with the same settings replaces its part)."""
    text = json.dumps([list(s) if isinstance(s, (list, tuple)) else s for s in settings])
    return "bench-" + hashlib.sha256(text.encode()).hexdigest()[:10]


def benchmark(root: str, models=PLANTED_MODELS, methods=METHODS, seeds=SEEDS, families=None, window_sizes=None,
              concepts: int | None = None, device: str = "auto", batch_size: int | None = None,
              progress: bool = False, rule: summaries.Rule | None = None, shard: int = 0, num_shards: int = 1,
              scorer: str = DETECTOR_SCORER, log=print) -> pa.Table | None:
    """Run every method on every planted model into ``root``; returns the hit-rate table (also written there).

    With ``num_shards`` > 1 only this process's share of each study runs (the runner's round robin) and no table is
    made: a last call with one shard finds every study done and makes it."""
    rule = rule or summaries.Rule()
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r}: use {', '.join(METHODS)}")
    plans = {m: plan_of(m) for m in models}
    named = []
    for name in models:
        locogen = study(name, seeds, families, window_sizes, concepts, scorer)
        k = max([len(v) for v in plans[name].values()] + [1])
        specs = {"locogen": locogen, "trace": with_trace(locogen),
                 "contribution": with_contribution(locogen, top_k=(k,))}
        model = load_model(name, device=device)
        for method in methods:
            began = time.perf_counter()
            spec = specs[method]
            run(spec, model, Context(root, shard, num_shards, batch_size=batch_size, progress=progress))
            if num_shards > 1:
                log(f"{name} {method}: shard {shard}/{num_shards} in {time.perf_counter() - began:.0f} s")
                continue
            con = store.Store(root).connect()
            rows = named_layers(method, con, spec.run_id, plans[name], rule)
            named += [{"model": name, "method": method, **r} for r in rows]
            if method == "locogen":
                estimates = summaries.window_estimates(con, [spec.run_id], rule).to_pylist()
                named += [{"model": name, "method": TOLD_K, **r} for r in strongest_windows(estimates, plans[name])]
            log(f"{name} {method}: {len(rows)} concepts in {time.perf_counter() - began:.0f} s (run {spec.run_id})")
    if num_shards > 1:
        return None
    table = planted.hit_rates(named, plans, rule.level)
    ident = benchmark_id(models, methods, seeds, families, window_sizes, concepts, scorer)
    now = datetime.now(UTC)
    rows = [{**r, "benchmark_id": ident, "seeds": list(seeds), "scorer": scorer, "created_at": now}
            for r in table.to_pylist()]
    store.write_table("localization_benchmark", rows, ident, root)
    return table
