"""The Task embeddings page through AppTest, for digits, sine-wave and Omniglot checkpoints.

The map is a custom component (pages/_embed_map.py): here what Python hands it (figure, hover
cards with thumbnails) and what the page does with a click, sent as the browser sends it (a
trigger value); tests/test_embed_browser.py hovers and clicks in Chromium. Each test asks for
20 tasks (the page's minimum) to stay quick.
"""
import base64
import json
from pathlib import Path

import numpy as np
import plotly
import pytest

from metaviz import embed, services
from metaviz.tasks import sample_task
from tests.test_app import all_text, checkpoint_dir, start, visit, write_checkpoint  # noqa: F401 (fixture)

PAGE = "pages/6_Task_embeddings.py"
MAP = "metaviz_task_map"


def open_page(checkpoint_dir, dataset: str, **session):
    write_checkpoint(checkpoint_dir, name=f"{dataset}-test", dataset=dataset)
    app = start()
    app.session_state["embed_tasks"] = 20
    for key, value in session.items():
        app.session_state[key] = value
    return visit(app, PAGE)


def _decoded(value):
    """plotly writes numpy arrays as typed arrays ({"dtype", "bdata", "shape"}): back to lists."""
    if isinstance(value, dict) and "bdata" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        shape = [int(size) for size in shape.split(",")] if isinstance(shape, str) else shape
        return (array.reshape(shape) if shape else array).tolist()
    if isinstance(value, dict):
        return {key: _decoded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decoded(item) for item in value]
    return value


def the_map(app):
    maps = [element for element in app.get("bidi_component") if element.proto.component_name == MAP]
    assert len(maps) == 1, "the map is missing"
    return maps[0]


def map_data(app) -> dict:
    return _decoded(json.loads(the_map(app).proto.json))


def figure(app) -> dict:
    return map_data(app)["figure"]


def click(app, row: int):
    """What the browser sends when a point is clicked: the component's trigger value "clicked"
    (Streamlit keeps a component's triggers in one widget, its id + "events"; see
    streamlit.components.v2.bidi_component)."""
    from streamlit.components.v2.bidi_component.main import _make_trigger_id

    states = app._tree.get_widget_states()
    trigger = states.widgets.add()
    trigger.id = _make_trigger_id(the_map(app).proto.id, "events")
    trigger.json_trigger_value = json.dumps([{"event": "clicked", "value": row}])
    return app._run(states)


