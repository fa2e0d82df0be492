"""Neuron-level editing: Welch-t ranking of to_k/to_v units and clamping the conditional branch's units."""

import math

import numpy as np
import pytest
import torch

from locolab.compute.edit.closed_form import Edit, applied
from locolab.compute.edit.neuron import clamp_units, rank_units, top_units, welch_t
from locolab.compute.generation import Case, generate_batch
from locolab.compute.settings import Settings
from locolab.contract.catalog.attributes import attribute_family
from locolab.contract.errors import UserError

TINY = Settings(steps=2, guidance=7.5, height=32, width=32)
LAYER8 = "up_blocks.1.attentions.1.transformer_blocks.0.attn2"


def test_welch_t_matches_the_formula():
    a = torch.tensor([[1.0], [2.0], [3.0]])  # mean 2, variance 1
    b = torch.tensor([[4.0], [6.0]])  # mean 5, variance 2
    assert welch_t(a, b).item() == pytest.approx(-3 / math.sqrt(1 / 3 + 2 / 2), rel=1e-12)


def test_welch_t_of_constant_units():
    a = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert welch_t(a, b).tolist() == [0.0, math.inf]


def _planted():
    """Two modules' activations: unit 4 of "a" and unit 1 of "b" far apart, then unit 0 of "b" somewhat."""
    generator = torch.Generator().manual_seed(0)
    neutral = {"a": torch.randn(6, 5, generator=generator), "b": torch.randn(6, 3, generator=generator)}
    concept = {name: torch.randn(6, v.shape[1], generator=generator) for name, v in neutral.items()}
    concept["a"][:, 4] += 10.0
    concept["b"][:, 1] -= 20.0
    concept["b"][:, 0] += 5.0
    return concept, neutral


def test_pooled_top_units_are_the_largest_t_across_modules_held_at_neutral_means():
    concept, neutral = _planted()
    units, t = top_units(concept, neutral, 2, "pooled")
    assert {name: indices.tolist() for name, (indices, _) in units.items()} == {"a": [4], "b": [1]}
    assert units["b"][1].item() == pytest.approx(neutral["b"][:, 1].mean().item())
    assert t["b"][1] < -10


def test_per_matrix_top_units_take_k_from_every_module():
    """The official selection: k per matrix, so "b" contributes its unit 0 too and "a" its second largest."""
    concept, neutral = _planted()
    units, t = top_units(concept, neutral, 2)
    picked = {name: indices.tolist() for name, (indices, _) in units.items()}
    assert picked["b"] == [0, 1]
    second = int(t["a"][:4].abs().argmax())
    assert picked["a"] == sorted([second, 4])
    assert units["a"][1].tolist() == pytest.approx(neutral["a"].mean(0)[sorted([second, 4])].tolist())
    with pytest.raises(UserError, match="per matrix, the chosen layers' key/value projections have 3 units"):
        top_units(concept, neutral, 4)


def test_topk_larger_than_the_units_is_rejected():
    activations = {"a": torch.zeros(3, 4)}
    with pytest.raises(UserError, match="chosen layers have 4"):
        top_units(activations, activations, 5, "pooled")


def test_clamp_changes_only_the_chosen_units_of_conditional_rows(load):
    unet = load("tiny-sd1").pipe.unet
    to_k = unet.get_submodule(f"{LAYER8}.to_k")
    text = torch.randn(2, 77, 32, generator=torch.Generator().manual_seed(0))  # [unconditional, conditional]
    with torch.no_grad():
        plain = to_k(text)
        with clamp_units(unet, {f"{LAYER8}.to_k": (torch.tensor([1, 5]), torch.tensor([9.0, -9.0]))}):
            clamped = to_k(text)
        again = to_k(text)
    assert torch.equal(clamped[0], plain[0])
    assert (clamped[1, :, [1, 5]] == torch.tensor([9.0, -9.0])).all()
    others = [i for i in range(plain.shape[-1]) if i not in (1, 5)]
    assert torch.equal(clamped[1, :, others], plain[1, :, others])
    assert torch.equal(again, plain)


def test_without_guidance_every_row_is_clamped(load):
    unet = load("tiny-sd1").pipe.unet
    to_v = unet.get_submodule(f"{LAYER8}.to_v")
    with torch.no_grad(), clamp_units(unet, {f"{LAYER8}.to_v": (torch.tensor([0]), torch.tensor([3.0]))}, cfg=False):
        out = to_v(torch.randn(2, 77, 32))
    assert (out[:, :, 0] == 3.0).all()


def _ranked(model, k, selection="per-matrix"):
    concept_prompts, neutral_prompts = attribute_family("style").contrast_prompts("van gogh")
    return rank_units(model, [8, 9], concept_prompts, neutral_prompts, 76, k, selection)


def test_style_contrast_keeps_painting_in_the_neutral_prompts():
    """As the official neutral prompts do: the contrast is the artist, not painting against no painting."""
    concept_prompts, neutral_prompts = attribute_family("style").contrast_prompts("van gogh")
    assert len(concept_prompts) == len(neutral_prompts) >= 8
    assert all("van gogh" in c and "painting" in c and "painting" in n and "van gogh" not in n
               for c, n in zip(concept_prompts, neutral_prompts))


def test_per_matrix_ranking_holds_k_units_of_each_key_and_value_matrix(load):
    units, _ = _ranked(load("tiny-sd1"), 5)
    assert sorted(units) == [f"up_blocks.1.attentions.{a}.transformer_blocks.0.attn2.{m}"
                             for a in (1, 2) for m in ("to_k", "to_v")]
    assert all(indices.numel() == 5 for indices, _ in units.values())


def test_ranking_holds_top_units_at_their_mean_on_neutral_prompts(load):
    model = load("tiny-sd1")
    units, t = _ranked(model, 10, "pooled")
    assert sum(indices.numel() for indices, _ in units.values()) == 10
    _, neutral_prompts = attribute_family("style").contrast_prompts("van gogh")
    name, (indices, values) = next(iter(units.items()))
    linear = model.pipe.unet.get_submodule(name)
    with torch.no_grad():
        rows = torch.stack([linear(model.arch.encode(model.pipe, p).cond[0, 76]) for p in neutral_prompts])
    assert torch.allclose(values, rows.mean(0)[indices], atol=1e-6)
    picked = {n: torch.zeros(v.numel(), dtype=torch.bool) for n, v in t.items()}
    for n, (i, _) in units.items():
        picked[n][i] = True
    size = torch.cat([v.abs() for v in t.values()])
    mask = torch.cat(list(picked.values()))
    assert size[mask].min() >= size[~mask].max()


def _plain_and_edited(model, k: int):
    """The top-k neuron edit, and one image without and with it."""
    units, _ = _ranked(model, k)
    case = [Case("a house in the style of van gogh", seed=1)]
    plain = generate_batch(model, case, TINY)
    with applied(model, Edit({}, units=units)):
        edited = generate_batch(model, case, TINY)
    return units, plain, edited


@pytest.mark.slow
def test_neuron_edit_with_k_zero_is_bit_identical_to_no_edit(load):
    units, plain, edited = _plain_and_edited(load("tiny-sd1"), 0)
    assert units == {}
    assert np.array_equal(edited, plain)


@pytest.mark.slow
def test_neuron_edit_changes_generation(load):
    model = load("tiny-sd1")
    _, plain, edited = _plain_and_edited(model, 40)
    assert np.abs(edited - plain).max() > 1e-3
    assert np.array_equal(generate_batch(model, [Case("a house in the style of van gogh", seed=1)], TINY), plain)
