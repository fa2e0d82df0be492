"""``reproduce``: the paper configs carry the paper's settings; every registered real model has a plan; the tiny
stand-in runs end to end and prints the windows the store's summaries find."""

import json
import re

import pytest
from sweep_helpers import table

from locolab.compute.cli import main
from locolab.compute.reproduce import PAPER_FAMILIES, STAND_IN_SCORERS, family_summary, paper_studies
from locolab.compute.sweep.config import CONFIGS_DIR, load_config
from locolab.contract import store, summaries
from locolab.contract.catalog.registry import MODELS
from locolab.contract.notation import window_label

PAPER_SIZE = {"sd1": 512, "sd2": 512, "sdxl": 1024, "if": 64}  # the official code's 512 for SD-1.x and SD-2.1
PAPER_SCORERS = ("openai/clip-vit-base-patch16", "openai/clip-vit-large-patch14")
REAL = [name for name, spec in MODELS.items() if spec.hub_id]


@pytest.mark.parametrize("path", sorted(p for p in CONFIGS_DIR.glob("*-*.yaml")
                                        if p.stem.split("-")[0] in ("style", "objects", "facts", "color")),
                         ids=lambda p: p.stem)
def test_paper_configs_carry_the_papers_settings(path):
    config = load_config(path)
    spec = MODELS[config.model]
    assert config.seeds == (0, 1, 2, 3) and config.scorers == PAPER_SCORERS
    if spec.arch in PAPER_SIZE:  # the LocoGen paper's UNets: its code's steps, guidance and sizes
        assert (config.steps, config.guidance, config.resolution) == (50, 7.5, PAPER_SIZE[spec.arch])
    else:  # diffusion transformers, which that paper did not study: each model's own sampling defaults
        assert config.steps is None and config.guidance is None


def test_sd_2_1_runs_at_the_papers_512_not_its_default_768():
    assert MODELS["sd-2.1"].resolution == 768
    assert {s.config.resolution for s in paper_studies("sd-2.1")} == {512}


@pytest.mark.parametrize("name", REAL)
@pytest.mark.slow
def test_every_registered_real_model_has_a_dry_run_plan(name, tmp_path, capsys):
    studies = paper_studies(name)
    assert [s.family for s in studies] == list(PAPER_FAMILIES)
    assert all(s.config.model == name and s.limit is None and s.config.scorers == PAPER_SCORERS for s in studies)
    root = tmp_path / "root"
    assert main(["reproduce", "--model", name, "--dry-run", "--artifacts", str(root)]) == 0
    out = capsys.readouterr().out
    if MODELS[name].num_layers is None and "unknown here" in out:  # IF-I-L/M: from the checkpoint's config, if cached
        assert f"the layer count of {name} is unknown here" in out and "in all:" not in out
    else:
        assert re.search(r"in all: \d+ images, each scored by 2 scorers", out)
        assert all(f"run {s.config.run_id}:" in out for s in studies)
    assert not root.exists()


def test_tiny_models_stand_in_for_the_real_model_of_their_architecture():
    stand_ins = {"tiny-sd1": "sd-1.4", "tiny-sd2": "sd-2.1", "tiny-sdxl": "sdxl-base", "tiny-if": "if-i-xl"}
    for tiny, real in stand_ins.items():
        studies = paper_studies(tiny)
        assert {s.paper_model for s in studies} == {real}
        assert [s.source for s in studies] == [f"compute/configs/{f}-{real}.yaml" for f in PAPER_FAMILIES]
        assert all(s.config.scorers == STAND_IN_SCORERS and s.limit == 1 for s in studies)
    assert paper_studies("sd-2.1-base")[0].paper_model == "sd-2.1"


@pytest.mark.parametrize("args, message", [
    (["--model", "toyworld"], "the toy world has no paper to reproduce"),
    (["--model", "sd-9"], "needs a registered model"),
    (["--model", "tiny-sd1", "--families", "style,shapes"], "bad --families"),
])
def test_bad_input_exits_2(args, message, capsys):
    assert main(["reproduce", *args, "--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_family_summary_names_the_most_common_window():
    rows = [{"family": "style", "scorer_id": "s", "concept": c, "window": w, "drop": d, "paper_window": (8, 10),
             "paper_model": "sd-1.4"}
            for c, w, d in (("a", (8, 10), 0.8), ("b", (8, 10), 0.6), ("c", (7, 9), 0.9), ("d", None, None))]
    [summary] = family_summary(rows)
    counts = (summary["concepts"], summary["localized"], summary["common_window"], summary["sharing"])
    assert counts == (4, 3, (8, 10), 2)
    assert summary["common_drop"] == pytest.approx(0.7)


@pytest.mark.slow
@pytest.mark.heavy  # the slow tier: make test-heavy
def test_reproduce_with_the_tiny_stand_in_runs_end_to_end_and_prints_the_stores_windows(tmp_path, capsys):
    root = tmp_path / "root"
    assert main(["reproduce", "--model", "tiny-sd1", "--families", "style,facts", "--artifacts", str(root),
                 "--no-progress", "--batch-size", "64"]) == 0
    out = capsys.readouterr().out
    runs = table(root, "runs")
    assert sorted(r["config_name"] for r in runs) == ["facts-tiny-sd1", "style-tiny-sd1"]
    recorded = json.loads(next(r for r in runs if r["config_name"] == "style-tiny-sd1")["config_json"])
    assert recorded["reproduces"] == "compute/configs/style-sd-1.4.yaml" and recorded["paper_model"] == "sd-1.4"
    assert (recorded["resolution"], recorded["scorer"], recorded["unit_limit"]) == (32, list(STAND_IN_SCORERS), 1)
    assert {r["resolution"] for r in table(root, "layers") if r["index"] == 0} == {8}  # 32 px / 4 (VAE): 8
    best = summaries.minimal_windows(store.Store(root).connect(), 0.5).to_pylist()
    for row in best:
        window = window_label(row["window_start"], row["window_size"])
        paper = "layers 8–9 (sd-1.4)" if row["family"] == "style" else "not reported"
        interval = re.escape(f"[{row['drop_low']:.2f}, {row['drop_high']:.2f}]")
        assert re.search(rf"{row['family']} +{row['concept']} +{row['scorer_id']} +{window} "
                         rf"+{row['normalized_drop']:.2f} +{interval} +{re.escape(paper)}", out)
    printed = re.findall(r"^  (style|facts) {2,}\S", out, re.M)
    assert len(printed) == 2 * 2  # one concept per family, two scorers
    assert "paper (sd-1.4): layers 8–9" in out and "not expected to match the paper" in out
