"""Figures: pure functions from library objects (or plain arrays) to plotly figures.

Nothing here runs a model or reads a file; tests inspect `fig.data`. Colours stay the same
across figures: the support set (what the model adapts on) is blue, the query set (new
images it is tested on) orange, validation green.
"""
from __future__ import annotations

import html
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


def figure_text(text: str) -> str:
    """Text for a plotly label: plotly reads a little HTML (<br>, <b>, <a>), and class names can
    be an uploader's folder names, so their <, > and & are escaped."""
    return html.escape(text, quote=False)


def _figure_name(name: str) -> str:
    return figure_text(readable_class_name(name))


def wrapped_class_name(name: str, width: int = LABEL_WIDTH) -> list[str]:
    """A class name in plain words on short lines for a narrow column: 'Alphabet_of_the_Magi/
    character01 (rot 90)' -> ['Alphabet of the', 'Magi', 'character01', 'turned 90°'], escaped."""
    parts, rotation = _name_parts(name)
    return [figure_text(line) for part in parts for line in textwrap.wrap(part, width)] + (
        [rotation] if rotation else [])


def column_labels(class_names: Sequence[str]) -> list[str]:
    """Column headings: names wrapped on short lines ('Alphabet of the Magi/character01' on
    three), or 1, 2, 3, ... when there are too many columns for names to fit."""
    if len(class_names) > MAX_NAMED_COLUMNS:
        return [str(index + 1) for index in range(len(class_names))]
    return ["<br>".join(wrapped_class_name(name)) for name in class_names]


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
            texts.append(f"{role} image {index + 1} of class {_figure_name(class_names[label])}")
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


