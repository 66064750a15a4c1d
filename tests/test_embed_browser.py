"""The Task embeddings page in headless Chromium: the map draws for the digits, sine-wave and
Omniglot checkpoints, and clicking a point, then "Open", replays that very task on the
Adaptation page.

Browser and page fixtures are tests/test_browser.py's; this module starts its own server with
copies of the shipped checkpoints (Omniglot's need the Omniglot data: METAVIZ_DATA_DIR).
"""
import re
import shutil

import pytest

from tests.test_browser import (  # noqa: F401 (fixtures)
    REPOSITORY, assert_clean, body_text, browser, idle, page, screenshot, serve, settled,
)

pytestmark = pytest.mark.browser

SHIPPED = REPOSITORY / "checkpoints"
MAP_READY = "Trustworthiness"
FIRST_MAP_MS = 300_000  # adapting 200 tasks on a busy 2-core machine, UMAP's kernels maybe compiling


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    directory = tmp_path_factory.mktemp("checkpoints")
    for name in ("digits-5w1s-maml", "sinusoid-maml", "omniglot-5w1s-maml"):
        shutil.copy(SHIPPED / f"{name}.safetensors", directory)  # missing ones fail: they ship with the code
    yield from serve(directory)


def open_map(page, url: str, checkpoint: str) -> None:
    page.set_viewport_size({"width": 1300, "height": 1000})
    page.goto(f"{url}/Task_embeddings?checkpoint={checkpoint}")
    page.get_by_text(MAP_READY).first.wait_for(timeout=FIRST_MAP_MS)
    idle(page)
    page.wait_for_selector(".js-plotly-plot .scatterlayer .point")
    assert_clean(page)


def click_a_point(page, index: int) -> int:
    """Clicks the index-th point of the map's first trace as a user would (hover, click) and
    returns the task row that point carries (its customdata, read from plotly's own data)."""
    row = page.evaluate("(index) => document.querySelector('.js-plotly-plot')._fullData[0].customdata[index][0]",
                        index)
    point = page.locator(".js-plotly-plot .scatterlayer .trace").first.locator(".point").nth(index)
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.wait_for_selector(".hoverlayer .hovertext")  # plotly clicks on the point it hovers
    page.mouse.click(x, y)
    return int(row)


def open_clicked_task(page, index: int, first: int = 0) -> int:
    """Clicks a point, checks the task it shows, opens it; returns its task number (the map's
    tasks are numbered from `first`)."""
    seed = first + click_a_point(page, index)
    button = page.get_by_role("button", name="Open this task on the Adaptation page")
    button.wait_for()  # the rerun the selection asked for has drawn the chosen task
    idle(page)
    assert page.get_by_role("heading", name=f"Task number {seed}", exact=True).is_visible()
    button.click()
    return seed


def test_clicking_a_point_replays_its_task_on_the_adaptation_page(server_url, page):
    open_map(page, server_url, "digits-5w1s-maml")
    assert "Click a point to see that task here" in body_text(page)
    screenshot(page, "embeddings-digits", readme=False)
    seed = open_clicked_task(page, 7)
    settled(page, f"Task number {seed}: 1 example and 5 new images per class.")
    assert "/Adaptation" in page.url and f"seed={seed}" in page.url
    page.get_by_text("New images recognised before adapting").wait_for()
    assert_clean(page)

    # Back on the map, the task just opened is the current one: ringed.
    page.get_by_role("link", name="Task embeddings").first.click()
    settled(page, MAP_READY)
    page.get_by_text("The red ring marks the current task").wait_for()
    ring = page.evaluate("() => document.querySelector('.js-plotly-plot')._fullData.filter("
                         "trace => trace.name === 'current task').map(trace => trace.customdata[0][0])")
    assert ring == [seed]


def test_omniglot_one_alphabet_task_opens_with_its_alphabet(server_url, page):
    open_map(page, server_url, "omniglot-5w1s-maml")
    text = body_text(page)
    assert "Neighbours from the same alphabet" in text and "points over chance" in text
    alphabet = page.evaluate("() => document.querySelector('.js-plotly-plot')._fullData[0].name")
    screenshot(page, "embeddings-omniglot", readme=False)
    seed = open_clicked_task(page, 2)
    settled(page, f"Task number {seed} (from the chosen alphabets)")
    assert f"seed={seed}" in page.url and "groups=" in page.url
    page.get_by_role("link", name="Task").first.click()
    settled(page, "Classes in this task")
    assert f"drawn only from {alphabet.replace('_', ' ')}" in body_text(page)  # the point's legend entry
    assert_clean(page)


def test_sine_waves_map_and_click_through(server_url, page):
    open_map(page, server_url, "sinusoid-maml")
    assert re.search(r"Neighbours agree on amplitude\s*0\.\d\d", body_text(page))
    row = click_a_point(page, 9)
    settled(page, "Open this task on the Adaptation page")
    assert page.get_by_role("heading", name=f"Task number {row}", exact=True).is_visible()

    # Other tasks on the map: the old selection would name another task, so it is dropped.
    first = page.get_by_role("spinbutton", name="First task number")
    first.fill("1000")
    first.press("Enter")
    settled(page, "Tasks number 1000 to 1199")
    page.get_by_text("Click a point to see that task here").wait_for()
    page.wait_for_selector(".js-plotly-plot .scatterlayer .point")
    seed = open_clicked_task(page, 4, first=1000)
    settled(page, f"Task number {seed}: 10 given points")
    assert_clean(page)
