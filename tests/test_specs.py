"""The typed specs (``contract.specs``): every option is defined once and reaches its spec field from each entry point
(command line, sweep config, dashboard form, notebook API), specs round-trip to JSON, the layer count is checked with
the same one line everywhere, and what a study records or an edit's id depends on comes from the spec."""

import contextlib
import dataclasses
import io
import json

import pytest
import yaml
from sweep_helpers import SMALL, write_config

from locolab.compute import api
from locolab.compute.cli import build_parser, main
from locolab.compute.cli.contribution import contribution_config
from locolab.compute.cli.edit import specs
from locolab.compute.cli.options import spec_values
from locolab.compute.cli.trace import trace_config
from locolab.compute.edit.request import edit_id, make_request
from locolab.compute.plan import build_plan
from locolab.compute.settings import Settings
from locolab.compute.sweep.config import CONFIGS_DIR, load_config, parse_config
from locolab.contract.catalog.registry import MODELS
from locolab.contract.errors import UserError
from locolab.contract.specs import (
    ContributionSpec,
    EditSpec,
    EvalSpec,
    StudySpec,
    TraceSpec,
    WindowSearch,
    edit_job_json,
    flag_of,
    options,
    read_edit_job,
)
from locolab.contract.store import Store
from locolab.dashboard.edit_form import EditRequest

REQUIRED = {"model": "tiny-sd1", "family": "style", "concept": "van gogh"}
# A value other than the default for every edit option, and what else the spec then needs.
EDIT_VALUES = {
    "method": ("neuron", {"layers": (8, 9)}), "target": ("a sketch", {"layers": (8, 9)}),
    "layers": ((4, 5), {}), "from_run": ("run-x", {}), "threshold": (0.7, {"from_run": "run-x"}),
    "lam": (0.2, {"layers": (8, 9)}), "prompts": (("a van gogh", "van gogh's house"), {"layers": (8, 9)}),
    "topk": (7, {"method": "neuron", "layers": (8, 9)}),
    "selection": ("pooled", {"method": "neuron", "layers": (8, 9)}),
    "position": (5, {"method": "neuron", "layers": (8, 9)}),
    "positions": ("subject+padding", {"layers": (8, 9)}), "preserve_others": (True, {"layers": (8, 9)}),
    "prompt_set": ("toyworld", {"layers": (8, 9)}), "dtype": ("float16", {"layers": (8, 9)}),
    "key_reading": ("parallel", {"layers": (8, 9)}),
    "concepts": (("monet", "salvador dali"), {"layers": (8, 9)}),
    "iterations": (5, {"method": "esd-x"}), "lr": (1e-4, {"method": "esd-x"}),
    "negative_guidance": (2.0, {"method": "esd-x"}), "seed": (3, {"method": "esd-x"}),
    "erase_scale": (2.0, {"method": "uce"}), "preserve_scale": (0.5, {"method": "uce"}),
}
EVAL_VALUES = {"seeds": (3, 4), "steps": 2, "guidance": 1.5, "size": 32, "scorer": "toyworld-clip", "unrelated": 5,
               "other_concepts": 0, "batch_size": 2, "attack": True, "attack_steps": 3, "attack_tokens": 2}
EVAL_NEEDS = {"attack_steps": {"attack": True}, "attack_tokens": {"attack": True}}  # what an option needs beside it
# The dashboard form's fields, by spec field (the rest of its values are the model, family and concept).
FORM_EDIT = ("target", "layers", "lam", "method", "topk", "positions", "preserve_others")
FORM_EVAL = ("seeds", "steps", "size", "unrelated")


def argv(spec_type, values: dict) -> list[str]:
    """The command line that sets ``values`` (field -> value) through the options generated from ``spec_type``."""
    out = []
    for f in options(spec_type):
        if f.name not in values:
            continue
        value = values[f.name]
        if value is True:
            out.append(flag_of(f))
        elif isinstance(value, tuple) and isinstance(value[0], str) and not f.metadata["comma"]:
            out += [f"{flag_of(f)}={item}" for item in value]
        elif isinstance(value, tuple):
            out.append(f"{flag_of(f)}={','.join(map(str, value))}")
        else:
            out.append(f"{flag_of(f)}={value}")
    return out


def test_every_option_of_the_walk_is_an_option_of_its_spec():
    assert set(EDIT_VALUES) == {f.name for f in options(EditSpec)} - set(REQUIRED)
    assert set(EVAL_VALUES) == {f.name for f in options(EvalSpec)}
    for name, (value, _) in EDIT_VALUES.items():
        assert value != getattr(EditSpec, name, None), name
    for name, value in EVAL_VALUES.items():
        assert value != getattr(EvalSpec, name), name


