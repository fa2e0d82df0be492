"""DiffQuickFix: the closed form on text-encoder layer 0's out_proj, keys at the subject token (and padding), values
from the target; the published recipe (paired augmentations, outputs with their bias as values) against the
notebook's formula; edits that undo exactly and reach generation."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from locolab.compute.edit.closed_form import Edit, applied, solve_factor
from locolab.compute.edit.quickfix import augmented, edited_weights, encoder_modules, keys_values, solved_weight
from locolab.compute.edit.request import make_request
from locolab.compute.edit.store import load_edit, save_edit
from locolab.compute.generation import Case, generate_batch
from locolab.compute.models.architectures import ARCHITECTURES
from locolab.compute.models.loading import Model
from locolab.compute.settings import Settings
from locolab.contract.catalog.registry import MODELS
from locolab.contract.errors import UserError
from locolab.contract.specs import EditSpec

PROMPTS = ["van gogh", "a painting in the style of van gogh", "a photo in the style of van gogh"]
ONE_TARGET = ["a painting"] * len(PROMPTS)
TINY = Settings(steps=2, guidance=7.5, height=32, width=32)
LAYER0 = "encoder.layers.0.self_attn.out_proj"


def _out_proj_input(encoder, tokenizer, prompt: str, output: bool = False) -> torch.Tensor:
    """Layer 0's out_proj input (or output) on ``prompt``, (77, d), read by running the encoder directly."""
    module = next(m for name, m in encoder.named_modules() if name.endswith(LAYER0))
    seen = []
    handle = module.register_forward_hook(lambda mod, args, out: seen.append((out if output else args[0])[0].double()))
    ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        encoder(ids)
    handle.remove()
    return seen[0]


def _params(model: Model) -> dict[str, torch.Tensor]:
    return {f"{part}.{name}": value.clone() for part in ("unet", "text_encoder", "text_encoder_2")
            if getattr(model.pipe, part, None) is not None
            for name, value in getattr(model.pipe, part).state_dict().items()}


def test_keys_sit_at_the_last_subject_token_and_values_at_the_targets_last_token(load):
    model = load("tiny-sd1")
    (kv,) = keys_values(model, "van gogh", ONE_TARGET, PROMPTS, padding=False)
    assert kv.module == f"text_encoder.{LAYER0}"
    assert (kv.positions, kv.target_positions) == ([[2], [8], [8]], [[2], [2], [2]])
    source = _out_proj_input(model.pipe.text_encoder, model.pipe.tokenizer, PROMPTS[1])
    target = _out_proj_input(model.pipe.text_encoder, model.pipe.tokenizer, "a painting")
    assert torch.allclose(kv.keys[1], source[8], atol=1e-6)
    assert torch.allclose(kv.values, target[2].expand(3, -1), atol=1e-6)


def test_padding_keys_run_to_the_end_and_values_follow_the_target_clipped(load):
    model = load("tiny-sd1")
    (kv,) = keys_values(model, "van gogh", ONE_TARGET, PROMPTS, padding=True)
    assert kv.positions[1] == list(range(8, 77))
    assert kv.target_positions[1] == list(range(2, 71))
    assert kv.target_positions[0] == list(range(2, 77))  # 75 keys from position 2: the target ends at 76 too
    assert kv.keys.shape == (75 + 69 + 69, 32)
    source = _out_proj_input(model.pipe.text_encoder, model.pipe.tokenizer, PROMPTS[2])
    target = _out_proj_input(model.pipe.text_encoder, model.pipe.tokenizer, "a painting")
    assert torch.allclose(kv.keys[75 + 69:], source[8:], atol=1e-6)
    assert torch.allclose(kv.values[75 + 69:], target[2:71], atol=1e-6)


