"""metaviz.embed and metaviz.embed_figures: vectorised updates against the plain inner loop,
repeatable projections, quality thresholds on data with known structure, aligned metadata."""
import base64
import io
import json
import os
import sys
import threading

import numpy as np
import pytest
import torch

from metaviz import embed, thumbnails
from metaviz.adaptation import adapt
from metaviz.checkpoints import Checkpoint
from metaviz.data import SinusoidRange
from metaviz.embed_figures import colour_fields, embedding_scatter, hover_texts, map_data, search_matches
from metaviz.models import ConvNetConfig, MLPConfig, build_model, model_config_to_dict
from metaviz.tasks import sample_task


def make_checkpoint(dataset: str = "digits", adapt_layers=None) -> Checkpoint:
    torch.manual_seed(0)
    regression = dataset == "sinusoid"
    config = MLPConfig() if regression else ConvNetConfig(out_features=5, hidden=16)
    model = build_model(config)
    return Checkpoint(name="test", model_config=model_config_to_dict(config),
                      parameters={key: value.detach() for key, value in model.named_parameters()},
                      algorithm="maml", dataset=dataset, ways=0 if regression else 5, shots=5 if regression else 1,
                      queries=10 if regression else 3, inner_lr=0.01 if regression else 0.4, inner_steps=2,
                      adapt_layers=adapt_layers)


