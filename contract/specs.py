"""Typed specs: what a study (a LocoGen sweep, a window search, causal tracing, attention contribution) and an edit
are asked to do (no torch here).

Each option is defined once, as a field of its spec with its default, bound and help text (``option``); the entry
points only build a spec: YAML configs (``compute.sweep.config``), the command line (its options are generated from
the fields, ``compute.cli.options.add_spec_options``), the dashboard's edit form and the notebook API. A spec checks
its values once when built, checks itself against a model's layer count once that is known (``check_layers``), and
round-trips to JSON (``to_json`` / ``from_json``, refusing unknown keys); stored records keep it serialized.

Usage::

    spec = EditSpec("tiny-sd1", "style", "van gogh", layers=(8, 9), lam=0.1)
    spec.check_layers(16)
    assert EditSpec.from_json(spec.to_json()) == spec
"""

import dataclasses
import hashlib
import json
import re
import typing
from dataclasses import dataclass, field, fields

from locolab.contract import bounds
from locolab.contract.errors import UserError
from locolab.contract.names import (
    ATTENTION_CONTRIBUTION,
    CROSS_ATTENTION,
    EDIT_METHODS,
    FAMILIES,
    KEY_READINGS,
    LOCOGEN,
    METHODS,
    NEURON_SELECTIONS,
    PER_MATRIX,
    POSITIONS,
    TRACE_COMPONENTS,
)
from locolab.contract.summaries import DEFAULT_LEVEL, DEFAULT_THRESHOLD

DTYPES = ("auto", "float32", "float16", "bfloat16")
DEFAULT_LAMBDA = EDIT_METHODS["loco"].lam  # LocoEdit's ridge weight (each closed form's own: ``EditMethod.lam``)
MANY_CONCEPTS = ("loco", "all-layers", "uce")  # the methods that edit several concepts in one solve
DEFAULT_SCALE = 1.0
DEFAULT_ITERATIONS = 1000  # ESD-x's training steps and learning rate (rohitgandikota/erasing)
DEFAULT_LR = 1e-5  # UCE's erase and preserve scales (its code's defaults)
DEFAULT_TOPK = 50  # neuron edits: units held per key/value matrix, as the official code
DEFAULT_ATTACK_STEPS = 50  # the recovery attack's Adam steps (about half a minute on the toy world on a loaded CPU)
DEFAULT_POSITION = 76  # neuron edits: the official code's padding slot, which sees the whole prompt


def option(default=None, help: str = "", bound: bounds.Bound | None = None, *, flag: str | None = None,
           choices: tuple | None = None, metavar: str | None = None, required: bool = False, comma: bool = False):
    """A spec field with its one definition: default, bound (each item's, for a list) and help text.

    Args:
        flag: its command-line option (default ``--`` and the field's name with dashes).
        choices: the values accepted (text options).
        required: no default: every spec names it.
        comma: a list of texts written comma-separated on the command line (else by repeating the option).
    """
    metadata = {"help": help, "bound": bound, "flag": flag, "choices": choices, "metavar": metavar, "comma": comma}
    return field(metadata=metadata) if required else field(default=default, metadata=metadata)


def options(spec_type) -> list[dataclasses.Field]:
    """The fields of ``spec_type`` defined with ``option``, in order."""
    return [f for f in fields(spec_type) if "help" in f.metadata]


def flag_of(f: dataclasses.Field) -> str:
    """A field's command-line option, e.g. ``--lambda`` for ``lam``."""
    return f.metadata.get("flag") or f"--{f.name.replace('_', '-')}"


