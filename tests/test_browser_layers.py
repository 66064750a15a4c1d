"""The Layers page in headless Chromium: the current task's update sizes, then many tasks on
request (slider, button, progress), the verdict in words and the ablation table. Takes README's
Layers screenshot (`make screenshots`).

Server, browser and page fixtures are tests/test_browser.py's (this module starts its own server).
"""
import pytest

from tests.test_browser import (  # noqa: F401 (fixtures)
    body_text, browser, idle, page, screenshot, server_url, settled,
)

pytestmark = pytest.mark.browser


def test_layers_page_in_the_browser(server_url, page):  # noqa: F811
    page.goto(f"{server_url}/Layers")
    settled(page, "moved most")
    page.wait_for_selector(".js-plotly-plot .main-svg")  # plotly draws after the script run ends
    assert page.locator(".js-plotly-plot").count() >= 2  # layers x steps; per tensor (the filter tab is hidden)
    page.get_by_role("tab", name="Each filter").click()
    page.get_by_text("A few dark cells mean adaptation leans on a few filters").wait_for()

    # Fewer tasks than the default keep the test short; the keyboard moves the slider by its step.
    slider = page.get_by_role("slider", name="Number of tasks")
    slider.focus()
    for _ in range(8):
        slider.press("ArrowLeft")
    idle(page)
    page.get_by_role("button", name="Measure on 20 tasks").click()
    settled(page, "The same 20 tasks in every row")  # the last line of the page
    text = body_text(page)
    for expected in ("How much each layer's view of the new images changes", "Adapting only the head scores",
                     "all layers", "head only (body frozen)", "conv1–conv3 frozen"):
        assert expected in text, f"{expected!r} not shown"
    for problem in ("Traceback", "Error"):
        assert problem not in text
    page.get_by_text("accuracy on new images after adapting").wait_for()  # the ablation chart's axis
    assert page.locator(".js-plotly-plot").count() >= 5
    screenshot(page, "layers")
