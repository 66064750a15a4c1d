"""Page timings: the Adaptation page's work, from the start of the page's work to its figures ready.

For each shipped checkpoint that can run here (digits always; Omniglot when its data and
checkpoints/omniglot-5w1s-maml.safetensors exist): sample one 5-way 1-shot task, adapt it for
10 steps, build the page's figures (loss/accuracy curves, the step-by-step predictions with
one animation frame per step, the changed answers) and serialise them to JSON as
st.plotly_chart does. "first" includes loading the checkpoint and the data split (cached
after a page's first run); "rerun" is what a changed setting costs (median of the repeats).

    METAVIZ_DATA_DIR=../shared/data/omniglot .venv/bin/python benchmarks/pages.py
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from metaviz.adaptation import adapt
from metaviz.checkpoints import load_checkpoint
from metaviz.data import DataNotFoundError, load_classes
from metaviz.figures import adaptation_curves, flipped_predictions, query_predictions
from metaviz.tasks import sample_task

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
STEPS = 10


def page_work(checkpoint, seed: int) -> dict[str, float]:
    """One run of the Adaptation page's work; seconds per phase."""
    times = {}
    start = time.perf_counter()
    task = sample_task(checkpoint.dataset, checkpoint.test_split, ways=5, shots=1, queries=5, seed=seed)
    times["task"] = time.perf_counter() - start
    mark = time.perf_counter()
    trace = adapt(checkpoint, task, steps=STEPS)
    times["adapt"] = time.perf_counter() - mark
    mark = time.perf_counter()
    figures = [adaptation_curves(trace), query_predictions(task, trace, STEPS), flipped_predictions(task, trace)]
    for figure in figures:
        if figure is not None:
            figure.to_json()
    times["figures"] = time.perf_counter() - mark
    times["total"] = time.perf_counter() - start
    return times


def measure(path: Path, repeats: int) -> dict[str, float] | str:
    start = time.perf_counter()
    checkpoint = load_checkpoint(path)
    try:
        load_classes(checkpoint.dataset, checkpoint.test_split)
    except DataNotFoundError as error:
        return f"skipped: {error}"
    first = page_work(checkpoint, seed=0)
    result = {"first": time.perf_counter() - start}
    runs = [page_work(checkpoint, seed=seed) for seed in range(1, repeats + 1)]
    for phase in ("task", "adapt", "figures", "total"):
        result[phase] = statistics.median(run[phase] for run in runs)
    result["first_page_work"] = first["total"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own choice); on a busy machine 1 can be "
                             "much faster")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"Adaptation page, one 5-way 1-shot task, {STEPS} steps, {torch.get_num_threads()} torch threads; "
          f"median of {args.repeats} reruns (ms)")
    header = f"{'checkpoint':<30} {'first':>8} {'task':>7} {'adapt':>7} {'figures':>8} {'rerun':>7}"
    print(header)
    print("-" * len(header))
    for name in ("digits-5w1s-maml", "omniglot-5w1s-maml"):
        path = CHECKPOINTS / f"{name}.safetensors"
        if not path.is_file():
            print(f"{name:<30} skipped: {path} does not exist")
            continue
        result = measure(path, args.repeats)
        if isinstance(result, str):
            print(f"{name:<30} {result}")
            continue
        ms = {key: 1000 * value for key, value in result.items()}
        print(f"{name:<30} {ms['first']:>8.0f} {ms['task']:>7.1f} {ms['adapt']:>7.1f} {ms['figures']:>8.1f} "
              f"{ms['total']:>7.1f}")
    print("first: load checkpoint and data, then the page's work; rerun: task + adapt + figures, data in memory")


if __name__ == "__main__":
    main()
