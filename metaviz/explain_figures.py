"""Figures for saliency maps and their trust checks: pure functions from arrays to plotly figures.

Nothing here runs a model. Maps are drawn as captum's `visualize_image_attr` does: `sign`
picks which part of the map to show ("absolute_value", "positive", "negative" or "all") and the top
`outlier_perc` percent of magnitudes are clipped, so a few extreme pixels do not wash out the
rest. Colours: red is evidence for the explained class, blue evidence against it; in a
difference map red is "more weight after adapting", blue "less".
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from metaviz.figures import QUERY_COLOUR, SUPPORT_COLOUR, wrapped_class_name

SIGNS = ("absolute_value", "positive", "negative", "all")
FOR_COLOUR = np.array([214, 39, 40], dtype=np.float64)  # red: evidence for the class
AGAINST_COLOUR = np.array([31, 119, 180], dtype=np.float64)  # blue: evidence against it
PAPER = np.array([255, 255, 255], dtype=np.float64)
INK = np.array([150, 150, 150], dtype=np.float64)  # the stroke stays visible, grey, under the map
MAX_COLUMNS = 10  # images per row block of the grid
IMAGE_HEIGHT = 126  # screen pixels per image of the grid
LABEL_WIDTH = 13  # characters per line of the label under an image (ten images share a row)
LABEL_LINE_HEIGHT = 14  # screen pixels per line of that label (10-point text)


def normalise_map(values: np.ndarray, sign: str = "absolute_value", outlier_perc: float = 2.0) -> np.ndarray:
    """One map per image ([N, ..., H, W], channels summed) scaled to [-1, 1] (or [0, 1]).

    As captum: "absolute_value" shows magnitudes, "positive" only evidence for the class,
    "negative" only evidence against it (as negative values), "all" both signs. Each image is scaled by its own (100 - outlier_perc)th percentile of the
    shown magnitudes, then clipped; a map that is zero everywhere stays zero.
    """
    if sign not in SIGNS:
        raise ValueError(f"unknown sign {sign!r}; choose one of {SIGNS}")
    maps = np.asarray(values, dtype=np.float64)
    maps = maps.reshape(len(maps), -1, *maps.shape[-2:]).sum(1)  # [N, H, W]
    if sign == "absolute_value":
        maps = np.abs(maps)
    elif sign == "positive":
        maps = np.clip(maps, 0, None)
    elif sign == "negative":
        maps = np.clip(maps, None, 0)
    magnitudes = np.abs(maps).reshape(len(maps), -1)
    scale = np.percentile(magnitudes, 100 - outlier_perc, axis=1) if len(maps) else np.zeros(0)
    scale = np.where(scale > 0, scale, magnitudes.max(1, initial=0.0) if len(maps) else scale)
    scale = np.where(scale > 0, scale, 1.0)[:, None, None]
    low = 0.0 if sign in ("absolute_value", "positive") else -1.0
    return np.clip(maps / scale, low, 0.0 if sign == "negative" else 1.0)


def overlay(image: np.ndarray, shown_map: np.ndarray) -> np.ndarray:
    """A grey image ([H, W], 0 paper .. 1 ink) under a normalised map ([H, W] in [-1, 1]):
    an [H, W, 3] uint8 picture, red where the map is positive, blue where negative."""
    image = np.clip(np.asarray(image, dtype=np.float64), 0, 1)[..., None]
    base = PAPER * (1 - image) + INK * image
    strength = np.abs(shown_map)[..., None]
    colour = np.where(np.asarray(shown_map)[..., None] >= 0, FOR_COLOUR, AGAINST_COLOUR)
    return np.round(base * (1 - strength) + colour * strength).astype(np.uint8)


def _label(class_name: str, probability: float, right: bool | None = None) -> str:
    """The answer under a map, on short lines: ten labels share a row ('Syriac (Serto) /
    character15' on one line ran into its neighbours)."""
    mark = "" if right is None else "✓ " if right else "✗ "  # the Adaptation page's marks
    return "<br>".join([*wrapped_class_name(class_name, LABEL_WIDTH), f"{mark}{100 * probability:.0f}%"])


def _cell(number: int) -> str:
    """The suffix of grid cell `number`'s axes (1, 2, ...): plotly names the first 'x'/'y', then 'x2'/'y2'."""
    return str(number) if number > 1 else ""


def _grid_axes(rows: int, columns: int, horizontal_spacing: float, vertical_spacing: float) -> dict:
    """Layout axes 'xaxis', 'yaxis', 'xaxis2'.. of a rows x columns grid, cells numbered row by
    row from the top, without tick labels or grid lines (make_subplots' domains, without its
    per-cell cost)."""
    width = (1 - horizontal_spacing * (columns - 1)) / columns
    height = (1 - vertical_spacing * (rows - 1)) / rows
    axes = {}
    for row in range(rows):
        bottom = (rows - 1 - row) * (height + vertical_spacing)
        for column in range(columns):
            left = column * (width + horizontal_spacing)
            cell = _cell(row * columns + column + 1)
            hidden = dict(showticklabels=False, showgrid=False, zeroline=False)
            axes[f"xaxis{cell}"] = dict(anchor=f"y{cell}", domain=[left, left + width], **hidden)
            axes[f"yaxis{cell}"] = dict(anchor=f"x{cell}", domain=[bottom, bottom + height], **hidden)
    return axes


def saliency_grid(images: np.ndarray, before: np.ndarray, after: np.ndarray, step: int,
                  class_names: Sequence[str], predicted_before: Sequence[int], predicted_after: Sequence[int],
                  probability_before: Sequence[float], probability_after: Sequence[float],
                  sign: str = "absolute_value", outlier_perc: float = 2.0,
                  max_columns: int = MAX_COLUMNS, true_classes: Sequence[int] | None = None) -> go.Figure:
    """Each image (a column) three times: its map at step 0, at `step`, and the change.

    `before`/`after`: raw attributions [N, 1, H, W]; the maps are normalised image by image
    (see normalise_map), and the change is after minus before of the normalised maps, so it
    shows where the model looks differently, not how its scores grew. Under each map: the
    class the model answers at that step and how sure it is, marked ✓ (right) or ✗ (wrong)
    when `true_classes` are given.
    """
    images = np.asarray(images, dtype=np.float64).reshape(len(images), *np.shape(images)[-2:])
    count = len(images)
    shown_before, shown_after = normalise_map(before, sign, outlier_perc), normalise_map(after, sign, outlier_perc)
    change = np.clip(shown_after - shown_before, -1, 1)
    columns = max(1, min(max_columns, count))
    blocks = -(-count // columns)
    row_names = ("Before adapting (step 0)", f"After step {step}", "What adapting changed")
    labels = []  # per image: its map and label at step 0, at `step`, and the change (no label)
    for index in range(count):
        true = None if true_classes is None else int(true_classes[index])
        labels.append([(maps[index], _label(class_names[answers[index]], sureness[index],
                                            None if true is None else int(answers[index]) == true))
                       for maps, answers, sureness in ((shown_before, predicted_before, probability_before),
                                                       (shown_after, predicted_after, probability_after))]
                      + [(change[index], "")])
    lines = max(text.count("<br>") + 1 for cells in labels for _, text in cells)
    gap = LABEL_LINE_HEIGHT * lines + 2
    height = 3 * blocks * (IMAGE_HEIGHT + gap) + 20  # + the top and bottom margins
    # The gap between rows is fixed in pixels, room for the longest label: with few, wide
    # columns each image fills its row's full height, and a gap given as a fraction of the
    # figure left no room for the label.
    # The figure is assembled as plain dicts and validated once: building it cell by cell
    # through make_subplots and update_xaxes(row=, col=) (each call walks every axis) took
    # about 1 s for 25 images, most of the Saliency page's rerun.
    axes = _grid_axes(3 * blocks, columns, horizontal_spacing=0.008, vertical_spacing=gap / (height - 20))
    traces = []
    for index, cells in enumerate(labels):
        block, column = divmod(index, columns)
        for offset, (shown, text) in enumerate(cells):
            cell = _cell((3 * block + offset) * columns + column + 1)
            traces.append(go.Image(z=overlay(images[index], shown), name=row_names[offset],
                                   xaxis=f"x{cell}", yaxis=f"y{cell}",
                                   hovertemplate=f"image {index + 1}<br>{row_names[offset]}<extra></extra>"))
            axes[f"xaxis{cell}"]["title"] = dict(text=text, font=dict(size=10), standoff=2)
    for block in range(blocks):
        for offset, name in enumerate(row_names):
            axes[f"yaxis{_cell((3 * block + offset) * columns + 1)}"]["title"] = dict(
                text=name.replace(" (", "<br>(").replace("What adapting", "What adapting<br>"), font=dict(size=10))
    fig = go.Figure(data=traces, layout=axes)
    fig.update_layout(height=height, margin=dict(l=90, r=10, t=10, b=10),
                      showlegend=False, plot_bgcolor="white")
    return fig


def randomisation_figure(layers: Sequence[str], spearman: np.ndarray, spearman_abs: np.ndarray,
                         ssim: np.ndarray, threshold: float = 0.5) -> go.Figure:
    """Similarity to the trained model's maps as layers are randomised from the head down."""
    labels = ["trained"] + [f"+ {layer}" for layer in layers]
    fig = go.Figure()
    for name, values, colour, dash in (("Rank correlation", spearman, SUPPORT_COLOUR, "solid"),
                                       ("Rank correlation of strengths", spearman_abs, QUERY_COLOUR, "dash"),
                                       ("Structural similarity (SSIM)", ssim, "#7f7f7f", "dot")):
        fig.add_trace(go.Scatter(x=labels, y=np.concatenate([[1.0], np.asarray(values, dtype=float)]),
                                 name=name, mode="lines+markers", line=dict(color=colour, dash=dash)))
    fig.add_hline(y=threshold, line=dict(color="#c8ccd2", dash="dash"),
                  annotation_text="below: the map changed", annotation_position="bottom left")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=10, b=10), yaxis=dict(range=[-0.2, 1.05],
                      title="similarity to the trained model's map"),
                      xaxis=dict(title="layers made random (cumulative, from the output down)"),
                      legend=dict(orientation="h", y=1.12))
    return fig


