"""LocoEdit: the closed form is the exact minimizer, keys sit at the last subject token, edits undo exactly."""

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

from locolab.compute.edit.closed_form import (
    Edit,
    applied,
    check_layers,
    edited_weights,
    solve_factor,
    subject_keys_values,
)
from locolab.compute.edit.store import load_edit, save_edit
from locolab.compute.generation import Case, generate_batch
from locolab.compute.models.architectures import ARCHITECTURES
from locolab.compute.models.layers import find_layers
from locolab.compute.models.loading import Model
from locolab.compute.models.tiny import build_tiny
from locolab.compute.settings import Settings
from locolab.compute.tokens import subject_position
from locolab.contract.catalog.registry import MODELS
from locolab.contract.errors import UserError

STYLE_PROMPTS = ["van gogh", "a painting in the style of van gogh", "a photo in the style of van gogh",
                 "a picture in the style of van gogh"]
TINY = Settings(steps=2, guidance=7.5, height=32, width=32)


def _problem(n: int, d: int = 12, out: int = 7, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x, y = (torch.randn(n, d, generator=generator, dtype=torch.float64) for _ in range(2))
    return x, y, torch.randn(out, d, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("n", [4, 30])  # fewer keys than dimensions, and more (both Gram matrices)
def test_solution_zeroes_the_objective_gradient(n):
    x, y, w0 = _problem(n)
    lam = 0.1
    w = solve_factor(x, y, lam).apply(w0)
    gradient = 2 * (w @ x.T - w0 @ y.T) @ x + 2 * lam * (w - w0)
    assert gradient.abs().max() < 1e-10
    assert (w - w0).abs().max() > 0.1


@pytest.mark.parametrize("n", [4, 30])
def test_low_rank_factor_equals_the_dense_formula(n):
    x, y, _ = _problem(n)
    lam = 0.1
    eye = torch.eye(x.shape[1], dtype=torch.float64)
    dense = (y.T @ x + lam * eye) @ torch.linalg.inv(x.T @ x + lam * eye)
    assert torch.allclose(solve_factor(x, y, lam).apply(eye), dense, atol=1e-12)  # I M = M


def test_keys_map_to_values_as_lambda_vanishes():
    x, y, w0 = _problem(4)
    errors = [(solve_factor(x, y, lam).apply(w0) @ x.T - w0 @ y.T).abs().max().item() for lam in (1.0, 1e-3, 1e-8)]
    assert errors[0] > 1e-2
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-7


def test_directions_orthogonal_to_every_key_are_unchanged():
    x, y, w0 = _problem(4)
    basis = torch.linalg.qr(x.T).Q  # an orthonormal basis of span(X)
    v = torch.randn(12, 3, dtype=torch.float64)
    v = v - basis @ (basis.T @ v)
    w = solve_factor(x, y, 0.01).apply(w0)
    assert (w @ v - w0 @ v).abs().max() < 1e-12
    assert (w @ x.T - w0 @ x.T).abs().max() > 0.1


def test_float32_weights_stay_float32():
    x, y, w0 = _problem(4)
    weight = w0.float()
    assert solve_factor(x, y, 0.01).apply(weight).dtype == torch.float32


@pytest.mark.parametrize("lam", [0.0, -0.01])
def test_lambda_must_be_positive(lam):
    x, y, _ = _problem(4)
    with pytest.raises(UserError, match="lambda must be > 0"):
        solve_factor(x, y, lam)


def test_keys_sit_at_the_last_subject_token(load):
    model = load("tiny-sd1")
    kv = subject_keys_values(model, "van gogh", "a painting", STYLE_PROMPTS)
    # <start> van gogh <end> / <start> a painting in the style of van gogh <end>: "gogh" is right before <end>.
    assert kv.positions == [2, 8, 8, 8]
    assert kv.target_position == 2
    cond = model.arch.encode(model.pipe, STYLE_PROMPTS[1])
    assert torch.equal(kv.keys[1], cond.cond[0, 8].double())
    target = model.arch.encode(model.pipe, "a painting")
    assert torch.equal(kv.values, target.cond[0, 2].double().expand(4, -1))


def test_subject_in_the_middle_of_a_prompt_is_found(load):
    tokenizer = load("tiny-sd1").pipe.tokenizer
    assert subject_position(tokenizer, "van gogh style painting of a tree", "van gogh") == 2


def test_concept_missing_from_a_prompt_is_rejected(load):
    with pytest.raises(UserError, match="does not occur"):
        subject_keys_values(load("tiny-sd1"), "van gogh", "a painting", ["a painting of a tree"])


def test_subject_tokens_split_differently_are_rejected(load):
    with pytest.raises(UserError, match="not in the tokens"):
        subject_keys_values(load("tiny-sd1"), "van gogh", "a painting", ["a painting by van goghs"])


@pytest.mark.slow
def test_sdxl_keys_are_the_concatenated_embedding(load):
    model = load("tiny-sdxl")
    kv = subject_keys_values(model, "van gogh", "a painting", STYLE_PROMPTS)
    cond = model.arch.encode(model.pipe, STYLE_PROMPTS[3])
    assert kv.keys.shape == (4, 64)  # two 32-wide encoders side by side
    assert torch.equal(kv.keys[3], cond.cond[0, 8].double())


def test_layers_out_of_range_are_rejected(load):
    with pytest.raises(UserError, match="indices 0..15"):
        check_layers(load("tiny-sd1"), [8, 16])


def test_edit_changes_only_k_and_v_of_the_chosen_layers(load):
    model = load("tiny-sd1")
    kv = subject_keys_values(model, "van gogh", "a painting", STYLE_PROMPTS)
    weights = edited_weights(model, dict.fromkeys([9, 8], solve_factor(kv.keys, kv.values)))
    paths = ["up_blocks.1.attentions.1", "up_blocks.1.attentions.2"]
    assert sorted(weights) == [f"unet.{p}.transformer_blocks.0.attn2.{m}.weight"
                               for p in paths for m in ("to_k", "to_v")]


def test_apply_then_remove_restores_weights_bit_for_bit(load, tmp_path):
    model = load("tiny-sd1")
    before = {name: value.clone() for name, value in model.pipe.unet.state_dict().items()}
    kv = subject_keys_values(model, "van gogh", "a painting", STYLE_PROMPTS)
    factor = solve_factor(kv.keys, kv.values)
    edit = Edit({"edit_id": "e"}, weights=edited_weights(model, dict.fromkeys([8, 9], factor)))
    save_edit(tmp_path, edit)
    loaded = load_edit(tmp_path, "e")
    name = "up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_v.weight"
    assert torch.equal(loaded.weights[f"unet.{name}"], edit.weights[f"unet.{name}"])
    with applied(model, loaded):
        assert torch.equal(model.pipe.unet.get_parameter(name), loaded.weights[f"unet.{name}"])
        assert not torch.equal(model.pipe.unet.get_parameter(name), before[name])
    after = model.pipe.unet.state_dict()
    assert all(torch.equal(after[name], value) for name, value in before.items())


def test_edits_saved_with_bare_unet_names_still_load_and_apply(load, tmp_path):
    model = load("tiny-sd1")
    name = "up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k.weight"
    original = model.pipe.unet.get_parameter(name).clone()
    folder = tmp_path / "edits" / "old"
    folder.mkdir(parents=True)
    (folder / "edit.json").write_text('{"edit_id": "old"}')
    save_file({name: original + 1}, str(folder / "weights.safetensors"))  # the layout before text-encoder edits
    loaded = load_edit(tmp_path, "old")
    assert list(loaded.weights) == [f"unet.{name}"]
    with applied(model, loaded):
        assert torch.equal(model.pipe.unet.get_parameter(name), original + 1)
    assert torch.equal(model.pipe.unet.get_parameter(name), original)


def test_remove_happens_when_generation_fails(load):
    model = load("tiny-sd1")
    name = "up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k.weight"
    original = model.pipe.unet.get_parameter(name).clone()
    with pytest.raises(RuntimeError), applied(model, Edit({}, weights={name: original + 1})):
        raise RuntimeError("generation failed")
    assert torch.equal(model.pipe.unet.get_parameter(name), original)


def _wide_sd1(width: int = 160) -> Model:
    """tiny-sd1 with a text embedding wider than the 154 rows of a prompt and the empty prompt, so that every row
    can be mapped exactly."""
    pipe = build_tiny("tiny-sd1")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        encoder = CLIPTextModel(CLIPTextConfig(**{**pipe.text_encoder.config.to_dict(), "hidden_size": width}))
        unet = UNet2DConditionModel(**{**pipe.unet.config, "cross_attention_dim": width})
    pipe = StableDiffusionPipeline(**{**pipe.components, "text_encoder": encoder, "unet": unet})
    pipe.set_progress_bar_config(disable=True)
    return Model("wide-sd1", MODELS["tiny-sd1"], ARCHITECTURES["sd1"], pipe, *find_layers(pipe.unet, 16))


@pytest.mark.slow
def test_editing_every_layer_on_every_token_turns_the_concept_into_the_target():
    model = _wide_sd1()
    concept, target = "a painting in the style of van gogh", "a painting"
    cond, uncond = model.arch.encode(model.pipe, concept), model.arch.encode_negative(model.pipe)
    goal = model.arch.encode(model.pipe, target)
    # Every token of the concept prompt maps to the target's token at the same position; the empty prompt that
    # the unconditional branch reads maps to itself.
    keys = torch.cat([cond.cond[0], uncond.cond[0]])
    values = torch.cat([goal.cond[0], uncond.cond[0]])
    weights = edited_weights(model, dict.fromkeys(range(len(model.layers)), solve_factor(keys, values, 1e-8)))
    expected = generate_batch(model, [Case(target, seed=3)], TINY)
    unedited = generate_batch(model, [Case(concept, seed=3)], TINY)
    with applied(model, Edit({}, weights=weights)):
        edited = generate_batch(model, [Case(concept, seed=3)], TINY)
    assert np.abs(unedited - expected).max() > 0.05
    assert np.abs(edited - expected).max() < 1e-4
