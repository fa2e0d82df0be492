"""LocoEdit and neuron edits on DeepFloyd IF (tiny-if): text enters through add_k_proj/add_v_proj after each layer's
own text GroupNorm, so every layer gets its own keys, values and closed form."""

import numpy as np
import pytest
import torch

from locolab.compute.edit.closed_form import Edit, applied, edited_weights, layer_keys_values, solve_factors
from locolab.compute.edit.neuron import rank_units
from locolab.compute.generation import Case, generate_batch
from locolab.compute.models.architectures import ARCHITECTURES
from locolab.compute.models.layers import find_layers
from locolab.compute.models.loading import Model
from locolab.compute.models.tiny import build_tiny
from locolab.compute.settings import Settings
from locolab.compute.tokens import layer_text
from locolab.contract.catalog.attributes import attribute_family
from locolab.contract.catalog.registry import MODELS

PROMPTS = ["van gogh", "a painting in the style of van gogh", "a photo in the style of van gogh",
           "a picture in the style of van gogh"]
HELD_OUT, TARGET = "a house in the style of van gogh", "a painting"
LAYERS = [8, 9]
PROJECTIONS = ("add_k_proj", "add_v_proj")


@pytest.fixture(scope="module")
def model():
    """tiny-if whose text GroupNorms each have their own scale and shift, as trained layers do (freshly initialized
    ones are all the identity, which would make every layer's keys the same)."""
    pipe = build_tiny("tiny-if")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for norm in (m.norm_cross for m in pipe.unet.modules() if getattr(m, "norm_cross", None) is not None):
            norm.weight.copy_(1 + 0.5 * torch.randn(norm.weight.shape, generator=generator))
            norm.bias.copy_(0.5 * torch.randn(norm.bias.shape, generator=generator))
    return Model("tiny-if", MODELS["tiny-if"], ARCHITECTURES["if"], pipe, *find_layers(pipe.unet, 64))


@pytest.fixture(scope="module")
def by_layer(model):
    return layer_keys_values(model, LAYERS, "van gogh", TARGET, PROMPTS)


def _weight(model, index, projection):
    return getattr(model.attentions[index], projection).weight


@pytest.mark.slow
def test_each_layer_keys_what_its_add_k_proj_reads_at_the_last_subject_token(model, by_layer):
    kv = by_layer[9]
    assert (kv.positions, kv.target_position) == ([1, 7, 7, 7], 1)  # T5: no start token, "gogh" before </s>
    with torch.no_grad():
        text = layer_text(model, 9, model.arch.encode(model.pipe, PROMPTS[1]).cond)
        goal = layer_text(model, 9, model.arch.encode(model.pipe, TARGET).cond)
    assert torch.equal(kv.keys[1], text[0, 7].double())
    assert torch.equal(kv.values, goal[0, 1].double().expand(4, -1))
    assert (by_layer[8].keys - by_layer[9].keys).abs().max() > 0.1


def test_each_layers_weights_zero_the_gradient_of_its_own_objective_only(model, by_layer):
    lam = 0.01
    factors = solve_factors(by_layer, lam)
    weights = edited_weights(model, factors)
    assert sorted(weights) == sorted(f"unet.{model.layers[i].path}.{p}.weight" for i in LAYERS for p in PROJECTIONS)

    def gradient(index, factor, projection):
        x, y = by_layer[index].keys, by_layer[index].values
        w0 = _weight(model, index, projection).double()
        w = factor.apply(w0)
        return (2 * (w @ x.T - w0 @ y.T) @ x + 2 * lam * (w - w0)).abs().max().item()

    for index in LAYERS:
        for projection in PROJECTIONS:
            assert gradient(index, factors[index], projection) < 1e-9
            expected = factors[index].apply(_weight(model, index, projection).double()).float()
            assert torch.equal(weights[f"unet.{model.layers[index].path}.{projection}.weight"], expected)
    # A factor shared between layers, as on SD, would not solve layer 8's problem.
    assert gradient(8, factors[9], "add_k_proj") > 1e-2


def _keys_in_generation(model, prompt, index, position):
    """The conditional row of layer ``index``'s ``add_k_proj`` output at ``position``, in one denoising step."""
    seen = []
    handle = model.attentions[index].add_k_proj.register_forward_hook(lambda m, a, out: seen.append(out[-1, position]))
    try:
        generate_batch(model, [Case(prompt, 0)], Settings(1, 7.5, 32, 32))
    finally:
        handle.remove()
    return seen[0].double()


def test_edit_moves_a_held_out_prompts_subject_key_to_the_targets(model, by_layer):
    edit = Edit({}, weights=edited_weights(model, solve_factors(by_layer)))
    target = _keys_in_generation(model, TARGET, 9, 1)
    before = _keys_in_generation(model, HELD_OUT, 9, 7)
    with applied(model, edit):
        after = _keys_in_generation(model, HELD_OUT, 9, 7)
    remaining = ((after - target).norm() / (before - target).norm()).item()
    print(f"layer 9, held-out subject key: {remaining:.3f} of its distance to the target's key remains")
    assert remaining < 0.25  # measured 0.091


def test_apply_then_remove_restores_every_weight_bit_for_bit(model, by_layer):
    before = {name: value.clone() for name, value in model.pipe.unet.state_dict().items()}
    edit = Edit({}, weights=edited_weights(model, solve_factors(by_layer)))
    name = f"{model.layers[8].path}.add_v_proj.weight"
    with applied(model, edit):
        assert torch.equal(model.pipe.unet.get_parameter(name), edit.weights[f"unet.{name}"])
        assert not torch.equal(model.pipe.unet.get_parameter(name), before[name])
    after = model.pipe.unet.state_dict()
    assert all(torch.equal(after[name], value) for name, value in before.items())


def test_padding_keys_every_later_position_and_preserved_prompts_map_to_themselves(model):
    kv = layer_keys_values(model, [9], "van gogh", TARGET, PROMPTS, padding=True, preserve=["a photo of a dog"])[9]
    assert len(kv.keys) == (77 - 1) + 3 * (77 - 7) + 77
    assert torch.equal(kv.keys[-77:], kv.values[-77:])


@pytest.mark.slow
def test_neuron_edit_ranks_and_clamps_add_k_and_add_v_units(model):
    concept_prompts, neutral_prompts = attribute_family("style").contrast_prompts("van gogh")
    units, t = rank_units(model, LAYERS, concept_prompts, neutral_prompts, 76, 20)
    assert sorted(t) == sorted(f"{model.layers[i].path}.{p}" for i in LAYERS for p in PROJECTIONS)
    assert sorted(units) == sorted(t) and all(indices.numel() == 20 for indices, _ in units.values())  # per matrix
    settings = Settings(2, 7.5, 32, 32)
    plain = generate_batch(model, [Case(HELD_OUT, 1)], settings)
    with applied(model, Edit({}, units=units)):
        edited = generate_batch(model, [Case(HELD_OUT, 1)], settings)
    assert np.abs(edited - plain).max() > 1e-3
    assert np.array_equal(generate_batch(model, [Case(HELD_OUT, 1)], settings), plain)
