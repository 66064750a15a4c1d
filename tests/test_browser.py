"""The dashboard in a real browser: `streamlit run app.py` driven by headless Chromium.

Screenshots of every page land in test-artifacts/ (gitignored) for a human to look at.
"""
import os
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
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# (url path, file name of the screenshot, text the page must show)
PAGES = [
    ("", "checkpoint", "Meta-test accuracy"),
    ("Task", "task", "Classes in this task"),
    ("Adaptation", "adaptation", "New images recognised before adapting"),
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
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("chromium is not installed (tools/install_chromium.sh installs it)")
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
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
