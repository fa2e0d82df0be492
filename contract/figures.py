"""Vega-Lite figures of the Layer map page (plain dict specifications: Streamlit draws them with
``st.vega_lite_chart``, ``vl-convert`` exports them, ``altair.Chart.from_dict`` shows them in a notebook): the heat
maps of LocoGen's normalized drops, causal tracing's recoveries and attention contribution's per-site map (one grid,
one colour scale), the per-concept line view, and the Edits page's method comparison."""

import pyarrow as pa

from locolab.contract.names import ALL_LAYERS, TARGET
from locolab.contract.notation import window_label
from locolab.contract.summaries import MIN_UNITS, verdict

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
DROP_SCALE = "yelloworangered"  # ColorBrewer's YlOrRd, as Vega names it
GREY = "#d9d9d9"  # rows of concepts whose data cannot speak (not measurable, untraceable)
BOX = "#1f3b73"  # the boxes around the minimal localizing windows (strongest sites)
ROW_HEIGHT, LABEL_LIMIT = 34, 420  # px per concept row; px of a row label before Vega cuts it
SELECTION = "cell"  # the heat maps' point selection: a click selects the cell's "row" and "column"
CELLS = "cells"  # the heat maps' layer of cells: Vega draws it as the group of class "cells_marks"
# SVG: each cell is a DOM element the browser tests and the bench can find; as fast as canvas at a map's size.
EMBED = {"renderer": "svg", "actions": False}


def layer_label(index: int, layers: dict[int, dict]) -> str:
    """'8 (up, 16²)' when the sweep recorded the layer, else '8'."""
    info = layers.get(index)
    return f"{index} ({info['block']}, {info['resolution']}²)" if info else str(index)


def module_line(index: int, layers: dict[int, dict]) -> str:
    """'8 (up, 16²) up_blocks.1.attentions.0.transformer_blocks.0.attn2': the layer with its module path, when the
    sweep recorded it."""
    info = layers.get(index) or {}
    return layer_label(index, layers) + (f" {info['path']}" if info.get("path") else "")


def row_label(family: str, concept: str) -> str:
    return f"{family} · {concept}"


def heat_map(cells: pa.Table, minimal: pa.Table, layers: dict[int, dict], num_layers: int,
             window_size: int, threshold: float, rows: list[tuple[str, str]] | None = None,
             labels: dict[tuple[str, str], str] | None = None, about: str = "", partial: str = "") -> dict:
    """Rows = concepts grouped by family, columns = layers in forward order; a cell is the window of
    ``window_size`` layers starting there, coloured by its normalized drop on a 0–1 scale (▲ marks a drop above 1,
    ▼ one below 0: the colour alone would hide them).

    A dot marks windows that localize at ``threshold`` (``contract.summaries.judge``: the paired test, adjusted over
    the concept's windows); a box spans each concept's minimal localizing window when it is of this size
    (``minimal``'s other windows are not drawn: a box of another size would mean other cells). Concepts that are not
    measurable are grey, labelled so, and their tooltip says why. Every cell's tooltip gives its modules with their
    block and resolution, point, interval and verdict; a click selects its ``row`` (the order of ``rows``, by default
    the order of first appearance in ``cells``) and ``column`` (the window start). ``labels`` replaces the rows' labels
    (maps drawn one above the other need the same labels to line up). ``about`` (model, run, scorer, seeds) goes under
    the title, so that an exported figure says what it shows; ``partial`` (e.g. "status running, shards 1/2") marks a
    run that has not finished.
    """
    def details(cell):
        start = cell["window_start"]
        reference = "all-layers swap" if cell["reference"] == ALL_LAYERS else "target prompt"
        return {"window": window_label(start, window_size),
                "modules": "; ".join(module_line(j, layers) for j in range(start, start + window_size)),
                "normalized drop": _fmt(cell["normalized_drop"]),
                "interval": f"{cell['level']:.0%} [{_fmt(cell['drop_low'])}, {_fmt(cell['drop_high'])}]",
                "verdict": verdict(cell),
                "score": f"{_fmt(cell['score_mean'])} ± {_fmt(cell['score_std'])} ({cell['n_seeds']} seeds, "
                         f"{cell['n_images']} images)",
                "references": f"original {_fmt(cell['original_score'])}, target {_fmt(cell['target_score'])}, "
                              f"all-layers {_fmt(cell['all_layers_score'])}; normalized by the {reference} (gap "
                              f"{_fmt(cell['gap'])} [{_fmt(cell['gap_low'])}, {_fmt(cell['gap_high'])}])"}

    rows = rows or list(dict.fromkeys(zip(cells["family"].to_pylist(), cells["concept"].to_pylist())))
    data = cells.to_pylist()
    grey = {(c["family"], c["concept"]) for c in data if not c["measurable"]}
    shown = [dict(c, normalized_drop=None) if (c["family"], c["concept"]) in grey else c for c in data]
    row_of = {key: i for i, key in enumerate(rows)}
    boxes = [(window["window_start"], window["window_size"], row_of[key]) for window in minimal.to_pylist()
             if (key := (window["family"], window["concept"])) in row_of and window["window_size"] == window_size]
    return _grid(shown, rows, "window_start", "normalized_drop", "localizes", details, num_layers, "normalized drop",
                 grey, "not measurable", labels, upper="drop_high", boxes=boxes, layers=layers,
                 x_title="cross-attention layer (forward order) = window start",
                 title=_title(f"LocoGen normalized drop · window size m = {window_size}", about,
                              f"● drop > {threshold:g} by the paired test, Holm-adjusted · box: minimal localizing "
                              "window (drawn where it has this m) · grey: not measurable · ▲ above 1, ▼ below 0",
                              partial))


