"""LIME and Kernel SHAP (metaviz.explain_sampled), the agreement of two runs, and global
importance over many tasks (metaviz.global_importance)."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from metaviz.adaptation import adapt
from metaviz.checkpoints import Checkpoint
from metaviz.explain import METHODS, attribute
from metaviz.explain_figures import global_importance_figure, seed_agreement_figure
from metaviz.explain_sampled import patch_mask, seed_agreement
from metaviz.global_importance import global_importance, strength_shares
from metaviz.models import ConvNetConfig, MLPConfig, build_model, model_config_to_dict
from metaviz.tasks import sample_task
from metaviz.training import meta_test_tasks


def untrained(config) -> Checkpoint:
    torch.manual_seed(0)
    model = build_model(config)
    return Checkpoint(name="untrained", model_config=model_config_to_dict(config),
                      parameters={name: value.detach() for name, value in model.named_parameters()},
                      algorithm="maml", dataset="digits", ways=5, shots=1, queries=2, inner_lr=0.4, inner_steps=2)


@pytest.fixture(scope="module")
def adapted():
    checkpoint = untrained(ConvNetConfig(out_features=5, hidden=16))
    task = sample_task("digits", "test", ways=5, shots=1, queries=1, seed=3)
    return checkpoint, task, adapt(checkpoint, task)


def test_patch_masks_cut_an_image_into_equal_pieces():
    mask = patch_mask(28, 28, 4)
    assert mask.shape == (1, 1, 28, 28)
    assert torch.bincount(mask.flatten()).tolist() == [16] * 49
    assert mask[0, 0, 0, 4] == 1 and mask[0, 0, 4, 0] == 7  # row by row
    assert torch.bincount(patch_mask(28, 28, 7).flatten()).tolist() == [49] * 16
    assert torch.bincount(patch_mask(10, 10, 4).flatten()).tolist() == [16, 16, 8, 16, 16, 8, 8, 8, 4]
    with pytest.raises(ValueError):
        patch_mask(28, 28, 0)


@pytest.mark.parametrize("method", ["LIME", "Kernel SHAP"])
def test_sampled_maps_have_the_inputs_shape_one_value_per_piece_and_a_seed_fixes_them(adapted, method):
    checkpoint, task, trace = adapted
    assert METHODS[method].stochastic
    first = attribute(checkpoint, trace, 2, method, task.query_x, n_samples=80)
    again = attribute(checkpoint, trace, 2, method, task.query_x, n_samples=80)
    other = attribute(checkpoint, trace, 2, method, task.query_x, n_samples=80, seed=1)
    assert first.values.shape == tuple(task.query_x.shape)
    assert np.array_equal(first.values, again.values)  # a seed fixes the map
    assert not np.array_equal(first.values, other.values)  # another seed samples other copies
    pieces = first.values.reshape(len(first.values), 7, 4, 7, 4)
    assert np.allclose(pieces, pieces[:, :, :1, :, :1])  # every pixel of a piece has the piece's value
    assert first.settings["pieces"] == 49 and first.settings["n_samples"] == 80
    coarse = attribute(checkpoint, trace, 2, method, task.query_x, n_samples=40, patch=7)
    assert coarse.settings["pieces"] == 16


def test_kernel_shap_adds_up_and_lime_promises_nothing(adapted):
    checkpoint, task, trace = adapted
    shap = attribute(checkpoint, trace, 2, "Kernel SHAP", task.query_x, n_samples=120)
    lime = attribute(checkpoint, trace, 2, "LIME", task.query_x, n_samples=120)
    # Shapley values add up to the change from the all-hidden image to the image (efficiency)
    assert np.median(shap.completeness) < 0.01
    np.testing.assert_allclose(shap.values.reshape(len(shap.values), -1).sum(1), shap.score_change, rtol=0.02,
                               atol=1e-3)
    assert lime.completeness is None and lime.score_change is None


def test_seed_agreement_is_the_rank_correlation_of_each_pair_of_maps():
    maps = np.random.default_rng(0).random((3, 1, 28, 28))
    np.testing.assert_allclose(seed_agreement(maps, maps), 1.0)
    np.testing.assert_allclose(seed_agreement(maps, -maps), -1.0)
    partly = maps.copy()
    partly[1] = np.random.default_rng(1).random((1, 28, 28))
    agreement = seed_agreement(maps, partly)
    assert agreement[0] == pytest.approx(1.0) and abs(agreement[1]) < 0.2


def test_agreement_figure_has_one_bar_per_image_coloured_by_the_threshold():
    fig = seed_agreement_figure([0.9, 0.3, 0.7], threshold=0.5)
    bars = fig.data[0]
    assert list(bars.y) == [0.9, 0.3, 0.7] and len(bars.x) == 3
    assert bars.marker.color[0] == bars.marker.color[2] != bars.marker.color[1]
    assert json.loads(fig.to_json())["layout"]["shapes"][0]["y0"] == 0.5


def test_global_importance_is_the_mean_of_the_single_task_maps(adapted):
    checkpoint = adapted[0]
    for method, settings in (("Saliency", {}), ("Kernel SHAP", {"n_samples": 40})):
        result = global_importance(checkpoint, method, tasks=2, seed=5, queries=2, **settings)
        before, after, images = [], [], []
        for task in meta_test_tasks(checkpoint, 2, 5, queries=2):  # the loop it replaces, by hand
            trace = adapt(checkpoint, task)
            for step, shares in ((0, before), (trace.steps, after)):
                values = attribute(checkpoint, trace, step, method, task.query_x, target=task.query_y, **settings).values
                magnitude = np.abs(values.sum(1))
                shares.extend(magnitude / magnitude.sum(axis=(1, 2), keepdims=True))
            images.extend(task.query_x[:, 0].numpy())
        assert result.images == len(before) == 2 * 5 * 2 and result.steps == checkpoint.inner_steps
        np.testing.assert_allclose(result.before, np.mean(before, 0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(result.after, np.mean(after, 0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(result.mean_image, np.mean(images, 0), rtol=1e-5)
        assert result.before.sum() == pytest.approx(1.0) and not np.allclose(result.change, 0)


def test_global_importance_refuses_what_it_cannot_measure(adapted):
    regression = dataclasses.replace(untrained(MLPConfig()), dataset="sinusoid", ways=0)
    with pytest.raises(ValueError, match="image models"):
        global_importance(regression, "Saliency", tasks=1)
    with pytest.raises(ValueError, match="images must be"):
        global_importance(adapted[0], "Saliency", tasks=1, images="all")


def test_strength_shares_and_the_global_figure():
    values = np.zeros((2, 1, 4, 4))
    values[0, 0, 1, 1], values[0, 0, 2, 2] = 3.0, -1.0
    shares = strength_shares(values)
    assert shares[0, 1, 1] == 0.75 and shares[0, 2, 2] == 0.25 and not shares[1].any()  # a flat map stays 0
    fig = global_importance_figure(np.ones((4, 4)), shares[0], shares[0][::-1], steps=3)
    assert [trace.type for trace in fig.data] == ["image"] * 3
    assert "After step 3" in fig.to_json()
