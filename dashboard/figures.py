"""Plotly figures of the Layer map page: the heat map of normalized drops and the per-concept line view."""

import plotly.graph_objects as go
import pyarrow as pa

DROP_SCALE = "YlOrRd"


def layer_label(index: int, layers: dict[int, dict]) -> str:
    """'8 (up, 16²)' when the sweep recorded the layer, else '8'."""
    info = layers.get(index)
    return f"{index} ({info['block']}, {info['resolution']}²)" if info else str(index)


def window_label(start: int, size: int) -> str:
    return f"layer {start}" if size == 1 else f"layers {start}–{start + size - 1}"


def row_label(family: str, concept: str) -> str:
    return f"{family} · {concept}"


def heat_map(cells: pa.Table, minimal: pa.Table, layers: dict[int, dict], num_layers: int,
             window_size: int, threshold: float) -> go.Figure:
    """Rows = concepts grouped by family, columns = layers in forward order; a cell is the window of
    ``window_size`` layers starting there, coloured by its normalized drop.

    A dot marks windows that localize at ``threshold``; a box spans each concept's minimal localizing window (which
    may be of another size). An invisible marker on every cell carries the hover text and makes cells clickable
    (Plotly heat maps send no selection events): its x is the window start, its y the row (the order of first
    appearance in ``cells``).
    """
    rows = list(dict.fromkeys(zip(cells["family"].to_pylist(), cells["concept"].to_pylist())))
    row_of = {key: i for i, key in enumerate(rows)}
    z = [[None] * num_layers for _ in rows]
    marks = [[""] * num_layers for _ in rows]
    points = {"x": [], "y": [], "customdata": []}
    for cell in cells.to_pylist():
        i, start = row_of[(cell["family"], cell["concept"])], cell["window_start"]
        if start >= num_layers:
            continue
        drop = cell["normalized_drop"]
        z[i][start] = drop
        marks[i][start] = "●" if cell["localizes"] else ""
        spanned = " · ".join(layer_label(j, layers) for j in range(start, start + window_size))
        points["customdata"].append(
            f"<b>{row_label(cell['family'], cell['concept'])}</b><br>{window_label(start, window_size)}: {spanned}<br>"
            f"normalized drop {_fmt(drop)}<br>score {_fmt(cell['score_mean'])} ± {_fmt(cell['score_std'])} "
            f"({cell['n_seeds']} seeds, {cell['n_images']} images)<br>"
            f"original {_fmt(cell['original_score'])}, target {_fmt(cell['target_score'])}")
        points["x"].append(start)
        points["y"].append(i)
    figure = go.Figure(go.Heatmap(
        z=z, x=list(range(num_layers)), y=list(range(len(rows))), zmin=0, zmax=1, colorscale=DROP_SCALE,
        text=marks, texttemplate="%{text}", hoverinfo="skip",
        colorbar={"title": {"text": "normalized<br>drop"}}, xgap=1, ygap=1))
    figure.add_trace(go.Scatter(
        **points, mode="markers", marker={"size": 18, "opacity": 0, "symbol": "square"},
        hovertemplate="%{customdata}<extra></extra>",
        selected={"marker": {"opacity": 0}}, unselected={"marker": {"opacity": 0}}, showlegend=False))
    for window in minimal.to_pylist():
        key = (window["family"], window["concept"])
        if key in row_of:
            start, size = window["window_start"], window["window_size"]
            figure.add_shape(type="rect", x0=start - 0.5, x1=start + size - 0.5, y0=row_of[key] - 0.5,
                             y1=row_of[key] + 0.5, line={"color": "#1f3b73", "width": 3})
    _mark_blocks(figure, layers, num_layers)
    figure.update_layout(
        height=160 + 34 * len(rows), margin={"l": 10, "r": 10, "t": 40, "b": 40}, clickmode="event+select",
        dragmode=False, title={"text": f"window size m = {window_size} · ● drop ≥ {threshold:g} · "
                                       "box: minimal localizing window", "font": {"size": 14}})
    figure.update_xaxes(title="cross-attention layer (forward order) = window start", tickmode="array",
                        tickvals=list(range(num_layers)), range=[-0.5, num_layers - 0.5])
    figure.update_yaxes(tickmode="array", tickvals=list(range(len(rows))),
                        ticktext=[row_label(*key) for key in rows], autorange="reversed")
    return figure


def _mark_blocks(figure: go.Figure, layers: dict[int, dict], num_layers: int) -> None:
    """Dotted lines where the UNet moves from down to mid to up blocks, labelled above the plot."""
    blocks = [layers.get(i, {}).get("block") for i in range(num_layers)]
    if not any(blocks):
        return
    start = 0
    for i in range(1, num_layers + 1):
        if i == num_layers or blocks[i] != blocks[start]:
            if start:
                figure.add_vline(x=start - 0.5, line={"dash": "dot", "color": "#555"})
            figure.add_annotation(x=(start + i - 1) / 2, y=1.0, yref="paper", yanchor="bottom", showarrow=False,
                                  text=blocks[start] or "", font={"size": 11})
            start = i


def line_view(concept_rows: pa.Table, seeds: pa.Table, window_size: int, threshold: float,
              layers: dict[int, dict]) -> go.Figure:
    """Score vs. window start for one concept at size m: mean with a ±1 s.d. band over its images, one point per
    seed (mean over prompts), and the original, target and threshold levels as reference lines."""
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
        customdata=[layer_label(s, layers) for s in starts],
        hovertemplate="start %{customdata}: %{y:.4f}<extra></extra>", line={"color": "#1f77b4"}))
    original, target = rows[0]["original_score"], rows[0]["target_score"]
    references = [("original prompt", original, "#2ca02c", "solid", "top left"),
                  ("target prompt", target, "#d62728", "solid", "top right")]
    if original is not None and target is not None:
        references.append((f"threshold {threshold:g}", original - threshold * (original - target), "#555", "dash",
                           "bottom right"))
    for name, level, color, dash, position in references:
        if level is not None:
            figure.add_hline(y=level, line={"color": color, "dash": dash}, annotation_text=name,
                             annotation_position=position)
    figure.update_layout(height=380, margin={"l": 10, "r": 10, "t": 30, "b": 40}, legend={"orientation": "h"})
    figure.update_xaxes(title="window start (layer)", dtick=1)
    figure.update_yaxes(title="score")
    return figure


def method_comparison(means: pa.Table, labels: dict[str, str]) -> go.Figure:
    """Grouped bars: mean score change (after − before) per prompt group, one bar per edit."""
    figure = go.Figure()
    rows = means.to_pylist()
    for edit_id in dict.fromkeys(r["edit_id"] for r in rows):
        mine = [r for r in rows if r["edit_id"] == edit_id]
        figure.add_trace(go.Bar(x=[labels.get(r["group"], r["group"]) for r in mine], y=[r["delta"] for r in mine],
                                name=f"{mine[0]['method']} ({edit_id})"))
    figure.update_layout(barmode="group", height=360, margin={"l": 10, "r": 10, "t": 30, "b": 40},
                         legend={"orientation": "h"}, yaxis_title="mean score after − before")
    return figure


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"