def trace_map(cells: pa.Table, layers: dict[int, dict], num_sites: int, component: str, threshold: float,
              rows: list[tuple[str, str]] | None = None, labels: dict[tuple[str, str], str] | None = None,
              about: str = "") -> dict:
    """Causal tracing's map on the same grid: a cell is one site of ``component``, coloured by its recovery
    (restored − corrupted) / (original − corrupted); ● marks recovery ≥ ``threshold``, a box each concept's
    strongest site. Tooltips and the click selection as in ``heat_map`` (column = site)."""
    def details(cell):
        site = f"{component} site {module_line(cell['site'], layers)}"
        if cell.get("untraceable"):
            return {"site": site, "recovery": f"untraceable: the noise moved the score by only "
                    f"{_fmt(cell['corruption_gap'])} (original {_fmt(cell['original_score'])}, corrupted "
                    f"{_fmt(cell['corrupted_score'])})", "score": "–"}
        few = (f" ⚠ fewer than {MIN_UNITS}: the interval covers less than its level"
               if (cell.get("n_units") or MIN_UNITS) < MIN_UNITS else "")
        interval = (f" [{_fmt(cell['recovery_low'])}, {_fmt(cell['recovery_high'])}] over {cell['n_units']} units"
                    f"{few}" if cell.get("recovery_low") is not None else "")
        partial = " (partial run: not every unit is in yet)" if cell.get("partial") else ""
        return {"site": site, "recovery": f"{_fmt(cell['recovery'])}{interval}{partial}",
                "score": f"restored {_fmt(cell['score_mean'])} ± {_fmt(cell['score_std'])} ({cell['n_seeds']} "
                         f"seeds, {cell['n_images']} images); original {_fmt(cell['original_score'])}, corrupted "
                         f"{_fmt(cell['corrupted_score'])}"}

    rows = rows or list(dict.fromkeys(zip(cells["family"].to_pylist(), cells["concept"].to_pylist())))
    marked = [dict(cell, strong=cell["recovery"] is not None and cell["recovery"] >= threshold)
              for cell in cells.to_pylist()]
    grey = {(c["family"], c["concept"]) for c in marked if c.get("untraceable")}
    strongest = {}
    for cell in marked:
        key = (cell["family"], cell["concept"])
        if cell["recovery"] is not None and (key not in strongest or cell["recovery"] > strongest[key]["recovery"]):
            strongest[key] = cell
    boxes = [(strongest[key]["site"], 1, i) for i, key in enumerate(rows) if key in strongest]
    x_title = f"{'text-encoder layer' if component == 'text-encoder' else component + ' site'} (forward order)"
    return _grid(marked, rows, "site", "recovery", "strong", details, num_sites, "recovery", grey, "untraceable",
                 labels, boxes=boxes, layers=layers, x_title=x_title,
                 title=_title(f"Causal tracing recovery · {component}, one site restored", about,
                              f"● recovery ≥ {threshold:g} · box: strongest site · ▲ above 1, ▼ below 0",
                              _partial(marked)))


