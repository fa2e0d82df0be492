"""What the dashboard exports (figures, figure sheets, tables, edits) carries its title and its data; the Edits and
Run-an-edit pages' numbers are shown uncut and honestly; an object-store root reads back exactly as the same root on
a local disk. Fast: small hand-made roots, no model."""

import io
import json
import uuid
import zipfile
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image

from locolab.contract import queries
from locolab.contract.store import write_table
from locolab.dashboard import data, edit_view, exports
from locolab.dashboard.downloads import edit_archive
from locolab.dashboard.edit_form import family_target, preservation_size, suggested_keys
from locolab.dashboard.files import OutsideRoot, RootFiles
from locolab.dashboard.root import job_root_problem, launch_options, problem, typed_root_problem

TITLE = exports.title_text("LocoGen images per window", model="toyworld", run="run-1", concept="style · stripes",
                           scorer="toyworld-clip", seeds=[0, 1], m=1)


def png(color, size=32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def sheet(title: str) -> bytes:
    columns = ["original", "target", "layer 0", "layer 1"]
    rows = [(f"seed {seed}", [exports.SheetCell(png((200, 40 * i, 10 * seed)), f"0.{i}{seed}") for i in range(3)]
             + [exports.SheetCell(None)]) for seed in (0, 1)]
    return exports.figure_sheet(title, columns, rows)


def test_the_title_names_model_run_concept_scorer_and_seeds():
    assert TITLE == ("LocoGen images per window · model toyworld · run run-1 · concept style · stripes · scorer "
                     "toyworld-clip · seeds 0, 1 · m 1")


def test_a_figure_sheet_carries_its_title_as_text_and_as_a_rendered_band():
    titled, plain = Image.open(io.BytesIO(sheet(TITLE))), Image.open(io.BytesIO(sheet("")))

    assert titled.text["Title"] == TITLE
    band = titled.height - plain.height
    assert band > 20 and titled.width == plain.width
    # Below the band the sheet is pixel for pixel the untitled one; the band itself holds the title's ink.
    assert titled.crop((0, band, titled.width, titled.height)).tobytes() == plain.convert("RGB").tobytes()
    ink = int((np.asarray(titled.crop((0, 0, titled.width, band)).convert("RGB")).sum(axis=2) < 200).sum())
    assert ink > 200


def test_a_figure_sheet_scales_tiny_images_with_nearest_neighbour_and_marks_missing_ones():
    checker = Image.new("RGB", (2, 2))
    checker.putdata([(0, 0, 0), (255, 255, 255), (255, 255, 255), (0, 0, 0)])
    buffer = io.BytesIO()
    checker.save(buffer, format="PNG")
    image = Image.open(io.BytesIO(exports.figure_sheet("", ["a", "b"], [("seed 0", [
        exports.SheetCell(buffer.getvalue()), exports.SheetCell(b"not an image")])], cell=64))).convert("RGB")

    colours = {image.getpixel((x, y)) for x in range(image.width) for y in range(image.height)}
    # Nearest-neighbour keeps two colours (no grey blend between the checker's squares) and the missing cell's grey.
    assert exports.MISSING in colours
    top_left = next((x, y) for y in range(image.height) for x in range(image.width)
                    if image.getpixel((x, y)) == (0, 0, 0) and image.getpixel((x + 31, y + 31)) == (0, 0, 0))
    x, y = top_left
    assert image.getpixel((x + 32, y)) == (255, 255, 255) and image.getpixel((x + 63, y + 63)) == (0, 0, 0)


FIGURE = {"data": {"values": [{"x": 0, "v": 0.1}, {"x": 1, "v": 0.9}]}, "mark": "rect",
          "encoding": {"x": {"field": "x", "type": "ordinal"}, "color": {"field": "v", "type": "quantitative"}},
          "title": {"text": "LocoGen · window size m = 1"}}


@pytest.mark.slow  # vl-convert bundles Vega's JavaScript once per process: ~3 s
def test_an_html_figure_carries_the_title_and_the_figure_its_own_as_subtitle():
    page = exports.figure_bytes(FIGURE, "html", TITLE).decode()

    assert f"<title>{TITLE}</title>" in page and "<script" in page
    assert all(json.dumps(line, ensure_ascii=False) in page for line in exports.title_lines(TITLE))
    assert json.dumps("LocoGen · window size m = 1", ensure_ascii=False) in page
    with pytest.raises(ValueError, match="unknown figure format 'gif'"):
        exports.figure_bytes(FIGURE, "gif", TITLE)


@pytest.mark.slow  # vl-convert, a second
def test_svg_png_and_pdf_figures_carry_the_title():
    svg = exports.figure_bytes(FIGURE, "svg", TITLE).decode()

    assert svg.startswith("<svg") and "LocoGen · window size m = 1" in svg
    # The title broken at its separators, every part drawn.
    assert all(f">{line}<" in svg for line in exports.title_lines(TITLE))
    png = Image.open(io.BytesIO(exports.figure_bytes(FIGURE, "png", TITLE)))
    assert png.width == int(svg.split('width="')[1].split('"')[0]) * exports.PNG_SCALE
    assert exports.figure_bytes(FIGURE, "pdf", TITLE).startswith(b"%PDF")


def test_tables_become_csv_with_every_row():
    rows = [{"concept": "stripes", "drop": 0.5}, {"concept": "dots, big", "drop": None}]
    assert exports.table_csv(rows).decode().splitlines() == ["concept,drop", "stripes,0.5", '"dots, big",']


def test_file_stems_keep_only_safe_characters():
    assert exports.file_stem("run/1", "van gogh", None, "m1") == "run-1-van-gogh-m1"


@pytest.mark.parametrize("name", ["efficacy_score_drop", "generalization_prompt_rate"])
def test_metric_cards_have_short_distinct_labels_and_short_values(name):
    group = name.split("_")[0]
    result = {f"{group}_{kind}": 0.5 for kind in ("score_drop", "prompt_rate", "image_rate")}
    result.update({f"{group}_{kind}_{end}": value for kind in ("score_drop", "prompt_rate", "image_rate")
                   for end, value in (("low", 0.25), ("high", 0.75), ("before", 0.1))})

    ((_, cards),) = edit_view.metric_cards(result)

    # A third of a 1280-px page holds about 28 characters of a label and 6 of a value: the group is the row's heading.
    assert [card["label"] for card in cards] == ["score drop [0.25, 0.75]", "prompt rate [0.25, 0.75]",
                                                 "image rate [0.25, 0.75]"]
    assert all(len(card["label"]) <= 28 and len(card["value"]) <= 6 for card in cards)
    assert cards[0]["delta"] == "+0.40 vs before" and cards[0]["color"] == "normal"


def test_a_metric_that_did_not_move_gets_no_coloured_arrow():
    ((_, cards),) = edit_view.metric_cards({"efficacy_score_drop": 0.301, "efficacy_score_drop_before": 0.3})

    assert cards[0]["delta"] == "+0.00 vs before"
    assert (cards[0]["color"], cards[0]["arrow"]) == ("off", "off")


def test_compared_edits_name_every_setting_they_differ_in():
    base = {"method": "loco", "target": "a painting", "positions": "subject", "lambda": 0.01}
    evaluation = {"seeds": [0, 1], "num_prompts": {"unrelated": 12}}
    rows = [edit_view.compared_settings(base, evaluation),
            edit_view.compared_settings({**base, "method": "all-layers"}, evaluation),
            edit_view.compared_settings({**base, "positions": "subject+padding", "preserve_prompts": ["a", "b"],
                                         "lambda": 0.1}, evaluation)]

    assert rows[0] == {"target": "a painting", "key positions": "subject", "preserve others": "no",
                       "λ / top-k": "λ 0.01", "seeds": "0, 1", "preservation set": "12 unrelated prompts"}
    assert edit_view.differing(rows[:2]) == []
    assert edit_view.differing(rows) == ["key positions", "preserve others", "λ / top-k"]
    neuron = edit_view.compared_settings({"method": "neuron", "topk": 50, "target": "a painting"}, None)
    assert neuron["λ / top-k"] == "top-k 50" and neuron["seeds"] == "–"


def test_run_an_edit_suggests_the_family_target_and_the_toy_worlds_key_options():
    assert family_target("toyworld", "style", "stripes") == "an object on plain"
    assert family_target("tiny-sd1", "style", "van gogh") == "a painting"
    assert suggested_keys("toyworld")["positions"] == "subject+padding"
    assert suggested_keys("toyworld")["preserve_others"] is True and suggested_keys("tiny-sd1") == {}
    # The toy world's preservation set holds 12 prompts without "stripes": 20 asked would silently be 12.
    assert preservation_size("toyworld", "stripes") == 12


# ----- Object-store roots: the same root in memory (fsspec) reads back as on a local disk.

def make_root(path) -> str:
    """A small root: one LocoGen run of two seeds with images, and one evaluated edit with its images."""
    cases, scores = [], []
    for seed in (0, 1):
        for kind, start, size, score in (("original", None, None, 0.8), ("target", None, None, 0.2),
                                         ("window", 0, 1, 0.7), ("window", 1, 1, 0.3)):
            case_id = f"c-{seed}-{kind}-{start}"
            image = f"images/toyworld/{case_id}.png"
            (path / image).parent.mkdir(parents=True, exist_ok=True)
            (path / image).write_bytes(png((int(score * 255), seed * 100, 50)))
            common = dict(case_id=case_id, run_id="run-1", model="toyworld", family="style", concept="stripes",
                          kind=kind, window_start=start, window_size=size, seed=seed, method="locogen")
            cases.append({**common, "prompt": "stripes", "target": "an object on plain", "image_path": image})
            scores.append({**common, "scorer_id": "toyworld-clip", "score_text": "stripes",
                           "score": score + seed / 100})
    write_table("cases", cases, "run-1", root=str(path))
    write_table("scores", scores, "run-1", root=str(path))
    write_table("runs", [dict(run_id="run-1", config_name="toy", model="toyworld", status="finished", shard=0,
                              num_shards=1, method="locogen", reference="target",
                              created_at=datetime(2026, 1, 1, tzinfo=UTC))], "run-1-0", root=str(path))
    edit = path / "edits" / "stripes-loco-1"
    (edit / "evals" / "e1").mkdir(parents=True)
    (edit / "edit.json").write_text(json.dumps({"edit_id": "stripes-loco-1", "model": "toyworld", "family": "style",
                                                "concept": "stripes", "method": "loco", "layers": [0],
                                                "created_at": "2026-01-01T00:00:00+00:00"}))
    (edit / "weights.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (edit / "evals" / "e1" / "eval.json").write_text(json.dumps({"eval_id": "e1", "edit_id": "stripes-loco-1",
                                                                 "efficacy_score_drop": 0.5, "seeds": [0]}))
    rows = []
    for phase, score in (("before", 0.8), ("after", 0.3)):
        image = f"edits/stripes-loco-1/evals/e1/{phase}-000-seed0.png"
        (path / image).write_bytes(png((int(score * 255), 0, 0)))
        rows.append(dict(edit_id="stripes-loco-1", model="toyworld", family="style", concept="stripes",
                         method="loco", group="efficacy", prompt="stripes", seed=0, phase=phase,
                         scorer_id="toyworld-clip", score=score, image_path=image, eval_id="e1"))
    write_table("edit_scores", rows, "stripes-loco-1-e1", root=str(path))
    return str(path)


