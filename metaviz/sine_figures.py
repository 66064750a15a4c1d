"""Figures for the sine-wave lesson: pure functions from metaviz.sine_lesson results to plotly.

The two models sit side by side on the same axes: the true wave (grey), the K given points
(blue, the support set's colour everywhere), the model's curve at the chosen step (orange,
the colour of what is predicted) and, faint, its curve before adapting. One animation frame
per step, with a slider and a Play button, so an audience watches both curves move together.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from metaviz.figures import QUERY_COLOUR, SUPPORT_COLOUR

if TYPE_CHECKING:
    from metaviz.sine_lesson import SineAdaptation
    from metaviz.tasks import Task

TRUTH_COLOUR = "#6e7781"
BASELINE_COLOUR = "#8c564b"  # the pre-trained model, wherever the two are compared in one chart
PANEL_TITLES = ("Meta-learned start (MAML)", "Pre-trained on all waves at once")


def _step_words(step: int) -> str:
    return "before learning (step 0)" if step == 0 else f"after {step} step{'s' if step > 1 else ''}"


def _panel_title(name: str, adaptation: SineAdaptation, step: int) -> str:
    return f"<b>{name}</b><br>{_step_words(step)}: error {adaptation.curve_error[step]:.2f}"


def sine_lesson_figure(task: Task, meta: SineAdaptation, baseline: SineAdaptation, step: int | None = None) -> go.Figure:
    """Both models' curves on the true wave, at `step` (default: the last); frames for every step."""
    steps = min(meta.steps, baseline.steps)
    step = steps if step is None else min(max(int(step), 0), steps)
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[_panel_title(name, adaptation, step)
                                        for name, adaptation in zip(PANEL_TITLES, (meta, baseline))])
    support_x, support_y = np.asarray(task.support_x)[:, 0], np.asarray(task.support_y)[:, 0]
    for column, adaptation in enumerate((meta, baseline), start=1):
        legend = column == 1  # one legend for both panels
        fig.add_trace(go.Scatter(x=adaptation.x, y=adaptation.truth, mode="lines", name="the true wave",
                                 line={"color": TRUTH_COLOUR, "width": 2}, showlegend=legend, hoverinfo="skip"),
                      row=1, col=column)
        fig.add_trace(go.Scatter(x=adaptation.x, y=adaptation.predictions[0], mode="lines",
                                 name="the model before learning", showlegend=legend, hoverinfo="skip",
                                 line={"color": QUERY_COLOUR, "width": 1.5, "dash": "dot"}, opacity=0.5),
                      row=1, col=column)
        fig.add_trace(go.Scatter(x=adaptation.x, y=adaptation.predictions[step], mode="lines",
                                 name="the model's curve at this step", showlegend=legend,
                                 line={"color": QUERY_COLOUR, "width": 3},
                                 hovertemplate="x %{x:.2f}: predicts %{y:.2f}<extra></extra>"), row=1, col=column)
        fig.add_trace(go.Scatter(x=support_x, y=support_y, mode="markers", name=f"the {len(support_x)} given points",
                                 marker={"color": SUPPORT_COLOUR, "size": 11, "line": {"color": "white", "width": 1}},
                                 showlegend=legend, hovertemplate="given point (%{x:.2f}, %{y:.2f})<extra></extra>"),
                      row=1, col=column)
    curves = [2, 6]  # the "at this step" trace of each panel (4 traces a panel)
    fig.frames = [{"name": str(k), "traces": curves,
                   "data": [{"type": "scatter", "y": meta.predictions[k]}, {"type": "scatter", "y": baseline.predictions[k]}],
                   "layout": {"annotations": [{**annotation.to_plotly_json(), "text": _panel_title(name, adaptation, k)}
                                              for annotation, name, adaptation in
                                              zip(fig.layout.annotations, PANEL_TITLES, (meta, baseline))]}}
                  for k in range(steps + 1)]
    every = {"frame": {"duration": 0, "redraw": False}, "mode": "immediate", "transition": {"duration": 0}}
    play = {"frame": {"duration": 700, "redraw": False}, "transition": {"duration": 300}, "fromcurrent": False,
            "mode": "immediate"}
    limit = 1.15 * max(np.abs(meta.truth).max(), np.abs(support_y).max(), 1.0)
    fig.update_yaxes(range=[-limit - 1, limit + 1], zeroline=True, zerolinecolor="#e6e9ef")
    fig.update_xaxes(title_text="x", zeroline=False)
    fig.update_yaxes(title_text="y", row=1, col=1)
    fig.update_layout(
        # the legend above the panels' titles; the Play button and the slider below the x axes
        height=600, margin={"l": 10, "r": 10, "t": 110, "b": 10}, plot_bgcolor="white", hovermode="closest",
        legend={"orientation": "h", "y": 1.2, "yanchor": "bottom", "x": 0.5, "xanchor": "center"},
        sliders=[{"active": step, "currentvalue": {"prefix": "Learning step: "}, "pad": {"t": 50}, "len": 0.82,
                  "x": 0.18, "y": 0, "yanchor": "top",
                  "steps": [{"label": str(k), "method": "animate", "args": [[str(k)], every]}
                            for k in range(steps + 1)]}],
        updatemenus=[{"type": "buttons", "direction": "left", "x": 0.0, "y": 0, "yanchor": "top",
                      "xanchor": "left", "showactive": False, "pad": {"t": 78},
                      "buttons": [{"label": "▶ Play", "method": "animate", "args": [None, play]},
                                  {"label": "❚❚ Pause", "method": "animate", "args": [[None], every]}]}],
    )
    return fig


def error_per_step(meta: SineAdaptation, baseline: SineAdaptation) -> go.Figure:
    """Each model's error against the true wave after every step."""
    fig = go.Figure()
    for name, adaptation, colour in (("Meta-learned start (MAML)", meta, QUERY_COLOUR),
                                     ("Pre-trained on all waves at once", baseline, BASELINE_COLOUR)):
        fig.add_trace(go.Scatter(x=np.arange(adaptation.steps + 1), y=adaptation.curve_error, name=name,
                                 mode="lines+markers", line={"color": colour, "width": 3},
                                 hovertemplate=f"{name}<br>step %{{x}}: error %{{y:.3f}}<extra></extra>"))
    fig.update_xaxes(title_text="learning step (0 = before learning)", dtick=1 if meta.steps <= 20 else None)
    fig.update_yaxes(title_text="error: mean squared distance to the true wave", rangemode="tozero")
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 20, "b": 10}, plot_bgcolor="white",
                      legend={"orientation": "h", "y": 1.12, "x": 0.0})
    return fig