@pytest.mark.parametrize("name", sorted(EDIT_VALUES))
def test_each_edit_option_reaches_its_field_from_the_command_line_the_api_and_the_form(load, name):
    value, needs = EDIT_VALUES[name]
    values = {**needs, name: value}
    expected = EditSpec(**REQUIRED, **values)

    args = build_parser().parse_args(["edit", *argv(EditSpec, {**REQUIRED, **values})])
    assert specs(args) == (expected, None)
    if name != "dtype":  # the API computes in the model's dtype
        model = load("tiny-sd1")
        options_ = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if k != "method"}
        built = api.edit_spec(model, REQUIRED["concept"], values.get("method", "loco"), family="style", **options_)
        assert built == dataclasses.replace(expected, dtype="float32")
    if name in FORM_EDIT:
        form = EditRequest(**REQUIRED, target=values.get("target"), layers=values.get("layers", ()),
                           **{k: v for k, v in values.items() if k not in ("target", "layers")})
        assert form.specs(set(MODELS), 16)[0] == expected


@pytest.mark.parametrize("name", sorted(EVAL_VALUES))
def test_each_evaluation_option_reaches_its_field_from_the_command_line_and_the_form(name):
    values = {**EVAL_NEEDS.get(name, {}), name: EVAL_VALUES[name]}
    expected = EvalSpec(**values)

    for command in (["eval-edit", "some-edit"], ["edit", *argv(EditSpec, {**REQUIRED, "layers": (8, 9)}), "--eval"]):
        args = build_parser().parse_args([*command, *argv(EvalSpec, values)])
        assert EvalSpec(**spec_values(EvalSpec, args)) == expected
    if name in FORM_EVAL:
        form = EditRequest(**REQUIRED, target=None, layers=(8, 9), **{name: EVAL_VALUES[name]})
        # The form's own default subset of unrelated prompts (20, for CPU runs) differs from the CLI's (all).
        assert form.specs(set(MODELS), 16)[1] == dataclasses.replace(expected, unrelated=form.unrelated)


STUDY_VALUES = {  # study field: (config key and value, notebook argument and value)
    "window_sizes": (("window_sizes", [4, 5]), ("window_sizes", [4, 5])),
    "seeds": (("seeds", [7]), ("seeds", [7])),
    "steps": (("steps", 3), ("steps", 3)),
    "guidance": (("guidance", 2.5), ("guidance", 2.5)),
    "resolution": (("resolution", 48), ("size", 48)),
    "scorer": (("scorer", "toyworld-clip"), ("scorer", "toyworld-clip")),
    "window_search": (("window_search", {"max_size": 5}), ("window_search", 5)),
    "name": (("name", "other"), ("name", "other")),
    "batch_size": (("batch_size", 3), None),
    "description": (("description", "why"), None),
}


@pytest.mark.parametrize("field", sorted(STUDY_VALUES))
def test_each_study_setting_reaches_its_field_from_a_config_and_the_api(load, field):
    (key, value), notebook = STUDY_VALUES[field]
    raw = {**SMALL, key: value}
    if key == "window_search":
        del raw["window_sizes"]
    config = parse_config(raw)
    expected = WindowSearch.up_to(5) if field == "window_search" else (
        tuple(value) if isinstance(value, list) else value)
    assert getattr(config, field) == expected
    if notebook:
        name, argument = notebook
        spec = api.localization_spec(load("tiny-sd1"), "a house", "a painting", score_text="house",
                                     **{name: argument})
        assert getattr(spec, field) == expected


SECTION_VALUES = {  # (config section, field): (config value, command-line arguments, spec value)
    ("trace", "noise"): (1.5, ["--noise", "1.5"], 1.5),
    ("trace", "components"): (["resnet", "feed-forward"], ["--components", "resnet,feed-forward"],
                              ("resnet", "feed-forward")),
    ("trace", "text_encoder"): (False, ["--no-text-encoder"], False),
    ("contribution", "top_k"): ([2, 3], ["--top-k", "2,3"], (2, 3)),
    ("contribution", "swap_pooled"): (True, ["--swap-pooled"], True),
}


def test_every_trace_and_contribution_option_is_walked():
    assert set(SECTION_VALUES) == {("trace", f.name) for f in options(TraceSpec)} | {
        ("contribution", f.name) for f in options(ContributionSpec)}


