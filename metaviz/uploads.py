"""User images: a `.zip` with one folder per class, or loose files named class by class.

Everything happens in memory: the zip is read with `zipfile` and never extracted, so entry
names (which the uploader chose, `../../etc/passwd` included) never touch the file system.
Limits are checked while bytes stream out of the archive, not taken from its headers, which
the uploader also chose. Links, names with hidden NUL characters, zips inside the zip and
folders nested absurdly deep are skipped with a note; one image is read by
metaviz.image_files (formats, pixel limit, full decoding, conversion to 28x28).

Nothing here imports streamlit; problems raise `UploadError` with a message meant for the
user, and skipped files are listed as plain-language notes.
"""
from __future__ import annotations

import hashlib
import io
import stat
import unicodedata
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from metaviz.image_files import IMAGE_SUFFIXES, UploadError, convert_image  # the pages and tests use these here too

MAX_ZIP_BYTES = 20 * 2**20  # the same as the server's upload cap (.streamlit/config.toml)
MAX_ENTRIES = 2000  # files and folders in one zip
MAX_DEPTH = 8  # folders inside folders: `my task/cats/a.png` is 2 deep
MAX_FILE_BYTES = 8 * 2**20  # one image, once decompressed
MAX_TOTAL_BYTES = 100 * 2**20  # all images of one upload, once decompressed
MAX_CLASSES = 50
MAX_IMAGES_PER_CLASS = 200
MAX_NAME_LENGTH = 60
READ_CHUNK = 64 * 1024
ZIP_SUFFIXES = (".zip",)
# Files that operating systems and photo tools leave next to pictures: ignored silently (one note).
SYSTEM_FILES = {"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r", "__macosx"}


def check_file_name(name: str, suffixes: Sequence[str], what: str) -> None:
    """The server's own check of an uploaded file's type, by its name's extension (a browser's
    MIME type is the uploader's claim): UploadError when the name does not end in `suffixes`."""
    if "\0" in name or not name.lower().endswith(tuple(suffixes)):
        raise UploadError(f"{clean_class_name(name) or 'the file'} is not {what} "
                          f"(the name must end in {' or '.join(suffixes)})")


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
        skipped = len(self.notes)  # files; the class notes below are not
        images = {name: self.images[name] for name in names if self.images[name]}
        for name in [name for name in names if name not in images]:
            self.notes.append(f"class {name}: left out, none of its images could be read")
        if not images:
            raise UploadError("no usable images were found" + (f" ({skipped} files skipped, listed below)"
                                                               if skipped else ""))
        digest = hashlib.sha256()
        for name, found in images.items():
            digest.update(name.encode() + b"\0")
            for image in found:
                digest.update(image.tobytes())
        return UploadedImages(images, tuple(self.notes), digest.hexdigest())


# --- names ------------------------------------------------------------------------------------


def clean_class_name(name: str) -> str:
    """A class name as the user typed or named its folder: printable, trimmed, not too long.

    NFC normalisation: macOS writes `café` as `cafe` + a combining accent, and a class typed by
    hand and a folder named on a Mac must still be one class. Invisible format characters
    (right-to-left overrides, zero-width spaces) become spaces, so a name cannot disguise itself."""
    normalised = unicodedata.normalize("NFC", str(name))
    printable = "".join(character if character.isprintable() else " " for character in normalised)
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
    return any(part.startswith(".") or part.lower() in SYSTEM_FILES for part in parts)


