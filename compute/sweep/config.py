"""Sweep configs: YAML files, one per study, validated before any model loads.

Example::

    name: style-sd-1.5
    model: sd-1.5
    window_sizes: [1, 2, 3, 4]
    seeds: [0, 1, 2, 3]
    steps: 50                # optional: model default
    guidance: 7.5            # optional: model default
    resolution: 512          # optional: model default
    scorer: [openai/clip-vit-base-patch16, openai/clip-vit-large-patch14]   # one scorer, or several in one pass
    batch_size: 8            # optional: chosen from free memory
    families:
      style:
        target: a painting
        score_text: "style of {concept}"
        templates: ["a painting in the style of {concept}", "{concept} style painting of a tree"]
        concepts: [van gogh, monet, {name: salvador dali, score_text: "surrealism of salvador dali"}]

Instead of ``window_sizes``, ``window_search`` finds each concept's minimal window among every size up to a maximum at
a fraction of the cost: ``window_search: {max_size: 10}`` sweeps the coarse sizes (default 1, 2, 3, 5, 8, ... and the
maximum), then, per concept, every size between the largest coarse size that does not localize and the smallest that
does (``compute/sweep/window_search.py``; optional keys ``coarse``, ``threshold``, ``level``).

A template is a string with ``{concept}``, or a mapping ``{prompt: ..., target: ...}`` when its target prompt differs
(``a {concept} car`` -> ``a car``). A concept is a name, or a mapping with ``name`` and optional ``target`` /
``score_text`` overrides (for facts: the new fact and the old one). The target of a prompt is the template's when it
contains ``{target}``, filled with the concept's (else the family's) target (``a photo of {target}`` ->
``a photo of joe biden``); else the concept's, else the template's, else the family's.

``families_from: [style, objects]`` adds the shipped attribute families (``contract/catalog/attributes.py``: the one
source of families for sweeps and edits) of the config's ``prompt_set`` (default: the model's, e.g. ``toyworld``,
else ``paper``).

An optional ``trace:`` section sets the causal-tracing baseline (``python -m compute trace``), which ignores
``window_sizes``: ``trace: {noise: 3.0, components: [cross-attention, resnet], text_encoder: true}``.

An optional ``contribution:`` section sets the attention-contribution localization (``python -m compute
contribution``), which also ignores ``window_sizes``: ``contribution: {top_k: [6], swap_pooled: false}``.
"""

import os
import re
import string
from dataclasses import replace
from pathlib import Path

import yaml

from locolab.compute.yaml_safe import load_yaml
from locolab.contract.errors import UserError
from locolab.contract.names import ATTENTION_CONTRIBUTION, FAMILIES, TRACE
from locolab.contract.specs import (
    Concept,
    ContributionSpec,
    FamilySpec,
    StudySpec,
    Template,
    TraceSpec,
    WindowSearch,
    default_coarse,
    options,
)

TOP_KEYS = {"name", "description", "model", "families", "families_from", "prompt_set", "window_sizes", "window_search",
            "seeds", "steps", "guidance", "resolution", "scorer", "batch_size", "trace", "contribution"}
SEARCH_KEYS = {"max_size", "coarse", "threshold", "level"}
FAMILY_KEYS = {"target", "score_text", "templates", "concepts"}
TEMPLATE_KEYS = {"prompt", "target"}
CONFIGS_DIR = Path(__file__).parent.parent / "configs"  # the shipped configs
CONCEPT_KEYS = {"name", "target", "score_text"}
TRACE_KEYS = {"noise", "components", "text_encoder"}
CONTRIBUTION_KEYS = {"top_k", "swap_pooled"}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# The study modules' name for a study spec (a sweep config is one).
SweepConfig = StudySpec
__all__ = ["CONFIGS_DIR", "Concept", "ConfigError", "ContributionSpec", "FamilySpec", "SweepConfig", "Template",
           "TraceSpec", "WindowSearch", "default_coarse", "load_config", "parse_config"]


class ConfigError(UserError):
    """A sweep config problem: names the file, the key path and the fix."""


