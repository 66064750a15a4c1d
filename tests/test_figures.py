"""Figures are pure functions: build them from hand-made data and inspect fig.data."""
import math

import numpy as np
import pytest
import torch

from metaviz.adaptation import AdaptationTrace
from metaviz.figures import (
    RIGHT_COLOUR, WRONG_COLOUR, adaptation_curves, column_labels, flipped_predictions, image_mosaic,
    query_predictions, readable_class_name, task_grid, training_curves, upload_preview,
)
from metaviz.tasks import Task

SIZE = 28
STEP = SIZE + 3  # image plus the gap between images


def make_task(ways=3, shots=2, queries=4) -> Task:
    """Every image is filled with one distinct value, so the grid's cells can be told apart."""
    def images(count, offset):
        values = (torch.arange(count, dtype=torch.float32) + offset) / 100
        return values[:, None, None, None].expand(count, 1, SIZE, SIZE).clone()

    return Task(
        support_x=images(ways * shots, 1), support_y=torch.arange(ways).repeat_interleave(shots),
        query_x=images(ways * queries, 50), query_y=torch.arange(ways).repeat_interleave(queries),
        class_names=tuple(f"Alphabet_{i}/character{i:02d}" for i in range(ways)),
        source={"kind": "sampled", "dataset": "test"},
    )


def test_image_mosaic_places_images_column_by_column_with_nan_gaps():
    images = np.stack([np.full((2, 2), value, np.float32) for value in (1, 2, 3)])
    mosaic = image_mosaic(images, rows=2, columns=2, gap=1)
    assert mosaic.shape == (5, 5)
    assert mosaic[0, 0] == 1 and mosaic[3, 0] == 2 and mosaic[0, 3] == 3  # down first, then across
    assert np.isnan(mosaic[2]).all() and np.isnan(mosaic[:, 2]).all()  # the gaps
    assert np.isnan(mosaic[3:, 3:]).all()  # the empty fourth cell
    with pytest.raises(ValueError, match="do not fit"):
        image_mosaic(images, rows=1, columns=2)


def test_task_grid_shows_support_above_query_one_column_per_class():
    task = make_task(ways=3, shots=2, queries=4)
    fig = task_grid(task)
    kinds = [trace.type for trace in fig.data]
    assert kinds == ["heatmap", "scatter", "heatmap", "scatter"]
    support, support_labels, query, query_labels = fig.data
    assert np.asarray(support.z).shape == (2 * STEP - 3, 3 * STEP - 3)
    assert np.asarray(query.z).shape == (4 * STEP - 3, 3 * STEP - 3)
    support_z, query_z = np.asarray(support.z, dtype=float), np.asarray(query.z, dtype=float)
    # Class 1's second support image (index 3, value 0.04) sits in column 1, row 1.
    assert support_z[STEP : STEP + SIZE, STEP : STEP + SIZE] == pytest.approx(0.04)
    # Class 2's first query image (index 8, value 0.58) heads column 2.
    assert query_z[:SIZE, 2 * STEP : 2 * STEP + SIZE] == pytest.approx(0.58)
    assert np.isnan(support_z[SIZE:STEP]).all()  # gap rows between images
    assert len(support_labels.text) == 6 and len(query_labels.text) == 12
    assert query_labels.text[0] == "Query image 1 of class Alphabet 0 / character00"
    ticks = fig.layout.xaxis.ticktext
    assert ticks == ("Alphabet 0<br>character00", "Alphabet 1<br>character01", "Alphabet 2<br>character02")
    assert fig.layout.xaxis2.ticktext == ticks
    assert support.zmin == 0 and support.zmax == 1  # grey levels are not rescaled per task


def test_class_names_read_as_plain_words():
    assert readable_class_name("digit 8 (rot 90)") == "digit 8, turned 90°"
    assert readable_class_name("Alphabet_of_the_Magi/character01") == "Alphabet of the Magi / character01"