def contribution_map(cells: pa.Table, layers: dict[int, dict], num_sites: int, k: int,
                     rows: list[tuple[str, str]] | None = None,
                     labels: dict[tuple[str, str], str] | None = None, about: str = "") -> dict:
    """Attention contribution's map on the same grid: a cell is one text-reading site, coloured by its mean
    contribution relative to the concept's dominant site; ● marks the k dominant sites (those its top-k
    intervention feeds the target). Tooltips and the click selection as in ``heat_map`` (column = site)."""
    def details(cell):
        interval = (f", interval [{_fmt(cell['contribution_low'])}, {_fmt(cell['contribution_high'])}]"
                    if cell.get("contribution_low") is not None else "")
        partial = " (partial run)" if cell.get("partial") else ""
        return {"site": f"site {module_line(cell['site'], layers)}",
                "contribution": f"{_fmt(cell['contribution'])} ± {_fmt(cell['contribution_std'])}{interval} "
                                f"({cell['n_images']} images, {cell['n_seeds']} seeds){partial}",
                "share": f"{cell['share']:.1%} of the concept's total · rank {cell['site_rank']}"}

    rows = rows or list(dict.fromkeys(zip(cells["family"].to_pylist(), cells["concept"].to_pylist())))
    marked = [dict(cell, dominant=cell["site_rank"] <= k) for cell in cells.to_pylist()]
    return _grid(marked, rows, "site", "relative", "dominant", details, num_sites, "contribution / dominant",
                 labels=labels, layers=layers, x_title="text-reading attention site (forward order)",
                 title=_title("Attention contribution, relative to the concept's dominant site", about,
                              f"● the {k} dominant sites", _partial(marked)))