@pytest.mark.parametrize("section, name", sorted(SECTION_VALUES))
def test_each_trace_and_contribution_setting_reaches_its_field_from_a_config_and_the_command_line(tmp_path, section,
                                                                                                  name):
    value, arguments, expected = SECTION_VALUES[section, name]
    assert getattr(getattr(parse_config({**SMALL, section: {name: value}}), section), name) == expected
    path = write_config(tmp_path / "c.yaml")
    build = trace_config if section == "trace" else contribution_config
    assert getattr(getattr(build(build_parser().parse_args([section, path, *arguments])), section), name) == expected


@pytest.mark.parametrize("path", ["tiny-sd1.yaml", "toyworld.yaml", "style-sd-1.4.yaml"])
def test_a_study_spec_round_trips_to_json(path, tmp_path):
    config = load_config(CONFIGS_DIR / path)
    assert StudySpec.from_json(config.to_json()) == config
    assert StudySpec.from_json(config.to_json()).run_id == config.run_id
    search = load_config(write_config(tmp_path / "s.yaml", drop="window_sizes", window_search={"max_size": 4}))
    assert StudySpec.from_json(search.to_json()) == search


def test_edit_specs_round_trip_and_refuse_unknown_keys_with_one_line():
    spec = EditSpec(**REQUIRED, layers=(8, 9), lam=0.5, prompts=("a van gogh",))
    assert EditSpec.from_json(spec.to_json()) == spec
    assert read_edit_job(edit_job_json(spec, EvalSpec(seeds=(1,)))) == (spec, EvalSpec(seeds=(1,)))
    with pytest.raises(UserError) as refused:
        EditSpec.from_json(json.dumps({**spec.to_dict(), "lamda": 0.1}))
    assert str(refused.value).startswith("edit spec: unknown key 'lamda'; use model, family, concept, method")
    with pytest.raises(UserError, match="study spec: unknown key 'colour'"):
        StudySpec.from_dict({**load_config(CONFIGS_DIR / "tiny-sd1.yaml").to_dict(), "colour": 1})
    with pytest.raises(UserError, match="^edit spec: missing 'concept'; add it$"):
        EditSpec.from_dict({"model": "tiny-sd1", "family": "style"})


@pytest.mark.parametrize("values, message", [
    ({"lam": 0.0}, "--lambda: expected a number > 0 (finite), got 0.0"),
    ({"lam": float("nan")}, "--lambda: expected a number > 0 (finite), got nan"),
    ({"layers": (8, 8)}, "--layers: (8, 8) lists a value twice; list each once"),
    ({"layers": (8,), "from_run": "r"}, "give --layers or --from-run, not both"),
    ({"method": "neuron"}, "--method neuron needs --layers (e.g. 8,9) or --from-run RUN_ID"),
    ({"method": "all-layers", "layers": (1,)}, "--method all-layers edits every layer: drop --layers/--from-run"),
    ({"method": "neuron", "layers": (1,), "positions": "subject"}, "closed-form methods only, not --method neuron"),
    ({"method": "loco!", "layers": (1,)},
     "--method: expected one of loco, all-layers, uce, time, esd-x, neuron, diffquickfix"),
])
def test_an_edit_spec_checks_itself_once_with_the_flag_of_the_value(values, message):
    with pytest.raises(UserError) as refused:
        EditSpec(**REQUIRED, **values)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_the_edit_id_holds_the_dtype_and_the_record_keeps_the_spec(load, tmp_path):
    spec = EditSpec(**REQUIRED, layers=(8, 9), lam=0.2)
    assert edit_id(make_request(spec, "float32")) != edit_id(make_request(spec, "float16"))
    assert edit_id(make_request(spec, "float32")) == edit_id(make_request(spec, "float32"))

    edit = api.make_edit(load("tiny-sd1"), "van gogh", layers=[8, 9], lam=0.2, root=str(tmp_path / "api"))
    assert (edit.meta["spec"], edit.meta["lambda"], edit.meta["dtype"]) == (
        dataclasses.replace(spec, dtype="float32").to_dict(), 0.2, "float32")
    with pytest.raises(UserError, match="make_edit|unknown key 'lamda'"):
        api.make_edit(load("tiny-sd1"), "van gogh", layers=[8, 9], lamda=0.2)


