"""User images: a `.zip` with one folder per class, or loose files named class by class.

Everything happens in memory: the zip is read with `zipfile` and never extracted, so entry
names (which the uploader chose, `../../etc/passwd` included) never touch the file system.
Limits are checked while bytes stream out of the archive, not taken from its headers, which
the uploader also chose. Pillow opens only PNG, JPEG, BMP and GIF (first frame), checks the
pixel count before it decodes anything, and decodes every image fully.

Each image is converted the way the training data looks (see metaviz.data): greyscale,
upright (EXIF orientation), fitted into 28x28, bright strokes on a dark background, floats
in [0, 1]. Nothing here imports streamlit; problems raise `UploadError` with a message meant
for the user, and skipped files are listed as plain-language notes.
"""
from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

IMAGE_SIZE = 28
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
MAX_ZIP_BYTES = 20 * 2**20  # the same as the server's upload cap (.streamlit/config.toml)
MAX_ENTRIES = 2000  # files and folders in one zip
MAX_FILE_BYTES = 8 * 2**20  # one image, once decompressed
MAX_TOTAL_BYTES = 100 * 2**20  # all images of one upload, once decompressed
MAX_PIXELS = 4096 * 4096  # one image; far below Pillow's own bomb limit (about 89 million)
MAX_CLASSES = 50
MAX_IMAGES_PER_CLASS = 200
MAX_NAME_LENGTH = 60
READ_CHUNK = 64 * 1024


class UploadError(ValueError):
    """The upload cannot be used; the message says why, in words meant for the user."""


@dataclass(frozen=True)
class UploadedImages:
    """Converted images per class (in the order the upload lists them) and what was skipped."""

    images_by_class: dict[str, list[np.ndarray]]  # class name -> float32 [28, 28] images, 1 = stroke
    notes: tuple[str, ...] = ()  # one line per skipped file, and why
    content_sha256: str = ""  # of the converted images and class names: an upload's identity

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.images_by_class)

    def count(self, name: str) -> int:
        return len(self.images_by_class[name])


