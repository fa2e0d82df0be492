"""Stage 3: the mini-UNet (SD-1.x block topology, 16 cross-attention layers) on the frozen mini-CLIP text tower,
assembled with the mini-VAE into a ``StableDiffusionPipeline`` folder.

Latents of a fixed set of scenes are computed once; captions are drawn afresh every step (10% empty, for
classifier-free guidance) and their text embeddings cached, since the caption language is finite. Epsilon
prediction with min-SNR-5 loss weights; the saved weights are an exponential moving average.
"""

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPModel, CLIPTextModel

from locolab.compute.models.tiny import SD_DOWN, SD_SCHEDULER, SD_UP
from locolab.compute.toyworld import world
from locolab.compute.toyworld.common import (
    CLIP_DIR,
    PIPELINE_DIR,
    Log,
    save_tokenizer,
    scenes,
    to_tensor,
    tokenizer,
    tokens,
)

SEED = 3
DROP_CAPTION = 0.1
MIN_SNR = 5.0


def build_unet(text_width: int) -> UNet2DConditionModel:
    """SD-1.5 block layout at widths (32, 64, 64, 64) on 8x8 latents: attention at 8, 4, 2 and 1 pixels."""
    return UNet2DConditionModel(sample_size=world.SIZE // 4, in_channels=4, out_channels=4, down_block_types=SD_DOWN,
                                up_block_types=SD_UP, block_out_channels=(32, 64, 64, 64), layers_per_block=2,
                                cross_attention_dim=text_width, attention_head_dim=2, norm_num_groups=16)


def scheduler() -> DDIMScheduler:
    """The sampling scheduler saved with the pipeline: DDIM on Stable Diffusion's noise schedule."""
    return DDIMScheduler(**SD_SCHEDULER, clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def text_encoder_of(clip: CLIPModel) -> CLIPTextModel:
    """The text tower of the mini-CLIP as a standalone ``CLIPTextModel`` (same weights)."""
    encoder = CLIPTextModel(clip.config.text_config)
    encoder.load_state_dict(clip.text_model.state_dict())
    return encoder.eval().requires_grad_(False)


class TextCache:
    """Full 77-token text embeddings, as the pipeline computes them, cached per caption."""

    def __init__(self, encoder: CLIPTextModel):
        self.encoder, self.cache = encoder, {}

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        new = sorted({t for t in texts if t not in self.cache})
        if new:
            states = self.encoder(tokens(new, 77)).last_hidden_state
            self.cache.update(zip(new, states))
        return torch.stack([self.cache[t] for t in texts])


@torch.no_grad()
def encode_scenes(vae: AutoencoderKL, scene_list: list[world.Scene], batch: int = 256) -> torch.Tensor:
    """Scaled latent means of the scenes' images."""
    out = []
    for i in range(0, len(scene_list), batch):
        images = to_tensor(np.stack([world.render(s) for s in scene_list[i:i + batch]]))
        out.append(vae.encode(images).latent_dist.mean * vae.config.scaling_factor)
    return torch.cat(out)


def assemble(unet, vae, encoder) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=encoder, tokenizer=tokenizer(), unet=unet,
                                   scheduler=scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save(pipe: StableDiffusionPipeline, out) -> None:
    """Save with float16 weights (loaders upcast on the CPU), then return the pipeline to float32."""
    pipe.to(torch.float16).save_pretrained(out)
    pipe.to(torch.float32)
    save_tokenizer(Path(out) / "tokenizer")


def update(unet, ema, optimizer, schedule, predicted, noise, snr, step: int, ema_decay: float) -> float:
    """One training step from a batch's noise prediction: the min-SNR-weighted epsilon loss, a clipped optimizer
    step, the schedule's step and the moving average's update (warmed up over the first steps). Returns the loss."""
    weight = snr.clamp(max=MIN_SNR) / snr
    loss = (weight * F.mse_loss(predicted, noise, reduction="none").mean((1, 2, 3))).mean()
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    decay = min(ema_decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for e, p in zip(ema.parameters(), unet.parameters()):
            e.lerp_(p, 1 - decay)
    return loss.item()


def train(steps: int = 2500, batch: int = 32, lr: float = 1e-3, dataset: int = 16384, ema_decay: float = 0.999,
          out=PIPELINE_DIR, save_every: int = 500) -> StableDiffusionPipeline:
    """Train the UNet and save the whole pipeline to ``out`` (every ``save_every`` steps and at the end)."""
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    encoder = text_encoder_of(CLIPModel.from_pretrained(CLIP_DIR, dtype=torch.float32))
    vae = AutoencoderKL.from_pretrained(PIPELINE_DIR / "vae", torch_dtype=torch.float32).eval()
    scene_list = scenes(5_000_000, dataset)
    latents = encode_scenes(vae, scene_list)
    text = TextCache(encoder)
    unet = build_unet(encoder.config.hidden_size)
    ema = copy.deepcopy(unet).requires_grad_(False)
    noise_schedule = DDPMScheduler(**SD_SCHEDULER)
    snr = noise_schedule.alphas_cumprod / (1 - noise_schedule.alphas_cumprod)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.03)
    log = Log("unet")
    for step in range(steps):
        rows = rng.integers(len(scene_list), size=batch)
        texts = ["" if rng.random() < DROP_CAPTION else world.caption(scene_list[i], rng) for i in rows]
        clean = latents[torch.from_numpy(rows)]
        noise = torch.randn_like(clean)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (batch,))
        predicted = unet(noise_schedule.add_noise(clean, noise, t), t, text(texts)).sample
        loss = update(unet, ema, optimizer, schedule, predicted, noise, snr[t], step, ema_decay)
        log(step, loss)
        if (step + 1) % save_every == 0 and step + 1 < steps:
            save(assemble(ema, vae, encoder), out)
    pipe = assemble(ema, vae, encoder)
    save(pipe, out)
    print(f"[unet] trained {steps} steps in {log.seconds:.0f} s -> {out}")
    return pipe
