"""The dashboard in a real browser: `streamlit run app.py` driven by headless Chromium.

Screenshots of every page land in test-artifacts/ (gitignored) for a human to look at; with
METAVIZ_UPDATE_SCREENSHOTS=1 (`make screenshots`) the main path's screenshots also replace
docs/screenshots/ for the README, so a plain test run never changes tracked files. The server gets
a temporary checkpoint folder with an untrained test checkpoint and, when it has been trained,
a copy of the shipped digits checkpoint (it sorts first, so the screenshots show a trained
model); every assertion holds for either.
"""
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_app import write_checkpoint

pytestmark = pytest.mark.browser

REPOSITORY = Path(__file__).resolve().parents[1]
ARTIFACTS = REPOSITORY / "test-artifacts"
SCREENSHOTS = REPOSITORY / "docs" / "screenshots"
SHIPPED_DIGITS = REPOSITORY / "checkpoints" / "digits-5w1s-maml.safetensors"
MAX_SCREENSHOT_BYTES = 300_000
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# (url path, file name of the screenshot, text the page must show)
PAGES = [
    ("", "checkpoint", "Task shape"),
    ("Task", "task", "Classes in this task"),
    ("Adaptation", "adaptation", "New images recognised before adapting"),
    ("Saliency", "saliency", "Does removing the pixels it points at change the answer?"),
    ("Layers", "layers-visit", "moved most"),  # Task embeddings computes a map on arrival: its own tests visit it
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.returncode}: {server.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"streamlit did not answer at {url} within {timeout} s")


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    directory = tmp_path_factory.mktemp("checkpoints")
    write_checkpoint(directory)
    if SHIPPED_DIGITS.is_file():
        shutil.copy(SHIPPED_DIGITS, directory / SHIPPED_DIGITS.name)
    yield from serve(directory)


def serve(directory: Path):
    """Runs `streamlit run app.py` on the checkpoints in `directory`; yields its URL (a
    generator, for a fixture to `yield from`), stops the server afterwards."""
    port = free_port()
    env = {**os.environ, "METAVIZ_CHECKPOINT_DIR": str(directory), "PYTHONPATH": str(REPOSITORY)}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=REPOSITORY, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def browser():
    from playwright import sync_api  # make test installs it: missing must fail, never skip

    executable = shutil.which("chromium")
    assert executable, "chromium is not installed (tools/install_chromium.sh installs it)"
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1300})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def settled(page, text: str) -> None:
    """Waits until `text` shows and the script run is over."""
    page.get_by_text(text, exact=False).first.wait_for()
    idle(page)


def idle(page) -> None:
    """Waits for Streamlit's not-running state: the 'Running…' status widget is gone."""
    page.wait_for_selector("[data-testid='stStatusWidget']", state="detached")


def body_text(page) -> str:
    return page.locator("body").inner_text()


# The link test runs first on purpose: a server's very first request takes Streamlit's legacy
# pages/ path (see pages/_shared.ensure_app), and a shared link is what a user opens first.
def test_a_link_recreates_the_task_and_settings_follow_the_user(server_url, page):
    page.goto(f"{server_url}/Task?seed=5&shots=2&queries=3")
    settled(page, "Classes in this task")
    text = body_text(page)
    assert "Page not found" not in text and "Digits, 5-way 1-shot" in text
    assert page.get_by_role("spinbutton", name="Task number (seed)").input_value() == "5"
    assert page.get_by_role("spinbutton", name="Examples per class").input_value() == "2"
    page.get_by_role("link", name="Adaptation").first.click()
    settled(page, "Task number 5: 2 examples and 3 new images per class.")
    assert "seed=5" in page.url and "shots=2" in page.url
    assert "Traceback" not in body_text(page)


def test_every_page_in_the_browser(server_url, page):
    ARTIFACTS.mkdir(exist_ok=True)
    for path, name, expected in PAGES:
        page.goto(f"{server_url}/{path}")
        settled(page, expected)
        if path != "Adaptation":
            page.wait_for_selector(".js-plotly-plot .main-svg")
        text = body_text(page)
        assert "Digits, 5-way 1-shot" in text, f"/{path}: the sidebar's checkpoint is missing"
        for problem in ("Traceback", "Error", "Page not found"):
            assert problem not in text, f"/{path} shows {problem!r}:\n{text}"
        page.screenshot(path=str(ARTIFACTS / f"visit-{name}.png"), full_page=True)
        if path == "Saliency":  # a long page: the whole of it, for a human to look at
            screenshot(page, "saliency", readme=False)


