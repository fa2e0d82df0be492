"""The names that compute and the dashboard share: attribute families, localization methods and site components,
edit methods and their options, evaluation groups and metrics, and the files of an edit and of a job (no torch here).
Each name is defined here once; both sides import it."""

from dataclasses import dataclass

# Attribute families, in the order every view and command lists them: the LocoGen paper's three and colour, then the
# categories of the DiT paper ("Localizing Knowledge in Diffusion Transformers").
FAMILIES = ("style", "objects", "facts", "color", "dit-style", "places", "celebrities", "animals", "characters")

# Localization methods, as stored in ``cases.method`` / ``scores.method`` / ``runs.method``.
LOCOGEN = "locogen"
TRACE = "trace"  # a causal-tracing run (runs.method); its rows say which sites were restored:
TRACE_UNET = "trace-unet"
TRACE_TEXT = "trace-text"
# The DiT paper's localization: each site's attention contribution of the concept's tokens, then its top-k
# intervention. Its rows: the original and target references (kinds ``original``/``target``), each site's contribution
# (its own table, ``contributions``, written in parts named ``contribution-<case_id>``) and the images with the k
# dominant sites fed the target (kind ``top-k``, the k sites in ``blocks``).
ATTENTION_CONTRIBUTION = "attention-contribution"
CONTRIBUTION = "contribution"
TOP_K = "top-k"

# LocoGen's case kinds (``cases.kind``): the original prompt, the plain target prompt, the all-layers swap (every layer
# fed the target; the reference where text also enters outside cross-attention) and a window of layers swapped.
ORIGINAL, TARGET, ALL_LAYERS, WINDOW = "original", "target", "all-layers", "window"
# The reference a run's drops are normalized by (``runs.reference``): one of the two reference kinds.
REFERENCES = (TARGET, ALL_LAYERS)

# The built-in CLIP scorer with random weights (for testing the machinery): its scores mean nothing, so no concept it
# scores is measurable.
RANDOM_SCORER = "tiny-clip"

# Site components (``layers.component``, ``cases.component``). LocoGen's layers are the cross-attention ones.
CROSS_ATTENTION = "cross-attention"
TEXT_ENCODER = "text-encoder"
TRACE_COMPONENTS = (CROSS_ATTENTION, "self-attention", "feed-forward", "resnet")  # UNet sites causal tracing restores
COMPONENTS = (*TRACE_COMPONENTS, TEXT_ENCODER)

# Key positions: the last subject token alone, or with every later (end-of-text, padding) position.
SUBJECT, SUBJECT_PADDING = "subject", "subject+padding"
POSITIONS = (SUBJECT, SUBJECT_PADDING)
# Neuron edits: the top k units of each key/value matrix (the official code's), or of all of them together (ours).
PER_MATRIX, POOLED = "per-matrix", "pooled"
NEURON_SELECTIONS = (PER_MATRIX, POOLED)


@dataclass(frozen=True)
class EditMethod:
    """One edit method (``EDIT_METHODS``).

    Attributes:
        name: as stored in an edit's record and given to ``--method``.
        closed_form: solves the ridge closed form (takes λ, key positions and preserve-others).
        chosen_layers: edits the UNet layers the user chooses (``--layers`` / ``--from-run``).
        all_by_default: with ``chosen_layers``, edits every layer when none are chosen (UCE, TIME).
        text_encoder: edits text-encoder layer 0 instead of UNet layers (the DiffQuickFix recipes).
        holds_units: holds ranked key/value units at their neutral means instead of changing weights (neuron).
        positions: its paper's key positions (closed forms).
        published: DiffQuickFix's published recipe: its own augmented prompts, the bias counted in the values.
        lam: its paper's ridge weight λ (closed forms; ``--lambda`` overrides it).
        help: what it does, in a phrase.
    """

    name: str
    closed_form: bool
    chosen_layers: bool
    text_encoder: bool = False
    holds_units: bool = False
    positions: str | None = None
    published: bool = False
    all_by_default: bool = False
    lam: float | None = None
    help: str = ""


