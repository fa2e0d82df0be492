"""Plotly figures of the Layer map page: the heat maps of LocoGen's normalized drops, causal tracing's recoveries and
attention contribution's per-site map (one grid, one colour scale), and the per-concept line view."""

import html

import plotly.graph_objects as go
import pyarrow as pa

from locolab.contract.names import ALL_LAYERS, TARGET
from locolab.contract.notation import window_label
from locolab.contract.summaries import MIN_UNITS, verdict

DROP_SCALE = "YlOrRd"
GREY = "#d9d9d9"  # rows of concepts whose data cannot speak (not measurable, untraceable)


def _text(value) -> str:
    """A stored value as Plotly label text: Plotly reads a subset of HTML in labels (links, too), so it is escaped."""
    return html.escape(str(value), quote=False)


def layer_label(index: int, layers: dict[int, dict]) -> str:
    """'8 (up, 16²)' when the sweep recorded the layer, else '8'."""
    info = layers.get(index)
    return f"{index} ({_text(info['block'])}, {_text(info['resolution'])}²)" if info else str(index)


def module_line(index: int, layers: dict[int, dict]) -> str:
    """'8 (up, 16²) up_blocks.1.attentions.0.transformer_blocks.0.attn2': the layer with its module path, when the
    sweep recorded it."""
    info = layers.get(index) or {}
    return layer_label(index, layers) + (f" {_text(info['path'])}" if info.get("path") else "")


def row_label(family: str, concept: str) -> str:
    return f"{family} · {concept}"


def heat_map(cells: pa.Table, minimal: pa.Table, layers: dict[int, dict], num_layers: int,
             window_size: int, threshold: float, rows: list[tuple[str, str]] | None = None,
             labels: dict[tuple[str, str], str] | None = None, about: str = "", partial: str = "") -> go.Figure:
    """Rows = concepts grouped by family, columns = layers in forward order; a cell is the window of
    ``window_size`` layers starting there, coloured by its normalized drop on a 0–1 scale (▲ marks a drop above 1,
    ▼ one below 0: the colour alone would hide them).

    A dot marks windows that localize at ``threshold`` (``contract.summaries.judge``: the paired test, adjusted over
    the concept's windows); a box spans each
    concept's minimal localizing window when it is of this size (``minimal``'s other windows are not drawn: a box of
    another size would mean other cells). Concepts that are not measurable are grey, labelled so, and their hover says
    why. An invisible marker on every cell carries the hover text (modules with their block and resolution, point,
    interval, verdict) and makes cells clickable (Plotly heat maps send no selection events): its x is the window
    start, its y the row (the order of ``rows``, by default the order of first appearance in ``cells``). ``labels``
    replaces the rows' tick labels (maps drawn one above the other need the same labels to line up). ``about`` (model,
    run, scorer, seeds) goes into the title, so that an exported figure says what it shows; ``partial`` (e.g. "status
    running, shards 1/2") marks a run that has not finished.
    """
    def hover(cell):
        start = cell["window_start"]
        spanned = "<br>".join(f"· {module_line(j, layers)}" for j in range(start, start + window_size))
        reference = "all-layers swap" if cell["reference"] == ALL_LAYERS else "target prompt"
        return (f"{window_label(start, window_size)}:<br>{spanned}<br>normalized drop {_fmt(cell['normalized_drop'])}, "
                f"{cell['level']:.0%} interval [{_fmt(cell['drop_low'])}, {_fmt(cell['drop_high'])}]<br>"
                f"{_text(verdict(cell))}<br>"
                f"score {_fmt(cell['score_mean'])} ± {_fmt(cell['score_std'])} ({cell['n_seeds']} seeds, "
                f"{cell['n_images']} images)<br>original {_fmt(cell['original_score'])}, target "
                f"{_fmt(cell['target_score'])}, all-layers {_fmt(cell['all_layers_score'])}; normalized by the "
                f"{reference} (gap {_fmt(cell['gap'])} [{_fmt(cell['gap_low'])}, {_fmt(cell['gap_high'])}])")

    rows = rows or list(dict.fromkeys(zip(cells["family"].to_pylist(), cells["concept"].to_pylist())))
    data = cells.to_pylist()
    grey = {(c["family"], c["concept"]) for c in data if not c["measurable"]}
    shown = [dict(c, normalized_drop=None) if (c["family"], c["concept"]) in grey else c for c in data]
    figure = _grid(shown, rows, "window_start", "normalized_drop", "localizes", hover, num_layers,
                   "normalized drop", grey, "not measurable", labels, upper="drop_high")
    row_of = {key: i for i, key in enumerate(rows)}
    for window in minimal.to_pylist():
        key = (window["family"], window["concept"])
        if key in row_of and window["window_size"] == window_size:
            _box(figure, window["window_start"], window["window_size"], row_of[key])
    _mark_blocks(figure, layers, num_layers)
    _title(figure, f"LocoGen normalized drop · window size m = {window_size}", about,
           f"● drop > {threshold:g} by the paired test, Holm-adjusted · box: minimal localizing window (drawn where it "
           "has this m) · grey: not measurable · ▲ above 1, ▼ below 0", partial)
    figure.update_xaxes(title="cross-attention layer (forward order) = window start")
    return figure


