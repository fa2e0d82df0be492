"""Stage 1: the mini-CLIP (text tower + small vision tower), trained contrastively on the toy world.

Captions mention subsets of the attributes, so one caption is true of many images in a batch: the loss is the
symmetric InfoNCE with soft targets spread over every true (image, caption) pair. The scorer and the UNet's frozen
text encoder are this model.
"""

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel

from locolab.compute.models.tokenizer import VOCAB_SIZE
from locolab.compute.toyworld import world
from locolab.compute.toyworld.common import CLIP_DIR, Log, clip_pixels, save_tokenizer, scenes, to_tensor, tokens

WIDTH = 64
SEED = 1


def clip_config() -> CLIPConfig:
    """A 64-wide, 3-layer text tower on the real CLIP vocabulary and a 3-layer ViT on 32x32 images (4x4 patches)."""
    return CLIPConfig(
        text_config=dict(vocab_size=VOCAB_SIZE, hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=3,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                         pad_token_id=49407),
        vision_config=dict(hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=3, num_attention_heads=4,
                           image_size=world.SIZE, patch_size=4),
        projection_dim=WIDTH)


def compatible(scene_list: list[world.Scene], texts: list[str]) -> torch.Tensor:
    """(images, texts) boolean matrix: whether each caption is true of each scene."""
    stated = [world.caption_attributes(t) for t in texts]
    return torch.tensor([[all(getattr(s, k) == v for k, v in attrs.items()) for attrs in stated]
                         for s in scene_list])


def soft_clip_loss(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy against targets spread evenly over the positives of each row / column."""
    target = positive.float()
    image_loss = -(target / target.sum(1, keepdim=True) * F.log_softmax(logits, 1)).sum(1).mean()
    text_loss = -(target / target.sum(0, keepdim=True) * F.log_softmax(logits, 0)).sum(0).mean()
    return (image_loss + text_loss) / 2


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pixel noise of random strength, so scores hold on the slightly noisy images a diffusion model makes."""
    sigma = torch.rand(len(images), 1, 1, 1, generator=generator) * 0.15
    return (images + sigma * torch.randn(images.shape, generator=generator)).clamp(-1, 1)


def train(steps: int = 1200, batch: int = 128, lr: float = 2e-3, out=CLIP_DIR) -> CLIPModel:
    """Train and save the mini-CLIP (fp16 weights) with its tokenizer to ``out``."""
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    model = CLIPModel(clip_config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.05)
    log = Log("clip")
    for step in range(steps):
        batch_scenes = scenes(1_000_000 + step * batch, batch)
        texts = [world.caption(s, rng) for s in batch_scenes]
        images = augment(to_tensor(np.stack([world.render(s) for s in batch_scenes])), generator)
        out_ = model(input_ids=tokens(texts), pixel_values=clip_pixels(images))
        loss = soft_clip_loss(out_.logits_per_image, compatible(batch_scenes, texts))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        log(step, loss.item())
    model.eval()
    save(model, out)
    print(f"[clip] trained {steps} steps in {log.seconds:.0f} s -> {out}")
    return model


def save(model: CLIPModel, out) -> None:
    """Save in float16 (half the bytes; loaders upcast) with the tokenizer files next to the weights."""
    model.to(torch.float16).save_pretrained(out)
    model.to(torch.float32)
    save_tokenizer(out)