def _check_options(spec, name_of, may_be_empty: set[str] = frozenset()) -> None:
    """Check every option of ``spec`` against its bound and choices (a list: each item, given once, and at least one
    unless its name is in ``may_be_empty``); ``name_of(field, index)`` names a value in the one-line error."""
    for f in options(spec):
        value, bound, choices = getattr(spec, f.name), f.metadata["bound"], f.metadata["choices"]
        if value is None:
            continue
        items = list(enumerate(value)) if isinstance(value, tuple) else [(None, value)]
        if isinstance(value, tuple) and not value and f.name not in may_be_empty:
            raise UserError(f"{name_of(f, None)}: give at least one value")
        kinds = _kinds(f)
        for index, item in items:
            problem = bound.problem(item) if bound else None
            if str in kinds and not isinstance(item, str) or bool in kinds and not isinstance(item, bool):
                problem = f"expected {'text' if str in kinds else 'true or false'}, got {item!r}"
            elif choices and item not in choices:
                problem = f"expected one of {', '.join(map(str, choices))}, got {item!r}"
            if problem:
                raise UserError(f"{name_of(f, index)}: {problem}")
        if isinstance(value, tuple) and bound and len(set(value)) != len(value):
            raise UserError(f"{name_of(f, None)}: {value} lists a value twice; list each once")


def _kinds(f: dataclasses.Field) -> set:
    """The plain types a field's values (a list's items) may have: ``str | None`` -> {str, NoneType}."""
    kinds = {f.type, *typing.get_args(f.type)}
    return kinds | {item for kind in kinds if typing.get_origin(kind) is tuple for item in typing.get_args(kind)}


def _from_dict(spec_type, data, what: str, build=None):
    """``spec_type(**data)``, refusing anything but a mapping of its field names (lists become tuples)."""
    if not isinstance(data, dict):
        raise UserError(f"{what}: expected a JSON object, got {type(data).__name__}")
    names = [f.name for f in fields(spec_type)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise UserError(f"{what}: unknown key {unknown[0]!r}; use {', '.join(names)}")
    missing = [f.name for f in fields(spec_type) if f.default is dataclasses.MISSING and f.name not in data]
    if missing:
        raise UserError(f"{what}: missing {missing[0]!r}; add it")
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in data.items()}
    return spec_type(**(build(values) if build else values))


def _loads(text: str, what: str):
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{what}: not valid JSON ({error}); write the spec's JSON (spec.to_json())") from None