# Edit methods. DiffQuickFix comes in two recipes: the published one (``diffquickfix``: the predecessor's notebook)
# and ours (``diffquickfix-family``: the family's prompts to one target, the bias counted once); README says more.
# UCE (Gandikota et al., WACV 2024; rohitgandikota/unified-concept-editing) weighs erased and preserved keys and
# defaults to λ = 0.5 (its ``--lamb``); TIME (Orgad et al., ICCV 2023) to λ = 0.1 (docs/method.md §4.3).
# A new method is one row here (and its computation in compute/edit/request.py).
PAPER_LAMBDA = 0.01  # the ridge weight of LocoEdit's and DiffQuickFix's official code
EDIT_METHODS = {m.name: m for m in (
    EditMethod("loco", True, True, positions=SUBJECT, lam=PAPER_LAMBDA,
               help="LocoEdit: the closed form on the chosen layers"),
    EditMethod("all-layers", True, False, positions=SUBJECT, lam=PAPER_LAMBDA, help="the closed form on every layer"),
    EditMethod("uce", True, True, positions=SUBJECT, all_by_default=True, lam=0.5,
               help="UCE: erase (to the target) and preserve (the family's other concepts and the preservation set) "
                    "in one weighted closed form, on every layer or the chosen ones"),
    EditMethod("time", True, True, all_by_default=True, lam=0.1,
               help="TIME: every position of the concept's prompts (itself, 'a photo of / an image of / a picture of' "
                    "it) to the same prompts of the target, on every layer or the chosen ones"),
    EditMethod("esd-x", False, True, all_by_default=True,
               help="ESD-x: fine-tune to_k/to_v of every layer or the chosen ones with ESD's negative-guidance "
                    "objective (SD-1.x/2.x)"),
    EditMethod("neuron", False, True, holds_units=True,
               help="hold the top-k key/value units of the chosen layers at their neutral means"),
    EditMethod("diffquickfix", True, False, text_encoder=True, positions=SUBJECT_PADDING, published=True,
               lam=PAPER_LAMBDA,
               help="the closed form on text-encoder layer 0, the predecessor's published recipe"),
    EditMethod("diffquickfix-family", True, False, text_encoder=True, positions=SUBJECT_PADDING, lam=PAPER_LAMBDA,
               help="ours: the family's prompts to one target, the bias counted once"),
)}
METHODS = tuple(EDIT_METHODS)
CHOSEN_LAYERS = tuple(m.name for m in EDIT_METHODS.values() if m.chosen_layers)
QUICKFIX_RECIPES = tuple(m.name for m in EDIT_METHODS.values() if m.text_encoder)
CLOSED_FORM = tuple(m.name for m in EDIT_METHODS.values() if m.closed_form)
# LocoEdit on joint-attention blocks (FLUX.1, SD3), several blocks at once: each block's keys read through the blocks
# before it already edited (the default: the keys the edited model's blocks actually read), or all from the unedited
# model (one key generation instead of one per block; docs/method.md §4).
KEY_READINGS = ("sequential", "parallel")
# Where a model's weights wait while it generates (``compute.models.memory``): the first mode, auto, picks one of the
# others by the device's free memory.
OFFLOADS = ("auto", "none", "model", "group")

# An edit's folder ``<root>/edits/<edit_id>/``: its record, its tensors, its evaluation summary and images.
EDITS_DIR = "edits"
EDIT_RECORD = "edit.json"
EDIT_WEIGHTS = "weights.safetensors"
EDIT_UNITS = "units.safetensors"
EDIT_SUMMARY = "eval.json"
# Evaluations, one folder each, named by a digest of their settings: ``edits/<edit_id>/evals/<eval_id>/`` holds the
# summary (``eval.json``) and the images; its scores are ``tables/edit_scores/part-<edit_id>-<eval_id>.parquet``.
# (Edits evaluated before evaluations had ids keep ``edits/<edit_id>/eval.json`` and ``eval/``, eval_id NULL.)
EDIT_EVALS = "evals"
# The settings that identify an evaluation (its ``eval_id`` is a digest of them), in display order.
EVAL_SETTINGS = ("scorer_id", "seeds", "steps", "guidance", "height", "width", "unrelated", "other_concepts")
# (The recovery attack's settings, ``attack``, join the digest only where an attack ran: compute/edit/evaluation.py.)