def to_memory(local: str) -> str:
    """A copy of a local root in fsspec's in-memory object store; its URL."""
    import fsspec

    memory = fsspec.filesystem("memory")
    url = f"memory://team-{uuid.uuid4().hex[:8]}"
    files = RootFiles(local)
    for relpath in files.files_under("tables") + files.files_under("edits") + files.files_under("images"):
        memory.pipe_file(f"{url}/{relpath}", files.read(relpath))
    return url


@pytest.fixture
def roots(tmp_path):
    local = make_root(tmp_path / "root")
    return local, to_memory(local)


@pytest.mark.slow
def test_an_object_store_root_gives_the_same_summaries_edits_and_images(roots):
    local, remote = roots
    here, there = data.snapshot(local), data.snapshot(remote)

    assert there.error is None and not there.skipped
    assert data.query(there, queries.models) == data.query(here, queries.models) == ["toyworld"]
    for function, args in ((queries.run_list, ()), (queries.localization_table, ("run-1", 0.95)),
                           (queries.gallery, ("toyworld", "toyworld-clip", "style", "stripes", 1)),
                           (queries.edit_pairs, ("stripes-loco-1", "e1"))):
        assert data.query(there, function, *args).to_pylist() == data.query(here, function, *args).to_pylist()
    assert there.edits == here.edits and there.edits[0]["eval"]["efficacy_score_drop"] == 0.5
    images = [row["image_path"] for row in data.query(here, queries.gallery, "toyworld", "toyworld-clip", "style",
                                                       "stripes", 1).to_pylist()]
    assert len(images) == 8
    assert [data.image_bytes(there, path) for path in images] == [data.image_bytes(here, path) for path in images]