def _grid(cells: list[dict], rows: list[tuple[str, str]], column: str, value: str, mark: str, details,
          num_columns: int, scale_name: str, grey: set[tuple[str, str]] = frozenset(), grey_label: str = "",
          labels: dict[tuple[str, str], str] | None = None, upper: str | None = None,
          boxes: list[tuple[int, int, int]] = (), layers: dict[int, dict] | None = None, x_title: str = "",
          title: dict | None = None) -> dict:
    """The heat map the methods share: one row per concept in ``rows``, ``value`` of each cell on the same 0–1
    colour scale (▲ / ▼ where the value lies above / below it: ``upper``, the column of the value's interval's upper
    end, if any), ● where ``mark`` is true, ``details(cell)`` (name -> text) in each cell's tooltip, the ``grey`` rows
    (concepts the data cannot speak to) filled grey and labelled ``grey_label``, a box per (start, size, row) of
    ``boxes`` and the model's blocks (``layers``) marked above the plot."""
    row_of = {key: i for i, key in enumerate(rows)}
    labels = labels or {key: row_label(*key) + (f" ({grey_label})" if key in grey else "") for key in rows}
    order = [labels[key] for key in rows]
    values = []
    for cell in cells:
        key, x = (cell["family"], cell["concept"]), cell[column]
        if key not in row_of or x >= num_columns:
            continue
        values.append({"row": row_of[key], "column": x, "label": labels[key], "x0": x - 0.5, "x1": x + 0.5,
                       "value": cell[value], "concept": row_label(*key),
                       "mark": ("●" if cell[mark] and key not in grey else "") + _beyond(cell[value], cell.get(upper)),
                       **details(cell)})
    fields = list(dict.fromkeys(name for v in values for name in v if name not in (
        "row", "column", "label", "x0", "x1", "value", "mark")))
    tooltip = [{"field": name, "type": "nominal"} for name in fields]
    y = {"field": "label", "type": "nominal", "sort": order, "title": None,
         "axis": {"labelLimit": LABEL_LIMIT, "ticks": False, "domain": False}}

    def x(field: str, end: str | None = None) -> dict:
        encoding = {"x": {"field": field, "type": "quantitative", "title": x_title,
                          "scale": {"domain": [-0.5, num_columns - 0.5], "nice": False, "zero": False},
                          "axis": {"values": list(range(num_columns)), "format": "d", "grid": False,
                                   "ticks": False, "domain": False}}}
        if end:
            encoding["x2"] = {"field": end}
        return encoding

    plot = []
    if grey:
        filled = [{"label": labels[key], "x0": -0.5, "x1": num_columns - 0.5} for key in rows if key in grey]
        plot.append({"name": "grey", "data": {"values": filled},
                     "mark": {"type": "rect", "fill": GREY}, "encoding": {**x("x0", "x1"), "y": y}})
    plot.append({
        "name": CELLS, "data": {"values": values},
        "params": [{"name": SELECTION, "select": {"type": "point", "fields": ["row", "column"], "on": "click",
                                                  "clear": False, "toggle": False}}],
        "mark": {"type": "rect", "stroke": "white", "strokeWidth": 1, "cursor": "pointer", "invalid": None},
        "encoding": {**x("x0", "x1"), "y": y,
                     "color": {"condition": {"test": "datum.value === null", "value": "transparent"},
                               "field": "value", "type": "quantitative",
                               "scale": {"domain": [0, 1], "scheme": DROP_SCALE, "clamp": True},
                               # Under the plot, so that maps drawn one above the other have plots equally wide.
                               "legend": {"title": [scale_name, "(scale 0–1;", "▲ > 1, ▼ < 0)"],
                                          "orient": "bottom", "direction": "horizontal", "titleOrient": "left",
                                          "gradientLength": 240}},
                     "tooltip": tooltip}})
    # The marks carry their cell's row, column and tooltip: hovering or clicking a ● is hovering or clicking its cell.
    plot.append({"name": "marks", "data": {"values": [v for v in values if v["mark"]]},
                 "mark": {"type": "text", "fontSize": 13, "color": "#111", "cursor": "pointer"},
                 "encoding": {**x("column"), "y": y, "text": {"field": "mark"}, "tooltip": tooltip}})
    if boxes:
        drawn = [{"label": order[row], "x0": start - 0.5, "x1": start + size - 0.5} for start, size, row in boxes]
        plot.append({"name": "boxes", "data": {"values": drawn},
                     "mark": {"type": "rect", "filled": False, "stroke": BOX, "strokeWidth": 3},
                     "encoding": {**x("x0", "x1"), "y": y}})
    plot += _blocks(layers or {}, num_columns, x)
    return {"$schema": SCHEMA, "title": title or {}, "height": {"step": ROW_HEIGHT}, "layer": plot,
            "config": {"view": {"stroke": None}, "axis": {"labelFontSize": 12, "titleFontSize": 12}},
            "usermeta": {"embedOptions": EMBED}}


