"""The numbers LocoLab accepts, defined once and checked where they enter: command-line options
(``compute.cli.options``), sweep configs (``compute.sweep.config``), sampling settings (``compute.settings``) and
the dashboard's edit form. Every bound is finite; integers must be integers (``2.5`` or ``true`` is not a count).

Usage::

    STEPS.problem(0)      # -> "expected an integer from 1 to 1000, got 0"
    STEPS.parse("20")     # -> 20 (argparse ``type=``; raises ArgumentTypeError)
"""

import argparse
import math
from dataclasses import dataclass

# Seeds are stored as int64 (``cases.seed``) and seed torch generators.
MAX_SEED = 2**63 - 1
# Diffusion schedulers are trained on 1000 timesteps and refuse more inference steps.
MAX_STEPS = 1000
# Image sides: the VAE downscales by 8 (SD pipelines refuse other sizes); above 4096 px no supported model works.
SIZE_MULTIPLE = 8
MAX_SIZE = 4096
MAX_BATCH = 4096
# Images one command may generate without --allow-many-images: generate and edit evaluations run in one go, so the
# cap is what a mistyped seed range (0,...,19999) would cost; a sweep resumes and shards, so its cap (per shard)
# leaves room for the paper's largest study (~17,000 images).
MAX_IMAGES = 10_000
MAX_SWEEP_IMAGES = 100_000
ALLOW_MANY = "--allow-many-images"
# Seeds the dashboard's edit form takes for one evaluation.
MAX_SEEDS = 64
# Text-reading layers a model may have (SD-XL has 70, the most of any supported model): stored layer indices beyond
# it are ignored by the dashboard, which would otherwise build a picker or a heat map that wide.
MAX_LAYERS = 512
# Options any one picker offers, and concept rows one heat map draws (stored values can be crafted in any number).
MAX_OPTIONS = 1000
MAX_ROWS = 200


@dataclass(frozen=True)
class Bound:
    """A range of accepted values.

    Attributes:
        integer: only integers (bool is not one).
        low, high: inclusive limits (None: unbounded on that side; NaN and infinities are always refused).
        above: an exclusive lower limit instead of ``low`` (e.g. > 0).
        multiple: the value must be a multiple of this.
    """

    integer: bool
    low: float | None = None
    high: float | None = None
    above: float | None = None
    multiple: int | None = None

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.multiple:
            kind = f"a multiple of {self.multiple}"

        def shown(limit: float) -> str:
            return str(int(limit)) if self.integer else f"{limit:g}"

        if self.above is not None:
            limits = f" > {shown(self.above)}" + ("" if self.high is None else f" and <= {shown(self.high)}")
        elif self.low is not None and self.high is not None:
            limits = f" from {shown(self.low)} to {shown(self.high)}"
        elif self.low is not None:
            limits = f" >= {shown(self.low)}"
        else:
            limits = "" if self.high is None else f" <= {shown(self.high)}"
        return f"{kind}{limits}" + ("" if self.integer else " (finite)")

    def problem(self, value) -> str | None:
        """Why ``value`` (a Python number) is refused, or None."""
        expected = f"expected {self.describe()}, got {value!r}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return expected
        if self.integer and not isinstance(value, int):
            return expected
        if not math.isfinite(value):
            return expected
        if self.low is not None and value < self.low or self.high is not None and value > self.high:
            return expected
        if self.above is not None and not value > self.above:
            return expected
        if self.multiple and value % self.multiple:
            return expected
        return None

    def check(self, value, what: str):
        """``value`` if accepted, else a ``UserError`` naming ``what`` (e.g. ``--steps``)."""
        from locolab.contract.errors import UserError

        problem = self.problem(value)
        if problem:
            raise UserError(f"{what}: {problem}")
        return value

    def parse(self, text: str):
        """Parse a command-line value (argparse ``type=``)."""
        try:
            value = int(text) if self.integer else float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {text!r}") from None
        problem = self.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {text!r}")
        return value


STEPS = Bound(integer=True, low=1, high=MAX_STEPS)
SIZE = Bound(integer=True, low=SIZE_MULTIPLE, high=MAX_SIZE, multiple=SIZE_MULTIPLE)
GUIDANCE = Bound(integer=False, low=0)  # 0 (or 1): no classifier-free guidance, as guidance-distilled models take
SEED = Bound(integer=True, low=0, high=MAX_SEED)
BATCH_SIZE = Bound(integer=True, low=1, high=MAX_BATCH)
COUNT = Bound(integer=True, low=0, high=1_000_000)  # how many of something, 0 allowed
POSITIVE_COUNT = Bound(integer=True, low=1, high=1_000_000)
LAYER = Bound(integer=True, low=0, high=MAX_LAYERS - 1)
LAMBDA = Bound(integer=False, above=0)
NOISE = Bound(integer=False, low=0)
THRESHOLD = Bound(integer=False, above=0)
PORT = Bound(integer=True, low=1, high=65535)
ATTACK_STEPS = Bound(integer=True, low=0, high=100_000)  # the recovery attack's budget (0: its starting point)
ATTACK_TOKENS = Bound(integer=True, low=1, high=16)  # its soft tokens
# The summaries' statistics (docs/statistics.md): an interval's coverage, the bootstrap's resamples, and a score gap
# (CLIP cosines lie in [-1, 1], so their differences in [-2, 2]; a negative minimum accepts every gap).
LEVEL = Bound(integer=False, above=0, high=0.999)
RESAMPLES = Bound(integer=True, low=1, high=100_000)
MIN_UNITS = Bound(integer=True, low=2, high=1_000_000)  # a spread needs two units
CLUSTER_PROMPTS = Bound(integer=True, low=2, high=1_000_000)  # resampling one prompt has no spread
SCORE_GAP = Bound(integer=False, low=-2, high=2)
