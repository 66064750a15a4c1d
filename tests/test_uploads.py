"""User uploads: zips and loose images, read in memory, limited, converted like the training data."""
import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from metaviz import uploads
from metaviz.uploads import UploadError, build_task, convert_image, read_class_files, read_zip, task_images


def drawing(size=(60, 40), ink=0, paper=255, mode="L") -> Image.Image:
    """A dark bar on light paper (as a person draws), in the given image mode."""
    pixels = np.full((size[1], size[0]), paper, np.uint8)
    pixels[size[1] // 4 : 3 * size[1] // 4, size[0] // 2 - 3 : size[0] // 2 + 3] = ink
    return Image.fromarray(pixels, "L").convert(mode)


def encode(image: Image.Image, fmt="PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


PNG = encode(drawing())


def make_zip(files: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def class_zip(classes=("cats", "dogs", "owls"), per_class=3, prefix="") -> bytes:
    return make_zip({f"{prefix}{name}/{index}.png": PNG for name in classes for index in range(per_class)})


# --- conversion ----------------------------------------------------------------------------------


def test_a_dark_drawing_on_paper_becomes_bright_strokes_on_dark_28x28():
    image = convert_image(PNG)
    assert image.shape == (28, 28) and image.dtype == np.float32
    assert image.min() == 0.0 and image.max() == pytest.approx(1.0)
    assert image[0].max() < 0.05 and image[:, 0].max() < 0.05  # background dark
    assert image[14, 14] > 0.8  # the bar (centre) is bright


def test_light_strokes_on_dark_are_not_inverted():
    image = convert_image(encode(drawing(ink=250, paper=10)))
    assert image[14, 14] > 0.8 and image[0, 0] < 0.05


def test_a_wide_picture_is_padded_not_stretched():
    image = convert_image(encode(drawing(size=(120, 30))))  # a bar 6 of 120 pixels wide
    columns = np.flatnonzero(image.max(axis=0) > 0.5)
    assert len(columns) <= 3  # stretched it would be ~6 pixels wide at 28
    rows = np.flatnonzero(image.max(axis=1) > 0.5)
    assert rows.min() > 5 and rows.max() < 22  # centred vertically in the padding


@pytest.mark.parametrize("mode", ["RGB", "P", "1", "LA"])
def test_every_common_mode_converts_the_same_way(mode):
    reference = convert_image(PNG)
    image = convert_image(encode(drawing(mode=mode)))
    assert np.abs(image - reference).max() < 0.1


def test_rgba_ink_on_a_transparent_sheet_reads_as_strokes():
    pixels = np.zeros((40, 40, 4), np.uint8)  # fully transparent black
    pixels[10:30, 18:22] = (0, 0, 0, 255)  # opaque black ink
    image = convert_image(encode(Image.fromarray(pixels, "RGBA")))
    assert image[14, 14] > 0.8 and image[0, 0] < 0.05
    pixels[10:30, 18:22] = (255, 255, 255, 255)  # white chalk on a transparent sheet
    image = convert_image(encode(Image.fromarray(pixels, "RGBA")))
    assert image[14, 14] > 0.8 and image[0, 0] < 0.05


def test_palette_with_transparency():
    palette = Image.new("P", (40, 40), 0)
    palette.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    palette.paste(1, (18, 10, 22, 30))
    image = convert_image(encode(palette, transparency=0))
    assert image[14, 14] > 0.8 and image[0, 0] < 0.05


def test_sixteen_bit_greyscale_uses_its_full_range():
    pixels = np.full((40, 40), 60000, np.uint16)
    pixels[10:30, 18:22] = 1000
    sixteen = Image.fromarray(pixels)
    assert sixteen.mode.startswith("I")
    image = convert_image(encode(sixteen))
    assert image[14, 14] > 0.8 and image[0, 0] < 0.05


def test_jpeg_bmp_and_the_first_frame_of_a_gif():
    for fmt in ("JPEG", "BMP"):
        assert convert_image(encode(drawing(mode="RGB"), fmt))[14, 14] > 0.7
    frames = [drawing(mode="P"), Image.new("P", (60, 40), 0)]
    animated = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert convert_image(animated)[14, 14] > 0.8


def test_exif_orientation_is_applied():
    upright = drawing(size=(60, 40))  # a vertical bar
    lying = upright.transpose(Image.Transpose.ROTATE_90)  # stored turned: the bar is horizontal
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 clockwise to display": turns the stored image back upright
    data = encode(lying.convert("RGB"), "JPEG", exif=exif.tobytes(), quality=95)
    image = convert_image(data)
    assert (image.max(axis=0) > 0.5).sum() < (image.max(axis=1) > 0.5).sum()  # taller than wide: upright


def test_truncated_png_is_refused():
    with pytest.raises(UploadError, match="damaged or incomplete"):
        convert_image(PNG[: len(PNG) // 2])


def test_a_huge_declared_pixel_count_is_refused_before_decoding():
    # A valid PNG header that declares 100000 x 100000 pixels, followed by almost no data.
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + \
        chunk(b"IEND", b"")
    with pytest.raises(UploadError, match="pixels"):
        convert_image(bomb)


def test_other_formats_and_non_images_are_refused():
    with pytest.raises(UploadError, match="not a readable PNG, JPEG, BMP or GIF"):
        convert_image(encode(drawing(), "TIFF"))
    with pytest.raises(UploadError, match="not a readable PNG, JPEG, BMP or GIF"):
        convert_image(b"hello, world")


def test_a_blank_image_is_refused():
    with pytest.raises(UploadError, match="blank"):
        convert_image(encode(Image.new("L", (30, 30), 200)))


# --- zips --------------------------------------------------------------------------------------


def test_a_good_zip_gives_one_class_per_folder():
    uploaded = read_zip(class_zip())
    assert uploaded.class_names == ("cats", "dogs", "owls")
    assert all(uploaded.count(name) == 3 for name in uploaded.class_names)
    assert uploaded.notes == ()
    assert read_zip(class_zip()).content_sha256 == uploaded.content_sha256  # the same upload, the same identity


def test_shared_parent_folders_are_skipped_and_subfolders_join_their_class():
    files = {"my task/cats/a.png": PNG, "my task/cats/more/b.png": PNG, "my task/dogs/c.png": PNG}
    uploaded = read_zip(make_zip(files))
    assert uploaded.class_names == ("cats", "dogs")
    assert uploaded.count("cats") == 2


def test_system_files_non_images_and_loose_files_are_skipped_with_notes():
    files = {"cats/a.png": PNG, "dogs/b.png": PNG, "__MACOSX/cats/._a.png": b"junk", "cats/.DS_Store": b"junk",
             "dogs/notes.txt": b"text", "readme.png": PNG}
    uploaded = read_zip(make_zip(files))
    assert uploaded.class_names == ("cats", "dogs")
    notes = "\n".join(uploaded.notes)
    assert "dogs/notes.txt: skipped, not an image" in notes
    assert "readme.png: skipped, it is not inside a class folder" in notes
    assert "2 hidden system files" in notes


def test_path_traversal_names_never_become_classes():
    files = {"../evil/a.png": PNG, "/etc/b.png": PNG, "cats/../../c.png": PNG, "C:/win/d.png": PNG,
             "..\\up\\e.png": PNG, "cats/ok.png": PNG, "dogs/ok.png": PNG}
    uploaded = read_zip(make_zip(files))
    assert uploaded.class_names == ("cats", "dogs")
    assert sum("points outside the zip" in note for note in uploaded.notes) == 5


def test_a_damaged_image_inside_a_zip_is_a_note():
    uploaded = read_zip(make_zip({"cats/a.png": PNG, "cats/b.png": PNG[:40], "dogs/c.png": PNG}))
    assert uploaded.count("cats") == 1
    assert any(note.startswith("cats/b.png: skipped, it is not a readable") for note in uploaded.notes)


def test_not_a_zip():
    with pytest.raises(UploadError, match="not a zip archive"):
        read_zip(b"PK but not really a zip file at all")
    with pytest.raises(UploadError, match="not a zip archive"):
        read_zip(PNG)


def test_a_corrupt_zip():
    data = bytearray(make_zip({"cats/a.png": PNG * 3, "dogs/b.png": PNG * 3}))
    start = data.find(b"cats/a.png") + 40  # inside the first entry's compressed data
    data[start : start + 200] = bytes(200)
    with pytest.raises(UploadError, match="damaged"):
        read_zip(bytes(data))


def test_too_many_entries(monkeypatch):
    monkeypatch.setattr(uploads, "MAX_ENTRIES", 5)
    with pytest.raises(UploadError, match="holds 6 files and folders; at most 5"):
        read_zip(class_zip(classes=("a", "b"), per_class=3))


def test_an_oversized_zip_is_refused_before_opening(monkeypatch):
    monkeypatch.setattr(uploads, "MAX_ZIP_BYTES", 1000)
    with pytest.raises(UploadError, match="at most 0 MB|is accepted"):
        read_zip(class_zip())


def test_a_zip_bomb_entry_is_cut_off_while_streaming(monkeypatch):
    monkeypatch.setattr(uploads, "MAX_FILE_BYTES", 100_000)
    bomb = make_zip({"cats/bomb.png": b"\0" * 5_000_000, "cats/a.png": PNG, "dogs/b.png": PNG})
    assert len(bomb) < 50_000
    uploaded = read_zip(bomb)
    assert uploaded.count("cats") == 1
    assert any("bomb.png: skipped, it unpacks to more than" in note for note in uploaded.notes)


def test_a_lying_header_size_does_not_get_past_the_cap(monkeypatch):
    """The declared uncompressed size says 10 bytes; the stream says otherwise."""
    monkeypatch.setattr(uploads, "MAX_FILE_BYTES", 100_000)
    data = bytearray(make_zip({"cats/bomb.png": b"\0" * 1_000_000, "dogs/b.png": PNG}))
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local and central headers
        position = data.find(signature)
        data[position + offset : position + offset + 4] = struct.pack("<I", 10)
    try:
        uploaded = read_zip(bytes(data))
    except UploadError as error:  # zipfile may also notice the mismatch: a plain message either way
        assert "damaged" in str(error)
    else:
        assert "cats" not in uploaded.class_names


def test_total_size_is_capped(monkeypatch):
    monkeypatch.setattr(uploads, "MAX_TOTAL_BYTES", len(PNG) * 4)
    with pytest.raises(UploadError, match="add up to more than"):
        read_zip(class_zip(per_class=3))


def test_an_encrypted_entry_is_a_plain_message():
    data = bytearray(make_zip({"cats/a.png": PNG, "dogs/b.png": PNG}, compression=zipfile.ZIP_STORED))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # set the "encrypted" flag bit
        position = data.find(signature)
        data[position + offset] |= 0x1
    with pytest.raises(UploadError, match="password"):
        read_zip(bytes(data))


def test_a_zip_without_images():
    with pytest.raises(UploadError, match="no usable images"):
        read_zip(make_zip({"notes/readme.txt": b"hi"}))


# --- class by class ---------------------------------------------------------------------------


def test_images_class_by_class():
    uploaded = read_class_files([("cats", [("a.png", PNG), ("b.jpg", encode(drawing(mode="RGB"), "JPEG"))]),
                                 ("  dogs\n ", [("c.png", PNG), ("bad.png", b"nope")]), ("empty", [])])
    assert uploaded.class_names == ("cats", "dogs")
    assert uploaded.count("cats") == 2 and uploaded.count("dogs") == 1
    assert any(note.startswith("bad.png: skipped") for note in uploaded.notes)


def test_class_names_must_be_given_and_distinct():
    with pytest.raises(UploadError, match="needs a name"):
        read_class_files([("", [("a.png", PNG)])])
    with pytest.raises(UploadError, match="two classes are named cats"):
        read_class_files([("cats", [("a.png", PNG)]), ("cats ", [("b.png", PNG)])])


def test_class_names_are_cleaned():
    assert uploads.clean_class_name("  a\tb\x00c  ") == "a b c"
    assert len(uploads.clean_class_name("x" * 500)) == uploads.MAX_NAME_LENGTH


# --- to a task -------------------------------------------------------------------------------


def test_build_task_uses_the_chosen_classes_and_caps_queries():
    uploaded = read_zip(make_zip({**{f"a/{i}.png": PNG for i in range(4)}, **{f"b/{i}.png": PNG for i in range(3)},
                                  "c/0.png": PNG}))
    task = build_task(uploaded, ["a", "b"], ways=2, shots=1, queries=5, seed=3)
    assert task.class_names == ("a", "b")
    assert task.support_x.shape == (2, 1, 28, 28)
    assert task.query_x.shape == (4, 1, 28, 28)  # 2 per class: the smaller class has 3 images, 1 is a shot
    assert task.source["kind"] == "uploaded"
    assert build_task(uploaded, ["a", "b"], 2, 1, 5, seed=3).source == task.source  # re-creatable


def test_task_images_explain_what_is_wrong():
    uploaded = read_zip(make_zip({"a/0.png": PNG, "a/1.png": PNG, "b/0.png": PNG, "c/0.png": PNG, "c/1.png": PNG}))
    with pytest.raises(UploadError, match="exactly 3 classes, and 2 classes are chosen; choose more"):
        task_images(uploaded, ["a", "c"], ways=3, shots=1, queries=1)
    with pytest.raises(UploadError, match=r"at least 2 images .* too few in: b \(1\)"):
        task_images(uploaded, ["a", "b"], ways=2, shots=1, queries=1)
    with pytest.raises(UploadError, match="no class named z"):
        task_images(uploaded, ["a", "z"], ways=2, shots=1, queries=1)
