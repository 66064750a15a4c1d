"""Layers page figures: pure functions of update statistics (metaviz.layer_figures)."""
import numpy as np

from metaviz.layer_figures import (
    ablation_figure, ablation_table, cka_bars, unit_heatmap, update_bars, update_boxes, update_heatmap,
)
from metaviz.updates import AblationRow, LayerStatistics, UpdateNorms

LAYERS = ("conv1", "head")


def norms() -> UpdateNorms:
    # conv1 has 3 filters, the head 2 classes; two steps after step 0.
    units = {"conv1": np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], float),
             "head": np.array([[0, 0], [3, 4], [6, 8]], float)}
    initial = {"conv1": np.array([10, 10, 10], float), "head": np.array([5, 5], float)}
    per_step = np.array([[0, 0], [1, 5], [2, 10]], float)
    sizes = np.array([10 * np.sqrt(3), 5 * np.sqrt(2)])  # one tensor per layer here
    return UpdateNorms(layers=LAYERS, tensors=("blocks.0.conv.weight", "head.weight"), tensor_absolute=per_step,
                       tensor_initial=sizes, layer_absolute=per_step, layer_initial=sizes, unit_absolute=units,
                       unit_initial=initial)


def test_update_heatmap_is_layers_by_steps_in_percent():
    trace = update_heatmap(norms()).data[0]
    assert list(trace.y) == list(LAYERS) and list(trace.x) == [0, 1, 2]
    np.testing.assert_allclose(trace.z[1], 100 * np.array([0, 5, 10]) / (5 * np.sqrt(2)))


def test_update_bars_show_the_chosen_step():
    absolute, relative = update_bars(norms(), step=1).data
    assert list(absolute.x) == [1, 5] and list(absolute.y) == ["conv1 filters", "head weights"]
    np.testing.assert_allclose(relative.x, [100 / (10 * np.sqrt(3)), 100 * 5 / (5 * np.sqrt(2))])


def test_unit_heatmap_pads_layers_with_fewer_units():
    grid = np.array(unit_heatmap(norms()).data[0].z, dtype=float)
    assert grid.shape == (2, 3)
    np.testing.assert_allclose(grid[0], [20, 0, 0])
    np.testing.assert_allclose(grid[1, :2], [120, 160])
    assert np.isnan(grid[1, 2])


def statistics() -> LayerStatistics:
    return LayerStatistics(layers=LAYERS, absolute=np.ones((4, 2)), relative=np.array([[0.01, 0.5]] * 4),
                           cka=np.array([[0.98, 0.3], [0.96, 0.4], [0.97, 0.2], [np.nan, 0.3]]),
                           cosine=np.array([0.2, 0.05]), query_metric=np.ones(4), metric="accuracy", tasks=4,
                           seed=0, steps=3, lr=0.4, queries=75)


def test_cka_bars_average_over_tasks_ignoring_missing_values():
    bars = cka_bars(statistics()).data[0]
    np.testing.assert_allclose(bars.y, [0.97, 0.3])
    assert bars.error_y.array[0] > 0


def test_update_boxes_one_box_per_layer_and_the_cosine_bars():
    boxes = [trace for trace in update_boxes(statistics()).data if trace.type == "box"]
    assert [box.name for box in boxes] == list(LAYERS)
    np.testing.assert_allclose(boxes[1].y, [50] * 4)
    cosine = [trace for trace in update_boxes(statistics()).data if trace.type == "bar"][0]
    np.testing.assert_allclose(cosine.y, [0.2, 0.05])


def test_ablation_figure_and_table():
    rows = [AblationRow("all layers", LAYERS, 0.9, 0.01, np.ones(3)),
            AblationRow("head only (body frozen)", ("head",), 0.885, 0.012, np.ones(3))]
    bars = ablation_figure(rows, chance=0.2).data[0]
    np.testing.assert_allclose(bars.x, [90, 88.5])
    table = ablation_table(rows)
    assert table[1] == {"setting": "head only (body frozen)", "layers that adapt": "head",
                        "accuracy (95% CI)": "88.5% ± 1.2", "vs all layers": "-1.5 points"}
    assert ablation_table(rows, metric="mse")[0]["MSE (95% CI)"] == "0.9 ± 0.01"
