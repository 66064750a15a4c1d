"""The Layers page's work over many tasks: update statistics (norms, cosine, CKA) and the
layer-freeze ablation, against the straightforward way of computing the same numbers.

The peer is `metaviz.adaptation.adapt()` called once per task and per ablation setting, with
the representations for CKA from separate forward passes: what a page would do without
metaviz.updates. Both run on the same tasks in the same run; the script checks that they
give the same numbers and prints seconds and the ratio.

    METAVIZ_DATA_DIR=../shared/data/omniglot OMP_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/layers.py checkpoints/omniglot-5w1s-maml.safetensors --tasks 100
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from metaviz.adaptation import adapt
from metaviz.checkpoints import load_checkpoint
from metaviz.training import meta_test_tasks
from metaviz.updates import ablation_settings, freeze_ablation, layer_statistics, linear_cka


def plain_statistics(checkpoint, tasks):
    """Per task: adapt() with every step's parameters kept, then both representations."""
    model = checkpoint.build_model()
    cka, accuracy = [], []
    for task in tasks:
        trace = adapt(checkpoint, task, model=model)
        with torch.no_grad():
            before = model.functional_layer_outputs(trace.params[0], trace.buffers, task.query_x)
            after = model.functional_layer_outputs(trace.params[-1], trace.buffers, task.query_x)
        cka.append([linear_cka(before[layer], after[layer]) for layer in checkpoint.layers])
        accuracy.append(trace.query_accuracy[-1])
    return np.array(cka), np.array(accuracy)


def plain_ablation(checkpoint, tasks):
    model = checkpoint.build_model()
    return np.array([[adapt(checkpoint, task, adapt_layers=layers, model=model).query_accuracy[-1] for task in tasks]
                     for _, layers in ablation_settings(checkpoint.layers)])


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = load_checkpoint(args.checkpoint)
    tasks = list(meta_test_tasks(checkpoint, args.tasks))  # loads the data: not part of the timings
    layer_statistics(checkpoint, tasks=2)  # warm-up (allocator, first-call dispatch)

    statistics_seconds, statistics = timed(layer_statistics, checkpoint, tasks=args.tasks,
                                           adapt_layers=checkpoint.layers)
    plain_statistics_seconds, (cka, accuracy) = timed(plain_statistics, checkpoint, tasks)
    ablation_seconds, rows = timed(freeze_ablation, checkpoint, tasks=args.tasks)
    plain_ablation_seconds, plain_rows = timed(plain_ablation, checkpoint, tasks)

    # Same numbers, or the timing means nothing.
    np.testing.assert_allclose(statistics.cka, cka, atol=1e-5)
    np.testing.assert_allclose(statistics.query_metric, accuracy, atol=1e-6)
    np.testing.assert_allclose(np.stack([row.per_task for row in rows]), plain_rows, atol=1e-6)

    print(f"{checkpoint.name}: {args.tasks} tasks of {tasks[0].query_x.shape[0]} query images, "
          f"{checkpoint.inner_steps} steps, {args.threads} thread(s)")
    print("| work | metaviz.updates (s) | plain adapt() loop (s) | speed-up |")
    print("| --- | --- | --- | --- |")
    print(f"| update statistics + CKA | {statistics_seconds:.2f} | {plain_statistics_seconds:.2f} | "
          f"{plain_statistics_seconds / statistics_seconds:.2f}× |")
    print(f"| freeze ablation ({len(rows)} settings) | {ablation_seconds:.2f} | {plain_ablation_seconds:.2f} | "
          f"{plain_ablation_seconds / ablation_seconds:.2f}× |")
    total, plain_total = statistics_seconds + ablation_seconds, plain_statistics_seconds + plain_ablation_seconds
    print(f"| the page's 'Measure' (both) | {total:.2f} | {plain_total:.2f} | {plain_total / total:.2f}× |")


if __name__ == "__main__":
    main()
