"""The dashboard through streamlit.testing's AppTest: every page, with and without checkpoints.

Checkpoints come from a temporary folder (METAVIZ_CHECKPOINT_DIR), written here from an
untrained model: the pages must work for any checkpoint, trained or not.
"""
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from metaviz import services
from metaviz.checkpoints import Checkpoint, save_checkpoint
from metaviz.models import ConvNetConfig, MLPConfig, build_model, model_config_to_dict

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ("pages/1_Checkpoint.py", "pages/2_Task.py", "pages/3_Adaptation.py", "pages/4_Saliency.py",
         "pages/5_Layers.py", "pages/6_Task_embeddings.py", "pages/7_Sine_waves.py")
HISTORY = {"iteration": [50, 100, 150], "meta_loss": [1.5, 1.1, 0.8], "meta_accuracy": [0.4, 0.6, 0.7],
           "val_iteration": [100, 150], "val_metric": [0.55, 0.65]}
META_TEST = {"metric": "accuracy", "mean": 0.712, "ci95": 0.021, "tasks": 600, "steps": 3}


def write_checkpoint(directory: Path, name: str = "digits-test", dataset: str = "digits", **overrides) -> Path:
    """An untrained checkpoint file in `directory`, with training curves and a meta-test score."""
    torch.manual_seed(0)
    regression = dataset == "sinusoid"
    config = MLPConfig() if regression else ConvNetConfig(out_features=overrides.get("ways", 5))
    model = build_model(config)
    values = dict(
        name=name, model_config=model_config_to_dict(config),
        parameters={key: value.detach() for key, value in model.named_parameters()}, algorithm="maml",
        dataset=dataset, ways=0 if regression else 5, shots=10 if regression else 1, queries=10 if regression else 5,
        inner_lr=0.01 if regression else 0.4, inner_steps=3, history=HISTORY,
        metrics={"meta_test": {**META_TEST, "metric": "mse", "mean": 0.3} if regression else META_TEST},
    )
    path = Path(directory) / f"{name}.safetensors"
    save_checkpoint(Checkpoint(**{**values, **overrides}), path)
    return path


