"""Hostile and unlucky uploads (issue 8): every case gets a specific, plain message, and the
rest of the upload still works. Built with the real default limits where that stays cheap;
docs/RELIABILITY.md lists each case with the test here that covers it."""
import io
import stat
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from metaviz import uploads
from metaviz.uploads import (
    UploadError, check_file_name, convert_image, read_class_files, read_zip, task_images,
)
from tests.test_uploads import PNG, drawing, encode, make_zip

GOOD = {"cats/a.png": PNG, "cats/b.png": PNG, "dogs/c.png": PNG, "dogs/d.png": PNG}


def notes_of(files: dict[str, bytes], **kwargs) -> str:
    uploaded = read_zip(make_zip({**GOOD, **files}, **kwargs))
    assert uploaded.class_names == ("cats", "dogs") and uploaded.count("cats") == 2  # the good part survives
    return "\n".join(uploaded.notes)


def png_header(width: int, height: int) -> bytes:
    """A complete, valid greyscale PNG of the given size whose pixels are all 0, compressed
    row by row (a 10000 x 10000 one is 100 MB of pixels in about 100 kB)."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    compressor, row, idat = zlib.compressobj(9), b"\0" * (width + 1), []
    for _ in range(height):
        idat.append(compressor.compress(row))
    idat.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(idat)) + chunk(b"IEND", b"")


# --- the archive itself ----------------------------------------------------------------------------


def test_an_empty_upload():
    with pytest.raises(UploadError, match=r"the file is empty \(0 bytes\)"):
        read_zip(b"")


def test_an_empty_zip():
    with pytest.raises(UploadError, match="the zip archive is empty"):
        read_zip(make_zip({}))


def test_an_encrypted_zip_is_refused_before_any_entry_is_read():
    data = bytearray(make_zip(GOOD, compression=zipfile.ZIP_STORED))
    position = data.find(b"PK\x01\x02")  # the central directory's first entry: set "encrypted"
    data[position + 8] |= 0x1
    with pytest.raises(UploadError, match="protected by a password; make it again without one"):
        read_zip(bytes(data))


def test_a_zip_bomb_with_the_default_limits():
    """50 MB of zeros in about 50 kB (ratio 1000:1): cut off after 8 MB, the rest still read."""
    bomb = make_zip({**GOOD, "cats/bomb.png": bytes(50 * 2**20)})
    assert len(bomb) < 200_000
    uploaded = read_zip(bomb)
    assert uploaded.count("cats") == 2
    assert "cats/bomb.png: skipped, it unpacks to more than 8 MB" in "\n".join(uploaded.notes)


def test_the_total_unpacked_size_is_capped_with_the_default_limits():
    """13 entries just under the per-file cap add up past the 100 MB total."""
    entries = {f"cats/{index}.png": bytes(uploads.MAX_FILE_BYTES - 1) for index in range(13)}
    with pytest.raises(UploadError, match="the images add up to more than 100 MB"):
        read_zip(make_zip(entries))


def test_too_many_entries_with_the_default_limits():
    entries = {f"cats/{index}.png": b"" for index in range(uploads.MAX_ENTRIES + 1)}
    with pytest.raises(UploadError, match=f"holds {uploads.MAX_ENTRIES + 1} files and folders; at most 2000"):
        read_zip(make_zip(entries, compression=zipfile.ZIP_STORED))


def test_deep_nesting_and_archives_inside_the_zip():
    deep = "/".join(f"level{index}" for index in range(12))
    notes = notes_of({f"cats/{deep}/a.png": PNG, "cats/more.zip": make_zip(GOOD)})
    assert "lies 13 folders deep; at most 8 are read" in notes
    assert "cats/more.zip: skipped, an archive inside the zip is not opened" in notes


def test_too_many_classes_and_too_many_images_in_a_class_with_the_default_limits():
    with pytest.raises(UploadError, match="the zip has more than 50 class folders"):
        read_zip(make_zip({f"class {index}/a.png": PNG for index in range(uploads.MAX_CLASSES + 1)}))
    uploaded = read_zip(make_zip({**GOOD, **{f"cats/{index}.png": PNG for index in range(205)}}))
    assert uploaded.count("cats") == uploads.MAX_IMAGES_PER_CLASS == 200
    assert sum("skipped, class cats already has 200 images" in note for note in uploaded.notes) == 7


# --- hostile names -----------------------------------------------------------------------------------


def test_a_nul_character_hidden_in_a_name():
    """`a.png\\0.exe`: zipfile itself cuts the name at the NUL, showing `a.png`; refused."""
    data = make_zip({**GOOD, "cats/x.png_.exe": PNG}).replace(b"x.png_.exe", b"x.png\0.exe")
    uploaded = read_zip(data)
    assert uploaded.count("cats") == 2
    assert any("x.png .exe: skipped, its name hides a NUL character" in note for note in uploaded.notes)


def test_symlink_entries_are_never_followed():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in GOOD.items():
            archive.writestr(name, content)
        link = zipfile.ZipInfo("cats/passwords.png")
        link.create_system, link.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    uploaded = read_zip(buffer.getvalue())
    assert uploaded.count("cats") == 2
    assert "cats/passwords.png: skipped, it is a link to another file" in "\n".join(uploaded.notes)


def test_traversal_absolute_and_backslash_names():
    notes = notes_of({"../evil/a.png": PNG, "/etc/b.png": PNG, "C:\\win\\c.png": PNG, "..\\up\\d.png": PNG})
    assert notes.count("points outside the zip") == 4


def test_unicode_names_keep_their_letters_and_merge_across_normal_forms():
    files = {"caf\u00e9/a.png": PNG, "cafe\u0301/b.png": PNG,  # NFC and NFD (as macOS writes it)
             "\u732b/c.png": PNG, "\u732b/d.png": PNG,  # Chinese "cat"
             "\u202eevil\u202c/e.png": PNG, "\u202eevil\u202c/f.png": PNG}  # right-to-left override
    uploaded = read_zip(make_zip(files))
    assert uploaded.class_names == ("café", "evil", "猫")
    assert uploaded.count("café") == 2


def test_utf8_names_without_the_zip_utf8_flag():
    """Many zip tools write UTF-8 names without setting the flag; zipfile then shows cp437 garble."""
    files = {f"{folder}/{index}.png": PNG for folder in ("aapfel", "birnen") for index in range(2)}
    data = make_zip(files).replace(b"aapfel", "äpfel".encode())  # same length; the flag stays unset
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.infolist()[0].filename.startswith("├ñpfel")  # what zipfile alone would show
    assert set(read_zip(data).class_names) == {"äpfel", "birnen"}


def test_markup_in_names_stays_plain_text_in_the_library():
    """Escaping is the pages' job (services.markdown_text, st.text); the library keeps the text."""
    files = {"<img src=x onerror=alert(1)>/a.png": PNG, "**bold** [x](javascript:alert(1))/b.png": PNG}
    uploaded = read_zip(make_zip(files))
    assert set(uploaded.class_names) == {"<img src=x onerror=alert(1)>", "**bold** [x](javascript:alert(1))"}