# Prompt groups of an edit's evaluation (``edit_scores.group``), in display order, with what each measures.
EVAL_GROUPS = {
    "efficacy": "efficacy (the edit's own prompts)",
    "generalization": "generalization (held-out prompts)",
    "robustness": "robustness (paraphrases, misspellings, indirect references)",
    "attack": "recovery attack (the concept's prompts with learned soft tokens, after the edit)",
    "unrelated": "specificity (unrelated prompts)",
    "other_concepts": "specificity (the family's other concepts)",
    "target": "target reference",
    "new_fact": "fact edits: the edit's own and held-out prompts scored against the new fact",
    "new_fact_reference": "fact edits: the target prompt scored against the new fact",
}
# Summary metrics of ``eval.json``, in display order, with what each means (compute/edit/evaluation.py
# ``summarize``). Two kinds of efficacy number that must not be confused: the score drop (how far the mean score moved
# toward the target reference) and the rates (how many prompts / images ended below it).
EVAL_METRICS = {
    "efficacy_score_drop": "efficacy, normalized score drop: (before − after) / (before − target reference) of the "
                           "mean score on the edit's own prompts; 1 = as unlike the concept as the target prompt, "
                           "0 = no change",
    "efficacy_prompt_rate": "efficacy, prompt rate: fraction of the edit's own prompts whose seed-mean score fell "
                            "below the target reference (about 0.5 when the images look as unlike the concept as the "
                            "target prompt's: they scatter around its mean)",
    "efficacy_image_rate": "efficacy, image rate: fraction of the edit's own images (prompt × seed) scoring below the "
                           "target reference",
    "generalization_score_drop": "generalization, normalized score drop on held-out prompts with the concept",
    "generalization_prompt_rate": "generalization, prompt rate: fraction of held-out prompts below the target "
                                  "reference",
    "generalization_image_rate": "generalization, image rate: fraction of held-out images below the target reference",
    "specificity": "specificity: unrelated prompts' mean score after / before (1 = kept)",
    "other_concepts_retained": "specificity: the family's other concepts' mean score, after / before (1 = kept)",
    "new_fact_gain": "fact edits: the new fact's score rise, (after − before) / (target prompt − before)",
}
# Summaries written before the metrics were renamed: old name -> current name (same definition); ``renamed_metrics``.
EVAL_RENAMED = {"efficacy": "efficacy_prompt_rate", "efficacy_before": "efficacy_prompt_rate_before",
                "efficacy_drop": "efficacy_score_drop", "generalization": "generalization_prompt_rate",
                "generalization_before": "generalization_prompt_rate_before",
                "generalization_drop": "generalization_score_drop"}

# A dashboard job's folder ``<root>/jobs/<job_id>/``: the command's ``--status-file`` and its keys.
JOBS_DIR = "jobs"
JOB_STATUS = "status.json"
JOB_STATUS_KEYS = ("command", "stage", "done", "total", "samples", "result", "error")


def eval_folder(edit_id: str, eval_id: str | None) -> str:
    """The folder of one evaluation of an edit, relative to the root (None: an evaluation from before ids)."""
    return f"{EDITS_DIR}/{edit_id}" if eval_id is None else f"{EDITS_DIR}/{edit_id}/{EDIT_EVALS}/{eval_id}"


def renamed_metrics(summary: dict) -> dict:
    """An edit evaluation's summary under the current metric names (``EVAL_RENAMED``; newer summaries unchanged)."""
    return {EVAL_RENAMED.get(key, key): value for key, value in summary.items()}
