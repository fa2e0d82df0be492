"""Sampling settings shared by every image of a batch or a sweep."""

from dataclasses import asdict, dataclass

from compute.models.registry import ModelSpec


@dataclass(frozen=True)
class Settings:
    """Denoising steps, guidance scale and image size."""

    steps: int
    guidance: float
    height: int
    width: int

    @classmethod
    def defaults(cls, spec: ModelSpec, steps: int | None = None, guidance: float | None = None,
                 size: int | None = None) -> "Settings":
        """The model's defaults, with any given value overriding."""
        size = size or spec.resolution
        return cls(steps or spec.steps, float(spec.guidance if guidance is None else guidance), size, size)

    def to_dict(self) -> dict:
        return asdict(self)
