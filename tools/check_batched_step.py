"""Before meta-training on another device (a GPU): checks that the batched MAML step
(`metaviz.batched`, which `metaviz train` uses for the conv net on every device) gives the
meta-gradient of the plain inner loop, task by task in float64, there; then times one step.
Exits non-zero when they differ.

The reference is float64 because the plain loop in float32 is not exact enough to judge by: on
this CPU its second-order meta-gradient (3 steps, the shipped omniglot-5w1s-maml) is 8e-3 off
float64 through oneDNN's convolutions (2e-6 with oneDNN switched off), the batched step 2e-6.

    METAVIZ_DATA_DIR=../shared/data/omniglot python tools/check_batched_step.py --device cuda

On an H100 (2026-11-26), against task by task in float32 on the 36,000-iteration file: worst
relative difference 2.3e-6; 66 ms a step at meta-batch 64 with 15 queries per class
(checkpoints/README.md, the fifth try).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np
import torch

from metaviz import training
from metaviz.adaptation import adapted_names, inner_loop, task_loss
from metaviz.checkpoints import load_checkpoint

TOLERANCE = 1e-4  # of each parameter's largest gradient entry


def meta_gradient(checkpoint, model, tasks, config, device, together: bool,
                  dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    params = {name: value.to(device, dtype).clone().requires_grad_() for name, value in checkpoint.parameters.items()}
    names = adapted_names(params, None)
    if together:
        training.meta_batch_step(model, params, names, tasks, config)
    else:
        loss = sum(task_loss(model.functional_forward(
            inner_loop(model, params, {}, task.support_x, task.support_y, steps=config.train_steps,
                       lr=config.inner_lr, adapt=names)[-1], {}, task.query_x), task.query_y) for task in tasks)
        (loss / len(tasks)).backward()
    return {name: value.grad for name, value in params.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--checkpoint", default="checkpoints/omniglot-5w1s-maml.safetensors")
    parser.add_argument("--meta-batch", type=int, default=64)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    # Full float32: TF32 convolutions alone would differ by about 1e-3.
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.device(args.device)
    synchronise = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    checkpoint = load_checkpoint(args.checkpoint)
    model = checkpoint.build_model().to(device)
    config = training.TrainConfig(dataset=checkpoint.dataset, queries=args.queries, meta_batch=args.meta_batch,
                                  train_steps=args.steps, inner_lr=checkpoint.inner_lr, device=device.type)
    source = training.TaskSource(config, "train", args.queries)
    rng = np.random.default_rng(0)
    tasks = [training.task_on(source.sample(rng), device) for _ in range(8)]
    together = meta_gradient(checkpoint, model, tasks, config, device, together=True)
    tasks_64 = [dataclasses.replace(task, support_x=task.support_x.double(), query_x=task.query_x.double())
                for task in tasks]
    reference = meta_gradient(checkpoint, model, tasks_64, config, device, together=False, dtype=torch.float64)
    worst = max(float((together[name].double() - gradient).abs().max() / gradient.abs().max().clamp_min(1e-12))
                for name, gradient in reference.items())
    print(f"{device}: batched meta-gradient against task by task in float64, worst relative difference {worst:.1e}")
    if not worst < TOLERANCE:
        sys.exit(f"the batched step differs on {device} (tolerance {TOLERANCE:g})")
    params = {name: value.to(device).clone().requires_grad_() for name, value in checkpoint.parameters.items()}
    names = adapted_names(params, None)
    for count in (2, args.repeats):  # the first round warms up
        synchronise()
        start = time.perf_counter()
        for _ in range(count):
            batch = [training.task_on(source.sample(rng), device) for _ in range(args.meta_batch)]
            training.meta_batch_step(model, params, names, batch, config)
        synchronise()
    step = (time.perf_counter() - start) / args.repeats
    print(f"{device}: one batched step, meta-batch {args.meta_batch}, {args.queries} queries per class, "
          f"{args.steps} inner steps: {1000 * step:.0f} ms")


if __name__ == "__main__":
    main()
