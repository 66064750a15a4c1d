"""HTML building blocks for metaviz.report: one self-contained page, readable offline.

Everything a user typed or uploaded (file names, class names, folder names) reaches the page
only through `text()` (html.escape), or through plotly's JSON, which escapes `<`, `>` and `/`
inside its <script> blocks. plotly.js is inlined once, in the page's head; figures are plain
divs after it, and images are inline base64 PNGs: the file needs no network and no other file.
"""
from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence

import numpy as np
import plotly.graph_objects as go

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #31333f; margin: 0 auto;
       max-width: 1180px; padding: 24px 32px 64px; line-height: 1.45; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 2px solid #e6e9ef; padding-bottom: 4px; margin-top: 40px; }
h3 { margin-top: 28px; } .lead { color: #5c6370; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
th, td { border: 1px solid #dfe2e8; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f4f5f8; font-weight: 600; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; word-break: break-all; }
pre { background: #f4f5f8; padding: 10px 12px; white-space: pre-wrap; word-break: break-all; font-size: 13px; }
.figure { margin: 8px 0 20px; } .note { color: #5c6370; font-size: 14px; }
.verdict-good { background: #e6f4ea; padding: 8px 12px; border-radius: 6px; }
.verdict-bad { background: #fff4e5; padding: 8px 12px; border-radius: 6px; }
.maps td { text-align: center; font-size: 12px; padding: 3px; } .maps img { image-rendering: pixelated; }
nav a { margin-right: 14px; }
"""


def text(value: object) -> str:
    """Any value as HTML text: escaped, never markup."""
    return html.escape(str(value), quote=True)


def paragraph(value: object, css_class: str = "") -> str:
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<p{attribute}>{text(value)}</p>"


def code(value: object) -> str:
    return f"<code>{text(value)}</code>"


def table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """Rows of plain values as a table; every cell escaped."""
    if not rows:
        return ""
    columns = list(columns or rows[0])
    head = "".join(f"<th>{text(column)}</th>" for column in columns)
    body = "".join("<tr>" + "".join(f"<td>{text(row.get(column, ''))}</td>" for column in columns) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def key_values(pairs: Iterable[tuple[str, object]]) -> str:
    """A two-column table: name, value (both escaped)."""
    body = "".join(f"<tr><th>{text(name)}</th><td>{text(value)}</td></tr>" for name, value in pairs)
    return f"<table><tbody>{body}</tbody></table>"


def figure(fig: go.Figure, anchor: str) -> str:
    """A plotly figure as a div; plotly.js itself is in the page head (see `page`)."""
    # auto_play off: a figure with frames (steps) opens at the step it was drawn for, as on the dashboard
    body = fig.to_html(full_html=False, include_plotlyjs=False, div_id=anchor, default_width="100%", auto_play=False,
                       config={"displayModeBar": False, "responsive": True})
    return f'<div class="figure">{body}</div>'


def png(picture: np.ndarray, scale: int = 1) -> str:
    """An image as a data URI: [H, W] floats in [0, 1] (1 = ink, drawn dark on white) or
    [H, W, 3] uint8 colours; `scale` enlarges it with square pixels."""
    from PIL import Image

    picture = np.asarray(picture)
    if picture.ndim == 2:
        picture = np.round(255 * (1 - np.clip(np.nan_to_num(picture, nan=0.0), 0, 1))).astype(np.uint8)
    image = Image.fromarray(picture)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image(picture: np.ndarray, alt: str, scale: int = 1) -> str:
    return f'<img src="{png(picture, scale)}" alt="{text(alt)}">'


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{text(title)}</h2>{body}</section>'


def page(title: str, lead: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole file: (anchor, title, body html) per section, a table of contents, plotly.js once."""
    from plotly.offline import get_plotlyjs

    contents = "".join(f'<a href="#{anchor}">{text(name)}</a>' for anchor, name, _ in sections)
    body = "".join(section(anchor, name, html_body) for anchor, name, html_body in sections)
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{text(title)}</title>"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{STYLE}</style>"
            f"<script>{get_plotlyjs()}</script></head><body><h1>{text(title)}</h1>"
            f"<p class=\"lead\">{text(lead)}</p><nav>{contents}</nav>{body}</body></html>")
