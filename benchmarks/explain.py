"""Explanation speed on the shipped checkpoints: Integrated Gradients for 5 query images at one
adaptation step, every method at its defaults, and the model-parameter randomisation test for
each method, driven through the same progress callback the Saliency page's bar uses.

One torch thread (the project machine has 2 cores, usually shared with training jobs, where
torch's default two threads thrash). Prints median wall-clock times over `--repeats` runs.
Omniglot needs its data (METAVIZ_DATA_DIR); without it that checkpoint is left out, saying so.

    OMP_NUM_THREADS=1 METAVIZ_DATA_DIR=../shared/data/omniglot PYTHONPATH=. .venv/bin/python benchmarks/explain.py
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from metaviz.adaptation import adapt
from metaviz.checkpoints import load_checkpoint
from metaviz.data import DataNotFoundError
from metaviz.explain import METHODS, attribute
from metaviz.tasks import sample_task
from metaviz.trust import randomisation_test

CHECKPOINTS = {"digits": "checkpoints/digits-5w1s-maml.safetensors",
               "omniglot": "checkpoints/omniglot-5w1s-maml.safetensors"}


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up: captum imports, allocator
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def progress_bar(done: int, total: int) -> None:
    """A text progress bar on stderr, called as the page's st.progress is."""
    print(f"\r  [{'#' * done}{'.' * (total - done)}] {done}/{total} maps", end="\n" if done == total else "",
          file=sys.stderr, flush=True)


def rows_for(path: str, dataset: str, repeats: int, notes: list[str]) -> list[tuple[str, float]]:
    checkpoint = load_checkpoint(path)
    task = sample_task(dataset, "test", checkpoint.ways, 1, 5, seed=0)
    trace = adapt(checkpoint, task)
    queries = task.query_x[:: len(task.query_x) // checkpoint.ways][:5]  # one per class
    step = trace.steps
    targets = trace.query_predictions[step][:: len(task.query_x) // checkpoint.ways][:5]
    ig = "Integrated Gradients"
    rows = []
    for baseline in ("black", "blurred"):
        for n_steps in (32, 50):
            seconds = median_seconds(lambda: attribute(checkpoint, trace, step, ig, queries, n_steps=n_steps,
                                                       baseline=baseline, refine_to=None), repeats)
            rows.append((f"IG, {baseline}, {n_steps} Gauss–Legendre steps, 5 images", seconds))
        result = attribute(checkpoint, trace, step, ig, queries, baseline=baseline)
        seconds = median_seconds(lambda: attribute(checkpoint, trace, step, ig, queries, baseline=baseline), repeats)
        rows.append((f"IG, {baseline}, 50 steps, images above 1% error refined", seconds))
        notes.append(f"{checkpoint.name}, IG {baseline}, refined: steps used per image {result.settings['steps_used']}, "
                     f"worst completeness error {100 * result.completeness.max():.2f}%")
    for method in METHODS:
        if method != ig:
            seconds = median_seconds(lambda: attribute(checkpoint, trace, step, method, queries), repeats)
            rows.append((f"{method}, 5 images", seconds))
    for method in METHODS:
        print(f"{checkpoint.name}: randomisation test, {method}", file=sys.stderr)
        seconds = median_seconds(lambda: randomisation_test(checkpoint, trace, step, method, queries, targets,
                                                            progress=progress_bar), max(1, repeats // 3))
        rows.append((f"randomisation test, {method}, 5 layers, 5 images", seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=list(CHECKPOINTS), choices=list(CHECKPOINTS))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tables, notes = {}, []
    for dataset in args.datasets:
        try:
            tables[dataset] = rows_for(CHECKPOINTS[dataset], dataset, args.repeats, notes)
        except (OSError, DataNotFoundError) as error:  # Omniglot without its data: the rest still runs
            print(f"{dataset}: left out ({error})", file=sys.stderr)
    if not tables:
        raise SystemExit("nothing measured: no checkpoint could be run (see above)")
    names = [name for name, _ in next(iter(tables.values()))]
    width = max(map(len, names))
    print(f"median seconds, step = the checkpoint's last inner step, {torch.get_num_threads()} thread(s)\n")
    print(f"| {'what':{width}} | " + " | ".join(tables) + " |")
    print(f"| {'-' * width} | " + " | ".join("-" * len(dataset) + ":" for dataset in tables) + " |")
    for index, name in enumerate(names):
        cells = [f"{tables[dataset][index][1]:{len(dataset)}.3f}" for dataset in tables]
        print(f"| {name:{width}} | " + " | ".join(cells) + " |")
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
