"""How much of a LIME or Kernel SHAP map is sampling noise (the figures in docs/explanations.md):
each map drawn twice, with seeds 0 and 1, and the two compared image by image (rank correlation,
metaviz.explain_sampled.seed_agreement), for a few sample budgets; also the time per image and
Kernel SHAP's completeness error.

    OMP_NUM_THREADS=1 METAVIZ_DATA_DIR=../shared/data/omniglot PYTHONPATH=. .venv/bin/python \\
        tools/sampled_agreement.py checkpoints/omniglot-5w1s-maml.safetensors --tasks 2 --samples 200 1000

Tasks are meta-test tasks 0..tasks-1 (5 query images per class), the model fully adapted (the
checkpoint's inner steps), each map explaining the class the model predicts, 4 x 4-pixel pieces.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from metaviz.adaptation import adapt
from metaviz.checkpoints import load_checkpoint
from metaviz.explain import attribute
from metaviz.explain_sampled import seed_agreement
from metaviz.tasks import sample_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--samples", type=int, nargs="+", default=[200, 1000])
    args = parser.parse_args()
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(args.checkpoint)
    tasks = []
    for seed in range(args.tasks):
        task = sample_task(checkpoint.dataset, checkpoint.test_split, ways=checkpoint.ways, shots=checkpoint.shots,
                           queries=5, seed=seed)
        tasks.append((task, adapt(checkpoint, task)))
    print(f"`{checkpoint.name}` (sha256 `{checkpoint.content_hash}`), step {checkpoint.inner_steps}, "
          f"{args.tasks} meta-test tasks x {len(tasks[0][0].query_x)} query images, 4 x 4-pixel pieces")
    print()
    print("| method | copies per image | agreement of two runs: median | 10th percentile | lowest "
          "| completeness error (median) | seconds per image |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for method in ("LIME", "Kernel SHAP"):
        for samples in args.samples:
            agreement, completeness, seconds, images = [], [], 0.0, 0
            for task, trace in tasks:
                started = time.perf_counter()
                first = attribute(checkpoint, trace, trace.steps, method, task.query_x, n_samples=samples)
                seconds += time.perf_counter() - started
                second = attribute(checkpoint, trace, trace.steps, method, task.query_x, n_samples=samples, seed=1)
                agreement.extend(seed_agreement(first.values, second.values))
                if first.completeness is not None:
                    completeness.extend(first.completeness)
                images += len(task.query_x)
            agreement = np.asarray(agreement)
            complete = f"{100 * np.median(completeness):.2f}%" if completeness else "— (no promise)"
            print(f"| {method} | {samples} | {np.median(agreement):.2f} | {np.percentile(agreement, 10):.2f} "
                  f"| {agreement.min():.2f} | {complete} | {seconds / images:.2f} |", flush=True)


if __name__ == "__main__":
    main()
