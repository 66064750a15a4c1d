"""Few-shot data: Omniglot (the real benchmark), scikit-learn's digits (offline), sinusoids.

Image datasets come back as `ImageClasses`: every class holds the same number of 28x28
float32 images in [0, 1] with bright strokes on a dark background, the way the MAML
literature feeds Omniglot to its models.

Omniglot is read from `data_dir()` (a zip or an unpacked folder per subset) and downloaded
from its public release when absent. Decoding its 32,460 PNGs takes seconds, so the decoded
arrays are cached on disk (`<data dir>/cache`, or a user cache when the data directory is
read-only) and every result is also kept in memory for the life of the process.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import http.client
import io
import math
import os
import pathlib
import stat
import tempfile
import urllib.request
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np
from PIL import Image

Progress = Callable[[float, str], None]
Drawings = dict[tuple[str, str], list[str]]  # (alphabet, character) -> paths of its PNGs

IMAGE_SIZE = 28
SPLITS = ("train", "val", "test")
DATASETS = ("omniglot", "digits")
ROTATIONS = (0, 90, 180, 270)

OMNIGLOT_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/{file}"
# (alphabets, characters) of the original release; every character has 20 drawings.
OMNIGLOT_SUBSETS = {"images_background": (30, 964), "images_evaluation": (20, 659)}
DRAWINGS_PER_CHARACTER = 20
TRAIN_ALPHABETS = 25  # the first 25 background alphabets (sorted) train, the other 5 validate
# Bump when the decoded arrays change (size, resampling, inversion) so old caches are rebuilt.
CACHE_FORMAT_VERSION = 1

# Digits rotated by 180° collide with other classes (6 <-> 9) or with themselves (0, 1), so
# each split lists its rotations explicitly: {digit: rotations}.
# Validation gets digits of its own (4 and 5), so training length can be chosen on it
# without ever looking at the meta-test classes.
DIGIT_ROTATIONS = {
    "train": {0: (0, 90), 1: (0, 90), 2: ROTATIONS, 3: ROTATIONS},
    "val": {4: ROTATIONS, 5: ROTATIONS},
    "test": {digit: (0, 90) for digit in range(6, 10)},
}


class DataNotFoundError(RuntimeError):
    """The data is not on disk and could not be downloaded."""


class DataError(RuntimeError):
    """The data is there but wrong: unexpected structure or counts, or an unreadable file."""


@dataclass(frozen=True, eq=False)  # eq=False: comparing/hashing image arrays is meaningless
class ImageClasses:
    dataset: str  # "omniglot" | "digits"
    split: str  # "train" | "val" | "test"
    images: np.ndarray  # float32 [classes, images per class, 28, 28], read-only, 1 = stroke
    class_names: tuple[str, ...]  # "Latin/character01", "Latin/character01 (rot 90)", "digit 7"
    groups: tuple[str, ...]  # per class: the alphabet (omniglot) or "digit 7" (digits)

    def __post_init__(self) -> None:
        if not len(self.class_names) == len(self.groups) == len(self.images):
            raise ValueError("images, class_names and groups must describe the same classes")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def images_per_class(self) -> int:
        return self.images.shape[1]

    @functools.cached_property
    def group_of_class(self) -> np.ndarray:
        """`groups` as an array, made once: a 500-task map looks it up for every task."""
        return np.asarray(self.groups)


def data_dir() -> pathlib.Path:
    """$METAVIZ_DATA_DIR if set, else $XDG_CACHE_HOME/metaviz or ~/.cache/metaviz."""
    configured = os.environ.get("METAVIZ_DATA_DIR")
    return pathlib.Path(configured).expanduser() if configured else _user_cache_root()


def load_classes(
    dataset: str,
    split: str,
    *,
    rotations: bool | None = None,
    data_directory: pathlib.Path | None = None,
    progress: Progress | None = None,
) -> ImageClasses:
    """The classes of one split of an image dataset; repeated calls return the cached result.

    omniglot: "train" is the first 25 (sorted) background alphabets, "val" the other 5,
    "test" the 20 evaluation alphabets (659 characters). With `rotations`, every character
    also appears rotated by 90, 180 and 270 degrees (counter-clockwise) as separate classes.

    digits: "train" is digits 0-3 at rotations 0/90/180/270, without 0 and 1 at 180/270
    (they duplicate 0/90): 12 classes. "val" is digits 4 and 5 at all four rotations: 8
    classes. "test" is digits 6-9 at rotations 0/90 (6 at 180 would be a 9): 8 classes.
    rotations=False keeps only the unrotated classes.

    `rotations=None` picks the standard setting: on for Omniglot's train split and for both
    digits splits (their classes are defined with rotations), off otherwise.
    `progress(fraction, message)` is called while downloading and decoding; each phase runs
    its fraction from 0 to 1, and the last call is always progress(1.0, ...).
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if rotations is None:
        rotations = split == "train" or dataset == "digits"
    directory = pathlib.Path(data_directory or data_dir()).expanduser().resolve()
    # lru_cache keys on every argument, and a callback is no part of what is loaded, so
    # the progress callback reaches the loaders through a context variable.
    token = _progress.set(progress)
    try:
        classes = _load_classes_cached(
            dataset, split, bool(rotations), str(directory) if dataset == "omniglot" else ""
        )
    finally:
        _progress.reset(token)
    if progress is not None:
        progress(1.0, f"Loaded {classes.num_classes} {dataset} {split} classes")
    return classes


