"""Tests for metaviz.data: Omniglot on the real data, its failure modes on fakes, digits, sinusoids."""
import io
import math
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metaviz import data


@pytest.fixture(autouse=True)
def fresh_memory_cache():
    # Tests below swap the decoder or the data; results must not leak between tests.
    data._load_classes_cached.cache_clear()
    yield
    data._load_classes_cached.cache_clear()


@pytest.fixture(scope="module")
def omniglot(omniglot_dir: Path) -> dict[str, data.ImageClasses]:
    """The three real splits, loaded once (the disk cache makes this fast after the first run)."""
    return {split: data.load_classes("omniglot", split, data_directory=omniglot_dir) for split in data.SPLITS}


def base_name(class_name: str) -> str:
    return class_name.split(" (rot ")[0]


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_fake_subset(directory: Path, subset: str, characters: dict[str, int], as_zip: bool = True) -> None:
    """A miniature Omniglot subset: {"Alphabet/characterNN": drawings}; a dark square on white."""
    pixels = np.full((105, 105), 255, np.uint8)
    pixels[30:70, 30:70] = 0
    drawing = png_bytes(pixels)
    members = {
        f"{subset}/{name}/{index:04d}_{number:02d}.png": drawing
        for index, (name, count) in enumerate(characters.items())
        for number in range(1, count + 1)
    }
    if as_zip:
        with zipfile.ZipFile(directory / f"{subset}.zip", "w") as archive:
            for member, content in members.items():
                archive.writestr(member, content)
    else:
        for member, content in members.items():
            (directory / member).parent.mkdir(parents=True, exist_ok=True)
            (directory / member).write_bytes(content)


# --- Omniglot on the real data --------------------------------------------------------------


def test_omniglot_has_the_published_counts(omniglot):
    background_alphabets = set(omniglot["train"].groups) | set(omniglot["val"].groups)
    background_characters = {base_name(name) for split in ("train", "val") for name in omniglot[split].class_names}
    assert (len(background_alphabets), len(background_characters)) == (30, 964)
    assert (len(set(omniglot["test"].groups)), omniglot["test"].num_classes) == (20, 659)
    assert all(classes.images_per_class == 20 for classes in omniglot.values())


def test_omniglot_split_sizes(omniglot):
    train, val, test = omniglot["train"], omniglot["val"], omniglot["test"]
    assert len(set(train.groups)) == 25 and len(set(val.groups)) == 5
    assert train.num_classes == 4 * len({base_name(name) for name in train.class_names})
    assert val.num_classes + train.num_classes // 4 == 964
    assert not any("(rot" in name for name in val.class_names + test.class_names)
    assert test.images.shape == (659, 20, 28, 28)
    assert train.groups[0] < val.groups[0]  # train takes the first alphabets in sorted order


def test_omniglot_splits_are_disjoint(omniglot):
    characters = {split: {base_name(name) for name in classes.class_names} for split, classes in omniglot.items()}
    assert not characters["train"] & characters["val"]
    assert not characters["train"] & characters["test"]
    assert not characters["val"] & characters["test"]
    assert not set(omniglot["train"].groups) & set(omniglot["val"].groups)


def test_omniglot_images_are_bright_strokes_on_dark(omniglot):
    for classes in omniglot.values():
        assert classes.images.dtype == np.float32
        assert classes.images.min() >= 0.0 and classes.images.max() <= 1.0
        assert classes.images.mean() < 0.5  # mostly dark background
        assert not classes.images.flags.writeable  # shared through the cache


def test_omniglot_rotated_classes_are_rotated_copies(omniglot):
    train = omniglot["train"]
    first = train.class_names[0]
    assert train.class_names[:4] == (first, f"{first} (rot 90)", f"{first} (rot 180)", f"{first} (rot 270)")
    np.testing.assert_array_equal(train.images[1], np.rot90(train.images[0], k=1, axes=(-2, -1)))
    assert len(set(train.groups[:4])) == 1


def test_repeated_loads_come_from_memory(omniglot_dir):
    first = data.load_classes("omniglot", "test", data_directory=omniglot_dir)
    assert data.load_classes("omniglot", "test", data_directory=omniglot_dir) is first


# --- the disk cache (real listing, fake decoder so nothing slow runs) ------------------------


@pytest.fixture
def counting_decoder(monkeypatch, tmp_path):
    """Replaces PNG decoding with a fast fake that counts its calls; the cache goes to tmp_path."""
    monkeypatch.setenv("METAVIZ_CACHE_DIR", str(tmp_path / "cache"))
    calls = []

    def decode(read, drawings):
        calls.append(len(drawings))
        return np.full((len(drawings), 20, 28, 28), 7, np.uint8)

    monkeypatch.setattr(data, "_decode_drawings", decode)
    return calls