def trace_map(cells: pa.Table, layers: dict[int, dict], num_sites: int, component: str, threshold: float,
              rows: list[tuple[str, str]] | None = None, labels: dict[tuple[str, str], str] | None = None,
              about: str = "") -> go.Figure:
    """Causal tracing's map on the same grid: a cell is one site of ``component``, coloured by its recovery
    (restored − corrupted) / (original − corrupted); ● marks recovery ≥ ``threshold``, a box each concept's
    strongest site. Hover and click markers as in ``heat_map`` (x = site)."""
    def hover(cell):
        if cell.get("untraceable"):
            return (f"{component} site {module_line(cell['site'], layers)}<br>untraceable: the noise moved the score "
                    f"by only {_fmt(cell['corruption_gap'])} (original {_fmt(cell['original_score'])}, corrupted "
                    f"{_fmt(cell['corrupted_score'])})")
        few = (f" ⚠ fewer than {MIN_UNITS}: the interval covers less than its level"
               if (cell.get("n_units") or MIN_UNITS) < MIN_UNITS else "")
        interval = (f" [{_fmt(cell['recovery_low'])}, {_fmt(cell['recovery_high'])}] over {cell['n_units']} units"
                    f"{few}" if cell.get("recovery_low") is not None else "")
        partial = " (partial run: not every unit is in yet)" if cell.get("partial") else ""
        return (f"{component} site {module_line(cell['site'], layers)}<br>recovery {_fmt(cell['recovery'])}"
                f"{interval}{partial}<br>restored {_fmt(cell['score_mean'])} ± {_fmt(cell['score_std'])} "
                f"({cell['n_seeds']} seeds, {cell['n_images']} images)<br>original {_fmt(cell['original_score'])}, "
                f"corrupted {_fmt(cell['corrupted_score'])}")

    rows = rows or list(dict.fromkeys(zip(cells["family"].to_pylist(), cells["concept"].to_pylist())))
    marked = [dict(cell, strong=cell["recovery"] is not None and cell["recovery"] >= threshold)
              for cell in cells.to_pylist()]
    grey = {(c["family"], c["concept"]) for c in marked if c.get("untraceable")}
    figure = _grid(marked, rows, "site", "recovery", "strong", hover, num_sites, "recovery", grey, "untraceable",
                   labels)
    strongest = {}
    for cell in marked:
        key = (cell["family"], cell["concept"])
        if cell["recovery"] is not None and (key not in strongest or cell["recovery"] > strongest[key]["recovery"]):
            strongest[key] = cell
    for i, key in enumerate(rows):
        if key in strongest:
            _box(figure, strongest[key]["site"], 1, i)
    _mark_blocks(figure, layers, num_sites)
    _title(figure, f"Causal tracing recovery · {component}, one site restored", about,
           f"● recovery ≥ {threshold:g} · box: strongest site · ▲ above 1, ▼ below 0", _partial(marked))
    figure.update_xaxes(title=f"{'text-encoder layer' if component == 'text-encoder' else component + ' site'} "
                              "(forward order)")
    return figure


