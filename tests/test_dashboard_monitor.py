"""The job monitor and the Localize page's form: the time-left estimate on a recorded job, the captions, the
shell-quoted command, the jobs of a root with who launched them and what they produced, the evaluation of a stored
edit, and a localization request built into its study spec and costed as the sweep's dry run costs it."""

import json
import shlex
import time

import pytest
from dashboard_fixtures import MAIN
from streamlit import config
from streamlit.testing.v1 import AppTest

from locolab.compute.cli import build_parser
from locolab.compute.cli.options import spec_values
from locolab.contract.errors import UserError
from locolab.contract.names import JOB_STATUS
from locolab.contract.specs import Concept, EvalSpec, FamilySpec, StudySpec, Template
from locolab.dashboard import job_progress, jobs
from locolab.dashboard.edit_form import eval_job, unevaluated
from locolab.dashboard.job_view import job_rows, result_links
from locolab.dashboard.localize_form import LocalizeRequest, catalog_prompts, cost, parse_prompts, parse_sizes
from locolab.dashboard.root import WRITES_ENV

config.set_option("client.showErrorDetails", "full")

# Recorded: the `samples` of `locolab --status-file=... edit --model=tiny-sd1 --family=style --concept="van gogh"
# --layers=8,9 --eval --seeds=0,1,2,3 --steps=6 --size=32 --unrelated=12` (232 before/after images in batches of 8)
# on a busy 2-core machine, as seconds from the evaluation's start.
RECORDED = [(0.0, 0), (2.4, 8), (5.5, 16), (8.5, 24), (12.3, 32), (16.3, 40), (20.2, 48), (25.1, 56), (28.1, 64),
            (30.7, 72), (32.9, 80), (35.2, 88), (37.4, 96), (39.9, 104), (42.5, 112), (44.7, 116), (47.6, 124),
            (50.7, 132), (53.7, 140), (56.8, 148), (63.4, 156), (70.3, 164), (77.9, 172), (86.4, 180), (94.9, 188),
            (101.8, 196), (108.0, 204), (115.7, 212), (123.3, 220), (130.2, 228), (133.2, 232)]
RECORDED_TOTAL = 232


def naive_left(samples, total, now):
    """The estimate the page showed before: time so far × items left / items done."""
    done = samples[-1][1]
    return (now - samples[0][0]) * (total - done) / done


def polled(estimate, samples, total):
    """(mean absolute error in s, total upward movement in s) of ``estimate(seen, total, now)`` polled every second
    from the first completed step to the last, against the true time left."""
    end, errors, shown = samples[-1][0], [], []
    for now in range(int(samples[1][0]) + 1, int(end)):
        left = estimate([s for s in samples if s[0] <= now], total, now)
        errors.append(abs(left - (end - now)))
        shown.append(left)
    return sum(errors) / len(errors), sum(max(b - a, 0) for a, b in zip(shown, shown[1:]))


def test_the_estimate_follows_the_recorded_job_and_swings_less():
    smoothed_error, smoothed_rise = polled(job_progress.time_left, RECORDED, RECORDED_TOTAL)
    naive_error, naive_rise = polled(naive_left, RECORDED, RECORDED_TOTAL)

    # The machine slowed down half-way (shared cores): neither estimate can foresee that. The smoothed one is about
    # as close (24.6 s against 23.4 s on average) and rises less than half as much (85 s against 203 s of upward
    # jumps, polled every second for 2 minutes: the old one grew while each batch rendered).
    assert smoothed_error < 1.1 * naive_error
    assert smoothed_rise < 0.5 * naive_rise


def test_the_estimate_forgets_a_slow_first_batch():
    # A 60-s warm-up batch, then 8 items every 4 s: 100 batches in all.
    samples = [(0.0, 0), (60.0, 8)] + [(60.0 + 4 * i, 8 + 8 * i) for i in range(1, 100)]
    total, now = 800, samples[50][0]  # 400 of 800 done: 50 batches left, 200 s
    assert job_progress.time_left(samples[:51], total, now) == pytest.approx(200, rel=0.01)
    assert naive_left(samples[:51], total, now) == 256  # 256 s so far for half of it