def test_column_labels_wrap_long_names_and_number_many_columns():
    assert column_labels(["digit 7", "digit 8 (rot 90)", "Alphabet_of_the_Magi/character01 (rot 180)"]) == [
        "digit 7", "digit 8<br>turned 90°", "Alphabet of<br>the Magi<br>character01<br>turned 180°"]
    many = column_labels([f"Tifinagh/character{i:02d}" for i in range(20)])
    assert many == [str(i) for i in range(1, 21)]
    fig = task_grid(make_task(ways=12, shots=1, queries=1))
    assert fig.layout.xaxis.ticktext == tuple(many[:12])
    assert fig.data[1].text[11] == "Support image 1 of class Alphabet 11 / character11"  # hover keeps the name


def test_task_grid_pads_classes_with_fewer_images():
    task = make_task(ways=2, shots=1, queries=3)
    keep = torch.tensor([True, True, True, False, False, True])  # class 1 keeps one query image
    task = Task(task.support_x, task.support_y, task.query_x[keep], task.query_y[keep], task.class_names)
    query_z = np.asarray(task_grid(task).data[2].z, dtype=float)
    assert query_z.shape == (3 * STEP - 3, 2 * STEP - 3)
    assert np.isnan(query_z[STEP:, STEP:]).all()
    assert len(task_grid(task).data[3].text) == 4


def test_task_grid_of_a_regression_task_plots_points_and_the_true_curve():
    x = torch.linspace(-5, 5, 15)[:, None]
    task = Task(support_x=x[:5], support_y=torch.sin(x[:5]), query_x=x[5:], query_y=torch.sin(x[5:]))
    fig = task_grid(task)
    assert [trace.type for trace in fig.data] == ["scatter", "scatter"]
    assert len(fig.data[0].x) == 5 and len(fig.data[1].x) == 10
    sampled = Task(task.support_x, task.support_y, task.query_x, task.query_y,
                   source={"amplitude": 2.0, "phase": 0.5})
    curve = task_grid(sampled).data[0]
    assert curve.mode == "lines" and len(task_grid(sampled).data) == 3
    assert curve.y == pytest.approx(2.0 * np.sin(np.asarray(curve.x) - 0.5))


def make_trace(steps=3, classification=True) -> AdaptationTrace:
    support_loss = np.linspace(1.6, 0.2, steps + 1)
    query_loss = np.linspace(1.6, 0.9, steps + 1)
    accuracy = np.linspace(0.2, 1.0, steps + 1)
    return AdaptationTrace(
        params=tuple({} for _ in range(steps + 1)), buffers={}, support_loss=support_loss, query_loss=query_loss,
        support_accuracy=accuracy if classification else None,
        query_accuracy=accuracy * 0.8 if classification else None, query_probabilities=None,
        query_outputs=np.zeros((steps + 1, 5, 5)), lr=0.4, adapt_layers=("head",),
    )


def test_adaptation_curves_show_loss_and_accuracy_per_step():
    fig = adaptation_curves(make_trace(steps=3))
    assert len(fig.data) == 4
    support_loss, support_accuracy, query_loss, query_accuracy = fig.data
    assert list(support_loss.x) == [0, 1, 2, 3]
    assert list(query_loss.y) == pytest.approx([1.6, 1.6 - 0.7 / 3, 1.6 - 1.4 / 3, 0.9])
    assert list(support_accuracy.y) == pytest.approx([20, 20 + 80 / 3, 20 + 160 / 3, 100])  # percent
    assert query_accuracy.y[-1] == pytest.approx(80)
    assert support_loss.xaxis == "x" and support_accuracy.xaxis == "x2"
    assert [trace.showlegend for trace in fig.data] == [None, False, None, False]  # one legend entry per set


