"""Reptile (Nichol, Achiam & Schulman 2018, "On First-Order Meta-Learning Algorithms").

Per task: a few plain gradient steps from θ on mini-batches of the task's examples, giving φ.
Meta-update (the paper's batched version): θ ← θ + ε · mean over tasks of (φ − θ), with the
outer step size ε annealed linearly over training (1 → 0 in the paper's Omniglot runs).

The inner steps are SGD, not the paper's Adam (β₁ = 0): the dashboard replays adaptation as
plain gradient steps of the checkpoint's inner step size (metaviz.adaptation.adapt), so the
inner loop a checkpoint was meta-trained with must be the one its users watch.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from metaviz import batched
from metaviz.adaptation import Params, inner_loop


def outer_step_size(iteration: int, iterations: int, start: float, final: float) -> float:
    """ε at `iteration` (0-based) of `iterations`: linear from `start` to `final`, as the paper's
    `frac_done * final + (1 - frac_done) * start`."""
    done = iteration / max(iterations, 1)
    return done * final + (1.0 - done) * start


def inner_batches(count: int, steps: int, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Example indices for each of `steps` inner steps: consecutive slices of a shuffled order,
    reshuffled when used up (the paper's mini-batches without replacement). `batch` 0 or at
    least `count`: every step sees all examples."""
    if batch <= 0 or batch >= count:
        return [np.arange(count)] * steps
    order, batches = rng.permutation(count), []
    while len(batches) < steps:
        if len(order) < batch:
            order = np.concatenate([order, rng.permutation(count)])
        batches.append(order[:batch])
        order = order[batch:]
    return batches


def adapt_to_task(model: torch.nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, *, steps: int,
                  lr: float, adapt: tuple[str, ...], batch: int, rng: np.random.Generator) -> Params:
    """φ: `steps` SGD steps from `params` on mini-batches of (x, y); nothing tracks θ's graph."""
    current = {name: value.detach() for name, value in params.items()}
    for indices in inner_batches(len(x), steps, batch, rng):
        index = torch.as_tensor(indices, device=x.device)
        current = inner_loop(model, current, {}, x[index], y[index], steps=1, lr=lr, adapt=adapt, first_order=True)[-1]
    return {name: value.detach() for name, value in current.items()}


def adapt_tasks_together(model: torch.nn.Module, params: Params, xs: Sequence[torch.Tensor],
                         ys: Sequence[torch.Tensor], step_indices: Sequence[list[np.ndarray]], *, lr: float,
                         adapt: tuple[str, ...]) -> list[Params]:
    """adapt_to_task for several tasks at once (metaviz.batched: the conv net), each task t
    stepping on the mini-batches step_indices[t] (drawn by inner_batches, in the caller's
    order, so the data are those task by task would see); the same φ within float32 rounding."""
    steps = [(torch.stack([x[torch.as_tensor(indices[step])] for x, indices in zip(xs, step_indices)]),
              torch.stack([y[torch.as_tensor(indices[step])] for y, indices in zip(ys, step_indices)]))
             for step in range(len(step_indices[0]))]
    *_, last = batched.steps_on_batches(model, params, adapt, len(xs), steps, lr)
    moved = {name: batched.from_matmul_layout(name, last[name].detach(), params[name].shape) for name in adapt}
    fixed = {name: value.detach() for name, value in params.items()}
    return [fixed | {name: value[task] for name, value in moved.items()} for task in range(len(xs))]


@torch.no_grad()
def meta_update(params: Params, adapted: Sequence[Params], step_size: float) -> None:
    """θ ← θ + ε · mean(φ_task − θ), in place on the meta-parameters."""
    for name, value in params.items():
        mean_update = torch.stack([phi[name] - value for phi in adapted]).mean(0)
        value.add_(step_size * mean_update)
