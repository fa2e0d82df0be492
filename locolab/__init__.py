"""LocoLab: localize and edit concepts in text-to-image models (LocoGen, LocoEdit and their baselines).

The repository's folders install under this one name: ``locolab.compute`` (the torch side and the notebook API),
``locolab.contract`` (the artifact store's layout and schema, torch-free) and ``locolab.dashboard``.

Usage::

    import locolab as loco

    model = loco.load_model("tiny-sd1")
    result = loco.localize(model, "a house in the style of van gogh", "a painting", score_text="style of van gogh")

The notebook API's names (``locolab.compute.__all__``) load on first use: ``import locolab`` does not load torch.
"""

import importlib

from locolab.compute import __all__


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module 'locolab' has no attribute {name!r}")
    return getattr(importlib.import_module("locolab.compute"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