def test_adaptation_curves_of_regression_show_the_error_only():
    fig = adaptation_curves(make_trace(steps=5, classification=False))
    assert len(fig.data) == 2
    assert all(trace.xaxis == "x" for trace in fig.data)
    assert len(fig.data[0].x) == 6
    assert fig.data[1].name == "Query set (new points)"


HISTORY = {"iteration": [50, 100, 150], "meta_loss": [1.5, 1.0, 0.7], "meta_accuracy": [0.4, 0.6, 0.8],
           "val_iteration": [100, 150], "val_metric": [0.55, 0.7]}


def test_training_curves_show_loss_and_training_and_validation_accuracy():
    fig = training_curves(HISTORY)
    assert [trace.name for trace in fig.data] == ["Meta-training loss", "Training tasks", "Validation tasks (held out)"]
    loss, training, validation = fig.data
    assert list(loss.x) == [50, 100, 150] and list(loss.y) == [1.5, 1.0, 0.7]
    assert list(training.y) == pytest.approx([40, 60, 80])
    assert list(validation.x) == [100, 150] and list(validation.y) == pytest.approx([55, 70])


def test_training_curves_of_regression_plot_validation_mse_unscaled():
    history = {**HISTORY, "meta_accuracy": [None, None, None], "val_metric": [0.3, 0.1]}
    fig = training_curves(history, metric="mse")
    assert [trace.name for trace in fig.data] == ["Meta-training loss", "Validation tasks (held out)"]
    assert list(fig.data[1].y) == pytest.approx([0.3, 0.1])


def test_training_curves_mark_where_a_later_phase_trained_on_something_else():
    from metaviz.services import phase_change, validation_joined_at

    last_fit = {"train_config": {"train_classes": "train+val", "shots": 1},
                "continued_from": {"iterations": 100, "shots": 1}}
    assert validation_joined_at(last_fit) == 100
    assert validation_joined_at({"train_config": {"train_classes": "train+val"}}) == 0
    assert validation_joined_at({"train_config": {"train_classes": "train"}, "continued_from": {"iterations": 100}}) \
        is None
    assert phase_change(last_fit) == (100, "then trained on the validation classes too")
    five_shot = {"train_config": {"train_classes": "train", "shots": 5}, "continued_from": {"iterations": 100, "shots": 1}}
    assert phase_change(five_shot) == (100, "then trained on 5-shot tasks")
    assert phase_change({"train_config": {"shots": 1}, "continued_from": {"iterations": 100, "shots": 1}}) is None
    assert phase_change({"train_config": {"train_classes": "train+val"}}) is None  # a whole run: no line
    from metaviz.services import training_curves_caption

    assert "From iteration 100 on, the validation classes were trained on too" in training_curves_caption(last_fit)
    assert "validation" not in training_curves_caption(five_shot)
    marked = training_curves(HISTORY, phase_change=(100, "then trained on 5-shot tasks"))
    assert [shape.x0 for shape in marked.layout.shapes] == [100, 100]  # on both charts
    assert marked.layout.annotations[-1].text == "then trained on<br>5-shot tasks"
    assert not training_curves(HISTORY).layout.shapes


@pytest.mark.parametrize("history", [{}, {"meta_loss": [1.0]}, {"iteration": [1], "val_metric": [math.nan]}])
def test_training_curves_leave_out_what_the_history_lacks(history):
    fig = training_curves(history)
    assert len(fig.data) == 0


