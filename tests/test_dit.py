"""Diffusion transformers: PixArt's and FLUX.1's text-reading sites in forward order, the swap's exact identities,
the swap against independent oracles that overwrite the projections' outputs, and LocoEdit's keys on both."""

import json

import numpy as np
import pytest
import torch

from locolab.compute.cli import main
from locolab.compute.edit.closed_form import layer_keys_values, solve_factors
from locolab.compute.generation import Case, generate_batch, with_companions
from locolab.compute.hooks import Hooks
from locolab.compute.intervention import swap_per_sample, swap_stream
from locolab.compute.settings import Settings
from locolab.contract.errors import UserError

PROMPT, TARGET = "a beautiful house in the style of van gogh", "a painting"
STYLE_PROMPTS = ["van gogh", "a painting in the style of van gogh", "a photo in the style of van gogh"]
STEPS, SIZE = 3, 32


def settings(model):
    return Settings.defaults(model.spec, steps=STEPS, size=SIZE)


def plain(model, prompt, seed, **kwargs):
    """The unmodified diffusers pipeline, called as a user would (PixArt without resolution binning, which needs a
    released sample size; FLUX with the tiny T5 tokenizer's sequence length)."""
    s = settings(model)
    extra = ({"use_resolution_binning": False, "clean_caption": False} if model.arch.text_mask
             else {"max_sequence_length": 77})
    return model.pipe(prompt, generator=torch.Generator().manual_seed(seed), num_inference_steps=s.steps,
                      guidance_scale=s.guidance, height=s.height, width=s.width, output_type="np",
                      **extra, **kwargs).images[0]


@pytest.mark.slow
def test_pixart_has_28_cross_attention_blocks_in_forward_order(load):
    for name in ("tiny-pixart", "tiny-pixart-sigma"):
        layers = load(name).layers
        assert [layer.path for layer in layers] == [f"transformer_blocks.{i}.attn2" for i in range(28)]
        assert {layer.block for layer in layers} == {"cross"}
        assert [layer.block_index for layer in layers] == list(range(28))
        # 64 px, 4x VAE, 2x2 patches: 8x8 image tokens; attn2 reads the 16-wide projected caption.
        assert {(layer.resolution, layer.text_dim) for layer in layers} == {(8, 16)}


