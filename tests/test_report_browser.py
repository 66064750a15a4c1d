"""The review report in headless Chromium: downloaded from the sidebar, then opened with the
network off; every plotly figure must draw and every image load. Screenshots land in
test-artifacts/ (README's report screenshot with `make screenshots`).

Server, browser and page fixtures are tests/test_browser.py's (this module starts its own server).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_browser import (  # noqa: F401 (fixtures)
    ARTIFACTS, browser, for_readme, page, server_url, settled,
)
from tests.test_report import Parsed

pytestmark = pytest.mark.browser


def open_offline(browser, report: Path, name: str) -> dict:  # noqa: F811
    """Opens the report with the network off; returns what it drew. Any request that is not
    the file itself is recorded and refused."""
    context = browser.new_context(viewport={"width": 1300, "height": 900}, offline=True)
    requests = []

    def refuse(route):
        requests.append(route.request.url)
        route.abort()

    context.route(re.compile(r"^(?!file:).*"), refuse)
    tab = context.new_page()
    try:
        tab.goto(report.as_uri())
        expected = tab.locator("div.plotly-graph-div").count()
        tab.wait_for_function("n => document.querySelectorAll('.js-plotly-plot .main-svg').length >= n",
                              arg=expected, timeout=60_000)
        drawn = tab.evaluate("""() => ({
            figures: document.querySelectorAll('.js-plotly-plot').length,
            traces: document.querySelectorAll('.js-plotly-plot .trace, .js-plotly-plot .hm image').length,
            images: [...document.images].filter(i => i.complete && i.naturalWidth > 0).length,
            allImages: document.images.length})""")
        ARTIFACTS.mkdir(exist_ok=True)
        tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        tab.set_viewport_size({"width": 1300, "height": 1500})
        tab.screenshot(path=str(ARTIFACTS / f"{name}-top.png"))
        for_readme(ARTIFACTS / f"{name}-top.png", "report")
    finally:
        context.close()
    return {**drawn, "expected": expected, "requests": requests}


def test_the_sidebar_report_downloads_and_opens_offline(server_url, browser, page, tmp_path):  # noqa: F811
    page.set_default_timeout(120_000)  # a first script run on a busy 2-core machine can take a while
    page.goto(f"{server_url}/Adaptation?seed=3")
    settled(page, "New images recognised before adapting")
    with page.expect_download(timeout=240_000) as download:
        page.get_by_role("button", name="Download review report").click()
    report = tmp_path / download.value.suggested_filename
    download.value.save_as(report)
    assert report.name.startswith("metaviz-report-") and report.suffix == ".html"
    parsed = Parsed(report.read_text(encoding="utf-8"))
    for expected in ("--seed 3", "Content hash", "Verdict for Saliency", "moved most", "Versions and time"):
        assert expected.lower() in parsed.all_text.lower(), expected

    drawn = open_offline(browser, report, "report-offline")
    assert drawn["requests"] == [], f"the report asked the network for {drawn['requests']}"
    assert drawn["figures"] == drawn["expected"] >= 6
    assert drawn["traces"] >= drawn["figures"]  # each figure drew its data, not just empty axes
    assert drawn["images"] == drawn["allImages"] > 30
    # the page itself: still there, no error, and the button can be pressed again
    assert "Traceback" not in page.locator("body").inner_text()