def load_test_split(directory: Path) -> data.ImageClasses:
    data._load_classes_cached.cache_clear()
    return data.load_classes("omniglot", "test", data_directory=directory)


def test_second_load_uses_the_disk_cache(omniglot_dir, counting_decoder, tmp_path):
    load_test_split(omniglot_dir)
    assert counting_decoder == [659]
    assert (tmp_path / "cache" / "omniglot-evaluation-28.npz").is_file()
    cached = load_test_split(omniglot_dir)
    assert counting_decoder == [659]  # not decoded again
    assert np.allclose(cached.images, 7 / 255)


@pytest.mark.parametrize("damage", ["corrupt", "old format", "other source"])
def test_a_bad_cache_is_rebuilt(omniglot_dir, counting_decoder, tmp_path, damage):
    load_test_split(omniglot_dir)
    cache_file = tmp_path / "cache" / "omniglot-evaluation-28.npz"
    if damage == "corrupt":
        cache_file.write_bytes(b"not an npz file")
    else:
        with np.load(cache_file) as cached:
            contents = dict(cached)
        key = "format_version" if damage == "old format" else "fingerprint"
        contents[key] = np.array(0 if damage == "old format" else "another zip")
        np.savez(cache_file, **contents)
    load_test_split(omniglot_dir)
    assert counting_decoder == [659, 659]
    with np.load(cache_file, allow_pickle=False) as rebuilt:
        assert int(rebuilt["format_version"]) == data.CACHE_FORMAT_VERSION


