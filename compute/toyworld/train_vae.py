"""Stage 2: the mini-VAE: 32x32x3 images <-> 8x8x4 latents (three blocks, 4x compression).

The world's images are flat colours and fixed patterns, so a short reconstruction run with a small KL weight is
enough; the latent scale (``scaling_factor``) is measured afterwards so that scaled latents have unit variance,
as in Stable Diffusion.
"""

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from locolab.compute.toyworld import world
from locolab.compute.toyworld.common import PIPELINE_DIR, Log, scenes, to_tensor

SEED = 2
KL_WEIGHT = 1e-5


def build_vae() -> AutoencoderKL:
    """Three encoder/decoder blocks without mid-block attention (cheap on a CPU)."""
    return AutoencoderKL(block_out_channels=(16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 3,
                         up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=4, norm_num_groups=8,
                         layers_per_block=1, sample_size=world.SIZE, mid_block_add_attention=False)


def images_of(first_seed: int, count: int) -> torch.Tensor:
    return to_tensor(np.stack([world.render(s) for s in scenes(first_seed, count)]))


def train(steps: int = 600, batch: int = 32, lr: float = 2e-3, out=PIPELINE_DIR / "vae") -> AutoencoderKL:
    """Train the VAE, set its latent scaling factor and save it (fp16) to ``out``."""
    torch.manual_seed(SEED)
    vae = build_vae()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.05)
    log = Log("vae")
    for step in range(steps):
        images = images_of(2_000_000 + step * batch, batch)
        posterior = vae.encode(images).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = F.mse_loss(recon, images) + 0.1 * F.l1_loss(recon, images) + KL_WEIGHT * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        log(step, loss.item())
    vae.eval()
    with torch.no_grad():
        latents = vae.encode(images_of(3_000_000, 512)).latent_dist.mean
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    vae.to(torch.float16).save_pretrained(out)
    vae.to(torch.float32)
    print(f"[vae] trained {steps} steps in {log.seconds:.0f} s, "
          f"scaling factor {vae.config.scaling_factor:.4f} -> {out}")
    return vae


@torch.no_grad()
def reconstruction_accuracy(vae: AutoencoderKL, count: int = 256) -> dict[str, float]:
    """The checker's colour/background accuracy on reconstructions of held-out scenes."""
    scene_list = scenes(4_000_000, count)
    images = to_tensor(np.stack([world.render(s) for s in scene_list]))
    recon = vae.decode(vae.encode(images).latent_dist.mean).sample
    pixels = ((recon.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    checks = [world.check_image(p) for p in pixels]
    return {"colour": float(np.mean([c["colour"] == s.colour for c, s in zip(checks, scene_list)])),
            "background": float(np.mean([c["background"] == s.background for c, s in zip(checks, scene_list)]))}
