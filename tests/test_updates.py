"""Update magnitudes, CKA and the layer-freeze ablation (metaviz.updates)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from metaviz.adaptation import adapt
from metaviz.checkpoints import Checkpoint, load_checkpoint
from metaviz.models import ConvNetConfig, MLPConfig, build_model, model_config_to_dict
from metaviz.tasks import sample_sinusoid_task, sample_task
from metaviz.training import evaluate
from metaviz.updates import (
    LayerStatistics, _FromLayer, ablation_settings, ablation_text, freeze_ablation, layer_roles_text,
    layer_statistics, linear_cka, task_update_text, update_norms,
)

DIGITS = Path(__file__).resolve().parents[1] / "checkpoints" / "digits-5w1s-maml.safetensors"


@pytest.fixture(scope="module")
def digits() -> Checkpoint:
    return load_checkpoint(DIGITS)


def untrained_mlp() -> Checkpoint:
    torch.manual_seed(0)
    config = MLPConfig()
    model = build_model(config)
    return Checkpoint(name="mlp", model_config=model_config_to_dict(config),
                      parameters={k: v.detach() for k, v in model.named_parameters()}, algorithm="maml",
                      dataset="sinusoid", ways=0, shots=10, queries=10, inner_lr=0.01, inner_steps=3)


# --- update norms ---------------------------------------------------------------------------

def test_frozen_layers_have_exactly_zero_update(digits):
    task = sample_task("digits", "test", ways=5, shots=1, queries=3, seed=1)
    norms = update_norms(adapt(digits, task, steps=3, adapt_layers=("conv3", "head")))
    moved = dict(zip(norms.layers, norms.layer_absolute[-1]))
    assert moved["conv1"] == 0.0 and moved["conv2"] == 0.0 and moved["conv4"] == 0.0
    assert moved["conv3"] > 0 and moved["head"] > 0
    assert (norms.unit_absolute["conv1"] == 0).all()
    assert (norms.layer_absolute[0] == 0).all()  # step 0 is theta_0 itself


def test_norms_add_up_across_tensors_units_and_layers(digits):
    task = sample_task("digits", "test", ways=5, shots=1, queries=3, seed=2)
    trace = adapt(digits, task, steps=2)
    norms = update_norms(trace)
    for index, layer in enumerate(norms.layers):
        tensors = [i for i, name in enumerate(norms.tensors) if name.startswith(
            "head." if layer == "head" else f"blocks.{int(layer[4:]) - 1}.")]
        layer_squared = norms.layer_absolute[:, index] ** 2
        np.testing.assert_allclose((norms.tensor_absolute[:, tensors] ** 2).sum(1), layer_squared, rtol=1e-6)
        np.testing.assert_allclose((norms.unit_absolute[layer] ** 2).sum(1), layer_squared, rtol=1e-6)
    weight = norms.tensors.index("head.weight")
    direct = torch.linalg.vector_norm(trace.params[2]["head.weight"] - trace.params[0]["head.weight"]).item()
    assert norms.tensor_absolute[2, weight] == pytest.approx(direct, rel=1e-5)
    assert norms.tensor_relative[2, weight] == pytest.approx(
        direct / torch.linalg.vector_norm(trace.params[0]["head.weight"]).item(), rel=1e-5)


def test_task_update_text_names_the_layer_that_moved_most(digits):
    task = sample_task("digits", "test", ways=5, shots=1, queries=3, seed=1)
    words = task_update_text(update_norms(adapt(digits, task, steps=3, adapt_layers=("conv4", "head"))))
    assert "head moved most" in words and "conv1, " in words and "did not adapt" in words
    assert task_update_text(update_norms(adapt(digits, task, steps=0))) == "With 0 adaptation steps nothing changes."


# --- CKA ------------------------------------------------------------------------------------

def test_cka_of_a_representation_with_itself_is_one():
    x = torch.randn(40, 30, generator=torch.Generator().manual_seed(0))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-6)


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(50, 20, generator=generator)
    y = x @ torch.randn(20, 20, generator=generator) + 0.5 * torch.randn(50, 20, generator=generator)
    rotation, _ = torch.linalg.qr(torch.randn(20, 20, generator=generator))
    reference = linear_cka(x, y)
    assert linear_cka(x @ rotation, y) == pytest.approx(reference, abs=1e-5)
    assert linear_cka(3.7 * x, y) == pytest.approx(reference, abs=1e-5)
    assert linear_cka(x, 0.01 * y @ rotation) == pytest.approx(reference, abs=1e-5)
    # ... but not to an anisotropic rescaling of the features: the test above could fail.
    stretched = x * torch.linspace(0.05, 5.0, 20)
    assert abs(linear_cka(stretched, y) - reference) > 1e-2


def test_cka_of_unrelated_representations_is_low_and_shapes_must_match():
    generator = torch.Generator().manual_seed(2)
    x, y = torch.randn(200, 10, generator=generator), torch.randn(200, 10, generator=generator)
    assert linear_cka(x, y) < 0.15
    assert linear_cka(x.reshape(200, 2, 5), y) == pytest.approx(linear_cka(x, y))  # features are flattened
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(x, y[:100])


# --- models run from a frozen prefix --------------------------------------------------------

@pytest.mark.parametrize("config", [ConvNetConfig(), MLPConfig(in_features=4, hidden_sizes=(8, 6, 5))])
def test_running_from_a_layer_output_equals_the_full_forward(config):
    torch.manual_seed(0)
    model = build_model(config)
    params = dict(model.named_parameters())
    x = torch.randn(6, 1, 28, 28) if isinstance(config, ConvNetConfig) else torch.randn(6, 4)
    with torch.no_grad():
        full = model.functional_forward(params, {}, x)
        outputs = list(model.functional_layer_outputs(params, {}, x).values())
        torch.testing.assert_close(outputs[-1], full)
        for start in range(1, len(outputs)):
            torch.testing.assert_close(_FromLayer(model, start).functional_forward(params, {}, outputs[start - 1]),
                                       full)


# --- many tasks -----------------------------------------------------------------------------

def test_ablation_settings_freeze_the_body_from_the_input_up():
    settings = dict(ablation_settings(("conv1", "conv2", "conv3", "conv4", "head")))
    assert settings["all layers"] == ("conv1", "conv2", "conv3", "conv4", "head")
    assert settings["head only (body frozen)"] == ("head",)
    assert settings["body only (head frozen)"] == ("conv1", "conv2", "conv3", "conv4")
    assert settings["conv1 frozen"] == ("conv2", "conv3", "conv4", "head")
    assert settings["conv1–conv3 frozen"] == ("conv4", "head")
    assert len(settings) == 6
    assert [label for label, _ in ablation_settings(("fc1", "fc2", "head"))] == [
        "all layers", "head only (body frozen)", "body only (head frozen)", "fc1 frozen"]


def test_the_all_layers_row_is_the_plain_adaptation_accuracy_on_the_same_tasks(digits):
    rows = freeze_ablation(digits, tasks=12, seed=3)
    reference = evaluate(digits, tasks=12, seed=3)
    assert rows[0].label == "all layers"
    # evaluate() averages each task's accuracy in float32: equal up to that rounding.
    assert rows[0].mean == pytest.approx(reference["mean"], abs=1e-6)
    assert rows[0].ci95 == pytest.approx(reference["ci95"], abs=1e-6)
    by_label = {row.label: row for row in rows}
    # A frozen head cannot tell the (new) classes apart better than chance...
    assert by_label["body only (head frozen)"].mean < rows[0].mean
    # ... and every row used the same 12 tasks.
    assert all(len(row.per_task) == 12 for row in rows)


def test_a_frozen_prefix_gives_the_accuracy_of_adapting_the_rest(digits):
    """The prefix shortcut must not change results: compare with plain adapt() per task."""
    rows = freeze_ablation(digits, tasks=4, seed=5, settings=[("conv1–conv2 frozen", ("conv3", "conv4", "head"))])
    from metaviz.training import meta_test_tasks

    plain = [adapt(digits, task, adapt_layers=("conv3", "conv4", "head")).query_accuracy[-1]
             for task in meta_test_tasks(digits, 4, seed=5)]
    np.testing.assert_allclose(rows[0].per_task, plain, atol=1e-6)


def test_layer_statistics_with_the_body_frozen(digits):
    statistics = layer_statistics(digits, tasks=6, seed=0, adapt_layers=("head",))
    body = [i for i, layer in enumerate(statistics.layers) if layer != "head"]
    head = statistics.layers.index("head")
    assert (statistics.absolute[:, body] == 0).all() and (statistics.absolute[:, head] > 0).all()
    assert np.allclose(statistics.cka[:, body], 1.0, atol=1e-6)  # an unchanged layer sees the same
    assert np.isnan(statistics.cosine[body]).all()  # nothing moved: no direction to compare
    assert -1 <= statistics.cosine[head] <= 1
    assert statistics.cka.shape == (6, 5) and statistics.query_metric.shape == (6,)
    words = layer_roles_text(statistics)
    assert words.startswith("conv1, conv2, conv3, conv4 do not adapt at all here (frozen)")
    assert words.endswith("Only the head learns the task.")


def test_layer_statistics_on_the_shipped_digits_checkpoint(digits):
    statistics = layer_statistics(digits, tasks=10, seed=0)
    head = statistics.layers.index("head")
    assert (statistics.relative >= 0).all()
    # The head's representation (the logits) changes more than the first convolution's.
    assert statistics.cka[:, head].mean() < statistics.cka[:, 0].mean()
    assert statistics.query_metric.mean() == pytest.approx(evaluate(digits, tasks=10, seed=0)["mean"], abs=1e-6)


def test_regression_checkpoints_use_mse():
    checkpoint = untrained_mlp()
    statistics = layer_statistics(checkpoint, tasks=4, seed=0)
    assert statistics.metric == "mse" and statistics.layers == ("fc1", "fc2", "head")
    rows = freeze_ablation(checkpoint, tasks=4, seed=0)
    task = sample_sinusoid_task(shots=10, seed=0)
    assert task.is_regression
    assert rows[0].mean > 0 and "error" in ablation_text(rows, "mse")


def _statistics(cka_by_layer: dict) -> LayerStatistics:
    layers = tuple(cka_by_layer)
    cka = np.array([list(cka_by_layer.values())] * 3)
    moved = np.ones((3, len(layers)))
    return LayerStatistics(layers=layers, absolute=moved, relative=moved, cka=cka, cosine=np.zeros(len(layers)),
                           query_metric=np.zeros(3), metric="accuracy", tasks=3, seed=0, steps=1, lr=0.1, queries=1)


def test_layer_roles_in_words():
    assert "re-uses the features" in layer_roles_text(_statistics({"conv1": 0.99, "conv2": 0.95, "head": 0.3}))
    assert "learns the task throughout" in layer_roles_text(_statistics({"conv1": 0.5, "conv2": 0.4, "head": 0.2}))
    mixed = layer_roles_text(_statistics({"conv1": 0.99, "conv2": 0.6, "head": 0.2}))
    assert mixed.startswith("conv1 barely changes (") and "conv2 changes more" in mixed


def test_ablation_in_words():
    from metaviz.updates import AblationRow

    rows = [AblationRow("all layers", ("conv1", "head"), 0.95, 0.01, np.full(4, 0.95)),
            AblationRow("head only (body frozen)", ("head",), 0.94, 0.01, np.full(4, 0.94)),
            AblationRow("body only (head frozen)", ("conv1",), 0.2, 0.0, np.full(4, 0.2))]
    words = ablation_text(rows, "accuracy")
    assert "Adapting only the head scores 94.0%, 1.0 points below adapting every layer (95.0%)" in words
    assert "every task scores exactly 20%" in words and "need more steps" not in words
    rows[2] = AblationRow("body only (head frozen)", ("conv1",), 0.3, 0.05, np.array([0.2, 0.4, 0.2, 0.4]))
    assert "exactly" not in ablation_text(rows, "accuracy")
    anil = ablation_text(rows, "accuracy", trained_layers=("head",))
    assert anil.startswith("This model was meta-trained with only its head adapting (ANIL)") and "94.0%" in anil