def trace_with_probabilities(probabilities) -> AdaptationTrace:
    """A trace whose only interesting field is its per-step query probabilities [K+1, Q, ways]."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    steps = len(probabilities) - 1
    zeros = np.zeros(steps + 1)
    return AdaptationTrace(
        params=tuple({} for _ in range(steps + 1)), buffers={}, support_loss=zeros, query_loss=zeros,
        support_accuracy=zeros, query_accuracy=zeros, query_probabilities=probabilities,
        query_outputs=np.log(probabilities), lr=0.4, adapt_layers=("head",),
    )


# Two classes, three new images (true classes 0, 0, 1), two steps.
PROBABILITIES = [
    [[0.4, 0.6], [0.9, 0.1], [0.3, 0.7]],  # step 0: wrong, right, right
    [[0.5, 0.5], [0.6, 0.4], [0.45, 0.55]],
    [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]],  # step 2: right, wrong, wrong
]


def two_class_task() -> Task:
    task = make_task(ways=2, shots=1, queries=2)
    keep = torch.tensor([True, True, True, False])
    return Task(task.support_x, task.support_y, task.query_x[keep], task.query_y[keep], task.class_names)


def test_query_predictions_show_probabilities_and_answers_at_the_chosen_step():
    task, trace = two_class_task(), trace_with_probabilities(PROBABILITIES)
    fig = query_predictions(task, trace, step=0)
    images, heatmap, answers = fig.data
    assert np.asarray(images.z).shape == (3 * STEP - 3, SIZE)  # the new images, one per row
    assert np.asarray(heatmap.z) == pytest.approx(np.asarray(PROBABILITIES[0]))
    assert heatmap.texttemplate == "%{z:.0%}"  # each cell shows its percentage
    assert list(heatmap.y) == list(answers.y) == pytest.approx([13.5, 13.5 + STEP, 13.5 + 2 * STEP])  # rows align
    assert answers.text == ("✗ Alphabet 1 / character01 (wrong)", "✓ Alphabet 0 / character00 (right)",
                            "✓ Alphabet 1 / character01 (right)")
    assert answers.textfont.color == (WRONG_COLOUR, RIGHT_COLOUR, RIGHT_COLOUR)
    assert fig.layout.title.text == "Step 0 of 2 (before adapting): 2 of 3 new images recognised"
    assert fig.layout.yaxis.ticktext[2] == "really Alphabet 1 / character01"


def test_query_predictions_animate_every_step():
    task, trace = two_class_task(), trace_with_probabilities(PROBABILITIES)
    fig = query_predictions(task, trace, step=99)  # clamped to the last step
    assert fig.layout.title.text == "Step 2 of 2 (after 2 steps): 1 of 3 new images recognised"
    assert [frame.name for frame in fig.frames] == ["0", "1", "2"]
    for step, frame in enumerate(fig.frames):
        assert frame.traces == (1, 2)
        assert np.asarray(frame.data[0].z) == pytest.approx(np.asarray(PROBABILITIES[step]))
    assert fig.frames[2].data[1].text[0].startswith("✓")
    assert fig.frames[2].data[1].text[1].startswith("✗")
    play = fig.layout.updatemenus[0].buttons[0]
    assert play.method == "animate" and play.args[0] is None  # None: all frames, in order
    with pytest.raises(ValueError, match="classification"):
        query_predictions(task, make_trace(classification=False), 0)


def test_prediction_changes_sort_flips_by_kind():
    from metaviz.adaptation import prediction_changes

    trace = trace_with_probabilities(PROBABILITIES)
    assert prediction_changes(trace, [0, 0, 1]) == {"fixed": [0], "broken": [1, 2], "still_wrong": []}
    three = trace_with_probabilities([[[0.1, 0.2, 0.7]], [[0.1, 0.7, 0.2]]])
    assert prediction_changes(three, [0]) == {"fixed": [], "broken": [], "still_wrong": [0]}


def test_flipped_predictions_show_only_the_changed_images():
    task = two_class_task()
    fig = flipped_predictions(task, trace_with_probabilities(PROBABILITIES))
    images, labels = fig.data
    assert np.asarray(images.z).shape == (SIZE + 44, 3 * 3 * SIZE)  # one row of three cells
    assert labels.text[0] == ("really Alphabet 0 / char…<br>step 0: ✗ Alphabet 1 / char…"
                              "<br>step 2: ✓ Alphabet 0 / char…")
    assert "really Alphabet 0 / character00" in labels.hovertext[0]
    assert np.asarray(flipped_predictions(task, trace_with_probabilities(PROBABILITIES), per_row=2).data[0].z).shape \
        == (2 * (SIZE + 44), 2 * 3 * SIZE)  # two rows of two
    assert labels.textfont.color == (RIGHT_COLOUR, WRONG_COLOUR, WRONG_COLOUR)
    unchanged = trace_with_probabilities([PROBABILITIES[0], PROBABILITIES[0]])
    assert flipped_predictions(task, unchanged) is None


def test_upload_preview_shows_each_class_in_a_column_and_escapes_names():
    image = np.zeros((SIZE, SIZE), np.float32)
    fig = upload_preview({"<i>cat</i>": [image] * 3, "dog": [image] * 12}, max_per_class=8)
    mosaic, labels = fig.data
    assert np.asarray(mosaic.z).shape == (8 * STEP - 3, 2 * STEP - 3)
    assert len(labels.text) == 11
    assert fig.layout.xaxis.ticktext[0].startswith("&lt;i&gt;cat") and fig.layout.xaxis.ticktext[1] == "dog"
    assert "<i>" not in " ".join(fig.layout.xaxis.ticktext) and "<i>" not in " ".join(labels.text)


def test_training_tasks_text_names_the_earlier_phase_examples_where_they_differ():
    from metaviz.services import training_tasks_text

    five_shot = {"train_config": {"shots": 5}, "continued_from": {"iterations": 36000, "shots": 1}}
    assert training_tasks_text(5, 5, 5, five_shot) == (
        "5 classes, each with 5 labelled examples and 5 query images; its first 36,000 iterations had 1 "
        "labelled example per class")
    same = {"train_config": {"shots": 1}, "continued_from": {"iterations": 36000, "shots": 1}}
    assert training_tasks_text(5, 1, 5, same) == "5 classes, each with 1 labelled example and 5 query images"
    assert training_tasks_text(5, 1, 5) == training_tasks_text(5, 1, 5, {})


def test_training_progress_text_flags_unfinished_runs():
    from metaviz.services import training_progress_text

    assert "unfinished: 1,200 of 30,000" in training_progress_text(
        {"iterations_done": 1200, "train_config": {"iterations": 30000}})
    assert training_progress_text({"iterations_done": 600, "train_config": {"iterations": 600}}) == \
        "complete (600 iterations)"
    assert training_progress_text({"iterations_done": 6000, "train_config": {"iterations": 6000},
                                   "continued_from": {"iterations": 30000}}) == \
        "complete (36,000 iterations: 30,000, then 6,000 more continuing from them)"
    decaying = {"iterations": 6000, "meta_lr_decay": "linear"}
    assert training_progress_text({"iterations_done": 6000, "train_config": decaying,
                                   "continued_from": {"iterations": 30000}}) == \
        "complete (36,000 iterations: 30,000, then 6,000 more continuing from them; over the last 6,000 " \
        "the meta-learning rate fell linearly to 0)"
    last_fit = {"iterations": 4000, "meta_lr_decay": "linear", "train_classes": "train+val"}
    assert training_progress_text({"iterations_done": 4000, "train_config": last_fit,
                                   "continued_from": {"iterations": 36000}}) == \
        "complete (40,000 iterations: 36,000, then 4,000 more continuing from them on the training and " \
        "validation classes together; over the last 4,000 the meta-learning rate fell linearly to 0)"
    assert training_progress_text({"iterations_done": 2000, "train_config": {"iterations": 2000, "shots": 5},
                                   "continued_from": {"iterations": 36000, "shots": 1}}) == \
        "complete (38,000 iterations: 36,000, then 2,000 more continuing from them on 5-shot tasks)"
    assert training_progress_text({"iterations_done": 6000, "train_config": decaying}) == \
        "complete (6,000 iterations; the meta-learning rate fell linearly to 0)"
    assert training_progress_text({}) == "not recorded"
