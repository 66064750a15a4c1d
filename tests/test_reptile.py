"""Reptile (metaviz.reptile) and the MAML paper's MLP for images (`--model mlp`)."""
import numpy as np
import pytest
import torch
from torch import nn

from metaviz import reptile
from metaviz.adaptation import adapted_names
from metaviz.checkpoints import load_checkpoint
from metaviz.models import MLPConfig, build_model, layer_names
from metaviz.training import TaskSource, TrainConfig, model_config_for, same_settings, train
from tests.test_training import TINY, run_cli


def test_meta_update_is_the_step_size_times_the_mean_adapted_minus_initial_parameters():
    torch.manual_seed(0)
    model = build_model(MLPConfig(in_features=2, hidden_sizes=(8,), out_features=1))
    theta = {name: value.detach().clone() for name, value in model.named_parameters()}
    tasks = [(torch.randn(6, 2), torch.randn(6, 1)) for _ in range(3)]
    steps, lr, step_size = 4, 0.05, 0.7

    def reference_phi(x, y):  # plain PyTorch: a copy of the model and torch.optim.SGD
        copy = build_model(MLPConfig(in_features=2, hidden_sizes=(8,), out_features=1))
        copy.load_state_dict(theta)
        optimiser = torch.optim.SGD(copy.parameters(), lr=lr)
        for _ in range(steps):
            optimiser.zero_grad()
            nn.functional.mse_loss(copy(x), y).backward()
            optimiser.step()
        return {name: value.detach() for name, value in copy.named_parameters()}

    adapted = [reptile.adapt_to_task(model, theta, x, y, steps=steps, lr=lr, adapt=tuple(theta), batch=0,
                                     rng=np.random.default_rng(0)) for x, y in tasks]
    expected_phi = [reference_phi(x, y) for x, y in tasks]
    for ours, reference in zip(adapted, expected_phi):
        for name in theta:
            torch.testing.assert_close(ours[name], reference[name], rtol=1e-5, atol=1e-6)
    updated = {name: value.clone() for name, value in theta.items()}
    reptile.meta_update(updated, adapted, step_size)
    for name in theta:
        mean_difference = torch.stack([phi[name] - theta[name] for phi in expected_phi]).mean(0)
        torch.testing.assert_close(updated[name] - theta[name], step_size * mean_difference, rtol=1e-5, atol=1e-6)
        assert (updated[name] != theta[name]).any(), name


def test_outer_step_size_anneals_linearly():
    assert reptile.outer_step_size(0, 100, 1.0, 0.0) == 1.0
    assert reptile.outer_step_size(50, 100, 1.0, 0.0) == pytest.approx(0.5)
    assert reptile.outer_step_size(75, 100, 1.0, 0.2) == pytest.approx(0.4)


def test_inner_batches_use_every_example_before_repeating_one():
    batches = reptile.inner_batches(50, 7, 10, np.random.default_rng(3))
    assert [len(batch) for batch in batches] == [10] * 7
    first_pass = np.concatenate(batches[:5])
    assert sorted(first_pass.tolist()) == list(range(50))
    assert all(len(set(batch.tolist())) == 10 for batch in batches)
    assert all(np.array_equal(batch, np.arange(5)) for batch in reptile.inner_batches(5, 3, 0, np.random.default_rng()))


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_tasks_adapted_together_step_on_the_same_mini_batches_as_task_by_task(dtype, tolerance):
    from dataclasses import replace

    from metaviz.data import load_classes
    from metaviz.models import ConvNetConfig
    from metaviz.tasks import TaskSampler

    torch.manual_seed(0)
    model = build_model(ConvNetConfig()).to(dtype)
    theta = {name: value.detach().clone() for name, value in model.named_parameters()}
    sampler, rng = TaskSampler(load_classes("digits", "train"), ways=5, shots=4, queries=1), np.random.default_rng(1)
    tasks = [replace(task, support_x=task.support_x.to(dtype)) for task in (sampler.sample(rng) for _ in range(3))]
    steps = [reptile.inner_batches(len(task.support_x), 4, 6, np.random.default_rng(seed)) for seed, task in
             enumerate(tasks)]
    names = adapted_names(theta, ("conv3", "conv4", "head"))
    together = reptile.adapt_tasks_together(model, theta, [t.support_x for t in tasks], [t.support_y for t in tasks],
                                            steps, lr=0.3, adapt=names)
    for seed, (task, phi) in enumerate(zip(tasks, together)):
        alone = reptile.adapt_to_task(model, theta, task.support_x, task.support_y, steps=4, lr=0.3, adapt=names,
                                      batch=6, rng=np.random.default_rng(seed))  # draws the same batches
        for name in theta:
            torch.testing.assert_close(phi[name], alone[name], rtol=tolerance, atol=tolerance)
        assert all(torch.equal(phi[name], theta[name]) for name in theta if name not in names)
        assert any(not torch.equal(phi[name], theta[name]) for name in names)


REPTILE = dict(algorithm="reptile", dataset="digits", meta_batch=2, queries=2, train_shots=3, inner_batch=4,
               train_steps=3, inner_lr=0.1, test_steps=5, val_every=4, val_tasks=2, save_every=1)


