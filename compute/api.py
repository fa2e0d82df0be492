"""The notebook API: load a model (or wrap a pipeline you hold), localize a concept with LocoGen, generate with a window
swapped, edit the concept out and evaluate the edit. Everything here is the code the commands and the dashboard run;
results go to an artifact root (an in-memory one unless you give a folder or URL).

Usage::

    import locolab.compute as loco

    model = loco.load_model("tiny-sd1")       # or loco.Model.from_pipeline(pipe)
    result = loco.localize(model, "a house in the style of van gogh", "a painting", score_text="style of van gogh")
    edit = loco.loco_edit(model, "van gogh", family="style", layers=result.layers or [8, 9])
    with loco.applied(model, edit):
        images = loco.generate(model, ["a house in the style of van gogh"], seeds=[0])
"""

import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from PIL import Image
from tqdm.auto import tqdm

from locolab.compute.edit.closed_form import Edit
from locolab.compute.edit.evaluation import evaluate as evaluate_edit
from locolab.compute.edit.request import build_edit, dtype_name, make_request
from locolab.compute.edit.store import save_edit
from locolab.compute.generation import Case
from locolab.compute.generation import generate as generate_cases
from locolab.compute.grid import to_pil
from locolab.compute.models.loading import Model
from locolab.compute.runner import Context, run
from locolab.compute.scoring import default_scorer, load_scorer
from locolab.compute.settings import Settings
from locolab.contract import store, summaries
from locolab.contract.names import WINDOW
from locolab.contract.specs import Concept, EditSpec, EvalSpec, FamilySpec, StudySpec, Template, WindowSearch


def memory_root() -> str:
    """A fresh in-memory artifact root (fsspec ``memory://``), gone when the Python process ends."""
    return f"memory://locolab-{uuid.uuid4().hex[:12]}"


def _literal(text: str) -> str:
    # Sweep configs format prompts with ``{concept}``; a notebook's text is taken as written.
    return text.replace("{", "{{").replace("}", "}}")


@dataclass
class Localization:
    """A LocoGen localization run from a notebook, read back from its artifact root, with the statistics of
    docs/statistics.md.

    Attributes:
        root: the artifact root the run wrote (images, tables); open it in the dashboard if it is a folder.
        run_id: the run's id in that root.
        model: the model's name in the tables.
        windows: one row per window (``contract.summaries.localization``): mean score, both references and the one
            that normalized, the gap with its interval, whether the concept is measurable (and why not), the
            normalized drop with its bootstrap interval, whether it localizes and the verdict in words.
        concepts: one row per concept (``contract.summaries.concept_summary``): its gap, measurability, minimal
            localizing window (or the strongest window and why it falls short) and verdict.
        minimal: the minimal localizing window per concept (``contract.summaries.minimal_windows``); no row when no
            window localizes at ``threshold`` or the concept is not measurable.
        threshold: the fraction of the gap a window must remove, by the paired test (docs/statistics.md).
        level: the intervals' coverage.
        layer_table: the model's layers (index -> path, block, resolution), for labels.
    """

    root: str
    run_id: str
    model: str
    windows: pa.Table
    concepts: pa.Table
    minimal: pa.Table
    threshold: float
    level: float
    layer_table: dict[int, dict]

    @property
    def layers(self) -> list[int]:
        """The layers of the first concept's minimal localizing window; empty when nothing localizes."""
        if not self.minimal.num_rows:
            return []
        row = self.minimal.to_pylist()[0]
        return list(range(row["window_start"], row["window_start"] + row["window_size"]))

    def to_pandas(self):
        """``windows`` as a pandas DataFrame."""
        return self.windows.to_pandas()

    def heat_map(self, window_size: int | None = None):
        """The dashboard's heat map of windows of ``window_size`` layers (default: the smallest), as an Altair chart
        (a notebook draws it; ``.to_dict()`` is its Vega-Lite specification, ``.save("map.svg")`` exports it)."""
        import altair

        from locolab.contract import figures, queries

        loc = self.windows.drop_columns(["threshold", "localizes", "verdict"])
        scorer = loc["scorer_id"][0].as_py()
        size = window_size or min(loc["window_size"].to_pylist())
        cells = queries.layer_cells(loc, scorer, size, self.threshold)
        minimal = queries.minimal_windows(loc, scorer, self.threshold)
        num_layers = max([*self.layer_table, *(s + size - 1 for s in cells["window_start"].to_pylist())]) + 1
        spec = figures.heat_map(cells, minimal, self.layer_table, num_layers, size, self.threshold)
        return altair.Chart.from_dict({**spec, "width": figures.ROW_HEIGHT * num_layers})  # square cells

    def images(self, window: tuple[int, int] | None = None, kind: str = WINDOW) -> list[Image.Image]:
        """The run's stored images of one kind (``original``, ``target``, ``all-layers``) or of one window (start,
        end)."""
        con = store.Store(self.root).connect()
        query = "SELECT image_path FROM cases WHERE run_id = $run AND kind = $kind"
        params = {"run": self.run_id, "kind": kind}
        if window is not None:
            query += " AND window_start = $start AND window_size = $size"
            params.update(start=window[0], size=window[1] - window[0])
        paths = [path for (path,) in con.execute(query + " ORDER BY prompt, seed", params).fetchall()]
        return [Image.open(io.BytesIO(store.read_bytes(store.join(self.root, path)))) for path in paths]

    def __repr__(self) -> str:
        verdicts = "; ".join(f"{r['concept']}: {r['verdict']}" for r in self.concepts.to_pylist())
        return (f"Localization(run {self.run_id} of {self.model}: {self.windows.num_rows} windows; threshold "
                f"{self.threshold:g} on the {self.level:.0%} interval; {verdicts or 'no concept'})")