@pytest.fixture
def checkpoint_dir(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    monkeypatch.setenv(services.CHECKPOINT_DIR_VARIABLE, str(directory))
    return directory


def start(**query_params) -> AppTest:
    # A generous limit: these tests check what pages show, not how fast (benchmarks/ times them);
    # a busy CI machine made a first visit of a page (cold caches, numba compiling) pass 60 s.
    app = AppTest.from_file(APP, default_timeout=300)
    app.query_params.update(query_params)
    return app.run()


def visit(app: AppTest, page: str) -> AppTest:
    app.switch_page(page).run()
    assert not app.exception, f"{page}: {app.exception}"
    return app


def all_text(app: AppTest) -> str:
    kinds = ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error", "code")
    parts = [element.value for kind in kinds
             for element in app.get(kind) if isinstance(getattr(element, "value", None), str)]
    return "\n".join(parts + [f"{metric.label}: {metric.value}" for metric in app.metric])


def task_figure(app: AppTest) -> str:
    charts = app.get("plotly_chart")
    assert len(charts) == 1, "the task grid is missing"
    return charts[0].proto.spec


@pytest.mark.parametrize("dataset", ["digits", "sinusoid"])
def test_every_page_renders(checkpoint_dir, dataset):
    write_checkpoint(checkpoint_dir, name=f"{dataset}-test", dataset=dataset)
    app = start()
    assert not app.exception
    expected = {
        "pages/1_Checkpoint.py": [f"{dataset}-test", "Algorithm: MAML", "Content hash"],
        "pages/2_Task.py": ["Task number (seed)"] if dataset == "sinusoid" else ["Classes in this task", "digit"],
        "pages/3_Adaptation.py": ["after 3 steps"] if dataset == "sinusoid" else
        ["after 3 steps", "Step by step", "Answers that changed between step 0 and step 3"],
        "pages/4_Saliency.py": ["Saliency maps explain image models"] if dataset == "sinusoid" else
        ["What the model looks at in each new image", "Can this map be trusted?", "deletion area"],
        "pages/5_Layers.py": ["This task", "moved most", "Many tasks"],
        "pages/6_Task_embeddings.py": ["Tasks number 0 to 199", "Trustworthiness", "Hover over a point"],
        # one checkpoint only: the lesson says which of its two models is missing (tests/test_sine_lesson.py has both)
        "pages/7_Sine_waves.py": ["Learning to learn, on sine waves", "This lesson needs a "
                                  + ("pre-trained" if dataset == "sinusoid" else "meta-learned")],
    }
    figures = {"pages/1_Checkpoint.py": {1}, "pages/2_Task.py": {1},
               "pages/3_Adaptation.py": {1} if dataset == "sinusoid" else {2, 3},  # 3 when an answer changed
               "pages/4_Saliency.py": {0} if dataset == "sinusoid" else {2},  # maps, deletion/insertion
               "pages/5_Layers.py": {3},  # layers x steps, per tensor, per filter (many tasks on request)
               "pages/6_Task_embeddings.py": {0},  # the map is a component of its own (pages/_embed_map.py)
               "pages/7_Sine_waves.py": {0}}
    for page in PAGES:
        visit(app, page)
        text = all_text(app) + " ".join(widget.label for widget in app.number_input)
        for snippet in expected[page]:
            assert snippet in text, f"{page}: {snippet!r} not shown"
        assert not app.error, f"{page}: {[error.value for error in app.error]}"
        assert "Traceback" not in text
        assert len(app.get("plotly_chart")) in figures[page], f"{page}: a figure is missing"
        if page == "pages/6_Task_embeddings.py":
            assert len(app.get("bidi_component")) == 1, "the task map is missing"
        # The sidebar picker proves app.py ran around the page (see the url_path note there).
        assert app.selectbox(key="checkpoint_path").value == str(checkpoint_dir / f"{dataset}-test.safetensors")


def test_home_page_shows_the_checkpoint_card(checkpoint_dir):
    write_checkpoint(checkpoint_dir)
    app = start()
    assert app.title[0].value == "digits-test"
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics == {"Algorithm": "MAML", "Data": "Digits",
                       "Task shape": "5-way 1-shot", "Meta-test accuracy": "71.2%"}
    text = all_text(app)
    assert "71.2% ± 2.1%" in text  # the interval, in full, below the metrics
    assert "3 gradient steps, learning rate 0.4" in text
    assert "5 classes, each with 1 labelled example and 5 query images" in text
    assert "all layers (conv1, conv2, conv3, conv4, head)" in text
    checkpoint_hash = services.file_sha256(checkpoint_dir / "digits-test.safetensors")
    assert checkpoint_hash[:12] in text


def test_without_meta_test_score_the_card_says_how_to_measure_it(checkpoint_dir):
    write_checkpoint(checkpoint_dir, metrics={}, history={})
    app = start()
    assert not app.exception
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Meta-test score"] == "not measured yet"
    assert "carries no training curves" in all_text(app)


def test_changing_the_seed_changes_the_task_and_the_link(checkpoint_dir):
    write_checkpoint(checkpoint_dir)
    app = visit(start(), "pages/2_Task.py")
    first = task_figure(app)
    assert app.query_params["seed"] == ["0"] or app.query_params["seed"] == "0"
    app.number_input(key="task_seed_input").set_value(7).run()
    assert not app.exception
    assert task_figure(app) != first
    assert str(app.query_params["seed"]).strip("[]'") == "7"
    app.number_input(key="task_seed_input").set_value(0).run()
    assert task_figure(app) == first  # the same seed gives the same task


def test_task_settings_survive_a_page_switch(checkpoint_dir):
    write_checkpoint(checkpoint_dir)
    app = visit(start(), "pages/2_Task.py")
    app.number_input(key="task_seed_input").set_value(42).run()
    app.number_input(key="task_shots_input").set_value(2).run()
    seeded = task_figure(app)
    visit(app, "pages/3_Adaptation.py")
    assert "Task number 42: 2 examples and 5 new images per class." in all_text(app)
    visit(app, "pages/1_Checkpoint.py")
    visit(app, "pages/2_Task.py")
    assert app.number_input(key="task_seed_input").value == 42
    assert app.number_input(key="task_shots_input").value == 2
    assert task_figure(app) == seeded


def test_a_link_recreates_the_task(checkpoint_dir):
    write_checkpoint(checkpoint_dir)
    original = visit(start(), "pages/2_Task.py")
    original.number_input(key="task_seed_input").set_value(5).run()
    original.number_input(key="task_queries_input").set_value(3).run()
    linked = visit(start(seed="5", shots="1", queries="3", checkpoint="digits-test"), "pages/2_Task.py")
    assert linked.number_input(key="task_seed_input").value == 5
    assert task_figure(linked) == task_figure(original)
    garbled = visit(start(seed="not a number", shots="999"), "pages/2_Task.py")
    assert garbled.number_input(key="task_seed_input").value == 0
    assert garbled.number_input(key="task_shots_input").value == 20  # clamped to the widget's range


def test_adaptation_follows_its_settings(checkpoint_dir):
    write_checkpoint(checkpoint_dir)
    app = visit(start(), "pages/3_Adaptation.py")
    key = services.file_sha256(checkpoint_dir / "digits-test.safetensors")[:12]
    app.number_input(key=f"steps_{key}_input").set_value(5).run()
    assert not app.exception and not app.error
    labels = [metric.label for metric in app.metric]
    assert "Recognised after 5 steps" in labels
    assert app.slider(key=f"step_{key}_5").value == 5  # the step by step view opens at the last step
    visit(app, "pages/2_Task.py")
    visit(app, "pages/3_Adaptation.py")
    assert app.number_input(key=f"steps_{key}_input").value == 5  # kept while the user looked elsewhere


def test_no_checkpoints_gives_a_friendly_message_on_every_page(checkpoint_dir):
    app = start()
    assert not app.exception
    text = all_text(app)
    assert "no model checkpoint" in text
    assert str(checkpoint_dir) in text and "python -m metaviz train --dataset digits" in text
    for page in PAGES[1:]:
        visit(app, page)
        # The sine-wave lesson names the two models it needs and the commands that train them.
        expected = "This lesson needs a meta-learned sine-wave model" if "Sine" in page else "no model checkpoint"
        assert expected in all_text(app)
        assert not app.error


def test_the_default_checkpoint_is_a_digits_one(checkpoint_dir):
    write_checkpoint(checkpoint_dir, name="a-omniglot", dataset="omniglot")
    write_checkpoint(checkpoint_dir, name="b-digits")
    app = start()
    assert app.title[0].value == "b-digits"
    assert str(app.query_params["checkpoint"]).strip("[]'") == "b-digits"
    app.selectbox(key="checkpoint_path").set_value(str(checkpoint_dir / "a-omniglot.safetensors")).run()
    assert app.title[0].value == "a-omniglot"


def test_missing_omniglot_data_is_a_plain_error(checkpoint_dir, tmp_path, monkeypatch):
    import metaviz.data

    write_checkpoint(checkpoint_dir, name="omniglot-test", dataset="omniglot")
    monkeypatch.setenv("METAVIZ_DATA_DIR", str(tmp_path / "no-data-here"))
    # No network in tests: the download fails at once, as it would offline.
    monkeypatch.setattr(metaviz.data, "OMNIGLOT_URL", (tmp_path / "missing" / "{file}").as_uri())
    for page in PAGES[1:-1]:  # the sine-wave lesson needs no images
        app = visit(start(), page)
        assert len(app.error) == 1
        assert "The Omniglot images are not available" in app.error[0].value
        assert "images_background.zip" in app.error[0].value


def test_an_unreadable_checkpoint_is_a_plain_error(checkpoint_dir):
    (checkpoint_dir / "broken.safetensors").write_bytes(b"not a checkpoint")
    app = start()
    assert not app.exception
    assert "not a checkpoint metaviz can open" in app.error[0].value
    visit(app, "pages/2_Task.py")
    assert "not a checkpoint metaviz can open" in app.error[0].value


def test_weights_that_do_not_fit_their_header_are_an_error_on_the_checkpoint_page(checkpoint_dir):
    # The card comes from the header alone; the page then opens the weights and says they are wrong.
    small = build_model(ConvNetConfig(out_features=5, hidden=8))
    write_checkpoint(checkpoint_dir, name="mismatched",
                     parameters={key: value.detach() for key, value in small.named_parameters()})
    app = start()
    assert not app.exception
    assert app.title[0].value == "mismatched"
    assert len(app.error) == 1 and "not a checkpoint metaviz can open" in app.error[0].value


SHIPPED = services.find_checkpoints(services.REPOSITORY_ROOT / "checkpoints")


@pytest.mark.parametrize("file", SHIPPED, ids=lambda file: file.path.stem)
def test_the_header_card_says_what_the_loaded_checkpoint_says(file):
    from metaviz.checkpoints import load_checkpoint

    checkpoint = load_checkpoint(file.path)
    card = services.read_card(file.path, services.file_sha256(file.path))
    for field in ("name", "algorithm", "dataset", "ways", "shots", "queries", "inner_lr", "inner_steps",
                  "adapt_layers", "layers", "model_config", "test_split", "history", "metrics", "created",
                  "extra", "content_hash", "is_regression"):
        assert getattr(card, field) == getattr(checkpoint, field), field
    assert services.adapted_layers_text(card) == services.adapted_layers_text(checkpoint)


def test_the_first_page_reads_its_card_without_importing_torch():
    # torch's import takes seconds: the sidebar's upload box and the Checkpoint page's card wait for none of it.
    path = services.default_checkpoint(SHIPPED).path
    code = ("import sys; from metaviz import services; import pages._checkpoint_upload; "
            f"card = services.read_card({str(path)!r}, ''); "
            "print(card.name, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=services.REPOSITORY_ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.split() == [path.stem, "False"]


def test_once_a_page_is_drawn_and_the_dashboard_is_idle_umaps_warm_up_starts(checkpoint_dir, monkeypatch):
    # The Task embeddings page's first map then finds umap loaded (pages/_shared.warm_up_for_later_pages).
    from metaviz import embed
    from pages import _shared

    started = []
    monkeypatch.setattr(embed, "start_warm_up", lambda: started.append(time.monotonic()))
    # An earlier test's app may have started a waiter already (it may call the recorder too).
    monkeypatch.setattr(_shared._pages, "warm_up_waiter", None)
    write_checkpoint(checkpoint_dir)
    app = start()
    assert app.title[0].value == "digits-test" and not app.exception
    page_ended = _shared._pages.last_end
    _shared._pages.warm_up_waiter.join(30)
    assert started and min(started) - page_ended >= _shared.IDLE_BEFORE_WARM_UP


def test_the_warm_up_waits_while_a_page_runs(monkeypatch):
    from metaviz import embed
    from pages import _shared

    started, page_running, page_done = [], threading.Event(), threading.Event()
    monkeypatch.setattr(embed, "start_warm_up", lambda: started.append(time.monotonic()))
    # A page just ended: a waiter an earlier test left running waits as well.
    monkeypatch.setattr(_shared, "_pages", _shared._PagesRunning(last_end=time.monotonic()))

    def a_page():
        with _shared.inside_app():
            page_running.set()
            page_done.wait(30)

    threading.Thread(target=a_page).start()
    page_running.wait(30)
    _shared.warm_up_for_later_pages()  # another session's page ended; this one still runs
    time.sleep(2 * _shared.IDLE_BEFORE_WARM_UP)
    waited = not started
    page_done.set()
    _shared._pages.warm_up_waiter.join(30)
    assert waited and started and min(started) - _shared._pages.last_end >= _shared.IDLE_BEFORE_WARM_UP


def test_a_page_that_loaded_no_torch_starts_no_warm_up():
    code = ("import sys; from pages._shared import warm_up_for_later_pages; warm_up_for_later_pages(); "
            "print(*(name in sys.modules for name in ('torch', 'metaviz.embed', 'umap')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=services.REPOSITORY_ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.split() == ["False", "False", "False"]


def test_picker_helpers_read_headers_without_loading_weights(checkpoint_dir):
    write_checkpoint(checkpoint_dir, name="z-sine", dataset="sinusoid")
    (checkpoint_dir / "broken.safetensors").write_bytes(b"\xff" * 64)
    files = services.find_checkpoints(checkpoint_dir)
    assert [file.path.name for file in files] == ["broken.safetensors", "z-sine.safetensors"]
    assert files[0].metadata is None and files[0].label == "broken.safetensors (unreadable)"
    assert files[1].label == "z-sine" and files[1].summary == "Sine waves, 10-shot regression"
    assert services.default_checkpoint(files) == files[1]
    assert services.default_checkpoint([]) is None
    assert services.find_checkpoints(checkpoint_dir / "absent") == []


def test_created_text():
    assert services.created_text("2026-11-25T14:07:17+00:00") == "25 Nov 2026, 14:07 UTC"
    assert services.created_text("") == "unknown"
    assert services.created_text("last Tuesday") == "last Tuesday"


def test_meta_test_text():
    assert services.meta_test_text({}) is None
    value, details = services.meta_test_text({"meta_test": META_TEST})
    assert value == "71.2% ± 2.1%"
    assert "600 tasks" in details and "95% confidence interval" in details
    value, _ = services.meta_test_text({"meta_test": {"metric": "mse", "mean": 0.25, "ci95": float("nan")}})
    assert value == "MSE 0.25"


# --- uploads and the step-by-step view ----------------------------------------------------------


def upload_zip(classes, per_class=3, **extra) -> bytes:
    from tests.test_uploads import PNG, make_zip

    return make_zip({**{f"my task/{name}/{index}.png": PNG for name in classes for index in range(per_class)}, **extra})


def upload(app: AppTest, data: bytes, name: str = "my task.zip") -> AppTest:
    app.radio(key="task_source_input").set_value("uploaded").run()
    app.file_uploader(key="upload_zip_file").set_value((name, data, "application/zip")).run()
    assert not app.exception, app.exception
    return app


FIVE = ("apple", "bell", "cup", "door", "eye")


def test_an_uploaded_zip_becomes_the_task_on_every_page(checkpoint_dir):
    write_checkpoint(checkpoint_dir)
    app = upload(visit(start(), "pages/2_Task.py"), upload_zip(FIVE, **{"my task/readme.txt": b"hello"}))
    assert not app.error, [error.value for error in app.error]
    text = all_text(app)
    assert "Your images, as the model sees them" in text
    assert "15 images in 5 classes" in text
    assert "Classes in this task: **apple**; **bell**; **cup**; **door**; **eye**, from your upload" in text
    assert "1 image per class to learn from, 2 new images per class to test on" in text  # 3 images, 1 shot
    assert len(app.get("plotly_chart")) == 2  # the converted images, then the task
    assert any("readme.txt: skipped, not an image" in element.value for element in app.get("text"))
    visit(app, "pages/3_Adaptation.py")
    assert not app.error
    assert "Your uploaded images: 1 example and 2 new images per class." in all_text(app)
    assert "of 10 new images recognised" in app.get("plotly_chart")[1].proto.spec
    visit(app, "pages/1_Checkpoint.py")
    visit(app, "pages/2_Task.py")  # the file widget is empty now; the upload is kept
    assert app.radio(key="task_source_input").value == "uploaded"
    assert "15 images in 5 classes" in all_text(app)
    app.radio(key="task_source_input").set_value("sampled").run()
    assert "from the test split" in all_text(app)  # back to a sampled task
    visit(app, "pages/3_Adaptation.py")
    assert "Task number 0" in all_text(app)


def test_more_classes_than_the_model_knows_asks_which_to_use(checkpoint_dir):
    write_checkpoint(checkpoint_dir)
    app = upload(visit(start(), "pages/2_Task.py"), upload_zip(FIVE + ("fig", "gate")))
    choice = app.multiselect[0]
    assert "has 7 classes; this model tells apart 5" in choice.label
    assert choice.value == list(FIVE)
    choice.set_value(["bell", "cup", "door", "fig", "gate"]).run()
    assert not app.exception and not app.error
    assert "**bell**; **cup**; **door**; **fig**; **gate**" in all_text(app)
    visit(app, "pages/3_Adaptation.py")
    assert not app.error
    visit(app, "pages/2_Task.py")
    assert app.multiselect[0].value == ["bell", "cup", "door", "fig", "gate"]  # kept across pages
    app.multiselect[0].set_value(["bell", "cup"]).run()
    assert not app.exception
    assert "exactly 5 classes, and 2 classes are chosen" in app.error[0].value


@pytest.mark.parametrize("data, message", [
    (b"certainly not a zip", "not a zip archive"),
    (None, "this model needs"),  # replaced below: three classes for a five-way model
    (b"", "the file is empty"),
])
def test_unusable_uploads_give_plain_messages(checkpoint_dir, data, message):
    write_checkpoint(checkpoint_dir)
    if data is None:
        data, message = upload_zip(("apple", "bell", "cup")), "tells apart 5 classes, and the upload has 3 classes"
    app = upload(visit(start(), "pages/2_Task.py"), data)
    assert len(app.error) == 1 and message in app.error[0].value
    assert "Traceback" not in all_text(app)


def test_too_few_images_per_class_say_so(checkpoint_dir):
    write_checkpoint(checkpoint_dir)
    app = upload(visit(start(), "pages/2_Task.py"), upload_zip(FIVE, per_class=2))
    app.number_input(key="task_shots_input").set_value(2).run()
    assert "every class needs at least 3 images" in app.error[0].value


def test_uploaded_names_are_shown_as_text_not_markup(checkpoint_dir):
    write_checkpoint(checkpoint_dir)
    names = ("[click](javascript:alert(1))", "<b>bold</b>", "![x](http://example.com/t.png)", "d", "e")
    app = upload(visit(start(), "pages/2_Task.py"), upload_zip(names))
    assert not app.error
    markdown = "\n".join(element.value for element in app.markdown)
    assert "[click](" not in markdown and "\\[click\\]\\(javascript\\:alert\\(1\\)\\)" in markdown
    assert "<b>" not in markdown and "!\\[x\\]" not in markdown.replace("\\!\\[x\\]", "")
    for chart in app.get("plotly_chart"):
        assert "<b>bold</b>" not in chart.proto.spec
    assert "&lt;b&gt;bold" in app.get("plotly_chart")[1].proto.spec


def test_images_dropped_class_by_class(checkpoint_dir):
    from tests.test_uploads import PNG

    write_checkpoint(checkpoint_dir)
    app = visit(start(), "pages/2_Task.py")
    app.radio(key="task_source_input").set_value("uploaded").run()
    app.radio(key="upload_how").set_value("Images, class by class").run()
    assert len([box for box in app.file_uploader if box.key.startswith("upload_class_files_")]) == 5
    for index in range(5):
        app.text_input(key=f"upload_class_name_{index}").set_value(f"letter {'ABCDE'[index]}")
        app.file_uploader(key=f"upload_class_files_{index}").set_value(
            [(f"{index}-{n}.png", PNG, "image/png") for n in range(2)])
    app.run()
    assert not app.exception and not app.error, [error.value for error in app.error]
    assert "**letter A**; **letter B**" in all_text(app)
    assert "10 images in 5 classes" in all_text(app)


def test_the_layers_that_adapt_and_the_step_shown_can_be_changed(checkpoint_dir):
    write_checkpoint(checkpoint_dir)
    app = visit(start(), "pages/3_Adaptation.py")
    key = services.file_sha256(checkpoint_dir / "digits-test.safetensors")[:12]
    layers = app.multiselect(key=f"layers_{key}_input")
    assert layers.value == ["conv1", "conv2", "conv3", "conv4", "head"]
    assert "Step 3 of 3" in app.get("plotly_chart")[1].proto.spec
    app.slider(key=f"step_{key}_3").set_value(0).run()
    assert "Step 0 of 3 (before adapting)" in app.get("plotly_chart")[1].proto.spec
    layers.set_value(["head"]).run()
    assert not app.exception and not app.error
    visit(app, "pages/2_Task.py")
    visit(app, "pages/3_Adaptation.py")
    assert app.multiselect(key=f"layers_{key}_input").value == ["head"]  # kept while the user looked elsewhere
    app.multiselect(key=f"layers_{key}_input").set_value([]).run()
    assert "Choose at least one layer to adapt." in app.warning[0].value


def test_choosing_upload_without_images_points_back_to_the_task_page(checkpoint_dir):
    write_checkpoint(checkpoint_dir)
    app = visit(start(), "pages/2_Task.py")
    app.radio(key="task_source_input").set_value("uploaded").run()
    assert "Upload a zip file" in all_text(app)
    visit(app, "pages/3_Adaptation.py")
    assert "No images have been uploaded yet." in all_text(app)
    assert not app.error


# --- a second checkpoint folder ------------------------------------------------------------------


def name_folder(app: AppTest, folder) -> AppTest:
    app.text_input(key="other_checkpoint_folder_input").set_value(str(folder)).run()
    assert not app.exception, app.exception
    return app


def test_a_checkpoint_from_another_folder_joins_the_picker(checkpoint_dir, tmp_path):
    write_checkpoint(checkpoint_dir)
    elsewhere = tmp_path / "colleague models"
    elsewhere.mkdir()
    other = write_checkpoint(elsewhere, name="their-digits")
    app = name_folder(start(), elsewhere)
    assert not app.warning
    picker = app.selectbox(key="checkpoint_path")
    assert picker.options == ["digits-test", "their-digits · colleague models/"]  # marked with its folder
    assert picker.value == str(checkpoint_dir / "digits-test.safetensors")  # naming a folder changes no choice
    picker.set_value(str(other)).run()
    assert not app.exception and not app.error
    assert app.title[0].value == "their-digits"
    assert any("· from" in caption.value and "colleague models" in caption.value for caption in app.sidebar.caption)
    for page in PAGES[1:]:  # the folder and the choice are kept while the user moves on
        visit(app, page)
        assert not app.error
        assert app.selectbox(key="checkpoint_path").value == str(other)
        assert app.text_input(key="other_checkpoint_folder_input").value == str(elsewhere)


def test_the_usual_folder_named_again_lists_its_checkpoints_once(checkpoint_dir):
    write_checkpoint(checkpoint_dir)
    app = name_folder(start(), checkpoint_dir)
    assert app.selectbox(key="checkpoint_path").options == ["digits-test"]
    assert not app.warning


def test_a_folder_alone_is_enough(checkpoint_dir, tmp_path):
    write_checkpoint(tmp_path, name="lonely")
    app = name_folder(start(), tmp_path)
    assert app.title[0].value == "lonely"


@pytest.mark.parametrize("folder, message", [
    ("absent", "There is no folder"),
    ("a-file.txt", "is a file, not a folder"),
    ("empty", "holds no checkpoints"),
])
def test_a_folder_without_checkpoints_warns(checkpoint_dir, tmp_path, folder, message):
    write_checkpoint(checkpoint_dir)
    (tmp_path / "a-file.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "model.pt").write_bytes(b"never unpickled")
    app = name_folder(start(), tmp_path / folder)
    assert len(app.warning) == 1 and message in app.warning[0].value
    assert not app.error
    assert app.selectbox(key="checkpoint_path").options == ["digits-test"]
    assert app.title[0].value == "digits-test"  # the page goes on with the usual checkpoints
    app.text_input(key="other_checkpoint_folder_input").set_value("").run()
    assert not app.warning


def test_checkpoints_in_folder(tmp_path):
    with pytest.raises(services.CheckpointFolderError, match="There is no folder"):
        services.checkpoints_in_folder(str(tmp_path / "absent"))
    write_checkpoint(tmp_path, name="found")
    assert [file.name for file in services.checkpoints_in_folder(f"  {tmp_path}  ")] == ["found"]


# --- a task from chosen alphabets (digits) or classes ----------------------------------------------


def link_values(app: AppTest, key: str) -> list[str]:
    value = app.query_params.get(key, [])
    return [value] if isinstance(value, str) else list(value)


def task_classes_text(app: AppTest) -> str:
    return next(element.value for element in app.markdown if element.value.startswith("Classes in this task"))


def test_a_task_from_one_digit(checkpoint_dir):
    write_checkpoint(checkpoint_dir, name="two-way", ways=2)
    app = visit(start(), "pages/2_Task.py")
    app.multiselect(key="task_groups_input").set_value(["digit 7"]).run()
    assert not app.exception and not app.error
    text = task_classes_text(app)
    assert "**digit 7**" in text and "**digit 7, turned 90°**" in text
    assert "drawn only from digit 7 in the test split" in text
    assert link_values(app, "groups") == ["digit 7"]
    # Only that digit's classes are offered for an exact choice.
    assert app.multiselect(key="task_classes_input").options == ["digit 7", "digit 7, turned 90°"]
    figure = task_figure(app)
    linked = visit(start(groups="digit 7", checkpoint="two-way"), "pages/2_Task.py")
    assert linked.multiselect(key="task_groups_input").value == ["digit 7"]
    assert task_figure(linked) == figure
    visit(app, "pages/3_Adaptation.py")
    assert not app.error
    assert "Task number 0 (from the chosen digits)" in all_text(app)
    visit(app, "pages/2_Task.py")
    assert app.multiselect(key="task_groups_input").value == ["digit 7"]  # kept while the user looked elsewhere


CHOSEN = ["digit 9", "digit 6 (rot 90)", "digit 8", "digit 7", "digit 6"]


def test_a_task_from_exact_classes_and_its_link(checkpoint_dir):
    write_checkpoint(checkpoint_dir)
    app = visit(start(), "pages/2_Task.py")
    key = services.file_sha256(checkpoint_dir / "digits-test.safetensors")[:12]
    visit(app, "pages/3_Adaptation.py")
    random_task = app.get("plotly_chart")[1].proto.spec
    visit(app, "pages/2_Task.py")
    app.multiselect(key="task_classes_input").set_value(CHOSEN).run()
    assert not app.exception and not app.error
    assert task_classes_text(app).startswith(
        "Classes in this task: **digit 9**; **digit 6, turned 90°**; **digit 8**; **digit 7**; **digit 6**, "
        "chosen by hand from the test split")
    assert link_values(app, "classes") == CHOSEN
    figure = task_figure(app)
    visit(app, "pages/3_Adaptation.py")  # a new task, so a new adaptation (its cache key names the classes)
    assert not app.error
    assert "Task number 0 (classes chosen by hand)" in all_text(app)
    assert app.get("plotly_chart")[1].proto.spec != random_task
    assert app.slider(key=f"step_{key}_3").value == 3
    linked = visit(start(classes=CHOSEN, checkpoint="digits-test"), "pages/2_Task.py")
    assert linked.multiselect(key="task_classes_input").value == CHOSEN
    assert task_figure(linked) == figure
    linked.multiselect(key="task_classes_input").set_value([]).run()
    assert "from the test split" in task_classes_text(linked)
    assert link_values(linked, "classes") == []


def test_unusable_choices_are_plain_errors(checkpoint_dir):
    write_checkpoint(checkpoint_dir)
    app = visit(start(), "pages/2_Task.py")
    app.multiselect(key="task_groups_input").set_value(["digit 7"]).run()
    assert not app.exception
    assert len(app.error) == 1
    assert "The chosen digit (digit 7) holds 2 classes; this model needs 5. Choose more digits" \
        in app.error[0].value
    visit(app, "pages/3_Adaptation.py")  # the same message where the task is used
    assert "holds 2 classes" in app.error[0].value
    visit(app, "pages/2_Task.py")
    app.multiselect(key="task_groups_input").set_value(["digit 7", "digit 8", "digit 9"]).run()
    assert not app.error
    assert set(link_values(app, "groups")) == {"digit 7", "digit 8", "digit 9"}
    app.multiselect(key="task_classes_input").set_value(["digit 7", "digit 8"]).run()
    assert "tells apart exactly 5 classes, and 2 classes are chosen" in app.error[0].value
    assert "Traceback" not in all_text(app)


def test_a_link_naming_unknown_classes_is_a_plain_message(checkpoint_dir):
    write_checkpoint(checkpoint_dir)
    app = visit(start(classes=["digit 1", "nonsense"], groups="digit 42"), "pages/3_Adaptation.py")
    assert not app.exception
    assert "These classes are not in this model's test data" in app.error[0].value
    visit(app, "pages/2_Task.py")  # the Task page drops what the data lacks, and samples as usual
    assert not app.error
    assert app.multiselect(key="task_classes_input").value == []
    assert "from the test split" in task_classes_text(app)


def test_task_choice_problem():
    names = ("digit 7", "digit 7 (rot 90)", "digit 8")
    groups = ("digit 7", "digit 7", "digit 8")
    assert services.task_choice_problem("digits", names, groups, 2) is None
    assert services.task_choice_problem("digits", names, groups, 2, groups=["digit 7"]) is None
    assert "holds 1 class; this model needs 2" in services.task_choice_problem("digits", names, groups, 2,
                                                                             groups=["digit 8"])
    assert services.task_choice_problem("digits", names, groups, 2, groups=["digit 8"],
                                        classes=["digit 8", "digit 7"]) is None  # classes win
    assert "chosen twice" in services.task_choice_problem("digits", names, groups, 2, classes=["digit 8"] * 2)
    assert "not in this model's test data: Latin" in services.task_choice_problem(
        "omniglot", names, groups, 2, groups=["Latin"])


def test_saliency_follows_method_step_and_the_randomisation_button(checkpoint_dir):
    write_checkpoint(checkpoint_dir)
    app = visit(start(), "pages/4_Saliency.py")
    key = services.file_sha256(checkpoint_dir / "digits-test.safetensors")[:12]
    assert app.selectbox(key="saliency_method").value == "Saliency"
    assert app.slider(key=f"saliency_step_{key}_3").value == 3  # opens at the last step
    assert "makes no promise that its map adds up" in all_text(app)
    first = app.get("plotly_chart")[0].proto.spec

    app.selectbox(key="saliency_method").set_value("Integrated Gradients").run()
    assert not app.exception and not app.error
    assert "they add up within 1% for" in all_text(app)  # the completeness check, in words
    integrated = app.get("plotly_chart")[0].proto.spec
    assert integrated != first

    app.slider(key=f"saliency_step_{key}_3").set_value(1).run()
    assert not app.exception and not app.error
    assert "After step 1" in app.get("plotly_chart")[0].proto.spec
    assert "At step 1 they add up" in all_text(app)

    assert not app.success and not app.warning  # the randomisation test waits for its button
    app.button(key="saliency_randomise").click().run()
    assert not app.exception and not app.error
    verdicts = [element.value for element in list(app.success) + list(app.warning)]
    assert len(verdicts) == 1 and verdicts[0].startswith("Verdict for Integrated Gradients: ")
    assert len(app.get("plotly_chart")) == 3  # maps, randomisation, deletion/insertion
    app.selectbox(key="saliency_sign").set_value("all").run()
    assert len(app.success) + len(app.warning) == 1  # the result stays on screen across reruns

    app.radio(key="saliency_explain").set_value("A class I choose").run()
    app.selectbox(key="saliency_class").set_value(2).run()
    assert not app.exception and not app.error
    assert "the maps explain the class digit" in all_text(app)
