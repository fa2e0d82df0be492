"""An edit asked for on the Run-an-edit page, built into its specs (``contract.specs``) and launched as ``python -m
compute edit --spec FILE``; the evaluation of a stored edit (``eval-edit``); and the models such a job may name."""

from dataclasses import asdict, dataclass
from pathlib import Path

from locolab.contract import bounds
from locolab.contract.catalog.attributes import attribute_family, preservation_prompts, prompt_set_for
from locolab.contract.catalog.registry import MODELS
from locolab.contract.errors import UserError
from locolab.contract.names import EDIT_METHODS, SUBJECT_PADDING
from locolab.contract.specs import EditSpec, EvalSpec, edit_job_json, flag_of, options


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


DEFAULT_UNRELATED = 20  # the page's default size of the specificity subset (the CLI's --unrelated for CPU runs)


@dataclass(frozen=True)
class EditRequest:
    """The form's values: what it builds an ``EditSpec`` and an ``EvalSpec`` from (``contract.specs``: each value's
    default, bound and meaning; defaults here are theirs).

    Attributes:
        model: a registered model or one already in the store.
        family, concept, target, layers, lam, method, topk, positions, preserve_others: the edit (``EditSpec``;
            layers are used by the methods that edit chosen layers, λ by the closed forms, top-k by neuron).
        seeds, steps, size, unrelated: the evaluation (``EvalSpec``; steps and size None: the model's default).
    """

    model: str
    family: str
    concept: str
    target: str | None
    layers: tuple[int, ...]
    lam: float = EditSpec.lam
    method: str = EditSpec.method
    topk: int = EditSpec.topk
    seeds: tuple[int, ...] = EvalSpec.seeds
    steps: int | None = EvalSpec.steps
    size: int | None = EvalSpec.size
    unrelated: int = DEFAULT_UNRELATED
    positions: str | None = EditSpec.positions
    preserve_others: bool = EditSpec.preserve_others

    def to_dict(self) -> dict:
        return asdict(self)

    def specs(self, allowed_models: set[str], num_layers: int | None) -> tuple[EditSpec, EvalSpec]:
        """The edit and its evaluation, checked (the model must be one a job may name; layers within
        ``num_layers``).

        Raises:
            UserError: a value is out of bounds, or the model is neither registered nor in the store.
        """
        if self.model not in allowed_models:
            raise UserError(f"model {self.model!r} is neither registered, allowed at launch (--allow-model), nor a "
                            "model folder inside this artifact root")
        if len(self.seeds) > bounds.MAX_SEEDS:
            raise UserError(f"{len(self.seeds)} seeds: give at most {bounds.MAX_SEEDS}")
        method = EDIT_METHODS.get(self.method)
        edit = EditSpec(self.model, self.family, self.concept, self.method, target=self.target,
                        layers=tuple(sorted(self.layers)) if method and method.chosen_layers and (
                            self.layers or not method.all_by_default) else None,
                        lam=self.lam, topk=self.topk, positions=self.positions, preserve_others=self.preserve_others)
        if num_layers is not None:
            edit.check_layers(num_layers)
        return edit, EvalSpec(seeds=self.seeds, steps=self.steps, size=self.size, unrelated=self.unrelated)

    def job(self, root: str, allowed_models: set[str], num_layers: int | None) -> tuple[list[str], str]:
        """The arguments after ``python -m compute`` writing under ``root``, and the spec file they run (``edit
        --spec FILE``: ``jobs.launch`` writes it into the job's folder and adds ``--spec``).

        Raises:
            UserError: as ``specs``.
        """
        edit, evaluation = self.specs(allowed_models, num_layers)
        return ["edit", f"--artifacts={root}"], edit_job_json(edit, evaluation)


def eval_job(root: str, edit_id: str, evaluation: EvalSpec) -> list[str]:
    """The arguments after ``python -m compute`` that evaluate the stored edit ``edit_id`` under ``root`` with
    ``evaluation`` (each setting that differs from its default as its flag; ``--`` before the id, which stays a value
    whatever it starts with)."""
    flags = []
    for f in options(EvalSpec):
        value = getattr(evaluation, f.name)
        if value is True and value != f.default:  # a switch (``--attack``) takes no value
            flags.append(flag_of(f))
        elif value != f.default:
            flags.append(f"{flag_of(f)}={','.join(map(str, value)) if isinstance(value, tuple) else value}")
    return ["eval-edit", f"--artifacts={root}", *flags, "--", edit_id]


def unevaluated(records: list[dict]) -> list[dict]:
    """The stored edits without any evaluation (e.g. an edit job cancelled while evaluating: its edit is saved
    whole, weights and record, before the evaluation starts), newest first as the records are."""
    return [record for record in records if not record.get("evals")]


# Key options the project suggests per model where the paper's defaults fail on it (README, "The toy world"): the
# paper's subject-token edit does not remove the toy world's backgrounds; keying the end-of-text and padding positions
# too and preserving the other backgrounds does (``make demo``, ``make compare``).
SUGGESTED_KEYS = {"toyworld": {"positions": SUBJECT_PADDING, "preserve_others": True,
                               "why": "the paper's subject-token edit does not remove the toy world's backgrounds; "
                                      "keying the end-of-text and padding positions too, and preserving the other "
                                      "backgrounds, does (README: the toy world; make compare)"}}


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
