"""The attribute families (style, objects, facts, color) and the preservation prompts, shipped as YAML: the one source
of concepts, targets and score texts for sweeps (``families_from`` in a sweep config) and for edits.

A prompt set is a folder of YAML files: ``paper`` (``prompts/``: the paper's concepts, for real checkpoints) and
``toyworld`` (``prompts/toyworld/``: the embedded toy world's shapes, colours, backgrounds and entities). A
registered model names its set (``ModelSpec.prompt_set``); others use ``paper``.

Each ``<family>.yaml`` holds:
    target: what a concept becomes (the edit's target; LocoGen's target prompt unless a sweep template names one).
    score_text: the CLIP text that measures a concept, ``{concept}`` = the concept (facts: the old fact).
    new_fact_text: optional, facts: the CLIP text that measures the new fact, ``{target}`` = the edit's target.
    concepts: names, or mappings ``{name, target, score_text}`` overriding the family's.
    sweep_templates: LocoGen's original prompts: a string with ``{concept}``, or ``{prompt, target}`` where the
        target prompt differs; a template's target may use ``{target}``, the concept's (else the family's) target.
    edit_templates: LocoEdit's source prompts (the keys), ``{concept}`` = the concept.
    held_out: prompts with the concept that no edit reads (generalization).
    neuron_pairs: (prompt with the concept, matching neutral prompt) for the neuron ranking; the neutral prompt is
        the same prompt without the concept, nothing else removed (style: it stays a painting, as in the official
        code's ``neuron_modifications/prompts.py``).
``unrelated.yaml`` lists the preservation prompts (``prompts``); ``robustness.yaml`` each concept's paraphrase,
misspelling and indirect reference (``family -> concept -> kind -> prompt``).
"""

import functools
import random
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from locolab.contract.catalog.registry import MODELS
from locolab.contract.errors import UserError
from locolab.contract.names import FAMILIES

DIRECTORY = Path(__file__).parent / "prompts"
PROMPT_SETS = {"paper": DIRECTORY, "toyworld": DIRECTORY / "toyworld"}
DEFAULT_PROMPT_SET = "paper"
SUBSET_SEED = 0  # the seed of a random subset of the preservation prompts (recorded with the evaluation)


@dataclass(frozen=True)
class AttributeFamily:
    """One attribute family's prompts; every template has one ``{concept}``."""

    name: str
    target: str
    score_text: str
    concepts: tuple[str, ...]
    templates: tuple[str, ...]
    held_out: tuple[str, ...]
    neuron_pairs: tuple[tuple[str, str], ...]
    targets: dict[str, str] = field(default_factory=dict)
    score_texts: dict[str, str] = field(default_factory=dict)
    sweep_templates: tuple = ()
    new_fact_text: str | None = None

    def target_for(self, concept: str) -> str:
        return self.targets.get(concept, self.target)

    def score_text_for(self, concept: str) -> str:
        """The CLIP text that measures whether an image shows ``concept`` (facts: the old fact)."""
        return self.score_texts.get(concept, self.score_text.format(concept=concept))

    def new_fact_text_for(self, target: str) -> str | None:
        """The CLIP text that measures the new fact an edit to ``target`` writes in; None where the family has no
        facts to update."""
        return None if self.new_fact_text is None else self.new_fact_text.replace("{target}", target)

    def source_prompts(self, concept: str) -> list[str]:
        return [t.format(concept=concept) for t in self.templates]

    def held_out_prompts(self, concept: str) -> list[str]:
        return [t.format(concept=concept) for t in self.held_out]

    def contrast_prompts(self, concept: str) -> tuple[list[str], list[str]]:
        """(prompts with the concept, matching neutral prompts) for the neuron ranking."""
        return [c.format(concept=concept) for c, _ in self.neuron_pairs], [n for _, n in self.neuron_pairs]

    def sweep_family(self) -> dict:
        """The family as a sweep config's ``families.<name>`` mapping (``sweep_config``), for ``families_from``."""
        if not self.sweep_templates:
            raise UserError(f"family {self.name!r} of this prompt set has no sweep_templates: it cannot be swept")
        concepts = [{"name": c, **({"target": self.targets[c]} if c in self.targets else {}),
                     **({"score_text": self.score_texts[c]} if c in self.score_texts else {})}
                    for c in self.concepts]
        return {"target": self.target, "score_text": self.score_text, "templates": list(self.sweep_templates),
                "concepts": concepts}


