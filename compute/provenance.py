"""Where a result came from: library versions, the code's git commit and the embedded model's weights."""

import hashlib
import os
import platform
import subprocess
from pathlib import Path

from locolab.compute.paths import PACKAGE_DIR
from locolab.contract.catalog.registry import RANDOM_UNET, ModelSpec


def versions() -> dict:
    """Versions of the libraries that determine generated images."""
    import diffusers
    import torch
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def git_commit() -> str | None:
    """The commit of the checkout this code runs from, or None outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def fingerprint(folders: list[str | os.PathLike]) -> str:
    """A short hash of the safetensors files under ``folders`` (their paths relative to the folder, and bytes)."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.safetensors")):
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def weights_fingerprint(spec: ModelSpec) -> str | None:
    """The fingerprint of an embedded model's weights (its pipeline folder and its own UNet folder), which a retrain
    changes while the model's name stays; None for a hub or code-built model (its name or revision says it)."""
    folders = [PACKAGE_DIR / part for part in (spec.path, spec.unet) if part and part != RANDOM_UNET]
    return fingerprint(folders) if folders else None
