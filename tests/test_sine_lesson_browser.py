"""The sine-wave lesson in headless Chromium, on the shipped sine-wave checkpoints (the
meta-learned one and the jointly pre-trained baseline): the curves draw, ▶ Play runs both to
the last step, the map of many waves draws on request. Takes README's lesson screenshot
(`make screenshots`).

Browser and page fixtures are tests/test_browser.py's; this module serves its own folder.
"""
from __future__ import annotations

import shutil

import pytest

from tests.test_browser import (  # noqa: F401 (fixtures)
    REPOSITORY, body_text, browser, idle, page, screenshot, serve, settled,
)

pytestmark = pytest.mark.browser

SHIPPED = [REPOSITORY / "checkpoints" / f"sinusoid-{kind}.safetensors" for kind in ("maml", "joint")]


@pytest.fixture(scope="module")
def lesson_url(tmp_path_factory):
    missing = [path.name for path in SHIPPED if not path.is_file()]
    assert not missing, f"shipped checkpoints missing: {missing} (see checkpoints/README.md)"
    directory = tmp_path_factory.mktemp("checkpoints")
    for path in SHIPPED:
        shutil.copy(path, directory / path.name)
    yield from serve(directory)


def test_the_lesson_in_the_browser(lesson_url, page):  # noqa: F811
    page.set_default_timeout(120_000)  # a first script run on a busy 2-core machine can take a while
    page.set_viewport_size({"width": 1300, "height": 900})
    page.goto(f"{lesson_url}/Sine_waves")
    settled(page, "The error, step by step")
    page.wait_for_selector(".js-plotly-plot .main-svg")
    assert page.locator(".js-plotly-plot").count() == 2
    text = body_text(page)
    assert "Meta-learned start: error after 10 steps" in text and "Pre-trained start: error after 10 steps" in text
    assert "Traceback" not in text

    # The slider starts at the last step; Play runs the animation from step 0 back to it.
    curves = page.locator(".js-plotly-plot").first
    curves.get_by_text("Learning step: 10").wait_for()
    curves.get_by_text("▶ Play").click()
    curves.get_by_text("Learning step: 0").wait_for(timeout=10_000)
    curves.get_by_text("Learning step: 10").wait_for(timeout=30_000)
    assert "after 10 steps: error" in curves.inner_text()

    page.get_by_role("spinbutton", name="Waves on the map").fill("100")
    page.get_by_role("spinbutton", name="Waves on the map").press("Enter")
    idle(page)
    page.get_by_role("button", name="Draw the map of 100 waves").click()
    settled(page, "Neighbours agree on the shift")
    page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')]"
                           ".filter(plot => plot.querySelector('.main-svg')).length === 4")
    assert "Traceback" not in body_text(page)
    screenshot(page, "sine-lesson")