def test_solved_weight_is_the_objective_minimum(load):
    model = load("tiny-sd1")
    (kv,) = keys_values(model, "van gogh", ONE_TARGET, PROMPTS)
    lam = 0.01
    w0 = model.pipe.text_encoder.get_submodule(LAYER0).weight.detach().double()
    w = solve_factor(kv.keys, kv.values, lam).apply(w0)
    assert torch.equal(edited_weights(model, [kv], lam)[f"text_encoder.{LAYER0}.weight"], w.float())

    def objective(w):
        return ((kv.keys @ w.T - kv.values @ w0.T) ** 2).sum() + lam * ((w - w0) ** 2).sum()

    gradient = 2 * (w @ kv.keys.T - w0 @ kv.values.T) @ kv.keys + 2 * lam * (w - w0)
    assert gradient.abs().max() < 1e-9
    assert objective(w) < 0.5 * objective(w0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        step = 1e-3 * torch.randn(w.shape, generator=generator, dtype=torch.float64)
        assert objective(w + step) > objective(w)


def test_sdxl_edits_layer_0_of_both_encoders_each_from_its_own_states(load):
    model = load("tiny-sdxl")
    first, second = keys_values(model, "van gogh", ONE_TARGET, PROMPTS, padding=False)
    assert first.module == f"text_encoder.{LAYER0}"
    assert second.module == f"text_encoder_2.text_model.{LAYER0}"
    source = _out_proj_input(model.pipe.text_encoder_2, model.pipe.tokenizer_2, PROMPTS[1])
    assert torch.allclose(second.keys[1], source[8], atol=1e-6)
    assert not torch.allclose(first.keys, second.keys, atol=1e-2)
    assert sorted(edited_weights(model, [first, second], 0.01)) == [
        f"text_encoder.{LAYER0}.weight", f"text_encoder_2.text_model.{LAYER0}.weight"]


def test_edit_moves_the_source_embedding_to_the_target(load):
    model = load("tiny-sdxl")  # SD-XL reads the penultimate state: here, right after layer 0
    edit = Edit({}, weights=edited_weights(model, keys_values(model, "van gogh", ONE_TARGET, PROMPTS), 0.01))
    goal = model.arch.encode(model.pipe, "a painting").cond[0, 2]
    before = model.arch.encode(model.pipe, PROMPTS[1]).cond[0, 8]
    with applied(model, edit):
        after = model.arch.encode(model.pipe, PROMPTS[1]).cond[0, 8]
    distance_before, distance_after = (before - goal).norm().item(), (after - goal).norm().item()
    assert distance_before > 2.0
    assert distance_after < 0.35 * distance_before  # measured: 2.56 -> 0.72


def test_apply_then_remove_restores_every_parameter_bit_for_bit_after_a_round_trip(load, tmp_path):
    model = load("tiny-sdxl")
    before = _params(model)
    weights = edited_weights(model, keys_values(model, "van gogh", ONE_TARGET, PROMPTS), 0.01)
    save_edit(tmp_path, Edit({"edit_id": "q"}, weights=weights))
    loaded = load_edit(tmp_path, "q")
    assert loaded.weights.keys() == weights.keys()
    assert all(torch.equal(loaded.weights[name], weights[name]) for name in weights)
    with applied(model, loaded):
        during = _params(model)
        assert [name for name in before if not torch.equal(before[name], during[name])] == sorted(weights)
    after = _params(model)
    assert all(torch.equal(after[name], value) for name, value in before.items())


@pytest.mark.slow
def test_generation_reads_the_edited_text_encoder(load):
    model = load("tiny-sd1")
    edit = Edit({}, weights=edited_weights(model, keys_values(model, "van gogh", ONE_TARGET, PROMPTS), 0.01))
    case = [Case(PROMPTS[1], seed=3)]
    unedited = generate_batch(model, case, TINY)
    with applied(model, edit):
        edited = generate_batch(model, case, TINY)
    assert np.abs(edited - unedited).max() > 1e-2
    assert np.array_equal(generate_batch(model, case, TINY), unedited)


def _model_with(encoder) -> Model:
    return Model("custom", MODELS["tiny-sd1"], ARCHITECTURES["sd1"], SimpleNamespace(text_encoder=encoder), [], [])


def test_deepfloyd_if_edits_the_first_attention_output_of_its_t5_encoder(load):
    model = load("tiny-if")
    (kv,) = keys_values(model, "van gogh", ONE_TARGET, PROMPTS, padding=False)
    assert kv.module == "text_encoder.encoder.block.0.layer.0.SelfAttention.o"
    assert (kv.positions, kv.target_positions) == ([[1], [7], [7]], [[1], [1], [1]])  # T5 has no start token


def test_other_text_encoders_are_rejected_naming_the_family():
    with pytest.raises(UserError, match="not the Linear of family 'sd1'"):
        encoder_modules(_model_with(torch.nn.Linear(4, 4)))


def test_published_recipe_pairs_each_augmentation_with_the_same_augmentation_of_the_target():
    request = make_request(EditSpec("tiny-sd1", "style", "van gogh", "diffquickfix"), "float32")
    assert request["source_prompts"] == ["van gogh", "a photo of van gogh", "an image of van gogh",
                                         "a picture of van gogh"]
    # The notebook's pair: "van gogh" -> "painting", not the family's "a painting".
    assert request["target"] == "painting"
    assert request["target_prompts"] == ["painting", "a photo of painting", "an image of painting",
                                         "a picture of painting"]
    assert (request["positions"], request["bias_in_values"], request["lambda"]) == ("subject+padding", True, 0.01)
    ours = make_request(EditSpec("tiny-sd1", "style", "van gogh", "diffquickfix-family"), "float32")
    assert ours["source_prompts"][1] == "a painting in the style of van gogh"
    assert ours["target_prompts"] == ["a painting"] * 4 and ours["bias_in_values"] is False


def test_published_recipe_solves_the_notebooks_formula_with_outputs_and_bias_as_values(load):
    """W = (lam W0 + sum_i v_i k_i^T)(lam I + sum_i k_i k_i^T)^-1 with v_i the out_proj outputs on the paired target
    (bias included), as the notebook's ``train_new`` computes it, here from states read by running the encoder."""
    model = load("tiny-sd1")
    sources, targets = augmented("van gogh"), augmented("a painting")
    (kv,) = keys_values(model, "van gogh", targets, sources)
    encoder, tokenizer = model.pipe.text_encoder, model.pipe.tokenizer
    linear = encoder.get_submodule(LAYER0)
    original_bias = linear.bias.detach().clone()
    assert not original_bias.any()  # random-weight CLIP starts with zero biases; released checkpoints do not
    with torch.no_grad():
        linear.bias.copy_(0.1 * torch.randn(32, generator=torch.Generator().manual_seed(0)))
    try:
        keys, values = [], []
        for source, target in zip(sources, targets):
            last = [tokenizer(t).input_ids.index(tokenizer.eos_token_id) - 1 for t in (source, target)]
            keys.append(_out_proj_input(encoder, tokenizer, source)[last[0]:])
            out = _out_proj_input(encoder, tokenizer, target, output=True)
            values.append(out[[min(last[1] + k, 76) for k in range(77 - last[0])]])
        keys, values = torch.cat(keys), torch.cat(values)
        lam, w0 = 0.01, linear.weight.detach().double()
        notebook = (lam * w0 + values.T @ keys) @ torch.linalg.inv(lam * torch.eye(32, dtype=torch.float64)
                                                                    + keys.T @ keys)
        published = solved_weight(linear, kv, lam, bias_in_values=True)
        ours = solved_weight(linear, kv, lam, bias_in_values=False)
    finally:
        with torch.no_grad():
            linear.bias.copy_(original_bias)
    assert torch.allclose(kv.keys, keys, atol=1e-6)
    assert kv.target_positions[1] == list(range(5, 77))  # "a photo of a painting" ends at 5, as its source
    assert torch.allclose(published.double(), notebook, atol=1e-5)
    assert (published - ours).abs().max() > 1e-2  # the bias, counted once more in the published values