def _entry_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as its maker wrote it. Without the zip's UTF-8 flag, zipfile decodes names
    as cp437 (the zip standard's old default), but many tools write UTF-8 there all the same."""
    name = info.orig_filename  # zipfile's `filename` is cut at a NUL; this one is not
    if not info.flag_bits & 0x800:
        try:
            name = name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return name


def _is_link(info: zipfile.ZipInfo) -> bool:
    """A symbolic link stored by a Unix zip tool (its target is the entry's content): never followed."""
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def _skip_reason(info: zipfile.ZipInfo, name: str, parts: list[str] | None) -> str | None:
    """Why an entry is left out (a note for the user), or None when it may be an image."""
    if "\0" in name:
        return "its name hides a NUL character (a trick to disguise a file's type)"
    if parts is None or not parts:
        return "its path points outside the zip"
    if _is_link(info):
        return "it is a link to another file, and links are never followed"
    if len(parts) - 1 > MAX_DEPTH:
        return f"it lies {len(parts) - 1} folders deep; at most {MAX_DEPTH} are read"
    if parts[-1].lower().endswith((".zip", ".7z", ".rar", ".tar", ".gz", ".tgz")):
        return "an archive inside the zip is not opened; unpack it and put its folders in the zip"
    if not parts[-1].lower().endswith(IMAGE_SUFFIXES):
        return "not an image (PNG, JPEG, BMP or GIF)"
    if len(parts) < 2:
        return "it is not inside a class folder"
    return None


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


def _open_zip(data: bytes) -> zipfile.ZipFile:
    if not data:
        raise UploadError("the file is empty (0 bytes); it may not have finished saving or copying")
    if len(data) > MAX_ZIP_BYTES:
        raise UploadError(f"the zip file is {len(data) / 2**20:.1f} MB; at most {MAX_ZIP_BYTES // 2**20} MB "
                          "is accepted")
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UploadError("this file is not a zip archive (or it is damaged); "
                          "make one with your system's 'Compress' command") from None
    except (OSError, ValueError, EOFError) as error:
        raise UploadError(f"this zip archive is damaged ({error})") from None


def _image_entries(infos: list[zipfile.ZipInfo], collector: _Collector) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """The entries that may be class images, as path parts; notes for the rest."""
    images, hidden = [], 0
    for info in infos:
        if info.is_dir():
            continue
        name = _entry_name(info)
        parts = _safe_parts(name)
        if parts and _is_hidden(parts) and "\0" not in name:
            hidden += 1  # system files (macOS resource forks, .DS_Store, Thumbs.db): one note for all
            continue
        reason = _skip_reason(info, name, parts)
        if reason:
            collector.notes.append(f"{clean_class_name(name) or '(unnamed file)'}: skipped, {reason}")
        elif info.flag_bits & 0x1:
            raise UploadError("the zip is protected by a password; make it again without one")
        else:
            images.append((info, parts))
    if hidden:
        collector.notes.append(f"{hidden} hidden system file{'s' if hidden != 1 else ''} (such as __MACOSX, "
                               ".DS_Store or Thumbs.db) ignored")
    return images


def read_zip(data: bytes) -> UploadedImages:
    """The images of a zip with one folder per class (any number of shared folders above them).

    Skips, with a note: folders' metadata (`__MACOSX/`, dotfiles, Thumbs.db), non-image files,
    images that cannot be decoded, files outside any class folder, unsafe paths and links.
    """
    archive = _open_zip(data)
    with archive:
        infos = archive.infolist()
        if not infos:
            raise UploadError("the zip archive is empty")
        if len(infos) > MAX_ENTRIES:
            raise UploadError(f"the zip holds {len(infos)} files and folders; at most {MAX_ENTRIES} are accepted")
        collector = _Collector()
        images = _image_entries(infos, collector)
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
                collector.notes.append(f"{shown}: skipped, it unpacks to more than {MAX_FILE_BYTES // 2**20} MB "
                                       "(far more than a picture needs)")
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
            if "\0" in file_name or not file_name.lower().endswith(IMAGE_SUFFIXES):
                # The browser's type filter is the uploader's to bypass: the server checks again.
                collector.notes.append(f"{shown}: skipped, not a PNG, JPEG, BMP or GIF file (by its name)")
                continue
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
    if len(uploaded.class_names) < ways:
        have = len(uploaded.class_names)
        raise UploadError(f"this model tells apart {ways} classes, and the upload has only {have} class"
                          f"{'' if have == 1 else 'es'} with usable images; add images of "
                          f"{ways - have} more class{'' if ways - have == 1 else 'es'}, or pick a model "
                          "trained for fewer classes")
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


