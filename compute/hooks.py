"""The one way LocoLab hooks torch modules: every hook registered through a ``Hooks`` is removed when its ``with``
block ends, also when the block raises (in the spirit of baukit's ``Trace``).

Usage::

    with Hooks() as hooks:
        hooks.before(attention, swap, with_kwargs=True)  # forward pre-hook: may return new (args, kwargs)
        hooks.after(layer, record)                       # forward hook: may return a new output
        pipe(prompt)
"""

from collections.abc import Callable

import torch


class Hooks:
    """Forward hooks and pre-hooks registered for the duration of a ``with`` block."""

    def __init__(self):
        self._handles: list = []

    def before(self, module: torch.nn.Module, hook: Callable, with_kwargs: bool = False) -> None:
        """Register ``hook(module, args[, kwargs])`` to run before ``module``'s forward."""
        self._handles.append(module.register_forward_pre_hook(hook, with_kwargs=with_kwargs))

    def after(self, module: torch.nn.Module, hook: Callable, prepend: bool = False) -> None:
        """Register ``hook(module, args, output)`` to run after ``module``'s forward (``prepend``: before the
        module's other forward hooks)."""
        self._handles.append(module.register_forward_hook(hook, prepend=prepend))

    def remove(self) -> None:
        """Remove every hook registered so far."""
        while self._handles:
            self._handles.pop().remove()

    def __enter__(self) -> "Hooks":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