@pytest.mark.parametrize("dataset", ["digits", "sinusoid"])
def test_the_page_draws_the_map(checkpoint_dir, dataset):
    app = open_page(checkpoint_dir, dataset)
    text = all_text(app)
    assert "Tasks number 0 to 19" in text and "each adapted with 3 steps" in text
    assert "Hover over a point to see" in text and "click it to open that task on the Adaptation page" in text
    metrics = {metric.label: metric.value for metric in app.metric}
    assert 0.5 <= float(metrics["Trustworthiness"]) <= 1.0
    if dataset == "sinusoid":
        assert {"Neighbours agree on amplitude", "Neighbours agree on phase"} <= set(metrics)
    points = [trace for trace in figure(app)["data"] if trace.get("name") != "current task"]
    assert sum(len(trace["x"]) for trace in points) == 20
    rows = sorted(row for trace in points for (row,) in trace["customdata"])
    assert rows == list(range(20))  # every point names its task
    colours = app.selectbox(key="embed_colour").options
    assert "Size of the update" in colours and ("Amplitude of the wave" in colours) == (dataset == "sinusoid")
    if dataset == "sinusoid":  # a sine wave's map opens coloured by what it orders best
        assert colours[0] == "Amplitude of the wave"
    url = map_data(app)["plotly_url"]  # plotly.js from this server's copy of the plotly package, no CDN
    assert url.startswith("/component/") and url.endswith("/plotly.min.js")
    assert (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").is_file()
    assert all(trace.get("hoverinfo") == "none" for trace in points)  # the component's card replaces the label
    cards = map_data(app)["cards"]
    assert [card["title"] for card in cards] == [f"Task number {seed}" for seed in range(20)]
    kind = "svg+xml" if dataset == "sinusoid" else "png"
    assert all(card["thumbnail"].startswith(f"data:image/{kind};base64,") for card in cards)
    assert len({card["thumbnail"] for card in cards}) == 20  # each task its own pictures
    line = "Amplitude" if dataset == "sinusoid" else "New images recognised"
    assert all(any(text.startswith(line) for text in card["lines"]) for card in cards)
    if dataset == "digits":  # a card names the task's digits as digits, not as alphabets
        assert all(card["lines"][0].startswith("Digits: digit ") for card in cards)


def test_the_current_task_is_ringed_and_settings_redraw(checkpoint_dir):
    app = open_page(checkpoint_dir, "digits")
    ring = [trace for trace in figure(app)["data"] if trace.get("name") == "current task"]
    assert len(ring) == 1 and ring[0]["customdata"] == [[0]]  # the Task page's task number 0
    assert "The red ring marks the current task" in all_text(app)
    before = figure(app)["data"][0]["x"]
    app.selectbox(key="embed_method").set_value("pca").run()
    assert not app.exception
    assert figure(app)["data"][0]["x"] != before and figure(app)["layout"]["xaxis"]["title"]["text"] == "PCA 1"
    app.selectbox(key="embed_layer").set_value("head").run()
    assert not app.exception and app.selectbox(key="embed_layer").value == "head"
    search = app.text_input(key="embed_search")
    assert search.label == "Find digits or classes" and search.placeholder == "e.g. digit 7"  # not alphabets
    search.input("DIGIT 7 (rot 90)").run()
    assert "tasks of 20 match" in all_text(app) or "task of 20 match" in all_text(app)
    opacities = [value for trace in figure(app)["data"] if trace.get("name") != "current task"
                 for value in trace["marker"]["opacity"]]
    assert min(opacities) < 0.5 < max(opacities)  # the search fades the tasks without that class
    app.number_input(key="embed_seed_input").set_value(500).run()
    assert "Tasks number 500 to 519" in all_text(app)
    assert not [trace for trace in figure(app)["data"] if trace.get("name") == "current task"]


def test_omniglot_tasks_from_one_alphabet_measure_purity(checkpoint_dir, omniglot_dir):
    app = open_page(checkpoint_dir, "omniglot")
    assert app.toggle(key="embed_one_group").value
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Neighbours from the same alphabet"].endswith("%")
    assert app.selectbox(key="embed_colour").options[0] == "Alphabet"
    assert app.text_input(key="embed_search").label == "Find alphabets or classes"
    legend = {trace["name"] for trace in figure(app)["data"]}
    assert len(legend) == 20  # 20 tasks, the 20 test alphabets taking turns
    row = 13
    click(app, row)
    assert not app.exception and "Task number 13 (from the chosen alphabets)" in all_text(app)
    settings = app.session_state["task_settings"]
    drawn = embed.sample_tasks("omniglot", "test", 5, settings["shots"], settings["queries"], 20, 0,
                               one_group=True)[row]  # the task the map adapted for that point
    opened = sample_task("omniglot", "test", ways=5, shots=settings["shots"], queries=settings["queries"],
                         seed=settings["seed"], groups=tuple(settings["groups"]))
    assert opened.class_names == drawn.class_names  # the very task that point stood for
    visit(app, PAGE)
    app.toggle(key="embed_one_group").set_value(False).run()
    assert not app.exception
    assert "Neighbours from the same alphabet" not in {metric.label for metric in app.metric}


def test_zero_adaptation_steps_say_what_to_do(checkpoint_dir):
    write_checkpoint(checkpoint_dir, name="digits-test")
    app = start()
    key = services.short_hash(services.file_sha256(checkpoint_dir / "digits-test.safetensors"))
    app.session_state[f"steps_{key}"] = 0  # as the Adaptation page keeps its steps
    visit(app, PAGE)
    assert "Choose at least one step there" in all_text(app) and not app.get("bidi_component")


def test_clicking_a_point_opens_its_task_on_the_adaptation_page(checkpoint_dir):
    app = open_page(checkpoint_dir, "digits", embed_seed=300)
    click(app, 6)
    assert not app.exception
    text = all_text(app)
    assert "Task number 306: 1 example" in text and "New images recognised before adapting" in text
    assert app.query_params["seed"] == "306" and app.session_state["task_settings"]["seed"] == 306
    visit(app, PAGE)  # back on the map: the opened task is the current one, ringed
    ring = [trace for trace in figure(app)["data"] if trace.get("name") == "current task"]
    assert len(ring) == 1 and ring[0]["customdata"] == [[6]]
