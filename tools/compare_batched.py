"""Another version of metaviz/batched.py against this one, interleaved in one process: the
adaptation (200 Omniglot 5-way 1-shot tasks x 5 steps, batches of 20, first order) and a
second-order meta-training step (meta-batch 32, 3 steps, 5 queries), best of N each, with the
largest differences in their results. For A/B checks of a change on this noisy shared machine:

    git show HEAD~1:metaviz/batched.py > /tmp/batched_before.py
    METAVIZ_DATA_DIR=../shared/data/omniglot OMP_NUM_THREADS=1 .venv/bin/python tools/compare_batched.py /tmp/batched_before.py
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metaviz import batched  # noqa: E402
from metaviz.allocator import keep_freed_memory  # noqa: E402
from metaviz.data import load_classes  # noqa: E402
from metaviz.models import ConvNetConfig, build_model  # noqa: E402
from metaviz.tasks import TaskSampler  # noqa: E402


def load_module(path: str):
    spec = importlib.util.spec_from_file_location("batched_other", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stacked(tasks, field: str) -> torch.Tensor:
    return torch.stack([getattr(task, field) for task in tasks])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", help="path of the other batched.py")
    parser.add_argument("--repeats", type=int, default=12)
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(ConvNetConfig())
    params = {name: value.detach() for name, value in model.named_parameters()}
    names = tuple(params)
    test = TaskSampler(load_classes("omniglot", "test"), ways=5, shots=1, queries=1)
    tasks = [test.sample(np.random.default_rng([0, i])) for i in range(200)]
    batches = [(stacked(tasks[i : i + 20], "support_x"), stacked(tasks[i : i + 20], "support_y"))
               for i in range(0, 200, 20)]
    train = TaskSampler(load_classes("omniglot", "train"), ways=5, shots=1, queries=5)
    meta_batch = [train.sample(np.random.default_rng([1, i])) for i in range(32)]
    leaves = {name: value.clone().requires_grad_() for name, value in params.items()}

    def adapt(module):
        return [module.adapt_tasks(model, params, names, x, y, 5, 0.4) for x, y in batches]

    def meta_step(module):
        loss, _ = module.meta_objective(model, leaves, names, *(stacked(meta_batch, field) for field in
                                        ("support_x", "support_y", "query_x", "query_y")), 3, 0.4)
        return torch.autograd.grad(loss, list(leaves.values()))

    modules = {"other": load_module(args.other), "this": batched}
    adapted = {label: adapt(module) for label, module in modules.items()}
    gradients = {label: meta_step(module) for label, module in modules.items()}
    print("max |adapted difference|: %.1e" % max((a[k] - b[k]).abs().max().item()
                                                 for a, b in zip(adapted["other"], adapted["this"]) for k in a))
    print("max meta-gradient difference (relative to each tensor's largest entry): %.1e" % max(
        ((a - b).abs().max() / a.abs().max()).item() for a, b in zip(gradients["other"], gradients["this"])))
    for work, function in (("adaptation, 200 tasks x 5 steps", adapt), ("meta-training step", meta_step)):
        best = dict.fromkeys(modules, float("inf"))
        for _ in range(args.repeats):
            for label, module in modules.items():
                start = time.perf_counter()
                function(module)
                best[label] = min(best[label], time.perf_counter() - start)
        print(f"{work}: other {best['other']:.3f} s, this {best['this']:.3f} s, "
              f"this is {best['other'] / best['this']:.3f}x as fast (best of {args.repeats})")


if __name__ == "__main__":
    main()