def drawings_zip() -> bytes:
    """A small zip as a user would make it: a folder per class, dark drawings on white paper
    (scikit-learn digits the model was not trained on, 4 per class), plus a stray text file."""
    import zipfile

    from PIL import Image

    from metaviz.data import load_classes

    test = load_classes("digits", "test", rotations=False)  # digits 6 to 9, and digit 3 from the train split
    drawings = {name: test.images[label] for label, name in enumerate(test.class_names)}
    drawings["digit 3"] = load_classes("digits", "train", rotations=False).images[3]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, images in drawings.items():
            for index in range(4):
                paper = (255 - 255 * images[index]).astype("uint8")
                png = io.BytesIO()
                Image.fromarray(paper).resize((84, 84)).save(png, "PNG")
                archive.writestr(f"my drawings/{name.replace('digit ', 'number ')}/{index}.png", png.getvalue())
        archive.writestr("my drawings/notes.txt", "drawn on Tuesday")
    return buffer.getvalue()


def screenshot(page, name: str, readme: bool = True, width: int = 1300) -> None:
    """The whole page: Streamlit scrolls inside its main container, so the window grows to fit it."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    height = page.evaluate("() => { const main = document.querySelector(\"[data-testid='stMain']\");"
                           " main.scrollTo(0, 0); const block = document.querySelector("
                           "\"[data-testid='stMainBlockContainer']\"); return Math.max(main.scrollHeight,"
                           " block.getBoundingClientRect().bottom + 40); }")
    page.set_viewport_size({"width": width, "height": min(max(int(height), 700), 3000)})
    page.wait_for_timeout(300)  # one layout pass for plotly's resize (not a wait on the app)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": width, "height": 900})
    if readme:
        for_readme(path, name)


def for_readme(path: Path, name: str) -> None:
    """With METAVIZ_UPDATE_SCREENSHOTS=1 (`make screenshots`), the screenshot at `path` also
    becomes docs/screenshots/<name>.png."""
    if os.environ.get("METAVIZ_UPDATE_SCREENSHOTS") == "1":
        from PIL import Image

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        target = SCREENSHOTS / f"{name}.png"
        with Image.open(path) as full:  # a 256-colour palette keeps a UI screenshot sharp at half the size
            full.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
        assert target.stat().st_size < MAX_SCREENSHOT_BYTES, f"{target} is {target.stat().st_size} bytes"


def assert_clean(page) -> None:
    text = body_text(page)
    for problem in ("Traceback", "Page not found"):
        assert problem not in text, f"{page.url} shows {problem!r}:\n{text}"


def test_the_main_path_sample_upload_adapt(server_url, page):
    page.set_viewport_size({"width": 1300, "height": 900})
    page.goto(server_url)
    settled(page, "Task shape")
    page.wait_for_selector(".js-plotly-plot .main-svg")
    assert_clean(page)
    screenshot(page, "checkpoint")

    # Sample a task, then draw another one.
    page.get_by_role("link", name="Task").first.click()
    settled(page, "Classes in this task")
    seed = page.get_by_role("spinbutton", name="Task number (seed)")
    first = seed.input_value()
    page.get_by_role("button", name="Draw another task").click()
    page.wait_for_function("([selector, old]) => document.querySelector(selector).value !== old",
                           arg=["input[aria-label='Task number (seed)']", first])
    idle(page)
    # The link follows the task (the URL changes a moment after the number: wait, or fail after the timeout).
    page.wait_for_function("seed => window.location.search.includes('seed=' + seed)", arg=seed.input_value())
    assert f"seed={seed.input_value()}" in page.url
    page.wait_for_selector(".js-plotly-plot .main-svg")
    assert_clean(page)
    screenshot(page, "task")

    # Upload a zip of one's own drawings.
    page.get_by_text("Upload my own images").click()
    settled(page, "Upload a zip file")
    page.locator("[data-testid='stMain'] input[type='file']").first.set_input_files(  # the sidebar has one too
        files=[{"name": "my drawings.zip", "mimeType": "application/zip", "buffer": drawings_zip()}])
    settled(page, "Your images, as the model sees them")
    settled(page, "Classes in this task: number 3")  # drawn after the preview: on a busy machine, later
    text = body_text(page)
    assert "20 images in 5 classes" in text
    assert "Classes in this task: number 3; number 6; number 7; number 8; number 9, from your upload" in text
    page.get_by_text("Files left out of the upload").click()
    page.get_by_text("notes.txt: skipped, not an image").wait_for()
    page.wait_for_selector(".js-plotly-plot .main-svg")
    assert_clean(page)
    screenshot(page, "upload")

    # Watch the model adapt to the uploaded task, and step back to before adapting.
    page.get_by_role("link", name="Adaptation").first.click()
    settled(page, "Your uploaded images: 1 example and 3 new images per class.")
    page.get_by_text("new images recognised").first.wait_for()
    last = page.get_by_text(re.compile(r"Step (\d+) of \1 \(after")).first
    last.wait_for()
    slider = page.get_by_role("slider", name="Adaptation step to show")
    slider.focus()
    slider.press("Home")
    page.get_by_text(re.compile(r"Step 0 of \d+ \(before adapting\)")).first.wait_for()
    idle(page)
    assert "Answers that changed between step 0 and step" in body_text(page)
    assert_clean(page)
    page.get_by_text("▶ Play all steps").first.click()  # (a rerun may briefly show two) the chart's own animation runs to the last step
    page.get_by_text(re.compile(r"Step (\d+) of \1 \(after")).first.wait_for()
    slider.press("End")
    page.get_by_text(re.compile(r"Step (\d+) of \1 \(after")).first.wait_for()
    idle(page)
    screenshot(page, "adaptation")


def test_a_task_from_chosen_digits_and_another_checkpoint_folder(server_url, page, tmp_path):
    page.set_viewport_size({"width": 1300, "height": 900})
    page.goto(f"{server_url}/Task")
    settled(page, "Classes in this task")
    page.wait_for_selector(".js-plotly-plot .main-svg")

    # Restrict the draw to some digits: too few classes is a plain message; then the task, its
    # text and its link follow the choice.
    page.get_by_text("Choose digits or classes (optional)").click()
    page.wait_for_function("() => document.getAnimations().length === 0")  # a list opened mid-slide closes
    digits = page.locator("[data-testid='stMultiSelect']").filter(has_text="Only these digits")

    def choose(digit: str) -> None:
        digits.get_by_role("button", name="Open").click()
        page.get_by_role("option", name=digit, exact=True).click()
        page.keyboard.press("Escape")
        idle(page)

    choose("digit 7")
    choose("digit 8")
    settled(page, "The chosen digits (digit 7, digit 8) hold 4 classes; this model needs 5.")
    choose("digit 9")
    settled(page, "drawn only from digit 7, digit 8, digit 9 in the test split")
    assert "groups=digit+7&groups=digit+8&groups=digit+9" in page.url
    assert "digit 6" not in page.locator("[data-testid='stMarkdown']").filter(has_text="Classes in this task").inner_text()
    page.wait_for_selector(".js-plotly-plot .main-svg")
    assert_clean(page)
    screenshot(page, "task-choice", readme=False)

    # A folder named in the sidebar adds its checkpoints to the picker, marked with the folder.
    elsewhere = tmp_path / "shared models"
    elsewhere.mkdir()
    write_checkpoint(elsewhere, name="their-digits")
    page.get_by_text("Other checkpoint folder").click()
    field = page.get_by_role("textbox", name="Folder on the server")
    field.fill(str(elsewhere))
    field.press("Enter")
    idle(page)
    page.get_by_role("combobox", name="Checkpoint").click()
    page.get_by_role("option", name="their-digits · shared models/").click()
    settled(page, "· from")
    assert "Digits, 5-way 1-shot · from" in body_text(page)
    field.fill(str(tmp_path / "absent"))
    field.press("Enter")
    settled(page, "There is no folder")
    assert_clean(page)