def test_an_object_store_root_sees_new_parts_and_never_reads_outside(roots):
    _, remote = roots
    before = data.snapshot(remote).fingerprint
    write_table("runs", [dict(run_id="run-2", model="toyworld", status="running", shard=0, num_shards=1,
                              method="locogen")], "run-2-0", root=remote)

    assert data.snapshot(remote).fingerprint == before  # the bucket is listed at most every few seconds
    data._remote_fingerprint.clear()  # as when they have passed
    after = data.snapshot(remote)

    assert after.fingerprint != before
    assert "run-2" in data.query(after, queries.runs)["run_id"].to_pylist()
    files = RootFiles(remote)
    for outside in ("../elsewhere/secret.png", "/etc/passwd", "memory://other/x.png"):
        with pytest.raises(OutsideRoot):
            files.read(outside)


def test_an_edit_downloads_as_a_zip_with_record_weights_images_and_scores(roots):
    for root in roots:
        snap = data.snapshot(root)
        record = snap.edits[0]
        pairs = data.query(snap, queries.edit_pairs, "stripes-loco-1", "e1").to_pylist()

        archive = zipfile.ZipFile(io.BytesIO(edit_archive(root, record, record["eval"], pairs)))

        names = set(archive.namelist())
        assert {"edit.json", "eval.json", "scores.csv", "README.txt", "edits/stripes-loco-1/weights.safetensors",
                "edits/stripes-loco-1/evals/e1/before-000-seed0.png",
                "edits/stripes-loco-1/evals/e1/after-000-seed0.png"} <= names
        assert json.loads(archive.read("edit.json"))["edit_id"] == "stripes-loco-1"
        assert archive.read("scores.csv").decode().splitlines()[1].startswith("efficacy,stripes,0,0.8,0.3,")
        assert archive.read("edits/stripes-loco-1/evals/e1/after-000-seed0.png") == RootFiles(root).read(
            "edits/stripes-loco-1/evals/e1/after-000-seed0.png")