def contribution_map(cells: pa.Table, layers: dict[int, dict], num_sites: int, k: int,
                     rows: list[tuple[str, str]] | None = None,
                     labels: dict[tuple[str, str], str] | None = None, about: str = "") -> go.Figure:
    """Attention contribution's map on the same grid: a cell is one text-reading site, coloured by its mean
    contribution relative to the concept's dominant site; ● marks the k dominant sites (those its top-k
    intervention feeds the target). Hover and click markers as in ``heat_map`` (x = site)."""
    def hover(cell):
        interval = (f", interval [{_fmt(cell['contribution_low'])}, {_fmt(cell['contribution_high'])}]"
                    if cell.get("contribution_low") is not None else "")
        partial = " (partial run)" if cell.get("partial") else ""
        return (f"site {module_line(cell['site'], layers)}<br>contribution {_fmt(cell['contribution'])} ± "
                f"{_fmt(cell['contribution_std'])}{interval} ({cell['n_images']} images, {cell['n_seeds']} seeds)"
                f"{partial}<br>"
                f"{cell['share']:.1%} of the concept's total · rank {cell['site_rank']}")

    rows = rows or list(dict.fromkeys(zip(cells["family"].to_pylist(), cells["concept"].to_pylist())))
    marked = [dict(cell, dominant=cell["site_rank"] <= k) for cell in cells.to_pylist()]
    figure = _grid(marked, rows, "site", "relative", "dominant", hover, num_sites, "contribution / dominant",
                   labels=labels)
    _mark_blocks(figure, layers, num_sites)
    _title(figure, "Attention contribution, relative to the concept's dominant site", about,
           f"● the {k} dominant sites", _partial(marked))
    figure.update_xaxes(title="text-reading attention site (forward order)")
    return figure


def _grid(cells: list[dict], rows: list[tuple[str, str]], column: str, value: str, mark: str, hover, num_columns: int,
          colorbar: str, grey: set[tuple[str, str]] = frozenset(), grey_label: str = "",
          labels: dict[tuple[str, str], str] | None = None, upper: str | None = None) -> go.Figure:
    """The heat map both methods share: one row per concept in ``rows``, ``value`` of each cell on the same 0–1
    colour scale (▲ / ▼ beside any mark where the value lies above / below it: ``upper``, the column of the value's
    interval's upper end, if any), ● where ``mark`` is true, the
    invisible hover/click markers, and the ``grey`` rows (concepts the data cannot speak to) filled grey and labelled
    ``grey_label``."""
    row_of = {key: i for i, key in enumerate(rows)}
    z = [[None] * num_columns for _ in rows]
    marks = [[""] * num_columns for _ in rows]
    points = {"x": [], "y": [], "customdata": []}
    for cell in cells:
        key, x = (cell["family"], cell["concept"]), cell[column]
        if key not in row_of or x >= num_columns:
            continue
        i = row_of[key]
        z[i][x] = cell[value]
        marks[i][x] = ("●" if cell[mark] and key not in grey else "") + _beyond(cell[value], cell.get(upper))
        points["customdata"].append(f"<b>{_text(row_label(*key))}</b><br>{hover(cell)}")
        points["x"].append(x)
        points["y"].append(i)
    figure = go.Figure(go.Heatmap(
        z=z, x=list(range(num_columns)), y=list(range(len(rows))), zmin=0, zmax=1, colorscale=DROP_SCALE,
        text=marks, texttemplate="%{text}", hoverinfo="skip",
        colorbar={"title": {"text": f"{colorbar}<br>(scale 0–1;<br>▲ > 1, ▼ < 0)", "side": "right"}},
        xgap=1, ygap=1))
    figure.add_trace(go.Scatter(
        **points, mode="markers", marker={"size": 18, "opacity": 0, "symbol": "square"},
        hovertemplate="%{customdata}<extra></extra>",
        selected={"marker": {"opacity": 0}}, unselected={"marker": {"opacity": 0}}, showlegend=False))
    # A right margin wider than either colour bar keeps both maps' plot areas equally wide: their columns line up.
    figure.update_layout(height=210 + 34 * len(rows), margin={"l": 10, "r": 140, "t": 110, "b": 40},
                         clickmode="event+select", dragmode=False)
    figure.update_xaxes(tickmode="array", tickvals=list(range(num_columns)), range=[-0.5, num_columns - 0.5],
                        automargin=True)
    if grey:
        # After the other traces so their indices stay put; it only fills rows whose own cells are empty.
        figure.add_trace(go.Heatmap(
            z=[[1 if key in grey else None] * num_columns for key in rows], x=list(range(num_columns)),
            y=list(range(len(rows))), colorscale=[[0, GREY], [1, GREY]], showscale=False, hoverinfo="skip",
            xgap=1, ygap=1))
    labels = labels or {key: row_label(*key) + (f" ({grey_label})" if key in grey else "") for key in rows}
    # Automatic margins: the concept names push the plot right instead of being cut at the figure's edge.
    figure.update_yaxes(tickmode="array", tickvals=list(range(len(rows))), autorange="reversed", automargin=True,
                        ticktext=[_text(labels[key]) for key in rows])
    return figure


