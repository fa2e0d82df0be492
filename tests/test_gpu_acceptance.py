"""Acceptance on a real checkpoint (the gpu tier, left out of ``make test``): LocoGen finds SD-v1.4's style knowledge
in cross-attention layers 8-9 (``up_blocks.1.attentions.1`` and ``.2``), the paper's confirmed result.

Runs wherever a CUDA device and the checkpoints are present: ``LOCOLAB_SD14`` names a saved SD-v1.4 pipeline folder
(else the hub cache is searched for CompVis/stable-diffusion-v1-4), ``LOCOLAB_CLIP_B16`` a saved CLIP ViT-B/16 (else
openai/clip-vit-base-patch16 in the cache). Run it with ``pytest -m gpu tests/test_gpu_acceptance.py``.
"""

import os

import pytest

pytestmark = pytest.mark.gpu
STYLE_PROMPTS = ["a house in the style of van gogh", "a tree in the style of van gogh",
                 "a portrait of a woman in the style of van gogh", "a river at night in the style of van gogh"]


def _local(variable: str, hub_id: str) -> str | None:
    """A folder named by ``variable``, else the hub cache's copy of ``hub_id``, else None (nothing is downloaded)."""
    if os.path.isdir(os.environ.get(variable, "")):
        return os.environ[variable]
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(hub_id, local_files_only=True)
    except Exception:  # not cached: the hub's own error types vary by version
        return None


def test_sd14_style_localizes_to_layers_8_and_9():
    import torch

    import locolab.compute as loco

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pipeline = _local("LOCOLAB_SD14", "CompVis/stable-diffusion-v1-4")
    scorer = _local("LOCOLAB_CLIP_B16", "openai/clip-vit-base-patch16")
    if pipeline is None or scorer is None:
        pytest.skip("SD-v1.4 or CLIP ViT-B/16 not present: set LOCOLAB_SD14 and LOCOLAB_CLIP_B16 to saved folders")
    model = loco.load_model(pipeline, device="cuda")
    result = loco.localize(model, STYLE_PROMPTS, "a painting", score_text="style of van gogh", concept="van gogh",
                           family="style", window_sizes=[2], seeds=[0, 1, 2, 3], steps=50, guidance=7.5, size=512,
                           scorer=scorer, progress=False)
    drops = {row["window_start"]: row["normalized_drop"] for row in result.windows.to_pylist()}
    assert max(drops, key=drops.get) == 8, drops
    assert result.layers == [8, 9], result
