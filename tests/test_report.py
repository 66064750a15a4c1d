"""The review report (metaviz.report): built from the library, from the CLI and from a sidebar
snapshot; parsed back with html.parser to check what it holds and that user text stays text."""
from __future__ import annotations

import io
import zipfile
from datetime import datetime, timezone
from html.parser import HTMLParser

import numpy as np
import pytest

from metaviz.checkpoints import load_checkpoint
from metaviz.report import ReportSettings, build_report, package_versions
from metaviz.tasks import sample_task, task_from_images
from tests.test_app import write_checkpoint

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


class Parsed(HTMLParser):
    """What a browser would make of the page: visible text, tags, scripts, images, links."""

    def __init__(self, document: str):
        super().__init__()
        self.text, self.scripts, self.images, self.tags, self.sections = [], [], [], [], []
        self._in_script = False
        self.feed(document)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        self._in_script = tag == "script"
        if tag == "script":
            self.scripts.append("")
        if tag == "img":
            self.images.append(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)

    @property
    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    return load_checkpoint(write_checkpoint(tmp_path_factory.mktemp("checkpoints"), name="digits-report"))


@pytest.fixture(scope="module")
def digits_report(digits_checkpoint):
    task = sample_task("digits", "test", ways=5, shots=1, queries=2, seed=7)
    moment = datetime(2026, 11, 25, 21, 30, tzinfo=timezone.utc)
    return build_report(digits_checkpoint, task, ReportSettings(steps=2, method="Integrated Gradients",
                                                                method_settings=(("n_steps", 16),)), now=moment)


def test_the_report_holds_what_a_reviewer_saw(digits_checkpoint, digits_report):
    page = Parsed(digits_report)
    text = page.all_text
    assert page.sections == ["model", "task", "adaptation", "saliency", "layers", "settings", "environment"]
    assert "digits-report" in text and digits_checkpoint.content_hash in text
    # the task, and the command that re-creates it
    assert "seed 7" in text or "seed 7" in text.replace(":", "")
    for name in sample_task("digits", "test", ways=5, shots=1, queries=2, seed=7).class_names:
        assert name in text
    assert "python -m metaviz report" in text and "--seed 7" in text and "--steps 2" in text
    # adaptation per step, saliency with its three checks, layers
    assert "new images right" in text
    for check in ("Does it add up?", "randomisation test", "deletion and insertion", "Verdict for Integrated Gradients"):
        assert check in text, check
    assert "moved most" in text  # the layer summary in words
    # every setting, the versions and the time
    assert '{"n_steps": 16}' in text
    assert "2026-11-25T21:30:00+00:00" in text
    assert package_versions()["torch"] in text and package_versions()["plotly"] in text


def test_the_report_is_self_contained(digits_report):
    page = Parsed(digits_report)
    plotly_bundles = [script for script in page.scripts if "plotly.js v" in script[:2000]]
    assert len(plotly_bundles) == 1, "plotly.js is inlined exactly once"
    external = [(tag, attrs) for tag, attrs in page.tags
                if any(str(attrs.get(key, "")).startswith(("http:", "https:", "//")) for key in ("src", "href"))]
    assert not external, f"the report loads from the network: {external[:3]}"
    assert len(page.images) >= 5 * 2 + 3 * 10  # the task's images and 3 rows of maps
    assert all(image["src"].startswith("data:image/png;base64,") for image in page.images)
    figures = [attrs["id"] for tag, attrs in page.tags if tag == "div" and attrs.get("class") == "plotly-graph-div"]
    assert {"adaptation-curves", "query-predictions", "randomisation", "faithfulness", "layer-updates"} <= set(figures)