def test_the_estimate_weights_recent_steps_and_counts_down_between_them():
    # 40 items at 1 s each, then 40 at 3 s each: the rate has moved most of the way to 3 s.
    samples = [(0.0, 0)] + [(float(i), i) for i in range(1, 41)] + [(40.0 + 3 * i, 40 + i) for i in range(1, 41)]
    rate = job_progress.seconds_per_item(samples)
    assert 2.5 < rate < 3.0
    assert job_progress.time_left(samples, 90, now=160.0) == pytest.approx(10 * rate)
    assert job_progress.time_left(samples, 90, now=165.0) == pytest.approx(10 * rate - 5)
    # A batch of 8 counts as 8 items: one step of 8 in 16 s is 2 s per item.
    assert job_progress.seconds_per_item([(0.0, 0), (16.0, 8)]) == 2.0
    assert job_progress.time_left([(0.0, 0)], 30, now=5.0) is None


def test_a_new_pass_restarts_the_samples_and_planted_values_are_ignored():
    report = {"samples": [[0, 0], [10, 8], [20, 4], "x", [25, True], [30, 12], [float("nan"), 1]]}
    assert job_progress.samples_of(report) == [(20.0, 4), (30.0, 12)]


def test_the_caption_says_what_the_job_does_now_and_how_long_it_has_left():
    sweeping = {"stage": "sweeping", "done": 40, "total": 266, "stage_started_at": 1000.0,
                "samples": [[1000.0, 0], [1020.0, 8], [1040.0, 16], [1060.0, 24], [1080.0, 32], [1100.0, 40]]}
    fraction, text = job_progress.progress(sweeping, now=1110.0)
    assert text == "window images 40 of 266 · 2 min so far, about 9 min left"  # 2.5 s × 226 − 10 s = 555 s
    assert fraction == pytest.approx(0.05 + 0.95 * 40 / 266)
    assert job_progress.progress({"stage": "loading", "started_at": 1000.0}, now=1030.0) == (
        0.05, "loading the model · 30 s so far")
    assert job_progress.progress({"stage": "evaluating", "done": 8, "total": 8}, now=0)[1] == (
        "edit saved; before/after images 8 of 8, scoring and saving")
    assert job_progress.progress({"stage": "finished"}) == (1.0, "finished")
    assert job_progress.progress({}, now=0) == (0.05, "starting Python and loading the libraries")
    assert job_progress.duration(6000) == "1 h 40 min"


def test_an_edit_jobs_caption_counts_images_and_estimates_the_time_left():
    report = {"stage": "evaluating", "done": 50, "total": 100, "stage_started_at": 1000.0,
              "samples": [[1000.0, 0], [1020.0, 50]]}

    fraction, text = job_progress.progress(report, now=1020.0)

    assert fraction == pytest.approx(0.55)
    assert text == "edit saved; before/after images 50 of 100 · 20 s so far, about 20 s left"
    assert job_progress.progress({**report, "done": 100}, now=1030.0)[1].endswith("30 s so far, scoring and saving")
    assert job_progress.progress({"stage": "editing", "started_at": 1000.0}, now=1003.0) == (
        0.05, "loading the model and computing the edit · 3 s so far")


def test_the_logged_command_is_shell_quoted():
    args = ["edit", "--concept=van gogh", "--target=it's a painting", "--spec=/root with space/spec.json"]

    line = jobs.command_line(args)

    assert line == ("python -m locolab edit '--concept=van gogh' '--target=it'\"'\"'s a painting' "
                    "'--spec=/root with space/spec.json'")
    assert shlex.split(line)[3:] == args


def make_job(root, job_id, args, user=None, report=None, returncode=None, request=None):
    """A job folder as the runner leaves it (``returncode`` None: no exit record, so lost unless running)."""
    path = jobs.jobs_dir(str(root)) / job_id
    path.mkdir(parents=True)
    spec = {"job_id": job_id, "args": args, "label": f"job {job_id}", "request": request or {},
            "created_at": "2026-12-07T01:02:03+00:00", **({"user": user} if user else {})}
    jobs.write_json(path / jobs.SPEC, spec)
    if report is not None:
        jobs.write_json(path / JOB_STATUS, report)
    if returncode is not None:
        jobs.write_json(path / jobs.EXIT, {"returncode": returncode})
    return path


