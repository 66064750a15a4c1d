"""Attributions and their trust checks: shapes, completeness, batching, the randomisation
test and deletion curves, on a tiny random checkpoint and the shipped ones."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import sobel

from metaviz.adaptation import adapt, forward_at
from metaviz.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from metaviz.explain import (FAINT_CHANGE, METHODS, AttributionMethod, Computed, attribute, baseline_images,
                             completeness_error, network_for)
from metaviz.trust import (DEPENDS_ON_MODEL, SHOWS_THE_IMAGE, deletion_insertion_curves, randomisation_test,
                           rank_correlation, structural_similarity)
from metaviz.models import ConvNetConfig, build_model, model_config_to_dict
from metaviz.tasks import Task, sample_task

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
DIGITS = CHECKPOINTS / "digits-5w1s-maml.safetensors"
OMNIGLOT = CHECKPOINTS / "omniglot-5w1s-maml.safetensors"
STOCHASTIC = [name for name, method in METHODS.items() if method.stochastic]
DETERMINISTIC = [name for name, method in METHODS.items() if not method.stochastic]


@pytest.fixture(autouse=True)
def one_thread():
    # two cores shared with training jobs: torch's two threads thrash, one is faster
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small random 5-way conv net, saved and loaded like any checkpoint, and a task of
    random stroke-like images (bright on dark)."""
    torch.manual_seed(0)
    config = ConvNetConfig(hidden=8)
    checkpoint = Checkpoint(
        name="tiny", model_config=model_config_to_dict(config),
        parameters={k: v.detach() for k, v in build_model(config).named_parameters()},
        algorithm="maml", dataset="digits", ways=5, shots=1, queries=2, inner_lr=0.4, inner_steps=2)
    checkpoint = load_checkpoint(save_checkpoint(checkpoint, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors").path)
    generator = torch.Generator().manual_seed(1)
    images = (torch.rand(15, 1, 28, 28, generator=generator) > 0.8).float()
    labels = torch.arange(5)
    task = Task(images[:5], labels, images[5:], labels.repeat_interleave(2), tuple("abcde"))
    return checkpoint, task, adapt(checkpoint, task)


def _shipped(path: Path, dataset: str, seed: int = 0):
    checkpoint = load_checkpoint(path)
    task = sample_task(dataset, "test", checkpoint.ways, 1, 5, seed)
    return checkpoint, task, adapt(checkpoint, task)


@pytest.fixture(scope="module")
def digits():
    return _shipped(DIGITS, "digits")


@pytest.fixture(scope="module")
def omniglot(omniglot_dir):
    if not OMNIGLOT.exists():
        pytest.skip(f"{OMNIGLOT.name} is not trained yet: the Omniglot explanation tests wait for it")
    return _shipped(OMNIGLOT, "omniglot")


def one_per_class(task: Task) -> torch.Tensor:
    return task.query_x[:: len(task.query_x) // task.ways][: task.ways]


# --- every method, one call shape ---------------------------------------------------------

@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_returns_the_inputs_shape_and_finite_values(tiny, method):
    checkpoint, task, trace = tiny
    result = attribute(checkpoint, trace, trace.steps, method, task.query_x)
    assert result.values.shape == tuple(task.query_x.shape)
    assert np.isfinite(result.values).all()
    assert result.targets.shape == (len(task.query_x),)
    if result.convergence_delta is not None:
        assert result.convergence_delta.shape == (len(task.query_x),)


def test_target_defaults_to_the_prediction_at_that_step(digits):
    checkpoint, task, trace = digits
    for step in (0, trace.steps):
        result = attribute(checkpoint, trace, step, "Saliency", task.query_x)
        np.testing.assert_array_equal(result.targets, trace.query_predictions[step])
    chosen = attribute(checkpoint, trace, 1, "Saliency", task.query_x[:3], target=4)
    np.testing.assert_array_equal(chosen.targets, [4, 4, 4])


def test_each_map_comes_with_the_models_answer_at_that_step(digits):
    checkpoint, task, trace = digits
    for step in (0, trace.steps):
        result = attribute(checkpoint, trace, step, "Saliency", task.query_x)
        np.testing.assert_allclose(result.probabilities, trace.query_probabilities[step], atol=1e-5)


@pytest.mark.parametrize("method", ["Integrated Gradients", "Occlusion"])
def test_support_images_are_explained_at_any_step(digits, method):
    checkpoint, task, trace = digits
    for step in (0, trace.steps):
        result = attribute(checkpoint, trace, step, method, task.support_x)
        assert result.values.shape == tuple(task.support_x.shape) and np.isfinite(result.values).all()
        right = (result.probabilities.argmax(-1) == task.support_y.numpy()).mean()
        assert right == pytest.approx(trace.support_accuracy[step])  # the same model the trace adapted


def test_listing_the_methods_does_not_import_captum():
    # the dashboard lists methods and their settings before any map is asked for
    code = "import sys, metaviz.explain, metaviz.trust; assert 'captum' not in sys.modules, 'captum imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_nothing_is_mutated(digits):
    checkpoint, task, trace = digits
    before = {name: value.clone() for name, value in trace.params[2].items()}
    theta = {name: value.clone() for name, value in checkpoint.parameters.items()}
    for method in ("Guided Backprop", "DeepLift", "Integrated Gradients"):
        attribute(checkpoint, trace, 2, method, task.query_x[:2])
    assert all(torch.equal(before[name], trace.params[2][name]) for name in before)
    assert all(torch.equal(theta[name], checkpoint.parameters[name]) for name in theta)


def test_unknown_methods_and_settings_are_refused(tiny):
    checkpoint, task, trace = tiny
    with pytest.raises(ValueError, match="unknown method"):
        attribute(checkpoint, trace, 0, "Crystal ball", task.query_x)
    with pytest.raises(ValueError, match="no settings"):
        attribute(checkpoint, trace, 0, "Saliency", task.query_x, n_steps=3)
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_images(task.query_x, "white")


def test_guided_backprop_hooks_see_every_relu_and_change_the_gradient(digits):
    checkpoint, task, trace = digits
    network = network_for(checkpoint, trace.params[3])
    calls = []
    for relu in network.relus:
        relu.register_forward_hook(lambda module, inputs, output: calls.append(module))
    x = one_per_class(task)
    with torch.no_grad():
        torch.testing.assert_close(network(x), forward_at(checkpoint.build_model(), trace, 3)(x))
    assert calls == list(network.relus)  # each ReLU module ran exactly once, in order
    guided = attribute(checkpoint, trace, 3, "Guided Backprop", x).values
    gradient = attribute(checkpoint, trace, 3, "Saliency", x, abs=False).values
    assert np.abs(guided - gradient).max() > 0.1 * np.abs(gradient).max()


# --- batching -----------------------------------------------------------------------------

@pytest.mark.parametrize("method", DETERMINISTIC)
def test_a_batch_gives_the_same_maps_as_one_image_at_a_time(digits, method):
    checkpoint, task, trace = digits
    x = one_per_class(task)
    batch = attribute(checkpoint, trace, 2, method, x)
    single = np.concatenate([attribute(checkpoint, trace, 2, method, x[i : i + 1]).values for i in range(len(x))])
    np.testing.assert_allclose(batch.values, single, rtol=1e-4, atol=1e-5 * np.abs(single).max())


@pytest.mark.parametrize("method", STOCHASTIC)
def test_noisy_methods_are_seeded(tiny, method):
    checkpoint, task, trace = tiny
    first = attribute(checkpoint, trace, 1, method, task.query_x)
    np.testing.assert_array_equal(first.values, attribute(checkpoint, trace, 1, method, task.query_x).values)
    assert not np.array_equal(first.values, attribute(checkpoint, trace, 1, method, task.query_x, seed=1).values)


# --- completeness -------------------------------------------------------------------------

def _integrated_gradients_completeness(checkpoint, task, trace):
    x = task.query_x
    result = attribute(checkpoint, trace, trace.steps, "Integrated Gradients", x)
    forward = forward_at(checkpoint.build_model(), trace, trace.steps)
    with torch.no_grad():
        change = (forward(x) - forward(baseline_images(x))).gather(1, torch.as_tensor(result.targets)[:, None])[:, 0]
    return result, change.abs().numpy()


def test_integrated_gradients_completeness_within_one_percent_on_digits(digits):
    result, change = _integrated_gradients_completeness(*digits)
    # Relative error is only meaningful where the score moved: below 0.5 logit it divides by ~0
    assert np.median(result.completeness) <= 0.01
    assert (result.completeness[change >= 0.5] <= 0.01).all(), result.completeness


def test_integrated_gradients_completeness_within_one_percent_on_omniglot(omniglot):
    result, change = _integrated_gradients_completeness(*omniglot)
    assert np.median(result.completeness) <= 0.01
    assert (result.completeness[change >= 0.5] <= 0.01).all(), result.completeness


def test_completeness_error_agrees_with_captums_delta(digits):
    checkpoint, task, trace = digits
    result = attribute(checkpoint, trace, 3, "Integrated Gradients", task.query_x[:5], refine_to=None)
    missing = np.abs(result.convergence_delta)
    change = np.abs(result.values.reshape(5, -1).sum(1) - result.convergence_delta)
    np.testing.assert_allclose(result.completeness, missing / change, rtol=1e-3, atol=1e-6)
    forward = forward_at(checkpoint.build_model(), trace, 3)
    zero = completeness_error(forward, task.query_x[:5], baseline_images(task.query_x[:5]),
                              result.values, result.targets)
    np.testing.assert_allclose(zero, result.completeness, rtol=1e-5)


def test_gradient_shap_adds_up_only_on_average_and_better_with_more_paths(digits):
    checkpoint, task, trace = digits
    few = attribute(checkpoint, trace, 3, "GradientSHAP", task.query_x, samples=16)
    sums = few.values.reshape(len(task.query_x), -1).sum(1)
    # captum's delta is Σ attributions − the mean change along the noisy paths
    np.testing.assert_allclose(few.score_change, sums - few.convergence_delta, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(few.completeness, np.abs(few.convergence_delta) / np.abs(few.score_change), rtol=1e-4)
    many = attribute(checkpoint, trace, 3, "GradientSHAP", task.query_x, samples=128)
    assert np.median(many.completeness) < np.median(few.completeness)


def test_gauss_legendre_beats_the_trapezoid_at_the_same_steps(digits):
    checkpoint, _, _ = digits
    for n_steps in (32, 50):
        errors = {"riemann_trapezoid": [], "gausslegendre": []}
        for seed in range(3):
            task = sample_task("digits", "test", 5, 1, 5, seed)
            trace = adapt(checkpoint, task)
            for rule, found in errors.items():
                found.extend(attribute(checkpoint, trace, trace.steps, "Integrated Gradients", one_per_class(task),
                                       n_steps=n_steps, rule=rule, refine_to=None).completeness)
        assert np.median(errors["gausslegendre"]) < np.median(errors["riemann_trapezoid"]), n_steps


def test_refinement_records_the_steps_each_image_needed(digits):
    checkpoint, task, trace = digits
    result = attribute(checkpoint, trace, 3, "Integrated Gradients", task.query_x[:5], n_steps=16, max_steps=64)
    assert len(result.settings["steps_used"]) == 5
    assert set(result.settings["steps_used"]) <= {16, 32, 64}
    coarse = attribute(checkpoint, trace, 3, "Integrated Gradients", task.query_x[:5], n_steps=16, refine_to=None)
    assert np.median(result.completeness) <= np.median(coarse.completeness)


def test_refinement_stops_at_one_percent_of_a_clear_change(digits):
    checkpoint, task, trace = digits
    result = attribute(checkpoint, trace, 3, "Integrated Gradients", task.query_x, n_steps=16)
    missing = np.abs(result.completeness * result.score_change)
    allowed = 0.01 * np.maximum(np.abs(result.score_change), FAINT_CHANGE)  # faint scores: 0.005 logit
    assert ((missing <= allowed) | (np.array(result.settings["steps_used"]) == 800)).all()
    assert max(result.settings["steps_used"]) > 16  # 16 steps are not enough for every image


def test_blurred_baseline_keeps_the_ink_and_loses_the_shape():
    image = torch.zeros(1, 1, 28, 28)
    image[..., 10:18, 13:15] = 1.0
    blurred = baseline_images(image, "blurred")
    assert blurred.shape == image.shape
    assert blurred.sum().item() == pytest.approx(image.sum().item(), rel=0.05)
    assert blurred.max() < 0.5


# --- randomisation test -------------------------------------------------------------------

def test_similarity_measures():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 1, 28, 28))
    np.testing.assert_allclose(rank_correlation(maps, maps), 1.0)
    np.testing.assert_allclose(rank_correlation(maps, -maps), -1.0)
    np.testing.assert_allclose(structural_similarity(maps, maps), 1.0)
    assert (np.abs(rank_correlation(maps, rng.random((3, 1, 28, 28)))) < 0.2).all()
    assert (structural_similarity(maps, rng.random((3, 1, 28, 28))) < 0.2).all()
    assert rank_correlation(np.zeros((1, 4)), maps[:1, 0, 0, :4])[0] == 0.0  # a flat map ranks nothing


def _model_independent(name, function):
    return AttributionMethod(name, lambda network, inputs, targets: Computed(function(inputs.detach())))


def test_randomisation_separates_the_gradient_from_model_independent_maps(digits):
    checkpoint, task, trace = digits
    x, steps = one_per_class(task), trace.steps
    targets = trace.query_predictions[steps][:: len(task.query_x) // 5][:5]
    reported = []
    gradient = randomisation_test(checkpoint, trace, steps, "Saliency", x, targets,
                                  progress=lambda done, total: reported.append((done, total)))
    assert reported == [(done, 6) for done in range(1, 7)]
    assert gradient.layers == ("head", "conv4", "conv3", "conv2", "conv1")
    assert gradient.randomised.shape == (5, *x.shape)
    assert gradient.spearman_abs[-1] < 0.5 and gradient.passed and gradient.verdict == DEPENDS_ON_MODEL
    edges = lambda images: torch.from_numpy(np.hypot(sobel(images.numpy(), 2), sobel(images.numpy(), 3)))  # noqa: E731
    for independent in (_model_independent("the image", lambda images: images.clone()),
                        _model_independent("edges", edges)):
        result = randomisation_test(checkpoint, trace, steps, independent, x, targets)
        np.testing.assert_allclose(result.spearman, 1.0)
        np.testing.assert_allclose(result.ssim, 1.0)
        assert not result.passed and result.verdict == SHOWS_THE_IMAGE


def test_randomisation_uses_the_methods_settings(digits):
    checkpoint, task, trace = digits
    x = one_per_class(task)
    targets = attribute(checkpoint, trace, 3, "Occlusion", x).targets
    wide = randomisation_test(checkpoint, trace, 3, "Occlusion", x, targets, window=7, stride=1)
    np.testing.assert_allclose(wide.original, attribute(checkpoint, trace, 3, "Occlusion", x, target=targets,
                                                        window=7, stride=1).values, rtol=1e-5, atol=1e-7)


# --- deletion and insertion ---------------------------------------------------------------

def _deletion_beats_random(checkpoint, task, trace):
    steps = trace.steps
    result = attribute(checkpoint, trace, steps, "Integrated Gradients", task.query_x)
    forward = forward_at(checkpoint.build_model(), trace, steps)
    curves = deletion_insertion_curves(forward, task.query_x, result.targets, result.values, steps=20)
    assert curves.deletion.shape == (len(task.query_x), 21)
    np.testing.assert_allclose(curves.deletion[:, 0], curves.insertion[:, -1], rtol=1e-5)  # both: the image
    assert curves.area("deletion").mean() < curves.area("random_deletion").mean()
    assert curves.area("insertion").mean() > curves.area("random_insertion").mean()


def test_integrated_gradients_deletion_beats_random_order_on_digits(digits):
    _deletion_beats_random(*digits)


def test_integrated_gradients_deletion_beats_random_order_on_omniglot(omniglot):
    _deletion_beats_random(*omniglot)