def test_user_text_stays_text(digits_checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    images = {f"{HOSTILE} {index}": [rng.random((28, 28), dtype=np.float32) for _ in range(3)] for index in range(5)}
    task = task_from_images(images, shots=1, queries=2)
    document = build_report(digits_checkpoint, task, ReportSettings(randomisation=False),
                            origin={"uploaded": f"the zip file {HOSTILE}.zip"})
    page = Parsed(document)
    assert not any(tag == "img" and "onerror" in attrs for tag, attrs in page.tags)
    assert not any("alert" in script and "plotly.js v" not in script[:2000] and "Plotly.newPlot" not in script
                   for script in page.scripts), "a class name became a script"
    assert HOSTILE in page.all_text  # shown as typed
    assert "--upload" in page.all_text and "Not run for this report." in page.all_text


def test_a_sine_wave_report_has_no_saliency(tmp_path):
    checkpoint = load_checkpoint(write_checkpoint(tmp_path, name="sine-report", dataset="sinusoid"))
    task = sample_task("sinusoid", shots=5, queries=10, seed=3)
    page = Parsed(build_report(checkpoint, task))
    assert "saliency" not in page.sections and "layers" in page.sections
    assert "amplitude" in page.all_text and "task-points" in {attrs.get("id") for _, attrs in page.tags}
    assert "prediction for each point to predict" in page.all_text
    assert f"{float(task.query_y[0, 0]):.3f}" in page.all_text


def test_the_command_line_writes_a_report(tmp_path, capsys):
    from metaviz.cli import main

    path = write_checkpoint(tmp_path, name="digits-cli")
    out = tmp_path / "review.html"
    assert main(["report", str(path), "--seed", "4", "--queries", "2", "--steps", "1", "--no-randomisation",
                 "--out", str(out)]) == 0
    text = Parsed(out.read_text(encoding="utf-8")).all_text
    assert "digits-cli" in text and "--seed 4" in text
    assert "wrote" in capsys.readouterr().out
    assert main(["report", str(path), "--method", "Astrology", "--out", str(tmp_path / "no.html")]) == 2
    assert "unknown method 'Astrology'" in capsys.readouterr().err
    assert not (tmp_path / "no.html").exists()


def _zip(classes: dict[str, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    rng = np.random.default_rng(1)
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, count in classes.items():
            for index in range(count):
                png = io.BytesIO()
                Image.fromarray((255 * (rng.random((28, 28)) > 0.7)).astype("uint8")).save(png, "PNG")
                archive.writestr(f"{name}/{index}.png", png.getvalue())
    return buffer.getvalue()


def test_the_command_line_re_creates_an_uploaded_task(tmp_path):
    import hashlib

    from metaviz.cli import main

    path = write_checkpoint(tmp_path, name="digits-upload")
    data = _zip({f"shape {index}": 3 for index in range(5)})
    (tmp_path / "mine.zip").write_bytes(data)
    out = tmp_path / "review.html"
    assert main(["report", str(path), "--upload", str(tmp_path / "mine.zip"), "--no-randomisation",
                 "--out", str(out)]) == 0
    text = Parsed(out.read_text(encoding="utf-8")).all_text
    assert hashlib.sha256(data).hexdigest() in text and "shape 4" in text and "--upload" in text


def test_the_sidebar_snapshot_builds_the_pages_task(tmp_path):
    """pages/_report.report_html reads a copy of the session state, outside any script run."""
    from pages._report import report_file_name, report_html
    from pages._shared import TASK_SETTINGS_KEY

    path = str(write_checkpoint(tmp_path, name="digits-sidebar"))
    checkpoint = load_checkpoint(path)
    key = checkpoint.content_hash[:12]
    state = {TASK_SETTINGS_KEY: {"shots": 2, "queries": 1, "seed": 11, "groups": (), "classes": (),
                                 "dataset": "digits"},
             f"steps_{key}": 1, "saliency_method": "Occlusion", "saliency_Occlusion_window": 6}
    text = Parsed(report_html({"path": path, "state": state, "link": {}})).all_text
    assert "--seed 11" in text and "--shots 2" in text and "--steps 1" in text and "Verdict for Occlusion" in text
    assert '"window": 6' in text
    # the link's task when no page has stored settings yet (a shared link opened on the first page)
    text = Parsed(report_html({"path": path, "state": {}, "link": {"seed": ["5"]}})).all_text
    assert "--seed 5" in text
    missing = Parsed(report_html({"path": str(tmp_path / "gone.safetensors"), "state": {}, "link": {}}))
    assert "could not be built" in missing.all_text and "gone.safetensors" in missing.all_text
    assert report_file_name("/x/my model<1>.safetensors").startswith("metaviz-report-my-model-1-")


def test_every_page_offers_the_report_in_its_sidebar(tmp_path, monkeypatch):
    from metaviz import services
    from pages._report import BUTTON_LABEL
    from tests.test_app import PAGES, start, visit

    monkeypatch.setenv(services.CHECKPOINT_DIR_VARIABLE, str(tmp_path))
    write_checkpoint(tmp_path, name="digits-pages")
    app = start()
    for page in [page for page in PAGES if "Task_embeddings" not in page]:  # it computes a map on arrival
        visit(app, page)
        buttons = [element for element in app.get("download_button") if element.proto.label == BUTTON_LABEL]
        assert len(buttons) == 1, f"{page}: no report button in the sidebar"


@pytest.mark.parametrize("choice", [{}, {"classes": ["digit 9", "digit 6", "digit 7 (rot 90)", "digit 8", "digit 6 (rot 90)"]},
                                    {"groups": ["digit 6", "digit 7", "digit 8"]}])
def test_the_re_create_command_re_creates_the_task(digits_checkpoint, choice):
    import argparse
    import shlex

    import torch

    from metaviz import report_cli
    from metaviz.report import recreate_command

    task = sample_task("digits", "test", ways=5, shots=2, queries=3, seed=13, **choice)
    command = recreate_command(digits_checkpoint, task, ReportSettings(), 3, 0.4, ("head",))
    parser = argparse.ArgumentParser()
    report_cli.add_parser(parser.add_subparsers(), "")
    args = parser.parse_args(shlex.split(command)[3:])
    again, _ = report_cli._task(digits_checkpoint, args)
    assert again.class_names == task.class_names
    assert torch.equal(again.support_x, task.support_x) and torch.equal(again.query_x, task.query_x)
    assert ("--classes" in command) == ("classes" in choice)


def test_the_sidebar_report_of_an_uploaded_task_names_its_files(tmp_path):
    from metaviz.uploads import read_zip
    from pages._report import report_html
    from pages._upload import SOURCE_KEY, UPLOAD_KEY, UPLOADED

    path = str(write_checkpoint(tmp_path, name="digits-upload-sidebar"))
    images = read_zip(_zip({f"{HOSTILE} {index}": 3 for index in range(5)}))
    state = {SOURCE_KEY: UPLOADED, UPLOAD_KEY: {"label": f"the zip file {HOSTILE}.zip", "signature": "f" * 64,
                                                "images": images}}
    page = Parsed(report_html({"path": path, "state": state, "link": {}}))
    assert "f" * 64 in page.all_text and images.content_sha256 in page.all_text
    assert f"the zip file {HOSTILE}.zip" in page.all_text and "--upload" in page.all_text
    assert not any(tag == "img" and "onerror" in attrs for tag, attrs in page.tags)