def _blocks(layers: dict[int, dict], num_columns: int, x) -> list[dict]:
    """Dotted lines where the UNet moves from down to mid to up blocks (FLUX: from double- to single-stream blocks),
    labelled above the plot (``x``: the grid's x encoding)."""
    blocks = [layers.get(i, {}).get("block") for i in range(num_columns)]
    if not any(blocks):
        return []
    lines, names, start = [], [], 0
    for i in range(1, num_columns + 1):
        if i == num_columns or blocks[i] != blocks[start]:
            if start:
                lines.append({"x": start - 0.5})
            names.append({"x": (start + i - 1) / 2, "block": blocks[start] or ""})
            start = i
    drawn = [{"name": "block_names", "data": {"values": names},
              "mark": {"type": "text", "fontSize": 11, "baseline": "bottom", "dy": -4},
              "encoding": {**x("x"), "y": {"value": 0}, "text": {"field": "block"}}}]
    if lines:
        drawn.insert(0, {"name": "blocks", "data": {"values": lines},
                         "mark": {"type": "rule", "strokeDash": [2, 3], "color": "#555"}, "encoding": x("x")})
    return drawn


def _beyond(value, high=None) -> str:
    """▲ for a value above the 0–1 colour scale, ▼ for one below it whose interval (upper end ``high``, when known)
    lies below it too: the colour alone shows them as 1 and 0. (A drop a hair below 0 with an interval reaching
    above it is no effect, and is not marked.)"""
    if value is None or 0 <= value <= 1:
        return ""
    return "▲" if value > 1 else "▼" if high is None or high < 0 else ""


def _title(what: str, about: str, legend: str, partial: str = "") -> dict:
    """A title that describes the figure on its own: what is drawn, then (sub-lines) for which model, run, scorer and
    seeds, and how to read the marks, led by ``partial`` (why the run is not complete yet), if any. The legend is the
    last sub-line: an export replaces the title with its own one-line description and keeps only the legend under it
    (``dashboard.exports.titled``)."""
    legend = f"PARTIAL RUN ({partial}) · {legend}" if partial else legend
    # Offset: the block labels sit between the title and the plot.
    return {"text": what, "subtitle": [line for line in (about, legend) if line], "anchor": "start", "offset": 22,
            "fontSize": 14, "subtitleColor": "#555", "subtitleFontSize": 11}


def _partial(cells: list[dict]) -> str:
    """Why a map's run is partial (its cells' ``partial`` flag: not every unit is in yet), or ""."""
    return "still running: not every unit is in yet" if any(cell.get("partial") for cell in cells) else ""


