"""Hostile inputs through the dashboard (AppTest): a plain message for each, and the user
carries on; an unsafe environment keeps the dashboard from starting; uploaded checkpoints."""
import io

import pytest
import torch

from metaviz import safety
from metaviz.models import ConvNetConfig, build_model
from tests.test_app import (  # noqa: F401 (checkpoint_dir: a fixture)
    FIVE, all_text, checkpoint_dir, start, upload, upload_zip, visit, write_checkpoint,
)
from tests.test_hostile_uploads import png_header
from tests.test_uploads import PNG, make_zip


@pytest.fixture
def upload_folder(tmp_path, monkeypatch):
    """Uploaded checkpoints go to a folder of this test, not the machine's temp directory."""
    folder = tmp_path / "uploaded"
    monkeypatch.setattr("metaviz.user_checkpoints.upload_dir", lambda: folder)
    return folder


def test_an_unsafe_environment_keeps_the_dashboard_from_starting(checkpoint_dir, monkeypatch):
    write_checkpoint(checkpoint_dir)
    monkeypatch.setenv(safety.UNSAFE_VARIABLE, "1")
    app = start()
    assert not app.exception
    assert len(app.error) == 1 and "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set" in app.error[0].value
    assert not app.selectbox and not app.get("metric")  # no picker, no page: nothing else runs


def upload_checkpoint(app, name: str, data: bytes):
    app.run()  # AppTest's first run takes the legacy pages/ path: the sidebar widgets' ids change once after it
    app.file_uploader(key="checkpoint_upload_file").set_value((name, data, "application/octet-stream")).run()
    assert not app.exception, app.exception
    return app


def test_an_uploaded_checkpoint_joins_the_picker_and_is_chosen(checkpoint_dir, upload_folder, tmp_path):
    write_checkpoint(checkpoint_dir)
    mine = write_checkpoint(tmp_path, name="my-own-model").read_bytes()
    app = upload_checkpoint(start(), "<b>mine</b>.safetensors", mine)
    assert not app.error
    picker = app.selectbox(key="checkpoint_path")
    assert picker.value.startswith(str(upload_folder)) and len(picker.options) == 2
    assert "my-own-model · uploaded/" in picker.options
    assert app.title[0].value == "my-own-model"
    visit(app, "pages/3_Adaptation.py")
    assert not app.error and "New images recognised before adapting" in all_text(app)
    assert [path.name for path in upload_folder.iterdir()] == [f"{path.stem}.safetensors"
                                                             for path in upload_folder.iterdir()]  # hash names


@pytest.mark.parametrize("name, data, message", [
    ("notes.safetensors", b"certainly not a checkpoint", "not a safetensors checkpoint"),
    ("empty.pt", b"", "the file is empty"),
    ("cut.pt", None, "damaged or incomplete"),  # filled in below: a state dict cut in half
    ("odd.pth", None, "head.weight is [5, 99] where the model needs"),  # filled in below
])
def test_a_bad_checkpoint_upload_is_a_message_and_the_old_model_stays(checkpoint_dir, upload_folder, name, data,
                                                                      message):
    write_checkpoint(checkpoint_dir)
    state = build_model(ConvNetConfig()).state_dict()
    if name == "odd.pth":
        state["head.weight"] = torch.zeros(5, 99)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    if data is None:
        data = buffer.getvalue() if name == "odd.pth" else buffer.getvalue()[:5000]
    app = upload_checkpoint(start(), name, data)
    errors = [error.value for error in app.error]
    assert len(errors) == 1 and "This checkpoint cannot be used" in errors[0]
    assert message in errors[0].replace("\\", ""), errors[0]
    assert app.title[0].value == "digits-test"  # the model in use before is still in use
    visit(app, "pages/2_Task.py")
    assert "Classes in this task" in all_text(app)  # the user carries on
    assert not list(upload_folder.glob("*")) if upload_folder.exists() else True


BAD_ZIPS = {
    "empty upload": (b"", "the file is empty"),
    "not a zip": (PNG, "not a zip archive"),
    "one class only": (make_zip({"cats/a.png": PNG, "cats/b.png": PNG}), "the upload has 1 class"),
    "pixel bombs only": (make_zip({f"{name}/bomb.png": png_header(10_000, 10_000) for name in FIVE}),
                         "no usable images were found (5 files skipped"),
}


@pytest.mark.parametrize("case", BAD_ZIPS)
def test_a_bad_zip_is_a_message_and_a_good_one_then_works(checkpoint_dir, case):
    write_checkpoint(checkpoint_dir)
    data, message = BAD_ZIPS[case]
    app = upload(visit(start(), "pages/2_Task.py"), data)
    errors = [error.value for error in app.error]
    assert len(errors) == 1 and message in errors[0].replace("\\", ""), errors
    assert "Traceback" not in all_text(app)
    app = upload(app, upload_zip(FIVE), name="better.zip")
    assert not app.error and "15 images in 5 classes" in all_text(app)


def test_a_zip_of_the_wrong_type_is_refused_on_the_server(checkpoint_dir):
    """A browser offers only .zip files; a client that bypasses it meets Streamlit's own
    server-side extension check (before metaviz's script runs: a generic error, and the file is
    never read); a reload starts afresh."""
    write_checkpoint(checkpoint_dir)
    app = visit(start(), "pages/2_Task.py")
    app.radio(key="task_source_input").set_value("uploaded").run()
    app.file_uploader(key="upload_zip_file").set_value(("task.exe", upload_zip(FIVE), "application/zip")).run()
    assert app.exception and "15 images" not in all_text(app)  # refused, never read
    app = upload(visit(start(), "pages/2_Task.py"), upload_zip(FIVE))  # a reload: a new session
    assert not app.exception and "15 images in 5 classes" in all_text(app)


def test_a_checkpoint_with_crafted_metadata_shows_plain_text(checkpoint_dir, upload_folder, tmp_path):
    from tests.test_user_checkpoints import crafted

    write_checkpoint(checkpoint_dir)
    mine = write_checkpoint(tmp_path, name="mine").read_bytes()
    data = crafted(mine, name="[click](javascript:alert(1)) <b>x</b>", extra={"train_config": "oops"},
                   metrics={"meta_test": {"mean": "high"}})
    app = upload_checkpoint(start(), "crafted.safetensors", data)
    assert not app.error and not app.exception
    assert app.title[0].value == "click(javascriptalert(1)) bxb"
    text = all_text(app)
    assert "javascript:" not in text and "<b>" not in text
    assert "not measured yet" in text  # the unusable score was dropped, not shown
