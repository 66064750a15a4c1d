"""The inner loop: parity with learn2learn (the field's reference), and its properties."""
import copy

import learn2learn  # make test always installs it: a missing module must fail, not skip
import pytest
import torch
from torch.func import functional_call

from metaviz.adaptation import adapted_names, inner_loop, task_loss
from metaviz.models import ConvNetConfig, MLPConfig, build_model


def random_task(seed: int, ways: int = 5, shots: int = 1, queries: int = 3):
    generator = torch.Generator().manual_seed(seed)
    support_x = torch.rand(ways * shots, 1, 28, 28, generator=generator)
    query_x = torch.rand(ways * queries, 1, 28, 28, generator=generator)
    return (support_x, torch.arange(ways).repeat_interleave(shots),
            query_x, torch.arange(ways).repeat_interleave(queries))


def metaviz_adapt(model, support_x, support_y, query_x, query_y, steps, lr, first_order):
    params = {name: p.detach().clone().requires_grad_(True) for name, p in model.named_parameters()}
    adapted = inner_loop(model, params, {}, support_x, support_y, steps=steps, lr=lr,
                         adapt=tuple(params), first_order=first_order)[-1]
    task_loss(functional_call(model, adapted, (query_x,)), query_y).backward()
    return ({n: v.detach() for n, v in adapted.items()}, {n: p.grad for n, p in params.items()})


def learn2learn_adapt(model, support_x, support_y, query_x, query_y, steps, lr, first_order):
    maml = learn2learn.algorithms.MAML(copy.deepcopy(model), lr=lr, first_order=first_order)
    learner = maml.clone()
    for _ in range(steps):
        learner.adapt(task_loss(learner(support_x), support_y))
    task_loss(learner(query_x), query_y).backward()
    adapted = {n: p.detach() for n, p in learner.module.named_parameters()}
    return adapted, {n: p.grad for n, p in maml.module.named_parameters()}


@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
def test_adaptation_and_meta_gradients_match_learn2learn(first_order):
    torch.manual_seed(0)
    model = build_model(ConvNetConfig())
    task = random_task(seed=1)
    ours, our_grads = metaviz_adapt(model, *task, steps=3, lr=0.4, first_order=first_order)
    theirs, their_grads = learn2learn_adapt(model, *task, steps=3, lr=0.4, first_order=first_order)
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert (ours[name] - theirs[name]).abs().max().item() <= 1e-5, name
        assert torch.allclose(our_grads[name], their_grads[name], atol=1e-5, rtol=1e-4), name
    # The comparison means something only if adaptation moved the parameters.
    initial = dict(model.named_parameters())
    assert max((ours[n] - initial[n]).abs().max().item() for n in ours) > 1e-3


def test_second_order_differs_from_first_order():
    torch.manual_seed(0)
    model = build_model(ConvNetConfig())
    task = random_task(seed=2)
    _, second = metaviz_adapt(model, *task, steps=2, lr=0.4, first_order=False)
    _, first = metaviz_adapt(model, *task, steps=2, lr=0.4, first_order=True)
    assert any(not torch.allclose(second[n], first[n], atol=1e-6) for n in second)


def test_gradients_reach_every_meta_parameter():
    torch.manual_seed(0)
    model = build_model(ConvNetConfig())
    _, grads = metaviz_adapt(model, *random_task(seed=3), steps=1, lr=0.4, first_order=False)
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())


def test_support_loss_does_not_rise_with_a_small_step():
    torch.manual_seed(0)
    model = build_model(ConvNetConfig())
    support_x, support_y, _, _ = random_task(seed=4)
    params = dict(model.named_parameters())
    history = inner_loop(model, params, {}, support_x, support_y, steps=5, lr=0.01, adapt=tuple(params))
    losses = [task_loss(functional_call(model, p, (support_x,)), support_y).item() for p in history]
    assert all(later <= earlier + 1e-6 for earlier, later in zip(losses, losses[1:]))
    assert losses[-1] < losses[0]


def test_head_only_adaptation_leaves_the_body_untouched():
    torch.manual_seed(0)
    model = build_model(ConvNetConfig())
    support_x, support_y, _, _ = random_task(seed=5)
    params = dict(model.named_parameters())
    head = adapted_names(params, ["head"])
    assert head == ("head.weight", "head.bias")
    final = inner_loop(model, params, {}, support_x, support_y, steps=3, lr=0.4, adapt=head)[-1]
    for name in params:
        changed = not torch.equal(final[name], params[name])
        assert changed == name.startswith("head."), name


def test_unknown_layer_is_a_clear_error():
    model = build_model(ConvNetConfig())
    with pytest.raises(ValueError, match="unknown layers"):
        adapted_names(dict(model.named_parameters()), ["conv9"])


def test_mlp_regression_adapts():
    torch.manual_seed(0)
    model = build_model(MLPConfig())
    x = torch.linspace(-5, 5, 10).unsqueeze(1)
    y = 2 * torch.sin(x - 1)
    params = dict(model.named_parameters())
    history = inner_loop(model, params, {}, x, y, steps=10, lr=0.01, adapt=tuple(params))
    first, last = (task_loss(functional_call(model, p, (x,)), y).item() for p in (history[0], history[-1]))
    assert last < first