def test_an_object_store_root_is_read_only_unless_the_operator_allows_writes(monkeypatch, roots):
    _, remote = roots
    monkeypatch.delenv("LOCOLAB_DASHBOARD_WRITES", raising=False)
    options = launch_options(["--artifacts", remote])

    assert problem(remote) is None
    assert "served read-only: jobs are disabled" in job_root_problem(remote, options)
    assert "--allow-writes" in job_root_problem(remote, options)
    assert job_root_problem(remote, launch_options(["--artifacts", remote, "--allow-writes"])) is None
    monkeypatch.setenv("LOCOLAB_DASHBOARD_WRITES", "1")
    assert job_root_problem(remote, launch_options(["--artifacts", remote])) is None
    # Viewers cannot type a bucket the server's credentials would reach; unknown protocols say what is missing.
    assert "served only when the dashboard is started on it" in typed_root_problem("memory://other", options)
    assert "not a storage protocol fsspec knows" in problem("nosuchproto://bucket/root")


def test_locolab_dashboard_passes_the_operators_write_permission_to_the_app(monkeypatch):
    import locolab.compute.cli.dashboard as command
    from locolab.compute.cli import main

    launched = []
    monkeypatch.setattr(command.subprocess, "call", lambda args: launched.append(args) or 0)

    assert main(["dashboard", "--artifacts", "memory://team", "--allow-writes"]) == 0
    assert main(["dashboard", "--artifacts", "memory://team"]) == 0

    allowed, read_only = (launch_options(args[args.index("--") + 1:]) for args in launched)
    assert (allowed.root, allowed.allow_writes, read_only.allow_writes) == ("memory://team", True, False)
