"""The Layers page through AppTest: the current task's update sizes, then many tasks on request."""
import json

import pytest

from tests.test_app import all_text, checkpoint_dir, start, visit, write_checkpoint  # noqa: F401 (fixture)

PAGE = "pages/5_Layers.py"


def figure_kinds(app) -> list[str]:
    return [json.loads(chart.proto.spec)["data"][0]["type"] for chart in app.get("plotly_chart")]


@pytest.mark.parametrize("dataset", ["digits", "sinusoid"])
def test_layers_page_measures_many_tasks_on_request(checkpoint_dir, dataset):  # noqa: F811
    write_checkpoint(checkpoint_dir, name=f"{dataset}-test", dataset=dataset)
    app = visit(start(), PAGE)
    text = all_text(app)
    assert "This task" in text and "moved most" in text
    assert figure_kinds(app) == ["heatmap", "bar", "heatmap"]  # layers x steps, per tensor, per filter
    assert "Press **Measure on 100 tasks**" in text

    app.slider(key="layers_tasks").set_value(10).run()
    app.button(key="layers_measure").click().run()
    assert not app.exception and not app.error
    text = all_text(app)
    assert "Which layers must adapt" in text
    assert figure_kinds(app)[3:] == ["bar", "box", "bar"]  # CKA; boxes per layer; ablation
    table = app.dataframe[0].value
    assert list(table["setting"])[:3] == ["all layers", "head only (body frozen)", "body only (head frozen)"]
    assert table["vs all layers"][0].startswith("+0.0") or table["vs all layers"][0] == "+0"
    if dataset == "digits":
        assert "Adapting only the head scores" in text

    # The result stays on screen (kept by identity) after another interaction.
    app.slider(key=next(s.key for s in app.slider if s.key.startswith("layers_step_"))).set_value(1).run()
    assert "Which layers must adapt" in all_text(app)


def test_layers_page_follows_the_adaptation_pages_layers(checkpoint_dir):  # noqa: F811
    write_checkpoint(checkpoint_dir)
    app = visit(start(), "pages/3_Adaptation.py")
    layers = next(widget for widget in app.multiselect if widget.key.startswith("layers_"))
    layers.set_value(["conv4", "head"]).run()
    app = visit(app, PAGE)
    text = all_text(app)
    assert "adapting: conv4, head" in text
    assert "conv1, conv2, conv3 did not adapt (frozen)" in text


def test_an_uploaded_task_without_the_models_data_measures_with_a_plain_message(checkpoint_dir, tmp_path,  # noqa: F811
                                                                              monkeypatch):
    """The current (uploaded) task needs no data; many tasks need the model's own: a plain error."""
    import metaviz.data
    from tests.test_app import FIVE, upload, upload_zip

    write_checkpoint(checkpoint_dir, name="omniglot-test", dataset="omniglot")
    monkeypatch.setenv("METAVIZ_DATA_DIR", str(tmp_path / "no-data-here"))
    monkeypatch.setattr(metaviz.data, "OMNIGLOT_URL", (tmp_path / "missing" / "{file}").as_uri())
    app = upload(visit(start(), "pages/2_Task.py"), upload_zip(FIVE))
    app = visit(app, PAGE)
    assert "moved most" in all_text(app) and not app.error
    app.slider(key="layers_tasks").set_value(10).run()
    app.button(key="layers_measure").click().run()
    assert not app.exception
    assert len(app.error) == 1
    assert app.error[0].value.startswith("The model cannot be measured on new tasks from its data")
    assert "METAVIZ\\_DATA\\_DIR" in app.error[0].value  # says where the data goes (markdown-escaped)