@dataclass(frozen=True)
class SinusoidRange:
    """Task distribution of the MAML paper's sinusoid regression (Finn et al., 2017)."""

    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x: tuple[float, float] = (-5.0, 5.0)


def sinusoid(x: np.ndarray, amplitude: float, phase: float) -> np.ndarray:
    return amplitude * np.sin(x - phase)


# --- in-process cache and progress -----------------------------------------------------------

_progress: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("progress", default=None)


def _report(fraction: float, message: str) -> None:
    callback = _progress.get()
    if callback is not None:
        callback(min(max(fraction, 0.0), 1.0), message)


@functools.lru_cache(maxsize=8)
def _load_classes_cached(dataset: str, split: str, rotations: bool, directory: str) -> ImageClasses:
    if dataset == "digits":
        return _digits_classes(split, rotations)
    return _omniglot_classes(split, rotations, pathlib.Path(directory))


def _image_classes(dataset, split, images, names, groups, rotations_per_class) -> ImageClasses:
    """One class per (class, rotation), class-major; images are float32 [classes, n, 28, 28]."""
    picks = [(index, angle) for index, angles in enumerate(rotations_per_class) for angle in angles]
    expanded = np.empty((len(picks), *images.shape[1:]), np.float32)
    for row, (index, angle) in enumerate(picks):
        expanded[row] = np.rot90(images[index], k=angle // 90, axes=(-2, -1))
    # Cached results are shared between callers: nobody may change them in place.
    expanded.setflags(write=False)
    class_names = tuple(names[index] + (f" (rot {angle})" if angle else "") for index, angle in picks)
    class_groups = tuple(groups[index] for index, _ in picks)
    return ImageClasses(dataset, split, expanded, class_names, class_groups)


# --- digits ----------------------------------------------------------------------------------


def _digits_classes(split: str, rotations: bool) -> ImageClasses:
    rotations_by_digit = DIGIT_ROTATIONS[split]
    digits = sorted(rotations_by_digit)
    images = _digits_images()[digits]
    names = [f"digit {digit}" for digit in digits]
    angles = [rotations_by_digit[digit] if rotations else (0,) for digit in digits]
    return _image_classes("digits", split, images, names, names, angles)


@functools.lru_cache(maxsize=1)
def _digits_images() -> np.ndarray:
    """float32 [10, images per digit, 28, 28]: the first n images of each digit, n = the rarest."""
    from metaviz.import_lock import SCIKIT_LEARN_IMPORTS

    with SCIKIT_LEARN_IMPORTS:  # see metaviz.import_lock
        from sklearn.datasets import load_digits  # imported here: slow, and only digits needs it

    bunch = load_digits()
    per_digit = int(np.bincount(bunch.target).min())
    images = np.empty((10, per_digit, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    for digit in range(10):
        for slot, image in enumerate(bunch.images[bunch.target == digit][:per_digit]):
            small = Image.fromarray((image / 16.0).astype(np.float32))  # mode "F", 0..16 -> 0..1
            big = small.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
            images[digit, slot] = np.clip(np.asarray(big), 0.0, 1.0)
    return images


# --- omniglot --------------------------------------------------------------------------------


def _omniglot_classes(split: str, rotations: bool, directory: pathlib.Path) -> ImageClasses:
    subset = "images_evaluation" if split == "test" else "images_background"
    images, characters = _omniglot_subset(subset, directory)
    if split != "test":
        train_alphabets = sorted({alphabet for alphabet, _ in characters})[:TRAIN_ALPHABETS]
        keep = [(alphabet in train_alphabets) == (split == "train") for alphabet, _ in characters]
        images = images[np.flatnonzero(keep)]
        characters = [character for character, kept in zip(characters, keep) if kept]
    names = [f"{alphabet}/{character}" for alphabet, character in characters]
    alphabets = [alphabet for alphabet, _ in characters]
    angles = [ROTATIONS if rotations else (0,)] * len(names)
    float_images = images.astype(np.float32) / 255
    return _image_classes("omniglot", split, float_images, names, alphabets, angles)


def _omniglot_subset(subset: str, directory: pathlib.Path) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """uint8 [characters, 20, 28, 28] (255 = stroke) and the sorted (alphabet, character) pairs."""
    source = _find_or_download(subset, directory)
    with _open_pngs(source) as (sizes, read):
        drawings = _drawings_by_character(subset, sizes)
        _check_counts(subset, source, drawings)
        # The file listing identifies the source: a cache built from other files is stale.
        listing = "\n".join(f"{path}:{sizes[path]}" for paths in drawings.values() for path in paths)
        fingerprint = hashlib.sha256(listing.encode()).hexdigest()
        cache_name = f"omniglot-{subset.removeprefix('images_')}-{IMAGE_SIZE}.npz"
        cache_file = _cache_dir(directory) / cache_name
        images = _read_cache(cache_file, fingerprint, len(drawings))
        if images is None:
            images = _decode_drawings(read, drawings)
            _write_cache(cache_file, fingerprint, images)
    return images, list(drawings)


def _find_or_download(subset: str, directory: pathlib.Path) -> pathlib.Path:
    archive, folder = directory / f"{subset}.zip", directory / subset
    if archive.is_file():
        return archive
    if folder.is_dir():
        return folder
    try:
        # A folder without write bits is shared, read-only data: never download into it.
        if directory.exists() and not _writable(directory):
            raise PermissionError(f"{directory} is read-only")
        _download_zip(OMNIGLOT_URL.format(file=archive.name), archive)
    except (OSError, http.client.HTTPException, zipfile.BadZipFile) as error:
        urls = " and ".join(OMNIGLOT_URL.format(file=f"{name}.zip") for name in OMNIGLOT_SUBSETS)
        raise DataNotFoundError(
            f"Omniglot's {subset} set is not in {directory}, and downloading it failed ({error}). "
            f"Put images_background.zip and images_evaluation.zip (from {urls}) into {directory}, "
            "or unpack them there as images_background/ and images_evaluation/, "
            "or set METAVIZ_DATA_DIR to a directory that holds them."
        ) from error
    return archive


def _download_zip(url: str, destination: pathlib.Path, opener: Callable | None = None) -> None:
    opener = opener or urllib.request.urlopen  # looked up per call so tests can replace it
    _report(0.0, f"Downloading {destination.name}")
    with _atomic_file(destination) as file, opener(url, timeout=60) as response:
        total, received = int(response.headers.get("Content-Length") or 0), 0
        while chunk := response.read(1 << 16):
            file.write(chunk)
            received += len(chunk)
            if total:
                megabytes = f"{received / 2**20:.1f} of {total / 2**20:.1f} MiB"
                _report(received / total, f"Downloading {destination.name}: {megabytes}")
        if not zipfile.is_zipfile(file):  # e.g. a proxy's HTML error page
            raise zipfile.BadZipFile(f"{url} did not return a zip file")


@contextlib.contextmanager
def _open_pngs(source: pathlib.Path) -> Iterator[tuple[dict[str, int], Callable[[str], bytes]]]:
    """A zip's or folder's PNGs as ({"<subset>/<alphabet>/<character>/<file>": size}, read)."""
    if source.is_dir():
        root = source.parent
        sizes = {png.relative_to(root).as_posix(): png.stat().st_size for png in source.rglob("*.png")}
        yield sizes, lambda member: (root / member).read_bytes()
        return
    try:
        archive = zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as error:
        raise DataError(f"{source} is not a readable zip ({error}); delete it to download again") from error
    with archive:
        infos = [info for info in archive.infolist() if info.filename.endswith(".png")]
        yield {info.filename: info.file_size for info in infos}, archive.read


def _drawings_by_character(subset: str, members: Iterable[str]) -> Drawings:
    """{(alphabet, character): sorted drawing paths}, sorted; anything off the layout is ignored."""
    drawings: Drawings = {}
    for member in members:
        parts = member.split("/")
        # Skips macOS litter such as "._0709_01.png" next to the real drawings.
        if len(parts) == 4 and parts[0] == subset and not parts[3].startswith("."):
            drawings.setdefault((parts[1], parts[2]), []).append(member)
    return {character: sorted(drawings[character]) for character in sorted(drawings)}


def _check_counts(subset: str, source: pathlib.Path, drawings: Drawings) -> None:
    expected_alphabets, expected_characters = OMNIGLOT_SUBSETS[subset]
    alphabets = {alphabet for alphabet, _ in drawings}
    fix = f"Replace it with the original {subset}.zip from {OMNIGLOT_URL.format(file=subset + '.zip')}."
    if len(alphabets) != expected_alphabets or len(drawings) != expected_characters:
        raise DataError(
            f"{source}: expected {expected_alphabets} alphabets with {expected_characters} characters "
            f"laid out as {subset}/<alphabet>/<character>/<drawing>.png, found {len(alphabets)} "
            f"alphabets with {len(drawings)} characters. {fix}"
        )
    wrong = [
        f"{alphabet}/{character} has {len(paths)}"
        for (alphabet, character), paths in drawings.items()
        if len(paths) != DRAWINGS_PER_CHARACTER
    ]
    if wrong:
        raise DataError(
            f"{source}: every character needs {DRAWINGS_PER_CHARACTER} drawings, but {len(wrong)} "
            f"do not ({', '.join(wrong[:5])}{', ...' if len(wrong) > 5 else ''}). {fix}"
        )


def _decode_drawings(read: Callable[[str], bytes], drawings: Drawings) -> np.ndarray:
    # Serial on purpose: a thread pool measured no faster (resizing holds the GIL), and a
    # process pool would save about a second once per machine, since the result is cached.
    images = np.empty((len(drawings), DRAWINGS_PER_CHARACTER, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for index, paths in enumerate(drawings.values()):
        for slot, path in enumerate(paths):
            try:
                with Image.open(io.BytesIO(read(path))) as image:
                    # Mode "1" (bilevel) images resize only with NEAREST: go greyscale first.
                    greyscale = image.convert("L")
                small = greyscale.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
            except (OSError, ValueError, SyntaxError, zipfile.BadZipFile, zlib.error) as error:
                raise DataError(f"{path} is unreadable ({error}); replace the file it came from") from error
            # Omniglot draws black on white; models expect strokes bright (1) on dark (0).
            images[index, slot] = 255 - np.asarray(small)
        if index % 16 == 0:
            message = f"Decoding Omniglot: character {index + 1} of {len(drawings)}"
            _report(index / len(drawings), message)
    return images


# --- files on disk ---------------------------------------------------------------------------


def _user_cache_root() -> pathlib.Path:
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "metaviz"


def _cache_dir(data_directory: pathlib.Path) -> pathlib.Path:
    """$METAVIZ_CACHE_DIR, else <data dir>/cache when writable, else the user's cache."""
    if configured := os.environ.get("METAVIZ_CACHE_DIR"):
        return pathlib.Path(configured).expanduser()
    preferred = data_directory / "cache"
    if _writable(preferred if preferred.exists() else data_directory):
        return preferred
    return _user_cache_root() / "cache"


def _writable(path: pathlib.Path) -> bool:
    # os.access says yes to root everywhere; containers often run as root, and a directory
    # without write bits (a shared, read-only data folder) is still meant to be left alone.
    try:
        write_bits = path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    except OSError:
        return False
    return bool(write_bits) and os.access(path, os.W_OK)


@contextlib.contextmanager
def _atomic_file(destination: pathlib.Path) -> Iterator[BinaryIO]:
    """A temporary file that replaces `destination` only if the block succeeds, so readers
    (other processes, other Streamlit sessions) and interrupted runs never see half a file."""
    folder, name = destination.parent, destination.name
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=name, suffix=".part")
    try:
        with os.fdopen(handle, "w+b") as file:
            yield file
        os.chmod(temporary, 0o644)  # mkstemp makes the file private; data and caches are not
        os.replace(temporary, destination)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _read_cache(cache_file: pathlib.Path, fingerprint: str, characters: int) -> np.ndarray | None:
    """The cached images, or None when missing, corrupt, stale or of the wrong shape."""
    try:
        with np.load(cache_file, allow_pickle=False) as cached:
            version, cached_fingerprint = int(cached["format_version"]), str(cached["fingerprint"])
            images = cached["images"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if version != CACHE_FORMAT_VERSION or cached_fingerprint != fingerprint:
        return None
    expected_shape = (characters, DRAWINGS_PER_CHARACTER, IMAGE_SIZE, IMAGE_SIZE)
    return images if images.dtype == np.uint8 and images.shape == expected_shape else None


def _write_cache(cache_file: pathlib.Path, fingerprint: str, images: np.ndarray) -> None:
    try:
        with _atomic_file(cache_file) as file:
            np.savez(file, images=images, fingerprint=np.array(fingerprint),
                     format_version=np.array(CACHE_FORMAT_VERSION))
    except OSError as error:  # the cache only saves time; the images are loaded all the same
        warnings.warn(f"Could not write the Omniglot cache {cache_file}: {error}", stacklevel=2)
