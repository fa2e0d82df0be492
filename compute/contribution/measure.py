"""Attention contribution (Zarei, Basu et al., "Localizing Knowledge in Diffusion Transformers", 2025): how much each
text-reading attention's output owes to a concept's text tokens, measured while the model generates its prompts.

For one site, one denoising step and one conditional row: with P_h the attention probabilities of head h from the
image-token queries to every key, and V_h the values, the concept's part of the output is
``out = W_o concat_h(P_h[:, C] V_h[C]) + b_o`` over the concept's token positions C, through the attention's output
projection (with its bias, as the paper's code applies ``to_out[0]``: every site's contribution therefore includes a
concept-independent floor, the bias; FLUX's single-stream attentions have no output projection of their own and are
measured before ``proj_out``, as there, so they are on another scale than the double-stream blocks); the contribution
is the mean over image tokens of ``||out||_2``, averaged over the denoising steps, then over the localization prompts
and seeds. The sites with the largest contributions are the "dominant" blocks.

``out`` is computed exactly by calling the attention a second time with every value outside C set to zero (the other
text tokens' values, and the image tokens' own values where the attention also attends to the image): the attention
probabilities depend on queries and keys only, so the module's own processor (masks, rotary embeddings, query/key
norms, head layout) yields ``sum_{j in C} P[:, j] V[j]`` through its output projection.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from locolab.compute.hooks import Hooks
from locolab.compute.models.architectures import SINGLE
from locolab.compute.models.loading import Model
from locolab.compute.tokens import position_in_model
from locolab.compute.trace import subject_positions


def concept_positions(model: Model, prompt: str, concept: str) -> list[int]:
    """Positions of all of the concept's tokens in the text the model's sites read (its last occurrence; SD3: in
    the CLIP part and in the T5 part that follows it)."""
    found = list(position_in_model(model, lambda tokenizer: tuple(subject_positions(tokenizer, prompt, concept))))
    if model.arch.segments:
        t5 = getattr(model.pipe, model.arch.segments[-1])
        found += [model.pipe.tokenizer.model_max_length + p for p in subject_positions(t5, prompt, concept)]
    return found


@dataclass
class Contributions:
    """Per-sample, per-site sums of contributions over the calls recorded so far.

    Attributes:
        total: (B, L) float64 sums.
        calls: (L,) how many calls of each site were recorded (denoising steps).
    """

    total: torch.Tensor
    calls: torch.Tensor

    def mean(self) -> torch.Tensor:
        """(B, L) contributions averaged over the recorded steps."""
        return self.total / self.calls.clamp(min=1)


def _kind(model: Model, index: int, module: torch.nn.Module) -> str:
    """How a site reads the text: ``single`` (text rows of one joint sequence), ``joint`` (separate text projections,
    keys joined to the image's: FLUX double-stream, SD3, DeepFloyd IF) or ``cross`` (text-only keys)."""
    if model.layers[index].block == SINGLE:
        return SINGLE
    return "joint" if getattr(module, "added_kv_proj_dim", None) is not None else "cross"


def _masked_values(kind: str, keep: torch.Tensor, text_len: int):
    """Forward hooks, by value-projection name, that zero every value the contribution leaves out; ``keep`` (R, T)
    marks each row's concept tokens."""
    def text_only(module, args, output):
        return output * keep[:, :, None].to(output)

    def nothing(module, args, output):
        return torch.zeros_like(output)

    def text_rows(module, args, output):
        mask = torch.zeros(output.shape[:2], dtype=output.dtype, device=output.device)
        mask[:, :text_len] = keep.to(output)
        return output * mask[:, :, None]

    if kind == "cross":
        return {"to_v": text_only}
    if kind == "joint":
        return {"add_v_proj": text_only, "to_v": nothing}
    return {"to_v": text_rows}


def _image_part(kind: str, output, args: tuple, kwargs: dict, text_len: int) -> torch.Tensor:
    """The attention output at the image tokens, (R, N, D) or (R, D, H, W)."""
    if isinstance(output, tuple):  # joint attention: (image, text)
        return output[0]
    if kind == SINGLE:
        return output[:, text_len:]
    if output.ndim == 4:  # DeepFloyd IF's attention adds its input back (a residual inside the processor)
        hidden = args[0] if args else kwargs["hidden_states"]
        return output - hidden
    return output


@contextmanager
def record_contributions(model: Model, positions: Sequence[Sequence[int]]) -> Iterator[Contributions]:
    """Within: each call of the pipeline on ``len(positions)`` samples accumulates every site's contribution of
    sample i's tokens ``positions[i]`` in its conditional row (samples with no positions get 0, not the norm of the
    output projection's bias that an empty set of tokens would give).

    Usage::

        with record_contributions(model, [concept_positions(model, prompt, "van gogh")]) as found:
            generate_batch(model, [Case(prompt, 0)], settings)
        per_site = found.mean()[0]

    Args:
        model: the model.
        positions: per sample of the calls, the text positions whose contribution is measured.
    """
    batch, count = len(positions), len(model.layers)
    measured = torch.tensor([bool(where) for where in positions], dtype=torch.float64)
    found = Contributions(torch.zeros(batch, count, dtype=torch.float64), torch.zeros(count, dtype=torch.int64))
    text_tokens = _text_length(model)
    inputs: dict[int, tuple] = {}

    def remember(index):
        def hook(module, args, kwargs):
            inputs[index] = (args, kwargs)
        return hook

    def measure(index, kind):
        def hook(module, _, output):
            args, kwargs = inputs.pop(index)
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            rows = hidden.shape[0]
            keep = torch.zeros(rows, text_tokens)
            for i, where in enumerate(positions):
                keep[rows - batch + i, list(where)] = 1.0
            with Hooks() as hooks, torch.no_grad():
                for name, mask in _masked_values(kind, keep, text_tokens).items():
                    hooks.after(getattr(module, name), mask)
                # forward, not __call__: this module's own hooks must not run again.
                part = _image_part(kind, module.forward(*args, **kwargs), args, kwargs, text_tokens)
            norms = part[rows - batch:].float().norm(dim=1 if part.ndim == 4 else -1).flatten(1).mean(1)
            found.total[:, index] += norms.to("cpu", torch.float64) * measured
            found.calls[index] += 1
        return hook

    with Hooks() as hooks:
        for index, module in enumerate(model.attentions):
            hooks.before(module, remember(index), with_kwargs=True)
            hooks.after(module, measure(index, _kind(model, index, module)))
        yield found


def _text_length(model: Model) -> int:
    """The number of text tokens the model's sites read."""
    with torch.no_grad():
        return model.arch.encode(model.pipe, "a").cond.shape[1]


def attention_contribution(model: Model, prompts: Sequence[str], concept: str, seeds: Sequence[int] = (0,),
                           steps: int | None = None, guidance: float | None = None, size: int | None = None,
                           batch_size: int = 8) -> torch.Tensor:
    """Each site's attention contribution of ``concept``'s tokens, averaged over steps, prompts and seeds, from
    generations of every prompt at every seed (the localization stage of ``locolab contribution``, without a store).

    Usage: ``per_site = attention_contribution(model, ["a house in the style of van gogh"], "van gogh")``;
    ``per_site.topk(6).indices`` are the dominant sites.

    Args:
        model: the model.
        prompts: prompts that contain the concept.
        concept: the concept's text, as written in the prompts.
        seeds: the seeds of every prompt.
        steps, guidance, size: sampling settings (default: the model's).
        batch_size: images per pipeline call.

    Returns:
        (L,) float64, one value per text-reading site in forward order.
    """
    from locolab.compute.generation import Case, generate_batch, make_encoder
    from locolab.compute.settings import Settings

    settings = Settings.defaults(model.spec, steps, guidance, size)
    cases = [(prompt, seed) for prompt in prompts for seed in seeds]
    encoder, total = make_encoder(model), torch.zeros(len(model.layers), dtype=torch.float64)
    for start in range(0, len(cases), batch_size):
        batch = cases[start:start + batch_size]
        with record_contributions(model, [concept_positions(model, p, concept) for p, _ in batch]) as found:
            generate_batch(model, [Case(p, s) for p, s in batch], settings, encoder)
        total += found.mean().sum(0)
    return total / len(cases)
