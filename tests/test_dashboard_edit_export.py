"""The Edits page's portable exports: ``locolab export-edit`` run as its own process into a temporary folder, offered
as a zip; the root is left as it was; formats that cannot hold an edit are not offered, and a refused export is the
command's own one line."""

import io
import json
import zipfile

import pytest
from dashboard_fixtures import real_root
from safetensors.torch import load as read_safetensors

from locolab.compute.edit.store import load_edit
from locolab.dashboard import edit_export
from locolab.dashboard.edit_records import read_edits

pytestmark = [pytest.mark.slow, pytest.mark.heavy]  # real exports of real tiny-sd1 edits, each a subprocess


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return real_root(tmp_path_factory)


def _record(root, method: str) -> dict:
    return next(r for r in read_edits(str(root))[0] if r["method"] == method)


def _listing(root) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_the_lora_zip_holds_the_edit_to_the_stated_error_and_the_root_is_untouched(root, load):
    record = _record(root, "loco")
    before = _listing(root)
    made, line = edit_export.export_zip(str(root), record["edit_id"], "lora")
    assert _listing(root) == before  # nothing written into the root (a read-only root exports too)
    assert made is not None, line
    archive = zipfile.ZipFile(io.BytesIO(made))
    folder = f"{record['edit_id']}-lora"
    assert sorted(archive.namelist()) == [f"{folder}/README.md", f"{folder}/edit_card.json",
                                          f"{folder}/pytorch_lora_weights.safetensors"]
    card = json.loads(archive.read(f"{folder}/edit_card.json"))
    assert card["format"] == "lora" and card["edit_id"] == record["edit_id"] and line.startswith("exported edit")
    factors = read_safetensors(archive.read(f"{folder}/pytorch_lora_weights.safetensors"))
    edit, unet = load_edit(str(root), record["edit_id"]), load("tiny-sd1").pipe.unet
    assert edit.weights and {n.split(".lora_")[0] for n in factors} == {n.removesuffix(".weight")
                                                                         for n in edit.weights}
    for name, weight in edit.weights.items():
        stem = name.removesuffix(".weight")
        w0 = unet.get_parameter(name.removeprefix("unet.")).detach()
        rebuilt = w0 + factors[f"{stem}.lora_B.weight"] @ factors[f"{stem}.lora_A.weight"]
        assert float((rebuilt - weight).abs().max()) <= card["lora"]["max_error"] * 1.01 + 1e-7
        assert float((w0 - weight).abs().max()) > 100 * card["lora"]["max_error"]  # the edit changed W


def test_formats_that_cannot_hold_an_edit_are_not_offered_and_a_refusal_is_one_line(root):
    neuron, quickfix = _record(root, "neuron"), _record(root, "diffquickfix")
    assert sorted(edit_export.unavailable(neuron)) == ["diffusers", "lora"]
    assert list(edit_export.unavailable(quickfix)) == ["lora"]
    assert edit_export.unavailable(_record(root, "all-layers")) == {}
    made, line = edit_export.export_zip(str(root), neuron["edit_id"], "lora")
    assert made is None and "is a neuron edit" in line and "\n" not in line
    made, line = edit_export.export_zip(str(root), neuron["edit_id"], "safetensors")
    names = zipfile.ZipFile(io.BytesIO(made)).namelist()
    assert f"{neuron['edit_id']}-safetensors/units.safetensors" in names


def test_an_export_of_an_unknown_edit_says_so(root):
    made, line = edit_export.export_zip(str(root), "no-such-edit", "lora")
    assert made is None and "no-such-edit" in line


def test_the_edits_page_button_makes_the_zip_of_the_chosen_format(monkeypatch, root):
    from dashboard_fixtures import MAIN
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LOCOLAB_ARTIFACTS", str(root))
    app = AppTest.from_file(str(MAIN), default_timeout=300).run()
    app.switch_page("views/edits.py").run()
    neuron = _record(root, "neuron")["edit_id"]
    app.selectbox(key="edit_choice").set_value(neuron).run()
    assert app.radio(key="edit_export_format").options == ["the edit's own safetensors"]  # what a neuron edit fits
    app.button(key="edit_export_make").click().run()
    assert not app.exception, app.exception[0].value if app.exception else None
    made, line = app.session_state[f"edit_export_{neuron}_safetensors"]
    assert line.startswith(f"exported edit {neuron} as safetensors")
    assert f"{neuron}-safetensors/edit_card.json" in zipfile.ZipFile(io.BytesIO(made)).namelist()
