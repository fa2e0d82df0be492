"""The recovery attack (``--attack``, docs/method.md §4.2): learn K soft tokens that bring an edited concept back.

Concept Inversion (Pham et al., "Circumventing Concept Erasure Methods for Text-to-Image Generative Models", ICLR
2024) and UnlearnDiffAtk (Zhang et al., "To Generate or Not? Safety-Driven Unlearned Diffusion Models Are Still Easy
to Generate Unsafe Images ... For Now", ECCV 2024): an erased concept often survives in the weights, reachable by
another input. Here, in every prompt of the concept, the concept's tokens are replaced by K vectors in the text
encoder's input-embedding space (textual-inversion style, shared by all prompts), initialised from the concept's own
token embeddings (vector i from the concept's token ``i * n // K`` of n: with K = n the prompt itself). They are
optimised with Adam so that the *edited* model's noise prediction with the attacked prompt matches the *unedited*
model's with the plain prompt, on the unedited model's images of the edit's own prompts (the evaluation's before
images, VAE-encoded) noised at seeded random timesteps: the edited model is pushed back to the original behaviour
on the concept. Seeded and deterministic; a step budget bounds it. With no weight change (an identity edit) and
K = n, the loss and its gradient are exactly 0 and nothing moves.

Only pipelines with one CLIP text encoder whose token embeddings the prompt embedding is computed from alone
(SD-1.x/2.x, the toy world) are attacked; others are refused with the reason.
"""

import time
from dataclasses import dataclass

import numpy as np
import torch

from locolab.compute.edit.closed_form import Edit, applied
from locolab.compute.models.architectures import Conditioning
from locolab.compute.models.loading import Model
from locolab.contract.errors import UserError

VERSION = 1
ARCHITECTURES = ("sd1", "sd2")  # one CLIP text encoder, prompt embedding = its last hidden state
LEARNING_RATE = 0.01  # Adam's, on the soft tokens (textual inversion's order; the toy world's embeddings have RMS ~0.1)
SEED = 0  # of the timesteps and noise the attack trains on


@dataclass(frozen=True)
class Attack:
    """Learned soft tokens of one concept and the attack's record (``settings``, stored in ``eval.json``)."""

    concept: str
    vectors: torch.Tensor
    record: dict


def refusal(arch: str, model: str, meta: dict) -> str | None:
    """Why ``--attack`` cannot run on ``model`` (of architecture ``arch``) and the edit ``meta``, or None."""
    if arch not in ARCHITECTURES:
        return (f"--attack learns soft tokens in one CLIP text encoder's input embeddings (SD-1.x/2.x and the toy "
                f"world); {model} ({arch}) conditions on more than that: drop --attack")
    if meta.get("concepts"):
        return "--attack attacks one concept: evaluate a multi-concept edit without --attack"
    return None


