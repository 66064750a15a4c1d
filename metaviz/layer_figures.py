"""Figures for the Layers page: where in the model adaptation happens.

Pure functions from metaviz.updates results to plotly figures (tests inspect `fig.data`).
Relative update sizes are shown in percent of the layer's own size, because absolute norms
grow with a layer's parameter count and would make the largest layer look most active.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from metaviz.figures import QUERY_COLOUR, SUPPORT_COLOUR
from metaviz.models import layer_of

if TYPE_CHECKING:
    from metaviz.updates import AblationRow, LayerStatistics, UpdateNorms

CHANGE_SCALE = [[0.0, "#ffffff"], [1.0, "#7a0177"]]  # no change white, most change dark purple
PAPER_COLOUR = "#6e7781"  # reference lines from the literature


def update_heatmap(norms: UpdateNorms) -> go.Figure:
    """Layers x steps: how far each layer has moved from theta_0, in % of its own size."""
    relative = 100 * norms.layer_relative.T  # [layers, steps]
    fig = go.Figure(go.Heatmap(
        z=relative, x=list(range(norms.steps + 1)), y=list(norms.layers), colorscale=CHANGE_SCALE, zmin=0,
        colorbar={"title": {"text": "change, % of<br>layer size"}, "ticksuffix": "%"},
        customdata=norms.layer_absolute.T,
        hovertemplate="%{y}, step %{x}: moved %{z:.3g}% of its size (norm %{customdata:.3g})<extra></extra>",
    ))
    fig.update_xaxes(title_text="adaptation step (0 = before adapting)", dtick=1 if norms.steps <= 20 else None)
    fig.update_yaxes(autorange="reversed", title_text="layer (input at the top)")
    fig.update_layout(height=120 + 40 * len(norms.layers), margin={"t": 20, "b": 10})
    return fig


TENSOR_ROLES = {"conv.weight": "filters", "conv.bias": "filter biases", "norm.weight": "normalisation scale",
                "norm.bias": "normalisation shift", "weight": "weights", "bias": "biases"}


def tensor_label(name: str) -> str:
    """'blocks.0.conv.weight' -> 'conv1 filters', 'head.bias' -> 'head biases': names a reader can follow."""
    layer = layer_of(name)
    parts = name.split(".")
    role = ".".join(parts[-2:]) if parts[-2] in ("conv", "norm") else parts[-1]
    if parts[0] == "norms":  # an MLP's normalisation of layer i: norms.i.weight
        role = "norm." + parts[-1]
    return f"{layer} {TENSOR_ROLES.get(role, role)}"


def update_bars(norms: UpdateNorms, step: int | None = None) -> go.Figure:
    """Per parameter tensor at `step` (default: the last): absolute change and change relative
    to the tensor's size, side by side."""
    step = norms.steps if step is None else step
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.22,
                        subplot_titles=("Absolute change ‖θₖ − θ₀‖", "Relative change ‖θₖ − θ₀‖ / ‖θ₀‖"))
    names = [tensor_label(name) for name in norms.tensors]
    fig.add_trace(go.Bar(x=norms.tensor_absolute[step], y=names, orientation="h", marker_color=SUPPORT_COLOUR,
                         name="absolute", hovertemplate="%{y}: %{x:.3g}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=100 * norms.tensor_relative[step], y=names, orientation="h",
                         marker_color=QUERY_COLOUR, name="relative",
                         hovertemplate="%{y}: %{x:.3g}% of its size<extra></extra>"), row=1, col=2)
    fig.update_yaxes(autorange="reversed")
    fig.update_yaxes(showticklabels=False, row=1, col=2)
    fig.update_xaxes(ticksuffix="%", row=1, col=2)
    fig.update_layout(height=120 + 22 * len(names), margin={"t": 40, "b": 10}, showlegend=False)
    return fig


def unit_heatmap(norms: UpdateNorms, step: int | None = None) -> go.Figure:
    """Each layer's output units (conv filters, hidden units, classes) at `step`: which of
    them adaptation moved, in % of the unit's own size."""
    step = norms.steps if step is None else step
    width = max(len(values[step]) for values in norms.unit_absolute.values())
    grid = np.full((len(norms.layers), width), np.nan)
    for row, layer in enumerate(norms.layers):
        values = 100 * norms.unit_relative(layer)[step]
        grid[row, :len(values)] = values
    fig = go.Figure(go.Heatmap(
        z=grid, x=list(range(1, width + 1)), y=list(norms.layers), colorscale=CHANGE_SCALE, zmin=0,
        colorbar={"title": {"text": "change"}, "ticksuffix": "%"}, hoverongaps=False,
        hovertemplate="%{y}, unit %{x}: moved %{z:.3g}% of its size<extra></extra>",
    ))
    fig.update_xaxes(title_text="filter / unit (the head: one per class)")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=120 + 40 * len(norms.layers), margin={"t": 20, "b": 10})
    return fig


