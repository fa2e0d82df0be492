"""The registry of named models: real checkpoints (by hub id) and built-in offline models (no hub id): the tiny
test models and full-size random-weight models for benchmarks."""

from dataclasses import asdict, dataclass

RANDOM_UNET = "random"  # ModelSpec.unet: a seeded random-weight UNet built from the pipeline's own UNet config


@dataclass(frozen=True)
class ModelSpec:
    """A named model and its generation defaults.

    Attributes:
        name: registry name.
        arch: the pipeline architecture, a key into ``compute.models.architectures.ARCHITECTURES``.
        hub_id: model-hub id, or None for a built-in model.
        resolution: default image side in pixels.
        steps: default denoising steps.
        guidance: default classifier-free guidance scale.
        scheduler: a diffusers scheduler class name, or "default" for the checkpoint's own.
        num_layers: text-reading attention layer count, known without loading (None: read from the denoiser's
            config).
        path: for a model embedded in the ``compute`` package, its pipeline folder relative to it
            (``compute.paths.model_source``).
        scorer: the CLIP scorer that fits the model's world (None: the default for its kind).
        prompt_set: the edit prompt set that fits the model's world (``contract/catalog/prompts``).
        unet: for an embedded model that shares ``path``'s other components, its own UNet folder relative to the
            ``compute`` package (a planted toy world: ``plan.json`` beside the weights names its planted layers), or
            ``RANDOM_UNET``: a seeded random-weight UNet of the same config (the planted benchmark's control).
    """

    name: str
    arch: str
    hub_id: str | None
    resolution: int
    steps: int = 50
    guidance: float = 7.5
    scheduler: str = "default"
    num_layers: int | None = None
    path: str | None = None
    scorer: str | None = None
    prompt_set: str = "paper"
    unet: str | None = None

    @property
    def builtin(self) -> bool:
        """A registered model built from code (no weights to read)."""
        return self.hub_id is None and self.path is None and MODELS.get(self.name) == self

    def to_dict(self) -> dict:
        return asdict(self)