# --------------------------------------------------------------------------------------------------------- edits
@dataclass(frozen=True)
class EditSpec:
    """What determines an edit: the method, the concept and every setting that changes the weights (the record of an
    edit keeps it; its id is a digest of the request resolved from it, ``compute.edit.request``)."""

    model: str = option(help="registry name, pipeline directory or hub id", required=True)
    family: str = option(help="attribute family (prompt set)", choices=FAMILIES, required=True)
    concept: str = option(help='the concept to edit, e.g. "van gogh"', required=True)
    method: str = option("loco", "; ".join(f"{m.name}: {m.help}" for m in EDIT_METHODS.values()), choices=METHODS)
    target: str | None = option(help="what the concept should become (default: the family's target)")
    concepts: tuple[str, ...] | None = option(
        help="loco, all-layers, uce: more concepts of the family edited in the same solve, comma-separated (one key "
             "set per concept; --concept, which names the edit, may be listed too)", comma=True, metavar="A,B,...")
    layers: tuple[int, ...] | None = option(help="comma-separated UNet layer indices, e.g. 8,9 (loco, neuron; uce, "
                                                 "time, esd-x: default every layer)", bound=bounds.LAYER)
    from_run: str | None = option(help="instead of --layers, the minimal localizing window of a stored sweep (a run "
                                       "id, or its YAML config)", metavar="RUN_ID")
    threshold: float = option(DEFAULT_THRESHOLD, "with --from-run: fraction of the original-to-target gap a window "
                                                 "must remove", bounds.THRESHOLD)
    lam: float | None = option(help="ridge weight of the closed form (> 0; default: the method's paper's, " + ", ".join(
        f"{m.name} {m.lam:g}" for m in EDIT_METHODS.values() if m.lam is not None) + ")", bound=bounds.LAMBDA,
        flag="--lambda", metavar="LAMBDA")
    erase_scale: float = option(DEFAULT_SCALE, "uce: weight of the erased concept's keys", bounds.LAMBDA)
    preserve_scale: float = option(DEFAULT_SCALE, "uce: weight of the preserved concepts' keys", bounds.LAMBDA)
    prompts: tuple[str, ...] | None = option(
        help="source prompt containing the concept; repeatable (default: the family's edit templates; diffquickfix: "
             "the concept and 'a photo of / an image of / a picture of' it, each paired with the same phrase of the "
             "target)", flag="--prompt", metavar="PROMPT")
    topk: int = option(DEFAULT_TOPK, "neuron: units to hold, per key/value matrix (per-matrix) or in all (pooled); at "
                                     "least 1 (0 units hold nothing: the edit would change nothing)",
                       bounds.POSITIVE_COUNT)
    selection: str = option(PER_MATRIX, "neuron: the top k of each matrix (per-matrix, the official code's) or of all "
                                        "the chosen layers' matrices together (pooled)", choices=NEURON_SELECTIONS,
                            flag="--neuron-selection")
    position: int = option(DEFAULT_POSITION, "neuron: token position ranked", bounds.COUNT)
    positions: str | None = option(
        help="closed-form methods: key positions, the last subject token alone or with every later (end-of-text, "
             "padding) position (default: the method's paper's: " + ", ".join(
                 f"{m.name} {m.positions}" for m in EDIT_METHODS.values() if m.positions) + "; time keys every "
             "position)", choices=POSITIONS)
    preserve_others: bool = option(False, "closed-form methods: also key the family's other concepts' source "
                                          "prompts, at every position, mapped to themselves, so the edit leaves them "
                                          "alone (not in the paper)")
    iterations: int = option(DEFAULT_ITERATIONS, "esd-x: training steps (ESD's default)", bounds.POSITIVE_COUNT)
    lr: float = option(DEFAULT_LR, "esd-x: Adam learning rate (ESD's default)", bounds.LAMBDA)
    negative_guidance: float = option(1.0, "esd-x: η, how far past the unconditional noise the concept is pushed",
                                      bounds.LAMBDA)
    seed: int = option(0, "esd-x: the seed of every random draw of the training", bounds.SEED)
    prompt_set: str | None = option(help="prompt set of --family (default: the registered model's, else paper)")
    key_reading: str | None = option(
        help="LocoEdit on several joint-attention blocks (FLUX.1, SD3): read each block's keys through the earlier "
             "blocks already edited (sequential, the default there) or all from the unedited model (parallel)",
        choices=KEY_READINGS)
    dtype: str = option("auto", "the weights' dtype, part of the edit's id (auto: float16 on accelerators, float32 "
                                "on the CPU)", choices=DTYPES)

    def __post_init__(self):
        _check_options(self, lambda f, index: flag_of(f))
        method = EDIT_METHODS[self.method]
        if not self.concept.strip():
            raise UserError("empty concept: name the concept to edit (--concept)")
        if self.layers is not None and self.from_run is not None:
            raise UserError("give --layers or --from-run, not both")
        chosen = self.layers is not None or self.from_run is not None
        if method.chosen_layers and not chosen and not method.all_by_default:
            raise UserError(f"--method {self.method} needs --layers (e.g. 8,9) or --from-run RUN_ID")
        if chosen and not method.chosen_layers:
            where = "text-encoder layer 0, not UNet layers" if method.text_encoder else "every layer"
            raise UserError(f"--method {self.method} edits {where}: drop --layers/--from-run")
        if not method.closed_form and (self.positions or self.preserve_others or self.lam is not None):
            raise UserError(f"--positions/--preserve-others/--lambda are for the closed-form methods only, not "
                            f"--method {self.method}")
        if self.concepts is not None and self.method not in MANY_CONCEPTS:
            raise UserError(f"--concepts is for --method {', '.join(MANY_CONCEPTS)}, not --method {self.method}")
        if self.concepts and self.prompts:
            raise UserError("--prompt names one concept's prompts: drop it with --concepts (each concept gets its "
                            "family's prompts)")
        esd = {"iterations": DEFAULT_ITERATIONS, "lr": DEFAULT_LR, "negative_guidance": 1.0, "seed": 0}
        if self.method != "esd-x" and any(getattr(self, name) != value for name, value in esd.items()):
            raise UserError(f"--iterations/--lr/--negative-guidance/--seed are for --method esd-x only, not --method "
                            f"{self.method}")
        if self.method == "time" and self.positions:
            raise UserError("--method time keys every position of its prompts: drop --positions")
        if self.method != "uce" and (self.erase_scale, self.preserve_scale) != (DEFAULT_SCALE, DEFAULT_SCALE):
            raise UserError(f"--erase-scale/--preserve-scale are for --method uce only, not --method {self.method}")
        if self.method == "uce" and self.preserve_others:
            raise UserError("--method uce always preserves the family's other concepts: drop --preserve-others")

    @property
    def edited(self) -> list[str]:
        """Every concept the edit changes: ``concept``, then ``concepts`` (each once)."""
        return list(dict.fromkeys([self.concept, *(self.concepts or ())]))

    @property
    def ridge(self) -> float | None:
        """The closed form's λ: the given one, else the method's paper's (None: no closed form)."""
        return self.lam if self.lam is not None else EDIT_METHODS[self.method].lam

    @property
    def key_positions(self) -> str | None:
        """The key positions the closed form uses: the given ones, else the method's paper's (None: no closed form)."""
        return self.positions or EDIT_METHODS[self.method].positions

    def check_layers(self, num_layers: int) -> None:
        """Refuse layers the model (``num_layers`` text-reading layers) does not have."""
        if self.layers and any(i >= num_layers for i in self.layers):
            raise UserError(f"--layers: layers must lie in 0..{num_layers - 1} ({self.model} has {num_layers} "
                            f"text-reading layers), got {list(self.layers)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data) -> "EditSpec":
        return _from_dict(cls, data, "edit spec")

    @classmethod
    def from_json(cls, text: str) -> "EditSpec":
        return cls.from_dict(_loads(text, "edit spec"))


@dataclass(frozen=True)
class EvalSpec:
    """How an edit is evaluated (its evaluation id is a digest of the settings that change the numbers)."""

    seeds: tuple[int, ...] = option((0, 1), "comma-separated seeds, the same before and after", bounds.SEED)
    steps: int | None = option(help="denoising steps (model default)", bound=bounds.STEPS)
    guidance: float | None = option(help="guidance scale (model default)", bound=bounds.GUIDANCE)
    size: int | None = option(help=f"image side in pixels, a multiple of {bounds.SIZE_MULTIPLE} (model default)",
                              bound=bounds.SIZE)
    scorer: str | None = option(help="CLIP scorer (default: the model's own, e.g. the toy world's mini-CLIP; "
                                     "tiny-clip for built-in models; else openai/clip-vit-large-patch14)")
    unrelated: int | None = option(help="preservation prompts for specificity: a random subset of N (seed 0), e.g. 20 "
                                        "on a CPU (default: the prompt set's whole set, 335 generic prompts for real "
                                        "models as the paper's 320)", bound=bounds.COUNT)
    other_concepts: int = option(3, "other concepts of the family for specificity (0: none)", bounds.COUNT)
    batch_size: int = option(8, "images per pipeline call", bounds.BATCH_SIZE)
    attack: bool = option(False, "also run the recovery attack: learn soft tokens in place of the concept that bring "
                                 "it back on the edited model, and detect it in the concept's prompts generated with "
                                 "them (Concept Inversion / UnlearnDiffAtk; SD-1.x/2.x and the toy world)")
    attack_steps: int = option(DEFAULT_ATTACK_STEPS, "the attack's budget: Adam steps on the soft tokens (0: the "
                                                     "prompts as they are)", bounds.ATTACK_STEPS)
    attack_tokens: int | None = option(help="soft tokens the attack learns in place of the concept (default: as many "
                                            "as the concept has, so it starts from the prompt itself)",
                                       bound=bounds.ATTACK_TOKENS)

    def __post_init__(self):
        _check_options(self, lambda f, index: flag_of(f))
        if not self.attack and (self.attack_steps != DEFAULT_ATTACK_STEPS or self.attack_tokens is not None):
            raise UserError("--attack-steps and --attack-tokens set the recovery attack: add --attack, or drop them")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data) -> "EvalSpec":
        return _from_dict(cls, data, "evaluation spec")


