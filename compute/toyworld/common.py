"""What the toy world's training stages share: where models live, seeds, batches of scenes and tokens."""

import functools
import json
import time
from pathlib import Path

import numpy as np
import torch

from locolab.compute.models.tokenizer import _vocab_and_merges, clip_tokenizer
from locolab.compute.paths import PACKAGE_DIR
from locolab.compute.scoring import CLIP_MEAN, CLIP_STD
from locolab.compute.toyworld import world

PIPELINE_DIR = PACKAGE_DIR / "checkpoints" / "toyworld"
CLIP_DIR = PACKAGE_DIR / "checkpoints" / "toyworld-clip"


def scenes(first_seed: int, count: int, entity_rate: float = world.ENTITY_RATE) -> list[world.Scene]:
    """The scenes of seeds first_seed .. first_seed + count - 1 (a share ``entity_rate`` of them entities)."""
    return [world.sample_scene(seed, entity_rate) for seed in range(first_seed, first_seed + count)]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1] (the VAE's range)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def clip_pixels(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> CLIP-normalised pixels (what ``ClipScorer.preprocess`` gives for 32x32 images)."""
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return ((images + 1.0) / 2.0 - mean) / std


@functools.cache
def tokenizer():
    return clip_tokenizer()


def save_tokenizer(directory) -> None:
    """Write the CLIP tokenizer as vocab.json + merges.txt (1.5 MB; ``save_pretrained`` writes a 3.6 MB
    tokenizer.json), which ``CLIPTokenizer``/``AutoTokenizer.from_pretrained`` read back to the same tokenizer."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.json").unlink(missing_ok=True)
    vocab, merges = _vocab_and_merges()
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    special = tokenizer()
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": special.model_max_length,
              "bos_token": special.bos_token, "eos_token": special.eos_token, "pad_token": special.pad_token,
              "unk_token": special.unk_token}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


@functools.cache
def _ids(text: str) -> tuple[int, ...]:
    return tuple(tokenizer()(text, truncation=True, max_length=77).input_ids)


def tokens(texts: list[str], length: int | None = None) -> torch.Tensor:
    """Token ids padded with end-of-text to ``length`` (default: the longest); cached per text."""
    ids = [_ids(t) for t in texts]
    length = length or max(map(len, ids))
    out = torch.full((len(ids), length), tokenizer().eos_token_id, dtype=torch.long)
    for row, seq in enumerate(ids):
        out[row, :len(seq)] = torch.tensor(seq)
    return out


class Log:
    """Prints a line every ``every`` steps with the running loss and elapsed time."""

    def __init__(self, name: str, every: int = 100):
        self.name, self.every, self.began, self.losses = name, every, time.perf_counter(), []

    def __call__(self, step: int, loss: float) -> None:
        self.losses.append(loss)
        if (step + 1) % self.every == 0:
            print(f"[{self.name}] step {step + 1} loss {np.mean(self.losses):.4f} "
                  f"{time.perf_counter() - self.began:.0f} s", flush=True)
            self.losses = []

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.began