def localize(model: Model, prompt: str | Sequence[str], target: str, *, score_text: str, concept: str | None = None,
             family: str = "notebook", window_sizes: Sequence[int] = (1, 2, 3),
             window_search: int | WindowSearch | None = None, seeds: Sequence[int] = (0, 1, 2, 3),
             steps: int | None = None, guidance: float | None = None, size: int | None = None,
             scorer: str | None = None, threshold: float = summaries.DEFAULT_THRESHOLD,
             level: float = summaries.DEFAULT_LEVEL, min_gap: float = summaries.MIN_REFERENCE_GAP,
             root: str | None = None, batch_size: int = 8, progress: bool = True,
             name: str = "notebook") -> Localization:
    """LocoGen: for every window of consecutive layers, generate ``prompt`` with the window fed ``target``, score the
    images against ``score_text``, and summarize which windows remove the attribute, with intervals over the prompt x
    seed units (docs/statistics.md; a concept needs at least 8 units to be measurable). The study is a
    ``contract.specs.StudySpec`` run by ``compute.runner.run``, as ``locolab sweep`` runs a config.

    Usage: ``result = localize(model, "a house in the style of van gogh", "a painting", score_text="style of van
    gogh")``

    Args:
        model: a loaded model (``load_model`` or ``Model.from_pipeline``).
        prompt: the prompt that shows the attribute, or several.
        target: the attribute-free prompt fed to the window's layers.
        score_text: the CLIP text that measures the attribute.
        concept: the concept's name in the tables (default: ``score_text``).
        family: the attribute family's name in the tables.
        window_sizes, seeds: the windows and seeds of the sweep.
        window_search: instead of ``window_sizes``, search every size up to this maximum (an int: the default coarse
            sizes; or a ``WindowSearch``): the coarse sizes first, then the sizes below each concept's first
            localizing one (``compute/sweep/window_search.py``).
        steps, guidance, size: sampling settings (default: the model's).
        scorer: CLIP scorer name or directory (default: the model's, ``scoring.default_scorer``).
        threshold: fraction of the original-to-reference gap a window's interval must clear to localize.
        level: the intervals' coverage.
        min_gap: the smallest original-to-reference gap (CLIP-score units) a concept must clearly exceed.
        root: artifact root to write the run to (default: a fresh in-memory root).
        batch_size: images per pipeline call.
        progress: show a progress bar.
        name: the run's config name (its id is ``<name>-<digest of the settings>``).
    """
    spec = localization_spec(model, prompt, target, score_text=score_text, concept=concept, family=family,
                             window_sizes=window_sizes, window_search=window_search, seeds=seeds, steps=steps,
                             guidance=guidance, size=size, scorer=scorer, name=name)
    root = root or memory_root()
    run(spec, model, Context(root, batch_size=batch_size, progress=progress))
    con = store.Store(root).connect()
    windows = summaries.localization(con, threshold, [spec.run_id], level=level, min_gap=min_gap)
    layer_table = {layer.index: {"path": layer.path, "block": layer.block, "resolution": layer.resolution}
                   for layer in model.layers}
    return Localization(root, spec.run_id, model.name, windows, summaries.concepts_of(windows),
                        summaries.minimal_windows_of(windows), threshold, level, layer_table)