def blobs(per_cluster: int = 40, clusters: int = 4, width: int = 60, seed: int = 0):
    """Well separated Gaussian clusters in `width` dimensions, and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=8.0, size=(clusters, width))
    labels = np.repeat(np.arange(clusters), per_cluster)
    return (centres[labels] + rng.normal(size=(len(labels), width))).astype(np.float32), labels


def updates_from(vectors: np.ndarray, **metadata) -> embed.TaskUpdates:
    metadata = {"task": np.arange(len(vectors)), "seed": np.arange(len(vectors)), **metadata}
    return embed.TaskUpdates(vectors, metadata, None, vectors.shape[1])


# --- updates -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["digits", "sinusoid"])
@pytest.mark.parametrize("vectorise", [True, False])
def test_updates_match_adapt(dataset, vectorise):
    checkpoint = make_checkpoint(dataset)
    layer = "head"  # narrow enough to stay unsketched, so the numbers compare one to one
    updates = embed.collect_updates(checkpoint, n_tasks=20, seed=4, layer=layer, batch_size=6, vectorise=vectorise)
    assert updates.vectors.shape == (20, updates.width) and updates.width <= embed.SKETCH_WIDTH
    for row in (0, 7, 19):  # rows in different batches, the last one short
        task = sample_task(dataset, "test", ways=checkpoint.ways, shots=checkpoint.shots,
                           queries=checkpoint.queries, seed=4 + row)
        trace = adapt(checkpoint, task)
        expected = torch.cat([(trace.params[-1][name] - checkpoint.parameters[name]).flatten()
                              for name in ("head.weight", "head.bias")]).numpy()
        np.testing.assert_allclose(updates.vectors[row], expected, atol=2e-5)
        meta = updates.metadata
        assert meta["seed"][row] == 4 + row
        assert meta["support_loss_after"][row] == pytest.approx(trace.support_loss[-1], abs=1e-4)
        assert meta["support_loss_before"][row] == pytest.approx(trace.support_loss[0], abs=1e-4)
        assert meta["query_loss_after"][row] == pytest.approx(trace.query_loss[-1], abs=1e-4)
        if dataset == "digits":
            assert meta["classes"][row] == task.class_names
            assert meta["query_accuracy_after"][row] == pytest.approx(trace.query_accuracy[-1])
            assert set(meta["alphabets"][row]) == {name.split(" (")[0] for name in task.class_names}
        else:
            assert meta["amplitude"][row] == task.source["amplitude"] and meta["phase"][row] == task.source["phase"]
    assert updates.metadata["support_loss_after"].mean() < updates.metadata["support_loss_before"].mean()


@pytest.mark.parametrize("collide", [False, True])
def test_scores_before_score_each_distinct_image_once_and_survive_a_fingerprint_collision(collide, monkeypatch):
    checkpoint = make_checkpoint("digits")
    model = checkpoint.build_model()
    tasks = embed.sample_tasks("digits", "test", 5, 1, 3, 30)  # 8 test classes: tasks share images
    if collide:  # every image the same fingerprint: the check must notice and score them all
        monkeypatch.setattr(embed, "_fingerprints", lambda sets: np.zeros(sum(len(s) for s in sets), np.int64))
    scored = []
    outputs = embed.scores_before(model, checkpoint, tasks,
                                  lambda score, chunks: [score(chunk) for chunk in chunks if not scored.append(len(chunk))])
    images = torch.stack([torch.cat([task.support_x, task.query_x]) for task in tasks])
    expected = model.functional_forward(checkpoint.parameters, {}, images.flatten(0, 1)).reshape(*images.shape[:2], -1)
    torch.testing.assert_close(outputs, expected, atol=1e-5, rtol=0)
    every, distinct = images.shape[0] * images.shape[1], len(torch.unique(images.flatten(0, 1).flatten(1), dim=0))
    assert distinct < every  # there is something to share
    assert sum(scored) == (every if collide else distinct)


def test_wide_updates_are_sketched_keeping_distances():
    checkpoint = make_checkpoint("digits")
    updates = embed.collect_updates(checkpoint, n_tasks=20, batch_size=8)
    assert updates.width > embed.SKETCH_WIDTH and updates.vectors.shape == (20, embed.SKETCH_WIDTH)
    rng = np.random.default_rng(0)
    wide = rng.normal(size=(30, 50_000)).astype(np.float32)
    sketch = embed._sketcher(wide.shape[1], random_state=0)
    narrow = sketch.transform(wide)
    pairs = np.triu_indices(30, 1)
    distances = lambda points: np.linalg.norm(points[:, None] - points[None], axis=-1)[pairs]  # noqa: E731
    ratio = distances(narrow) / distances(wide)
    assert np.all(np.abs(ratio - 1) < 0.15), (ratio.min(), ratio.max())


def test_threads_change_nothing_but_the_time():
    checkpoint = make_checkpoint("digits")
    reported = []
    one, three = (embed.collect_updates(checkpoint, n_tasks=20, batch_size=6, workers=workers,
                                        progress=lambda fraction, text: reported.append(
                                            (fraction, threading.current_thread())))
                  for workers in (1, 3))
    np.testing.assert_array_equal(one.vectors, three.vectors)
    for name, column in one.metadata.items():
        np.testing.assert_array_equal(column, three.metadata[name])
    here = threading.current_thread()  # Streamlit's elements only work from the script's thread
    assert reported == [(fraction, here) for fraction in [0.0, 0.0, 6 / 20, 12 / 20, 18 / 20, 1.0] * 2]


def test_while_adapting_is_called_once_after_the_tasks_are_drawn_and_scored():
    events = []
    embed.collect_updates(make_checkpoint("digits"), n_tasks=20, batch_size=10,
                          progress=lambda fraction, text: events.append(text.split()[0]),
                          while_adapting=lambda: events.append("while_adapting"))
    assert events == ["Drawing", "Scoring", "while_adapting", "Adapted", "Adapted"]


def test_one_layer_and_errors():
    checkpoint = make_checkpoint("digits", adapt_layers=("conv4", "head"))
    updates = embed.collect_updates(checkpoint, n_tasks=20, layer="conv4", batch_size=20)
    assert updates.layer == "conv4" and updates.width == sum(
        checkpoint.parameters[name].numel() for name in checkpoint.parameters if name.startswith("blocks.3."))
    with pytest.raises(ValueError, match="does not adapt"):
        embed.collect_updates(checkpoint, n_tasks=20, layer="conv1")
    with pytest.raises(ValueError, match="between"):
        embed.collect_updates(checkpoint, n_tasks=5)
    with pytest.raises(ValueError, match="no group"):  # a digit has 2 test classes, a task needs 5
        embed.sample_tasks("digits", "test", 5, 1, 3, 20, one_group=True)


def test_one_alphabet_tasks(omniglot_dir):
    tasks = embed.sample_tasks("omniglot", "test", 5, 1, 2, 40, seed=10, one_group=True)
    metadata = embed.task_metadata(tasks)
    alphabets = embed.group_choices("omniglot", "test", 5)
    assert len(alphabets) == 20 and list(metadata["alphabet"][:20]) == alphabets  # taking turns
    for row in (0, 21, 39):
        assert metadata["alphabets"][row] == (metadata["alphabet"][row],)
        again = sample_task("omniglot", "test", 5, 1, 2, seed=10 + row, groups=metadata["groups"][row])
        assert again.class_names == metadata["classes"][row]  # the page re-creates it from seed and groups


# --- projection --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(embed.METHODS))
def test_same_random_state_same_coordinates(method):
    points, _ = blobs()
    first = embed.embed_updates(updates_from(points), method, random_state=3)
    again = embed.embed_updates(updates_from(points), method, random_state=3)
    np.testing.assert_array_equal(first.coordinates, again.coordinates)
    assert first.coordinates.shape == (len(points), 2) and first.random_state == 3
    if method != "pca":  # PCA is deterministic up to sign; the others must depend on the state
        other = embed.embed_updates(updates_from(points), method, random_state=4)
        assert not np.allclose(first.coordinates, other.coordinates)


@pytest.mark.parametrize("method", list(embed.METHODS))
def test_clusters_stay_clusters(method):
    points, labels = blobs()
    embedding = embed.embed_updates(updates_from(points, alphabet=labels.astype(str).astype(object)), method)
    assert embedding.trustworthiness > 0.9
    purity = embed.structure_measures(embedding, shuffles=50)["alphabet"]
    assert purity.observed > 0.95 and purity.chance < 0.35


def test_a_map_waits_while_another_thread_imports_scikit_learn():
    # UMAP's warm-up imports umap (most of scikit-learn) in a thread of its own; a map made
    # meanwhile imports its parts after it, not beside it (metaviz.import_lock).
    from metaviz.import_lock import SCIKIT_LEARN_IMPORTS

    points, _ = blobs()
    embed.embed_updates(updates_from(points), "pca")  # imports done: the map alone takes milliseconds
    held, release, maps = threading.Event(), threading.Event(), []

    def importing():
        with SCIKIT_LEARN_IMPORTS:
            held.set()
            release.wait(30)

    threading.Thread(target=importing).start()
    held.wait(30)
    mapping = threading.Thread(target=lambda: maps.append(embed.embed_updates(updates_from(points), "pca")))
    mapping.start()
    mapping.join(1.0)
    waited = mapping.is_alive() and not maps
    release.set()
    mapping.join(60)
    assert waited and maps[0].coordinates.shape == (len(points), 2)


def _kept_on_disk(kernel) -> bool:
    index = getattr(getattr(kernel._cache, "_cache_file", None), "_index_path", None)  # numba's disk cache
    return index is not None and os.path.isfile(index)


def test_every_umap_kernel_compiled_in_this_process_is_kept_on_disk_for_the_next():
    # import_umap has numba cache umap's kernels, the two umap.utils compiles as it is imported
    # included, so only the first process on a machine compiles them.
    from numba.core.registry import CPUDispatcher

    umap = embed.import_umap()
    modules = {name: module for name, module in list(sys.modules.items()) if name.split(".")[0] == "umap"}
    kernels = {f"{name}.{attribute}": value for name, module in modules.items()
               for attribute, value in vars(module).items() if isinstance(value, CPUDispatcher)}
    compiled = {name: kernel for name, kernel in kernels.items() if kernel.signatures}
    assert {"umap.utils.tau_rand_int", "umap.utils.tau_rand"} <= compiled.keys()
    not_on_disk = [name for name, kernel in compiled.items() if not _kept_on_disk(kernel)]
    assert not not_on_disk


def test_a_random_picture_is_not_trustworthy():
    points, _ = blobs()
    scrambled = np.random.default_rng(1).normal(size=(len(points), 2))
    from sklearn.manifold import trustworthiness

    assert trustworthiness(points, scrambled, n_neighbors=10) < 0.7


def test_neighbour_measures_against_chance():
    rng = np.random.default_rng(0)
    points = rng.uniform(size=(200, 2))
    assert embed.neighbour_r2(points, points[:, 0]) > 0.95  # the picture orders it
    assert embed.neighbour_r2(points, rng.uniform(size=200)) < 0.1  # it ignores it
    random_labels = rng.integers(0, 4, 200)
    purity = embed.neighbour_purity(points, random_labels, shuffles=100)
    assert abs(purity.observed - purity.chance) < 4 * purity.chance_sd + 0.02


def test_metadata_stays_aligned_after_filtering():
    points, labels = blobs()
    names = np.array([f"alphabet {label}" for label in labels], dtype=object)
    embedding = embed.embed_updates(updates_from(points, alphabet=names, update_norm=np.linalg.norm(points, axis=1)),
                                    "pca")
    mask = (labels == 2) | (np.arange(len(labels)) % 7 == 0)
    kept = embedding.subset(mask)
    rows = np.flatnonzero(mask)
    assert len(kept) == len(rows)
    np.testing.assert_array_equal(kept.coordinates, embedding.coordinates[rows])
    for name, column in kept.metadata.items():
        np.testing.assert_array_equal(column, embedding.metadata[name][rows])
    np.testing.assert_allclose(kept.metadata["update_norm"], np.linalg.norm(points[rows], axis=1))
    reordered = embedding.subset(rows[::-1])
    assert list(reordered.metadata["task"]) == list(rows[::-1])


# --- figure ------------------------------------------------------------------------------------


def small_embedding() -> embed.Embedding:
    checkpoint = make_checkpoint("digits")
    return embed.embed_updates(embed.collect_updates(checkpoint, n_tasks=20, seed=2), "pca")


def test_scatter_points_name_their_rows():
    embedding = small_embedding()
    fields = colour_fields(embedding)
    assert "alphabet" not in fields  # digit tasks mix digits: one category colours nothing
    assert "query_accuracy_after" in fields and "update_norm" in fields
    fig = embedding_scatter(embedding, "query_accuracy_after", current=5)
    points, ring = fig.data
    np.testing.assert_array_equal(np.asarray(points.customdata)[:, 0], np.arange(20))
    # Plain lists, not a typed array: a selected point must come back to Streamlit as [row].
    assert json.loads(fig.to_json())["data"][0]["customdata"] == [[row] for row in range(20)]
    np.testing.assert_allclose(points.x, embedding.coordinates[:, 0])
    assert np.asarray(ring.customdata).tolist() == [[5]] and ring.x[0] == embedding.coordinates[5, 0]
    assert f"Task number {embedding.metadata['seed'][5]}" in ring.text[0]


def test_scatter_by_category_keeps_rows_and_fades_non_matches():
    embedding = small_embedding()
    alphabets = np.array(["Latin", "Greek", "Latin", "Bengali"] * 5, dtype=object)
    embedding = embedding.subset(np.arange(20))
    embedding.metadata["alphabet"] = alphabets
    matches = np.arange(20) % 2 == 0
    fig = embedding_scatter(embedding, "alphabet", matches=matches)
    assert [trace.name for trace in fig.data] == ["Latin", "Bengali", "Greek"]  # most frequent first
    for trace in fig.data:
        rows = np.asarray(trace.customdata)[:, 0]
        assert set(alphabets[rows]) == {trace.name}
        np.testing.assert_allclose(trace.x, embedding.coordinates[rows, 0])
        assert list(np.asarray(trace.marker.opacity) > 0.5) == list(matches[rows])
    with pytest.raises(ValueError):
        embedding_scatter(embedding, "no such column")


def test_search_and_hover():
    embedding = small_embedding()
    texts = hover_texts(embedding)
    row = 3
    assert f"Task number {embedding.metadata['seed'][row]}" in texts[row]
    embedding.metadata["alphabets"][row] = ("Alphabet_of_the_Magi",)
    matches = search_matches(embedding, "  alphabet OF the ")  # spaces find underscores, any case
    assert matches.tolist() == [index == row for index in range(len(embedding))]
    wanted = embedding.metadata["classes"][row][0]  # "digit 7 (rot 90)" or the like
    expected = [any(wanted.lower() in name.lower() for name in classes) for classes in embedding.metadata["classes"]]
    assert search_matches(embedding, wanted.upper()).tolist() == expected and 0 < sum(expected) < len(embedding)
    assert search_matches(embedding, "") is None
    assert not search_matches(embedding, "no such alphabet").any()


# --- hover cards -------------------------------------------------------------------------------


def _picture(uri: str, kind: str) -> bytes:
    prefix = f"data:image/{kind};base64,"
    assert uri.startswith(prefix)
    return base64.b64decode(uri[len(prefix):])


def test_thumbnail_shows_each_class_first_example_in_label_order():
    from PIL import Image

    task = sample_task("digits", "test", ways=5, shots=3, queries=2, seed=11)
    with Image.open(io.BytesIO(_picture(thumbnails.task_thumbnail(task), "png"))) as image:
        pixels = np.asarray(image, dtype=np.float32) / 255
    size, gap = 28, thumbnails.STRIP_GAP
    assert pixels.shape == (size, 5 * size + 4 * gap)
    images, labels = task.support_x[:, 0].numpy(), task.support_y.numpy()
    for label in range(5):
        first = images[np.flatnonzero(labels == label)[0]]
        shown = pixels[:, label * (size + gap) : label * (size + gap) + size]
        # ink dark on paper, 16 grey levels: within half a level of the image the model saw
        np.testing.assert_allclose(shown, 1 - first, atol=0.5 / (thumbnails.GREY_LEVELS - 1) + 1e-3)
    assert np.allclose(pixels[:, size : size + gap], 1 - thumbnails.GAP_GREY, atol=0.04)


def test_wave_sketch_draws_the_wave_and_its_given_points():
    from xml.etree import ElementTree

    task = sample_task("sinusoid", "test", shots=7, seed=3)
    svg = ElementTree.fromstring(_picture(thumbnails.task_thumbnail(task), "svg+xml"))
    space = "{http://www.w3.org/2000/svg}"
    circles = svg.findall(f"{space}circle")
    assert len(circles) == 7
    path = svg.find(f"{space}path").get("d")
    assert path.count("L") == thumbnails.WAVE_SAMPLES - 1
    # The given points lie on the drawn wave: same screen y as the formula, at their x.
    (x_low, x_high), top = SinusoidRange().x, SinusoidRange().amplitude[1]
    for circle, x, y in zip(circles, task.support_x[:, 0].tolist(), task.support_y[:, 0].tolist()):
        assert float(circle.get("cx")) == pytest.approx((x - x_low) / (x_high - x_low) * (thumbnails.WAVE_WIDTH - 8) + 4,
                                                        abs=0.06)
        assert float(circle.get("cy")) == pytest.approx((top - y) / (2 * top) * (thumbnails.WAVE_HEIGHT - 8) + 4,
                                                        abs=0.06)


def test_map_data_cards_follow_their_points():
    embedding = small_embedding()
    assert all(uri.startswith("data:image/png;base64,") for uri in embedding.metadata["thumbnail"])
    embedding.metadata["classes"][5] = ("<img src=x onerror=alert(1)>", *embedding.metadata["classes"][5][1:])
    kept = embedding.subset(np.arange(20)[::-2])  # a filter keeps each point's own card
    data = map_data(kept, "update_norm", current=1, revision="abc")
    json.dumps(data)  # all of it travels to the browser as JSON
    assert data["figure"]["layout"]["uirevision"] == "abc"
    assert len(data["cards"]) == 10
    for trace in data["figure"]["data"]:
        assert trace["hoverinfo"] == "none" and "text" not in trace  # the card replaces plotly's label
        for index, (row,) in enumerate(trace["customdata"]):
            task = kept.metadata["task"][row]  # the point's task in the unfiltered embedding
            assert data["cards"][row]["title"] == f"Task number {embedding.metadata['seed'][task]}"
            assert data["cards"][row]["thumbnail"] == embedding.metadata["thumbnail"][task]
            x = trace["x"]
            if isinstance(x, dict):  # plotly's typed array
                x = np.frombuffer(base64.b64decode(x["bdata"]), x["dtype"])
            assert x[index] == pytest.approx(embedding.coordinates[task, 0])
    row = list(kept.metadata["task"]).index(5)
    # Plain text for the card (the browser sets it as text), escaped in plotly's own hover text.
    assert any("<img src=x onerror=alert(1)>" in line for line in data["cards"][row]["lines"])
    assert "&lt;img src=x onerror=alert(1)&gt;" in hover_texts(kept)[row]
