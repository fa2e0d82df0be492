"""Sampling settings shared by every image of a batch or a sweep."""

from dataclasses import asdict, dataclass

from locolab.contract import bounds
from locolab.contract.catalog.registry import ModelSpec


@dataclass(frozen=True)
class Settings:
    """Denoising steps, guidance scale and image size, each within ``contract.bounds``.

    Raises:
        UserError: a value out of bounds (e.g. 0 steps, a NaN guidance, a side that is not a multiple of 8).
    """

    steps: int
    guidance: float
    height: int
    width: int

    def __post_init__(self):
        bounds.STEPS.check(self.steps, "steps")
        bounds.GUIDANCE.check(self.guidance, "guidance")
        bounds.SIZE.check(self.height, "height")
        bounds.SIZE.check(self.width, "width")

    @classmethod
    def defaults(cls, spec: ModelSpec, steps: int | None = None, guidance: float | None = None,
                 size: int | None = None) -> "Settings":
        """The model's defaults, with any given value (not None) overriding."""
        size = spec.resolution if size is None else size
        return cls(spec.steps if steps is None else steps, float(spec.guidance if guidance is None else guidance),
                   size, size)

    def to_dict(self) -> dict:
        return asdict(self)