def localization_spec(model: Model, prompt: str | Sequence[str], target: str, *, score_text: str,
                      concept: str | None = None, family: str = "notebook", window_sizes: Sequence[int] = (1, 2, 3),
                      window_search: int | WindowSearch | None = None, seeds: Sequence[int] = (0, 1, 2, 3),
                      steps: int | None = None, guidance: float | None = None, size: int | None = None,
                      scorer: str | None = None, name: str = "notebook") -> StudySpec:
    """The study ``localize`` runs with these arguments (as ``localize``), checked."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    search = WindowSearch.up_to(window_search) if isinstance(window_search, int) else window_search
    return StudySpec(
        name=name, model=model.name,
        families=(FamilySpec(family, target, tuple(Template(_literal(p), None) for p in prompts),
                             (Concept(concept or score_text, None, _literal(score_text)),)),),
        window_sizes=search.coarse if search else tuple(window_sizes), window_search=search, seeds=tuple(seeds),
        scorer=scorer or default_scorer(model.spec), steps=steps, guidance=guidance, resolution=size,
        description="localize() from the notebook API")


def generate(model: Model, prompts: Sequence[str], seeds: Sequence[int] = (0,), *,
             window: tuple[int, int] | None = None, target: str | None = None, steps: int | None = None,
             guidance: float | None = None, size: int | None = None, batch_size: int = 8) -> list[Image.Image]:
    """Images of every prompt at every seed (prompt-major), optionally with ``window`` (half-open layer range) fed
    ``target``; with an edit applied (``applied``) they show the edited model.

    Usage: ``generate(model, ["a house in the style of van gogh"], seeds=[0, 1], window=(8, 10), target="a painting")``
    """
    if (window is None) != (target is None):
        raise ValueError("give both window and target, or neither")
    settings = Settings.defaults(model.spec, steps, guidance, size)
    cases = [Case(prompt, seed, window, target) for prompt in prompts for seed in seeds]
    images = np.concatenate(list(generate_cases(model, cases, settings, batch_size)))
    return [to_pil(image) for image in images]


def make_edit(model: Model, concept: str, method: str = "loco", *, family: str = "style", root: str | None = None,
              **options) -> Edit:
    """Any edit method on ``model`` (``loco``, ``all-layers``, ``neuron``, ``diffquickfix`` (the published recipe),
    ``diffquickfix-family`` (ours)); ``options`` are the fields of ``contract.specs.EditSpec`` (``target``,
    ``layers``, ``lam``, ``prompts``, ``positions``, ``preserve_others``, ``topk``, ``position``, ``selection``,
    ``prompt_set``, ...), each with its default and meaning there. The weights are computed in the model's dtype.
    Saved under ``root`` when given (as ``locolab edit`` does).

    Usage: ``edit = make_edit(model, "van gogh", layers=[8, 9], lam=0.1)``
    """
    spec = edit_spec(model, concept, method, family=family, **options)
    edit = build_edit(model, make_request(spec, dtype_name(model), root, num_layers=len(model.layers),
                                     stream=model.arch.stream))
    if root is not None:
        save_edit(root, edit)
    return edit


def edit_spec(model: Model, concept: str, method: str = "loco", *, family: str = "style", **options) -> EditSpec:
    """The ``EditSpec`` that ``make_edit`` makes with these arguments (lists given as lists are fine); an unknown
    option is refused with one line."""
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in options.items()}
    return EditSpec.from_dict({"model": model.name, "family": family, "concept": concept, "method": method,
                               "dtype": dtype_name(model), **values})


def loco_edit(model: Model, concept: str, target: str | None = None, *, layers: Sequence[int], family: str = "style",
              **options) -> Edit:
    """LocoEdit: the closed-form edit of the text key/value projections of ``layers`` so that ``concept`` reads as
    ``target`` (default: the family's target). Options as ``make_edit``.

    Usage: ``edit = loco_edit(model, "van gogh", layers=[8, 9])``
    """
    return make_edit(model, concept, "loco", family=family, target=target, layers=layers, **options)


def neuron_edit(model: Model, concept: str, *, layers: Sequence[int], family: str = "style", **options) -> Edit:
    """The neuron edit: hold the ``topk`` units of each key/value matrix of ``layers`` (``selection="pooled"``: of all
    of them together) that best tell the concept's prompts from neutral ones at their neutral mean. Options as
    ``make_edit``.

    Usage: ``edit = neuron_edit(model, "van gogh", layers=[8, 9], topk=50)``
    """
    return make_edit(model, concept, "neuron", family=family, layers=layers, **options)


def evaluate(model: Model, edit: Edit, seeds: Sequence[int] = EvalSpec.seeds, *, root: str | None = None,
             progress: bool = True, **options) -> dict:
    """Efficacy, generalization and specificity of ``edit`` (fact edits: the old and the new fact): the same prompts
    and seeds before and after it, scored with CLIP (``edit_eval.evaluate``); images and scores go to ``root``
    (default: in memory). ``options`` are the fields of ``contract.specs.EvalSpec`` (``scorer``, ``steps``,
    ``guidance``, ``size``, ``batch_size``, ``unrelated``: a random subset of that many preservation prompts (default:
    all, as the paper), ``other_concepts``, ``attack`` with ``attack_steps`` and ``attack_tokens``: the recovery
    attack). Returns the summary.

    Usage: ``summary = evaluate(model, edit, seeds=[0, 1])``
    """
    spec = EvalSpec.from_dict({"seeds": tuple(seeds), **options})
    settings = Settings.defaults(model.spec, spec.steps, spec.guidance, spec.size)
    scorer = load_scorer(spec.scorer or default_scorer(model.spec), device=model.device)
    with tqdm(unit="img", disable=not progress, desc=f"evaluating {edit.edit_id}") as bar:
        def count(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        return evaluate_edit(model, edit, scorer, settings, list(spec.seeds), root or memory_root(), spec.batch_size,
                             spec.unrelated, spec.other_concepts, progress=count,
                             attack_steps=spec.attack_steps if spec.attack else None, attack_tokens=spec.attack_tokens)