@dataclass
class _Collector:
    """Images and notes gathered while reading, with the running byte total."""

    images: dict[str, list[np.ndarray]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    total_bytes: int = 0

    def add(self, class_name: str, file_name: str, data: bytes) -> None:
        self.total_bytes += len(data)
        if self.total_bytes > MAX_TOTAL_BYTES:
            raise UploadError(f"the images add up to more than {MAX_TOTAL_BYTES // 2**20} MB; "
                              "a few-shot task needs only a handful of small images per class")
        images = self.images.setdefault(class_name, [])
        if len(images) >= MAX_IMAGES_PER_CLASS:
            self.notes.append(f"{file_name}: skipped, class {class_name} already has {MAX_IMAGES_PER_CLASS} images")
            return
        try:
            images.append(convert_image(data))
        except UploadError as error:
            self.notes.append(f"{file_name}: skipped, {error}")

    def result(self, sort: bool = False) -> UploadedImages:
        names = sorted(self.images, key=str.casefold) if sort else list(self.images)
        images = {name: self.images[name] for name in names if self.images[name]}
        for name in [name for name in names if name not in images]:
            self.notes.append(f"class {name}: left out, none of its images could be read")
        if not images:
            raise UploadError("no usable images were found" + (f" ({len(self.notes)} files skipped, listed below)"
                                                               if self.notes else ""))
        digest = hashlib.sha256()
        for name, found in images.items():
            digest.update(name.encode() + b"\0")
            for image in found:
                digest.update(image.tobytes())
        return UploadedImages(images, tuple(self.notes), digest.hexdigest())


# --- one image --------------------------------------------------------------------------------


def convert_image(data: bytes) -> np.ndarray:
    """An image file's bytes -> float32 [28, 28] in [0, 1], bright strokes on dark.

    UploadError (with a short reason) when the bytes are not a supported, complete image.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # never decode a bomb, even a small one
        try:
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
                # Image.open reads only the header: the size is known before any pixel is decoded.
                if image.width * image.height > MAX_PIXELS:
                    raise UploadError(f"it is {image.width} x {image.height} pixels; at most "
                                      f"{MAX_PIXELS // 10**6} million pixels are accepted")
                image.seek(0)  # an animated GIF or PNG: its first frame
                image.load()  # decodes everything: a truncated or corrupt file fails here
                upright = ImageOps.exif_transpose(image)
                pixels = _greyscale(upright)
        except UploadError:
            raise
        except Image.DecompressionBombError as error:
            raise UploadError(f"it declares too many pixels ({error})") from None
        except Image.DecompressionBombWarning as warning:
            raise UploadError(f"it declares too many pixels ({warning})") from None
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


# --- names ------------------------------------------------------------------------------------


def clean_class_name(name: str) -> str:
    """A class name as the user typed or named its folder: printable, trimmed, not too long."""
    printable = "".join(character if character.isprintable() else " " for character in str(name))
    cleaned = " ".join(printable.split())
    return cleaned[:MAX_NAME_LENGTH]


def _safe_parts(name: str) -> list[str] | None:
    """A zip entry's path as parts; None for absolute paths, drive letters and '..' anywhere."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if any(part == ".." for part in parts):
        return None
    return parts


def _is_hidden(parts: Sequence[str]) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


# --- a zip ------------------------------------------------------------------------------------


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes | None:
    """The entry's bytes, streamed; None when it grows past MAX_FILE_BYTES (the header may lie)."""
    chunks, size = [], 0
    with archive.open(info) as stream:
        while chunk := stream.read(READ_CHUNK):
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                return None
            chunks.append(chunk)
    return b"".join(chunks)


def _class_folders(entries: list[tuple[zipfile.ZipInfo, list[str]]]) -> int:
    """How many leading folders all images share (a zip of `my task/cats/...`, `my task/dogs/...`
    has one), so the class is the first folder below them."""
    folders = [parts[:-1] for _, parts in entries]
    shared = 0
    while all(len(parts) > shared + 1 for parts in folders) and len({parts[shared] for parts in folders}) == 1:
        shared += 1
    return shared


def read_zip(data: bytes) -> UploadedImages:
    """The images of a zip with one folder per class (any number of shared folders above them).

    Skips, with a note: folders' metadata (`__MACOSX/`, dotfiles), non-image files, images
    that cannot be decoded, files outside any class folder, and unsafe paths.
    """
    if len(data) > MAX_ZIP_BYTES:
        raise UploadError(f"the zip file is {len(data) / 2**20:.1f} MB; at most {MAX_ZIP_BYTES // 2**20} MB "
                          "is accepted")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UploadError("this file is not a zip archive (or it is damaged); "
                          "make one with your system's 'Compress' command") from None
    except (OSError, ValueError, EOFError) as error:
        raise UploadError(f"this zip archive is damaged ({error})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise UploadError(f"the zip holds {len(infos)} files and folders; at most {MAX_ENTRIES} are accepted")
        collector = _Collector()
        images: list[tuple[zipfile.ZipInfo, list[str]]] = []
        hidden = 0
        for info in infos:
            if info.is_dir():
                continue
            shown = clean_class_name(info.filename) or "(unnamed file)"
            parts = _safe_parts(info.filename)
            if parts is None or not parts:
                collector.notes.append(f"{shown}: skipped, its path points outside the zip")
            elif _is_hidden(parts):
                hidden += 1  # system files (macOS resource forks, .DS_Store): one note for all
            elif not parts[-1].lower().endswith(IMAGE_SUFFIXES):
                collector.notes.append(f"{shown}: skipped, not an image (PNG, JPEG, BMP or GIF)")
            elif len(parts) < 2:
                collector.notes.append(f"{shown}: skipped, it is not inside a class folder")
            else:
                images.append((info, parts))
        if hidden:
            collector.notes.append(f"{hidden} hidden system file{'s' if hidden != 1 else ''} (such as __MACOSX or "
                                   ".DS_Store) ignored")
        shared = _class_folders(images)
        for info, parts in images:
            shown = clean_class_name("/".join(parts))
            class_name = clean_class_name(parts[shared])
            if not class_name:
                collector.notes.append(f"{shown}: skipped, its folder has no usable name")
                continue
            if class_name not in collector.images and len(collector.images) >= MAX_CLASSES:
                raise UploadError(f"the zip has more than {MAX_CLASSES} class folders")
            try:
                content = _read_entry(archive, info)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
                raise UploadError(f"the zip archive is damaged: {shown} cannot be read ({error})") from None
            except (RuntimeError, NotImplementedError) as error:  # encrypted, or an exotic compression
                raise UploadError(f"{shown} cannot be unpacked ({error}); "
                                  "use an ordinary zip without a password") from None
            if content is None:
                collector.notes.append(f"{shown}: skipped, larger than {MAX_FILE_BYTES // 2**20} MB once unpacked")
                continue
            collector.add(class_name, shown, content)
    return collector.result(sort=True)


# --- files dropped class by class ----------------------------------------------------------------


def read_class_files(classes: Iterable[tuple[str, Sequence[tuple[str, bytes]]]]) -> UploadedImages:
    """Images given class by class: (class name, [(file name, bytes), ...]) pairs."""
    collector = _Collector()
    for raw_name, files in classes:
        class_name = clean_class_name(raw_name)
        if not files:
            continue
        if not class_name:
            raise UploadError("every class with images needs a name")
        if class_name in collector.images:
            raise UploadError(f"two classes are named {class_name}; give each class its own name")
        collector.images[class_name] = []
        for file_name, content in files:
            shown = clean_class_name(file_name) or "(unnamed file)"
            if len(content) > MAX_FILE_BYTES:
                collector.notes.append(f"{shown}: skipped, larger than {MAX_FILE_BYTES // 2**20} MB")
                continue
            collector.add(class_name, shown, content)
    if not collector.images:
        raise UploadError("no images yet: add images to at least two classes")
    return collector.result()


# --- from images to a task ----------------------------------------------------------------------


def task_images(uploaded: UploadedImages, classes: Sequence[str], ways: int, shots: int,
                queries: int) -> tuple[dict[str, list[np.ndarray]], int]:
    """The images of the chosen classes and how many new images per class the task tests on
    (at most `queries`, fewer when a class has fewer images). UploadError when they cannot
    make a `ways`-way `shots`-shot task."""
    unknown = [name for name in classes if name not in uploaded.images_by_class]
    if unknown:
        raise UploadError(f"the upload has no class named {', '.join(unknown)}")
    if len(classes) != ways:
        have = f"{len(classes)} class" + ("" if len(classes) == 1 else "es")
        raise UploadError(f"this model tells apart exactly {ways} classes, and {have} "
                          f"{'is' if len(classes) == 1 else 'are'} chosen; "
                          + ("choose more, or upload more classes" if len(classes) < ways else f"choose {ways}"))
    too_few = [f"{name} ({uploaded.count(name)})" for name in classes if uploaded.count(name) < shots + 1]
    if too_few:
        raise UploadError(f"with {shots} example{'s' if shots != 1 else ''} per class to learn from, every "
                          f"class needs at least {shots + 1} images (one more to test on); too few in: "
                          + ", ".join(too_few))
    chosen = {name: uploaded.images_by_class[name] for name in classes}
    available = min(len(images) for images in chosen.values()) - shots
    return chosen, min(queries, available)


def build_task(uploaded: UploadedImages, classes: Sequence[str], ways: int, shots: int, queries: int,
               seed: int = 0):
    """A Task (metaviz.tasks.task_from_images) from the chosen classes of an upload."""
    from metaviz.tasks import task_from_images

    chosen, queries = task_images(uploaded, classes, ways, shots, queries)
    return task_from_images(chosen, shots=shots, queries=queries, seed=seed)


