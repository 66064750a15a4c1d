"""Explanation speed: Integrated Gradients for 5 query images at one adaptation step, and the
model-parameter randomisation test for one method, on the shipped digits checkpoint.

One torch thread (the project machine has 2 cores, usually shared with training jobs, where
torch's default two threads thrash). Prints median wall-clock times over `--repeats` runs.

    PYTHONPATH=. .venv/bin/python benchmarks/explain.py
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from metaviz.adaptation import adapt
from metaviz.checkpoints import load_checkpoint
from metaviz.explain import attribute
from metaviz.trust import randomisation_test
from metaviz.tasks import sample_task


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up: captum imports, allocator
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/digits-5w1s-maml.safetensors")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = load_checkpoint(args.checkpoint)
    task = sample_task(args.dataset, "test", checkpoint.ways, 1, 5, seed=0)
    trace = adapt(checkpoint, task)
    queries = task.query_x[:: len(task.query_x) // checkpoint.ways][:5]  # one per class
    step = trace.steps
    targets = trace.query_predictions[step][:: len(task.query_x) // checkpoint.ways][:5]
    rows = []
    for baseline in ("black", "blurred"):
        for n_steps in (32, 50):
            seconds = median_seconds(lambda: attribute(checkpoint, trace, step, "Integrated Gradients", queries,
                                                       n_steps=n_steps, baseline=baseline, refine_to=None),
                                     args.repeats)
            rows.append((f"IG, {baseline}, {n_steps} steps, 5 images", seconds))
        result = attribute(checkpoint, trace, step, "Integrated Gradients", queries, baseline=baseline)
        seconds = median_seconds(lambda: attribute(checkpoint, trace, step, "Integrated Gradients", queries,
                                                   baseline=baseline), args.repeats)
        rows.append((f"IG, {baseline}, 50 steps refined to 1% (steps used {result.settings['steps_used']})",
                     seconds))
    for method in ("Saliency", "Integrated Gradients"):
        seconds = median_seconds(lambda: randomisation_test(checkpoint, trace, step, method, queries, targets),
                                 max(1, args.repeats // 2))
        rows.append((f"randomisation test, {method}, 5 layers, 5 images", seconds))
    width = max(len(name) for name, _ in rows)
    print(f"{checkpoint.name}, step {step}, {torch.get_num_threads()} thread(s)")
    print(f"| {'what':{width}} | median s |\n| {'-' * width} | -------: |")
    for name, seconds in rows:
        print(f"| {name:{width}} | {seconds:8.3f} |")


if __name__ == "__main__":
    main()