@pytest.mark.slow
def test_an_edit_runs_from_a_spec_file_as_the_dashboard_launches_it(tmp_path):
    spec = EditSpec(**REQUIRED, layers=(8, 9), lam=0.2, dtype="float32")
    path = tmp_path / "spec.json"
    path.write_text(edit_job_json(spec))
    root = tmp_path / "root"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["edit", f"--spec={path}", f"--artifacts={root}", "--device=cpu"]) == 0
    (folder,) = (root / "edits").iterdir()
    record = json.loads((folder / "edit.json").read_text())
    assert EditSpec.from_dict(record["spec"]) == spec and record["edit_id"] == folder.name
    assert main(["edit", f"--spec={path}", "--lambda=0.3", f"--artifacts={root}"]) == 2


def test_localize_refuses_windows_wider_than_the_model_with_the_clis_line(load, tmp_path):
    with pytest.raises(UserError) as refused:
        api.localize(load("tiny-sd1"), "a house in the style of van gogh", "a painting",
                     score_text="style of van gogh", window_sizes=[20], progress=False)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["sweep", write_config(tmp_path / "c.yaml", window_sizes=[20]), "--dry-run"]) == 2
    assert err.getvalue() == f"error: {refused.value}\n"
    assert str(refused.value) == ("window_sizes[0]: 20 exceeds the 16 cross-attention layers of tiny-sd1; use sizes "
                                  "from 1 to 16")


def test_a_study_that_changes_only_its_score_text_plans_other_cases_on_the_same_images(tmp_path):
    settings = Settings.defaults(MODELS["tiny-sd1"], 2, 7.5, 32)
    first = build_plan(load_config(write_config(tmp_path / "a.yaml")), settings, 16)
    style = {**SMALL["families"]["style"], "score_text": "painting by {concept}"}
    second = build_plan(load_config(write_config(tmp_path / "b.yaml", families={**SMALL["families"],
                                                                                "style": style})), settings, 16)
    ids = [{c.case_id for u in plan for c in u.cases if c.family == "style"} for plan in (first, second)]
    keys = [{c.image_key for u in plan for c in u.cases} for plan in (first, second)]
    assert not ids[0] & ids[1] and keys[0] == keys[1]
    assert {u.unit_id for u in first if u.family == "style"}.isdisjoint(u.unit_id for u in second)
    assert [u.unit_id for u in first if u.family == "color"] == [u.unit_id for u in second if u.family == "color"]


@pytest.mark.slow  # two small sweeps on tiny-sd1 (the second scores the first's images)
def test_a_sweep_that_changes_only_its_score_text_scores_its_images(tmp_path):
    root = tmp_path / "root"
    small = {**SMALL, "families": {"style": SMALL["families"]["style"]}}
    first = write_config(tmp_path / "a.yaml", **small)
    style = {**small["families"]["style"], "score_text": "painting by {concept}"}
    second = write_config(tmp_path / "b.yaml", families={"style": style})
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["sweep", first, f"--artifacts={root}", "--no-progress"]) == 0
        assert main(["sweep", second, f"--artifacts={root}", "--no-progress"]) == 0
        assert main(["summary", second, f"--artifacts={root}"]) == 0
    run_id = load_config(second).run_id
    assert f"{run_id}: 2 units run, 0 already done; 0 images generated" in out.getvalue()
    texts = Store(root).connect().execute("SELECT DISTINCT score_text FROM scores WHERE run_id = ? ORDER BY 1",
                                          [run_id]).fetchall()
    assert texts == [("painting by monet",), ("painting by van gogh",)]


@pytest.mark.slow  # a first pass of two window sizes on tiny-sd1
def test_localize_runs_a_window_search_and_records_its_spec(load):
    result = api.localize(load("tiny-sd1"), "a house in the style of van gogh", "a painting",
                          score_text="style of van gogh", window_search=2, seeds=[0], steps=1, size=32,
                          progress=False)
    sizes = sorted(set(result.windows["window_size"].to_pylist()))
    assert sizes == [1, 2]
    (recorded,) = Store(result.root).connect().execute("SELECT config_json FROM runs").fetchall()
    config = json.loads(recorded[0])
    spec = StudySpec.from_dict({k: v for k, v in config.items() if k in {f.name for f in
                                                                          dataclasses.fields(StudySpec)}})
    assert spec.window_search == WindowSearch(2, (1, 2)) and spec.run_id == result.run_id


def test_yaml_window_search_and_notebook_window_search_are_one_spec(tmp_path):
    raw = yaml.safe_load(open(write_config(tmp_path / "s.yaml", drop="window_sizes", window_search={"max_size": 6})))
    assert parse_config(raw).window_search == WindowSearch.up_to(6) == WindowSearch(6, (1, 2, 3, 5, 6))
