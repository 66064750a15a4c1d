"""metaviz.batched: many tasks adapted at once must give what the plain inner loop gives, task by task."""
import pytest
import torch

from metaviz import batched
from metaviz.adaptation import adapted_names, inner_loop, task_loss
from metaviz.models import ConvNetConfig, MLPConfig, build_model
from metaviz.tasks import sample_task


def trained_looking(norm: str = "layer") -> torch.nn.Module:
    """A small conv net with random, not-all-default normalisation weights (so a swapped scale
    and shift, or channel order, would show)."""
    torch.manual_seed(0)
    model = build_model(ConvNetConfig(out_features=5, hidden=12, norm=norm))
    with torch.no_grad():
        for name, value in model.named_parameters():
            if "norm" in name:
                value.add_(0.3 * torch.randn_like(value))
    return model


def digit_tasks(count: int, shots: int = 2):
    return [sample_task("digits", "test", ways=5, shots=shots, queries=3, seed=seed) for seed in range(count)]


@pytest.mark.parametrize("norm", ["layer", "none"])
@pytest.mark.parametrize("layers", [None, ("conv4", "head")])
def test_adapting_tasks_together_equals_one_at_a_time(norm, layers):
    model = trained_looking(norm)
    parameters = {name: value.detach() for name, value in model.named_parameters()}
    names = adapted_names(parameters, layers)
    tasks = digit_tasks(4)
    together = batched.adapt_tasks(model, parameters, names, torch.stack([t.support_x for t in tasks]),
                                   torch.stack([t.support_y for t in tasks]), steps=3, lr=0.4)
    assert set(together) == set(names)
    for index, task in enumerate(tasks):
        alone = inner_loop(model, parameters, {}, task.support_x, task.support_y, steps=3, lr=0.4, adapt=names,
                           first_order=True)[-1]
        for name in names:
            assert together[name].shape == (len(tasks), *parameters[name].shape)
            torch.testing.assert_close(together[name][index], alone[name].detach(), atol=2e-5, rtol=1e-4)
        assert not torch.equal(together[names[0]][index], parameters[names[0]])  # it did move


def test_predictions_equal_the_model_s_own_forward_pass():
    model = trained_looking()
    parameters = {name: value.detach() for name, value in model.named_parameters()}
    tasks = digit_tasks(3)
    images = torch.stack([torch.cat([t.support_x, t.query_x]) for t in tasks])
    per_task = {"head.bias": torch.randn(3, 5), "blocks.1.conv.weight": torch.randn(3, 12, 12, 3, 3)}
    outputs = batched.predict_tasks(model, parameters, per_task, images)
    for index in range(3):
        own = {**parameters, **{name: value[index] for name, value in per_task.items()}}
        torch.testing.assert_close(outputs[index], model.functional_forward(own, {}, images[index]),
                                   atol=1e-5, rtol=1e-4)


def test_the_matmul_layout_round_trips():
    weight = torch.randn(2, 7, 3, 3, 3)  # two tasks' [O, C, 3, 3]
    matrix = batched.to_matmul_layout("blocks.0.conv.weight", weight)
    assert matrix.shape == (2, 27, 7)
    torch.testing.assert_close(batched.from_matmul_layout("blocks.0.conv.weight", matrix, weight.shape[1:]), weight)
    bias = torch.randn(2, 7)
    assert batched.to_matmul_layout("blocks.0.conv.bias", bias) is bias


def test_other_models_are_left_to_their_own_path():
    assert batched.supports(trained_looking())
    assert not batched.supports(build_model(MLPConfig()))
    assert not batched.supports(build_model(ConvNetConfig(norm="batch_running")))
    with pytest.raises(ValueError, match="conv net"):
        batched.adapt_tasks(build_model(MLPConfig()), {}, (), torch.zeros(1, 1, 1), torch.zeros(1, 1), 1, 0.1)


def test_evaluating_tasks_together_gives_the_task_by_task_figures(monkeypatch):
    from metaviz import training
    from metaviz.checkpoints import Checkpoint
    from metaviz.models import model_config_to_dict

    model = trained_looking()
    checkpoint = Checkpoint(name="t", model_config=model_config_to_dict(ConvNetConfig(out_features=5, hidden=12)),
                            parameters={name: value.detach() for name, value in model.named_parameters()},
                            algorithm="maml", dataset="digits", ways=5, shots=1, queries=5, inner_lr=0.4, inner_steps=2)
    monkeypatch.setattr(training, "BATCH_TASKS", 4)  # 10 tasks: batches of 4, 4 and 2
    together = training.evaluate(checkpoint, tasks=10, seed=3)
    monkeypatch.setattr(training.batched, "supports", lambda model: False)
    one_by_one = training.evaluate(checkpoint, tasks=10, seed=3)
    assert len(together["per_step"]) == 3
    for mine, theirs in zip(together["per_step"], one_by_one["per_step"]):
        assert mine == pytest.approx(theirs, abs=1e-6)
    assert {k: v for k, v in together.items() if k != "per_step"} == pytest.approx(
        {k: v for k, v in one_by_one.items() if k != "per_step"})


@pytest.mark.parametrize("first_order, layers", [(False, None), (True, None), (False, ("head",))],
                         ids=["maml", "first-order", "anil"])
def test_the_meta_gradient_of_tasks_together_equals_task_by_task(first_order, layers):
    model, tasks = trained_looking(), digit_tasks(4)
    stacked = {part: torch.stack([getattr(task, part) for task in tasks])
               for part in ("support_x", "support_y", "query_x", "query_y")}

    def meta_gradient(together: bool) -> dict:
        parameters = {name: value.detach().clone().requires_grad_() for name, value in model.named_parameters()}
        names = adapted_names(parameters, layers)
        if together:
            loss, _ = batched.meta_objective(model, parameters, names, steps=2, lr=0.4, first_order=first_order,
                                             **stacked)
        else:
            loss = sum(task_loss(model.functional_forward(
                inner_loop(model, parameters, {}, task.support_x, task.support_y, steps=2, lr=0.4, adapt=names,
                           first_order=first_order)[-1], {}, task.query_x), task.query_y) for task in tasks)
        loss.backward()
        return {name: value.grad for name, value in parameters.items()}

    together, one_by_one = meta_gradient(True), meta_gradient(False)
    for name, gradient in one_by_one.items():
        scale = gradient.abs().max().clamp_min(1e-6)
        assert (together[name] - gradient).abs().max() / scale < 1e-4, name
    assert any(gradient.abs().max() > 0 for gradient in together.values())
