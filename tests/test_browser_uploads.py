"""A new user drops bad files into the dashboard in Chromium (issue 8): each gets a clear
message, nothing runs that should not, and the user carries on with a good upload.

Uses the server and browser fixtures of tests/test_browser.py (its own server: module scope).
"""
import io
import stat
import subprocess
import sys
import zipfile

import pytest

from tests.test_browser import (  # noqa: F401 (browser, page, server_url: fixtures pytest finds here)
    ARTIFACTS, assert_clean, body_text, browser, drawings_zip, idle, page, server_url, settled,
)
from tests.test_hostile_uploads import png_header
from tests.test_uploads import PNG, make_zip
from tests.test_user_checkpoints import PAYLOAD

pytestmark = pytest.mark.browser
CLASSES = ("apple", "bell", "cup", "door", "eye")


def encrypted_zip() -> bytes:
    data = bytearray(make_zip({f"{name}/0.png": PNG for name in CLASSES}, compression=zipfile.ZIP_STORED))
    position = data.find(b"PK\x01\x02")
    data[position + 8] |= 0x1  # the central directory says: encrypted
    return bytes(data)


def tricky_zip() -> bytes:
    """Usable classes among hostile entries: those are left out with a note each."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in CLASSES:
            for index in range(2):
                archive.writestr(f"{name}/{index}.png", PNG)
        archive.writestr("../../escape.png", PNG)
        archive.writestr("apple/bomb.png", png_header(10_000, 10_000))
        archive.writestr("__MACOSX/apple/._0.png", b"junk")
        link = zipfile.ZipInfo("bell/passwords.png")
        link.create_system, link.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return buffer.getvalue()


# (file name, bytes, what the message must say)
BAD_ZIPS = [
    ("empty.zip", b"", "the file is empty (0 bytes)"),
    ("holiday photo.zip", PNG, "this file is not a zip archive"),
    ("locked.zip", encrypted_zip(), "the zip is protected by a password"),
    ("one class.zip", make_zip({"cats/a.png": PNG, "cats/b.png": PNG}), "and the upload has 1 class"),
    ("bombs.zip", make_zip({f"{name}/bomb.png": png_header(10_000, 10_000) for name in CLASSES}),
     "no usable images were found (5 files skipped"),
]


def drop_zip(page, name: str, data: bytes) -> None:
    page.locator("[data-testid='stMain'] input[type='file']").first.set_input_files(
        files=[{"name": name, "mimeType": "application/zip", "buffer": data}])
    idle(page)


def test_bad_zips_get_clear_messages_and_the_user_carries_on(server_url, page):
    alerts = []
    page.on("dialog", lambda dialog: (alerts.append(dialog.message), dialog.dismiss()))
    page.goto(f"{server_url}/Task")
    settled(page, "Classes in this task")
    page.get_by_text("Upload my own images").click()
    settled(page, "Upload a zip file")
    for name, data, message in BAD_ZIPS:
        drop_zip(page, name, data)
        # Waits for this file's own message (the previous file's may still show for a moment).
        error = page.locator("[data-testid='stAlertContentError']").filter(has_text=message)
        error.first.wait_for()
        idle(page)
        assert_clean(page)

    drop_zip(page, "tricky.zip", tricky_zip())
    settled(page, "10 images in 5 classes")
    page.get_by_text("Files left out of the upload").click()
    notes = page.locator("[data-testid='stText']").filter(has_text="skipped").first
    notes.wait_for()
    for note in ("escape.png: skipped, its path points outside the zip", "passwords.png: skipped, it is a link",
                 "bomb.png: skipped, it declares an enormous number of pixels", "1 hidden system file"):
        assert note in notes.inner_text(), notes.inner_text()

    drop_zip(page, "my drawings.zip", drawings_zip())  # and the real upload works
    settled(page, "20 images in 5 classes")  # this upload's own text: the previous one's may still show
    assert_clean(page)
    assert not alerts, f"a script ran in the page: {alerts}"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "bad-uploads.png"), full_page=True)


def test_markup_in_names_is_shown_as_text(server_url, page):
    alerts = []
    page.on("dialog", lambda dialog: (alerts.append(dialog.message), dialog.dismiss()))
    names = ("<img src=x onerror=alert(1)>", "[click](javascript:alert(2))", "c", "d", "e")
    page.goto(f"{server_url}/Task")
    settled(page, "Classes in this task")
    page.get_by_text("Upload my own images").click()
    settled(page, "Upload a zip file")
    drop_zip(page, "names.zip", make_zip({f"{name}/{index}.png": PNG for name in names for index in range(2)}))
    settled(page, "Your images, as the model sees them")
    # The names show in the class list and in the preview figure, which plotly draws after the run.
    page.get_by_text("<img src=x onerror=alert(1)>").first.wait_for()
    assert "<img src=x onerror=alert(1)>" in body_text(page)  # shown as typed...
    assert page.locator("[data-testid='stMain'] img[src='x']").count() == 0  # ...never as an element
    assert page.locator("a[href^='javascript']").count() == 0
    assert not alerts


def test_a_pickle_payload_as_a_checkpoint_is_refused_and_the_app_carries_on(server_url, page, tmp_path):
    evil, marker = tmp_path / "model.pt", tmp_path / "payload-ran"
    subprocess.run([sys.executable, "-c", PAYLOAD, str(evil), str(marker)], check=True)
    page.goto(server_url)
    settled(page, "Task shape")
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_text("Upload a checkpoint").click()
    sidebar.locator("input[type='file']").set_input_files(
        files=[{"name": "model.pt", "mimeType": "application/octet-stream", "buffer": evil.read_bytes()}])
    message = sidebar.locator("[data-testid='stAlertContentError']").filter(has_text="This checkpoint cannot be used")
    message.wait_for()
    assert "could run code on this computer" in message.inner_text()
    assert not marker.exists(), "the pickle payload ran"
    page.get_by_role("link", name="Adaptation").first.click()  # the model picked before still works
    settled(page, "New images recognised before adapting")
    assert_clean(page)