class _Checker:
    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, problem: str, fix: str):
        raise ConfigError(f"{self.source}: {path}: {problem}; {fix}")

    def keys(self, path: str, mapping, allowed: set[str], required: set[str] = frozenset()):
        if not isinstance(mapping, dict):
            self.fail(path, f"expected a mapping, got {type(mapping).__name__}", "see compute/sweep/config.py")
        for key in mapping:
            if key not in allowed:
                self.fail(f"{path}.{key}".lstrip("."), "unknown key", f"use one of {', '.join(sorted(allowed))}")
        for key in sorted(required - set(mapping)):
            self.fail(f"{path}.{key}".lstrip("."), "missing", "add it")

    def text(self, path: str, value) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(path, f"expected non-empty text, got {value!r}", "write a string")
        return value

    def items(self, path: str, value) -> tuple:
        """A non-empty list as a tuple (its values are checked by the spec it builds)."""
        if not isinstance(value, list) or not value:
            self.fail(path, "expected a non-empty list", "write e.g. [1, 2]")
        return tuple(value)

    def placeholders(self, path: str, text: str) -> None:
        """Only ``{concept}`` may be filled in: any other field (or a stray brace) fails here, not mid-run."""
        try:
            fields = [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]
        except ValueError as error:
            self.fail(path, f"{text!r} has a stray brace ({error})", "write {{ and }} for literal braces")
        unknown = [field for field in fields if field != "concept"]
        if unknown:
            self.fail(path, f"{text!r} names {{{unknown[0]}}}, which is not filled in",
                      "the only placeholder is {concept}; write {{ and }} for literal braces")


def _template(check: _Checker, path: str, raw) -> Template:
    if isinstance(raw, dict):
        check.keys(path, raw, TEMPLATE_KEYS, {"prompt"})
        prompt, target = raw["prompt"], raw.get("target")
        check.text(f"{path}.prompt", prompt)
        if target is not None:
            check.text(f"{path}.target", target)
    else:
        prompt, target = check.text(path, raw), None
    check.placeholders(path, prompt)
    if "{concept}" not in prompt:
        check.fail(path, f"{prompt!r} does not contain {{concept}}", "put {concept} where the concept goes")
    return Template(prompt, target)


def _concept(check: _Checker, path: str, raw, score_text: str) -> Concept:
    if isinstance(raw, dict):
        check.keys(path, raw, CONCEPT_KEYS, {"name"})
    else:
        raw = {"name": check.text(path, raw)}
    target = raw.get("target")
    name = check.text(f"{path}.name", raw["name"])
    own = "score_text" in raw
    text = check.text(f"{path}.score_text", raw.get("score_text", score_text))
    if own:
        check.placeholders(f"{path}.score_text", text)
    return Concept(name, None if target is None else check.text(f"{path}.target", target), text)


def _family(check: _Checker, name: str, raw) -> FamilySpec:
    path = f"families.{name}"
    check.keys(path, raw, FAMILY_KEYS, {"templates", "concepts"})
    target = None if raw.get("target") is None else check.text(f"{path}.target", raw["target"])
    score_text = check.text(f"{path}.score_text", raw.get("score_text", "{concept}"))
    check.placeholders(f"{path}.score_text", score_text)
    for key, example in (("templates", '["a photo of {concept}"]'), ("concepts", "[van gogh, monet]")):
        if not isinstance(raw[key], list) or not raw[key]:
            check.fail(f"{path}.{key}", "expected a non-empty list", f"write e.g. {example}")
    templates = [_template(check, f"{path}.templates[{i}]", t) for i, t in enumerate(raw["templates"])]
    if len({t.prompt for t in templates}) != len(templates):
        check.fail(f"{path}.templates", "duplicate templates", "list each template once")
    concepts = [_concept(check, f"{path}.concepts[{i}]", c, score_text) for i, c in enumerate(raw["concepts"])]
    names = [c.name for c in concepts]
    if len(set(names)) != len(names):
        check.fail(f"{path}.concepts", "duplicate concepts", "list each concept once")
    family = FamilySpec(name, target, tuple(templates), tuple(concepts))
    for i, template in enumerate(templates):
        for concept in concepts:
            if not family.target_of(template, concept):
                check.fail(f"{path}.templates[{i}]", f"no target prompt for {concept.name!r}",
                           f"set {path}.target, a target on the template, or one on the concept")
    return family