def test_the_jobs_list_names_who_launched_what_when_and_links_its_results(tmp_path):
    make_job(tmp_path, "20261207-010203-aaaaaa", ["edit", "--artifacts=/r", "--concept=van gogh"], user="ada",
             report={"stage": "finished", "result": {"edit_id": "van-gogh-loco-1", "eval_id": "e1"}}, returncode=0,
             request={"model": "tiny-sd1"})
    make_job(tmp_path, "20261207-020203-bbbbbb", ["sweep", "--artifacts=/r"], user="grace",
             report={"stage": "sweeping", "result": {"run_id": "localize-x-123"}}, returncode=-15,
             request={"model": "tiny-sd1"})
    (jobs.jobs_dir(str(tmp_path)) / "20261207-020203-bbbbbb" / jobs.CANCELLED).write_text("")
    make_job(tmp_path, "20261206-000000-cccccc", ["edit"], returncode=1)  # from before jobs recorded their user

    rows = job_rows(jobs.list_jobs(str(tmp_path)))

    assert [(r["job"], r["launched by"], r["state"], r["edit"], r["run"]) for r in rows] == [
        ("20261207-020203-bbbbbb", "grace", "cancelled", None,
         "/layer_map?view=locogen&model=tiny-sd1&run=localize-x-123"),
        ("20261207-010203-aaaaaa", "ada", "succeeded", "/edits?edit=van-gogh-loco-1", None),
        ("20261206-000000-cccccc", "–", "failed", None, None)]
    assert rows[1]["launched"] == "2026-12-07 01:02 UTC"
    assert rows[1]["command"] == "python -m locolab edit --artifacts=/r '--concept=van gogh'"


def test_a_cancelled_edit_job_links_to_the_edit_it_saved(tmp_path):
    path = make_job(tmp_path, "20261207-010203-aaaaaa", ["edit"], request={"model": "tiny-sd1"}, returncode=-15,
                    report={"stage": "evaluating", "done": 8, "total": 32, "result": {"edit_id": "monet-loco-2"}})
    (path / jobs.CANCELLED).write_text("")

    assert result_links(jobs.load(path)) == {"edit": "/edits?edit=monet-loco-2", "run": None}


def test_the_launching_user_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("LOGNAME", "ada")
    assert jobs.launched_by() == "ada"


def test_evaluate_runs_eval_edit_on_the_stored_edit_with_the_forms_settings():
    args = eval_job("/root", "-odd-id", EvalSpec(seeds=(0, 3), steps=2, size=32, unrelated=4))

    assert args == ["eval-edit", "--artifacts=/root", "--seeds=0,3", "--steps=2", "--size=32", "--unrelated=4", "--",
                    "-odd-id"]
    assert eval_job("/root", "e", EvalSpec()) == ["eval-edit", "--artifacts=/root", "--", "e"]
    attacked = EvalSpec(attack=True, attack_steps=3)
    assert eval_job("/root", "e", attacked) == ["eval-edit", "--artifacts=/root", "--attack", "--attack-steps=3", "--",
                                                "e"]
    assert EvalSpec(**spec_values(EvalSpec, build_parser().parse_args(eval_job("/root", "e", attacked)))) == attacked
    assert [r["edit_id"] for r in unevaluated([{"edit_id": "a", "evals": []}, {"edit_id": "b", "evals": [{}]},
                                               {"edit_id": "c"}])] == ["a", "c"]


def request(**changes) -> LocalizeRequest:
    values = dict(model="tiny-sd1", family="style", concept="Van Gogh", target="a painting",
                  prompts="a house in the style of {concept}\na {concept} tree -> a tree\nliteral {braces} here",
                  score_text="style of {concept}", window_sizes=(1, 3), seeds=(0, 1), steps=2, resolution=32)
    return LocalizeRequest(**{**values, **changes})


def test_the_form_builds_the_study_spec():
    study = request().study(16)

    assert study == StudySpec(
        "localize-van-gogh", "tiny-sd1",
        (FamilySpec("style", "a painting", (Template("a house in the style of {concept}", None),
                                            Template("a {concept} tree", "a tree"),
                                            Template("literal {{braces}} here", None)),
                    (Concept("Van Gogh", None, "style of {concept}"),)),),
        window_sizes=(1, 3), seeds=(0, 1), scorer="tiny-clip", steps=2, resolution=32,
        description="localized from the dashboard: Van Gogh")
    assert study.families[0].prompts(study.families[0].concepts[0]) == [
        ("a house in the style of Van Gogh", "a painting"), ("a Van Gogh tree", "a tree"),
        ("literal {braces} here", "a painting")]
    # The file the job runs reads back as the same study.
    args, spec, _ = request().job("/root", {"tiny-sd1"}, 16)
    assert args == ["sweep", "--artifacts=/root"] and StudySpec.from_json(spec) == study