@pytest.mark.slow
def test_flux_lists_19_double_then_38_single_stream_blocks(load, capsys):
    assert main(["layers", "--model", "tiny-flux", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["architecture"] == "flux"
    assert [(row["block"], row["path"]) for row in listed["layers"]] == (
        [("double", f"transformer_blocks.{i}.attn") for i in range(19)]
        + [("single", f"single_transformer_blocks.{i}.attn") for i in range(38)])
    assert [row["index"] for row in listed["layers"]] == list(range(57))
    assert [layer.path for layer in load("tiny-flux").layers] == [row["path"] for row in listed["layers"]]


@pytest.mark.slow
def test_sd3_has_24_joint_blocks_and_reads_the_concept_in_both_text_parts(load):
    from locolab.compute.contribution.measure import concept_positions

    model = load("tiny-sd3")
    assert [(layer.block, layer.path) for layer in model.layers] == [
        ("joint", f"transformer_blocks.{i}.attn") for i in range(24)]
    # <start> a beautiful house in the style of van gogh: 8, 9 among CLIP's 77 positions; T5 (no start) 7, 8 after.
    assert concept_positions(model, PROMPT, "van gogh") == [8, 9, 77 + 7, 77 + 8]


@pytest.mark.slow
def test_sd3_locoedit_keys_the_concept_in_the_clip_part_and_the_t5_part_against_an_own_float64_solve(load):
    """Keys: block 3's text input (own hook, conditional row) at "gogh" in CLIP's part (8) and in T5's (77 + 7) at
    every step of the prompt's own generation, mapped to the target's last token in each part (2, 77 + 1); the
    edited add_k_proj/add_v_proj are W0 (Y^T X + lam I)(X^T X + lam I)^-1 solved here in float64."""
    from locolab.compute.edit.closed_form import edited_weights

    model = load("tiny-sd3")
    source = STYLE_PROMPTS[1]
    (kv,) = layer_keys_values(model, [3], "van gogh", TARGET, [source]).values()
    assert (kv.positions, kv.target_position) == ([[8, 77 + 7]], [2, 77 + 1])
    seen = {}
    for prompt in (source, TARGET):
        rows = []
        with Hooks() as hooks:
            hooks.before(model.attentions[3], lambda m, a, k, rows=rows: rows.append(k["encoder_hidden_states"][-1]),
                         with_kwargs=True)
            generate_batch(model, [Case(prompt, 0)], Settings.defaults(model.spec))
        seen[prompt] = torch.stack(rows).double()  # (steps, T, d)
    width = seen[source].shape[-1]
    keys = seen[source][:, [8, 77 + 7]].reshape(-1, width)
    values = seen[TARGET][:, [2, 77 + 1]].reshape(-1, width)
    assert keys.shape[0] == 2 * model.spec.steps and torch.allclose(kv.keys, keys, atol=1e-5)
    eye = 0.01 * torch.eye(width, dtype=torch.float64)
    right = (values.T @ keys + eye) @ torch.linalg.inv(keys.T @ keys + eye)
    weights = edited_weights(model, solve_factors({3: kv}))
    for projection in ("add_k_proj", "add_v_proj"):
        w0 = getattr(model.attentions[3], projection).weight.detach().double()
        mine = weights[f"transformer.transformer_blocks.3.attn.{projection}.weight"].double()
        assert (mine - w0 @ right).abs().max() < 1e-4 * w0.abs().max()
        assert (mine - w0).abs().max() > 1e-3  # the edit changes the weight


@pytest.mark.slow
def test_sana_has_20_cross_attention_blocks_reading_its_normed_caption(load, capsys):
    model = load("tiny-sana")
    assert [layer.path for layer in model.layers] == [f"transformer_blocks.{i}.attn2" for i in range(20)]
    assert {(layer.block, layer.resolution, layer.text_dim) for layer in model.layers} == {("cross", 16, 16)}
    assert main(["layers", "--model", "tiny-sana"]) == 0
    assert "transformer_blocks.19.attn2" in capsys.readouterr().out


@pytest.mark.slow
def test_sana_positions_index_the_caption_behind_its_system_instruction(load):
    """The pipeline's own Gemma input (recorded at the text encoder), cut as its encode_prompt cuts it: the positions
    LocoLab finds hold the concept's last token and the target's last token."""
    from locolab.compute.tokens import last_token_position, position_in_model, subject_position

    model = load("tiny-sana")
    seen = []
    with Hooks() as hooks:
        hooks.before(model.pipe.text_encoder, lambda m, a, k: seen.append(a[0] if a else k["input_ids"]),
                     with_kwargs=True)
        for prompt in (PROMPT, TARGET):
            model.arch.encode(model.pipe, prompt)
    cut = [[int(ids[0, 0])] + ids[0, -299:].tolist() for ids in seen]
    gogh = model.pipe.tokenizer.convert_tokens_to_ids("▁gogh")
    painting = model.pipe.tokenizer.convert_tokens_to_ids("▁painting")
    found = position_in_model(model, lambda t: subject_position(t, PROMPT, "van gogh"))
    last = position_in_model(model, lambda t: last_token_position(t, TARGET))
    assert (cut[0][found], cut[1][last], cut[1][last + 1]) == (gogh, painting, model.pipe.tokenizer.pad_token_id)
    assert found == 10 and last == 3  # the instruction's last token at 1, the prompt from 2


@pytest.mark.parametrize("name", ["tiny-pixart", "tiny-pixart-sigma", "tiny-flux", "tiny-sd3", "tiny-sana"])
@pytest.mark.slow
def test_empty_swap_is_bit_identical_to_plain_pipeline(load, name):
    model = load(name)
    assert np.array_equal(generate_batch(model, [Case(PROMPT, 7)], settings(model))[0], plain(model, PROMPT, 7))


@pytest.mark.parametrize("name", ["tiny-pixart", "tiny-sana"])
@pytest.mark.slow
def test_cross_attention_dit_all_blocks_swapped_is_bit_identical_to_plain_pipeline_on_target(load, name):
    model = load(name)
    ours = generate_batch(model, [Case(PROMPT, 7, (0, len(model.layers)), TARGET)], settings(model))[0]
    assert np.array_equal(ours, plain(model, TARGET, 7))
    assert np.abs(ours - plain(model, PROMPT, 7)).max() > 1e-3


@pytest.mark.parametrize("name", ["tiny-flux", "tiny-sd3"])
@pytest.mark.slow
def test_joint_all_blocks_and_pooled_swapped_is_the_target_generation(load, name):
    model = load(name)
    every = (0, len(model.layers))
    swapped, companion = Case(PROMPT, 7, every, TARGET, swap_pooled=True), Case(TARGET, 7)
    images = generate_batch(model, [swapped, companion, Case(PROMPT, 7, every, TARGET)], settings(model))
    # Every site reads the companion's text and the time embedding is the target's: the same computation row by row.
    assert np.array_equal(images[0], images[1])
    assert np.abs(images[0] - plain(model, TARGET, 7)).max() <= 1e-5
    # Keeping the original pooled CLIP embedding (the default) is a different image.
    assert np.abs(images[2] - images[1]).max() > 1e-4


@pytest.mark.parametrize("name", ["tiny-pixart", "tiny-flux", "tiny-sd3", "tiny-sana"])
@pytest.mark.slow
def test_middle_window_changes_the_image_and_batches_are_invariant(load, name):
    model = load(name)
    middle = len(model.layers) // 2
    cases = [Case(PROMPT, 7, (middle - 1, middle + 2), TARGET), Case(PROMPT, 8), Case(PROMPT, 7)]
    batch = generate_batch(model, cases, settings(model))
    assert np.abs(batch[0] - batch[2]).max() > 1e-4
    alone = generate_batch(model, cases[:1], settings(model))[0]
    assert np.abs(alone - batch[0]).max() <= 1e-5
    assert np.abs(plain(model, PROMPT, 8) - batch[1]).max() <= 1e-5


def test_pixart_swap_changes_only_conditional_rows_and_swaps_the_mask(load):
    model = load("tiny-pixart")
    module = model.attentions[14]
    text, mask = torch.randn(4, 120, 16), torch.zeros(4, 1, 120)
    replacement, replacement_mask = torch.randn(2, 120, 16), torch.full((2, 1, 120), -10000.0)
    swapped = torch.zeros(28, 2, dtype=torch.bool)
    swapped[14, 1] = True
    seen = []
    with swap_per_sample(model.attentions, replacement, swapped, replacement_mask), Hooks() as hooks:
        hooks.before(module, lambda m, a, k: seen.append(k), with_kwargs=True)
        module(torch.randn(4, 64, 16), encoder_hidden_states=text, attention_mask=mask)
    got = seen[0]
    assert torch.equal(got["encoder_hidden_states"][:3], text[:3])
    assert torch.equal(got["encoder_hidden_states"][3], replacement[1])
    assert torch.equal(got["attention_mask"][:3], mask[:3])
    assert torch.equal(got["attention_mask"][3], replacement_mask[1])


def _overwrite(values: dict, rows: slice):
    """A forward hook that overwrites ``rows`` of a projection's output with ``values[module]``."""
    def hook(module, args, output):
        output = output.clone()
        output[rows] = values[module].to(output)
        return output
    return hook


@pytest.mark.parametrize("name", ["tiny-pixart", "tiny-sana"])
@pytest.mark.slow
def test_cross_attention_dit_swap_equals_overwriting_the_key_and_value_projections(load, name):
    """The official LocoGen code's view: overwrite to_k/to_v outputs of the conditional row with projections of the
    target's caption (SANA: after its caption RMS norm); the padding mask is given to those attentions by a wrapped
    processor."""
    model, window = load(name), (10, 14)
    chosen = model.attentions[window[0]:window[1]]
    with torch.no_grad():
        target = model.arch.encode(model.pipe, TARGET)
        caption = model.denoiser.caption_projection(target.cond)
        if name == "tiny-sana":
            caption = model.denoiser.caption_norm(caption)
        values = {getattr(a, p): getattr(a, p)(caption)[0] for a in chosen for p in ("to_k", "to_v")}
    bias = (1 - target.extras["prompt_attention_mask"].float()) * -10000.0

    def oracle(with_mask: bool):
        originals = {a: a.processor for a in chosen}

        class MaskSwap:
            def __init__(self, inner):
                self.inner = inner

            def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
                attention_mask = torch.cat([attention_mask[:1], bias[:, None]])
                return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, **kwargs)

        try:
            with Hooks() as hooks, torch.no_grad():
                for attention in chosen:
                    for projection in ("to_k", "to_v"):
                        hooks.after(getattr(attention, projection), _overwrite(values, slice(1, 2)))
                    if with_mask:
                        attention.set_processor(MaskSwap(originals[attention]))
                return generate_batch(model, [Case(PROMPT, 7)], settings(model))[0]
        finally:
            for attention, processor in originals.items():
                attention.set_processor(processor)

    ours = generate_batch(model, [Case(PROMPT, 7, window, TARGET)], settings(model))[0]
    assert np.abs(ours - oracle(with_mask=True)).max() <= 1e-5
    # The prompts' paddings differ: keeping the original's mask on the target's text is another image.
    assert np.abs(ours - oracle(with_mask=False)).max() > 1e-4


@pytest.mark.parametrize("name, chosen", [("tiny-flux", [4, 5, 6, 30, 31]), ("tiny-sd3", [3, 4, 20, 23])])
@pytest.mark.slow
def test_joint_swap_equals_a_second_pass_that_overwrites_the_text_projections(load, name, chosen):
    """The DiT paper's code, two passes: generate the target alone, recording what each chosen block's attention reads
    at every step (FLUX: double- and single-stream blocks; SD3: joint blocks, the last one reading text without
    updating it); then generate the prompt alone, overwriting the conditional text rows of the chosen blocks'
    query/key/value projections with projections of the recorded text."""
    model = load(name)
    single = {i for i in chosen if model.layers[i].block == "single"}
    text_len = model.arch.encode(model.pipe, TARGET).cond.shape[1]
    recorded = {i: [] for i in chosen}
    rows = slice(1, 2) if model.arch.cfg else slice(0, 1)  # [unconditional, conditional] with guidance

    def record(i):
        def hook(module, args, kwargs):
            text = kwargs["hidden_states"][:, :text_len] if i in single else kwargs["encoder_hidden_states"]
            recorded[i].append(text[rows].clone())
        return hook

    with Hooks() as hooks:
        for i in chosen:
            hooks.before(model.attentions[i], record(i), with_kwargs=True)
        generate_batch(model, [Case(TARGET, 7)], settings(model))

    step = {"n": -1}
    with Hooks() as hooks:
        hooks.before(model.denoiser, lambda m, a: step.update(n=step["n"] + 1))
        for i in chosen:
            attention = model.attentions[i]
            names = ("to_q", "to_k", "to_v") if i in single else ("add_q_proj", "add_k_proj", "add_v_proj")
            for projection_name in names:
                def hook(module, args, output, i=i):
                    value = torch.nn.functional.linear(recorded[i][step["n"]], module.weight, module.bias)
                    output = output.clone()
                    if i in single:
                        output[rows, :text_len] = value
                    else:
                        output[rows] = value
                    return output

                hooks.after(getattr(attention, projection_name), hook)
        oracle = generate_batch(model, [Case(PROMPT, 7)], settings(model))[0]
    ours = generate_batch(model, [Case(PROMPT, 7, sites=tuple(chosen), target=TARGET)], settings(model))[0]
    assert np.abs(ours - oracle).max() <= 1e-5
    assert np.abs(ours - plain(model, PROMPT, 7)).max() > 1e-4


def test_companions_are_reused_or_added():
    cases = [Case(PROMPT, 1, (0, 2), TARGET), Case(TARGET, 1), Case(PROMPT, 2, (3, 4), TARGET), Case(PROMPT, 2)]
    rows, source = with_companions(cases)
    assert rows[:4] == cases and rows[4:] == [Case(TARGET, 2)]
    assert source == [1, 1, 4, 3, 4]


@pytest.mark.slow
def test_a_stream_swap_whose_source_is_swapped_too_is_rejected(load):
    model = load("tiny-flux")
    swapped = torch.zeros(57, 2, dtype=torch.bool)
    swapped[3] = True
    with pytest.raises(ValueError, match="source sample is swapped at the same layer"):
        with swap_stream(model.attentions, [layer.block for layer in model.layers], swapped, [1, 0], 77):
            pass


def test_pixart_keys_are_the_projected_caption_at_the_last_subject_token(load):
    model = load("tiny-pixart")
    by_layer = layer_keys_values(model, [12, 13], "van gogh", TARGET, STYLE_PROMPTS)
    kv = by_layer[12]
    assert by_layer[13] is kv  # every attn2 reads the same projected caption: one factor
    # T5 has no start token: "van gogh" ends at 1, "a painting in the style of van gogh" at 7.
    assert kv.positions == [1, 7, 7] and kv.target_position == 1
    caption = model.denoiser.caption_projection(model.arch.encode(model.pipe, STYLE_PROMPTS[1]).cond)
    assert torch.allclose(kv.keys[1], caption[0, 7].double(), atol=1e-6)
    # Few keys in a 16-wide space: the edited projections map each key close to the target's projection.
    factor = solve_factors(by_layer)[12]
    weight = model.attentions[12].to_k.weight.double()
    after = factor.apply(weight) @ kv.keys.T
    goal, before = weight @ kv.values.T, weight @ kv.keys.T
    assert (after - goal).norm() < 0.05 * (before - goal).norm()


@pytest.mark.slow
def test_flux_keys_are_each_blocks_text_input_at_every_step(load):
    model = load("tiny-flux")
    by_layer = layer_keys_values(model, [5, 6], "van gogh", TARGET, STYLE_PROMPTS)
    assert by_layer[5] is not by_layer[6]
    kv, steps = by_layer[5], model.spec.steps
    assert kv.keys.shape == (len(STYLE_PROMPTS) * steps, 32)
    seen = []
    with Hooks() as hooks:
        hooks.before(model.attentions[5], lambda m, a, k: seen.append(k["encoder_hidden_states"][0, 7]),
                     with_kwargs=True)
        generate_batch(model, [Case(STYLE_PROMPTS[1], 0)], Settings.defaults(model.spec))
    # Prompt 1's rows, step by step, are what block 5 reads at "gogh" in that prompt's generation with seed 0.
    assert torch.allclose(kv.keys[steps:2 * steps], torch.stack(seen).double(), atol=1e-5)


def _residual(model, layer, factor, kv) -> float:
    """||W k - W0 v|| / ||W0 v|| over ``kv``'s keys and values, W = the layer's add_k_proj edited with ``factor``."""
    w0 = model.attentions[layer].add_k_proj.weight.detach().double()
    w = factor.apply(w0)
    return float(torch.linalg.norm(kv.keys @ w.T - kv.values @ w0.T) / torch.linalg.norm(kv.values @ w0.T))


@pytest.mark.slow  # four key generations of tiny-flux
def test_a_multi_block_flux_edit_reads_each_blocks_keys_through_the_blocks_before_it_edited(load):
    from locolab.compute.edit.closed_form import Edit, applied, edited_weights

    model = load("tiny-flux")
    sequential = layer_keys_values(model, [3, 4], "van gogh", TARGET, STYLE_PROMPTS[:2])
    parallel = layer_keys_values(model, [3, 4], "van gogh", TARGET, STYLE_PROMPTS[:2], sequential=False)
    assert torch.equal(sequential[3].keys, parallel[3].keys)  # nothing before block 3 is edited
    with applied(model, Edit({}, edited_weights(model, solve_factors({3: sequential[3]})))):
        (through,) = layer_keys_values(model, [4], "van gogh", TARGET, STYLE_PROMPTS[:2]).values()
    assert torch.equal(through.keys, sequential[4].keys) and torch.equal(through.values, sequential[4].values)
    assert not torch.allclose(parallel[4].keys, through.keys, rtol=1e-3)
    # Block 4's edit meets its objective on the keys it reads once block 3 is edited only when solved on them.
    ok = _residual(model, 4, solve_factors(sequential)[4], through)
    off = _residual(model, 4, solve_factors(parallel)[4], through)
    assert ok < off / 2, (ok, off)


@pytest.mark.parametrize("layers", [[18, 19], [20], [30, 56]])
def test_flux_single_stream_blocks_cannot_be_edited(load, layers):
    with pytest.raises(UserError, match=r"single-stream blocks.*edit double-stream blocks \(0\.\.18\) instead"):
        layer_keys_values(load("tiny-flux"), layers, "van gogh", TARGET, STYLE_PROMPTS)


@pytest.mark.slow
def test_offloaded_model_generates_the_same_images(load):
    """accelerate's model CPU offload (``--offload``), on the CPU as its device: the same images, bit for bit."""
    from locolab.compute.models.loading import load_model

    model = load_model("tiny-pixart", device="cpu", offload=True)
    assert model.offload and model.device.type == "cpu"
    assert getattr(model.pipe.transformer, "_hf_hook", None) is not None  # accelerate moves it in and out
    case = [Case(PROMPT, 7, (10, 13), TARGET)]
    assert np.array_equal(generate_batch(model, case, settings(model)),
                          generate_batch(load("tiny-pixart"), case, settings(model)))


@pytest.mark.slow
def test_group_offloaded_model_generates_the_same_images(load):
    """diffusers' block-level group offload (``--offload group``), on the CPU as its device: the same images."""
    from locolab.compute.models.loading import load_model

    model = load_model("tiny-pixart", device="cpu", offload="group")
    assert model.offload and model.device.type == "cpu"
    case = [Case(PROMPT, 7, (10, 13), TARGET)]
    assert np.array_equal(generate_batch(model, case, settings(model)),
                          generate_batch(load("tiny-pixart"), case, settings(model)))


@pytest.mark.slow
def test_fp8_layerwise_casting_stores_the_denoiser_in_float8_and_generates_nearly_the_same(load):
    from locolab.compute.models.loading import load_model

    model = load_model("tiny-pixart", device="cpu", fp8=True)
    assert model.attentions[3].to_k.weight.dtype == torch.float8_e4m3fn
    assert model.pipe.text_encoder.dtype == torch.float32  # only the denoiser
    case = [Case(PROMPT, 7, (10, 13), TARGET)]
    ours, exact = (generate_batch(m, case, settings(model))[0] for m in (model, load("tiny-pixart")))
    assert 0 < np.abs(ours - exact).max() < 0.25, np.abs(ours - exact).max()


def test_auto_offload_keeps_everything_on_the_device_while_it_fits_then_offloads():
    from locolab.compute.models.memory import RESERVE, choose_offload

    gib = 2**30
    flux = {"transformer": 24 * gib, "text_encoder_2": 9 * gib, "text_encoder": gib // 4, "vae": gib // 6}
    total = sum(flux.values())
    assert choose_offload(flux, total + RESERVE) == "none"
    assert choose_offload(flux, total + RESERVE - 1) == "model"
    assert choose_offload(flux, 24 * gib + RESERVE) == "model"
    assert choose_offload(flux, 24 * gib + RESERVE - 1) == "group"


@pytest.mark.parametrize("name", ["tiny-pixart", "tiny-flux"])
def test_the_batch_size_probe_runs_a_denoising_step_at_the_sweeps_size(load, name):
    """``batching`` measures a transformer's memory with these inputs: one step of two images' rows at 64 px."""
    model = load(name)
    rows = 4 if model.arch.cfg else 2
    inputs = model.arch.probe_inputs(model.denoiser, rows, 16, 120)
    with torch.no_grad():
        out = model.denoiser(**inputs).sample
    expected = (rows, 64, 16) if name == "tiny-flux" else (rows, 8, 16, 16)
    assert tuple(out.shape) == expected


@pytest.mark.parametrize("name, rows", [("tiny-pixart", 2), ("tiny-flux", 1)])
@pytest.mark.slow
def test_the_batch_size_measures_one_image_as_two_minus_one_at_the_sweeps_size(load, name, rows):
    """``batching._transformer_peak``'s plumbing on the CPU, with a stand-in for CUDA's peak memory: the rows of
    each call (two per image with classifier-free guidance, FLUX one), so the difference is one image's rows."""
    from locolab.compute.batching import _transformer_peak

    model = load(name)
    seen = []

    def measure(run) -> int:
        with Hooks() as hooks, torch.no_grad():
            hooks.before(model.denoiser, lambda m, a, k: seen.append(tuple(k["hidden_states"].shape)),
                         with_kwargs=True)
            before = len(seen)
            run()
        return 1000 * seen[-1][0] if len(seen) > before else 0  # the VAE's decode is no denoiser call

    assert _transformer_peak(model, Settings(2, 4.5, 64, 64), measure) == 1000 * rows
    per_image = (rows, 64, 16) if name == "tiny-flux" else (rows, 4, 16, 16)  # 64 px: 16x16 latents
    assert seen == [per_image, (2 * rows, *per_image[1:]), per_image]


def test_full_size_transformers_have_the_released_parameter_counts():
    from diffusers import FluxTransformer2DModel, PixArtTransformer2DModel

    from locolab.compute.models.full_size import TRANSFORMER_CONFIGS

    with torch.device("meta"):
        pixart = PixArtTransformer2DModel(**TRANSFORMER_CONFIGS["random-pixart"])
        flux = FluxTransformer2DModel(**TRANSFORMER_CONFIGS["random-flux"])
    # PixArt-XL-2: 0.61B (28 blocks); FLUX.1-dev: 11.9B (19 double + 38 single blocks).
    assert round(sum(p.numel() for p in pixart.parameters()) / 1e6) == 611
    assert round(sum(p.numel() for p in flux.parameters()) / 1e8) == 119
    assert (len(flux.transformer_blocks), len(flux.single_transformer_blocks)) == (19, 38)


@pytest.mark.slow
@pytest.mark.heavy  # the slow tier: make test-heavy
@pytest.mark.parametrize("name", ["tiny-pixart", "tiny-flux", "tiny-sd3", "tiny-sana"])
def test_sweep_and_edit_run_end_to_end(tmp_path, capsys, name):
    from sweep_helpers import table, write_config

    count = {"tiny-pixart": 28, "tiny-flux": 57, "tiny-sd3": 24, "tiny-sana": 20}[name]
    size = count - 3  # four windows: the machinery, not the science
    config = write_config(tmp_path / "c.yaml", name=f"e2e-{name}", model=name, guidance=4.5, window_sizes=[size],
                          families={"style": {"target": "a painting", "score_text": "style of {concept}",
                                              "templates": ["a painting in the style of {concept}"],
                                              "concepts": ["van gogh"]}})
    root = str(tmp_path / "root")
    assert main(["sweep", config, "--artifacts", root, "--no-progress"]) == 0
    layers = table(root, "layers")
    assert len(layers) == count and len(table(root, "cases")) == 3 + 4  # original, target, all-layers; 4 windows
    kinds = {"tiny-pixart": {"cross": 28}, "tiny-flux": {"double": 19, "single": 38}, "tiny-sd3": {"joint": 24},
             "tiny-sana": {"cross": 20}}[name]
    assert {block: sum(r["block"] == block for r in layers) for block in kinds} == kinds
    if name == "tiny-sana":  # and the attention-contribution study with its top-k interventions
        assert main(["contribution", config, "--top-k", "2,6", "--artifacts", root, "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert "over 20 sites" in out and "k=6  sites [" in out
    assert main(["edit", "--model", name, "--family", "style", "--concept", "van gogh", "--layers", "5,6",
                 "--artifacts", root, "--eval", "--seeds", "0", "--steps", "2", "--size", "32", "--unrelated", "2",
                 "--other-concepts", "1"]) == 0
    out = capsys.readouterr().out
    assert "evaluated van-gogh-loco-" in out and ("bidirectional T5" in out) == (name != "tiny-sana")
    record = json.loads(next((tmp_path / "root" / "edits").glob("*/edit.json")).read_text())
    assert record["architecture"] == {"tiny-pixart": "pixart-alpha", "tiny-flux": "flux", "tiny-sd3": "sd3",
                                      "tiny-sana": "sana"}[name]
    prefix = "transformer.transformer_blocks.5."
    cross = name in ("tiny-pixart", "tiny-sana")
    weights = ["attn2.to_k", "attn2.to_v"] if cross else ["attn.add_k_proj", "attn.add_v_proj"]
    from locolab.compute.edit.store import load_edit

    edit = load_edit(root, record["edit_id"])
    assert sorted(k for k in edit.weights if k.startswith(prefix)) == [f"{prefix}{w}.weight" for w in weights]
    if name == "tiny-flux":
        assert record["keys_read_at"] == {"steps": 10, "guidance": 3.5, "height": 64, "width": 64, "seed": 0}
        assert record["num_keys"] == 4 * 10  # four source prompts, ten steps each
    if name == "tiny-sd3":  # the concept in CLIP's part and in T5's: two keys per prompt and step
        assert record["keys_read_at"] == {"steps": 10, "guidance": 4.5, "height": 64, "width": 64, "seed": 0}
        assert record["num_keys"] == 4 * 10 * 2 and record["key_reading"] == "sequential"


@pytest.mark.slow
def test_t5_spreads_a_concept_before_it_where_no_locoedit_key_reaches(load):
    """The LocoGen paper's reason for LocoEdit failing on DeepFloyd IF, measured: CLIP (causal) changes nothing
    before a one-token concept, so the subject and later positions hold all of it; T5 (bidirectional: PixArt, FLUX)
    puts part of it on earlier tokens, which neither --positions choice keys."""
    from locolab.compute.tokens import concept_reach

    template = "a painting in the style of {concept} with a house"
    clip = concept_reach(load("tiny-sd1"), template, "monet", "dali")
    assert clip["earlier"] == 0 and clip["later"] > 0.5
    for name in ("tiny-pixart", "tiny-flux"):
        for concept, other in (("monet", "dali"), ("van gogh", "da vinci")):
            found = concept_reach(load(name), template, concept, other)
            assert found["earlier"] > 0.02, (name, concept, found)
            assert abs(sum(found.values()) - 1) < 1e-9