def _beyond(value, high=None) -> str:
    """▲ for a value above the 0–1 colour scale, ▼ for one below it whose interval (upper end ``high``, when known)
    lies below it too: the colour alone shows them as 1 and 0. (A drop a hair below 0 with an interval reaching
    above it is no effect, and is not marked.)"""
    if value is None or 0 <= value <= 1:
        return ""
    return "▲" if value > 1 else "▼" if high is None or high < 0 else ""


def _title(figure: go.Figure, what: str, about: str, legend: str, partial: str = "") -> None:
    """A figure title that describes the figure on its own: what is drawn, for which model, run, scorer and seeds,
    and how to read the marks, led by ``partial`` (why the run is not complete yet), if any. The legend is also kept
    apart (``layout.meta["legend"]``): an export replaces the title with its own one-line description and keeps only
    the legend under it (``dashboard.exports.titled``)."""
    legend = f"PARTIAL RUN ({partial}) · {legend}" if partial else legend
    head = f"{_text(what)}<br><sub>{_text(about)}</sub>" if about else _text(what)
    # Anchored to the top of the figure, so its lines stay clear of the block labels above the plot.
    figure.update_layout(title={"text": f"{head}<br><sub>{_text(legend)}</sub>", "font": {"size": 14},
                                "yref": "container", "y": 1, "yanchor": "top", "pad": {"t": 8}},
                         meta={"legend": _text(legend)})


def _partial(cells: list[dict]) -> str:
    """Why a map's run is partial (its cells' ``partial`` flag: not every unit is in yet), or ""."""
    return "still running: not every unit is in yet" if any(cell.get("partial") for cell in cells) else ""


def _box(figure: go.Figure, start: int, size: int, row: int) -> None:
    figure.add_shape(type="rect", x0=start - 0.5, x1=start + size - 0.5, y0=row - 0.5, y1=row + 0.5,
                     line={"color": "#1f3b73", "width": 3})


def _mark_blocks(figure: go.Figure, layers: dict[int, dict], num_layers: int) -> None:
    """Dotted lines where the UNet moves from down to mid to up blocks (FLUX: from double- to single-stream blocks),
    labelled above the plot."""
    blocks = [layers.get(i, {}).get("block") for i in range(num_layers)]
    if not any(blocks):
        return
    start = 0
    for i in range(1, num_layers + 1):
        if i == num_layers or blocks[i] != blocks[start]:
            if start:
                figure.add_vline(x=start - 0.5, line={"dash": "dot", "color": "#555"})
            figure.add_annotation(x=(start + i - 1) / 2, y=1.0, yref="paper", yanchor="bottom", showarrow=False,
                                  text=_text(blocks[start] or ""), font={"size": 11})
            start = i


