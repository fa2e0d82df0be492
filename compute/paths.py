"""Where the installed ``compute`` package keeps the files it ships beside its code: the embedded checkpoints and
the sweep configs."""

from pathlib import Path

from locolab.contract.catalog.registry import RANDOM_UNET, ModelSpec

PACKAGE_DIR = Path(__file__).resolve().parent


def model_source(spec: ModelSpec) -> str | None:
    """What ``from_pretrained`` reads for ``spec``: its embedded folder or its hub id."""
    return str(PACKAGE_DIR / spec.path) if spec.path else spec.hub_id


def unet_source(spec: ModelSpec) -> str | None:
    """The UNet folder of a model that brings its own (``ModelSpec.unet``), else None (also for a random UNet)."""
    return str(PACKAGE_DIR / spec.unet) if spec.unet and spec.unet != RANDOM_UNET else None
