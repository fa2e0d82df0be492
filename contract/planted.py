"""Scoring a localization method against planted knowledge (numpy and pyarrow only; docs/method.md, "Planted
knowledge").

A planted model's plan names, per attribute family, the layers through which the family enters (an empty set: the
control, readable everywhere, which should localize nowhere). A method names layers per concept: LocoGen its minimal
localizing window (none when no window localizes), causal tracing and attention contribution their top sites. Each
concept is scored against its family's planted layers: ``exact`` (the named set equals the plan), ``precision``
(the share of named layers that are planted; undefined when nothing is named) and ``recall`` (the share of planted
layers named; undefined for an empty plan). ``hit_rates`` aggregates per (model, method, family) with intervals over
the family's concepts (each concept pooled over its prompts and seeds): Wilson for the exact-hit rate, a percentile
bootstrap for precision and recall.
"""

import json
import math

import numpy as np
import pyarrow as pa

from locolab.contract import intervals

RESAMPLES = 2000


def layer_score(named: set[int] | frozenset[int], planted: set[int] | frozenset[int]) -> dict:
    """One concept's score: exact, precision (NaN when nothing is named), recall (NaN for an empty plan)."""
    named, planted = set(named), set(planted)
    both = len(named & planted)
    return {"exact": named == planted,
            "precision": both / len(named) if named else math.nan,
            "recall": both / len(planted) if planted else math.nan}


def _mean_interval(values: list[float], level: float, rng: np.random.Generator) -> tuple[float, float, float]:
    """Mean of the defined values and its percentile-bootstrap interval at ``level`` (NaN when none is defined)."""
    x = np.array([v for v in values if not math.isnan(v)], dtype=np.float64)
    if not len(x):
        return math.nan, math.nan, math.nan
    means = x[rng.integers(len(x), size=(RESAMPLES, len(x)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(x.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


SCHEMA = pa.schema([
    ("model", pa.string()), ("method", pa.string()), ("family", pa.string()), ("planted", pa.list_(pa.int32())),
    ("concepts", pa.int32()), ("exact_hits", pa.int32()), ("exact_rate", pa.float64()), ("exact_low", pa.float64()),
    ("exact_high", pa.float64()), ("precision", pa.float64()), ("precision_low", pa.float64()),
    ("precision_high", pa.float64()), ("recall", pa.float64()), ("recall_low", pa.float64()),
    ("recall_high", pa.float64()), ("named_json", pa.string()), ("level", pa.float64()),
    ("unmeasurable", pa.int32()),
])


def hit_rates(named: list[dict], plans: dict[str, dict[str, list[int]]], level: float = 0.95,
              seed: int = intervals.SEED) -> pa.Table:
    """The benchmark table, one row per (model, method, family), in the order first met.

    Args:
        named: one dict per (model, method, family, concept): those keys, ``layers`` (the layers the method
            names for the concept; empty when it names none) and optionally ``measurable`` (False: the method found
            the concept not measurable, so it names no layer; shown as such and counted in ``unmeasurable``).
        plans: model -> family -> planted layers (a family missing from a model's plan: planted nowhere).
        level: the intervals' coverage.
        seed: the bootstrap's seed (with the row's key: reproducible).

    Raises:
        ValueError: a row's model has no plan.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in named:
        if row["model"] not in plans:
            raise ValueError(f"no plan for model {row['model']!r}")
        groups.setdefault((row["model"], row["method"], row["family"]), []).append(row)
    out = []
    for (model, method, family), rows in groups.items():
        planted = sorted(plans[model].get(family, []))
        scores = [layer_score(r["layers"], planted) for r in rows]
        hits = sum(s["exact"] for s in scores)
        low, high = intervals.wilson(hits, len(rows), level)
        rng = intervals.rng_for(seed, model, method, family)
        precision = _mean_interval([s["precision"] for s in scores], level, rng)
        recall = _mean_interval([s["recall"] for s in scores], level, rng)
        out.append({"model": model, "method": method, "family": family, "planted": planted, "concepts": len(rows),
                    "exact_hits": hits, "exact_rate": hits / len(rows), "exact_low": low, "exact_high": high,
                    "precision": precision[0], "precision_low": precision[1], "precision_high": precision[2],
                    "recall": recall[0], "recall_low": recall[1], "recall_high": recall[2],
                    "named_json": json.dumps({r["concept"]: sorted(r["layers"]) if r.get("measurable", True)
                                              else None for r in rows}),
                    "level": level, "unmeasurable": sum(not r.get("measurable", True) for r in rows)})
    return pa.Table.from_pylist(out, schema=SCHEMA)


def _layers(layers: list[int] | None) -> str:
    if layers is None:
        return "not measurable"
    if not layers:
        return "none"
    return ",".join(map(str, layers))


def _triple(row: dict, name: str) -> str:
    if row[name] is None or math.isnan(row[name]):
        return "undefined"
    return f"{row[name]:.2f} [{row[name + '_low']:.2f}, {row[name + '_high']:.2f}]"


def display_rows(table: pa.Table) -> list[dict]:
    """The benchmark table in words, one dict per row (the command's printout and the dashboard's page)."""
    return [{"model": r["model"], "method": r["method"], "family": r["family"],
             "planted": _layers(r["planted"]) if r["planted"] else "none (control)",
             "exact hits [interval]": f"{r['exact_hits']}/{r['concepts']} [{r['exact_low']:.2f}, "
                                      f"{r['exact_high']:.2f}]",
             "precision [interval]": _triple(r, "precision"), "recall [interval]": _triple(r, "recall"),
             "named per concept": "; ".join(f"{c}: {_layers(v)}" for c, v in json.loads(r["named_json"]).items())}
            for r in table.to_pylist()]


def render(table: pa.Table) -> str:
    """The benchmark table as fixed-width text (what ``locolab benchmark-localization`` prints)."""
    rows = display_rows(table)
    header = list(rows[0]) if rows else ["model", "method", "family"]
    widths = [max(len(h), *(len(r[h]) for r in rows)) for h in header]
    lines = [header] + [[r[h] for h in header] for r in rows]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)