def test_system_files_and_thumbnails_are_ignored_with_one_note():
    notes = notes_of({"__MACOSX/cats/._a.png": b"junk", "cats/.DS_Store": b"junk", "dogs/Thumbs.db": b"junk",
                      "dogs/desktop.ini": b"junk", "cats/._b.png": b"junk", "dogs/notes.txt": b"text"})
    assert "5 hidden system files (such as __MACOSX, .DS_Store or Thumbs.db) ignored" in notes
    assert "dogs/notes.txt: skipped, not an image" in notes


# --- the file type, checked on the server ------------------------------------------------------------


def test_the_file_type_is_checked_by_name_on_the_server():
    check_file_name("My Task.ZIP", (".zip",), "a zip file")
    for name in ("task.exe", "task.zip.exe", "task.zip\0.exe", "task"):
        with pytest.raises(UploadError, match=r"is not a zip file \(the name must end in .zip\)"):
            check_file_name(name, (".zip",), "a zip file")


def test_class_by_class_files_are_checked_by_name():
    uploaded = read_class_files([("cats", [("a.png", PNG), ("evil.svg", b"<svg onload=alert(1)>"),
                                           ("b.png\0.html", PNG)]), ("dogs", [("c.png", PNG)])])
    assert uploaded.count("cats") == 1
    assert sum("not a PNG, JPEG, BMP or GIF file (by its name)" in note for note in uploaded.notes) == 2


# --- images ------------------------------------------------------------------------------------------


def noisy_jpeg() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (300, 300), dtype=np.uint8)
    pixels[:, :100] = 255  # paper on the left
    return encode(Image.fromarray(pixels, "L").convert("RGB"), "JPEG")


