"""A LocoGen localization asked for on the Localize page: a concept, its prompts, the attribute-free target, window
sizes and seeds, built into a ``contract.specs.StudySpec`` and launched as ``python -m compute sweep --spec FILE``;
its cost counted as the sweep's dry run counts it (``compute.runner.plan``), without importing compute.

The Prompts box holds one prompt per line: a template with ``{concept}`` or a literal prompt, optionally followed by
`` -> `` and that prompt's own target (``a {concept} car -> a car``); lines without a target use the Target box."""

from dataclasses import asdict, dataclass

from locolab.contract import bounds
from locolab.contract.catalog.attributes import attribute_family, prompt_set_for
from locolab.contract.catalog.registry import MODELS
from locolab.contract.errors import UserError
from locolab.contract.specs import Concept, FamilySpec, StudySpec, Template

ARROW = " -> "  # between a prompt and its own target on a line of the Prompts box
DEFAULT_SIZES = (1, 2)
DEFAULT_SEEDS = (0, 1)
TINY_SCORER, DEFAULT_SCORER = "tiny-clip", "openai/clip-vit-large-patch14"  # compute.scoring's names
MAX_PROMPTS = 64


def catalog_prompts(model: str, family: str) -> tuple[str, str, str] | None:
    """(Prompts box text, target, score text) of the shipped family's sweep templates in ``model``'s prompt set;
    None when the prompt set has no such family to sweep."""
    try:
        shipped = attribute_family(family, prompt_set_for(model)).sweep_family()
    except (UserError, KeyError, OSError):
        return None
    lines = [t if isinstance(t, str) else t["prompt"] + (f"{ARROW}{t['target']}" if t.get("target") else "")
             for t in shipped["templates"]]
    return "\n".join(lines), shipped["target"], shipped["score_text"]


def default_scorer(model: str) -> str:
    """The scorer a sweep of ``model`` uses by default (as ``compute.scoring.default_scorer``): its registered one,
    the tiny random CLIP for built-in models, else the community's usual CLIP."""
    spec = MODELS.get(model)
    if spec is None:
        return DEFAULT_SCORER
    return spec.scorer or (TINY_SCORER if spec.builtin else DEFAULT_SCORER)


def parse_sizes(text: str, num_layers: int) -> tuple[int, ...]:
    """The Window sizes box: comma-separated sizes from 1 to ``num_layers``.

    Raises:
        UserError: not integers, out of range, repeated or none.
    """
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        sizes = tuple(int(part) for part in parts)
    except ValueError:
        raise UserError(f"window sizes {text[:80]!r}: write comma-separated integers, e.g. 1,2,3") from None
    if not sizes:
        raise UserError("window sizes: give at least one, e.g. 1,2")
    if len(set(sizes)) != len(sizes):
        raise UserError("window sizes: list each size once")
    wrong = [size for size in sizes if not 1 <= size <= num_layers]
    if wrong:
        raise UserError(f"window size {wrong[0]}: use sizes from 1 to {num_layers}, the model's cross-attention "
                        "layers")
    return tuple(sorted(sizes))


def parse_prompts(text: str) -> tuple[Template, ...]:
    """The Prompts box as templates (a literal prompt's braces kept as written).

    Raises:
        UserError: no prompt, too many, a repeated one, or an empty side of `` -> ``.
    """
    templates = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        prompt, _, target = (part.strip() for part in line.partition(ARROW.strip()))
        if not prompt or (ARROW.strip() in line and not target):
            raise UserError(f"prompt line {number}: {line.strip()[:80]!r} has an empty side of '->'; write "
                            "'PROMPT -> TARGET' or the prompt alone")
        if "{concept}" not in prompt:  # a literal prompt: only {concept} is ever filled in
            prompt = prompt.replace("{", "{{").replace("}", "}}")
        templates.append(Template(prompt, target or None))
    if not templates:
        raise UserError("prompts: give at least one, one per line (e.g. 'a house in the style of {concept}')")
    if len(templates) > MAX_PROMPTS:
        raise UserError(f"{len(templates)} prompts: give at most {MAX_PROMPTS}")
    if len({t.prompt for t in templates}) != len(templates):
        raise UserError("prompts: list each prompt once")
    return templates_checked(tuple(templates))


def templates_checked(templates: tuple[Template, ...]) -> tuple[Template, ...]:
    """Refuse templates whose braces do not fill in (``{other}``, a stray brace)."""
    for template in templates:
        try:
            template.prompt.format(concept="x")
        except (KeyError, IndexError, ValueError):
            raise UserError(f"prompt {template.prompt!r}: only {{concept}} is filled in; remove other braces") \
                from None
    return templates


