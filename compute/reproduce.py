"""Reproduce the paper's LocoGen studies on one model with the paper's settings, into one artifact root, and compare
the minimal localizing windows found with the layers the paper reports.

The studies are the shipped paper configs ``compute/configs/<family>-<model>.yaml`` (the official code's settings:
50 steps, guidance 7.5, 512 px for SD-1.x/2.x, seeds 0-3, CLIP ViT-B/16 and ViT-L/14). A registered model without
its own configs runs those of the first registered real model of its architecture (``sd-2.1-base`` those of
``sd-2.1``, ``if-i-l`` those of ``if-i-xl``), and a built-in random-weight model (``tiny-sd1``) stands in for that
model at CPU cost: 32 px, 4 steps, 2 seeds, the two offline scorers, the first prompt of each family. Its numbers
test the machinery, not the paper.

Usage::

    studies = paper_studies("sd-1.4")
    for study in studies: ...                      # study.config is a SweepConfig, run it as any sweep
    rows = comparison(Store(root).connect(), studies)
"""

from dataclasses import dataclass, replace

from locolab.compute.sweep.config import CONFIGS_DIR, SweepConfig, load_config
from locolab.contract.catalog.registry import MODELS
from locolab.contract.errors import UserError
from locolab.contract.summaries import concept_summary

PAPER_FAMILIES = ("style", "objects", "facts")  # the paper's three studies (color is ours: --families adds it)

# Layers the paper's code reports as controlling a family, as half-open (start, end) windows in forward order.
# SD-1.4 style -> layers 8-9 (up_blocks.1.attentions.1, .2): loco_edit.py edits relevant_layers[start_loc*2 :
# start_loc*2 + seq] with start_loc=8, seq=4 (to_k, to_v of two layers); neuron_modifications/detect_neurons.py
# ("Layers 8 and 9 are worth exploring") and trace.py ([prompt]*8 + ['painting']*2 + [prompt]*6) use the same two.
PAPER_LAYERS = {("sd-1.4", "style"): (8, 10)}

# A built-in random-weight model stands in for a real one at CPU cost (scores mean nothing; the machinery runs).
STAND_IN_SCORERS = ("tiny-clip", "toyworld-clip")  # two offline scorers, as the paper configs score with two
STAND_IN_STEPS = 4
STAND_IN_SEEDS = (0, 1)
STAND_IN_SIZE = 32  # pixels: every tiny model's UNet takes it
STAND_IN_UNITS = 1  # work units (prompts) per family


@dataclass(frozen=True)
class Study:
    """One LocoGen study of a reproduction.

    Attributes:
        family: the attribute family.
        config: the sweep to run (its ``run_id`` names the run in the root).
        source: the shipped paper config it was made from.
        paper_model: the real model whose paper settings apply (itself, or the one it stands in for).
        limit: work units to run (None: all).
    """

    family: str
    config: SweepConfig
    source: str
    paper_model: str
    limit: int | None = None

    @property
    def details(self) -> dict:
        """What is recorded in the run's ``config_json`` besides the config."""
        return {"reproduces": self.source, "paper_model": self.paper_model, "unit_limit": self.limit}


def paper_model(model: str) -> str:
    """The real model whose paper configs ``model`` runs: itself when configs ship for it, else the first registered
    real model of its architecture."""
    if model not in MODELS:
        raise UserError(f"make reproduce needs a registered model, not {model!r}: use one of "
                        f"{', '.join(m for m in MODELS if m != 'toyworld')}")
    if (CONFIGS_DIR / f"style-{model}.yaml").is_file():
        return model
    arch = MODELS[model].arch
    for name, spec in MODELS.items():
        if spec.arch == arch and spec.hub_id and (CONFIGS_DIR / f"style-{name}.yaml").is_file():
            return name
    raise UserError(f"no paper configs for the architecture of {model!r}")


def paper_studies(model: str, families: tuple[str, ...] = PAPER_FAMILIES) -> list[Study]:
    """The studies that reproduce the paper on ``model`` (see the module docstring)."""
    if model == "toyworld":
        raise UserError("the toy world has no paper to reproduce: use make demo / make compare")
    real = paper_model(model)
    studies = []
    for family in families:
        path = CONFIGS_DIR / f"{family}-{real}.yaml"
        if not path.is_file():
            raise UserError(f"no paper config {path.name} for family {family!r}: use some of "
                            f"{', '.join(p.stem.split('-')[0] for p in sorted(CONFIGS_DIR.glob(f'*-{real}.yaml')))}")
        config = load_config(path)
        limit = None
        if model != real:
            config = replace(config, name=f"{family}-{model}", model=model,
                             description=f"{config.name}'s study run on {model}")
        if MODELS[model].builtin:
            config = replace(config, scorer=STAND_IN_SCORERS, steps=STAND_IN_STEPS, seeds=STAND_IN_SEEDS,
                             resolution=STAND_IN_SIZE, batch_size=None,
                             description=f"{model} (random weights) standing in for {real}: {path.name} at CPU cost")
            limit = STAND_IN_UNITS
        studies.append(Study(family, config, f"compute/configs/{path.name}", real, limit))
    return studies


def comparison(con, studies: list[Study], threshold: float = 0.5) -> list[dict]:
    """One row per (study, concept, scorer): its minimal localizing window (``contract.summaries.concept_summary``
    over the study's run: the paired test at ``threshold``, Holm-adjusted; None where none localizes or the concept
    is not measurable), its drop and interval, the summary's verdict, and the paper's layers."""
    rows = []
    for study in studies:
        run_id = study.config.run_id
        scored = con.execute("SELECT DISTINCT concept, scorer_id FROM scores WHERE run_id = ? ORDER BY ALL",
                             [run_id]).fetchall()
        found = {(r["concept"], r["scorer_id"]): r
                 for r in (concept_summary(con, threshold, [run_id]).to_pylist() if scored else [])}
        for concept, scorer in scored:
            row = found.get((concept, scorer))
            localized = row is not None and row["localizes"]
            rows.append({"family": study.family, "concept": concept, "scorer_id": scorer, "run_id": run_id,
                         "window": (row["window_start"], row["window_start"] + row["window_size"]) if localized
                         else None,
                         "drop": row["normalized_drop"] if localized else None,
                         "interval": (row["drop_low"], row["drop_high"]) if localized else None,
                         "verdict": row["verdict"] if row else "no LocoGen windows scored",
                         "paper_window": PAPER_LAYERS.get((study.paper_model, study.family)),
                         "paper_model": study.paper_model})
    return rows


def family_summary(rows: list[dict]) -> list[dict]:
    """Per (family, scorer): concepts scored, concepts localized, the most common minimal window and how many
    concepts share it, the mean drop of those concepts, and the paper's window."""
    groups: dict = {}
    for row in rows:
        groups.setdefault((row["family"], row["scorer_id"]), []).append(row)
    out = []
    for (family, scorer), members in groups.items():
        found = [r for r in members if r["window"] is not None]
        counts: dict = {}
        for r in found:
            counts[r["window"]] = counts.get(r["window"], 0) + 1
        common = max(counts, key=lambda w: (counts[w], -w[1] + w[0], -w[0])) if counts else None
        shared = [r["drop"] for r in found if r["window"] == common]
        out.append({"family": family, "scorer_id": scorer, "concepts": len(members), "localized": len(found),
                    "common_window": common, "sharing": counts.get(common, 0),
                    "common_drop": sum(shared) / len(shared) if shared else None,
                    "paper_window": members[0]["paper_window"], "paper_model": members[0]["paper_model"]})
    return out
