"""LocoLab's compute stage: LocoGen localization, LocoEdit and neuron edits, causal tracing, DiffQuickFix and
attention contribution on text-to-image models (UNets and diffusion transformers), as a library (the notebook API
below) and as the ``locolab`` command.

Usage::

    import locolab as loco

    model = loco.load_model("tiny-sd1")
    result = loco.localize(model, "a house in the style of van gogh", "a painting", score_text="style of van gogh")

The names below load on first use, so ``import locolab.compute.<module>`` of a torch-free module stays torch-free.
"""

import importlib
import logging

# Name -> the module that defines it.
_API = {
    "load_model": "locolab.compute.models.loading",
    "Model": "locolab.compute.models.loading",
    "localize": "locolab.compute.api",
    "Localization": "locolab.compute.api",
    "generate": "locolab.compute.api",
    "swap_text": "locolab.compute.intervention",
    "make_edit": "locolab.compute.api",
    "loco_edit": "locolab.compute.api",
    "neuron_edit": "locolab.compute.api",
    "applied": "locolab.compute.edit.closed_form",
    "Edit": "locolab.compute.edit.closed_form",
    "evaluate": "locolab.compute.api",
    "load_edit": "locolab.compute.edit.store",
    "export_edit": "locolab.compute.edit.export",
    "save_edit": "locolab.compute.edit.store",
    "memory_root": "locolab.compute.api",
    "attention_contribution": "locolab.compute.contribution.measure",
    "StudySpec": "locolab.contract.specs",
    "EditSpec": "locolab.contract.specs",
    "EvalSpec": "locolab.contract.specs",
    "WindowSearch": "locolab.contract.specs",
    "run": "locolab.compute.runner",
    "Context": "locolab.compute.runner",
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
