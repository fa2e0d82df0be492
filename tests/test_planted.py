"""Planted knowledge: the training captions each layer reads, and the scoring of named layers against a plan."""

import json
import math

import numpy as np
import pytest
import torch

from locolab.compute.toyworld import world
from locolab.compute.toyworld.train_planted import PLANS, Caption, check_plan, cut, draw_caption, layer_texts
from locolab.contract.errors import UserError
from locolab.contract.planted import display_rows, hit_rates, layer_score, render


def test_layer_score_exact_precision_recall():
    assert layer_score({7, 8}, {7, 8}) == {"exact": True, "precision": 1.0, "recall": 1.0}
    assert layer_score({8, 9}, {7, 8}) == {"exact": False, "precision": 0.5, "recall": 0.5}
    assert layer_score({8}, {7, 8}) == {"exact": False, "precision": 1.0, "recall": 0.5}
    missed = layer_score(set(), {12})
    assert not missed["exact"] and math.isnan(missed["precision"]) and missed["recall"] == 0.0
    # The control: nothing planted, so naming nothing is the right answer and recall is undefined.
    control = layer_score(set(), set())
    assert control["exact"] and math.isnan(control["recall"])
    assert layer_score({3}, set())["precision"] == 0.0


def _named(method, family, layers_per_concept, model="m"):
    return [{"model": model, "method": method, "family": family, "concept": f"c{i}", "layers": layers}
            for i, layers in enumerate(layers_per_concept)]


