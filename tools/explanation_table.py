"""The table of docs/explanations.md: every attribution method through the randomisation test
(Adebayo et al. 2018) and deletion/insertion (Petsiuk et al. 2018) on a shipped checkpoint.

Prints a markdown table headed by the checkpoint's name and content hash, so a table in the
docs says which file it came from; rerun it after a checkpoint is re-exported:

    OMP_NUM_THREADS=1 METAVIZ_DATA_DIR=../shared/data/omniglot PYTHONPATH=. .venv/bin/python \\
        tools/explanation_table.py checkpoints/omniglot-5w1s-maml.safetensors --tasks 4

Tasks are meta-test tasks 0..tasks-1 (5 query images per class), the model fully adapted
(the checkpoint's inner steps), each map explaining the class the model predicts.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from metaviz.adaptation import adapt
from metaviz.checkpoints import load_checkpoint
from metaviz.explain import METHODS, attribute, network_for
from metaviz.tasks import sample_task
from metaviz.trust import deletion_insertion_curves, randomisation_test

COLUMNS = ("Spearman after head", "\\|Spearman\\| after head", "Spearman all random", "\\|Spearman\\| all random",
           "SSIM all random", "passes (of {tasks} tasks)", "deletion AUC (random)", "insertion AUC (random)")


def method_row(checkpoint, tasks: list, method: str) -> str:
    numbers, passes = [], 0
    for task, trace in tasks:
        step, images = trace.steps, task.query_x
        targets = trace.query_predictions[step]
        test = randomisation_test(checkpoint, trace, step, method, images, targets)
        maps = attribute(checkpoint, trace, step, method, images, targets).values
        curves = deletion_insertion_curves(network_for(checkpoint, trace.params[step], trace.buffers), images,
                                           targets, maps)
        passes += test.passed
        numbers.append([test.spearman[0], test.spearman_abs[0], test.spearman[-1], test.spearman_abs[-1],
                        test.ssim[-1]] + [curves.area(name).mean() for name in
                                          ("deletion", "random_deletion", "insertion", "random_insertion")])
    mean = np.mean(numbers, axis=0)
    cells = [f"{value:.2f}" for value in mean[:5]] + [
        f"{passes}/{len(tasks)}", f"{mean[5]:.3f} ({mean[6]:.3f})", f"{mean[7]:.3f} ({mean[8]:.3f})"]
    return f"| {method} | " + " | ".join(cells) + " |"


def completeness_line(checkpoint, tasks: list) -> str:
    """IG's relative completeness error over all query images, split by how far the score moved."""
    errors, changes = [], []
    for task, trace in tasks:
        result = attribute(checkpoint, trace, trace.steps, "Integrated Gradients", task.query_x)
        errors.extend(result.completeness)
        changes.extend(np.abs(result.score_change))
    errors, clear = np.array(errors), np.array(changes) >= 0.5
    return (f"Integrated Gradients (black page, 50 Gauss–Legendre steps, refined to 1%): median completeness "
            f"error {100 * np.median(errors):.2f}% over {len(errors)} query images; within 1% for "
            f"{(errors[clear] <= 0.01).sum()} of the {clear.sum()} whose score moved by at least 0.5 "
            f"and {(errors[~clear] <= 0.01).sum()} of the {(~clear).sum()} whose score moved less "
            f"(worst {100 * errors[~clear].max(initial=0):.1f}%).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    checkpoint = load_checkpoint(args.checkpoint)
    tasks = []
    for seed in range(args.tasks):
        task = sample_task(checkpoint.dataset, "test", checkpoint.ways, 1, 5, seed)
        tasks.append((task, adapt(checkpoint, task)))
    print(f"`{checkpoint.name}` (sha256 `{checkpoint.content_hash}`), step {checkpoint.inner_steps}, "
          f"{args.tasks} meta-test tasks × {len(tasks[0][0].query_x)} query images\n")
    print("| method | " + " | ".join(COLUMNS).format(tasks=args.tasks) + " |")
    print("| --- " * (len(COLUMNS) + 1) + "|")
    for method in args.methods:
        print(method_row(checkpoint, tasks, method), flush=True)
    print("\n" + completeness_line(checkpoint, tasks))
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