def edit_job_json(edit: EditSpec, evaluation: EvalSpec | None = None) -> str:
    """The file ``locolab edit --spec FILE`` reads: the edit and, to evaluate it afterwards, the evaluation."""
    return json.dumps({"edit": edit.to_dict(), "eval": None if evaluation is None else evaluation.to_dict()},
                      indent=2, sort_keys=True)


def read_edit_job(text: str) -> tuple[EditSpec, EvalSpec | None]:
    """The specs of an ``edit_job_json`` file."""
    data = _loads(text, "edit --spec file")
    if not isinstance(data, dict) or set(data) - {"edit", "eval"} or "edit" not in data:
        raise UserError('edit --spec file: expected {"edit": {...}, "eval": {...} or null}; write it with '
                        "locolab.contract.specs.edit_job_json")
    evaluation = data.get("eval")
    return EditSpec.from_dict(data["edit"]), None if evaluation is None else EvalSpec.from_dict(evaluation)


# ------------------------------------------------------------------------------------------------------- studies
@dataclass(frozen=True)
class Concept:
    name: str
    target: str | None
    score_text: str


@dataclass(frozen=True)
class Template:
    prompt: str
    target: str | None


TARGET_SLOT = "{target}"  # in a template's target: the concept's (else the family's) target


@dataclass(frozen=True)
class FamilySpec:
    name: str
    target: str | None
    templates: tuple[Template, ...]
    concepts: tuple[Concept, ...]

    def prompts(self, concept: Concept) -> list[tuple[str, str]]:
        """(prompt, target prompt) for each template, for one concept."""
        return [(t.prompt.format(concept=concept.name), self.target_of(t, concept)) for t in self.templates]

    def target_of(self, template: Template, concept: Concept) -> str | None:
        """The target prompt of ``template`` for ``concept`` (see ``compute.sweep.config``)."""
        goal = concept.target or self.target
        if template.target and TARGET_SLOT in template.target:
            return template.target.replace(TARGET_SLOT, goal) if goal else None
        return concept.target or template.target or self.target


