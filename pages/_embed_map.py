"""The task map of pages/6_Task_embeddings.py (not a page itself): a scatter whose hover shows
a task's pictures, and whose click names the task to open.

st.plotly_chart cannot do it: plotly's hover label is text only. So the map is a custom
component (st.components.v2: inline JavaScript and CSS, no build step; _embed_map.js and
_embed_map.css beside this file) in which plotly.js draws the figure metaviz.embed_figures.map_data
built, shows a card with the task's thumbnail on hover, and sends the clicked row back.

plotly.js is the copy the plotly Python package ships (package_data/plotly.min.js, the version
its figures are written for), served by Streamlit's route for component files: the map works
offline and the repository holds no copy of it.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components_v1

HERE = Path(__file__).resolve().parent
CLICKED = "clicked"  # the trigger the component sets to the clicked point's row

_map_component = st.components.v2.component(
    "metaviz_task_map", js=(HERE / "_embed_map.js").read_text(encoding="utf-8"),
    css=(HERE / "_embed_map.css").read_text(encoding="utf-8"),
    isolate_styles=False,  # plotly.js styles its plots from the document's head, which a shadow root would shut out
)


def plotly_js_url() -> str:
    """Where the browser gets plotly.js: the plotly package's own file, through the route
    Streamlit serves component folders on (registered on every run: the registry belongs to
    the running server, and a test starts servers of its own)."""
    import plotly

    folder = Path(plotly.__file__).resolve().parent / "package_data"
    component = components_v1.declare_component("plotly_js", path=str(folder))
    if component.url:  # a server configured to serve components from elsewhere
        return component.url.rstrip("/") + "/plotly.min.js"
    base = st.get_option("server.baseUrlPath").strip("/")
    return f"{'/' + base if base else ''}/component/{component.name}/plotly.min.js"


def task_map(data: dict, key: str, picture_label: str) -> int | None:
    """Draws the map (`data`: metaviz.embed_figures.map_data) and returns the row of the point
    clicked in this run, else None. `picture_label`: what the cards' thumbnails show, for
    screen readers."""
    result = _map_component(
        key=key,
        data={**data, "plotly_url": plotly_js_url(),
              "config": {"displaylogo": False, "modeBarButtonsToRemove": ["select2d", "lasso2d"],
                         "responsive": True},
              "picture_label": picture_label,
              "click_hint": "Click to open this task on the Adaptation page.",
              "opening": "Opening {title} on the Adaptation page…",
              "load_failed": "The map could not be drawn: plotly.js did not load"},
        on_clicked_change=lambda: None,  # a trigger is kept only for events that have a callback
    )
    row = getattr(result, CLICKED, None)
    return int(row) if isinstance(row, int) and not isinstance(row, bool) else None
