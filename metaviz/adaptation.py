"""The inner loop (clone -> adapt -> evaluate) as pure functions of parameter dicts.

Nothing here mutates a model: parameters live in dicts and the model is only evaluated through
its pure `functional_forward(params, buffers, x)`. With
`first_order=False` the adapted parameters stay differentiable with respect to the
meta-parameters (second-order MAML); with `first_order=True` the inner gradients are
treated as constants (FOMAML), as learn2learn's `adapt(..., first_order=True)` does.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn import functional as F

from metaviz.checkpoints import Checkpoint
from metaviz.models import layer_of

if TYPE_CHECKING:
    from metaviz.tasks import Task

Params = dict[str, torch.Tensor]


def task_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for class indices, mean squared error for regression targets."""
    if targets.dtype == torch.long:
        return F.cross_entropy(outputs, targets)
    return F.mse_loss(outputs, targets)


def adapted_names(parameters: Iterable[str], adapt_layers: Iterable[str] | None) -> tuple[str, ...]:
    """The parameter names that adapt when only `adapt_layers` (None: all layers) adapt."""
    parameters = tuple(parameters)
    if adapt_layers is None:
        return parameters
    adapt_layers = tuple(adapt_layers)
    known = {layer_of(name) for name in parameters}
    unknown = [layer for layer in adapt_layers if layer not in known]
    if unknown:
        raise ValueError(f"unknown layers {unknown}; this model has {sorted(known)}")
    if not adapt_layers:
        raise ValueError("at least one layer must adapt")
    return tuple(name for name in parameters if layer_of(name) in adapt_layers)


def inner_loop(
    model: torch.nn.Module, params: Params, buffers: Params, x: torch.Tensor, y: torch.Tensor, *,
    steps: int, lr: float, adapt: tuple[str, ...], first_order: bool = False,
) -> list[Params]:
    """Parameter dicts after steps 0..`steps` of gradient descent on the loss of (x, y).

    Gradients come from `torch.autograd.grad` over the functional call rather than
    `torch.func.grad`: the same numbers (tests compare both with learn2learn), but
    torch.func's per-call wrapping made a 5-step adaptation about 1.6x slower here.
    """
    frozen = {name: value for name, value in params.items() if name not in adapt}
    # Parameters that do not track gradients yet (display-only adaptation of theta_0) get
    # their own leaf; otherwise the adapted values stay connected to theta_0 for meta-gradients.
    display_only = first_order and not any(params[name].requires_grad for name in adapt)
    adapted = {name: params[name] if params[name].requires_grad else params[name].detach().requires_grad_()
               for name in adapt}
    history = [dict(params)]
    for _ in range(steps):
        loss = task_loss(model.functional_forward({**frozen, **adapted}, buffers, x), y)
        gradients = torch.autograd.grad(loss, list(adapted.values()), create_graph=not first_order)
        adapted = {name: value - lr * gradient for (name, value), gradient in zip(adapted.items(), gradients)}
        if display_only:  # nothing will differentiate through the steps: keep no graph
            adapted = {name: value.detach().requires_grad_() for name, value in adapted.items()}
        history.append({**frozen, **adapted})
    return history


@dataclass(frozen=True)
class AdaptationTrace:
    """Everything one adaptation did, step 0 (theta_0) to step K."""

    params: tuple[Params, ...]  # full parameter dicts, steps 0..K (frozen layers shared)
    buffers: Params  # BatchNorm running statistics of imported models (else empty)
    support_loss: np.ndarray  # [K+1]
    query_loss: np.ndarray  # [K+1]
    support_accuracy: np.ndarray | None  # [K+1], None for regression
    query_accuracy: np.ndarray | None
    query_probabilities: np.ndarray | None  # [K+1, queries, ways] softmax, classification only
    query_outputs: np.ndarray  # [K+1, queries, outputs]: logits or regression predictions
    lr: float
    adapt_layers: tuple[str, ...]

    @property
    def steps(self) -> int:
        return len(self.params) - 1

    @property
    def query_predictions(self) -> np.ndarray:
        """[K+1, queries] predicted class per step (classification)."""
        return self.query_outputs.argmax(-1)


def forward_at(model: torch.nn.Module, trace: AdaptationTrace, step: int):
    """The adapted model at `step` as a plain function x -> outputs (for captum and plots)."""
    params = trace.params[step]
    return lambda x: model.functional_forward(params, trace.buffers, x)


def adapt(
    checkpoint: Checkpoint, task: Task, steps: int | None = None, lr: float | None = None,
    adapt_layers: Iterable[str] | None = None, model: torch.nn.Module | None = None,
) -> AdaptationTrace:
    """Adapts the checkpoint's theta_0 to the task's support set, recording every step.

    `steps`, `lr` and `adapt_layers` default to the checkpoint's inner-loop settings.
    """
    steps = checkpoint.inner_steps if steps is None else int(steps)
    lr = checkpoint.inner_lr if lr is None else float(lr)
    if steps < 0:
        raise ValueError("steps must be >= 0")
    if adapt_layers is None:
        adapt_layers = checkpoint.adapt_layers
    if not task.is_regression and task.ways != checkpoint.ways:
        raise ValueError(f"the task has {task.ways} classes; this checkpoint is {checkpoint.ways}-way")
    model = model or checkpoint.build_model()
    adapt_names = adapted_names(checkpoint.parameters, adapt_layers)
    history = inner_loop(model, checkpoint.parameters, checkpoint.buffers, task.support_x, task.support_y,
                         steps=steps, lr=lr, adapt=adapt_names, first_order=True)
    history = [{name: value.detach() for name, value in params.items()} for params in history]
    with torch.no_grad():
        support_out = [model.functional_forward(p, checkpoint.buffers, task.support_x) for p in history]
        query_out = [model.functional_forward(p, checkpoint.buffers, task.query_x) for p in history]
    losses = lambda outs, y: np.array([task_loss(o, y).item() for o in outs])  # noqa: E731
    accuracy = lambda outs, y: np.array([(o.argmax(-1) == y).float().mean().item() for o in outs])  # noqa: E731
    classification = not task.is_regression
    return AdaptationTrace(
        params=tuple(history), buffers=checkpoint.buffers,
        support_loss=losses(support_out, task.support_y), query_loss=losses(query_out, task.query_y),
        support_accuracy=accuracy(support_out, task.support_y) if classification else None,
        query_accuracy=accuracy(query_out, task.query_y) if classification else None,
        query_probabilities=np.stack([o.softmax(-1).numpy() for o in query_out]) if classification else None,
        query_outputs=np.stack([o.numpy() for o in query_out]), lr=lr,
        adapt_layers=tuple(dict.fromkeys(layer_of(n) for n in adapt_names)),
    )


def prediction_changes(trace: AdaptationTrace, query_y) -> dict[str, list[int]]:
    """Which new images' answers changed between step 0 and the last step, by kind:
    'fixed' (wrong, then right), 'broken' (right, then wrong), 'still_wrong' (wrong, then
    another wrong answer)."""
    query_y = np.asarray(query_y)
    before, after = trace.query_predictions[0], trace.query_predictions[-1]
    changed = np.flatnonzero(before != after)
    kinds = {"fixed": [], "broken": [], "still_wrong": []}
    for index in changed.tolist():
        if after[index] == query_y[index]:
            kinds["fixed"].append(index)
        elif before[index] == query_y[index]:
            kinds["broken"].append(index)
        else:
            kinds["still_wrong"].append(index)
    return kinds