def faithfulness_figure(fractions: np.ndarray, deletion: np.ndarray, insertion: np.ndarray,
                        random_deletion: np.ndarray, random_insertion: np.ndarray) -> go.Figure:
    """Mean target probability as pixels are removed (deletion) or added (insertion), in the
    map's order and in a random order; curves are [N, S+1] (or already averaged, [S+1])."""
    fractions = np.asarray(fractions, dtype=float)

    def mean(curve):
        curve = np.asarray(curve, dtype=float)
        return curve.mean(0) if curve.ndim == 2 else curve

    def area(curve):
        return float(np.trapezoid(mean(curve), fractions))

    fig = go.Figure()
    for name, curve, colour, dash in (("Deletion, map order", deletion, SUPPORT_COLOUR, "solid"),
                                      ("Deletion, random order", random_deletion, SUPPORT_COLOUR, "dot"),
                                      ("Insertion, map order", insertion, QUERY_COLOUR, "solid"),
                                      ("Insertion, random order", random_insertion, QUERY_COLOUR, "dot")):
        fig.add_trace(go.Scatter(x=100 * fractions, y=mean(curve), mode="lines", line=dict(color=colour, dash=dash),
                                 name=f"{name} (area {area(curve):.2f})"))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=10, b=10),
                      xaxis=dict(title="pixels removed or added, most important first (%)"),
                      yaxis=dict(title="probability of the explained class", range=[0, 1.02]),
                      legend=dict(orientation="h", y=1.18))
    return fig


