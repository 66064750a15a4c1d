"""Figures: pure functions from library objects (or plain arrays) to plotly figures.

Nothing here runs a model or reads a file; tests inspect `fig.data`. Colours stay the same
across figures: the support set (what the model adapts on) is blue, the query set (new
images it is tested on) orange, validation green.
"""
from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

if TYPE_CHECKING:
    from metaviz.adaptation import AdaptationTrace
    from metaviz.tasks import Task

SUPPORT_COLOUR = "#1f77b4"
QUERY_COLOUR = "#ff7f0e"
VALIDATION_COLOUR = "#2ca02c"
GAP_COLOUR = "#c8ccd2"  # between images in a grid
# Pixel value 0 (background) white, 1 (stroke) black: ink on paper, as the characters were drawn.
INK_ON_PAPER = [[0.0, "#ffffff"], [1.0, "#000000"]]
IMAGE_GAP = 3  # pixels between neighbouring images in a grid
IMAGE_ROW_HEIGHT = 105  # screen pixels per row of images
MAX_NAMED_COLUMNS = 8  # beyond this many classes, columns are numbered instead of named
LABEL_WIDTH = 14  # characters per line of a column heading
LINE_HEIGHT = 17  # screen pixels per line of a column heading


def image_mosaic(images: np.ndarray, rows: int, columns: int, gap: int = IMAGE_GAP) -> np.ndarray:
    """[n, h, w] images into one [rows*h + gaps, columns*w + gaps] array, column-major
    (image i goes to row i % rows, column i // rows); gaps and empty cells are NaN."""
    images = np.asarray(images, dtype=np.float32)
    count, height, width = images.shape
    if count > rows * columns:
        raise ValueError(f"{count} images do not fit {rows} x {columns} cells")
    mosaic = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap), np.nan, np.float32)
    for index, image in enumerate(images):
        top, left = (index % rows) * (height + gap), (index // rows) * (width + gap)
        mosaic[top : top + height, left : left + width] = image
    return mosaic


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


_ROTATION = re.compile(r"\s*\(rot (\d+)\)$")  # metaviz.data names rotated classes "digit 8 (rot 90)"


def _name_parts(name: str) -> tuple[list[str], str]:
    """'Alphabet_of_the_Magi/character01 (rot 90)' -> (['Alphabet of the Magi', 'character01'], 'turned 90°')."""
    rotation = _ROTATION.search(name)
    parts = _ROTATION.sub("", name).replace("_", " ").split("/")
    return parts, f"turned {rotation.group(1)}°" if rotation else ""


def readable_class_name(name: str) -> str:
    """A class name in plain words: 'digit 8 (rot 90)' -> 'digit 8, turned 90°'."""
    parts, rotation = _name_parts(name)
    return " / ".join(parts) + (f", {rotation}" if rotation else "")


def column_labels(class_names: Sequence[str]) -> list[str]:
    """Column headings: names wrapped on short lines ('Alphabet of the Magi/character01' on
    three), or 1, 2, 3, ... when there are too many columns for names to fit."""
    if len(class_names) > MAX_NAMED_COLUMNS:
        return [str(index + 1) for index in range(len(class_names))]
    wrapped = []
    for name in class_names:
        parts, rotation = _name_parts(name)
        lines = [line for part in parts for line in textwrap.wrap(part, LABEL_WIDTH)] + ([rotation] if rotation else [])
        wrapped.append("<br>".join(lines))
    return wrapped


def _images_by_class(x, y, ways: int) -> tuple[list[np.ndarray], int]:
    """Images grouped per class (column) and the tallest column's length."""
    images = np.asarray(x, dtype=np.float32)[:, 0]
    labels = np.asarray(y)
    columns = [images[labels == label] for label in range(ways)]
    return columns, max((len(column) for column in columns), default=0)


def _image_panel(fig: go.Figure, row: int, x, y, class_names: Sequence[str], role: str, labels: list[str]) -> None:
    """One mosaic (a column per class) plus invisible markers that name each image on hover."""
    ways = len(class_names)
    columns, per_class = _images_by_class(x, y, ways)
    if per_class == 0:
        return
    size = np.asarray(x).shape[-1]
    padded = [np.concatenate([c, np.full((per_class - len(c), size, size), np.nan, np.float32)]) for c in columns]
    mosaic = image_mosaic(np.concatenate(padded), per_class, ways)
    fig.add_trace(
        go.Heatmap(z=mosaic, colorscale=INK_ON_PAPER, zmin=0, zmax=1, showscale=False, hoverinfo="skip",
                   name=f"{role} images"),
        row=row, col=1,
    )
    step = size + IMAGE_GAP
    centres_x, centres_y, texts = [], [], []
    for label, column in enumerate(columns):
        for index in range(len(column)):
            centres_x.append(label * step + (size - 1) / 2)
            centres_y.append(index * step + (size - 1) / 2)
            texts.append(f"{role} image {index + 1} of class {readable_class_name(class_names[label])}")
    fig.add_trace(
        go.Scatter(x=centres_x, y=centres_y, mode="markers", marker={"size": 30, "opacity": 0},
                   text=texts, hovertemplate="%{text}<extra></extra>", showlegend=False, name=f"{role} labels"),
        row=row, col=1,
    )
    axis = "" if row == 1 else str(row)
    height, width = mosaic.shape
    # Fixed ranges: the invisible markers must not pad the axes; square pixels, rows top-down.
    fig.update_xaxes(range=[-0.5, width - 0.5], tickvals=[label * step + (size - 1) / 2 for label in range(ways)],
                     ticktext=labels, tickangle=0, side="top", showgrid=False, zeroline=False, ticks="",
                     tickfont={"size": 13, "color": "#31333f"}, constrain="domain", row=row, col=1)
    fig.update_yaxes(range=[height - 0.5, -0.5], showticklabels=False, ticks="", showgrid=False, zeroline=False,
                     scaleanchor=f"x{axis}", constrain="domain", row=row, col=1)


def task_grid(task: Task) -> go.Figure:
    """The support set above the query set, one column per class, images as the model sees them.

    Regression tasks (no classes) come back as a scatter plot of their points instead.
    """
    if task.is_regression:
        return _regression_task(task)
    support_rows = _images_by_class(task.support_x, task.support_y, task.ways)[1]
    query_rows = _images_by_class(task.query_x, task.query_y, task.ways)[1]
    labels = column_labels(task.class_names)
    heading = LINE_HEIGHT * max(label.count("<br>") + 1 for label in labels) + 6  # the class names
    title = 30  # a panel's title line, above its class names
    # Row heights in proportion to the mosaics' heights give both panels the same scale.
    size = task.support_x.shape[-1]
    mosaic_height = lambda rows: max(rows, 1) * (size + IMAGE_GAP) - IMAGE_GAP  # noqa: E731
    plot_height = IMAGE_ROW_HEIGHT * (max(support_rows, 1) + max(query_rows, 1)) + title + heading + 20
    fig = make_subplots(
        rows=2, cols=1, row_heights=[mosaic_height(support_rows), mosaic_height(query_rows)],
        vertical_spacing=(title + heading + 20) / plot_height,
        subplot_titles=(
            f"Support set: {_count(support_rows, 'labelled example')} per class (the model adapts on these)",
            f"Query set: {_count(query_rows, 'new image')} per class (the model must recognise these)",
        ),
    )
    _image_panel(fig, 1, task.support_x, task.support_y, task.class_names, "Support", labels)
    _image_panel(fig, 2, task.query_x, task.query_y, task.class_names, "Query", labels)
    fig.update_layout(
        height=plot_height + title + heading + 10, margin={"l": 10, "r": 10, "t": title + heading, "b": 10},
        plot_bgcolor=GAP_COLOUR, paper_bgcolor="white", hovermode="closest", showlegend=False,
    )
    # Subplot titles sit above the class names that head each panel.
    for annotation in fig.layout.annotations:
        annotation.update(yshift=heading, font={"size": 15})
    return fig


def _regression_task(task: Task) -> go.Figure:
    fig = go.Figure()
    if {"amplitude", "phase"} <= set(task.source):  # a sampled sine wave: draw the curve it came from
        from metaviz.data import sinusoid

        everywhere = np.concatenate([np.asarray(task.support_x)[:, 0], np.asarray(task.query_x)[:, 0]])
        x = np.linspace(everywhere.min(), everywhere.max(), 200)
        fig.add_trace(go.Scatter(x=x, y=sinusoid(x, task.source["amplitude"], task.source["phase"]), mode="lines",
                                 name="The whole curve (hidden from the model)",
                                 line={"color": "#9aa0a6", "dash": "dot"}, hoverinfo="skip"))
    for role, x, y, colour in (("Support points (given to the model)", task.support_x, task.support_y,
                                SUPPORT_COLOUR),
                               ("Query points (to predict)", task.query_x, task.query_y, QUERY_COLOUR)):
        order = np.argsort(np.asarray(x)[:, 0])
        fig.add_trace(go.Scatter(x=np.asarray(x)[order, 0], y=np.asarray(y)[order, 0], mode="markers",
                                 name=role, marker={"color": colour, "size": 9 if "Support" in role else 5}))
    fig.update_layout(xaxis_title="x", yaxis_title="y", height=420, margin={"t": 30})
    return fig


def adaptation_curves(trace: AdaptationTrace) -> go.Figure:
    """Loss (and accuracy, for classification) on the support and query sets after each step."""
    steps = np.arange(trace.steps + 1)
    classification = trace.support_accuracy is not None
    titles = ("Loss (lower is better)", "Accuracy (higher is better)") if classification else (
        "Mean squared error (lower is better)",)
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.1)
    new_items = "new images" if classification else "new points"
    series = [("Support set (examples it adapts on)", SUPPORT_COLOUR, trace.support_loss, trace.support_accuracy),
              (f"Query set ({new_items})", QUERY_COLOUR, trace.query_loss, trace.query_accuracy)]
    for name, colour, loss, accuracy in series:
        style = {"mode": "lines+markers", "line": {"color": colour}, "legendgroup": name}
        fig.add_trace(go.Scatter(x=steps, y=loss, name=name, **style,
                                 hovertemplate="step %{x}: loss %{y:.3f}<extra></extra>"), row=1, col=1)
        if classification:
            fig.add_trace(go.Scatter(x=steps, y=100 * np.asarray(accuracy), name=name, showlegend=False, **style,
                                     hovertemplate="step %{x}: %{y:.0f}% correct<extra></extra>"), row=1, col=2)
    fig.update_xaxes(title_text="adaptation step (0 = before adapting)", dtick=1 if trace.steps <= 20 else None)
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    if classification:
        fig.update_yaxes(range=[0, 105], ticksuffix="%", row=1, col=2)
    fig.update_layout(height=380, margin={"t": 40, "b": 10},
                      legend={"orientation": "h", "y": -0.25, "x": 0.5, "xanchor": "center"})
    return fig


