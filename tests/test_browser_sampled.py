"""The Saliency page's LIME / Kernel SHAP (sampling settings, agreement of two runs) and global
importance over many tasks, in headless Chromium on the shipped digits checkpoint. Screenshots
land in test-artifacts/ (saliency-lime.png, saliency-global.png) for a human to look at.

Server, browser and page fixtures are tests/test_browser.py's (this module starts its own server).
"""
import re

import pytest

from tests.test_browser import (  # noqa: F401 (fixtures)
    ARTIFACTS, assert_clean, body_text, browser, idle, page, screenshot, server_url, settled,
)
from tests.test_browser_saliency import TRUST_PANEL, choose

pytestmark = pytest.mark.browser


def test_lime_agreement_and_global_importance(server_url, page):
    page.set_viewport_size({"width": 1300, "height": 900})
    page.set_default_timeout(240_000)  # LIME's sampling on a busy 2-core machine: a cap, not a timed assertion
    page.goto(f"{server_url}/Saliency?queries=2")
    settled(page, TRUST_PANEL)
    choose(page, "Method", "LIME: A simple model fitted")
    settled(page, "Would a second run draw the same map?")
    page.get_by_text(re.compile(r"Median -?\d\.\d\d, lowest -?\d\.\d\d")).wait_for()
    assert "LIME makes no promise that its map adds up" in body_text(page)
    page.get_by_text("LIME settings", exact=True).click()
    assert page.get_by_role("spinbutton", name="Copies per image").input_value() == "200"
    assert_clean(page)
    screenshot(page, "saliency-lime", readme=False)

    choose(page, "Method", "Kernel SHAP: Each piece's fair share")
    settled(page, "Kernel SHAP promises that the pixels' shares add up")
    assert re.search(r"they add up within 1% for \d+ of 10 images", body_text(page))

    tasks = page.get_by_role("spinbutton", name="Number of tasks")
    tasks.fill("3")
    tasks.press("Enter")
    idle(page)
    page.get_by_role("button", name="Measure on 3 tasks").click()
    settled(page, "Average over 30 images of 3 tasks")
    figures = page.locator(".js-plotly-plot")
    assert figures.count() == 4  # maps, agreement, deletion/insertion, global importance
    global_figure = figures.nth(3).text_content()
    assert "Before adapting (step 0)" in global_figure and "What adapting changed" in global_figure
    assert_clean(page)
    screenshot(page, "saliency-global", readme=False)
    figures.nth(3).screenshot(path=str(ARTIFACTS / "saliency-global-figure.png"))