def seed_agreement_figure(agreement: Sequence[float], threshold: float = 0.5) -> go.Figure:
    """One bar per image: the rank correlation of its maps from two runs with different seeds."""
    agreement = np.asarray(agreement, dtype=float)
    images = [f"image {index + 1}" for index in range(len(agreement))]
    fig = go.Figure(go.Bar(x=images, y=agreement, marker_color=[SUPPORT_COLOUR if value >= threshold else "#c8ccd2"
                                                                for value in agreement],
                           hovertemplate="%{x}: rank correlation %{y:.2f}<extra></extra>"))
    fig.add_hline(y=threshold, line=dict(color="#7f7f7f", dash="dash"))  # explained in the page's caption
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=10, b=10), showlegend=False,
                      yaxis=dict(range=[min(-0.2, float(agreement.min(initial=0.0))), 1.05],
                                 title="agreement of two runs"), xaxis=dict(showticklabels=len(images) <= 30))
    return fig


def global_importance_figure(mean_image: np.ndarray, before: np.ndarray, after: np.ndarray, steps: int,
                             outlier_perc: float = 2.0) -> go.Figure:
    """Three maps over the images' mean: the mean strength share per pixel before adapting, after
    `steps` steps, and after minus before (red: relied on more after adapting, blue: less)."""
    change = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    shown = [normalise_map(np.asarray(before)[None], "absolute_value", outlier_perc)[0],
             normalise_map(np.asarray(after)[None], "absolute_value", outlier_perc)[0],
             normalise_map(change[None], "all", outlier_perc)[0]]
    titles = ("Before adapting (step 0)", f"After step {steps}", "What adapting changed")
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.03, subplot_titles=titles)
    ink = np.asarray(mean_image, dtype=float) / max(float(np.max(mean_image)), 1e-12)
    for column, (title, values) in enumerate(zip(titles, shown), start=1):
        fig.add_trace(go.Image(z=overlay(ink, values), name=title,
                               hovertemplate=f"{title}<br>x %{{x}}, y %{{y}}<extra></extra>"), row=1, col=column)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_layout(height=330, margin=dict(l=10, r=10, t=30, b=10), showlegend=False, plot_bgcolor="white")
    return fig
