"""The Task embeddings page in headless Chromium: the map draws for the digits, sine-wave and
Omniglot checkpoints; hovering a point shows a card with that task's pictures; clicking the
point opens that very task on the Adaptation page.

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
PLOT = ".metaviz-map-plot"
CARD = ".metaviz-card"


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    directory = tmp_path_factory.mktemp("checkpoints")
    for name in ("digits-5w1s-maml", "sinusoid-maml", "omniglot-5w1s-maml"):
        shutil.copy(SHIPPED / f"{name}.safetensors", directory)  # missing ones fail: they ship with the code
    yield from serve(directory)


def open_map(page, url: str, checkpoint: str) -> None:
    page.set_viewport_size({"width": 1300, "height": 1000})
    plotly_files = []
    page.on("request", lambda request: plotly_files.append(request.url) if "plotly" in request.url else None)
    page.goto(f"{url}/Task_embeddings?checkpoint={checkpoint}")
    page.get_by_text(MAP_READY).first.wait_for(timeout=FIRST_MAP_MS)
    idle(page)
    page.wait_for_selector(f".metaviz-map[data-ready='true'] {PLOT} .scatterlayer .point")
    assert plotly_files and all(file.startswith(url) for file in plotly_files)  # plotly.js from this server only
    assert_clean(page)


def hover_a_point(page, index: int) -> tuple[int, dict]:
    """Hovers the index-th point of the map's first trace as a user would; returns the task row
    that point carries (its customdata, from plotly's own data) and the card it showed: title,
    text, and its picture's natural size (0 x 0 if the picture did not load)."""
    row = page.evaluate(f"(index) => document.querySelector('{PLOT}')._fullData[0].customdata[index][0]", index)
    point = page.locator(f"{PLOT} .scatterlayer .trace").first.locator(".point").nth(index)
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector(f"{CARD}[data-row='{row}']:not([hidden])")
    page.wait_for_function(f"() => document.querySelector('{CARD} img').complete")
    card = page.evaluate(f"""() => {{
        const card = document.querySelector('{CARD}'), picture = card.querySelector('img');
        return {{title: card.querySelector('.metaviz-card-title').textContent, text: card.innerText,
                 width: picture.naturalWidth, height: picture.naturalHeight}};
    }}""")
    return int(row), card


def click_point(page, index: int) -> int:
    """Hovers the index-th point of the first trace again (a screenshot resizes the window and
    moves the map) and clicks it where the pointer is; returns its task row."""
    row, _ = hover_a_point(page, index)
    page.mouse.down()
    page.mouse.up()
    return row


SWITCH_MS = 120_000  # the click's rerun, then the Adaptation page's first run, on a busy 2-core machine


def on_adaptation_page(page) -> None:
    """Waits for the switch to the Adaptation page (Streamlit changes the address in place, no page load)."""
    page.wait_for_function("() => location.pathname.endsWith('/Adaptation')", timeout=SWITCH_MS)


def map_revision(page) -> str:
    """Which map plotly.js last drew (the page's revision of it: new tasks, new revision)."""
    return page.evaluate("() => document.querySelector('.metaviz-map').dataset.revision")


def test_hover_shows_the_task_and_a_click_replays_it_on_the_adaptation_page(server_url, page):
    open_map(page, server_url, "digits-5w1s-maml")
    row, card = hover_a_point(page, 7)
    assert card["title"] == f"Task number {row}"  # tasks numbered from 0
    assert "New images recognised:" in card["text"] and "Click to open this task" in card["text"]
    assert card["height"] == 28 and card["width"] == 5 * 28 + 4 * 2  # one 28-pixel example per class
    classes = re.search(r"Classes: (.*)", card["text"]).group(1).split("; ")
    screenshot(page, "embeddings-digits-hover", readme=False)
    assert click_point(page, 7) == row
    on_adaptation_page(page)
    settled(page, f"Task number {row}: 1 example and 5 new images per class.")
    assert f"seed={row}" in page.url
    page.get_by_text("New images recognised before adapting").wait_for()
    assert_clean(page)

    # The Task page shows the same classes, in the same order.
    page.get_by_role("link", name="Task", exact=True).first.click()
    settled(page, "Classes in this task")
    assert f"Classes in this task: {'; '.join(classes)}," in body_text(page)

    # Back on the map, the task just opened is the current one: ringed.
    page.get_by_role("link", name="Task embeddings").first.click()
    settled(page, MAP_READY)
    page.get_by_text("The red ring marks the current task").wait_for()
    page.wait_for_selector(f".metaviz-map[data-ready='true'] {PLOT} .scatterlayer .point")
    ring = page.evaluate(f"() => document.querySelector('{PLOT}')._fullData.filter("
                         "trace => trace.name === 'current task').map(trace => trace.customdata[0][0])")
    assert ring == [row]


def test_omniglot_card_shows_the_alphabet_and_the_click_opens_that_task(server_url, page):
    open_map(page, server_url, "omniglot-5w1s-maml")
    text = body_text(page)
    assert "Neighbours from the same alphabet" in text and "points over chance" in text
    alphabet = page.evaluate(f"() => document.querySelector('{PLOT}')._fullData[0].name")
    row, card = hover_a_point(page, 2)
    assert f"Alphabets: {alphabet.replace('_', ' ')}" in card["text"]
    assert card["height"] == 28 and card["width"] == 5 * 28 + 4 * 2
    classes = re.search(r"Classes: (.*)", card["text"]).group(1).split("; ")
    assert len(classes) == 5 and all(name.startswith(alphabet.replace("_", " ")) for name in classes)
    screenshot(page, "embeddings-omniglot-hover", readme=False)
    assert click_point(page, 2) == row
    on_adaptation_page(page)
    settled(page, f"Task number {row} (from the chosen alphabets)")
    assert f"seed={row}" in page.url and "groups=" in page.url
    page.get_by_role("link", name="Task", exact=True).first.click()
    settled(page, "Classes in this task")
    text = body_text(page)
    assert f"Classes in this task: {'; '.join(classes)}," in text  # the very task the point stood for
    assert f"drawn only from {alphabet.replace('_', ' ')}" in text
    assert_clean(page)


def test_sine_wave_card_draws_the_wave_and_other_tasks_open_too(server_url, page):
    open_map(page, server_url, "sinusoid-maml")
    assert re.search(r"Neighbours agree on amplitude\s*0\.\d\d", body_text(page))
    row, card = hover_a_point(page, 9)
    assert card["title"] == f"Task number {row}" and re.search(r"Amplitude \d\.\d\d, phase \d\.\d\d", card["text"])
    assert card["width"] > 0 and card["height"] > 0  # the wave's sketch loaded
    screenshot(page, "embeddings-sinusoid-hover", readme=False)

    # Other tasks on the map: its points name those tasks.
    drawn = map_revision(page)
    first = page.get_by_role("spinbutton", name="First task number")
    first.fill("1000")
    first.press("Enter")
    page.get_by_text("Tasks number 1000 to 1199").wait_for(timeout=FIRST_MAP_MS)  # 200 new tasks adapt
    idle(page)
    page.wait_for_function("(drawn) => document.querySelector('.metaviz-map').dataset.revision !== drawn", arg=drawn)
    row, card = hover_a_point(page, 4)
    assert card["title"] == f"Task number {1000 + row}"
    click_point(page, 4)
    on_adaptation_page(page)
    settled(page, f"Task number {1000 + row}: 10 given points")
    assert f"seed={1000 + row}" in page.url
    assert_clean(page)
