"""Command-line options and parsers that several commands share: the store-writing run options (sweep, trace), the
evaluation options (edit --eval, eval-edit), device and dtype, and the parsers of numbers, seeds, layers, windows and
shards. Every number is checked here, as argparse parses it (the bounds are ``contract.bounds``), so a bad value
fails before any model loads or anything is written."""

import argparse
import dataclasses
import functools
import typing
from collections import Counter

from locolab.compute.plan import launcher_shard
from locolab.contract import bounds
from locolab.contract.errors import UserError
from locolab.contract.names import OFFLOADS
from locolab.contract.specs import DTYPES, EvalSpec, flag_of, options
from locolab.contract.store import DEFAULT_ROOT, ROOT_ENV


def parse_ints(text: str, what: str, bound: bounds.Bound = bounds.LAYER) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2], each within ``bound`` and given once; a one-line error naming ``what`` otherwise."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"bad {what} {text[:80]!r}: write comma-separated integers, e.g. 0,1") from None
    if not values:
        raise UserError(f"no {what} given: write comma-separated integers, e.g. 0,1")
    for value in values:
        problem = bound.problem(value)
        if problem:
            raise UserError(f"bad {what} {text[:80]!r}: {problem}")
    if len(set(values)) != len(values):
        repeated = next(value for value, count in Counter(values).items() if count > 1)
        raise UserError(f"bad {what} {text[:80]!r}: {repeated} is given twice; list each once")
    return values