MODELS = {m.name: m for m in (
    ModelSpec("sd-1.4", "sd1", "CompVis/stable-diffusion-v1-4", 512, num_layers=16),
    ModelSpec("sd-1.5", "sd1", "stable-diffusion-v1-5/stable-diffusion-v1-5", 512, num_layers=16),
    ModelSpec("openjourney", "sd1", "prompthero/openjourney", 512, num_layers=16),
    ModelSpec("sd-2.1", "sd2", "stabilityai/stable-diffusion-2-1", 768, num_layers=16),
    ModelSpec("sd-2.1-base", "sd2", "stabilityai/stable-diffusion-2-1-base", 512, num_layers=16),
    ModelSpec("sdxl-base", "sdxl", "stabilityai/stable-diffusion-xl-base-1.0", 1024, num_layers=70),
    # DeepFloyd IF stage I, 64 px. XL: 3 resnets per block at 4 levels, attention at 3 -> 9 down + 1 mid + 12 up.
    # The L and M UNet configs were not at hand: their counts are read from the config on first use.
    ModelSpec("if-i-xl", "if", "DeepFloyd/IF-I-XL-v1.0", 64, num_layers=22),
    ModelSpec("if-i-l", "if", "DeepFloyd/IF-I-L-v1.0", 64),
    ModelSpec("if-i-m", "if", "DeepFloyd/IF-I-M-v1.0", 64),
    # Diffusion transformers, at their pipelines' defaults (steps, guidance, size). 28 PixArt blocks; FLUX.1: 19
    # double-stream + 38 single-stream blocks. The DiT paper generated FLUX.1-dev at 512 px (its sweep configs say so).
    ModelSpec("pixart-alpha", "pixart-alpha", "PixArt-alpha/PixArt-XL-2-1024-MS", 1024, steps=20, guidance=4.5,
              num_layers=28),
    ModelSpec("pixart-alpha-512", "pixart-alpha", "PixArt-alpha/PixArt-XL-2-512x512", 512, steps=20, guidance=4.5,
              num_layers=28),
    ModelSpec("pixart-sigma", "pixart-sigma", "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS", 1024, steps=20, guidance=4.5,
              num_layers=28),
    ModelSpec("flux-dev", "flux", "black-forest-labs/FLUX.1-dev", 1024, steps=28, guidance=3.5, num_layers=57),
    ModelSpec("flux-schnell", "flux", "black-forest-labs/FLUX.1-schnell", 1024, steps=4, guidance=0.0,
              num_layers=57),
    ModelSpec("sd3.5-medium", "sd3", "stabilityai/stable-diffusion-3.5-medium", 1024, steps=40, guidance=4.5,
              num_layers=24),
    ModelSpec("sd3.5-large", "sd3", "stabilityai/stable-diffusion-3.5-large", 1024, steps=28, guidance=3.5,
              num_layers=38),
    # SANA (the DiT paper's third model): 20 blocks of the 1600M model, its pipeline's defaults.
    ModelSpec("sana-1600m", "sana", "Efficient-Large-Model/Sana_1600M_1024px_diffusers", 1024, steps=20,
              guidance=4.5, num_layers=20),
    ModelSpec("toyworld", "sd1", None, 32, steps=10, guidance=5.0, num_layers=16, path="checkpoints/toyworld",
              scorer="toyworld-clip", prompt_set="toyworld"),
    # Planted toy worlds (compute/toyworld/train_planted.py): the toy world's UNet fine-tuned so that each family
    # enters only through the layers its plan names (the control: every family readable everywhere); the other
    # components are the toy world's.
    *(ModelSpec(f"toyworld-planted-{v}", "sd1", None, 32, steps=10, guidance=5.0, num_layers=16,
                path="checkpoints/toyworld", scorer="toyworld-clip", prompt_set="toyworld",
                unet=f"checkpoints/toyworld-planted-{v}") for v in ("a", "b", "control")),
    # The toy world with a random-weight UNet (its config, seeded): nothing is drawn, so nothing is measurable.
    ModelSpec("toyworld-random", "sd1", None, 32, steps=10, guidance=5.0, num_layers=16, path="checkpoints/toyworld",
              scorer="toyworld-clip", prompt_set="toyworld", unet=RANDOM_UNET),
    ModelSpec("tiny-sd1", "sd1", None, 64, steps=10, num_layers=16),
    ModelSpec("tiny-sd2", "sd2", None, 64, steps=10, num_layers=16),
    ModelSpec("tiny-sdxl", "sdxl", None, 64, steps=10, num_layers=70),
    ModelSpec("tiny-if", "if", None, 64, steps=10, num_layers=22),
    ModelSpec("tiny-pixart", "pixart-alpha", None, 64, steps=10, guidance=4.5, num_layers=28),
    ModelSpec("tiny-pixart-sigma", "pixart-sigma", None, 64, steps=10, guidance=4.5, num_layers=28),
    ModelSpec("tiny-flux", "flux", None, 64, steps=10, guidance=3.5, num_layers=57),
    ModelSpec("tiny-sd3", "sd3", None, 64, steps=10, guidance=4.5, num_layers=24),
    ModelSpec("tiny-sana", "sana", None, 64, steps=10, guidance=4.5, num_layers=20),
    ModelSpec("random-sd-1.5", "sd1", None, 512, num_layers=16),
    ModelSpec("random-sdxl", "sdxl", None, 1024, num_layers=70),
    ModelSpec("random-pixart", "pixart-alpha", None, 1024, steps=20, guidance=4.5, num_layers=28),
    ModelSpec("random-flux", "flux", None, 1024, steps=28, guidance=3.5, num_layers=57),
    ModelSpec("random-sd3", "sd3", None, 1024, steps=40, guidance=4.5, num_layers=24),
    ModelSpec("random-sana", "sana", None, 1024, steps=20, guidance=4.5, num_layers=20),
)}