@dataclass(frozen=True)
class TraceSpec:
    """Causal-tracing settings: noise as a multiple of the subject's token-embedding std, the UNet site kinds to
    restore, and whether to trace the text encoder's layers too."""

    noise: float = option(3.0, "noise scale, a multiple of the subject's token-embedding std", bounds.NOISE)
    components: tuple[str, ...] = option((CROSS_ATTENTION,), "UNet site kinds to restore", choices=TRACE_COMPONENTS)
    text_encoder: bool = option(True, "also trace the text-encoder layers")

    def __post_init__(self):
        _check_options(self, lambda f, index: f"trace.{f.name}", may_be_empty={"components"})
        object.__setattr__(self, "noise", float(self.noise))
        if not self.components and not self.text_encoder:
            raise UserError("trace: nothing to trace; name components or set text_encoder: true")


def default_coarse(max_size: int) -> tuple[int, ...]:
    """The first pass of a window search: 1, 2, 3, 5, 8, 13, ... (each the sum of the two before) below
    ``max_size``, then ``max_size``; the gaps a refinement fills grow with m, as the cost of a size shrinks."""
    sizes, a, b = [], 1, 2
    while a < max_size:
        sizes.append(a)
        a, b = b, a + b
    return (*sizes, max_size)


@dataclass(frozen=True)
class WindowSearch:
    """A search for each concept's minimal window among all sizes up to ``max_size``: every window of the ``coarse``
    sizes first, then, for a concept whose smallest localizing coarse size is m > 1, every size between the coarse size
    below m and m. Localizing is judged as the summaries judge it, at ``threshold`` on the ``level`` interval."""

    max_size: int = option(help="the largest window size searched", bound=bounds.POSITIVE_COUNT)
    coarse: tuple[int, ...] = option(help="the sizes of the first pass, ending at max_size (default 1, 2, 3, 5, 8, "
                                          "... and max_size)", bound=bounds.POSITIVE_COUNT)
    threshold: float = option(DEFAULT_THRESHOLD, "fraction of the gap a window's interval must clear to localize",
                              bounds.THRESHOLD)
    level: float = option(DEFAULT_LEVEL, "the intervals' coverage", bounds.LEVEL)

    def __post_init__(self):
        _check_options(self, lambda f, index: f"window_search.{f.name}" + ("" if index is None else f"[{index}]"))
        object.__setattr__(self, "coarse", tuple(sorted(self.coarse)))
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "level", float(self.level))
        if self.coarse[-1] != self.max_size:
            fix = (f"add {self.max_size} (sizes above it are never swept)" if self.coarse[-1] < self.max_size
                   else f"drop the sizes above {self.max_size}")
            raise UserError(f"window_search.coarse: must end at max_size {self.max_size}, got {list(self.coarse)}; "
                            f"{fix}")

    @classmethod
    def up_to(cls, max_size: int, **settings) -> "WindowSearch":
        """A search up to ``max_size`` with the default coarse sizes (``default_coarse``)."""
        problem = bounds.POSITIVE_COUNT.problem(max_size)
        if problem:
            raise UserError(f"window_search.max_size: {problem}")
        return cls(max_size, default_coarse(max_size), **settings)