def run_name(concept: str) -> str:
    """The study's name (its run id is ``<name>-<digest>``): ``localize-`` and the concept in letters, digits, '.',
    '_' and '-'."""
    kept = "".join(c if c.isascii() and (c.isalnum() or c in "._") else "-" for c in concept.strip().lower())
    slug = "-".join(part for part in kept.split("-") if part) or "concept"
    return f"localize-{slug}"[:100]


@dataclass(frozen=True)
class LocalizeRequest:
    """The Localize page's values (``contract.specs.StudySpec``: each study value's meaning and bound).

    Attributes:
        model, family, concept: what is localized; the family names the rows of the map.
        prompts: the Prompts box's text (see the module's docstring).
        target: the attribute-free prompt fed to a window's layers where a prompt names none.
        score_text: the CLIP text the images are scored against (``{concept}`` filled in).
        window_sizes, seeds: the Window sizes and Seeds boxes, parsed.
        steps, resolution: sampling (None: the model's default).
    """

    model: str
    family: str
    concept: str
    prompts: str
    target: str
    score_text: str = "{concept}"
    window_sizes: tuple[int, ...] = DEFAULT_SIZES
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    steps: int | None = None
    resolution: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def study(self, num_layers: int) -> StudySpec:
        """The study, checked (window sizes within ``num_layers``, every prompt with a target).

        Raises:
            UserError: a value is missing, out of bounds or does not fill in.
        """
        concept, target = self.concept.strip(), self.target.strip()
        if not concept:
            raise UserError("concept: name the concept to localize, e.g. van gogh")
        if len(self.seeds) > bounds.MAX_SEEDS:
            raise UserError(f"{len(self.seeds)} seeds: give at most {bounds.MAX_SEEDS}")
        templates = parse_prompts(self.prompts)
        if not target and any(t.target is None for t in templates):
            raise UserError("target: give the attribute-free prompt (e.g. 'a painting'), or a target on every "
                            "prompt line ('PROMPT -> TARGET')")
        try:
            self.score_text.format(concept=concept)
        except (KeyError, IndexError, ValueError):
            raise UserError(f"score text {self.score_text!r}: only {{concept}} is filled in") from None
        family = FamilySpec(self.family, target or None, templates, (Concept(concept, None, self.score_text),))
        study = StudySpec(run_name(concept), self.model, (family,), window_sizes=self.window_sizes, seeds=self.seeds,
                          scorer=default_scorer(self.model), steps=self.steps, resolution=self.resolution,
                          description=f"localized from the dashboard: {concept}")
        study.check_layers(num_layers)
        return study

    def job(self, root: str, allowed_models: set[str], num_layers: int) -> tuple[list[str], str, StudySpec]:
        """The arguments after ``python -m compute`` writing under ``root``, the spec file they run (``sweep --spec
        FILE``: ``jobs.launch`` writes it into the job's folder and adds ``--spec``) and the study.

        Raises:
            UserError: as ``study``; the model is not one a job may name (``edit_form.runnable_models``); more
                images than one sweep may render unasked.
        """
        if self.model not in allowed_models:
            raise UserError(f"model {self.model!r} is neither registered, allowed at launch (--allow-model), nor a "
                            "model folder inside this artifact root")
        study = self.study(num_layers)
        count = cost(study, num_layers)
        if count["images"] > bounds.MAX_SWEEP_IMAGES:
            raise UserError(f"{count['images']:,} images: more than {bounds.MAX_SWEEP_IMAGES:,} in one sweep; use "
                            "fewer prompts, seeds or window sizes, or run it from the command line")
        return ["sweep", f"--artifacts={root}"], study.to_json(), study


def cost(study: StudySpec, num_layers: int) -> dict[str, int]:
    """What the study's sweep renders, as its dry run counts it (``compute.plan.build_plan``): work units (one per
    prompt), cases (original, target and all-layers references and every window, per seed) and distinct images (a
    family's target image is shared by its prompts, the all-layers image by the window of every layer)."""
    units = cases = 0
    images = set()
    for family in study.families:
        for concept in family.concepts:
            for prompt, target in family.prompts(concept):
                units += 1
                windows = [(start, size) for size in study.window_sizes for start in range(num_layers - size + 1)]
                cases += len(study.seeds) * (3 + len(windows))
                for seed in study.seeds:
                    images.update({(prompt, None, None, seed), (target, None, None, seed),
                                   (prompt, (0, num_layers), target, seed)})
                    images.update((prompt, (start, start + size), target, seed) for start, size in windows)
    return {"units": units, "cases": cases, "images": len(images)}