def prompt_set_for(model: str, prompt_set: str | None = None) -> str:
    """``prompt_set``, else the registered model's prompt set, else the paper's."""
    spec = MODELS.get(model)
    return prompt_set or (spec.prompt_set if spec else DEFAULT_PROMPT_SET)


def _directory(prompt_set: str) -> Path:
    if prompt_set not in PROMPT_SETS:
        raise UserError(f"unknown prompt set {prompt_set!r}: use one of {', '.join(PROMPT_SETS)}")
    return PROMPT_SETS[prompt_set]


def _concepts(raw: list) -> tuple[tuple[str, ...], dict[str, str], dict[str, str]]:
    names, targets, score_texts = [], {}, {}
    for item in raw:
        entry = item if isinstance(item, dict) else {"name": item}
        names.append(entry["name"])
        if "target" in entry:
            targets[entry["name"]] = entry["target"]
        if "score_text" in entry:
            score_texts[entry["name"]] = entry["score_text"]
    return tuple(names), targets, score_texts


@functools.cache
def attribute_family(name: str, prompt_set: str = DEFAULT_PROMPT_SET) -> AttributeFamily:
    """Load a shipped family by name (``contract.names.FAMILIES``: style, objects, facts, color, the DiT paper's
    categories) from a prompt set."""
    if name not in FAMILIES:
        raise UserError(f"unknown attribute family {name!r}: use one of {', '.join(FAMILIES)}")
    path = _directory(prompt_set) / f"{name}.yaml"
    if not path.is_file():
        shipped = sorted(p.stem for p in path.parent.glob("*.yaml") if p.stem in FAMILIES)
        raise UserError(f"prompt set {prompt_set!r} has no {name} family: use one of {', '.join(shipped)}")
    data = yaml.safe_load(path.read_text())
    concepts, targets, score_texts = _concepts(data["concepts"])
    return AttributeFamily(
        name=name, target=data["target"], score_text=data["score_text"], concepts=concepts,
        templates=tuple(data["edit_templates"]), held_out=tuple(data["held_out"]),
        neuron_pairs=tuple(tuple(pair) for pair in data["neuron_pairs"]), targets=targets,
        score_texts=score_texts, sweep_templates=tuple(data.get("sweep_templates", ())),
        new_fact_text=data.get("new_fact_text"))


@functools.cache
def unrelated_prompts(prompt_set: str = DEFAULT_PROMPT_SET) -> tuple[str, ...]:
    """The prompt set's preservation prompts (evaluation skips any that mention the edited concept)."""
    return tuple(yaml.safe_load((_directory(prompt_set) / "unrelated.yaml").read_text())["prompts"])


def preservation_prompts(prompt_set: str, concept: str, count: int | None = None,
                         seed: int = SUBSET_SEED) -> list[str]:
    """The preservation prompts of an edit of ``concept``: the set's prompts that do not mention it, all of them
    (``count`` None, the paper's setting) or a random subset of ``count`` drawn with ``seed`` (for CPU runs), in
    the set's order."""
    prompts = [p for p in unrelated_prompts(prompt_set) if concept.lower() not in p.lower()]
    if count is None or count >= len(prompts):
        return prompts
    if count < 0:
        raise UserError(f"--unrelated must be >= 0, got {count}")
    chosen = set(random.Random(seed).sample(range(len(prompts)), count))
    return [p for i, p in enumerate(prompts) if i in chosen]


ROBUSTNESS_KINDS = ("paraphrase", "misspelling", "indirect")


@functools.cache
def _robustness(prompt_set: str) -> dict:
    return yaml.safe_load((_directory(prompt_set) / "robustness.yaml").read_text())


def robustness_prompts(prompt_set: str, family: str, concept: str) -> dict[str, str]:
    """{kind: prompt} of a concept's robustness prompts (``ROBUSTNESS_KINDS``); empty for a concept the set's
    ``robustness.yaml`` does not list (a concept given on the command line)."""
    return dict(_robustness(prompt_set).get(family, {}).get(concept, {}))
