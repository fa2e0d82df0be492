"""ESD-x, Erasing Concepts from Diffusion Models (Gandikota et al., ICCV 2023; rohitgandikota/erasing), docs/method.md
§4.7: fine-tune the cross-attention ``to_k``/``to_v`` of the chosen layers so that the model conditioned on the
concept predicts the negatively guided noise of the frozen model,

    ε_θ(x_t, c, t) → ε*(x_t, t) − η (ε*(x_t, c, t) − ε*(x_t, t))   (ε*: the original weights, η: negative guidance),

at x_t sampled from the model being trained: DDIM from seeded noise with the concept prompt (guidance 3, ESD's
``start_guidance``) down to a random step. One Adam step per iteration; every random draw comes from one CPU
generator seeded with ``seed``, so an edit is reproducible from its seed on one device.
"""

import torch

from locolab.compute.edit.closed_form import check_layers
from locolab.compute.models.loading import Model
from locolab.compute.settings import Settings
from locolab.contract.errors import UserError

START_GUIDANCE = 3.0  # ESD's guidance while sampling x_t


def _noise(unet, latents, t, cond):
    return unet(latents, t, encoder_hidden_states=cond).sample


def esd_x(model: Model, layers: list[int], concept: str, iterations: int, lr: float, negative_guidance: float,
          seed: int) -> dict[str, torch.Tensor]:
    """The new ``to_k``/``to_v`` weights of ``layers`` after ESD-x training, by qualified name (``unet.<...>``).

    The model's own weights are restored bit for bit afterwards (also on errors).
    """
    if model.arch.name not in ("sd1", "sd2"):
        raise UserError(f"--method esd-x fine-tunes an SD-1.x/2.x UNet, not {model.arch.name}: use --method uce or "
                        "loco")
    layers = check_layers(model, layers)
    pipe, unet = model.pipe, model.pipe.unet
    settings = Settings.defaults(model.spec)
    names = [f"{model.layers[i].path}.{p}.weight" for i in layers for p in model.arch.text_projections]
    params = [unet.get_parameter(name) for name in names]
    originals = [p.detach().clone() for p in params]
    with torch.no_grad():
        cond = model.arch.encode(pipe, concept).cond.to(model.device, model.dtype)
        uncond = model.arch.encode(pipe, "").cond.to(model.device, model.dtype)
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(settings.steps)
    generator = torch.Generator().manual_seed(seed)
    shape = (1, unet.config.in_channels, settings.height // pipe.vae_scale_factor,
             settings.width // pipe.vae_scale_factor)
    flags = {name: p.requires_grad for name, p in unet.named_parameters()}
    unet.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=lr)
    try:
        for _ in range(iterations):
            stop = int(torch.randint(settings.steps, (1,), generator=generator))
            latents = torch.randn(shape, generator=generator).to(model.device, model.dtype)
            latents = latents * scheduler.init_noise_sigma
            with torch.no_grad():
                for t in scheduler.timesteps[:stop]:  # x_t from the model being trained
                    plain, guided = _noise(unet, torch.cat([latents] * 2), t, torch.cat([uncond, cond])).chunk(2)
                    latents = scheduler.step(plain + START_GUIDANCE * (guided - plain), t, latents).prev_sample
                t = scheduler.timesteps[stop]
                now = [p.detach().clone() for p in params]
                for p, w in zip(params, originals):  # the frozen model's noise
                    p.copy_(w)
                e0, ep = _noise(unet, torch.cat([latents] * 2), t, torch.cat([uncond, cond])).chunk(2)
                for p, w in zip(params, now):
                    p.copy_(w)
            loss = torch.nn.functional.mse_loss(_noise(unet, latents, t, cond).float(),
                                                (e0 - negative_guidance * (ep - e0)).float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        trained = [p.detach().cpu().clone() for p in params]
    finally:
        with torch.no_grad():
            for p, w in zip(params, originals):
                p.copy_(w)
                p.grad = None
        for name, p in unet.named_parameters():
            p.requires_grad_(flags[name])
    return {f"unet.{name}": w.detach().cpu() for name, w in zip(names, trained)}