@pytest.mark.parametrize(("changes", "message"), [
    ({"concept": " "}, "concept: name the concept to localize"),
    ({"prompts": "\n \n"}, "prompts: give at least one"),
    ({"prompts": "a {concept} ->"}, "prompt line 1: 'a {concept} ->' has an empty side of '->'"),
    ({"prompts": "a {concept}\na {concept}"}, "prompts: list each prompt once"),
    ({"prompts": "a {concept} of {place}"}, "only {concept} is filled in"),
    ({"target": "", "prompts": "a {concept} tree"}, "target: give the attribute-free prompt"),
    ({"window_sizes": (17,)}, "window_sizes[0]: 17 exceeds the 16 cross-attention layers of tiny-sd1"),
    ({"seeds": tuple(range(65))}, "65 seeds: give at most 64"),
])
def test_a_bad_form_says_what_to_fix(changes, message):
    with pytest.raises(UserError, match=None) as error:
        request(**changes).study(16)
    assert message in str(error.value)


def test_the_form_refuses_models_a_job_may_not_name():
    with pytest.raises(UserError, match="neither registered, allowed at launch"):
        request(model="../elsewhere").job("/root", {"tiny-sd1"}, 16)


def test_the_boxes_parse_sizes_and_prompts():
    assert parse_sizes("3, 1", 16) == (1, 3)
    with pytest.raises(UserError, match="window size 17: use sizes from 1 to 16"):
        parse_sizes("1,17", 16)
    with pytest.raises(UserError, match="write comma-separated integers"):
        parse_sizes("one", 16)
    assert parse_prompts("a {concept} car -> a car") == (Template("a {concept} car", "a car"),)


def test_the_catalog_pre_fills_a_familys_templates_and_target():
    text, target, score_text = catalog_prompts("toyworld", "color")
    assert (text, target, score_text) == ("a {concept} circle on plain -> a circle on plain", "an object",
                                          "the color {concept}")
    assert catalog_prompts("toyworld", "celebrities") is None


def test_the_cost_counts_what_a_one_prompt_study_renders():
    study = request(prompts="a {concept} tree", window_sizes=(1, 16), seeds=(0,)).study(16)
    # Per seed: original, target, all-layers (shared with the window of all 16 layers) and 16 windows of size 1.
    assert cost(study, 16) == {"units": 1, "cases": 3 + 16 + 1, "images": 2 + 1 + 16}


@pytest.mark.slow  # imports compute (torch)
@pytest.mark.parametrize("changes", [{}, {"window_sizes": (2, 16), "seeds": (0, 1, 2)},
                                     {"prompts": "a {concept} car -> a car\na {concept} bird -> a car\n{concept}",
                                      "target": "a car"}])
def test_the_cost_is_the_sweeps_dry_run_plan(changes):
    from locolab.compute.runner import Context, plan

    study = request(**changes).study(16)
    planned = plan(study, 16, Context("/unused"))

    assert cost(study, 16) == {"units": len(planned.units), "cases": sum(len(u.cases) for u in planned.units),
                               "images": planned.images}


@pytest.mark.slow  # imports compute (torch)
def test_sweep_runs_a_spec_file_and_refuses_a_config_beside_it(tmp_path, capsys):
    from locolab.compute.cli import main

    study = request(prompts="a {concept} tree", window_sizes=(1,), seeds=(0,)).study(16)
    spec = tmp_path / "spec.json"
    spec.write_text(study.to_json())

    def sweep(*args):
        code = main(["sweep", *args, f"--artifacts={tmp_path / 'root'}"])
        return code, *capsys.readouterr()

    code, out, _ = sweep(f"--spec={spec}", "--dry-run")
    assert code == 0 and f"run {study.run_id}: tiny-sd1" in out
    assert "1 of 1 work units, 19 cases, 19 images" in out and cost(study, 16) == {"units": 1, "cases": 19,
                                                                                     "images": 19}
    assert sweep("tiny-sd1", f"--spec={spec}") == (2, "", "error: give a sweep config or --spec FILE, not both or "
                                                          "neither (see sweep --help)\n")
    spec.write_text(json.dumps({**json.loads(spec.read_text()), "scorer": "no/such/scorer/x"}))
    code, _, err = sweep(f"--spec={spec}", "--dry-run")
    assert code == 2 and "unknown scorer 'no/such/scorer/x'" in err


