"""An edit asked for on the Run-an-edit page, checked, as ``python -m compute edit ... --eval`` arguments, and the
models such a job may name."""

from dataclasses import asdict, dataclass
from pathlib import Path

from compute.attributes import attribute_family, preservation_prompts, prompt_set_for
from compute.models.registry import MODELS
from contract import bounds
from contract.errors import UserError
from contract.names import CHOSEN_LAYERS, CLOSED_FORM, FAMILIES, METHODS, POSITIONS


def runnable_models(root: str, stored: list[str], allowed: tuple[str, ...] = ()) -> list[str]:
    """The models a job launched into ``root`` may name: the registered ones, the operator's ``allowed`` list
    (``--allow-model``), and models of the store that are pipeline folders inside the root, named by absolute path.
    Any other name a row of the store holds (a folder elsewhere, a hub id to download) is not offered.

    Args:
        stored: model names found in the store's tables.
    """
    base = Path(root).resolve()
    names = set(MODELS) | set(allowed)
    for name in stored:
        path = Path(name)
        if path.is_absolute() and path.resolve().is_relative_to(base) and (path / "model_index.json").is_file():
            names.add(name)
    return sorted(names)


@dataclass(frozen=True)
class EditRequest:
    """The form's values.

    Attributes:
        model: a registered model or one already in the store.
        family, concept: what to edit.
        target: what the concept should become (None: the family's default target).
        layers: layer indices to edit (loco, neuron; ignored by the others).
        lam: the ridge weight of the closed form (loco, all-layers, diffquickfix).
        method: one of ``METHODS``.
        topk: neuron: units to hold.
        positions: closed forms: key positions, ``subject`` or ``subject+padding`` (None: the method's default).
        preserve_others: closed forms: also map the family's other concepts to themselves.
        seeds: evaluation seeds, the same before and after.
        steps, size: evaluation sampling (None: the model's default).
        unrelated: unrelated prompts for specificity.
    """

    model: str
    family: str
    concept: str
    target: str | None
    layers: tuple[int, ...]
    lam: float = 0.01
    method: str = "loco"
    topk: int = 50
    seeds: tuple[int, ...] = (0, 1)
    steps: int | None = None
    size: int | None = None
    unrelated: int = 20
    positions: str | None = None
    preserve_others: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def args(self, root: str, allowed_models: set[str], num_layers: int | None) -> list[str]:
        """The arguments after ``python -m compute``, writing under ``root``.

        Raises:
            UserError: a value is out of bounds, or the model is neither registered nor in the store.
        """
        if self.model not in allowed_models:
            raise UserError(f"model {self.model!r} is neither registered, allowed at launch (--allow-model), nor a "
                            "model folder inside this artifact root")
        if self.family not in FAMILIES:
            raise UserError(f"family must be one of {', '.join(FAMILIES)}")
        if not self.concept.strip():
            raise UserError("name a concept to edit")
        if self.method not in METHODS:
            raise UserError(f"method must be one of {', '.join(METHODS)}")
        if self.method in CHOSEN_LAYERS and not self.layers:
            raise UserError(f"method {self.method} needs at least one layer")
        if num_layers is not None and any(not 0 <= i < num_layers for i in self.layers):
            raise UserError(f"layers must lie in 0..{num_layers - 1}")
        if self.method != "neuron" and not self.lam > 0:
            raise UserError(f"lambda must be > 0, got {self.lam}")
        if self.positions not in (None, *POSITIONS):
            raise UserError(f"positions must be one of {', '.join(POSITIONS)}")
        if self.method not in CLOSED_FORM and (self.positions or self.preserve_others):
            raise UserError("key positions and preserving other concepts apply to the closed-form methods only")
        if not self.seeds:
            raise UserError("give at least one evaluation seed")
        if len(self.seeds) > bounds.MAX_SEEDS:
            raise UserError(f"{len(self.seeds)} seeds: give at most {bounds.MAX_SEEDS}")
        for name, bound, value in (("seed", bounds.SEED, self.seeds), ("steps", bounds.STEPS, [self.steps]),
                                   ("size", bounds.SIZE, [self.size]), ("lambda", bounds.LAMBDA, [self.lam]),
                                   ("unrelated prompts", bounds.COUNT, [self.unrelated]),
                                   ("top-k", bounds.POSITIVE_COUNT, [self.topk])):
            for item in value:
                problem = None if item is None else bound.problem(item)
                if problem:
                    raise UserError(f"{name}: {problem}")
        # name=value keeps a value that starts with '-' from being read as an option.
        args = ["edit", f"--model={self.model}", f"--family={self.family}", f"--concept={self.concept}",
                f"--method={self.method}", "--eval", f"--artifacts={root}",
                f"--seeds={','.join(map(str, self.seeds))}", f"--unrelated={self.unrelated}"]
        args += [f"--target={self.target}"] if self.target else []
        if self.method in CHOSEN_LAYERS:
            args.append(f"--layers={','.join(map(str, sorted(self.layers)))}")
        args.append(f"--topk={self.topk}" if self.method == "neuron" else f"--lambda={self.lam}")
        args += [f"--positions={self.positions}"] if self.positions else []
        args += ["--preserve-others"] if self.preserve_others else []
        args += [f"--steps={self.steps}"] if self.steps else []
        args += [f"--size={self.size}"] if self.size else []
        return args


# Key options the project suggests per model where the paper's defaults fail on it (README, "The toy world"): the
# paper's subject-token edit does not remove the toy world's backgrounds; keying the end-of-text and padding positions
# too and preserving the other backgrounds does (``make demo``, ``make compare``).
SUGGESTED_KEYS = {"toyworld": {"positions": POSITIONS[1], "preserve_others": True,
                               "why": "the paper's subject-token edit does not remove the toy world's backgrounds; "
                                      "keying the end-of-text and padding positions too, and preserving the other "
                                      "backgrounds, does (README: the toy world; make compare)"}}
DEFAULT_UNRELATED = 20  # the page's default size of the specificity subset (the CLI's --unrelated for CPU runs)


def suggested_keys(model: str) -> dict:
    """The key positions and preserve option suggested for ``model`` (``SUGGESTED_KEYS``), with the reason; {} where
    the paper's defaults are the suggestion."""
    return SUGGESTED_KEYS.get(model, {})


def family_target(model: str, family: str, concept: str) -> str | None:
    """The target an edit of ``concept`` gets when none is named: its family's (in the model's prompt set), as
    ``python -m compute edit`` chooses it; None when the family is not in that prompt set."""
    try:
        return attribute_family(family, prompt_set_for(model)).target_for(concept)
    except (UserError, KeyError, OSError):
        return None


def preservation_size(model: str, concept: str) -> int | None:
    """How many preservation (unrelated) prompts an evaluation of an edit of ``concept`` on ``model`` can draw:
    the model's prompt set's prompts that do not name the concept; None when the set cannot be read."""
    try:
        return len(preservation_prompts(prompt_set_for(model), concept))
    except (UserError, KeyError, OSError):
        return None