def training_curves(history: dict, metric: str = "accuracy", phase_change: tuple[int, str] | None = None) -> go.Figure:
    """Meta-training loss, and training / validation accuracy (or validation MSE), per iteration.

    `history` has the keys Checkpoint.history uses: iteration, meta_loss, meta_accuracy,
    val_iteration, val_metric; missing keys just leave their line out. `phase_change`
    (services.phase_change): a line where a later phase trained on something else (other tasks,
    the validation classes too), so that nobody reads a jump or the curves past it wrongly.
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
    if phase_change:
        at, what = phase_change
        for column in (1, 2):
            fig.add_vline(x=at, line={"dash": "dash", "color": "#6e7781", "width": 1}, row=1, col=column)
        fig.add_annotation(x=at, y=0, yref="y2 domain", xref="x2", xanchor="right", yanchor="bottom", xshift=-4,
                           showarrow=False, font={"size": 11, "color": "#57606a"},
                           text="<br>".join(textwrap.wrap(figure_text(what), 16)))
    fig.update_xaxes(title_text="meta-training iteration")
    if classification:
        fig.update_yaxes(range=[0, 105], ticksuffix="%", row=1, col=2)
    fig.update_layout(height=360, margin={"t": 40, "b": 10},
                      legend={"orientation": "h", "y": -0.3, "x": 0.5, "xanchor": "center"})
    return fig


# --- adaptation, step by step ---------------------------------------------------------------

RIGHT_COLOUR = "#1a7f37"
WRONG_COLOUR = "#cf222e"
CONFIDENCE_SCALE = [[0.0, "#ffffff"], [1.0, "#08519c"]]  # 0% white, 100% dark blue
PREDICTION_ROW_HEIGHT = 38  # screen pixels per new image in the step-by-step figure
MAX_FLIPS_SHOWN = 16


def _verdict(predicted: int, true: int, class_names: Sequence[str]) -> str:
    mark = "✓" if predicted == true else "✗"
    return f"{mark} {_figure_name(class_names[predicted])} ({'right' if predicted == true else 'wrong'})"


def _step_title(trace: AdaptationTrace, step: int, query_y: np.ndarray) -> str:
    right = int((trace.query_predictions[step] == query_y).sum())
    when = "before adapting" if step == 0 else f"after {_count(step, 'step')}"
    return f"Step {step} of {trace.steps} ({when}): {right} of {len(query_y)} new images recognised"


def _step_changes(trace: AdaptationTrace, step: int, query_y: np.ndarray,
                  class_names: Sequence[str]) -> tuple[dict, dict]:
    """What changes from one step to the next: the heatmap's probabilities, and the answers
    with their colours. Only these go into an animation frame (plotly merges them in)."""
    predictions = trace.query_predictions[step]
    heatmap = {"type": "heatmap", "z": np.asarray(trace.query_probabilities[step], dtype=float)}
    answers = {"type": "scatter",
               "text": [_verdict(int(p), int(t), class_names) for p, t in zip(predictions, query_y)],
               "textfont": {"color": [RIGHT_COLOUR if p == t else WRONG_COLOUR for p, t in zip(predictions, query_y)]}}
    return heatmap, answers


def query_predictions(task: Task, trace: AdaptationTrace, step: int) -> go.Figure:
    """Every new (query) image at one step: the image and its true class, how sure the model is
    of each class (a queries x classes heatmap), and its answer, right or wrong.

    The figure carries one animation frame per step, and a Play button that runs through them.
    """
    if trace.query_probabilities is None:
        raise ValueError("step-by-step predictions exist for classification tasks only")
    step = min(max(int(step), 0), trace.steps)
    images = np.asarray(task.query_x, dtype=np.float32)[:, 0]
    query_y = np.asarray(task.query_y)
    count, size = len(images), images.shape[-1]
    spacing = size + IMAGE_GAP
    centres = np.arange(count) * spacing + (size - 1) / 2
    labels = column_labels(task.class_names)
    heading = LINE_HEIGHT * max(label.count("<br>") + 1 for label in labels) + 6
    top = 70 + heading  # title, Play button and column titles, then the class names

    fig = make_subplots(rows=1, cols=3, shared_yaxes=True, column_widths=[0.1, 0.62, 0.28], horizontal_spacing=0.015,
                        subplot_titles=("New image", "How sure the model is of each class", "The model's answer"))
    fig.add_trace(go.Heatmap(z=image_mosaic(images, count, 1), colorscale=INK_ON_PAPER, zmin=0, zmax=1,
                             showscale=False, hoverinfo="skip", name="new images"), row=1, col=1)
    heatmap, answers = _step_changes(trace, step, query_y, task.class_names)
    names = [_figure_name(name) for name in task.class_names]
    hover = [[f"new image {row + 1}, really {names[query_y[row]]}:<br>how sure it is {names[column]}"
              for column in range(task.ways)] for row in range(count)]
    fig.add_trace(go.Heatmap(**heatmap, x=list(range(task.ways)), y=centres, zmin=0, zmax=1,
                             colorscale=CONFIDENCE_SCALE, showscale=False, texttemplate="%{z:.0%}",
                             textfont={"size": 12}, hovertext=hover, xgap=2, ygap=2, name="confidence per class",
                             hovertemplate="%{hovertext}: %{z:.1%}<extra></extra>"), row=1, col=2)
    fig.add_trace(go.Scatter(**answers, x=[0.0] * count, y=centres, mode="text", textposition="middle right",
                             hoverinfo="skip", showlegend=False, name="the model's answer"), row=1, col=3)
    fig.update_traces(textfont_size=13, selector={"type": "scatter"})
    # Frames as plain dicts: validating a full figure per step would cost more than the rest.
    fig.frames = [{"name": str(k), "traces": [1, 2], "data": list(_step_changes(trace, k, query_y, task.class_names)),
                   "layout": {"title": {"text": _step_title(trace, k, query_y)}}} for k in range(trace.steps + 1)]

    height = count * spacing - IMAGE_GAP
    fig.update_yaxes(range=[height - 0.5, -0.5], tickvals=centres, showgrid=False, zeroline=False, ticks="")
    fig.update_yaxes(ticktext=[f"really {_figure_name(task.class_names[label])}" for label in query_y],
                     tickfont={"size": 12, "color": "#31333f"}, row=1, col=1)
    fig.update_xaxes(range=[-0.5, size - 0.5], showticklabels=False, showgrid=False, zeroline=False,
                     scaleanchor="y", constrain="domain", constraintoward="right", row=1, col=1)
    fig.update_xaxes(tickvals=list(range(task.ways)), ticktext=labels, side="top", tickangle=0, showgrid=False,
                     zeroline=False, ticks="", tickfont={"size": 13, "color": "#31333f"}, row=1, col=2)
    fig.update_xaxes(range=[0, 1], visible=False, row=1, col=3)
    play = {"frame": {"duration": 800, "redraw": True}, "transition": {"duration": 0}, "fromcurrent": False,
            "mode": "immediate"}
    fig.update_layout(
        title={"text": _step_title(trace, step, query_y), "x": 0.0, "xanchor": "left", "y": 0.995, "yanchor": "top",
               "font": {"size": 16}},
        height=count * PREDICTION_ROW_HEIGHT + top + 20, margin={"l": 10, "r": 10, "t": top, "b": 10},
        plot_bgcolor="white", paper_bgcolor="white", hovermode="closest", showlegend=False,
        # Paper coordinates above 1 reach into the top margin: the buttons share the title's line.
        updatemenus=[{"type": "buttons", "direction": "left", "x": 1.0, "xanchor": "right",
                      "y": 1 + (top - 8) / (count * PREDICTION_ROW_HEIGHT), "yanchor": "top", "showactive": False,
                      "buttons": [{"label": "▶ Play all steps", "method": "animate", "args": [None, play]},
                                  {"label": "❚❚ Pause", "method": "animate",
                                   "args": [[None], {"frame": {"duration": 0, "redraw": False},
                                                     "mode": "immediate"}]}]}],
    )
    for annotation in fig.layout.annotations:  # column titles sit above the class names
        annotation.update(yshift=heading, font={"size": 14})
    return fig


def _short(name: str, limit: int = 18) -> str:
    readable = readable_class_name(name)
    return figure_text(readable if len(readable) <= limit else readable[: limit - 1] + "…")


def flipped_predictions(task: Task, trace: AdaptationTrace, per_row: int = 8) -> go.Figure | None:
    """The new images whose answer changed between step 0 and the last step, each with its true
    class and its answer before and after; None when no answer changed."""
    from metaviz.adaptation import prediction_changes  # here: keeps torch off the start-up path

    query_y = np.asarray(task.query_y)
    changes = prediction_changes(trace, query_y)
    indices = sorted(changes["fixed"] + changes["broken"] + changes["still_wrong"])[:MAX_FLIPS_SHOWN]
    if not indices:
        return None
    images = np.asarray(task.query_x, dtype=np.float32)[indices, 0]
    size = images.shape[-1]
    columns = min(per_row, len(indices))
    rows = -(-len(indices) // columns)
    cell_width, cell_height = 3 * size, size + 44  # room for three short lines of text under each image
    canvas = np.full((rows * cell_height, columns * cell_width), np.nan, np.float32)
    centres_x, text_y = [], []
    for slot, image in enumerate(images):
        row, column = divmod(slot, columns)
        left = column * cell_width + (cell_width - size) // 2
        canvas[row * cell_height : row * cell_height + size, left : left + size] = image
        centres_x.append(left + (size - 1) / 2)
        text_y.append(row * cell_height + size + 2)
    before, after = trace.query_predictions[0], trace.query_predictions[-1]
    names = task.class_names
    mark = lambda predicted, true: "✓" if predicted == true else "✗"  # noqa: E731
    texts = [f"really {_short(names[query_y[i]])}<br>step 0: {mark(before[i], query_y[i])} {_short(names[before[i]])}"
             f"<br>step {trace.steps}: {mark(after[i], query_y[i])} {_short(names[after[i]])}" for i in indices]
    hover = [f"new image {i + 1}, really {_figure_name(names[query_y[i]])}:<br>"
             f"step 0 answer {_figure_name(names[before[i]])}, step {trace.steps} answer "
             f"{_figure_name(names[after[i]])}" for i in indices]
    fig = go.Figure(go.Heatmap(z=canvas, colorscale=INK_ON_PAPER, zmin=0, zmax=1, showscale=False, hoverinfo="skip",
                               name="changed images"))
    fig.add_trace(go.Scatter(x=centres_x, y=text_y, mode="text", text=texts, textposition="bottom center",
                             hovertext=hover, hovertemplate="%{hovertext}<extra></extra>", name="answers",
                             textfont={"size": 11, "color": [RIGHT_COLOUR if after[i] == query_y[i] else WRONG_COLOUR
                                                             for i in indices]}))
    fig.update_xaxes(range=[-0.5, columns * cell_width - 0.5], visible=False, constrain="domain")
    fig.update_yaxes(range=[rows * cell_height - 0.5, -0.5], visible=False, scaleanchor="x", constrain="domain")
    # About 1.5 screen pixels per image pixel on a page of ordinary width; the axes keep them square.
    fig.update_layout(height=20 + round(rows * cell_height * 1.5), margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      plot_bgcolor="white", showlegend=False)
    return fig


def upload_preview(images_by_class: dict, max_per_class: int = 8) -> go.Figure:
    """The uploaded images after conversion (28x28, as the model sees them), one column per class."""
    class_names = list(images_by_class)
    shown = {name: list(images)[:max_per_class] for name, images in images_by_class.items()}
    x = np.stack([image for images in shown.values() for image in images])[:, None]
    y = np.concatenate([[label] * len(images) for label, images in enumerate(shown.values())])
    rows = max(len(images) for images in shown.values())
    labels = column_labels(class_names)
    heading = LINE_HEIGHT * max(label.count("<br>") + 1 for label in labels) + 6
    fig = make_subplots(rows=1, cols=1)
    _image_panel(fig, 1, x, y, class_names, "Uploaded", labels)
    fig.update_layout(height=70 * rows + heading + 20, margin={"l": 10, "r": 10, "t": heading + 6, "b": 10},
                      plot_bgcolor=GAP_COLOUR, paper_bgcolor="white", showlegend=False)
    return fig