def seeds(text: str) -> list[int]:
    """argparse ``type=`` of ``--seeds``: comma-separated seeds from 0 to 2**63 - 1, each once."""
    try:
        return parse_ints(text, "seeds", bounds.SEED)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_window(text: str) -> tuple[int, int]:
    """``START:END`` (half-open layer range) -> (start, end)."""
    try:
        start, end = (int(part) for part in text.split(":"))
    except ValueError:
        raise UserError(f"bad window {text!r}: write START:END, e.g. 8:10 for layers 8 and 9") from None
    if start < 0:
        raise UserError(f"bad window {text!r}: START must be >= 0 (layers count from 0)")
    if start >= end:
        raise UserError(f"bad window {text!r}: START must be below END (END is exclusive)")
    return start, end


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` -> (I, N) with 0 <= I < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"bad --shard {text!r}: write I/N, e.g. 0/4") from None
    if not 0 <= index < count:
        raise UserError(f"bad --shard {text!r}: need 0 <= I < N")
    return index, count


def device(text: str) -> str:
    """argparse ``type=`` of ``--device``: ``auto`` or a torch device this machine has (checked without loading
    anything)."""
    from locolab.compute.models.loading import pick_device

    try:
        pick_device(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def add_device_options(parser, dtype: bool = True) -> None:
    """``--device`` and (optionally) ``--dtype``."""
    parser.add_argument("--device", default="auto", type=device,
                        help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    if dtype:
        parser.add_argument("--dtype", default="auto", choices=DTYPES,
                            help="auto: float16 on accelerators, float32 on the CPU")


def add_allow_many(parser) -> None:
    parser.add_argument(bounds.ALLOW_MANY, action="store_true",
                        help=f"allow more than {bounds.MAX_IMAGES:,} images in one go "
                             f"({bounds.MAX_SWEEP_IMAGES:,} per sweep shard)")


def check_image_count(count: int, allowed: bool, cap: int = bounds.MAX_IMAGES) -> None:
    """Refuse to generate more than ``cap`` images unless ``--allow-many-images`` was given."""
    if count > cap and not allowed:
        raise UserError(f"this would generate {count:,} images, more than the cap of {cap:,}: use fewer seeds (or "
                        f"prompts, windows, concepts), or pass {bounds.ALLOW_MANY}")


def add_offload_option(parser) -> None:
    """``--offload [MODE]`` and ``--fp8``: where the model's weights wait (``load_model(offload=..., fp8=...)``)."""
    parser.add_argument("--offload", nargs="?", const="model", default="auto", choices=OFFLOADS,
                        help="where the weights wait: auto (default: on the device where they fit, else model, else "
                             "group), none, model (--offload alone: accelerate's model CPU offload, components on "
                             "the device one at a time, e.g. FLUX.1 on a 24 GB GPU) or group (diffusers' block-level "
                             "group offload: one block at a time)")
    parser.add_argument("--fp8", action="store_true",
                        help="store the denoiser's weights in float8, cast layer by layer (half of bf16's memory; "
                             "images change by the rounding)")


def add_run_options(parser, unit_cases: str, dry_run: str) -> None:
    """The options every store-writing run shares (sweep, trace): root, sharding, limits, batch, device."""
    parser.add_argument("--artifacts", help=f"artifact root (default ${ROOT_ENV} or {DEFAULT_ROOT}/)")
    parser.add_argument("--shard", default="0/1", help="I/N: run the I-th of N shards (0-based), e.g. for array jobs")
    parser.add_argument("--limit", type=bounds.POSITIVE_COUNT.parse,
                        help=f"run at most K work units (one prompt with all its {unit_cases})")
    parser.add_argument("--dry-run", action="store_true", help=dry_run)
    parser.add_argument("--batch-size", type=bounds.BATCH_SIZE.parse,
                        help="images per pipeline call (default: config, else auto)")
    add_device_options(parser)
    add_offload_option(parser)
    add_allow_many(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_options(args) -> tuple[int, int, str]:
    """Check the shared options (``add_run_options``); returns this process's (shard, num_shards, device)."""
    shard, num_shards = parse_shard(args.shard)
    return launcher_shard(shard, num_shards, args.device)


def _types(f: dataclasses.Field) -> tuple:
    return (f.type, *typing.get_args(f.type))


def _ints(what: str, bound: bounds.Bound):
    def parse(text: str) -> tuple[int, ...]:
        try:
            return tuple(parse_ints(text, what, bound))
        except UserError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return parse


def _texts(text: str) -> tuple[str, ...]:
    """``"a, b"`` -> ("a", "b"); ``none`` -> () (the spec checks the names)."""
    return tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip() and part.strip() != "none"))


def add_spec_options(parser, spec_type, only: tuple[str, ...] | None = None, skip: tuple[str, ...] = (),
                     overrides: bool = False) -> None:
    """Command-line options generated from a spec's fields (``contract.specs.option``): each option's flag, default,
    bound, choices and help come from its one definition. A list of numbers or of named choices is written
    comma-separated, another list of texts by repeating the option, a switch as ``--x`` (``--no-x`` where it is on by
    default or overrides).

    Args:
        only, skip: the fields to include (default: all) and to leave out.
        overrides: every option defaults to None: it overrides the spec a config file gives (``spec_values``).
    """
    for f in options(spec_type):
        if f.name in skip or only is not None and f.name not in only:
            continue
        default = None if f.default is dataclasses.MISSING else f.default
        bound, choices, text = f.metadata["bound"], f.metadata["choices"], f.metadata["help"]
        many = any(typing.get_origin(kind) is tuple for kind in _types(f))
        kwargs = {"dest": f.name, "default": None if overrides else default}
        if bool in _types(f):
            on = overrides or default is not False
            kwargs["action"] = argparse.BooleanOptionalAction if on else "store_true"
        elif many and bound is not None:
            kwargs["type"] = _ints(flag_of(f).lstrip("-"), bound)
        elif many and choices:
            kwargs["type"] = _texts
            text += f" (comma-separated: {', '.join(choices)}, or none)"
        elif many and f.metadata.get("comma"):
            kwargs["type"] = _texts
        elif many:
            kwargs.update(action="append", default=None)
        else:
            kwargs.update(type=bound.parse if bound else str, choices=choices)
        if f.metadata["metavar"]:
            kwargs["metavar"] = f.metadata["metavar"]
        shown = (",".join(map(str, default)) if isinstance(default, tuple)
                 else {True: "yes", False: "no"}.get(default, default) if isinstance(default, bool) else default)
        if overrides:
            text += " (default: config" + ("" if shown is None else f", else {shown}") + ")"
        elif shown not in (None, "no", "") and "default" not in text:
            text += f" (default {shown})"
        parser.add_argument(flag_of(f), help=text, **kwargs)


def spec_values(spec_type, args, given: bool = False) -> dict:
    """The values of ``spec_type``'s options parsed by ``add_spec_options`` (a list of texts as a tuple); with
    ``given``, only those given (not None: the ``overrides`` of a config's spec)."""
    values = {f.name: getattr(args, f.name) for f in options(spec_type) if hasattr(args, f.name)}
    return {name: tuple(value) if isinstance(value, list) else value for name, value in values.items()
            if not given or value is not None}


def add_sampling_options(parser) -> None:
    """``--steps``, ``--guidance`` and ``--size`` (each the model's default when not given)."""
    add_spec_options(parser, EvalSpec, only=("steps", "guidance", "size"))


ATTACK_OPTIONS = ("attack", "attack_steps", "attack_tokens")  # the recovery attack's: one concept's evaluations only


def add_eval_options(parser, attack: bool = True) -> None:
    """The evaluation options shared by ``edit --eval`` and ``eval-edit`` (``contract.specs.EvalSpec``; without the
    recovery attack's unless ``attack``)."""
    group = parser.add_argument_group("evaluation")
    add_spec_options(group, EvalSpec, skip=() if attack else ATTACK_OPTIONS)
    add_allow_many(group)


def model_loader(spec, args):
    """A function that loads ``spec.model`` with the command's device options on its first call and returns the
    same model on every later one (commands that may not need a model at all load none)."""
    from locolab.compute.models.loading import load_model  # torch: only when a command loads a model

    @functools.cache
    def model():
        return load_model(spec.model, device=args.device, dtype=spec.dtype, offload=args.offload, fp8=args.fp8)

    return model
