"""DeepFloyd IF stage I: the LocoGen identities on tiny-if, its layers, its tokenizer, and loading a saved pipeline."""

import collections
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from locolab.compute.generation import Case, generate_batch
from locolab.compute.models.loading import layer_count, load_model
from locolab.compute.settings import Settings
from locolab.contract.catalog.registry import MODELS

PROMPT, TARGET = "a beautiful house in the style of van gogh", "a painting"
STEPS, SIZE = 3, 32
PROMPTS = Path(__file__).resolve().parent.parent / "contract" / "catalog" / "prompts"


@pytest.fixture
def model(load):
    return load("tiny-if")


def settings(guidance=7.5):
    return Settings(STEPS, guidance, SIZE, SIZE)


def plain(model, prompt, seed, guidance=7.5, **kwargs):
    """The unmodified IFPipeline, called as a user would."""
    return model.pipe(prompt, generator=torch.Generator().manual_seed(seed), num_inference_steps=STEPS,
                      guidance_scale=guidance, height=SIZE, width=SIZE, output_type="np", clean_caption=False,
                      **kwargs).images[0]


@contextmanager
def pooled_text_from(model, original: torch.Tensor):
    """Feed the UNet's text-time embedding (``add_embedding``) ``original`` in the conditional rows."""
    def hook(module, args):
        text = args[0]
        return (torch.cat([text[:-1], original]),)

    handle = model.pipe.unet.add_embedding.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def test_empty_window_is_bit_identical_to_plain_pipeline(model):
    ours = generate_batch(model, [Case(PROMPT, 7)], settings())[0]
    assert np.array_equal(ours, plain(model, PROMPT, 7))


@pytest.mark.parametrize("guidance", [7.5, 1.0])
@pytest.mark.slow
def test_all_layers_swapped_is_plain_pipeline_on_target_with_original_pooled_text(model, guidance):
    original, target = model.arch.encode(model.pipe, PROMPT), model.arch.encode(model.pipe, TARGET)
    uncond = model.arch.encode_negative(model.pipe)
    ours = generate_batch(model, [Case(PROMPT, 7, (0, 22), TARGET)], settings(guidance))[0]
    with pooled_text_from(model, original.cond):
        expected = plain(model, None, 7, guidance, prompt_embeds=target.cond, negative_prompt_embeds=uncond.cond)
    assert np.array_equal(ours, expected)
    # The pooled text matters: the plain pipeline on the target differs.
    assert np.abs(ours - plain(model, TARGET, 7, guidance)).max() > 1e-4


@pytest.mark.slow
def test_single_layer_windows_each_change_the_image_and_are_batch_invariant(model):
    # Two steps: the random tiny UNet amplifies float rounding 10-40x per step (batch vs alone: 1e-7 after one step,
    # ~5e-6 after two, up to 7e-5 after three), which no trained model needs; leakage between samples would be >1e-3.
    two_steps = Settings(2, 7.5, SIZE, SIZE)
    cases = [Case(PROMPT, 7, (i, i + 1), TARGET) for i in range(22)] + [Case(PROMPT, 8), Case(PROMPT, 7)]
    batch = generate_batch(model, cases, two_steps)
    changes = np.abs(batch[:22] - batch[-1]).reshape(22, -1).max(axis=1)
    assert changes.min() > 1e-4, f"layers without effect: {np.flatnonzero(changes <= 1e-4)}"
    for i in (0, 9, 21):
        alone = generate_batch(model, [cases[i]], two_steps)[0]
        assert np.abs(alone - batch[i]).max() <= 1e-5
    assert np.abs(generate_batch(model, [Case(PROMPT, 8)], two_steps)[0] - batch[-2]).max() <= 1e-5


def test_swapped_layer_keys_read_the_projected_normalized_target(model):
    """What ``add_k_proj`` reads in a swapped layer: the target's T5 embedding through the UNet's encoder_hid_proj
    and the layer's own text GroupNorm (LocoEdit's keys for IF)."""
    layer, seen = model.attentions[9], []
    probe = layer.add_k_proj.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        generate_batch(model, [Case(PROMPT, 7, (9, 10), TARGET)], Settings(1, 7.5, SIZE, SIZE))
    finally:
        probe.remove()
    text = torch.cat([model.arch.encode_negative(model.pipe).cond, model.arch.encode(model.pipe, TARGET).cond])
    with torch.no_grad():
        expected = layer.norm_encoder_hidden_states(model.pipe.unet.encoder_hid_proj(text))
    assert len(seen) == 1 and torch.allclose(seen[0], expected, atol=1e-6)


def test_tiny_if_has_22_layers_down_mid_up_as_if_i_xl(model):
    layers = model.layers
    assert len(layers) == MODELS["tiny-if"].num_layers == MODELS["if-i-xl"].num_layers == 22
    assert collections.Counter(layer.block for layer in layers) == {"down": 9, "mid": 1, "up": 12}
    assert [layer.path for layer in layers[8:11]] == ["down_blocks.3.attentions.2", "mid_block.attentions.0",
                                                      "up_blocks.0.attentions.0"]
    # 64 px, pixel space: attention at 32, 16 and 8 px, as IF-I's attention_resolutions "32,16,8".
    assert [layer.resolution for layer in layers] == [32] * 3 + [16] * 3 + [8] * 8 + [16] * 4 + [32] * 4
    assert {layer.text_dim for layer in layers} == {model.pipe.unet.config.cross_attention_dim}


def test_tokenizer_is_t5_style_and_covers_the_prompts(model):
    tokenizer = model.pipe.tokenizer
    ids = tokenizer("a painting", padding="max_length", max_length=77).input_ids
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert tokenizer.bos_token_id is None and len(ids) == 77
    assert ids[:3] == tokenizer.convert_tokens_to_ids(["\u2581a", "\u2581painting", "</s>"]) and ids[3:] == [0] * 74
    assert len(tokenizer) > 40000
    files = list(PROMPTS.glob("*.yaml"))
    words = {word for path in files for word in path.read_text().lower().split()}
    unknown = [word for word in words if tokenizer.unk_token_id in tokenizer(word).input_ids]
    assert len(words) > 100 and not unknown


@pytest.mark.slow
def test_saved_tiny_if_loads_by_path_as_family_if(model, tmp_path):
    model.pipe.save_pretrained(tmp_path / "pipe", safe_serialization=True)
    assert layer_count(str(tmp_path / "pipe")) == 22
    reloaded = load_model(str(tmp_path / "pipe"), device="cpu")
    assert reloaded.arch.name == "if" and reloaded.spec.resolution == 64
    assert [layer.path for layer in reloaded.layers] == [layer.path for layer in model.layers]
    assert reloaded.pipe.tokenizer(PROMPT).input_ids == model.pipe.tokenizer(PROMPT).input_ids
    case = [Case(PROMPT, 1, (8, 10), TARGET)]
    assert np.array_equal(generate_batch(reloaded, case, settings()), generate_batch(model, case, settings()))
