"""The task-embedding scatter: pure function from an `Embedding` (metaviz.embed) to a plotly
figure (`embedding_scatter`), and what the dashboard's map component draws from it, hover cards
included (`map_data`).

Every point carries its row of the embedding as customdata[0], so a selection in the browser
names the task whatever the traces are (one per category, or one coloured by a number). The
rows go in as plain lists: plotly sends a numpy array as a typed array, and a selected point's
customdata then comes back to Streamlit as {"0": row} instead of [row].
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from metaviz.figures import figure_text, readable_class_name
from metaviz.services import group_noun

if TYPE_CHECKING:
    from metaviz.embed import Embedding

# metadata column -> what a legend, colour bar or picker calls it
COLOUR_FIELDS = {  # in this order in the picker; the first a map has is its first colouring
    "alphabet": "Alphabet",
    "amplitude": "Amplitude of the wave",  # what a sine wave's map orders best: the first thing to show
    "phase": "Phase of the wave",
    "query_accuracy_after": "New images recognised after adapting",
    "query_accuracy_before": "New images recognised before adapting",
    "support_loss_after": "Loss on the examples after adapting",
    "query_loss_after": "Error on new points after adapting",
    "update_norm": "Size of the update",
}
PERCENT_FIELDS = {"query_accuracy_after", "query_accuracy_before"}
METHOD_AXES = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}
CATEGORY_COLOURS = qualitative.Dark24  # 20 Omniglot test alphabets + "mixed" fit without repeats
MAX_CATEGORIES = len(CATEGORY_COLOURS) - 1  # beyond this, the rarest share one "other" colour
FADED = 0.12  # opacity of points the search does not match
CURRENT_COLOUR = "#d62728"
CARD_CLASSES = 10  # a hover card names this many classes, in the order its thumbnail shows them


def colour_fields(embedding: Embedding) -> list[str]:
    """The metadata columns a picture can be coloured by: known columns, and a category only
    when it splits the points (digit tasks, for one, are all "mixed")."""
    fields = []
    for name in COLOUR_FIELDS:
        column = embedding.metadata.get(name)
        if column is None:
            continue
        if column.dtype == object and len(set(column.tolist())) < 2:
            continue
        fields.append(name)
    return fields


def _short_list(names: Sequence[str], limit: int = 3) -> str:
    shown = "; ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def task_summary(embedding: Embedding, row: int, class_limit: int = 3) -> tuple[str, list[str]]:
    """One task in plain words: a title, and lines on its classes or wave and how adapting went.
    Plain text (class names may be an uploader's folder names): each caller escapes it for
    where it goes. Past `class_limit` classes, the rest are counted."""
    meta = embedding.metadata
    lines = []
    if "classes" in meta:
        classes = [readable_class_name(name) for name in meta["classes"][row]]
        groups = group_noun(embedding.dataset).capitalize()  # Alphabets (Omniglot), Digits
        lines.append(f"{groups}: {_short_list([name.replace('_', ' ') for name in meta['alphabets'][row]])}")
        lines.append(f"Classes: {_short_list(classes, class_limit)}")
        before, after = meta["query_accuracy_before"][row], meta["query_accuracy_after"][row]
        lines.append(f"New images recognised: {100 * before:.0f}% before, {100 * after:.0f}% after")
    if "amplitude" in meta:
        lines.append(f"Amplitude {meta['amplitude'][row]:.2f}, phase {meta['phase'][row]:.2f}")
        lines.append(f"Error on new points: {meta['query_loss_before'][row]:.3g} before, "
                     f"{meta['query_loss_after'][row]:.3g} after")
    lines.append(f"Loss on the examples after adapting: {meta['support_loss_after'][row]:.3g}")
    lines.append(f"Size of the update: {meta['update_norm'][row]:.3g}")
    return f"Task number {meta['seed'][row]}", lines


def hover_texts(embedding: Embedding) -> list[str]:
    """One plotly hover text per point (task_summary, escaped for plotly's bit of HTML)."""
    texts = []
    for row in range(len(embedding)):
        title, lines = task_summary(embedding, row)
        texts.append("<br>".join([f"<b>{figure_text(title)}</b>", *(figure_text(line) for line in lines)]))
    return texts


def _categories(column: np.ndarray) -> list[str]:
    """Categories, most frequent first; past MAX_CATEGORIES the rest become "other"."""
    values, counts = np.unique(column.astype(str), return_counts=True)
    order = [str(value) for value in values[np.argsort(-counts, kind="stable")]]
    return order[:MAX_CATEGORIES] + (["other"] if len(order) > MAX_CATEGORIES else [])


def _rows(rows) -> list[list[int]]:
    return [[int(row)] for row in rows]


def embedding_scatter(embedding: Embedding, colour_by: str, current: int | None = None,
                      matches: np.ndarray | None = None) -> go.Figure:
    """The tasks as points, coloured by metadata column `colour_by`; `current` (a row) ringed;
    points outside `matches` (a boolean mask, e.g. a search) faded."""
    if colour_by not in embedding.metadata:
        raise ValueError(f"no metadata column {colour_by!r}; there are {sorted(embedding.metadata)}")
    x, y = embedding.coordinates[:, 0], embedding.coordinates[:, 1]
    rows = np.arange(len(embedding))
    hover = np.array(hover_texts(embedding), dtype=object)
    opacity = np.full(len(embedding), 0.85) if matches is None else np.where(matches, 0.95, FADED)
    column = embedding.metadata[colour_by]
    label = COLOUR_FIELDS.get(colour_by, colour_by)
    common = dict(mode="markers", hovertemplate="%{text}<extra></extra>")
    fig = go.Figure()
    if column.dtype == object or column.dtype.kind in "US":
        categories = _categories(column)
        kept = set(categories)
        names = np.array([value if value in kept else "other" for value in column.astype(str)], dtype=object)
        for index, category in enumerate(categories):
            members = rows[names == category]
            fig.add_trace(go.Scatter(
                x=x[members], y=y[members], customdata=_rows(members), text=hover[members],
                name=figure_text(category.replace("_", " ")), marker=dict(size=8, color=CATEGORY_COLOURS[index],
                                                        opacity=opacity[members]), **common))
        fig.update_layout(legend=dict(title=label, itemsizing="constant"))
    else:
        values = column.astype(float)
        bar_ticks = dict(tickformat=".0%") if colour_by in PERCENT_FIELDS else {}
        fig.add_trace(go.Scatter(
            x=x, y=y, customdata=_rows(rows), text=hover, name=label, showlegend=False,
            marker=dict(size=8, color=values, colorscale="Viridis", opacity=opacity,
                        colorbar=dict(title=dict(text=label.replace(" after", "<br>after"), side="right"),
                                      **bar_ticks)), **common))
        # The colour bar takes the right-hand side: the one legend entry (the ring) goes above the plot.
        fig.update_layout(legend=dict(orientation="h", x=0, y=1.0, xanchor="left", yanchor="bottom"))
    if current is not None:
        fig.add_trace(go.Scatter(
            x=[x[current]], y=[y[current]], customdata=_rows([current]), text=[hover[current]], name="current task",
            marker=dict(size=20, symbol="circle-open", color=CURRENT_COLOUR, line=dict(width=3)), **common))
    axis = METHOD_AXES.get(embedding.method, embedding.method)
    fig.update_xaxes(title=f"{axis} 1", showticklabels=False, zeroline=False)
    fig.update_yaxes(title=f"{axis} 2", showticklabels=False, zeroline=False)
    fig.update_layout(height=620, margin=dict(l=40, r=20, t=30, b=40), hovermode="closest",
                      hoverlabel=dict(align="left"), plot_bgcolor="#fafafa", uirevision=embedding.method)
    return fig


def map_data(embedding: Embedding, colour_by: str, current: int | None = None, matches: np.ndarray | None = None,
             revision: str = "") -> dict:
    """What the page's map component draws (pages/_embed_map.py), JSON-ready: "figure", the
    scatter (embedding_scatter) with plotly's own hover label off, since the component shows a
    card with pictures instead; "cards", per row: "title" and "lines" (task_summary, plain
    text) and "thumbnail" (a data URI, metaviz.thumbnails; None without one). Zoom and pan
    survive a redraw with the same `revision` (new colours, a search), not a new map."""
    fig = embedding_scatter(embedding, colour_by, current, matches)
    fig.update_traces(hoverinfo="none", hovertemplate=None, text=None)  # the card says it all
    fig.update_layout(uirevision=revision or embedding.method)
    thumbnails = embedding.metadata.get("thumbnail")
    cards = []
    for row in range(len(embedding)):
        title, lines = task_summary(embedding, row, CARD_CLASSES)
        cards.append({"title": title, "lines": lines,
                      "thumbnail": None if thumbnails is None else str(thumbnails[row])})
    return {"figure": json.loads(fig.to_json()), "cards": cards}


def search_matches(embedding: Embedding, query: str) -> np.ndarray | None:
    """Points whose alphabets or classes contain `query` (any case); None for an empty query."""
    # Class names spell spaces as underscores ("Alphabet_of_the_Magi"); users type spaces.
    query = query.strip().lower().replace("_", " ")
    if not query:
        return None
    meta = embedding.metadata
    if "classes" not in meta:
        return np.zeros(len(embedding), dtype=bool)
    names = ("|".join(classes + alphabets) for classes, alphabets in zip(meta["classes"], meta["alphabets"]))
    return np.array([query in name.lower().replace("_", " ") for name in names])
