"""Adaptation throughput: metaviz's functional inner loop against learn2learn's clone/adapt.

All adapt the same weights on the same 200 Omniglot 5-way 1-shot tasks for 5 steps (first
order: the dashboard never needs second-order graphs for display): metaviz task by task (as a
single task on the Adaptation page), metaviz.batched a batch of tasks at a time (as the task
embeddings do), learn2learn task by task. Prints tasks/s,
the ratio, and the achieved GFLOP/s as a fraction of this machine's float32 matmul rate
measured in the same run. First on one thread each; then on the whole machine, as the task
embeddings run: learn2learn with torch's threads on every core, metaviz.batched with one
worker thread per core (each with one torch thread, a batch of tasks at a time).

    METAVIZ_DATA_DIR=../shared/data/omniglot .venv/bin/python benchmarks/adaptation.py
"""
from __future__ import annotations

import argparse
import copy
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from metaviz.adaptation import inner_loop, task_loss
from metaviz.allocator import keep_freed_memory
from metaviz.batched import adapt_tasks
from metaviz.data import load_classes
from metaviz.models import ConvNetConfig, build_model
from metaviz.embed import BATCH_SIZE, WORKERS
from metaviz.tasks import TaskSampler
from verdicts import record


def matmul_gflops(size: int = 1024, repeats: int = 5, rounds: int = 5) -> float:
    """The best of `rounds` timings: on a shared machine one timing can read low (66 against 82
    GFLOP/s in two runs of the same day), which would inflate every "% of peak"."""
    a, b = torch.rand(size, size), torch.rand(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best / 1e9


def adapt_metaviz(model, tasks, steps, lr):
    params = {k: v.detach() for k, v in model.named_parameters()}
    names = tuple(params)
    return [inner_loop(model, params, {}, t.support_x, t.support_y, steps=steps, lr=lr, adapt=names,
                       first_order=True)[-1] for t in tasks]


def adapt_metaviz_batched(model, tasks, steps, lr, batch_size=BATCH_SIZE):
    """metaviz.batched, as the task-embedding page adapts its tasks: a batch at a time."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    names = tuple(params)
    results = []
    for start in range(0, len(tasks), batch_size):
        batch = tasks[start : start + batch_size]
        adapted = adapt_tasks(model, params, names, torch.stack([t.support_x for t in batch]),
                              torch.stack([t.support_y for t in batch]), steps, lr)
        results += [{name: value[index] for name, value in adapted.items()} for index in range(len(batch))]
    return results


def adapt_metaviz_workers(model, tasks, steps, lr, workers=WORKERS, batch_size=BATCH_SIZE):
    """metaviz.batched on `workers` threads side by side, as metaviz.embed.collect_updates runs."""
    batches = [tasks[start : start + batch_size] for start in range(0, len(tasks), batch_size)]
    with ThreadPoolExecutor(workers) as pool:
        return [adapted for batch in pool.map(lambda batch: adapt_metaviz_batched(model, batch, steps, lr), batches)
                for adapted in batch]


def adapt_learn2learn(model, tasks, steps, lr):
    import learn2learn

    maml = learn2learn.algorithms.MAML(model, lr=lr, first_order=True)
    results = []
    for task in tasks:
        learner = maml.clone()
        for _ in range(steps):
            learner.adapt(task_loss(learner(task.support_x), task.support_y))
        results.append(dict(learner.module.named_parameters()))
    return results


def best_times(functions: dict, repeats: int, threads: dict | None = None) -> dict:
    """Best of `repeats` for each function, interleaved so drifting load hits all alike;
    `threads`: torch's thread count for each function (default: one)."""
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(repeats):
        for name, function in functions.items():
            torch.set_num_threads((threads or {}).get(name, 1))
            start = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    keep_freed_memory()  # as the dashboard and `metaviz train` run; learn2learn's side shares it

    torch.manual_seed(0)
    model = build_model(ConvNetConfig())
    sampler = TaskSampler(load_classes("omniglot", "test"), ways=5, shots=1, queries=1)
    tasks = [sampler.sample(np.random.default_rng([0, i])) for i in range(args.tasks)]

    ours = adapt_metaviz(model, tasks[:3], args.steps, 0.4)
    theirs = adapt_learn2learn(copy.deepcopy(model), tasks[:3], args.steps, 0.4)
    max_difference = max((o[k] - t[k]).abs().max().item() for o, t in zip(ours, theirs) for k in o)
    together = adapt_metaviz_batched(model, tasks[:BATCH_SIZE], args.steps, 0.4)
    eager = adapt_metaviz(model, tasks[:BATCH_SIZE], args.steps, 0.4)
    batched_difference = max((o[k] - e[k]).abs().max().item() for o, e in zip(together, eager) for k in o)

    with FlopCounterMode(display=False) as counter:
        adapt_metaviz(model, tasks[:1], args.steps, 0.4)
    flops_per_task = counter.get_total_flops()

    torch.set_num_threads(1)
    peak = matmul_gflops()
    l2l_model = copy.deepcopy(model)
    seconds = best_times({"learn2learn clone/adapt": lambda: adapt_learn2learn(l2l_model, tasks, args.steps, 0.4),
                          "metaviz inner_loop": lambda: adapt_metaviz(model, tasks, args.steps, 0.4),
                          f"metaviz batched ({BATCH_SIZE})": lambda: adapt_metaviz_batched(model, tasks, args.steps, 0.4)},
                         args.repeats)
    peak = max(peak, matmul_gflops())  # again after the timings: the higher reading of the two
    print(f"{args.tasks} Omniglot 5-way 1-shot tasks x {args.steps} steps, torch {torch.__version__}; "
          f"float32 matmul peak {peak:.1f} GFLOP/s on one thread; load average {os.getloadavg()[0]:.1f}")
    print_rows("One thread each", seconds, args.tasks, flops_per_task, peak)

    cores = os.cpu_count() or 1
    whole = best_times({"learn2learn clone/adapt": lambda: adapt_learn2learn(l2l_model, tasks, args.steps, 0.4),
                        f"metaviz batched, {cores} workers": lambda: adapt_metaviz_workers(
                            model, tasks, args.steps, 0.4, workers=cores)},
                       args.repeats, threads={"learn2learn clone/adapt": cores})
    print_rows(f"The whole machine ({cores} cores): learn2learn on {cores} torch threads, metaviz on {cores} "
               "worker threads of one torch thread", whole, args.tasks, flops_per_task, peak * cores)
    threaded = adapt_metaviz_workers(model, tasks[:2 * BATCH_SIZE], args.steps, 0.4, workers=cores)
    threaded_difference = max((o[k] - e[k]).abs().max().item() for o, e in
                              zip(threaded, adapt_metaviz_batched(model, tasks[:2 * BATCH_SIZE], args.steps, 0.4))
                              for k in o)
    command = "benchmarks/adaptation.py"
    batched_name = f"metaviz batched ({BATCH_SIZE})"
    one_thread = seconds["learn2learn clone/adapt"] / seconds[batched_name]
    record("adaptation >= 2x learn2learn, one thread each", f"{one_thread:.2f}x", one_thread >= 2, command)
    machine = whole["learn2learn clone/adapt"] / whole[f"metaviz batched, {cores} workers"]
    record("adaptation >= 2x learn2learn, the whole machine", f"{machine:.2f}x", machine >= 2, command)
    share = flop_rate(flops_per_task, args.tasks, seconds[batched_name]) / peak
    record("adaptation FLOP rate >= 50% of the matmul rate (aim)", f"{100 * share:.1f}% of {peak:.1f} GFLOP/s",
           share >= 0.5, command)
    print(f"max |metaviz - learn2learn| over adapted parameters: {max_difference:.2e}")
    print(f"max |batched - inner_loop| over adapted parameters ({BATCH_SIZE} tasks): {batched_difference:.2e}")
    print(f"max |batched on {cores} workers - batched| ({2 * BATCH_SIZE} tasks): {threaded_difference:.2e}")


def flop_rate(flops_per_task: float, tasks: int, seconds: float) -> float:
    """GFLOP/s of `tasks` adaptations that took `seconds`."""
    return flops_per_task * tasks / seconds / 1e9


def print_rows(title: str, seconds: dict, tasks: int, flops_per_task: float, peak: float) -> None:
    """tasks/s, GFLOP/s and its share of `peak`, and the ratio to learn2learn, one row each."""
    l2l_seconds = seconds["learn2learn clone/adapt"]
    print(f"\n{title}; % of peak: of {peak:.1f} GFLOP/s")
    print(f"{'implementation':<34}{'tasks/s':>10}{'GFLOP/s':>10}{'% of peak':>11}{'vs l2l':>9}")
    for name, time_taken in seconds.items():
        gflops = flop_rate(flops_per_task, tasks, time_taken)
        print(f"{name:<34}{tasks / time_taken:>10.1f}{gflops:>10.2f}{100 * gflops / peak:>10.1f}%"
              f"{l2l_seconds / time_taken:>8.2f}x")


if __name__ == "__main__":
    main()
