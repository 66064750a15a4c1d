"""The saliency figures: pure functions from arrays to plotly figures."""
import numpy as np
import pytest

from metaviz.explain_figures import (
    faithfulness_figure, normalise_map, overlay, randomisation_figure, saliency_grid,
)


def test_normalise_map_follows_captum_sign_and_outliers():
    values = np.zeros((2, 1, 28, 28))
    values[0, 0, 0, 0], values[0, 0, 0, 1], values[0, 0, 1, :10] = 100.0, -1.0, 1.0
    shown = normalise_map(values, "absolute_value", outlier_perc=1)
    assert shown.shape == (2, 28, 28) and shown.min() >= 0 and shown.max() == 1
    assert shown[0, 1, 0] > 0.0  # the one extreme pixel is clipped, the rest stays visible
    assert np.all(shown[1] == 0)  # a flat map stays flat, without dividing by zero
    assert normalise_map(values, "positive")[0, 0, 1] == 0  # evidence against is not shown
    assert normalise_map(values, "all", outlier_perc=0)[0, 0, 1] == pytest.approx(-0.01)
    against = normalise_map(values, "negative", outlier_perc=0)
    assert against[0, 0, 1] == -1 and against.max() == 0  # only evidence against, scaled by itself
    with pytest.raises(ValueError, match="unknown sign"):
        normalise_map(values, "against")


def test_overlay_colours_for_and_against():
    picture = overlay(np.zeros((2, 2)), np.array([[1.0, -1.0], [0.0, 0.5]]))
    assert picture.dtype == np.uint8 and picture.shape == (2, 2, 3)
    assert tuple(picture[0, 0]) == (214, 39, 40) and tuple(picture[0, 1]) == (31, 119, 180)
    assert tuple(picture[1, 0]) == (255, 255, 255)  # no attribution: the paper


def test_saliency_grid_shows_three_rows_per_image():
    rng = np.random.default_rng(0)
    count = 12
    images, before, after = rng.random((count, 1, 28, 28)), rng.normal(size=(count, 1, 28, 28)), \
        rng.normal(size=(count, 1, 28, 28))
    names = ("digit 3", "digit 7 (rot 90)", "<b>x")
    predicted = np.arange(count) % 3
    fig = saliency_grid(images, before, after, 2, names, predicted, predicted[::-1], np.full(count, 0.5),
                        np.full(count, 0.91), sign="all", max_columns=5)
    assert len(fig.data) == 3 * count
    assert {trace.z.shape for trace in fig.data} == {(28, 28, 3)}
    layout = fig.layout.to_plotly_json()
    titles = [axis.get("title", {}).get("text") for name, axis in layout.items() if name.startswith("xaxis")]
    assert "digit 7<br>turned 90°<br>91%" in titles and "digit 3<br>50%" in titles
    assert "&lt;b&gt;x<br>50%" in titles  # an uploader's folder name is text, not markup
    marked = saliency_grid(images, before, after, 2, names, predicted, predicted[::-1], np.full(count, 0.5),
                           np.full(count, 0.91), true_classes=predicted)
    marks = [axis.get("title", {}).get("text") or "" for name, axis in marked.layout.to_plotly_json().items()
             if name.startswith("xaxis")]
    assert marks.count("digit 3<br>✓ 50%") == 4  # step 0 answers every image right
    after_marks = [text for text in marks if text.endswith("91%")]
    assert sum("✗" in text for text in after_marks) == sum(predicted != predicted[::-1])  # the reversed answers
    rows = [axis.get("title", {}).get("text") or "" for name, axis in layout.items() if name.startswith("yaxis")]
    assert sum("After step 2" in row for row in rows) == 3  # one per row block of 5 images


@pytest.mark.parametrize("count", [5, 10, 25, 50])
def test_saliency_grid_leaves_room_for_the_labels_under_each_row(count):
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(count, 1, 28, 28))
    predicted = np.zeros(count, dtype=int)
    fig = saliency_grid(rng.random((count, 1, 28, 28)), maps, maps, 1, ("digit 7 (rot 90)",), predicted, predicted,
                        np.full(count, 0.5), np.full(count, 0.5))
    layout = fig.layout.to_plotly_json()
    plot_height = layout["height"] - layout["margin"]["t"] - layout["margin"]["b"]
    domains = sorted({tuple(axis["domain"]) for name, axis in layout.items() if name.startswith("yaxis")},
                     reverse=True)
    gaps = [(upper[0] - lower[1]) * plot_height for upper, lower in zip(domains, domains[1:])]
    assert min(gaps) >= 40  # pixels: three lines of 10-point text under each image
    assert min(top - bottom for bottom, top in domains) * plot_height >= 100  # and the images stay large


def test_saliency_grid_wraps_long_class_names_and_makes_room_for_them():
    # Ten labels share a row: "Syriac (Serto) / character15" on one line ran into its neighbours.
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(10, 1, 28, 28))
    names = ("Old_Church_Slavonic_(Cyrillic)/character15", "Syriac_(Serto)/character02")
    predicted = np.arange(10) % 2
    fig = saliency_grid(rng.random((10, 1, 28, 28)), maps, maps, 1, names, predicted, predicted,
                        np.full(10, 0.25), np.full(10, 1.0), true_classes=np.zeros(10, dtype=int))
    layout = fig.layout.to_plotly_json()
    titles = [axis.get("title", {}).get("text") or "" for name, axis in layout.items() if name.startswith("xaxis")]
    assert "Syriac<br>(Serto)<br>character02<br>✗ 25%" in titles
    longest = max(text.count("<br>") + 1 for text in titles)
    assert longest == 5 and max(len(line) for text in titles for line in text.split("<br>")) <= 13
    plot_height = layout["height"] - layout["margin"]["t"] - layout["margin"]["b"]
    domains = sorted({tuple(axis["domain"]) for name, axis in layout.items() if name.startswith("yaxis")},
                     reverse=True)
    gaps = [(upper[0] - lower[1]) * plot_height for upper, lower in zip(domains, domains[1:])]
    assert min(gaps) >= 14 * longest  # pixels: every line of the longest label fits under its image


def test_trust_figures():
    fig = randomisation_figure(("head", "conv4"), np.array([0.4, 0.1]), np.array([0.8, 0.6]), np.array([0.5, 0.2]))
    assert [trace.y[0] for trace in fig.data] == [1.0, 1.0, 1.0]  # the trained model's map equals itself
    assert list(fig.data[0].x) == ["trained", "+ head", "+ conv4"]
    fractions = np.linspace(0, 1, 5)
    falling, flat = np.tile(1 - fractions, (3, 1)), np.full((3, 5), 0.5)
    fig = faithfulness_figure(fractions, falling, fractions, flat, flat)
    assert len(fig.data) == 4
    assert fig.data[0].name == "Deletion, map order (area 0.50)"
    assert fig.data[1].name == "Deletion, random order (area 0.50)"
