"""Causal tracing: exact restoration identities on tiny-sd1, tiny-sdxl and tiny-if, and trace runs in the artifact
store."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from sweep_helpers import SMALL, table, write_config

from locolab.compute.cli import main
from locolab.compute.generation import Case, generate_batch
from locolab.compute.plan import build_trace_plan
from locolab.compute.settings import Settings
from locolab.compute.sweep.config import TraceSpec, parse_config
from locolab.compute.trace import TraceRenderer, corrupt_subject, restore_sites, text_sites, unet_sites
from locolab.contract import store, summaries

SETTINGS = Settings(steps=2, guidance=7.5, height=32, width=32)
PROMPT, SUBJECT = "a painting in the style of van gogh", "van gogh"


@pytest.fixture
def model(load):
    return load("tiny-sd1")


def corrupted(model, noise: float, seed: int = 0):
    with corrupt_subject(model, PROMPT, SUBJECT, noise, seed), torch.no_grad():
        return model.arch.encode(model.pipe, PROMPT)


def trace_cases(model, noise: float):
    """One prompt's trace plan (cross-attention and text-encoder sites, seed 0) and a renderer for it."""
    family = {"target": "a painting", "templates": ["a painting in the style of {concept}"], "concepts": [SUBJECT]}
    config = parse_config({**SMALL, "seeds": [0], "families": {"style": family}})
    config = replace(config, trace=TraceSpec(noise), method="trace")
    sites = {"cross-attention": unet_sites(model, "cross-attention")}
    text = text_sites(model)
    counts = {("trace-unet", "cross-attention"): len(sites["cross-attention"]),
              ("trace-text", "text-encoder"): len(text)}
    (unit,) = build_trace_plan(config, SETTINGS, counts)
    return list({c.image_key: c for c in unit.cases}.values()), TraceRenderer(model, SETTINGS, sites, text)


# SD-1 stays in the fast tier; SD-XL (70 sites) and DeepFloyd IF (2 s) run in the slow tier.
@pytest.mark.parametrize("name, layers, text", [
    ("tiny-sd1", 16, 2), pytest.param("tiny-sdxl", 70, 4, marks=pytest.mark.slow),
    pytest.param("tiny-if", 22, 2, marks=pytest.mark.slow)])
def test_noise_zero_makes_every_trace_image_the_clean_image(load, name, layers, text):
    cases, render = trace_cases(load(name), noise=0.0)
    # Batches of 5 leave most restored rows without their clean row: it must ride along.
    images = np.concatenate([render(cases[i:i + 5]) for i in range(0, len(cases), 5)])
    assert [c.kind for c in cases[:2]] == ["original", "corrupted"] and len(cases) == 2 + layers + text
    # Equal up to float rounding, which on a CPU depends on a row's position in the batch (as LocoGen's windows).
    gaps = np.abs(images[1:] - images[0]).reshape(len(cases) - 1, -1).max(axis=1)
    assert gaps.max() <= 1e-5, [(c.method, c.kind, c.site) for c, g in zip(cases[1:], gaps) if g > 1e-5]


def test_noise_changes_the_corrupted_image(model):
    clean = model.arch.encode(model.pipe, PROMPT)
    images = generate_batch(model, [Case(clean, 0), Case(corrupted(model, 3.0), 0)], SETTINGS)
    assert np.abs(images[1] - images[0]).mean() > 1e-3


def test_restoring_every_cross_attention_layer_restores_the_clean_image(model):
    clean = model.arch.encode(model.pipe, PROMPT)
    restored = torch.zeros(len(model.attentions), 2, dtype=torch.bool)
    restored[:, 1] = True
    with restore_sites(model.attentions, restored, source=[0, 0]):
        images = generate_batch(model, [Case(clean, 0), Case(corrupted(model, 3.0), 0)], SETTINGS)
    assert np.array_equal(images[1], images[0])


@pytest.mark.parametrize("name", ["tiny-sdxl", "tiny-if"])
@pytest.mark.slow
def test_pooled_text_also_needs_restoring_the_text_time_embedding(load, name):
    """SD-XL and IF also feed the (corrupted) text to the time embedding (``add_embedding``): restoring every
    cross-attention layer leaves the image off the clean one; restoring ``add_embedding`` too makes it the clean one."""
    model = load(name)
    clean = model.arch.encode(model.pipe, PROMPT)
    cases = [Case(clean, 0), Case(corrupted(model, 3.0), 0)]
    sites = [*model.attentions, model.pipe.unet.add_embedding]
    gaps = []
    for count in (len(model.attentions), len(sites)):
        restored = torch.zeros(len(sites), 2, dtype=torch.bool)
        restored[:count, 1] = True
        with restore_sites(sites, restored, source=[0, 0]):
            images = generate_batch(model, cases, SETTINGS)
        gaps.append(np.abs(images[1] - images[0]).max())
    assert gaps[0] > 1e-3 and gaps[1] <= 1e-6, gaps


def test_sdxl_noise_corrupts_both_encoders(load):
    model = load("tiny-sdxl")
    clean, noised = model.arch.encode(model.pipe, PROMPT), corrupted(model, 3.0)
    width = model.pipe.text_encoder.config.hidden_size
    assert not torch.equal(clean.cond[..., :width], noised.cond[..., :width])
    assert not torch.equal(clean.cond[..., width:], noised.cond[..., width:])
    assert [s.path for s in text_sites(model)] == [f"text_encoder{e}.{p}encoder.layers.{i}" for e, p in
                                                   (("", ""), ("_2", "text_model.")) for i in (0, 1)]