def line_view(concept_rows: pa.Table, seeds: pa.Table, window_size: int, threshold: float,
              layers: dict[int, dict], about: str = "", partial: str = "") -> dict:
    """Score vs. window start for one concept at size m: mean with a ±1 s.d. band over its images, one point per
    seed (mean over prompts), and as reference lines the original, both references (the target prompt and the
    all-layers swap, the one that normalizes marked so) and the threshold's level between the original and it. The
    tooltip of each window gives its layers and verdict. ``about`` (model, run, concept, scorer, seeds) goes under the
    title."""
    rows = sorted((r for r in concept_rows.to_pylist() if r["window_size"] == window_size),
                  key=lambda r: r["window_start"])
    title = _title(f"Score per window of m = {window_size} layers", about,
                   "line: mean over images, band: ±1 s.d., dots: seeds", partial)
    if not rows:
        return {"$schema": SCHEMA, "title": title, "data": {"values": []}, "mark": "point"}
    windows = [{"start": r["window_start"], "score": r["score_mean"], "low": r["score_mean"] - (r["score_std"] or 0),
                "high": r["score_mean"] + (r["score_std"] or 0),
                "window": f"{layer_label(r['window_start'], layers)}: {verdict(r)}"} for r in rows]
    seed_rows = [{"start": r["window_start"], "score": r["score"], "seed": r["seed"]} for r in seeds.to_pylist()
                 if r["kind"] == "window" and r["window_size"] == window_size]
    first = rows[0]
    original, reference = first["original_score"], first["reference_score"]
    normalizes = {kind: " (normalizes)" if first["reference"] == kind else "" for kind in (TARGET, ALL_LAYERS)}
    references = [("original prompt", original, "#2ca02c", [1, 0], "left", "bottom"),
                  (f"target prompt{normalizes[TARGET]}", first["target_score"], "#d62728", [1, 0], "right", "bottom"),
                  (f"all-layers swap{normalizes[ALL_LAYERS]}", first["all_layers_score"], "#9467bd", [2, 2], "left",
                   "top")]
    if original is not None and reference is not None:
        references.append((f"threshold {threshold:g}", original - threshold * (original - reference), "#555", [6, 3],
                           "right", "top"))
    drawn = [{"name": name, "level": level, "color": color, "dash": dash, "side": side, "baseline": baseline}
             for name, level, color, dash, side, baseline in references if level is not None]
    x = {"field": "start", "type": "quantitative", "title": "window start (layer)",
         "scale": {"domain": [windows[0]["start"], windows[-1]["start"]], "nice": False, "zero": False},
         "axis": {"tickMinStep": 1, "format": "d", "grid": False}}
    y = {"type": "quantitative", "title": "score", "scale": {"zero": False}}
    plot = [{"data": {"values": windows}, "mark": {"type": "area", "opacity": 0.15, "color": "#1f77b4"},
             "encoding": {"x": x, "y": {**y, "field": "low"}, "y2": {"field": "high"}}},
            {"data": {"values": seed_rows}, "mark": {"type": "circle", "size": 25, "color": "#505050", "opacity": 0.5},
             "encoding": {"x": x, "y": {**y, "field": "score"},
                          "tooltip": [{"field": "seed", "type": "nominal"},
                                      {"field": "score", "type": "quantitative", "format": ".4f"}]}},
            {"data": {"values": windows}, "mark": {"type": "line", "point": True, "color": "#1f77b4"},
             "encoding": {"x": x, "y": {**y, "field": "score"},
                          "tooltip": [{"field": "window", "type": "nominal"},
                                      {"field": "score", "type": "quantitative", "format": ".4f"}]}},
            {"data": {"values": drawn}, "mark": {"type": "rule", "strokeWidth": 1.5},
             "encoding": {"y": {**y, "field": "level"}, "color": {"field": "color", "type": "nominal", "scale": None},
                          "strokeDash": {"field": "dash", "type": "nominal", "scale": None}}}]
    for side in ("left", "right"):
        for baseline in ("bottom", "top"):
            mine = [line for line in drawn if (line["side"], line["baseline"]) == (side, baseline)]
            if mine:
                plot.append({"data": {"values": mine},
                             "mark": {"type": "text", "align": side, "baseline": baseline, "fontSize": 11,
                                      "dy": -2 if baseline == "bottom" else 2, "dx": 3 if side == "left" else -3},
                             "encoding": {"y": {**y, "field": "level"},
                                          "x": {"value": 0} if side == "left" else {"value": {"expr": "width"}},
                                          "text": {"field": "name"}}})
    return {"$schema": SCHEMA, "title": title, "height": 300, "layer": plot,
            "config": {"axis": {"labelFontSize": 12, "titleFontSize": 12}}, "usermeta": {"embedOptions": EMBED}}


def method_comparison(means: pa.Table, labels: dict[str, str]) -> dict:
    """Grouped bars: mean score change (after − before) per prompt group, one bar per edit."""
    values = [{"group": labels.get(r["group"], r["group"]), "edit": f"{r['method']} ({r['edit_id']})",
               "delta": r["delta"]} for r in means.to_pylist()]
    return {"$schema": SCHEMA, "data": {"values": values}, "mark": "bar", "height": 300,
            "encoding": {"x": {"field": "group", "type": "nominal", "title": None, "sort": None,
                               "axis": {"labelAngle": 0, "labelLimit": 240}},
                         "xOffset": {"field": "edit", "type": "nominal", "sort": None},
                         "y": {"field": "delta", "type": "quantitative", "title": "mean score after − before"},
                         "color": {"field": "edit", "type": "nominal", "sort": None, "title": None,
                                   "legend": {"orient": "bottom", "labelLimit": 400}},
                         "tooltip": [{"field": "edit", "type": "nominal"}, {"field": "group", "type": "nominal"},
                                     {"field": "delta", "type": "quantitative", "format": ".4f"}]},
            "usermeta": {"embedOptions": EMBED}}


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"
