"""One uploaded image file -> a 28x28 picture as the model's training images look.

Pillow opens only PNG, JPEG, BMP and GIF (whatever the file is called), reads the declared
size from the header and refuses anything too large before a single pixel is decoded
(decompression-bomb warnings are errors here), then decodes the whole image: `verify()`
alone lets a truncated JPEG through. Conversion: greyscale (16-bit, CMYK, palette with
transparency and RGBA included), upright (EXIF orientations 1-8), first frame of a
multi-frame file, fitted into 28x28, bright strokes on a dark background, floats in [0, 1].

No streamlit here; problems raise `UploadError` with a short reason meant for the user.
"""
from __future__ import annotations

import io
import warnings
import zlib

import numpy as np
from PIL import Image, ImageOps

IMAGE_SIZE = 28
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
MAX_PIXELS = 4096 * 4096  # one image; far below Pillow's own bomb limit (about 89 million)


class UploadError(ValueError):
    """The upload cannot be used; the message says why, in words meant for the user."""


def _too_many_pixels(width: int | None = None, height: int | None = None) -> UploadError:
    size = f"it is {width} x {height} pixels" if width else "it declares an enormous number of pixels"
    return UploadError(f"{size}; at most {MAX_PIXELS // 10**6} million pixels are accepted "
                       "(a few hundred pixels across are plenty)")


def convert_image(data: bytes) -> np.ndarray:
    """An image file's bytes -> float32 [28, 28] in [0, 1], bright strokes on dark.

    UploadError (with a short reason) when the bytes are not a supported, complete image.
    """
    if not data:
        raise UploadError("the file is empty (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # never decode a bomb, even a small one
        try:
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
                # Image.open reads only the header: the size is known before any pixel is decoded.
                if image.width * image.height > MAX_PIXELS:
                    raise _too_many_pixels(image.width, image.height)
                image.seek(0)  # an animated GIF or PNG: its first frame
                image.load()  # decodes everything: a truncated or corrupt file fails here
                upright = ImageOps.exif_transpose(image)
                pixels = _greyscale(upright)
        except UploadError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_many_pixels() from None
        except Image.UnidentifiedImageError:
            raise UploadError("it is not a readable PNG, JPEG, BMP or GIF image") from None
        except (OSError, ValueError, SyntaxError, EOFError, MemoryError, zlib.error) as error:
            raise UploadError(f"the image is damaged or incomplete ({error})") from None
    return fit_strokes(pixels)


def _greyscale(image: Image.Image) -> np.ndarray:
    """float [h, w] in [0, 1] (1 = white). Transparent areas take the colour that contrasts with
    what is drawn, so dark ink on a transparent sheet reads as ink on paper, and light ink as chalk."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        if image.mode == "F" and values.max(initial=0) <= 1.0:
            top = 1.0
        return np.clip(values / top, 0.0, 1.0)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64) / 255.0
        grey = rgba[..., :3] @ np.array([0.299, 0.587, 0.114])
        alpha = rgba[..., 3]
        drawn = alpha.sum()
        ink = (grey * alpha).sum() / drawn if drawn > 0 else 0.0
        background = 1.0 if ink < 0.5 else 0.0
        return grey * alpha + background * (1.0 - alpha)
    return np.asarray(image.convert("L"), dtype=np.float64) / 255.0


def fit_strokes(grey: np.ndarray) -> np.ndarray:
    """A greyscale picture (1 = white) -> 28x28 float32, strokes 1 on background 0.

    A light border means a light background (ink on paper, as Omniglot is drawn): invert it.
    The picture is padded to a square with its background, so it is not stretched, then
    scaled down, and its grey levels are stretched so background is 0 and the brightest
    stroke 1, as in the training images.
    """
    grey = np.asarray(grey, dtype=np.float64)
    height, width = grey.shape
    ring = max(1, min(height, width) // 20)
    border = np.concatenate([grey[:ring].ravel(), grey[-ring:].ravel(), grey[:, :ring].ravel(),
                             grey[:, -ring:].ravel()])
    strokes = 1.0 - grey if border.mean() > 0.5 else grey
    background = float(np.median(1.0 - border if border.mean() > 0.5 else border))
    side = max(height, width)
    square = np.full((side, side), background, np.float32)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = strokes
    small = np.asarray(Image.fromarray(square, mode="F").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS))
    brightest = float(small.max())
    if brightest - background < 0.05:
        raise UploadError("it is blank (one flat colour)")
    return np.clip((small - background) / (brightest - background), 0.0, 1.0).astype(np.float32)