def test_one_reptile_iteration_moves_theta_by_the_mean_task_update(tmp_path):
    config = TrainConfig(**{**REPTILE, "iterations": 1, "outer_lr": 0.6})
    torch.manual_seed(config.seed)
    model = build_model(model_config_for(config))
    theta = {name: value.detach().clone() for name, value in model.named_parameters()}
    rng = np.random.default_rng([config.seed, 0])  # the generator train() uses for iteration 0
    source = TaskSource(config, "train", config.queries, shots=config.train_shots)
    tasks, step_indices = [], []
    for _ in range(config.meta_batch):
        tasks.append(source.sample(rng))
        assert len(tasks[-1].support_x) == config.ways * config.train_shots
        step_indices.append(reptile.inner_batches(len(tasks[-1].support_x), 3, 4, rng))
    # train() adapts the conv net's meta-batch together, which equals adapt_to_task task by task
    # (test_tasks_adapted_together_step_on_the_same_mini_batches_as_task_by_task).
    adapted = reptile.adapt_tasks_together(model, theta, [t.support_x for t in tasks], [t.support_y for t in tasks],
                                           step_indices, lr=0.1, adapt=adapted_names(theta, None))
    checkpoint = train(config, tmp_path / "run", out=tmp_path / "r.safetensors", show_progress=False)
    for name in theta:
        mean_difference = torch.stack([phi[name] - theta[name] for phi in adapted]).mean(0)
        torch.testing.assert_close(checkpoint.parameters[name], theta[name] + 0.6 * mean_difference)
        assert (mean_difference != 0).any(), name
    loaded = load_checkpoint(tmp_path / "r.safetensors")
    assert loaded.algorithm == "reptile" and loaded.adapt_layers is None
    assert (loaded.inner_lr, loaded.inner_steps, loaded.shots) == (0.1, 5, 1)  # test-time adaptation: its inner settings
    assert loaded.extra["train_config"]["outer_lr"] == 0.6


def test_a_stopped_reptile_run_resumes_to_the_same_parameters(tmp_path):
    config = TrainConfig(**{**REPTILE, "iterations": 4})
    reference = train(config, tmp_path / "a", show_progress=False)
    assert train(config, tmp_path / "b", stop_after=2, show_progress=False) is None
    resumed = train(config, tmp_path / "b", resume=True, show_progress=False)
    for name in reference.parameters:
        assert torch.equal(reference.parameters[name], resumed.parameters[name]), name
    assert reference.history["val_metric"] == resumed.history["val_metric"]


def test_a_run_saved_before_a_setting_existed_still_resumes():
    saved = {key: value for key, value in TrainConfig().__dict__.items()
             if key not in ("model", "train_shots", "outer_lr", "outer_lr_final", "inner_batch")}
    assert same_settings(saved, TrainConfig())
    assert not same_settings(saved, TrainConfig(model="mlp"))
    assert not same_settings({**saved, "meta_lr": 0.5}, TrainConfig())


# --- the MAML paper's MLP for images --------------------------------------------------------

def test_image_mlp_is_the_papers_256_128_64_64_net_with_per_image_normalisation():
    config = model_config_for(TrainConfig(model="mlp", ways=5))
    model = build_model(config)
    assert config["hidden_sizes"] == [256, 128, 64, 64] and config["in_features"] == 28 * 28
    assert layer_names(model) == ("fc1", "fc2", "fc3", "fc4", "head")
    assert any(name.startswith("norms.") for name, _ in model.named_parameters())
    images = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        alone = model(images[:1])
        batch = model(images)
    torch.testing.assert_close(batch[:1], alone)  # an image's answer does not depend on the batch
    assert alone.shape == (1, 5)


def test_train_cli_model_mlp_writes_an_mlp_checkpoint(tmp_path):
    result = run_cli("train", *TINY[:-8], "--iterations", "2", "--val-every", "2", "--val-tasks", "2",
                     "--model", "mlp", "--run-dir", tmp_path / "run", "--out", tmp_path / "m.safetensors")
    assert result.returncode == 0, result.stderr
    checkpoint = load_checkpoint(tmp_path / "m.safetensors")
    assert checkpoint.model_config["kind"] == "mlp" and checkpoint.model_config["norm"] == "layer"
    assert checkpoint.layers == ("fc1", "fc2", "fc3", "fc4", "head")
    unknown = run_cli("train", *TINY, "--model", "resnet", "--run-dir", tmp_path / "x", "--out", tmp_path / "x.st")
    assert unknown.returncode == 2 and "unknown model 'resnet'" in unknown.stderr and "Traceback" not in unknown.stderr


def test_an_uploaded_reptile_mlp_checkpoint_is_accepted(tmp_path):
    from metaviz.user_checkpoints import read_user_checkpoint

    config = TrainConfig(**{**REPTILE, "iterations": 1, "model": "mlp"})
    train(config, tmp_path / "run", out=tmp_path / "r.safetensors", show_progress=False)
    uploaded = read_user_checkpoint("r.safetensors", (tmp_path / "r.safetensors").read_bytes())
    assert uploaded.algorithm == "reptile" and uploaded.model_config["kind"] == "mlp"
