"""The "Methods compared" page and ``make compare``'s table read one grid (``contract.method_grid``) from a real root:
the dashboard fixtures' tiny-sd1 edits of van gogh (LocoEdit on layers 8–9 and on every layer, neurons on 8–9,
DiffQuickFix on the text encoder), each evaluated with the battery."""

import json

import pytest
from dashboard_fixtures import MAIN, real_root
from streamlit import config
from streamlit.testing.v1 import AppTest

from locolab.compute.edit.battery_report import compare_lines
from locolab.contract.method_grid import ALL_LAYERS, LOCALIZED, TEXT_ENCODER, cells, grid, read_evaluations
from locolab.contract.queries import battery_evaluations
from locolab.contract.store import Store
from locolab.dashboard import methods_view
from locolab.dashboard.edit_records import read_edits

pytestmark = pytest.mark.slow  # a real root of four evaluated edits
config.set_option("client.showErrorDetails", "full")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return real_root(tmp_path_factory)


def _stored(root, method: str) -> dict:
    """The battery of the one evaluation of the fixture's ``method`` edit, read straight from its eval.json."""
    (path,) = (root / "edits").glob(f"*-{method}-*/evals/*/eval.json")
    return json.loads(path.read_text())["battery"]


def _efficacy(battery: dict) -> str:
    row = next(r for r in battery["detection"] if r["group"] == "concept" and r["role"] == "efficacy" and r["units"])
    return f"{row['change']:+.2f} [{row['change_low']:+.2f}, {row['change_high']:+.2f}]"


def test_the_cli_table_and_the_dashboard_read_the_same_cells_from_the_store(root):
    con = Store(root).connect()
    pairs = battery_evaluations(con, "tiny-sd1", "style", "van gogh")
    assert len(pairs) == 4 and len({eval_id for _, eval_id in pairs}) == 1  # one set of settings: one eval id
    from_files = cells(read_evaluations(str(root), pairs))
    records, _ = read_edits(str(root))
    from_records = methods_view.concept_cells(
        [(r, s) for r in records for s in r["evals"] if (r["edit_id"], s["eval_id"]) in pairs], pairs[0][1])
    assert from_files == from_records
    assert [(c["editor"], c["method"], c["scope"], c["layers"]) for c in from_files] == [
        ("loco", "loco", LOCALIZED, "layers 8–9"), ("loco", "all-layers", ALL_LAYERS, "all"),
        ("neuron", "neuron", LOCALIZED, "layers 8–9"), ("diffquickfix", "diffquickfix", TEXT_ENCODER, "text enc.")]
    lines = compare_lines(str(root), "tiny-sd1", "style", "van gogh")
    # The method and layers columns (20 and 12 characters wide).
    assert [(line[:20].strip(), line[20:32].strip()) for line in lines[1:]] == [
        ("loco", "layers 8–9"), ("all-layers", "all"), ("neuron", "layers 8–9"), ("diffquickfix", "text enc.")]
    for cell, line in zip(from_files, lines[1:]):
        assert cell["1 - SSIM"] in line and cell["changed"] in line and f"{cell['CMMD (p)']}  " in line
        assert line.endswith(cell["under attack"]) and cell["under attack"] == "-"  # evaluated without --attack


def test_each_cell_is_the_batterys_headline_numbers_with_their_intervals(root):
    con = Store(root).connect()
    rows = cells(read_evaluations(str(root), battery_evaluations(con, "tiny-sd1", "style", "van gogh")))
    efficacy = {method: _efficacy(_stored(root, method)) for method in ("loco", "all-layers", "neuron", "diffquickfix")}
    assert grid(rows, "efficacy") == [
        {"editor": "loco", LOCALIZED: efficacy["loco"], ALL_LAYERS: efficacy["all-layers"], TEXT_ENCODER: ""},
        {"editor": "neuron", LOCALIZED: efficacy["neuron"], ALL_LAYERS: "", TEXT_ENCODER: ""},
        {"editor": "diffquickfix", LOCALIZED: "", ALL_LAYERS: "", TEXT_ENCODER: efficacy["diffquickfix"]}]
    kept = _stored(root, "all-layers")["preservation"]["ssim_distance"]
    assert grid(rows, "1 - SSIM")[0][ALL_LAYERS] == f"{kept['mean']:.3f} [{kept['low']:.3f}, {kept['high']:.3f}]"
    with pytest.raises(ValueError, match="unknown measure 'edit'"):
        methods_view.grid_table(rows, "edit")


def test_the_methods_compared_page_shows_the_grid_of_the_chosen_number(monkeypatch, root):
    monkeypatch.setenv("LOCOLAB_ARTIFACTS", str(root))
    app = AppTest.from_file(str(MAIN), default_timeout=60).run()
    app.switch_page("views/methods.py").run()
    assert not app.exception, app.exception[0].value if app.exception else None
    assert app.selectbox(key="methods_concept").value == ("tiny-sd1", "style", "van gogh")
    shown = app.dataframe[0].value.set_index("editor")
    assert list(shown.index) == ["loco", "neuron", "diffquickfix"]
    assert list(shown.columns) == [LOCALIZED, ALL_LAYERS, TEXT_ENCODER]
    assert shown.loc["loco", ALL_LAYERS] == _efficacy(_stored(root, "all-layers"))
    app.selectbox(key="methods_measure").set_value("CMMD (p)").run()
    shift = _stored(root, "neuron")["cmmd"]
    assert app.dataframe[0].value.set_index("editor").loc["neuron", LOCALIZED] == (
        f"{shift['value']:.3g} ({shift['p_value']:.3f})")
    assert len(app.dataframe[1].value) == 4  # every cell's numbers


def test_the_page_says_how_to_fill_it_when_no_edit_is_evaluated(monkeypatch, tmp_path):
    monkeypatch.setenv("LOCOLAB_ARTIFACTS", str(tmp_path))
    app = AppTest.from_file(str(MAIN), default_timeout=60).run()
    app.switch_page("views/methods.py").run()
    assert not app.exception
    assert "make compare" in app.code[0].value
