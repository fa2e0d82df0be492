"""LocoLab's compute stage: LocoGen localization, LocoEdit and neuron edits, causal tracing, DiffQuickFix and
attention contribution on text-to-image models (UNets and diffusion transformers), as a library (the notebook API
below) and as the ``locolab`` command.

Usage::

    import compute as loco

    model = loco.load_model("tiny-sd1")
    result = loco.localize(model, "a house in the style of van gogh", "a painting", score_text="style of van gogh")

The names below load on first use, so ``import compute.<module>`` of a torch-free module stays torch-free.
"""

import importlib
import logging

# Name -> the module that defines it.
_API = {
    "load_model": "compute.models.loading",
    "Model": "compute.models.loading",
    "localize": "compute.api",
    "Localization": "compute.api",
    "generate": "compute.api",
    "swap_text": "compute.intervention",
    "make_edit": "compute.api",
    "loco_edit": "compute.api",
    "neuron_edit": "compute.api",
    "applied": "compute.edit",
    "Edit": "compute.edit",
    "evaluate": "compute.api",
    "load_edit": "compute.edit_store",
    "save_edit": "compute.edit_store",
    "memory_root": "compute.api",
    "attention_contribution": "compute.contribution",
    "StudySpec": "contract.specs",
    "EditSpec": "contract.specs",
    "EvalSpec": "contract.specs",
    "WindowSearch": "contract.specs",
    "run": "compute.runner",
    "Context": "compute.runner",
}
__all__ = list(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'compute' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


class _NoTorchvisionNotice(logging.Filter):
    # torchvision is deliberately absent (it would replace the pinned torch); transformers' notice about its PIL
    # fallback is expected and only noise here.
    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(_NoTorchvisionNotice())
