"""The Saliency page in headless Chromium, end to end: pick a method, change its settings, scrub
through the adaptation steps, see the difference map, run the randomisation test and read the
trust panel's verdicts. Takes README's Saliency screenshot (`make screenshots`).

Server, browser and page fixtures are tests/test_browser.py's (this module starts its own server).
"""
import re

import pytest

from tests.test_browser import (  # noqa: F401 (fixtures)
    assert_clean, body_text, browser, idle, page, screenshot, server_url, settled,
)

pytestmark = pytest.mark.browser

TRUST_PANEL = "Does removing the pixels it points at change the answer?"


def choose(page, label: str, option: str) -> None:
    """Picks `option` in the selectbox labelled `label` and waits for the rerun to finish."""
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option).first.click()
    idle(page)


def maps_figure_text(page, showing: str) -> str:
    """The text plotly draws in the maps figure (the first chart: row names and answers), once
    it shows `showing` (plotly draws after Streamlit's run is over)."""
    page.wait_for_function("(text) => document.querySelector('.js-plotly-plot').textContent.includes(text)",
                           arg=showing)
    return page.locator(".js-plotly-plot").first.text_content()


def test_pick_a_method_scrub_the_steps_and_read_the_verdicts(server_url, page):
    page.set_viewport_size({"width": 1300, "height": 900})
    # Integrated Gradients for 25 images at two steps, refined to 1%, takes tens of seconds on
    # a busy 2-core machine: a cap on waiting, not a timed assertion
    page.set_default_timeout(180_000)
    page.goto(f"{server_url}/Saliency?queries=2")  # 10 new images: one row of maps, a page that fits a screenshot
    settled(page, TRUST_PANEL)
    page.wait_for_selector(".js-plotly-plot .main-svg")
    assert_clean(page)

    # A method, and one of its settings.
    choose(page, "Method", "Integrated Gradients: Each pixel's share")
    settled(page, "they add up within 1% for")
    assert "between a black page and the image" in body_text(page)
    assert re.search(r"within 1% for \d+ of 10 images", body_text(page))  # the link's task: 2 new images a class
    page.get_by_text("Integrated Gradients settings").click()
    choose(page, "Compare the image with", "a blurred copy of the image")
    settled(page, "between a blurred copy of the image and the image")

    # Scrub through the steps: the maps, the answers and the checks follow the slider.
    slider = page.get_by_role("slider", name="Adaptation step")
    slider.focus()
    slider.press("Home")
    settled(page, "At step 0 they add up")
    slider.press("ArrowRight")
    settled(page, "At step 1 they add up")
    figure = maps_figure_text(page, "After step 1")
    assert "What adapting" in figure and "changed" in figure  # the difference row
    assert re.search(r"\d+%", figure), "each map shows how sure the model is"
    slider.press("End")
    settled(page, "At step 3 they add up")
    assert "After step 1" not in maps_figure_text(page, "After step 3")

    # The trust panel: the randomisation test runs on demand and says what it found.
    assert "Verdict for" not in body_text(page)
    page.get_by_role("button", name="Run the randomisation test").click()
    verdict = page.get_by_text(re.compile(r"^Verdict for Integrated Gradients: "))
    verdict.wait_for()
    page.get_by_text(re.compile(r"deletion area is \d\.\d\d against \d\.\d\d for a random order")).wait_for()
    idle(page)
    text = body_text(page)
    assert ("this map depends on what the model learned" in text or "it shows the image more than the model" in text
            or "it mostly shows where the ink is" in text)
    page.locator(".js-plotly-plot").nth(2).wait_for()
    assert page.locator(".js-plotly-plot").count() == 3  # maps, randomisation, deletion/insertion
    assert_clean(page)
    screenshot(page, "saliency")

    # The examples the model learns from are explained too.
    page.get_by_text("Examples (the ones it learns from)").click()
    settled(page, "What the model looks at in each example")
    assert_clean(page)
