"""What the attentions of a joint-attention transformer (FLUX.1, SD3) read: the text stream at each chosen block and
denoising step, recorded during a generation.

A cross-attention layer reads the (projected) text-encoder embedding, a function of the prompt alone
(``tokens.layer_text``). A joint block reads the text stream after every earlier block's update, which depends on the
image tokens and the timestep, so its text input exists only inside a generation. LocoEdit's keys for such a block are
read here: its text input for each source prompt at every step of a generation with a fixed seed, each mapped to the
target's at the same step (``edit.layer_keys_values``).
"""

from collections.abc import Sequence

import torch

from locolab.compute.generation import Case, generate_batch, make_encoder
from locolab.compute.hooks import Hooks
from locolab.compute.models.architectures import SINGLE
from locolab.compute.models.loading import Model
from locolab.compute.settings import Settings


def text_inputs(model: Model, layers: Sequence[int], prompts: Sequence[str], settings: Settings,
                seed: int = 0) -> dict[int, dict[str, torch.Tensor]]:
    """The text each of ``layers`` reads, for each prompt, at every denoising step.

    The prompts are generated together (one batch, each with a generator seeded ``seed``); at each call of a chosen
    layer's attention its text input is recorded: double-stream/joint blocks' ``encoder_hidden_states`` (the
    modulated text stream that ``add_k_proj``/``add_v_proj`` read), single-stream blocks' first T rows of
    ``hidden_states``. With classifier-free guidance, the conditional rows.

    Args:
        model: a joint-attention model (``Architecture.stream``).
        layers: layer indices.
        prompts: distinct prompts.
        settings: the generation's settings (its steps are the recorded steps).
        seed: the seed of every prompt's generator.

    Returns:
        ``{layer: {prompt: (steps, T, d)}}`` in float64 on the CPU.
    """
    encoder = make_encoder(model)
    text_len = encoder(prompts[0]).cond.shape[1]
    seen: dict[int, list[torch.Tensor]] = {index: [] for index in layers}

    def record(index, kind):
        def hook(module, args, kwargs):
            text = kwargs["hidden_states"][:, :text_len] if kind == SINGLE else kwargs["encoder_hidden_states"]
            seen[index].append(text[-len(prompts):].detach().to("cpu", torch.float64))
        return hook

    with Hooks() as hooks:
        for index in layers:
            hooks.before(model.attentions[index], record(index, model.layers[index].block), with_kwargs=True)
        generate_batch(model, [Case(prompt, seed) for prompt in prompts], settings, encoder)
    return {index: {prompt: torch.stack([step[i] for step in steps]) for i, prompt in enumerate(prompts)}
            for index, steps in seen.items()}
