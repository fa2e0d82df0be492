"""One notation for a window of layers everywhere (verdicts, tables, Gallery, exports, command line): the functions
of ``contract.notation``, and no other spelling ("8-9", "[8, 9]", "8..9") left in the code that prints windows."""

import re
from pathlib import Path

from locolab.contract.notation import layers_text, window_label, window_span

REPO = Path(__file__).resolve().parents[1]


def test_windows_and_layer_sets_are_written_one_way():
    assert [window_label(8, 2), window_label(12, 1), window_label(0, 16)] == ["layers 8–9", "layer 12", "layers 0–15"]
    assert window_span(8, 10) == "layers 8–9" and window_span(3, 4) == "layer 3"
    assert [layers_text(x) for x in ([9, 8], [7, 1, 2, 5, 8], [4, 4], [])] == \
        ["layers 8–9", "layers 1–2, 5, 7–8", "layer 4", "no layers"]


def test_no_other_window_notation_is_printed():
    # f-strings that join two layer indices with "-" or "..", or print layers as a raw list.
    other = re.compile(r"""\{[^}]*(layer|window|start)[^}]*\}(-|\.\.)\{|layers \{list\(""")
    stored = "kind = f\"window_{"  # compute.window_images: a stored image kind, not text for a reader
    found = [f"{path.relative_to(REPO)}:{n}" for folder in ("compute", "contract", "dashboard")
             for path in (REPO / folder).rglob("*.py") for n, line in enumerate(path.read_text().splitlines(), 1)
             if other.search(line) and "UserError" not in line and stored not in line]
    assert found == []
