"""Meta-training step: metaviz's second-order MAML step against learn2learn's, same run.

Same model (the 4-block conv net), same weights, same Omniglot 5-way 1-shot tasks
(1 query per class, as in the MAML paper), meta-batch 32, one inner step of 0.4, Adam.

    METAVIZ_DATA_DIR=../shared/data/omniglot .venv/bin/python benchmarks/training.py
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from metaviz.adaptation import inner_loop, task_loss
from metaviz.data import load_classes
from metaviz.models import ConvNetConfig, build_model
from metaviz.tasks import TaskSampler


def metaviz_step(model, params, optimizer, batch, steps, lr):
    optimizer.zero_grad(set_to_none=True)
    names = tuple(params)
    for task in batch:
        adapted = inner_loop(model, params, {}, task.support_x, task.support_y, steps=steps, lr=lr, adapt=names)[-1]
        (task_loss(model.functional_forward(adapted, {}, task.query_x), task.query_y) / len(batch)).backward()
    optimizer.step()


def learn2learn_step(maml, optimizer, batch, steps):
    optimizer.zero_grad(set_to_none=True)
    for task in batch:
        learner = maml.clone()
        for _ in range(steps):
            learner.adapt(task_loss(learner(task.support_x), task.support_y))
        (task_loss(learner(task.query_x), task.query_y) / len(batch)).backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1)
    args = parser.parse_args()
    import learn2learn

    torch.manual_seed(0)
    model = build_model(ConvNetConfig())
    sampler = TaskSampler(load_classes("omniglot", "train"), ways=5, shots=1, queries=1)
    batches = [[sampler.sample(np.random.default_rng([i, j])) for j in range(args.meta_batch)]
               for i in range(args.iterations + 1)]

    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    maml = learn2learn.algorithms.MAML(copy.deepcopy(model), lr=0.4)
    l2l_optimizer = torch.optim.Adam(maml.parameters(), lr=1e-3)

    # Warm-up on the first batch, then check both took the same step.
    metaviz_step(model, params, optimizer, batches[0], args.steps, 0.4)
    learn2learn_step(maml, l2l_optimizer, batches[0], args.steps)
    difference = max((params[k] - p).abs().max().item() for k, p in maml.module.named_parameters())

    # Interleaved, so drifting load on a shared machine hits both alike.
    steps = {"learn2learn MAML": lambda b: learn2learn_step(maml, l2l_optimizer, b, args.steps),
             "metaviz": lambda b: metaviz_step(model, params, optimizer, b, args.steps, 0.4)}
    timings = dict.fromkeys(steps, 0.0)
    for batch in batches[1:]:
        for name, step in steps.items():
            start = time.perf_counter()
            step(batch)
            timings[name] += (time.perf_counter() - start) / args.iterations

    print(f"second-order MAML step, Omniglot 5-way 1-shot, meta-batch {args.meta_batch}, {args.steps} inner "
          f"step(s); torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'implementation':<20}{'s/step':>9}{'steps/s':>9}{'vs l2l':>9}")
    for name, seconds in timings.items():
        print(f"{name:<20}{seconds:>9.3f}{1 / seconds:>9.2f}{timings['learn2learn MAML'] / seconds:>8.2f}x")
    print(f"max |metaviz - learn2learn| after the warm-up step: {difference:.2e}")


if __name__ == "__main__":
    main()