def training_curves(history: dict, metric: str = "accuracy") -> go.Figure:
    """Meta-training loss, and training / validation accuracy (or validation MSE), per iteration.

    `history` has the keys Checkpoint.history uses: iteration, meta_loss, meta_accuracy,
    val_iteration, val_metric; missing keys just leave their line out.
    """
    classification = metric == "accuracy"
    titles = ("Meta-training loss", "Accuracy on new tasks" if classification else "Validation error (MSE)")
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.1)
    iterations = list(history.get("iteration") or [])
    meta_loss = list(history.get("meta_loss") or [])
    if iterations and meta_loss:
        fig.add_trace(go.Scatter(x=iterations, y=meta_loss, mode="lines", name="Meta-training loss",
                                 line={"color": SUPPORT_COLOUR},
                                 hovertemplate="iteration %{x}: loss %{y:.3f}<extra></extra>"), row=1, col=1)
    meta_accuracy = [value for value in history.get("meta_accuracy") or [] if value is not None]
    if classification and iterations and len(meta_accuracy) == len(iterations):
        fig.add_trace(go.Scatter(x=iterations, y=100 * np.asarray(meta_accuracy), mode="lines",
                                 name="Training tasks", line={"color": QUERY_COLOUR},
                                 hovertemplate="iteration %{x}: %{y:.1f}%<extra></extra>"), row=1, col=2)
    val_iterations = list(history.get("val_iteration") or [])
    val_metric = list(history.get("val_metric") or [])
    if val_iterations and len(val_metric) == len(val_iterations):
        scale = 100 if classification else 1
        fig.add_trace(go.Scatter(x=val_iterations, y=scale * np.asarray(val_metric, dtype=float),
                                 mode="lines+markers", name="Validation tasks (held out)",
                                 line={"color": VALIDATION_COLOUR},
                                 hovertemplate="iteration %{x}: %{y:.3g}<extra></extra>"), row=1, col=2)
    fig.update_xaxes(title_text="meta-training iteration")
    if classification:
        fig.update_yaxes(range=[0, 105], ticksuffix="%", row=1, col=2)
    fig.update_layout(height=360, margin={"t": 40, "b": 10},
                      legend={"orientation": "h", "y": -0.3, "x": 0.5, "xanchor": "center"})
    return fig