def _tokens(model: Model, prompt: str, concept: str, count: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(input ids (1, max length) of ``prompt`` with ``concept``'s first occurrence replaced by ``count`` slots, their
    attention mask as the tokenizer gives it, the first slot's position); a prompt without the concept gets the slots
    in front (UnlearnDiffAtk's prefix)."""
    tokenizer = model.pipe.tokenizer
    ids = tokenizer(prompt).input_ids
    word = tokenizer(concept, add_special_tokens=False).input_ids
    start = next((i for i in range(1, len(ids) - len(word)) if ids[i:i + len(word)] == word), None)
    cut = len(word) if start is not None else 0
    start = 1 if start is None else start
    ids = ids[:start] + [word[0]] * count + ids[start + cut:]
    if len(ids) > tokenizer.model_max_length:
        raise UserError(f"prompt {prompt[:60]!r} with {count} soft tokens is longer than the text encoder reads "
                        f"({tokenizer.model_max_length} tokens): use fewer --attack-tokens")
    padding = tokenizer.model_max_length - len(ids)
    mask = [1] * len(ids) + [0] * padding
    return torch.tensor([ids + [tokenizer.pad_token_id] * padding]), torch.tensor([mask]), start


def encode(model: Model, prompt: str, concept: str, vectors: torch.Tensor) -> torch.Tensor:
    """The prompt embedding (1, T, D) of ``prompt`` with ``concept`` replaced by ``vectors`` (K, D), computed as the
    pipeline's ``encode_prompt`` computes it (differentiable in ``vectors``)."""
    encoder = model.pipe.text_encoder
    ids, mask, start = _tokens(model, prompt, concept, len(vectors))

    def put(module, inputs, output):
        soft = vectors.to(output.device, output.dtype)[None]
        return torch.cat([output[:, :start], soft, output[:, start + len(vectors):]], 1)

    handle = encoder.get_input_embeddings().register_forward_hook(put)
    try:
        masked = getattr(encoder.config, "use_attention_mask", False)  # as the pipeline's encode_prompt
        hidden = encoder(ids.to(encoder.device), attention_mask=mask.to(encoder.device) if masked else None)[0]
    finally:
        handle.remove()
    return hidden.to(dtype=encoder.dtype)


def initial_vectors(model: Model, concept: str, count: int) -> torch.Tensor:
    """``count`` vectors from the concept's token embeddings: vector i is token ``i * n // count`` of its n."""
    word = model.pipe.tokenizer(concept, add_special_tokens=False).input_ids
    table = model.pipe.text_encoder.get_input_embeddings().weight
    return torch.stack([table[word[i * len(word) // count]] for i in range(count)]).detach().float().clone()


def concept_tokens(tokenizer, concept: str) -> int:
    """How many tokens the concept has (the default number of soft tokens: the attack starts at the prompt)."""
    return len(tokenizer(concept, add_special_tokens=False).input_ids)


def settings(steps: int, tokens: int) -> dict:
    """The attack's settings that change its numbers (part of the evaluation's id)."""
    return {"version": VERSION, "steps": steps, "tokens": tokens, "learning_rate": LEARNING_RATE, "seed": SEED}


def _latents(model: Model, pixels: np.ndarray, batch_size: int) -> torch.Tensor:
    """The VAE's mean latents of (N, H, W, 3) images in [0, 1], scaled as the denoiser reads them."""
    vae = model.pipe.vae
    found = []
    with torch.no_grad():
        for start in range(0, len(pixels), batch_size):
            batch = torch.from_numpy(pixels[start:start + batch_size]).permute(0, 3, 1, 2) * 2 - 1
            found.append(vae.encode(batch.to(vae.device, vae.dtype)).latent_dist.mean * vae.config.scaling_factor)
    return torch.cat(found)


def learn(model: Model, edit: Edit, prompts: list[str], pixels: np.ndarray, steps: int, count: int,
          batch_size: int) -> Attack:
    """Learn ``count`` soft tokens of the edit's concept in ``steps`` Adam steps (the module docstring).

    Args:
        model: the unedited model (the edit is applied here while the tokens learn).
        prompts: the prompt of each training image.
        pixels: (N, H, W, 3) images in [0, 1] of ``prompts`` by the unedited model.
        batch_size: training images per step (taken in turn).

    Returns:
        The tokens and their record: steps, tokens, learning rate, the loss on every training image at fixed
        timesteps before and after (``loss_before``, ``loss_after``), each step's batch loss and the wall-clock and
        this process's CPU seconds taken (the second does not grow with other processes' load).
    """
    concept = edit.meta["concept"]
    started, cpu = time.perf_counter(), time.process_time()
    unet, scheduler = model.pipe.unet, model.pipe.scheduler
    x0 = _latents(model, pixels, batch_size)
    generator = torch.Generator("cpu").manual_seed(SEED)
    total = scheduler.config.num_train_timesteps

    def draw(rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.randint(0, total, (len(rows),), generator=generator)
        noise = torch.randn(x0[rows].shape, generator=generator, dtype=torch.float32)
        return scheduler.add_noise(x0[rows], noise.to(x0.device, x0.dtype), t.to(x0.device)), t.to(x0.device)

    distinct = list(dict.fromkeys(prompts))
    with torch.no_grad():
        plain = {p: model.arch.encode(model.pipe, p).cond for p in distinct}
    batches = [[(step * batch_size + j) % len(prompts) for j in range(min(batch_size, len(prompts)))]
               for step in range(steps)]
    probe = list(range(len(prompts)))
    with torch.no_grad():  # the unedited model's predictions: what the attacked prompts should make the edit give
        targets = []
        for rows in [probe, *batches]:
            noisy, t = draw(rows)
            targets.append((rows, noisy, t, unet(noisy, t, torch.cat([plain[prompts[i]] for i in rows])).sample))
    vectors = initial_vectors(model, concept, count).requires_grad_(True)
    optimizer = torch.optim.Adam([vectors], lr=LEARNING_RATE)

    def loss(rows, noisy, t, target) -> torch.Tensor:
        soft = {p: encode(model, p, concept, vectors) for p in dict.fromkeys(prompts[i] for i in rows)}
        predicted = unet(noisy, t, torch.cat([soft[prompts[i]] for i in rows])).sample
        return torch.nn.functional.mse_loss(predicted.float(), target.float())

    losses = []
    with applied(model, edit, cfg=False), torch.enable_grad():
        with torch.no_grad():
            before = float(loss(*targets[0]))
        for batch in targets[1:]:
            value = loss(*batch)
            vectors.grad, = torch.autograd.grad(value, [vectors])
            optimizer.step()
            losses.append(float(value.detach()))
        with torch.no_grad():
            after = float(loss(*targets[0]))
    record = {**settings(steps, count), "concept_tokens": concept_tokens(model.pipe.tokenizer, concept),
              "training_images": len(prompts),
              "loss_before": before, "loss_after": after, "losses": losses,
              "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu}
    return Attack(concept, vectors.detach(), record)


def conditionings(model: Model, attack: Attack, prompts: list[str]) -> list[Conditioning]:
    """Each prompt's conditioning with the attack's soft tokens in place of its concept."""
    with torch.no_grad():
        return [Conditioning(encode(model, p, attack.concept, attack.vectors)) for p in prompts]