def line_view(concept_rows: pa.Table, seeds: pa.Table, window_size: int, threshold: float,
              layers: dict[int, dict], about: str = "", partial: str = "") -> go.Figure:
    """Score vs. window start for one concept at size m: mean with a ±1 s.d. band over its images, one point per
    seed (mean over prompts), and as reference lines the original, both references (the target prompt and the
    all-layers swap, the one that normalizes marked so) and the threshold's level between the original and it. The
    hover of each window gives its drop with the interval and the verdict. ``about`` (model, run, concept, scorer,
    seeds) goes into the title."""
    rows = sorted((r for r in concept_rows.to_pylist() if r["window_size"] == window_size),
                  key=lambda r: r["window_start"])
    figure = go.Figure()
    if not rows:
        return figure
    starts = [r["window_start"] for r in rows]
    means = [r["score_mean"] for r in rows]
    stds = [r["score_std"] or 0.0 for r in rows]
    figure.add_trace(go.Scatter(x=starts + starts[::-1], y=[m + s for m, s in zip(means, stds)]
                                + [m - s for m, s in zip(means[::-1], stds[::-1])], fill="toself", line={"width": 0},
                                fillcolor="rgba(31, 119, 180, 0.15)", hoverinfo="skip", name="±1 s.d. (images)"))
    seed_rows = [r for r in seeds.to_pylist() if r["kind"] == "window" and r["window_size"] == window_size]
    figure.add_trace(go.Scatter(
        x=[r["window_start"] for r in seed_rows], y=[r["score"] for r in seed_rows], mode="markers",
        marker={"size": 5, "color": "rgba(80, 80, 80, 0.5)"}, name="per seed",
        customdata=[r["seed"] for r in seed_rows], hovertemplate="seed %{customdata}: %{y:.4f}<extra></extra>"))
    figure.add_trace(go.Scatter(
        x=starts, y=means, mode="lines+markers", name=f"window mean (m = {window_size})",
        customdata=[f"{layer_label(r['window_start'], layers)}: {_text(verdict(r))}" for r in rows],
        hovertemplate="start %{customdata}<br>score %{y:.4f}<extra></extra>", line={"color": "#1f77b4"}))
    first = rows[0]
    original, reference = first["original_score"], first["reference_score"]
    normalizes = {kind: " (normalizes)" if first["reference"] == kind else "" for kind in (TARGET, ALL_LAYERS)}
    references = [("original prompt", original, "#2ca02c", "solid", "top left"),
                  (f"target prompt{normalizes[TARGET]}", first["target_score"], "#d62728", "solid", "top right"),
                  (f"all-layers swap{normalizes[ALL_LAYERS]}", first["all_layers_score"], "#9467bd", "dot",
                   "bottom left")]
    if original is not None and reference is not None:
        references.append((f"threshold {threshold:g}", original - threshold * (original - reference), "#555", "dash",
                           "bottom right"))
    drawn = [(name, level, color, dash, position) for name, level, color, dash, position in references
             if level is not None]
    # One layout update, not add_hline per line (a third of a second each: plotly redoes its subplot bookkeeping).
    figure.update_layout(
        shapes=[*figure.layout.shapes, *(
            {"type": "line", "xref": "x domain", "x0": 0, "x1": 1, "yref": "y", "y0": level, "y1": level,
             "line": {"color": color, "dash": dash}} for _, level, color, dash, _ in drawn)],
        annotations=[*figure.layout.annotations, *(
            {"text": name, "xref": "x domain", "x": 0 if "left" in position else 1,
             "xanchor": "left" if "left" in position else "right", "yref": "y", "y": level,
             "yanchor": "bottom" if "top" in position else "top", "showarrow": False}
            for name, level, _, _, position in drawn)])
    figure.update_layout(height=420, margin={"l": 10, "r": 10, "t": 70, "b": 40}, legend={"orientation": "h"})
    _title(figure, f"Score per window of m = {window_size} layers", about,
           "line: mean over images, band: ±1 s.d., dots: seeds", partial)
    figure.update_xaxes(title="window start (layer)", dtick=1, automargin=True)
    figure.update_yaxes(title="score", automargin=True)
    return figure


def method_comparison(means: pa.Table, labels: dict[str, str]) -> go.Figure:
    """Grouped bars: mean score change (after − before) per prompt group, one bar per edit."""
    figure = go.Figure()
    rows = means.to_pylist()
    for edit_id in dict.fromkeys(r["edit_id"] for r in rows):
        mine = [r for r in rows if r["edit_id"] == edit_id]
        figure.add_trace(go.Bar(x=[_text(labels.get(r["group"], r["group"])) for r in mine],
                                y=[r["delta"] for r in mine], name=_text(f"{mine[0]['method']} ({edit_id})")))
    figure.update_layout(barmode="group", height=360, margin={"l": 10, "r": 10, "t": 30, "b": 40},
                         legend={"orientation": "h"}, yaxis_title="mean score after − before")
    figure.update_xaxes(automargin=True)
    figure.update_yaxes(automargin=True)
    return figure


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"
