"""CLIP score: the cosine between L2-normalised CLIP image and text embeddings (docs/method.md §2).

Images are preprocessed with torch (resize of the shortest side, centre crop, CLIP mean/std) because
torchvision must not be installed and transformers' image processors would otherwise be the only route.
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from huggingface_hub import is_offline_mode
from PIL import Image
from transformers import AutoTokenizer, CLIPConfig, CLIPModel

from locolab.compute.models.tokenizer import VOCAB_SIZE, clip_tokenizer
from locolab.compute.paths import PACKAGE_DIR
from locolab.compute.toyworld.detect import DETECTOR_SCORER, DetectorScorer
from locolab.contract.catalog.registry import ModelSpec
from locolab.contract.errors import UserError
from locolab.contract.names import RANDOM_SCORER

DEFAULT_SCORER = "openai/clip-vit-large-patch14"  # the community's usual choice
PAPER_SCORER = "openai/clip-vit-base-patch16"  # the one the paper's neuron study used
TINY_SCORER = RANDOM_SCORER  # built-in random weights, for tests
# Scorers shipped inside the package, by the name stored with their scores.
EMBEDDED_SCORERS = {"toyworld-clip": PACKAGE_DIR / "checkpoints" / "toyworld-clip"}  # the toy world's mini-CLIP
# The toy world's exact pixel detectors as a scorer (1 when the image shows what the text names, else 0).
NAMED_SCORERS = (TINY_SCORER, *EMBEDDED_SCORERS, DETECTOR_SCORER)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MAX_LENGTH = 77

Images = list[Image.Image] | np.ndarray


class ClipScorer:
    """Scores (image, text) pairs with one CLIP model; ``scorer_id`` is stored next to every score.

    Args:
        model: a ``CLIPModel``; it is put in eval mode on ``device``.
        tokenizer: the model's tokenizer.
        scorer_id: the name recorded with scores (hub id, directory or ``tiny-clip``).
        device: where embeddings are computed.
    """

    def __init__(self, model: CLIPModel, tokenizer, scorer_id: str, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device, torch.float32).eval()
        self.tokenizer = tokenizer
        self.scorer_id = scorer_id
        self.image_size = model.config.vision_config.image_size

    def preprocess(self, images: Images) -> torch.Tensor:
        """Turn images into CLIP pixel values.

        Args:
            images: PIL images (any size/mode) or an array (N, H, W, 3) of floats in [0, 1].

        Returns:
            A float32 tensor (N, 3, S, S) on the CPU, S = the vision tower's image size.
        """
        mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
        std = torch.tensor(CLIP_STD).view(3, 1, 1)
        return torch.stack([(self._resize_crop(_to_chw(image)) - mean) / std for image in images])

    def _resize_crop(self, image: torch.Tensor) -> torch.Tensor:
        size = self.image_size
        height, width = image.shape[-2:]
        scale = size / min(height, width)
        new_hw = (max(size, int(height * scale)), max(size, int(width * scale)))
        if new_hw != (height, width):
            image = F.interpolate(image[None], size=new_hw, mode="bicubic", antialias=True, align_corners=False)[0]
            # Bicubic overshoots; the checkpoints saw uint8 images, which saturate at 0 and 1.
            image = image.clamp(0.0, 1.0)
        top, left = (new_hw[0] - size) // 2, (new_hw[1] - size) // 2
        return image[:, top : top + size, left : left + size]

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings (len(texts), projection_dim) on the scorer's device."""
        tokens = self.tokenizer(list(texts), padding="max_length", max_length=MAX_LENGTH, truncation=True,
                                return_tensors="pt").to(self.device)
        out = self.model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        return F.normalize(out.pooler_output, dim=-1)

    @torch.no_grad()
    def embed_images(self, images: Images) -> torch.Tensor:
        """L2-normalised image embeddings (N, projection_dim) on the scorer's device."""
        pixels = self.preprocess(images).to(self.device)
        return F.normalize(self.model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)

    def score(self, images: Images, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """CLIP score of each image against its text: a cosine in [-1, 1], not scaled by 100, not clamped.

        Args:
            images: N PIL images, or an array (N, H, W, 3) of floats in [0, 1].
            texts: N texts, one per image.
            batch_size: images per forward pass.

        Returns:
            A float64 array of N scores.
        """
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        if not texts:
            return np.zeros(0)
        # Sweeps score many images against few attribute texts: embed each distinct text once.
        unique = sorted(set(texts))
        text_embeds = torch.cat([self.embed_texts(unique[i : i + batch_size])
                                 for i in range(0, len(unique), batch_size)])
        row_of = {text: row for row, text in enumerate(unique)}
        rows = torch.tensor([row_of[text] for text in texts], device=self.device)
        scores = [(self.embed_images(images[i : i + batch_size]) * text_embeds[rows[i : i + batch_size]]).sum(-1)
                  for i in range(0, len(texts), batch_size)]
        return torch.cat(scores).cpu().numpy().astype(np.float64)

def _to_chw(image: Image.Image | np.ndarray) -> torch.Tensor:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    return torch.as_tensor(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)


def tiny_clip(seed: int = 0) -> CLIPModel:
    """A random-weight CLIP with a 32-wide, 2-layer text and vision tower (32x32 images, 8x8 patches).

    Args:
        seed: weights are drawn from this seed; the global RNG is left as it was.
    """
    config = CLIPConfig(
        text_config=dict(vocab_size=VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=MAX_LENGTH, bos_token_id=49406,
                         eos_token_id=49407),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPModel(config).eval()


def load_scorer(name_or_path: str = DEFAULT_SCORER, device: str | torch.device = "cpu") -> ClipScorer | DetectorScorer:
    """Load a scorer.

    Args:
        name_or_path: ``tiny-clip``, ``toyworld-clip`` (shipped), ``toyworld-detect`` (the toy world's exact
            detectors), a local CLIP directory saved with ``save_pretrained``, or a hub id.
        device: where embeddings are computed.

    Returns:
        A ``ClipScorer`` (or the ``DetectorScorer``) whose ``scorer_id`` is ``name_or_path``.

    Raises:
        UserError: the directory is missing, the hub is offline and the id is not cached, or loading failed.
    """
    if name_or_path == DETECTOR_SCORER:
        return DetectorScorer()
    if name_or_path == TINY_SCORER:
        return ClipScorer(tiny_clip(), _checked(clip_tokenizer(), name_or_path), name_or_path, device)
    path = EMBEDDED_SCORERS.get(name_or_path) or Path(name_or_path).expanduser()
    if not path.is_dir() and name_or_path.startswith(("/", ".", "~")):
        raise UserError(f"CLIP scorer directory {name_or_path} does not exist")
    transformers.utils.logging.disable_progress_bar()  # a loading bar per scorer would drown the sweep's own
    try:
        model = CLIPModel.from_pretrained(str(path) if path.is_dir() else name_or_path, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(path) if path.is_dir() else name_or_path)
    except OSError as error:
        if is_offline_mode() and not path.is_dir():
            raise UserError(f"cannot load CLIP scorer {name_or_path}: the model hub is offline (HF_HUB_OFFLINE=1) "
                            "and it is not cached; pass a local directory saved with save_pretrained") from error
        raise UserError(f"cannot load CLIP scorer {name_or_path}: {str(error).splitlines()[0]}") from error
    return ClipScorer(model, _checked(tokenizer, name_or_path), name_or_path, device)


def default_scorer(spec: ModelSpec) -> str:
    """The scorer that fits a model: its registered one (the toy world's mini-CLIP), ``tiny-clip`` for built-in
    random-weight models, else ``DEFAULT_SCORER``."""
    return spec.scorer or (TINY_SCORER if spec.builtin else DEFAULT_SCORER)


def _checked(tokenizer, name: str):
    # transformers 5 may return a 2-token placeholder instead of raising when files are missing offline.
    if len(tokenizer) <= 2:
        raise UserError(f"the tokenizer of CLIP scorer {name} has {len(tokenizer)} tokens: its files are missing")
    return tokenizer