def test_if_traces_t5_blocks_and_corrupts_the_embedding_t5_calls(load):
    model = load("tiny-if")
    assert [s.path for s in text_sites(model)] == ["text_encoder.encoder.block.0", "text_encoder.encoder.block.1"]
    # T5 calls encoder.embed_tokens, not the tied ``shared`` that get_input_embeddings returns.
    assert (corrupted(model, 3.0).cond - model.arch.encode(model.pipe, PROMPT).cond).abs().max() > 1.0


@pytest.mark.slow
def test_restoring_one_cross_attention_layer_moves_part_way(model):
    cases, render = trace_cases(model, noise=3.0)
    images = render(cases)
    clean, noised = images[0], images[1]
    gaps = [np.abs(image - clean).mean() for image in images[2:18]]
    assert all(0 < gap for gap in gaps) and min(gaps) < np.abs(noised - clean).mean()


def test_restoring_a_text_encoder_layer_changes_the_embedding_and_image(model):
    cases, render = trace_cases(model, noise=3.0)
    text_cases = [cases[1]] + [c for c in cases if c.method == "trace-text" and c.kind == "restored"]
    assert [c.kind for c in text_cases] == ["corrupted", "restored", "restored"]
    conds = [render.conditioning(c).cond for c in text_cases]
    assert not torch.equal(conds[1], conds[0])
    images = render(text_cases)
    assert np.abs(images[1] - images[0]).mean() > 1e-4


def test_sites_are_listed_in_forward_order_with_blocks(model):
    resnets = unet_sites(model, "resnet")
    assert [s.index for s in resnets] == list(range(len(resnets)))
    assert resnets[0].block == "down" and resnets[-1].block == "up"
    assert [s.path for s in unet_sites(model, "cross-attention")] == [layer.path for layer in model.layers]
    assert [s.path for s in text_sites(model)] == ["text_encoder.encoder.layers.0", "text_encoder.encoder.layers.1"]


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """A trace run of the small config (3 prompts, seed 0) beside a one-unit LocoGen sweep, in one root."""
    tmp = tmp_path_factory.mktemp("trace")
    config = write_config(tmp / "small.yaml")
    root = str(tmp / "root")
    assert main(["trace", config, "--artifacts", root, "--no-progress"]) == 0
    assert main(["sweep", config, "--artifacts", root, "--no-progress", "--limit", "1"]) == 0
    return config, root


@pytest.mark.slow  # a whole trace run
def test_trace_run_reads_back_with_method_and_component(traced):
    _, root = traced
    rows = [r for r in table(root, "scores") if r["method"] != "locogen"]
    # Per prompt: cross-attention (original, corrupted, 16 sites) and text encoder (original, corrupted, 2 sites).
    assert len(rows) == len([r for r in table(root, "cases") if r["method"] != "locogen"]) == 3 * (18 + 4)
    assert {(r["method"], r["component"]) for r in rows} == {("trace-unet", "cross-attention"),
                                                             ("trace-text", "text-encoder")}
    assert {r["noise"] for r in rows} == {3.0}
    assert {r["kind"] for r in rows} == {"original", "corrupted", "restored"}
    # The restored site is in ``site``; LocoGen's window columns stay empty (schema v3).
    restored = {(r["component"], r["site"]) for r in rows if r["kind"] == "restored"}
    assert sorted(restored) == [("cross-attention", i) for i in range(16)] + [("text-encoder", i) for i in range(2)]
    assert {r["site"] for r in rows if r["kind"] != "restored"} == {None}
    assert {(r["window_start"], r["window_size"]) for r in rows} == {(None, None)}
    assert {r["method"] for r in table(root, "runs")} == {"trace", "locogen"}
    layers = [r for r in table(root, "layers") if "trace" in r["run_id"]]
    assert sorted({r["component"]: 0 for r in layers}) == ["cross-attention", "text-encoder"]
    assert len(layers) == 18


@pytest.mark.slow  # a whole trace run
def test_trace_effects_and_localization_keep_methods_apart(traced):
    _, root = traced
    con = store.Store(root).connect()
    effects = summaries.trace_effects(con).to_pylist()
    assert len(effects) == 3 * (16 + 2)
    assert all(row["original_score"] is not None and row["corrupted_score"] is not None for row in effects)
    windows = summaries.localization(con).to_pylist()
    assert len(windows) == 15 and len({row["concept"] for row in windows}) == 1


@pytest.mark.slow  # a whole trace run
def test_a_locogen_sweep_writes_method_locogen(traced):
    _, root = traced
    rows = [r for r in table(root, "cases") if r["method"] == "locogen"]
    assert len(rows) == 18 and {r["component"] for r in rows} == {"cross-attention"}
    assert {r["noise"] for r in rows} == {None}


@pytest.mark.slow  # a whole trace run
def test_trace_rerun_generates_nothing(traced, capsys):
    config, root = traced
    assert main(["trace", config, "--artifacts", root, "--no-progress"]) == 0
    assert "0 units run, 3 already done; 0 images generated" in capsys.readouterr().out


def test_trace_run_id_differs_from_the_sweep_and_ignores_window_sizes():
    config = parse_config({**SMALL, "trace": {"noise": 2.0}})
    traced = replace(config, method="trace")
    assert traced.run_id != config.run_id and traced.run_id == replace(traced, window_sizes=(1,)).run_id
    assert parse_config(SMALL).run_id == config.run_id, "a LocoGen run id ignores the trace section"
