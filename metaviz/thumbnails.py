"""Small pictures of a task for a hover card (the Task embeddings map): what the model adapted on.

An image task gives a strip of its support images, the first example of each class in label
order, as a grey PNG; a sine-wave task gives a sketch of its wave with the given points, as
SVG. Both come back as data URIs, which a browser shows without asking the server again, so
hundreds of them travel with the map at once. The SVG is made from numbers only: no text of
the task's (class names may be a user's folder names) ever goes into it.
"""
from __future__ import annotations

import base64
import io

import numpy as np

from metaviz.data import SinusoidRange, sinusoid
from metaviz.tasks import Task

GREY_LEVELS = 16  # kept per pixel: a strip halves in size and the characters look the same
STRIP_GAP = 2  # pixels between two images of a strip
GAP_GREY = 0.3  # ink in the gap between images: a light grey line, darker than paper, lighter than strokes
WAVE_WIDTH, WAVE_HEIGHT = 168, 64  # the sketch's size in screen pixels
WAVE_SAMPLES = 48  # points along the drawn curve
WAVE_COLOUR, POINT_COLOUR = "#1f77b4", "#ff7f0e"  # metaviz.figures' support-set colours


def _data_uri(mime: str, content: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(content).decode('ascii')}"


def support_strip(task: Task) -> np.ndarray:
    """[28, ways * (28 + gap) - gap] floats in [0, 1], 1 = ink: each class's first support image,
    in label order (the order the task names its classes)."""
    images, labels = task.support_x[:, 0].numpy(), task.support_y.numpy()
    firsts = [images[np.flatnonzero(labels == label)[0]] for label in range(task.ways)]
    height, width = firsts[0].shape
    strip = np.full((height, task.ways * (width + STRIP_GAP) - STRIP_GAP), GAP_GREY, np.float32)
    for index, image in enumerate(firsts):
        left = index * (width + STRIP_GAP)
        strip[:, left : left + width] = np.clip(image, 0.0, 1.0)
    return strip


def strip_png(strip: np.ndarray) -> bytes:
    """A strip as a grey PNG, ink dark on white paper (as metaviz.figures draws images)."""
    from PIL import Image

    levels = np.round((1.0 - strip) * (GREY_LEVELS - 1)) * (255 // (GREY_LEVELS - 1))
    buffer = io.BytesIO()
    Image.fromarray(levels.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def wave_svg(amplitude: float, phase: float, points_x, points_y, ranges: SinusoidRange = SinusoidRange()) -> bytes:
    """The task's wave over the whole x range, its given points on top; axes fixed to the task
    distribution's ranges, so a flat wave looks flat beside a tall one."""
    (x_low, x_high), top = ranges.x, ranges.amplitude[1]

    def to_screen(x, y):
        return ((np.asarray(x) - x_low) / (x_high - x_low) * (WAVE_WIDTH - 8) + 4,
                (top - np.asarray(y)) / (2 * top) * (WAVE_HEIGHT - 8) + 4)

    curve_x = np.linspace(x_low, x_high, WAVE_SAMPLES)
    screen_x, screen_y = to_screen(curve_x, sinusoid(curve_x, amplitude, phase))
    path = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in zip(screen_x, screen_y))
    _, zero = to_screen(0.0, 0.0)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.6" fill="{POINT_COLOUR}"/>'
                   for x, y in zip(*to_screen(points_x, points_y)))
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WAVE_WIDTH}" height="{WAVE_HEIGHT}" '
           f'viewBox="0 0 {WAVE_WIDTH} {WAVE_HEIGHT}"><rect width="100%" height="100%" fill="#ffffff"/>'
           f'<line x1="0" x2="{WAVE_WIDTH}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#c8ccd2"/>'
           f'<path d="{path}" fill="none" stroke="{WAVE_COLOUR}" stroke-width="1.6"/>{dots}</svg>')
    return svg.encode("ascii")


def task_thumbnail(task: Task) -> str:
    """A data URI: the support strip (PNG) of an image task, the wave sketch (SVG) of a sine wave."""
    if task.is_regression:
        source = task.source
        return _data_uri("image/svg+xml", wave_svg(source["amplitude"], source["phase"],
                                                   task.support_x[:, 0].numpy(), task.support_y[:, 0].numpy()))
    return _data_uri("image/png", strip_png(support_strip(task)))