def test_a_truncated_jpeg_passes_verify_but_is_refused():
    truncated = noisy_jpeg()[: 6 * len(noisy_jpeg()) // 10]
    with Image.open(io.BytesIO(truncated)) as image:
        image.verify()  # Pillow's check says nothing is wrong: only decoding finds out
    with pytest.raises(UploadError, match="damaged or incomplete"):
        convert_image(truncated)


def test_a_corrupt_png():
    data = bytearray(encode(drawing(size=(200, 200))))
    position = data.find(b"IDAT") + 20
    data[position : position + 30] = bytes(30)
    with pytest.raises(UploadError, match="damaged or incomplete"):
        convert_image(bytes(data))


@pytest.mark.parametrize("side, message", [(10_000, "it declares an enormous number of pixels"),
                                           (5_000, "it is 5000 x 5000 pixels")])
def test_pixel_bombs_are_refused_before_decoding(side, message):
    """A tiny PNG declaring 10000 x 10000 (past Pillow's own bomb warning, turned into an error)
    and one of 5000 x 5000 (below Pillow's limit, above metaviz's 16 million)."""
    bomb = png_header(side, side)
    assert len(bomb) < 200_000
    with pytest.raises(UploadError, match=message):
        convert_image(bomb)
    notes = notes_of({"cats/bomb.png": bomb})
    assert "cats/bomb.png: skipped, " + message in notes


def test_a_cmyk_jpeg():
    reference = convert_image(PNG)
    cmyk = convert_image(encode(drawing().convert("CMYK"), "JPEG", quality=95))
    assert np.abs(cmyk - reference).max() < 0.15


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_shows_the_picture_upright(orientation):
    """An L shape, stored turned or mirrored as a camera would, with the EXIF tag that undoes it."""
    pixels = np.full((60, 40), 255, np.uint8)
    pixels[10:50, 8:14] = 0  # the L's stem
    pixels[44:50, 8:32] = 0  # its foot
    upright = Image.fromarray(pixels, "L").convert("RGB")
    stored_as = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                 4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
                 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}[orientation]
    stored = upright.transpose(stored_as) if stored_as is not None else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    shown = convert_image(encode(stored, "JPEG", exif=exif.tobytes(), quality=95))
    reference = convert_image(encode(upright, "JPEG", quality=95))
    assert np.abs(shown - reference).max() < 0.2
    if orientation != 1:  # control: without the tag, the stored picture does not look upright
        assert np.abs(convert_image(encode(stored, "JPEG", quality=95)) - reference).max() > 0.5


def test_multi_frame_png_uses_its_first_frame():
    frames = [drawing(), Image.new("L", (60, 40), 255)]
    animated = encode(frames[0], "PNG", save_all=True, append_images=frames[1:])
    with Image.open(io.BytesIO(animated)) as image:
        assert image.n_frames == 2
    assert convert_image(animated)[14, 14] > 0.8


def test_images_of_different_sizes_all_become_28x28():
    files = {f"cats/{width}x{height}.png": encode(drawing(size=(width, height)))
             for width, height in ((20, 20), (300, 80), (1000, 1000))}
    uploaded = read_zip(make_zip({**files, "dogs/a.png": PNG}))
    assert uploaded.count("cats") == 3
    assert all(image.shape == (28, 28) for image in uploaded.images_by_class["cats"])


def test_other_formats_with_an_image_name_are_refused():
    tiff, svg = encode(drawing(), "TIFF"), b"<svg xmlns='http://www.w3.org/2000/svg'/>"
    notes = notes_of({"cats/photo.png": tiff, "cats/drawing.png": svg, "dogs/empty.png": b""})
    assert "cats/photo.png: skipped, it is not a readable PNG, JPEG, BMP or GIF image" in notes
    assert "cats/drawing.png: skipped, it is not a readable PNG, JPEG, BMP or GIF image" in notes
    assert "dogs/empty.png: skipped, the file is empty (0 bytes)" in notes


# --- classes -----------------------------------------------------------------------------------------


def test_one_class_only():
    uploaded = read_zip(make_zip({"cats/a.png": PNG, "cats/b.png": PNG}))
    with pytest.raises(UploadError, match="tells apart 5 classes, and the upload has only 1 class with usable "
                                          "images; add images of 4 more classes"):
        task_images(uploaded, ["cats"], ways=5, shots=1, queries=1)


def test_classes_with_fewer_images_than_shots_and_queries():
    uploaded = read_zip(make_zip({**{f"cats/{i}.png": PNG for i in range(3)}, **{f"dogs/{i}.png": PNG
                                                                                  for i in range(6)}}))
    chosen, queries = task_images(uploaded, ["cats", "dogs"], ways=2, shots=2, queries=5)
    assert queries == 1  # cats: 3 images, 2 to learn from, so 1 new image per class is tested
    with pytest.raises(UploadError, match=r"every class needs at least 4 images .* too few in: cats \(3\)"):
        task_images(uploaded, ["cats", "dogs"], ways=2, shots=3, queries=5)


def test_more_classes_than_the_model_tells_apart():
    uploaded = read_zip(make_zip({f"{name}/{i}.png": PNG for name in "abcdefg" for i in range(2)}))
    with pytest.raises(UploadError, match="exactly 5 classes, and 7 classes are chosen; choose 5"):
        task_images(uploaded, list("abcdefg"), ways=5, shots=1, queries=1)
    chosen, _ = task_images(uploaded, list("aceg") + ["b"], ways=5, shots=1, queries=1)
    assert list(chosen) == ["a", "c", "e", "g", "b"]  # the user's choice, in the user's order