def open_page(monkeypatch, root, page: str) -> AppTest:
    monkeypatch.setenv("LOCOLAB_ARTIFACTS", str(root))
    app = AppTest.from_file(str(MAIN), default_timeout=60).run()
    app.switch_page(page).run()
    assert not app.exception, app.exception[0].value if app.exception else None
    return app


@pytest.mark.slow  # a real page, and a real sweep job started and cancelled
def test_the_localize_page_shows_the_cost_and_launches_a_sweep_job(monkeypatch, tmp_path):
    app = open_page(monkeypatch, tmp_path, "views/localize.py")
    app.selectbox(key="loc_model").set_value("tiny-sd1").run()
    assert app.text_area(key="loc_prompts_tiny-sd1_style").value.startswith("a painting in the style of {concept}\n")
    assert app.button(key="loc_launch").disabled  # no concept yet: the page says what is missing
    assert app.info[0].value == "Not ready to launch\\: concept\\: name the concept to localize, e.g. van gogh."
    app.text_input(key="loc_concept").set_value("mondrian")
    app.text_area(key="loc_prompts_tiny-sd1_style").set_value("a {concept} tree\na house by {concept} -> a house")
    app.text_input(key="loc_sizes").set_value("1,2")
    app.text_input(key="loc_seeds").set_value("0")
    app.number_input(key="loc_steps").set_value(2)
    app.number_input(key="loc_size").set_value(32).run()

    # Per prompt and seed: 3 references and 16 + 15 windows (the prompts have different targets: nothing shared).
    dry_run = next(m.value for m in app.markdown if m.value.startswith("Dry run"))
    assert "2 prompt(s) × 1 seed(s)\\: 68 cases, 68 images" in dry_run
    app.button(key="loc_launch").click().run()

    job = jobs.list_jobs(str(tmp_path))[0]
    try:
        spec_file = job.path.resolve() / jobs.SPEC_FILE
        assert job.spec["args"] == ["sweep", f"--artifacts={tmp_path}", f"--spec={spec_file}"]
        study = StudySpec.from_json(spec_file.read_text())
        assert (study.name, study.window_sizes, study.seeds, study.steps, study.resolution) == (
            "localize-mondrian", (1, 2), (0,), 2, 32)
        assert cost(study, 16)["images"] == 68
        # The progress sits beside the Launch button, in the same row.
        assert app.get("progress") and app.button(key=f"cancel_{job.job_id}")
        assert job.spec["user"] == jobs.launched_by()
    finally:
        jobs.cancel(job)
    wait = time.monotonic() + 60
    while jobs.load(job.path).active and time.monotonic() < wait:
        time.sleep(0.5)
    assert jobs.load(job.path).status == "cancelled"


@pytest.mark.slow  # a real page
def test_the_localize_page_refuses_a_root_it_may_not_write(monkeypatch, tmp_path):
    (tmp_path / "launch").mkdir()
    (tmp_path / "plain").mkdir()
    app = open_page(monkeypatch, tmp_path / "launch", "views/localize.py")
    app.text_input(key="loc_concept").set_value("mondrian").run()
    assert not app.button(key="loc_launch").disabled

    app.sidebar.text_input(key="root_input").set_value(str(tmp_path / "plain")).run()

    assert "is not a LocoLab artifact root" in app.warning[0].value
    assert app.button(key="loc_launch").disabled


def test_the_run_is_named_after_the_concept_in_characters_a_run_id_may_hold():
    from locolab.dashboard.localize_form import run_name

    assert [run_name(c) for c in ("Van Gogh", " ¿qué? ", "a/b..c", "日本")] == [
        "localize-van-gogh", "localize-qu", "localize-a-b..c", "localize-concept"]
    assert len(run_name("x" * 200)) == 100