def test_hit_rates_per_family_with_wilson_and_bootstrap_intervals():
    plans = {"m": {"style": [12], "objects": [7, 8]}}
    named = (_named("locogen", "style", [[12], [12], [12]])
             + _named("locogen", "objects", [[7, 8], [8], [], [7, 8]]))
    table = hit_rates(named, plans).to_pylist()
    style, objects = table
    assert (style["exact_hits"], style["concepts"], style["exact_rate"]) == (3, 3, 1.0)
    assert style["exact_low"] == pytest.approx(0.4385, abs=1e-4) and style["exact_high"] == 1.0  # Wilson, 3 of 3
    assert style["precision"] == style["precision_low"] == style["recall_high"] == 1.0
    assert (objects["exact_hits"], objects["exact_rate"]) == (2, 0.5)
    # Precision over the three concepts that named something (all inside the plan); recall over all four.
    assert objects["precision"] == 1.0
    assert objects["recall"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert objects["recall_low"] < objects["recall"] < objects["recall_high"] <= 1.0
    assert json.loads(objects["named_json"]) == {"c0": [7, 8], "c1": [8], "c2": [], "c3": [7, 8]}
    assert objects["planted"] == [7, 8]


def test_hit_rates_family_outside_the_plan_is_planted_nowhere():
    table = hit_rates(_named("trace", "color", [[], [4]], model="control"), {"control": {}}).to_pylist()
    assert table[0]["planted"] == [] and table[0]["exact_hits"] == 1
    assert math.isnan(table[0]["recall"])
    with pytest.raises(ValueError, match="no plan for model 'other'"):
        hit_rates(_named("trace", "color", [[1]], model="other"), {"control": {}})


def test_a_concept_found_not_measurable_names_nothing_and_is_counted_and_shown_as_such():
    named = _named("locogen", "color", [[], [], [3]], model="random")
    named[0]["measurable"] = named[1]["measurable"] = False
    row = hit_rates(named, {"random": {}}).to_pylist()[0]
    assert (row["unmeasurable"], row["exact_hits"]) == (2, 2)  # naming nothing is right for a control
    assert json.loads(row["named_json"]) == {"c0": None, "c1": None, "c2": [3]}
    shown = display_rows(hit_rates(named, {"random": {}}))[0]
    assert shown["planted"] == "none (control)"
    assert shown["named per concept"] == "c0: not measurable; c1: not measurable; c2: 3"


def test_render_shows_rates_intervals_and_named_layers():
    text = render(hit_rates(_named("locogen", "style", [[12], []]), {"m": {"style": [12]}}))
    header, row = text.splitlines()
    assert header.startswith("model") and "recall [interval]" in header
    assert "1/2 [0.09, 0.91]" in row and "c0: 12; c1: none" in row and "undefined" not in row


def test_check_plan_sorts_and_refuses_bad_plans():
    assert check_plan({"objects": [8, 7, 8]}) == {"objects": [7, 8]}
    with pytest.raises(UserError, match="unknown family 'colour'"):
        check_plan({"colour": [3]})
    with pytest.raises(UserError, match="needs layers in 0..15, got \\[16\\]"):
        check_plan({"color": [16]})
    assert all(check_plan(plan) == plan for plan in PLANS.values())


def test_each_layer_reads_its_planted_families_and_no_other():
    rng = np.random.default_rng(0)
    caption = Caption("a photo of {x}", None, "square", "red", "stripes", 0)
    plan = {"color": [3], "style": [12]}
    texts = layer_texts([caption] * 80, plan, rng)
    for layer, rows in enumerate(texts):
        colours = {world.caption_attributes(t).get("colour") for t in rows}
        backgrounds = {world.caption_attributes(t).get("background") for t in rows}
        # A planted layer reads the true value (or nothing, in a silent-plan sample); another reads it removed or an
        # independent random value.
        assert (colours <= {"red", None}) == (layer == 3)
        assert (backgrounds <= {"stripes", None}) == (layer == 12)
        assert all(world.caption_attributes(t)["shape"] == "square" for t in rows)
    assert {world.caption_attributes(t).get("colour") for t in texts[0]} == {None, *world.COLOURS}


def test_a_family_planted_nowhere_reaches_each_layer_in_about_half_the_samples():
    """The control: no layer is needed for an everywhere-readable family (each reads it in ~SPREAD of the samples,
    independently), while a planted family still reaches only its layers."""
    rng = np.random.default_rng(3)
    caption = Caption("a photo of {x}", None, "square", "red", "stripes", 0)
    texts = layer_texts([caption] * 400, {"color": [], "style": [12]}, rng)
    reads = np.array([[world.caption_attributes(t).get("colour") == "red" for t in rows] for rows in texts])
    # Read when drawn (p = 0.5) or when the cut happened to redraw red (0.5 * 0.5 * 1/4): 0.5625 per layer.
    assert np.all(np.abs(reads.mean(axis=1) - 0.5625) < 0.08)
    # Drawn per layer: layer 3 reads it and layer 4 not in 0.5 * 0.5 * (1 - 0.125) = 0.22 of the samples.
    assert abs(np.mean(reads[3] & ~reads[4]) - 0.21875) < 0.06
    for layer, rows in enumerate(texts):
        assert ({world.caption_attributes(t).get("background") for t in rows} <= {"stripes", None}) == (layer == 12)


def test_in_a_silent_plan_sample_every_other_layer_reads_a_random_value():
    """Where the planted layer reads the family removed (a share SILENT of the samples), every other layer reads an
    independent random value, never the removed caption: the model learns that a silent plan means the prior."""
    from locolab.compute.toyworld.train_planted import SILENT

    rng = np.random.default_rng(5)
    caption = Caption("a photo of {x}", None, "square", "red", "stripes", 0)
    texts = layer_texts([caption] * 2000, {"color": [3]}, rng)
    colours = np.array([[world.caption_attributes(t).get("colour") for t in rows] for rows in texts], dtype=object)
    silent = colours[3] == None  # noqa: E711 (elementwise)
    assert abs(silent.mean() - SILENT) < 0.03
    others = np.delete(colours, 3, axis=0)[:, silent]
    assert (others != None).all()  # noqa: E711
    # Uniform over the four colours, the same in every other layer of a sample (one draw per sample).
    assert abs(np.mean(others[0] == "red") - 0.25) < 0.05 and (others == others[0]).all()


def test_cut_removes_or_replaces_only_its_family():
    rng = np.random.default_rng(1)
    entity = Caption("a picture of {x}", "the sun", None, None, None, 0)
    cuts = {cut(entity, "facts", rng).text() for _ in range(100)}
    assert "a picture of an object" in cuts and cuts - {"a picture of an object"} <= {
        f"a picture of {e}" for e in world.ENTITIES}
    assert cut(entity, "color", rng) == entity  # an entity caption states no colour word
    unstated = Caption("{x}", None, "circle", None, None, 0)
    assert cut(unstated, "color", rng) == unstated


@pytest.mark.slow  # 8,000 scenes: 0.8 s
def test_a_fine_tune_that_plants_entities_sees_them_at_its_own_rate():
    """Entity scenes are PLANTED_ENTITY_RATE of a planting fine-tune's data, the toy world's 15% elsewhere (binomial
    sd over 4,000 scenes: 0.007); the other scenes keep uniform attributes."""
    from locolab.compute.toyworld.common import scenes
    from locolab.compute.toyworld.train_planted import PLANTED_ENTITY_RATE

    planted, base = scenes(7_000_000, 4000, PLANTED_ENTITY_RATE), scenes(7_000_000, 4000)
    assert abs(np.mean([s.entity is not None for s in planted]) - PLANTED_ENTITY_RATE) < 0.03
    assert abs(np.mean([s.entity is not None for s in base]) - world.ENTITY_RATE) < 0.03
    colours = [s.colour for s in planted if s.entity is None]
    assert all(abs(colours.count(c) / len(colours) - 0.25) < 0.03 for c in world.COLOURS)


@pytest.mark.slow  # two 2-step fine-tunes: 4 s
def test_the_recipe_is_deterministic_to_the_byte(tmp_path):
    """The same recipe twice gives the same safetensors bytes and config (the shipped weights are what
    `make toyworld-planted` writes: re-measured bit for bit), and it trains: the UNet moved from the base."""
    from safetensors.torch import load_file

    from locolab.compute.paths import PACKAGE_DIR
    from locolab.compute.toyworld.train_planted import train

    outs = [train("a", steps=2, batch=4, dataset=32, out=tmp_path / f"run{i}") for i in range(2)]
    files = ("diffusion_pytorch_model.safetensors", "config.json")
    assert [(outs[0] / f).read_bytes() for f in files] == [(outs[1] / f).read_bytes() for f in files]
    assert json.loads((outs[0] / "config.json").read_text())["_name_or_path"] == "toyworld/unet"
    trained = load_file(outs[0] / files[0])
    base = load_file(PACKAGE_DIR / "checkpoints" / "toyworld" / "unet" / files[0])
    assert trained.keys() == base.keys() and any(not torch.equal(trained[k], base[k]) for k in base)


def test_drawn_captions_are_true_of_their_scene():
    rng = np.random.default_rng(2)
    for seed in range(200):
        scene = world.sample_scene(seed)
        stated = world.caption_attributes(draw_caption(scene, rng).text())
        truth = {"shape": scene.shape, "colour": scene.colour, "background": scene.background}
        assert all(truth[k] == v for k, v in stated.items())


@pytest.mark.slow  # imports the compute stage: 0.4 s or more
def test_benchmark_refuses_a_model_without_a_plan_and_unknown_methods(tmp_path, capsys):
    from locolab.compute.cli import main

    assert main(["benchmark-localization", "--models", "toyworld", "--artifacts", str(tmp_path)]) == 2
    assert "'toyworld' has no planted plan: use a planted model" in capsys.readouterr().err
    assert main(["benchmark-localization", "--methods", "locogen,probe", "--artifacts", str(tmp_path)]) == 2
    assert "unknown method 'probe': use locogen, trace, contribution" in capsys.readouterr().err
    assert not (tmp_path / "tables").exists()


@pytest.mark.slow
def test_layers_shows_the_plan(capsys):
    from locolab.compute.cli import main

    assert main(["layers", "--model", "toyworld-planted-a", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["plan"] == {"color": [3], "objects": [7, 8], "style": [12], "facts": [5, 6]}
    assert [row["planted"] for row in shown["layers"][6:10]] == [["facts"], ["objects"], ["objects"], []]
    assert main(["layers", "--model", "toyworld-planted-b"]) == 0
    assert "planted: color -> 3; objects -> 4; style -> 10, 11; facts -> 1, 2" in capsys.readouterr().out
    assert main(["layers", "--model", "toyworld-random"]) == 0
    assert "planted: nothing (random weights" in capsys.readouterr().out


@pytest.mark.slow
def test_the_random_control_is_seeded_random_weights_of_the_toy_worlds_unet():
    from locolab.compute.models.loading import load_model

    random, again, trained = (load_model(name, device="cpu") for name in ("toyworld-random", "toyworld-random",
                                                                           "toyworld"))
    weights = [dict(m.pipe.unet.named_parameters()) for m in (random, again, trained)]
    assert weights[0].keys() == weights[2].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert sum(not torch.equal(weights[0][k], weights[2][k]) for k in weights[0]) > len(weights[0]) // 2
    assert random.pipe.text_encoder is not trained.pipe.text_encoder  # its own pipeline, the toy world's parts


@pytest.mark.slow
@pytest.mark.heavy  # the slow tier: make test-heavy
def test_locogen_recovers_a_planted_family_on_the_reduced_benchmark(tmp_path):
    """The benchmark's reduced setting: one planted model, two seeds, two families of two concepts, windows of one
    layer. LocoGen must name exactly the planted layer for every concept of at least one family."""
    from locolab.compute.benchmark import benchmark
    from locolab.contract.store import Store

    table = benchmark(str(tmp_path), models=("toyworld-planted-a",), methods=("locogen",), seeds=(0, 1),
                      families=("color", "style"), window_sizes=(1,), concepts=2, device="cpu", log=lambda _: None)

    rows = {r["family"]: r for r in table.to_pylist() if r["method"] == "locogen"}
    assert set(rows) == {"color", "style"} and rows["color"]["planted"] == [3] and rows["style"]["planted"] == [12]
    assert any(r["exact_hits"] == r["concepts"] == 2 for r in rows.values()), rows
    told = {r["family"]: r for r in table.to_pylist() if r["method"] == "locogen-top-k"}
    assert set(told) == {"color", "style"}  # the strongest window is at least as often right as the verdict
    assert all(told[f]["exact_hits"] >= rows[f]["exact_hits"] for f in rows), told
    stored = Store(tmp_path).connect().sql("SELECT family, exact_hits, scorer FROM localization_benchmark WHERE "
                                           "method = 'locogen' ORDER BY family")
    assert stored.fetchall() == [(f, rows[f]["exact_hits"], "toyworld-detect") for f in ("color", "style")]


@pytest.mark.slow
@pytest.mark.heavy  # the slow tier: make test-heavy
def test_on_the_random_weight_control_locogen_finds_nothing_measurable(tmp_path):
    from locolab.compute.benchmark import benchmark

    table = benchmark(str(tmp_path), models=("toyworld-random",), methods=("locogen",), seeds=(0, 1),
                      families=("style",), window_sizes=(1,), concepts=1, device="cpu", log=lambda _: None)
    verdict, told = table.to_pylist()  # LocoGen's verdict and its strongest window: neither names a layer
    assert [(r["method"], r["unmeasurable"], r["concepts"], r["planted"]) for r in (verdict, told)] == [
        ("locogen", 1, 1, []), ("locogen-top-k", 1, 1, [])]


def test_the_confinement_check_swaps_the_family_in_and_out_of_its_plan():
    from locolab.compute.toyworld.evaluate import condition_case, family_pairs

    pairs = family_pairs("color")
    assert len(pairs) == 64 and pairs[0] == ("a red circle on plain", "a circle on plain", ("circle", "red", "plain"))
    assert family_pairs("style")[0][:2] == ("a red circle on plain", "a red circle")
    assert family_pairs("facts")[0] == ("the sun", "an object", ("circle", "yellow", "plain"))
    full, cut = "a red circle on plain", "a circle on plain"
    without, only = (condition_case(c, full, cut, 3, (7, 8)) for c in ("without_plan", "plan_only"))
    # Without the plan: every layer but 7 and 8 reads the colour; plan only: just 7 and 8 do.
    assert (without.prompt, without.swapped, without.target) == (full, (7, 8), cut)
    assert (only.prompt, only.swapped, only.target) == (cut, (7, 8), full)
    assert condition_case("nowhere", full, cut, 3, (7, 8)).swapped == ()


@pytest.mark.slow
@pytest.mark.heavy  # the slow tier: make test-heavy
def test_model_a_draws_backgrounds_only_through_layer_12():
    """The construction's own check on the planted background of model a, read by the exact detectors on every
    combination: without layer 12's text the background is drawn as often as with no background word at all (the
    four backgrounds' prior, a quarter), with only layer 12's text as often as with it everywhere."""
    from locolab.compute.models.loading import load_model
    from locolab.compute.settings import Settings
    from locolab.compute.toyworld.evaluate import confinement

    model = load_model("toyworld-planted-a", device="cpu")
    found = confinement(model, {"style": [12]}, (0,), Settings.defaults(model.spec))["style"]
    assert found["images"] == 64 and found["everywhere"] >= 0.95 and found["plan_only"] >= 0.95
    assert abs(found["nowhere"] - 0.25) <= 0.1 and found["without_plan"] <= found["nowhere"] + 0.1
    assert found["confined"] and found["sufficient"]


@pytest.mark.slow  # imports the compute stage
def test_locogen_told_k_names_the_strongest_window_of_the_plans_size():
    from locolab.compute.benchmark import strongest_windows

    def row(family, concept, size, start, drop, measurable=True):
        return {"family": family, "concept": concept, "window_size": size, "window_start": start,
                "normalized_drop": drop, "measurable": measurable}

    rows = [row("objects", "circle", 1, 8, 1.0), row("objects", "circle", 2, 6, 0.7),
            row("objects", "circle", 2, 7, 0.9), row("objects", "circle", 2, 8, 0.9),  # a tie: the earlier
            row("objects", "cross", 2, 3, float("nan")), row("objects", "cross", 2, 4, 0.1),
            row("color", "red", 1, 3, 0.2), row("color", "red", 2, 3, 0.95),  # planted nowhere: k = 1
            row("style", "dots", 1, 12, 1.0, measurable=False)]
    named = strongest_windows(rows, {"objects": [7, 8], "color": [], "style": [12]})
    assert named == [{"family": "objects", "concept": "circle", "measurable": True, "layers": [7, 8]},
                     {"family": "objects", "concept": "cross", "measurable": True, "layers": [4, 5]},
                     {"family": "color", "concept": "red", "measurable": True, "layers": [3]},
                     {"family": "style", "concept": "dots", "measurable": False, "layers": []}]