def _trace(check: _Checker, raw) -> TraceSpec:
    if raw is None:
        return TraceSpec()
    check.keys("trace", raw, TRACE_KEYS)
    components = raw.get("components", list(TraceSpec.components))
    if not isinstance(components, list) or not all(isinstance(c, str) for c in components):
        check.fail("trace.components", f"expected a list of site kinds, got {components!r}",
                   "use some of " + ", ".join(_choices(TraceSpec, "components")))
    text_encoder = raw.get("text_encoder", TraceSpec.text_encoder)
    if not isinstance(text_encoder, bool):
        check.fail("trace.text_encoder", f"expected true or false, got {text_encoder!r}", "fix it")
    noise = TraceSpec.noise if raw.get("noise") is None else raw["noise"]
    return TraceSpec(noise, tuple(dict.fromkeys(components)), text_encoder)


def _choices(spec_type, name: str) -> tuple:
    return next(f.metadata["choices"] for f in options(spec_type) if f.name == name)


def _search(check: _Checker, raw) -> WindowSearch:
    check.keys("window_search", raw, SEARCH_KEYS, {"max_size"})
    settings = {key: raw[key] for key in ("threshold", "level") if key in raw}
    if "coarse" in raw:
        return WindowSearch(raw["max_size"], check.items("window_search.coarse", raw["coarse"]), **settings)
    return WindowSearch.up_to(raw["max_size"], **settings)


def _contribution(check: _Checker, raw) -> ContributionSpec:
    if raw is None:
        return ContributionSpec()
    check.keys("contribution", raw, CONTRIBUTION_KEYS)
    top_k = check.items("contribution.top_k", raw["top_k"]) if "top_k" in raw else ContributionSpec.top_k
    swap_pooled = raw.get("swap_pooled")
    if swap_pooled is not None and not isinstance(swap_pooled, bool):
        check.fail("contribution.swap_pooled", f"expected true or false, got {swap_pooled!r}", "fix or remove it")
    return ContributionSpec(top_k, swap_pooled)


def _shared_families(check: _Checker, names, prompt_set: str) -> dict:
    from locolab.contract.catalog.attributes import attribute_family

    if not isinstance(names, list) or not names:
        check.fail("families_from", "expected a non-empty list", "write e.g. [style, objects]")
    families = {}
    for i, name in enumerate(names):
        if name not in FAMILIES:
            check.fail(f"families_from[{i}]", f"no shipped family {name!r}", f"use one of {', '.join(FAMILIES)}")
        try:
            families[name] = attribute_family(name, prompt_set).sweep_family()
        except UserError as error:
            check.fail(f"families_from[{i}]", str(error), "use another family or define it under families")
    return families


def _prompt_set(check: _Checker, raw) -> str:
    from locolab.contract.catalog.attributes import PROMPT_SETS, prompt_set_for

    if "prompt_set" in raw and raw["prompt_set"] not in PROMPT_SETS:
        check.fail("prompt_set", f"unknown prompt set {raw['prompt_set']!r}", f"use one of {', '.join(PROMPT_SETS)}")
    return prompt_set_for(str(raw["model"]), raw.get("prompt_set"))


def check_scorer(scorer: str, where: str) -> None:
    """Refuse a scorer that is neither named, a local directory nor a hub id.

    Raises:
        UserError: naming ``where`` (e.g. the config's key path) and the fix.
    """
    from locolab.compute.scoring import NAMED_SCORERS, TINY_SCORER

    if scorer in NAMED_SCORERS or os.path.isdir(scorer) or (_HUB_ID.match(scorer) and not os.path.exists(scorer)):
        return
    raise ConfigError(f"{where}: unknown scorer {scorer!r}; use {TINY_SCORER}, a CLIP hub id such as "
                      "openai/clip-vit-large-patch14, or a local CLIP directory")


def _check_scorer(check: _Checker, path: str, scorer: str) -> None:
    check_scorer(scorer, f"{check.source}: {path}")