def test_a_read_only_data_directory_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("METAVIZ_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    read_only = tmp_path / "shared"
    read_only.mkdir(mode=0o555)
    assert data._cache_dir(read_only) == tmp_path / "user-cache" / "metaviz" / "cache"
    assert data._cache_dir(tmp_path) == tmp_path / "cache"
    with pytest.raises(data.DataNotFoundError, match="read-only"):  # and nothing is downloaded into it
        data.load_classes("omniglot", "test", data_directory=read_only)


# --- Omniglot failure modes and small fakes --------------------------------------------------


def test_wrong_counts_raise_a_helpful_data_error(tmp_path):
    write_fake_subset(tmp_path, "images_background", {"Latin/character01": 20, "Greek/character01": 20})
    with pytest.raises(data.DataError) as error:
        data.load_classes("omniglot", "train", data_directory=tmp_path)
    message = str(error.value)
    assert "images_background.zip" in message and str(tmp_path) in message
    assert "expected 30 alphabets with 964 characters" in message
    assert "found 2 alphabets with 2 characters" in message


def test_missing_drawings_are_named(tmp_path, monkeypatch):
    monkeypatch.setitem(data.OMNIGLOT_SUBSETS, "images_evaluation", (1, 2))
    write_fake_subset(tmp_path, "images_evaluation", {"Latin/character01": 20, "Latin/character02": 3})
    with pytest.raises(data.DataError, match=r"needs 20 drawings.*Latin/character02 has 3"):
        data.load_classes("omniglot", "test", data_directory=tmp_path)


def test_not_a_zip_raises_data_error(tmp_path):
    (tmp_path / "images_evaluation.zip").write_bytes(b"<html>not found</html>")
    with pytest.raises(data.DataError, match="not a readable zip"):
        data.load_classes("omniglot", "test", data_directory=tmp_path)


@pytest.mark.parametrize("as_zip", [True, False], ids=["zip", "unpacked folder"])
def test_a_small_valid_subset_loads_and_is_preprocessed(tmp_path, monkeypatch, as_zip):
    monkeypatch.setitem(data.OMNIGLOT_SUBSETS, "images_evaluation", (2, 3))
    monkeypatch.setenv("METAVIZ_CACHE_DIR", str(tmp_path / "cache"))
    characters = {"Latin/character01": 20, "Latin/character02": 20, "Greek/character01": 20}
    write_fake_subset(tmp_path, "images_evaluation", characters, as_zip=as_zip)
    reports = []
    test = data.load_classes("omniglot", "test", data_directory=tmp_path, progress=lambda *report: reports.append(report))
    assert test.class_names == ("Greek/character01", "Latin/character01", "Latin/character02")
    assert test.groups == ("Greek", "Latin", "Latin")
    assert test.images.shape == (3, 20, 28, 28)
    assert test.images[0, 0, 14, 14] == pytest.approx(1.0) and test.images[0, 0, 0, 0] == pytest.approx(0.0)
    assert all(0.0 <= fraction <= 1.0 for fraction, _ in reports) and reports[-1][0] == 1.0


def test_missing_data_without_network_names_files_directory_and_url(tmp_path, monkeypatch):
    def no_network(url, timeout):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(data.urllib.request, "urlopen", no_network)
    with pytest.raises(data.DataNotFoundError) as error:
        data.load_classes("omniglot", "test", data_directory=tmp_path)
    message = str(error.value)
    for expected in ("images_background.zip", "images_evaluation.zip", str(tmp_path), data.OMNIGLOT_URL.format(file=""), "METAVIZ_DATA_DIR"):
        assert expected in message
    assert list(tmp_path.iterdir()) == []  # no half-downloaded file left behind


class FakeResponse(io.BytesIO):
    def __init__(self, content: bytes):
        super().__init__(content)
        self.headers = {"Content-Length": str(len(content))}


def test_download_writes_the_whole_file_and_reports_progress(tmp_path):
    write_fake_subset(tmp_path, "images_evaluation", {"Latin/character01": 1})
    content = (tmp_path / "images_evaluation.zip").read_bytes()
    reports = []
    destination = tmp_path / "downloads" / "images_evaluation.zip"
    token = data._progress.set(lambda *report: reports.append(report))
    try:
        data._download_zip("https://example.invalid/x.zip", destination, opener=lambda url, timeout: FakeResponse(content))
    finally:
        data._progress.reset(token)
    assert destination.read_bytes() == content
    assert reports[0][0] == 0.0 and reports[-1][0] == 1.0
    assert [path.name for path in destination.parent.iterdir()] == ["images_evaluation.zip"]


def test_download_of_something_else_than_a_zip_leaves_nothing(tmp_path):
    destination = tmp_path / "images_evaluation.zip"
    with pytest.raises(zipfile.BadZipFile):
        data._download_zip("https://example.invalid/x.zip", destination, opener=lambda url, timeout: FakeResponse(b"<html>"))
    assert list(tmp_path.iterdir()) == []


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("METAVIZ_DATA_DIR", str(tmp_path / "data"))
    assert data.data_dir() == tmp_path / "data"
    monkeypatch.delenv("METAVIZ_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.data_dir() == tmp_path / "xdg" / "metaviz"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.data_dir() == Path.home() / ".cache" / "metaviz"


def test_unknown_dataset_or_split_is_rejected():
    with pytest.raises(ValueError, match="dataset"):
        data.load_classes("mnist", "train")
    with pytest.raises(ValueError, match="split"):
        data.load_classes("digits", "validation")


# --- digits ----------------------------------------------------------------------------------


def test_digits_splits_offline():
    train, val, test = (data.load_classes("digits", split) for split in data.SPLITS)
    assert (train.num_classes, val.num_classes, test.num_classes) == (12, 8, 8)
    assert train.images.shape[1:] == test.images.shape[1:] == (174, 28, 28)  # 174 = the rarest digit's count
    for first, second in ((train, val), (train, test), (val, test)):  # no digit in two splits
        assert not set(first.groups) & set(second.groups)
    assert "digit 0 (rot 180)" not in train.class_names and "digit 2 (rot 270)" in train.class_names
    assert "digit 6 (rot 90)" in test.class_names and "digit 9 (rot 180)" not in test.class_names
    for classes in (train, val, test):
        assert classes.images.dtype == np.float32
        assert classes.images.min() >= 0.0 and classes.images.max() <= 1.0
        assert classes.images.mean() < 0.5


def test_digits_without_rotations():
    train = data.load_classes("digits", "train", rotations=False)
    assert train.class_names == ("digit 0", "digit 1", "digit 2", "digit 3")
    rotated = data.load_classes("digits", "train")
    np.testing.assert_array_equal(train.images[2], rotated.images[rotated.class_names.index("digit 2")])


# --- sinusoid --------------------------------------------------------------------------------


def test_sinusoid_matches_the_maml_paper():
    ranges = data.SinusoidRange()
    assert ranges.amplitude == (0.1, 5.0) and ranges.phase == (0.0, math.pi) and ranges.x == (-5.0, 5.0)
    x = np.linspace(*ranges.x, 101)
    y = data.sinusoid(x, amplitude=2.0, phase=0.5)
    np.testing.assert_allclose(y, 2.0 * np.sin(x - 0.5))
    assert np.abs(y).max() <= 2.0
    assert data.sinusoid(np.array([0.5]), 3.0, 0.5)[0] == pytest.approx(0.0)
