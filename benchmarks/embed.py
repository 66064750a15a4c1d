"""Task embeddings: N Omniglot 5-way 1-shot tasks x 5 steps to a finished map, cold and warm.

Each "cold" row is a fresh Python process doing what the Task embeddings page does on its
first visit (pages/_embed.task_embedding: import, load the checkpoint and the data split,
sample the tasks and score them, start UMAP's warm-up thread, adapt the tasks on
metaviz.embed.WORKERS threads, sketch, PCA, UMAP, trustworthiness, structure measures); its
"warm" figure is the page's rerun in that process (the stored result, the figure built and
serialised as st.plotly_chart does).
Cold rows:

- numba cache empty: the first process ever on a machine (UMAP's kernels compile);
- numba cache filled: any later process (metaviz.embed.import_umap loads them from disk);
- one worker: as the previous row, the batches adapted one after another (METAVIZ_EMBED_WORKERS=1);
- no warm-up thread: as "numba cache filled", UMAP imported only after the tasks adapted;
- a running dashboard's first map: as "numba cache filled", but the clock starts once torch,
  Streamlit and the checkpoint are loaded and UMAP's warm-up is done, as the dashboard's first
  page leaves them a few seconds after it is drawn (pages/_shared.warm_up_for_later_pages): the
  wait for a first map after choosing the page, less the browser's drawing
  (benchmarks/embed_browser.py times a 200-task first map and a later 500-task one in Chromium);
- ... opened before UMAP's warm-up ran: as the previous row, without the warm-up done first
  (the page opened at once, or first; the map starts the warm-up as its tasks adapt).

Then, in this process, the adaptation alone on one thread: task by task vs batches
(metaviz.batched, as the page adapts the conv net's tasks), interleaved.

Every row also gives the CPU seconds the work used (time.process_time, all threads). On this
shared 2-core machine other work takes turns with the benchmark, so wall seconds grow with the
load average; the workers make the CPU seconds of a cold row larger than its wall seconds
when a second core is free.

    OMP_NUM_THREADS=1 METAVIZ_DATA_DIR=../shared/data/omniglot .venv/bin/python benchmarks/embed.py
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
CHECKPOINT = REPOSITORY / "checkpoints" / "omniglot-5w1s-maml.safetensors"


def child(tasks: int, steps: int, warm_up: bool, preloaded: bool, umap_warmed: bool) -> None:
    """One cold page visit and one warm rerun, timed; prints one JSON line. `preloaded`: the
    clock starts after the imports and the checkpoint's loading; `umap_warmed`: and after UMAP's
    warm-up."""
    start = time.perf_counter()
    from metaviz.allocator import keep_freed_memory

    keep_freed_memory()  # as app.py does
    # The dashboard's pages/ (a namespace package), not this folder's pages.py, which would win.
    here = Path(__file__).resolve().parent
    sys.path[:] = [str(REPOSITORY)] + [entry for entry in sys.path if Path(entry or ".").resolve() != here]
    import torch

    from metaviz import embed, services
    from metaviz.embed_figures import map_data
    from pages import _embed

    torch.set_num_threads(1)
    if not warm_up:
        embed.start_warm_up = lambda: _NoThread()  # the page's call becomes a no-op
    path = str(CHECKPOINT)
    if preloaded:  # what the first page leaves behind: torch imported, the checkpoint loaded
        from pages._shared import load_checkpoint

        load_checkpoint(path, services.file_sha256(path))
        if umap_warmed:  # the dashboard starts it once idle after a page (pages/_shared.py)
            embed.start_warm_up().join()
        start, cpu_start = time.perf_counter(), time.process_time()
    else:
        cpu_start = 0.0
    arguments = (path, services.file_sha256(path), {"n_tasks": tasks, "seed": 0, "shots": 1, "queries": 5,
                                                    "one_group": True, "layer": None},
                 {"steps": steps, "lr": 0.4, "adapt_layers": ("conv1", "conv2", "conv3", "conv4", "head")},
                 "umap", 0, {})
    embedding, measures = _embed.task_embedding(*arguments)
    json.dumps(map_data(embedding, "alphabet"))  # what the page hands its map component
    cold, cold_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    mark, mark_cpu = time.perf_counter(), time.process_time()
    embedding, measures = _embed.task_embedding(*arguments)
    json.dumps(map_data(embedding, "alphabet"))
    warm, warm_cpu = time.perf_counter() - mark, time.process_time() - mark_cpu
    purity = measures["alphabet"]
    print(json.dumps({"cold": cold, "cold_cpu": cold_cpu, "warm": warm, "warm_cpu": warm_cpu,
                      "trustworthiness": embedding.trustworthiness, "purity": purity.observed,
                      "chance": purity.chance, "load": os.getloadavg()[0]}))


class _NoThread:
    def join(self) -> None:
        pass


def cold_run(tasks: int, steps: int, numba_cache: str, warm_up: bool = True, workers: int | None = None,
             preloaded: bool = False, umap_warmed: bool = False) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": numba_cache, "PYTHONPATH": str(REPOSITORY),
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    if workers is not None:
        env["METAVIZ_EMBED_WORKERS"] = str(workers)
    command = [sys.executable, __file__, "--child", "--tasks", str(tasks), "--steps", str(steps)]
    if not warm_up:
        command.append("--no-warm-up")
    if preloaded:
        command.append("--preloaded")
    if umap_warmed:
        command.append("--umap-warmed")
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPOSITORY, env=env, capture_output=True, text=True, check=True)
    row = json.loads(result.stdout.strip().splitlines()[-1])
    row["process"] = time.perf_counter() - started  # with interpreter start
    return row


def record_targets(tasks: int, fresh: dict, dashboard: dict) -> None:
    """Issue 10's task-map targets (benchmarks/verdicts.py): cold <= 10 s, read two ways here (from
    a fresh process, and as the first map of a running dashboard; embed_browser.py times a later
    one), and warm <= 0.5 s."""
    from verdicts import record  # this script's folder is first on sys.path

    command = "benchmarks/embed.py"
    record(f"{tasks} tasks to a map, fresh process (numba cache filled) <= 10 s", f"{fresh['cold']:.1f} s",
           fresh["cold"] <= 10, command)
    record(f"{tasks} tasks as a dashboard's first map (UMAP's warm-up done) <= 10 s", f"{dashboard['cold']:.1f} s",
           dashboard["cold"] <= 10, command)
    warm = max(fresh["warm"], dashboard["warm"])
    record(f"{tasks} tasks to a map, warm <= 0.5 s", f"{warm:.3f} s", warm <= 0.5, command)


def adaptation_only(tasks: int, steps: int, repeats: int) -> list[tuple[str, float]]:
    """ms per task: the task-by-task loop vs batches (metaviz.batched for this conv net), same
    tasks, interleaved repeats."""
    import torch

    from metaviz import embed
    from metaviz.adaptation import adapted_names
    from metaviz.checkpoints import load_checkpoint

    torch.set_num_threads(1)
    checkpoint = load_checkpoint(CHECKPOINT)
    model, names = checkpoint.build_model(), adapted_names(checkpoint.parameters, checkpoint.adapt_layers)
    sample = embed.sample_tasks("omniglot", "test", 5, 1, 5, tasks, one_group=True)
    ways = {"task by task": (10, False), "batched, 10 a batch": (10, True), "batched, 20 a batch": (20, True),
            "batched, 40 a batch": (40, True)}
    times: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
    for _ in range(repeats):
        for way, (size, vectorise) in ways.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for first in range(0, tasks, size):
                batch = sample[first : first + size]
                embed._adapt_batch(model, checkpoint, names, batch, steps, 0.4, vectorise,
                                   embed.scores_before(model, checkpoint, batch))
            times[way].append((1000 * (time.perf_counter() - start) / tasks,
                               1000 * (time.process_time() - start_cpu) / tasks))
    return [(way, min(wall for wall, _ in values), min(cpu for _, cpu in values)) for way, values in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="of the adaptation-only comparison")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-warm-up", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--preloaded", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--umap-warmed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.tasks, args.steps, warm_up=not args.no_warm_up, preloaded=args.preloaded,
              umap_warmed=args.umap_warmed)
        return
    if not CHECKPOINT.is_file():
        sys.exit(f"{CHECKPOINT} is missing")
    from metaviz.allocator import keep_freed_memory

    keep_freed_memory()  # the adaptation-only table below runs in this process, as in the app
    print(f"{args.tasks} Omniglot 5-way 1-shot tasks (one alphabet each) x {args.steps} steps -> UMAP map; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    from metaviz.embed import WORKERS

    header = (f"{'cold run':<44} {'cold s':>7} {'CPU s':>6} {'+ start':>8} {'warm s':>7} {'trust':>6} {'purity':>7} "
              f"{'chance':>7} {'load':>5}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as numba_cache:
        filled, dashboard = f"numba cache filled, {WORKERS} worker(s)", "a running dashboard's first map"
        runs = [("numba cache empty (first process ever)", {}), (filled, {}),
                ("numba cache filled, 1 worker", {"workers": 1}),
                ("numba cache filled, no warm-up thread", {"warm_up": False}),
                (dashboard, {"preloaded": True, "umap_warmed": True}),
                ("... opened before UMAP's warm-up ran", {"preloaded": True})]
        cold_rows = {}
        for label, settings in runs:
            row = cold_rows[label] = cold_run(args.tasks, args.steps, numba_cache, **settings)
            print(f"{label:<44} {row['cold']:>7.1f} {row['cold_cpu']:>6.1f} {row['process']:>8.1f} {row['warm']:>7.3f} "
                  f"{row['trustworthiness']:>6.3f} {row['purity']:>7.3f} {row['chance']:>7.3f} {row['load']:>5.1f}",
                  flush=True)
    print("cold s: from the process's first import (the dashboard's-first-map rows: from the page's call) to the "
          "map's data serialised; CPU s: the CPU time it used "
          "(all threads); + start: with interpreter start and exit; warm s: the page's rerun (stored result + "
          "map data)")
    record_targets(args.tasks, cold_rows[filled], cold_rows[dashboard])
    print(f"\nAdaptation alone, {min(args.tasks, 200)} tasks x {args.steps} steps, best of {args.repeats} "
          "(ms per task, incl. before/after metrics)")
    rows = adaptation_only(min(args.tasks, 200), args.steps, args.repeats)
    baseline = rows[0][2]
    for way, wall, cpu in rows:
        print(f"  {way:<20} {wall:>7.1f} ms wall {cpu:>7.1f} ms CPU  {baseline / cpu:>5.2f}x (CPU)")


if __name__ == "__main__":
    main()