def _scorers(check: _Checker, raw) -> str | tuple[str, ...]:
    """One scorer id, or a list of distinct ones; a list of one is that one (so its run id does not change)."""
    if isinstance(raw, list):
        if not raw:
            check.fail("scorer", "expected a scorer or a non-empty list of scorers", "write e.g. [tiny-clip]")
        scorers = tuple(check.text(f"scorer[{i}]", item) for i, item in enumerate(raw))
        if len(set(scorers)) != len(scorers):
            check.fail("scorer", "duplicate scorers", "list each scorer once")
        for i, scorer in enumerate(scorers):
            _check_scorer(check, f"scorer[{i}]", scorer)
        return scorers[0] if len(scorers) == 1 else scorers
    _check_scorer(check, "scorer", check.text("scorer", raw))
    return raw


def parse_config(raw, source: str = "config") -> SweepConfig:
    """Validate a config mapping (as loaded from YAML) into a study spec.

    Raises:
        ConfigError: naming the key path and the fix.
    """
    from locolab.compute.scoring import DEFAULT_SCORER

    check = _Checker(source)
    check.keys("", raw, TOP_KEYS, {"name", "model", "seeds"})
    if ("window_sizes" in raw) == ("window_search" in raw):
        check.fail("window_sizes", "give either window_sizes (an explicit list) or window_search (a search up to a "
                   "maximum size)", "write e.g. window_sizes: [1, 2, 3] or window_search: {max_size: 10}")
    try:
        search = _search(check, raw["window_search"]) if "window_search" in raw else None
        families = raw.get("families", {})
        if not isinstance(families, dict):
            check.fail("families", "expected a mapping of family name -> settings", "see contract/catalog/prompts/")
        if "families_from" in raw:
            families = {**_shared_families(check, raw["families_from"], _prompt_set(check, raw)), **families}
        if not families:
            check.fail("families", "no families", "add families or families_from")
        scorer = _scorers(check, raw.get("scorer", DEFAULT_SCORER))
        return SweepConfig(
            name=check.text("name", raw["name"]), model=check.text("model", raw["model"]),
            families=tuple(_family(check, str(k), v) for k, v in families.items()),
            window_sizes=search.coarse if search else check.items("window_sizes", raw["window_sizes"]),
            window_search=search, seeds=check.items("seeds", raw["seeds"]), scorer=scorer, steps=raw.get("steps"),
            guidance=raw.get("guidance"), resolution=raw.get("resolution"), batch_size=raw.get("batch_size"),
            description=str(raw.get("description", "")), trace=_trace(check, raw.get("trace")),
            contribution=_contribution(check, raw.get("contribution")))
    except ConfigError:
        raise
    except UserError as error:  # the spec's own check: its message names the key and the fix
        raise ConfigError(f"{source}: {error}") from None


def config_path(name: str | os.PathLike) -> Path:
    """A config file: ``name`` itself if it exists, else the shipped config of that name (``tiny-sd1``,
    ``tiny-sd1.yaml`` or ``compute/configs/tiny-sd1.yaml`` from any directory -> the installed package's)."""
    path = Path(name)
    shipped = CONFIGS_DIR / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    by_name = path.parent in (Path("."), Path("compute/configs"))
    return shipped if not path.is_file() and by_name and shipped.is_file() else path


def load_config(path: str | os.PathLike) -> SweepConfig:
    """Read and validate a YAML sweep config: a path, or the name of a shipped one (``config_path``)."""
    path = config_path(path)
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml")))
        raise ConfigError(f"{path}: no such config file; give a path or a shipped config ({shipped})")
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; give a YAML sweep config") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the syntax") from None
    return parse_config(raw, str(path))


def with_contribution(config: SweepConfig, **settings) -> SweepConfig:
    """``config`` as an attention-contribution study, with ``settings`` (``ContributionSpec`` fields) overriding its
    own."""
    return replace(config, method=ATTENTION_CONTRIBUTION, contribution=replace(config.contribution, **settings))


def with_trace(config: SweepConfig, **settings) -> SweepConfig:
    """``config`` as a causal-tracing study (method ``trace``), with ``settings`` (``TraceSpec`` fields) overriding
    its own."""
    return replace(config, method=TRACE, trace=replace(config.trace, **settings))