def update_boxes(statistics: LayerStatistics) -> go.Figure:
    """Per layer, the distribution over tasks of the relative change, and how much different
    tasks agree on its direction (mean cosine similarity of their updates)."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], horizontal_spacing=0.12,
                        subplot_titles=(f"Change per task ({statistics.tasks} tasks), % of layer size",
                                        "Do tasks move a layer<br>the same way?"))  # narrow: two lines
    for index, layer in enumerate(statistics.layers):
        fig.add_trace(go.Box(y=100 * statistics.relative[:, index], name=layer, marker_color=SUPPORT_COLOUR,
                             boxpoints="outliers", showlegend=False,
                             hovertemplate=f"{layer}: %{{y:.3g}}%<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=list(statistics.layers), y=statistics.cosine, marker_color=QUERY_COLOUR,
                         showlegend=False,
                         hovertemplate="%{x}: mean cosine similarity %{y:.2f}<extra></extra>"), row=1, col=2)
    fig.update_yaxes(ticksuffix="%", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[-1, 1], title_text="cosine similarity (1 = same direction)", row=1, col=2)
    fig.update_layout(height=400, margin={"t": 60, "b": 10})
    return fig


def cka_bars(statistics: LayerStatistics, reference: float | None = 0.9) -> go.Figure:
    """Per layer: linear CKA between the query images' representation before and after
    adapting (mean over tasks, 95% CI); `reference` draws the ANIL paper's 'barely changed' line."""
    values = statistics.cka
    mean = np.nanmean(values, axis=0)
    counts = np.sum(~np.isnan(values), axis=0)
    spread = np.where(counts > 1, 1.96 * np.nanstd(values, axis=0, ddof=1) / np.sqrt(np.maximum(counts, 1)), 0)
    fig = go.Figure(go.Bar(x=list(statistics.layers), y=mean, error_y={"type": "data", "array": spread},
                           marker_color=SUPPORT_COLOUR, name="CKA",
                           hovertemplate="%{x}: similarity %{y:.3f}<extra></extra>"))
    if reference is not None:
        fig.add_hline(y=reference, line_dash="dash", line_color=PAPER_COLOUR,
                      annotation_text=f"{reference:g}: barely changed (ANIL paper)", annotation_position="bottom right")
    fig.update_yaxes(range=[0, 1.05], title_text="similarity before vs after (CKA)")
    fig.update_xaxes(title_text="layer")
    fig.update_layout(height=340, margin={"t": 20, "b": 10})
    return fig


def ablation_figure(rows: Sequence[AblationRow], metric: str = "accuracy", chance: float | None = None) -> go.Figure:
    """Query accuracy (or MSE) with 95% CI for each choice of layers that adapt."""
    scale = 100 if metric == "accuracy" else 1
    labels = [row.label for row in rows]
    fig = go.Figure(go.Bar(
        x=[scale * row.mean for row in rows], y=labels, orientation="h", marker_color=QUERY_COLOUR,
        error_x={"type": "data", "array": [scale * row.ci95 for row in rows]},
        hovertemplate="%{y}: %{x:.3g}" + ("%" if scale == 100 else "") + "<extra></extra>",
    ))
    if chance is not None:
        fig.add_vline(x=scale * chance, line_dash="dot", line_color=PAPER_COLOUR, annotation_text="chance")
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="accuracy on new images after adapting" if scale == 100 else
                     "error on new points after adapting (MSE, lower is better)",
                     ticksuffix="%" if scale == 100 else None, range=[0, 105] if scale == 100 else None)
    fig.update_layout(height=120 + 36 * len(rows), margin={"t": 20, "b": 10})
    return fig


def ablation_table(rows: Sequence[AblationRow], metric: str = "accuracy") -> list[dict]:
    """The ablation as table rows of plain text; differences are against the first row (all layers)."""
    if metric == "accuracy":
        column = "accuracy (95% CI)"
        value = lambda mean, ci95: f"{100 * mean:.1f}% ± {100 * ci95:.1f}"  # noqa: E731
        difference = lambda delta: f"{100 * delta:+.1f} points"  # noqa: E731
    else:
        column = "MSE (95% CI)"
        value = lambda mean, ci95: f"{mean:.3g} ± {ci95:.2g}"  # noqa: E731
        difference = lambda delta: f"{delta:+.3g}"  # noqa: E731
    reference = rows[0].mean if rows else 0.0
    return [{"setting": row.label, "layers that adapt": ", ".join(row.adapt_layers),
             column: value(row.mean, row.ci95), "vs all layers": difference(row.mean - reference)}
            for row in rows]