@pytest.mark.slow  # an edit job cancelled while it evaluates, then its evaluation launched from the page (~2 min)
@pytest.mark.heavy  # the slow tier: make test-heavy
def test_a_cancelled_edit_is_evaluated_from_the_page(monkeypatch, tmp_path):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the jobs inherit it
    edit = jobs.launch(str(tmp_path), ["edit", "--model=tiny-sd1", "--family=style", "--concept=van gogh",
                                       "--layers=8,9", "--eval", "--seeds=0,1,2,3", "--steps=50",
                                       f"--artifacts={tmp_path}"], "slow edit")
    try:
        deadline = time.monotonic() + 240
        while jobs.load(edit.path).report().get("stage") != "evaluating" and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        jobs.cancel(edit)
    while jobs.load(edit.path).active and time.monotonic() < deadline:
        time.sleep(0.5)
    cancelled = jobs.load(edit.path)
    edit_id = cancelled.result()["edit_id"]
    assert cancelled.status == "cancelled" and result_links(cancelled)["edit"] == f"/edits?edit={edit_id}"

    app = open_page(monkeypatch, tmp_path, "views/run_edit.py")
    assert app.selectbox(key="eval_edit").options == [edit_id]
    # The evaluation takes the form's Evaluation settings.
    app.selectbox(key="run_model").set_value("tiny-sd1").run()
    app.text_input(key="run_concept_text_style").set_value("van gogh").run()
    app.text_input(key="run_seeds").set_value("0")
    app.number_input(key="run_steps").set_value(2)
    app.number_input(key="run_size").set_value(32)
    app.number_input(key="run_unrelated_tiny-sd1_van gogh").set_value(2)
    app.button(key="evaluate").click().run()

    job = jobs.list_jobs(str(tmp_path))[0]
    assert job.spec["args"] == ["eval-edit", f"--artifacts={tmp_path}", "--seeds=0", "--steps=2", "--size=32",
                                "--unrelated=2", "--", edit_id]
    deadline = time.monotonic() + 240
    while jobs.load(job.path).active and time.monotonic() < deadline:
        time.sleep(1)
    assert jobs.load(job.path).status == "succeeded", jobs.load(job.path).log()
    assert len(list((tmp_path / "edits" / edit_id / "evals").glob("*/eval.json"))) == 1
    done = open_page(monkeypatch, tmp_path, "views/run_edit.py")
    assert f"Result: {edit_id}" in [s.value for s in done.subheader]
    assert not done.get("selectbox") or "eval_edit" not in [s.key for s in done.selectbox]


@pytest.mark.slow  # real pages
def test_the_localize_page_refuses_an_object_store_served_read_only(monkeypatch, tmp_path):
    from test_dashboard_exports import make_root, to_memory

    remote = to_memory(make_root(tmp_path / "root"))
    app = open_page(monkeypatch, remote, "views/localize.py")
    app.text_input(key="loc_concept").set_value("mondrian").run()

    assert "is an object store served read-only\\: jobs are disabled" in app.warning[0].value
    assert app.button(key="loc_launch").disabled
    monkeypatch.setenv(WRITES_ENV, "1")  # the operator's --allow-writes
    app = open_page(monkeypatch, remote, "views/localize.py")
    app.text_input(key="loc_concept").set_value("mondrian").run()
    assert not app.warning and not app.button(key="loc_launch").disabled


def test_the_status_file_records_a_sample_at_each_advance(tmp_path, monkeypatch):
    from locolab.compute.cli import status

    monkeypatch.setattr(status, "MAX_SAMPLES", 5)
    path = tmp_path / "status.json"
    status.report_to(str(path), "sweep")
    try:
        status.report(stage="sweeping")
        status.report(done=8, total=16)
        status.report(done=8)  # no advance: no sample
        status.report(done=16)
        written = json.loads(path.read_text())
        assert [done for _, done in written["samples"]] == [0, 8, 16]
        times = [t for t, _ in written["samples"]]
        assert times == sorted(times) and times[0] == written["stage_started_at"]
        for done in range(17, 17 + status.MAX_SAMPLES):
            status.report(done=done)
        assert len(json.loads(path.read_text())["samples"]) == status.MAX_SAMPLES
        status.report(stage="finished")  # a new stage starts its own samples
        assert [done for _, done in json.loads(path.read_text())["samples"]] == [0]
        status.baseline(40, 100)  # a resumed sweep: its 40 finished images were not rendered just now
        status.report(done=48)
        assert [done for _, done in json.loads(path.read_text())["samples"]] == [40, 48]
    finally:
        status.report_to(None, "sweep")
