"""Prompt sets of the attribute families (style, objects, facts, color) and the unrelated prompts, shipped as YAML.

A prompt set is a folder of YAML files: ``paper`` (this folder: the paper's concepts, for real checkpoints) and
``toyworld`` (``toyworld/``: the embedded toy world's shapes, colours, backgrounds and entities). A registered model
names its set (``ModelSpec.prompt_set``); others use ``paper``.

Each ``<family>.yaml`` holds: ``target`` (default target prompt) and optional per-concept ``targets``;
``score_text`` (CLIP text that measures the attribute, ``{concept}`` = the concept) and optional per-concept
``score_texts``; ``concepts``; ``templates`` (LocoEdit's source prompts); ``held_out`` (generalization prompts);
``neuron_pairs`` (prompt with the concept, matching neutral prompt). ``unrelated.yaml`` lists generic prompts.
"""

import functools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from contract.errors import UserError
from contract.names import FAMILIES

DIRECTORY = Path(__file__).parent / "prompts"
PROMPT_SETS = {"paper": DIRECTORY, "toyworld": DIRECTORY / "toyworld"}
DEFAULT_PROMPT_SET = "paper"


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

    def target_for(self, concept: str) -> str:
        return self.targets.get(concept, self.target)

    def score_text_for(self, concept: str) -> str:
        """The CLIP text that measures whether an image shows ``concept``."""
        return self.score_texts.get(concept, self.score_text.format(concept=concept))

    def source_prompts(self, concept: str) -> list[str]:
        return [t.format(concept=concept) for t in self.templates]

    def held_out_prompts(self, concept: str) -> list[str]:
        return [t.format(concept=concept) for t in self.held_out]

    def contrast_prompts(self, concept: str) -> tuple[list[str], list[str]]:
        """(prompts with the concept, matching neutral prompts) for the neuron ranking."""
        return [c.format(concept=concept) for c, _ in self.neuron_pairs], [n for _, n in self.neuron_pairs]


def _directory(prompt_set: str) -> Path:
    if prompt_set not in PROMPT_SETS:
        raise UserError(f"unknown prompt set {prompt_set!r}: use one of {', '.join(PROMPT_SETS)}")
    return PROMPT_SETS[prompt_set]


@functools.cache
def attribute_family(name: str, prompt_set: str = DEFAULT_PROMPT_SET) -> AttributeFamily:
    """Load a shipped family by name (``style``, ``objects``, ``facts``, ``color``) from a prompt set."""
    if name not in FAMILIES:
        raise UserError(f"unknown attribute family {name!r}: use one of {', '.join(FAMILIES)}")
    data = yaml.safe_load((_directory(prompt_set) / f"{name}.yaml").read_text())
    return AttributeFamily(
        name=name, target=data["target"], score_text=data["score_text"], concepts=tuple(data["concepts"]),
        templates=tuple(data["templates"]), held_out=tuple(data["held_out"]),
        neuron_pairs=tuple(tuple(pair) for pair in data["neuron_pairs"]), targets=data.get("targets", {}),
        score_texts=data.get("score_texts", {}))


@functools.cache
def unrelated_prompts(prompt_set: str = DEFAULT_PROMPT_SET) -> tuple[str, ...]:
    """The prompt set's prompts for specificity (evaluation skips any that mention the edited concept)."""
    return tuple(yaml.safe_load((_directory(prompt_set) / "unrelated.yaml").read_text())["prompts"])