@dataclass(frozen=True)
class ContributionSpec:
    """Attention-contribution settings: how many dominant sites each top-k intervention feeds the target (the DiT
    paper's default: 6), and whether the intervened images also take the target's pooled text embedding (None: as
    the paper's code does on the architecture, ``Architecture.topk_swaps_pooled``)."""

    top_k: tuple[int, ...] = option((6,), "how many dominant sites each intervention feeds the target",
                                    bounds.POSITIVE_COUNT)
    swap_pooled: bool | None = option(help="the interventions also take the target's pooled text embedding (unset: "
                                           "as the paper's code on the architecture: yes for FLUX.1)")

    def __post_init__(self):
        _check_options(self, lambda f, index: f"contribution.{f.name}" + ("" if index is None else f"[{index}]"))


_NAME = re.compile(r"[\w.-]+")


@dataclass(frozen=True)
class StudySpec:
    """A localization study: LocoGen (``window_sizes``, or a ``window_search``), causal tracing (``method`` trace,
    ``trace``) or attention contribution (``contribution``). Its run id is a digest of what determines the results."""

    name: str
    model: str
    families: tuple[FamilySpec, ...]
    window_sizes: tuple[int, ...] = option(help="the window sizes swept (a window search: its coarse sizes)",
                                           bound=bounds.POSITIVE_COUNT)
    seeds: tuple[int, ...] = option(help="the seeds of every prompt", bound=bounds.SEED)
    scorer: str | tuple[str, ...] = option(help="CLIP scorer id, or several")
    steps: int | None = option(help="denoising steps (model default)", bound=bounds.STEPS)
    guidance: float | None = option(help="guidance scale (model default)", bound=bounds.GUIDANCE)
    resolution: int | None = option(help="image side in pixels (model default)", bound=bounds.SIZE)
    batch_size: int | None = option(help="images per pipeline call (default: chosen from free memory)",
                                    bound=bounds.BATCH_SIZE)
    description: str = ""
    trace: TraceSpec = TraceSpec()
    method: str = LOCOGEN
    contribution: ContributionSpec = ContributionSpec()
    window_search: WindowSearch | None = None  # with a search, window_sizes are its coarse sizes

    def __post_init__(self):
        if not _NAME.fullmatch(self.name):
            raise UserError(f"name: {self.name!r} has characters other than letters, digits, '.', '_' and '-'; "
                            "rename it")
        if len(self.name) > 100:  # it names files (run ids, part names)
            raise UserError(f"name: {len(self.name)} characters long; use at most 100")
        if not self.families:
            raise UserError("families: no families; add families or families_from")
        for key in ("window_sizes", "seeds", "scorer"):
            if getattr(self, key) is None:
                raise UserError(f"{key}: missing; add it")
        if isinstance(self.scorer, tuple) and len(self.scorer) == 1:  # one scorer in a list is that scorer
            object.__setattr__(self, "scorer", self.scorer[0])
        _check_options(self, lambda f, index: f.name + ("" if index is None else f"[{index}]"))
        if self.window_search and self.window_sizes != self.window_search.coarse:
            raise UserError(f"window_sizes: {list(self.window_sizes)} differ from the window search's coarse sizes "
                            f"{list(self.window_search.coarse)}; give one of them")
        object.__setattr__(self, "window_sizes", tuple(sorted(self.window_sizes)))
        if self.guidance is not None:
            object.__setattr__(self, "guidance", float(self.guidance))

    @property
    def scorers(self) -> tuple[str, ...]:
        """Every scorer of the study, in config order: each image is scored by each (scores keyed by scorer id)."""
        return (self.scorer,) if isinstance(self.scorer, str) else self.scorer

    def check_layers(self, num_layers: int) -> None:
        """Refuse window sizes larger than the model's ``num_layers`` cross-attention layers (once the model is
        known: the one-line error every entry point gives)."""
        if self.window_search and self.window_search.max_size > num_layers:
            raise UserError(f"window_search.max_size: {self.window_search.max_size} exceeds the {num_layers} "
                            f"cross-attention layers of {self.model}; use a size from 1 to {num_layers}")
        for i, size in enumerate(self.window_sizes):
            if size > num_layers:
                raise UserError(f"window_sizes[{i}]: {size} exceeds the {num_layers} cross-attention layers of "
                                f"{self.model}; use sizes from 1 to {num_layers}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data) -> "StudySpec":
        def build(values: dict) -> dict:
            families = tuple(_from_dict(FamilySpec, f, "study spec: families", lambda v: {
                **v, "templates": tuple(_from_dict(Template, t, "study spec: templates") for t in v["templates"]),
                "concepts": tuple(_from_dict(Concept, c, "study spec: concepts") for c in v["concepts"])})
                for f in values.get("families", ()))
            nested = {"trace": TraceSpec, "contribution": ContributionSpec, "window_search": WindowSearch}
            return {**values, "families": families, **{key: _from_dict(kind, values[key], f"study spec: {key}")
                                                       for key, kind in nested.items()
                                                       if values.get(key) is not None}}
        return _from_dict(cls, data, "study spec", build)

    @classmethod
    def from_json(cls, text: str) -> "StudySpec":
        return cls.from_dict(_loads(text, "study spec"))

    def digest(self) -> str:
        """A short hash of everything that determines the results (not the name or description). A LocoGen run
        ignores the trace and contribution settings; other runs ignore the window sizes and include the method, and
        each ignores the other's settings. Configs without a window search hash as they did before it existed."""
        ignored = {"name", "description", "batch_size"} | ({"trace", "method"} if self.method == LOCOGEN
                                                            else {"window_sizes", "window_search"})
        ignored |= {"trace"} if self.method == ATTENTION_CONTRIBUTION else {"contribution"}
        if self.window_search is None:
            ignored.add("window_search")
        kept = {k: v for k, v in self.to_dict().items() if k not in ignored}
        return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:10]

    @property
    def run_id(self) -> str:
        """Deterministic: a rerun of the same study resumes the same run; other methods get their own run."""
        method = "" if self.method == LOCOGEN else f"{self.method}-"
        return f"{self.name}-{method}{self.digest()}"
