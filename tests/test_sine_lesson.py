"""The sine-wave lesson: the joint pre-training baseline, the lesson's computations and
figures, and its page through AppTest."""
from __future__ import annotations

import numpy as np
import pytest

from metaviz import services
from metaviz.checkpoints import load_checkpoint
from metaviz.data import sinusoid
from metaviz.sine_figures import error_per_step, sine_lesson_figure
from metaviz.sine_lesson import lesson_checkpoints, lesson_text, sine_adaptation
from metaviz.tasks import sample_task
from tests.test_app import all_text, start, visit, write_checkpoint

PAGE = "pages/7_Sine_waves.py"


def test_joint_pre_training_fits_all_waves_without_an_inner_loop(tmp_path):
    from metaviz.training import TrainConfig, train

    config = TrainConfig(algorithm="joint", dataset="sinusoid", shots=10, queries=10, inner_lr=0.01, test_steps=2,
                         meta_batch=5, iterations=300, hidden=40, val_every=10_000, val_tasks=5, save_every=10_000)
    checkpoint = train(config, tmp_path / "run", out=tmp_path / "joint.safetensors", show_progress=False)
    assert checkpoint.algorithm == "joint" and checkpoint.is_regression
    losses = checkpoint.history["meta_loss"]
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), "joint training did not lower the loss over all waves"
    assert services.ALGORITHM_NAMES["joint"] == "Joint pre-training"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    directory = tmp_path_factory.mktemp("checkpoints")
    return (load_checkpoint(write_checkpoint(directory, name="sine-meta", dataset="sinusoid")),
            load_checkpoint(write_checkpoint(directory, name="sine-joint", dataset="sinusoid", algorithm="joint")))


def test_each_step_draws_the_whole_curve_and_measures_it(models):
    task = sample_task("sinusoid", shots=5, queries=10, seed=4)
    lesson = sine_adaptation(models[0], task, steps=4, lr=0.01)
    assert lesson.predictions.shape == (5, len(lesson.x)) and lesson.steps == 4
    truth = sinusoid(lesson.x, task.source["amplitude"], task.source["phase"])
    assert np.allclose(lesson.truth, truth)
    assert np.isclose(lesson.curve_error[2], np.mean((lesson.predictions[2] - truth) ** 2))
    assert np.all(np.diff(lesson.support_loss) <= 1e-6), "small steps on the given points must not raise their loss"
    assert not np.allclose(lesson.predictions[0], lesson.predictions[-1]), "the curve did not move"
    with pytest.raises(ValueError, match="not a sampled sine wave"):
        sine_adaptation(models[0], type(task)(task.support_x, task.support_y, task.query_x, task.query_y), 1, 0.01)


def test_the_figures_animate_both_models_together(models):
    task = sample_task("sinusoid", shots=5, queries=10, seed=4)
    meta, pretrained = (sine_adaptation(model, task, steps=3, lr=0.02) for model in models)
    figure = sine_lesson_figure(task, meta, pretrained)
    assert len(figure.frames) == 4 and len(figure.layout.sliders[0].steps) == 4
    assert figure.layout.sliders[0].active == 3
    for step, frame in enumerate(figure.frames):
        assert list(frame.traces) == [2, 6]
        assert np.allclose(frame.data[0].y, meta.predictions[step])
        assert np.allclose(frame.data[1].y, pretrained.predictions[step])
    given = [trace for trace in figure.data if trace.mode == "markers"]
    assert len(given) == 2 and np.allclose(given[0].x, task.support_x[:, 0].numpy())
    errors = error_per_step(meta, pretrained)
    assert [list(trace.y) for trace in errors.data] == [list(meta.curve_error), list(pretrained.curve_error)]
    words = lesson_text(meta, pretrained)
    assert f"{meta.curve_error[-1]:.2f}" in words and f"{pretrained.curve_error[-1]:.2f}" in words


def test_the_lesson_picks_a_meta_learned_and_a_pre_trained_model(tmp_path):
    write_checkpoint(tmp_path, name="a-sine-joint", dataset="sinusoid", algorithm="joint")
    write_checkpoint(tmp_path, name="b-sine", dataset="sinusoid")
    write_checkpoint(tmp_path, name="c-sine", dataset="sinusoid")
    write_checkpoint(tmp_path, name="digits")
    files = services.find_checkpoints(tmp_path)
    meta, pretrained = lesson_checkpoints(files)
    assert (meta.name, pretrained.name) == ("b-sine", "a-sine-joint")
    assert lesson_checkpoints(files, str(tmp_path / "c-sine.safetensors"))[0].name == "c-sine"
    assert lesson_checkpoints(services.find_checkpoints(tmp_path / "none")) == (None, None)


@pytest.fixture
def lesson_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(services.CHECKPOINT_DIR_VARIABLE, str(tmp_path))
    write_checkpoint(tmp_path, name="digits-test")
    write_checkpoint(tmp_path, name="sine-meta", dataset="sinusoid")
    return tmp_path


def test_the_lesson_page_compares_the_two_starts(lesson_dir):
    write_checkpoint(lesson_dir, name="sine-joint", dataset="sinusoid", algorithm="joint")
    app = visit(start(), PAGE)
    text = all_text(app)
    assert "Learning to learn, on sine waves" in text and "Wave number 0" in text
    assert "Meta-learned start: error after 3 steps" in text and "Pre-trained start: error after 3 steps" in text
    assert len(app.get("plotly_chart")) == 2  # the curves, the error per step
    app.number_input(key="sine_seed_input").set_value(7).run()
    assert "Wave number 7" in all_text(app)
    # the map of many waves, on request, coloured by height and by shift
    assert "Draw the map" in all_text(app)
    app.number_input(key="sine_map_tasks_input").set_value(20).run()
    app.button(key="sine_map").click().run()
    assert not app.exception
    assert len(app.get("plotly_chart")) == 4 and "Neighbours agree on the height" in all_text(app)


def test_without_a_pre_trained_model_the_lesson_says_how_to_train_one(lesson_dir):
    app = visit(start(), PAGE)
    assert "needs a pre-trained sine-wave model" in all_text(app)
    assert "--algorithm joint" in all_text(app)
