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
from metaviz.allocator import keep_freed_memory
from metaviz.data import load_classes
from metaviz.models import ConvNetConfig, build_model
from metaviz.tasks import TaskSampler
from metaviz.training import TrainConfig, meta_batch_step
from verdicts import record


def metaviz_step(model, params, optimizer, batch, steps, lr):
    """What `metaviz train` does for MAML on the conv net: the meta-batch at once (metaviz.batched)."""
    optimizer.zero_grad(set_to_none=True)
    meta_batch_step(model, params, tuple(params), batch, TrainConfig(train_steps=steps, inner_lr=lr))
    optimizer.step()


def metaviz_task_by_task_step(model, params, optimizer, batch, steps, lr):
    """The same step one task at a time (metaviz.adaptation.inner_loop; MLPs and sine waves train so)."""
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
    keep_freed_memory()  # as the dashboard and `metaviz train` run; learn2learn's side shares it
    import learn2learn

    torch.manual_seed(0)
    model = build_model(ConvNetConfig())
    sampler = TaskSampler(load_classes("omniglot", "train"), ways=5, shots=1, queries=1)
    batches = [[sampler.sample(np.random.default_rng([i, j])) for j in range(args.meta_batch)]
               for i in range(args.iterations + 1)]

    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    eager_params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    eager_optimizer = torch.optim.Adam(eager_params.values(), lr=1e-3)
    maml = learn2learn.algorithms.MAML(copy.deepcopy(model), lr=0.4)
    l2l_optimizer = torch.optim.Adam(maml.parameters(), lr=1e-3)

    # Warm-up on the first batch, then check both took the same step.
    # Warm-up on the first batch; the check compares meta-gradients (after Adam's first step a
    # rounding-level difference in a near-zero gradient can flip that parameter's step).
    metaviz_step(model, params, optimizer, batches[0], args.steps, 0.4)
    metaviz_task_by_task_step(model, eager_params, eager_optimizer, batches[0], args.steps, 0.4)
    learn2learn_step(maml, l2l_optimizer, batches[0], args.steps)
    difference = max(((params[k].grad - p.grad).abs().max() / p.grad.abs().max()).item()
                     for k, p in maml.module.named_parameters())

    # Interleaved, so drifting load on a shared machine hits all alike; CPU time (one thread), which
    # other processes on the machine inflate less than wall time.
    steps = {"learn2learn MAML": lambda b: learn2learn_step(maml, l2l_optimizer, b, args.steps),
             "metaviz task by task": lambda b: metaviz_task_by_task_step(model, eager_params, eager_optimizer, b,
                                                                         args.steps, 0.4),
             "metaviz (train)": lambda b: metaviz_step(model, params, optimizer, b, args.steps, 0.4)}
    timings = dict.fromkeys(steps, 0.0)
    for batch in batches[1:]:
        for name, step in steps.items():
            start = time.process_time()
            step(batch)
            timings[name] += (time.process_time() - start) / args.iterations

    print(f"second-order MAML step, Omniglot 5-way 1-shot, meta-batch {args.meta_batch}, {args.steps} inner "
          f"step(s); torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'implementation':<24}{'CPU s/step':>11}{'steps/s':>9}{'vs l2l':>9}")
    for name, seconds in timings.items():
        print(f"{name:<24}{seconds:>11.3f}{1 / seconds:>9.2f}{timings['learn2learn MAML'] / seconds:>8.2f}x")
    print(f"largest meta-gradient difference, metaviz (train) vs learn2learn, relative to the layer's largest: "
          f"{difference:.2e}")
    ratio = timings["learn2learn MAML"] / timings["metaviz (train)"]
    record("meta-training step >= 1.5x learn2learn", f"{ratio:.2f}x (CPU time)", ratio >= 1.5, "benchmarks/training.py")


if __name__ == "__main__":
    main()
