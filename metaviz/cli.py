"""`python -m metaviz train|evaluate|layers|report ...`"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from metaviz import report_cli
from metaviz.allocator import keep_freed_memory
from metaviz.training import ALGORITHMS, TrainConfig

# Per-dataset defaults where the MAML paper's differ from its Omniglot 5-way settings.
DATASET_DEFAULTS = {
    "omniglot": {},
    "digits": {"iterations": 5_000},
    # Sinusoid (sec. 5.1): K = 10, one step of 0.01, meta-batch 25, 70k iterations, MLP 40-40.
    "sinusoid": {"shots": 10, "queries": 10, "inner_lr": 0.01, "test_steps": 10, "meta_batch": 25,
                 "iterations": 70_000, "hidden": 40, "val_every": 1000},
}


# The nets are tiny: a second thread gains little, and on a busy machine torch's spinning
# threads slowed a step by 10x or more in our measurements (see benchmarks/README.md).
THREADS_HELP = "torch CPU threads (1 is fastest for these small nets on a shared machine)"


def _train_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="meta-train a model (resumable)",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = TrainConfig()
    parser.add_argument("--algorithm", choices=ALGORITHMS, default=defaults.algorithm)
    parser.add_argument("--dataset", choices=("omniglot", "digits", "sinusoid"), default=defaults.dataset)
    for field in dataclasses.fields(TrainConfig):
        if field.name in ("algorithm", "dataset"):
            continue
        parser.add_argument("--" + field.name.replace("_", "-"), type=type(field.default), default=None,
                            help=f"default {field.default} (omniglot); see DATASET_DEFAULTS for others")
    parser.add_argument("--run-dir", type=Path, required=True, help="folder for the resumable state")
    parser.add_argument("--out", type=Path, required=True, help="final checkpoint (.safetensors)")
    parser.add_argument("--name", default=None)
    parser.add_argument("--resume", action="store_true", help="continue the state in --run-dir")
    parser.add_argument("--stop-after", type=int, default=None, help="stop after this many iterations")
    parser.add_argument("--save-partial", action="store_true",
                        help="write --out even when --stop-after ends the run early (marked as partial)")
    parser.add_argument("--threads", type=int, default=1, help=THREADS_HELP)


def _evaluate_parser(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="meta-test accuracy / MSE with 95%% CI")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="inner steps (default: the checkpoint's)")
    parser.add_argument("--shots", type=int, default=None, help="support examples per class (default: the checkpoint's)")
    parser.add_argument("--split", default=None, help="default: the checkpoint's meta-test split")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--record", action="store_true", help="store the result in the checkpoint's metrics")
    parser.add_argument("--threads", type=int, default=1, help=THREADS_HELP)


def _layers_parser(subparsers) -> None:
    parser = subparsers.add_parser("layers", help="where adaptation happens: CKA, update sizes, freeze ablation")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="inner steps (default: the checkpoint's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--threads", type=int, default=1, help=THREADS_HELP)


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {"algorithm": args.algorithm, "dataset": args.dataset, **DATASET_DEFAULTS[args.dataset]}
    for field in dataclasses.fields(TrainConfig):
        given = getattr(args, field.name, None)
        if given is not None and field.name not in ("algorithm", "dataset"):
            values[field.name] = given
    return TrainConfig(**values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metaviz", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _train_parser(subparsers)
    _evaluate_parser(subparsers)
    _layers_parser(subparsers)
    report_cli.add_parser(subparsers, THREADS_HELP)
    args = parser.parse_args(argv)
    keep_freed_memory()
    import torch

    from metaviz.checkpoints import CheckpointError
    from metaviz.data import DataError, DataNotFoundError

    torch.set_num_threads(args.threads)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "layers":
            return _layers(args)
        if args.command == "report":
            return report_cli.run(args)
        return _evaluate(args)
    except (CheckpointError, DataError, DataNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _train(args) -> int:
    from metaviz.training import train

    config = train_config_from_args(args)
    checkpoint = train(config, args.run_dir, out=args.out, name=args.name, resume=args.resume,
                       stop_after=args.stop_after, save_partial=args.save_partial)
    if checkpoint is None:
        print(f"stopped; continue with --resume (state in {args.run_dir})")
    else:
        print(f"saved {checkpoint.path}")
    return 0


def _evaluate(args) -> int:
    from tqdm import tqdm

    from metaviz.checkpoints import load_checkpoint, save_checkpoint
    from metaviz.training import evaluate

    checkpoint = load_checkpoint(args.checkpoint)
    with tqdm(total=args.tasks, disable=args.json, desc="tasks") as bar:
        result = evaluate(checkpoint, tasks=args.tasks, seed=args.seed, steps=args.steps, split=args.split, shots=args.shots,
                          device=args.device, progress=lambda done, total: bar.update(done - bar.n))
    if args.record:  # the checkpoint's own shot count is its headline figure; others are extra
        key = "meta_test" if result["shots"] == checkpoint.shots else f"meta_test_{result['shots']}shot"
        metrics = {**checkpoint.metrics, key: result}
        save_checkpoint(dataclasses.replace(checkpoint, metrics=metrics), args.checkpoint)
    if args.json:
        print(json.dumps(result))
        return 0
    scale = 100 if result["metric"] == "accuracy" else 1
    unit = "%" if scale == 100 else ""
    print(f"{checkpoint.name}: {result['metric']} over {result['tasks']} {result['shots']}-shot tasks "
          f"from the {result['split']} split")
    for step, row in enumerate(result["per_step"]):
        print(f"  step {step:2d}: {scale * row['mean']:.2f}{unit} ± {scale * row['ci95']:.2f}{unit}")
    return 0


def _layers(args) -> int:
    from tqdm import tqdm

    from metaviz.checkpoints import load_checkpoint
    from metaviz.updates import freeze_ablation, layer_statistics, layers_report

    checkpoint = load_checkpoint(args.checkpoint)
    with tqdm(total=2 * args.tasks, disable=args.json, desc="tasks") as bar:
        tick = lambda done, total: bar.update(1)  # noqa: E731
        statistics = layer_statistics(checkpoint, tasks=args.tasks, seed=args.seed, steps=args.steps, progress=tick)
        ablation = freeze_ablation(checkpoint, tasks=args.tasks, seed=args.seed, steps=args.steps, progress=tick)
    report = layers_report(checkpoint, statistics, ablation)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{checkpoint.name} ({report['content_hash'][:12]}): {report['tasks']} tasks, seed {report['seed']}, "
          f"{report['steps']} steps, {report['queries']} query examples per task")
    print("| layer | CKA before vs after (95% CI) | relative update (median) | cosine between tasks |")
    print("| --- | --- | --- | --- |")
    for row in report["layers"]:
        print(f"| {row['layer']} | {row['cka']:.3f} ± {row['cka_ci95']:.3f} | {100 * row['relative_median']:.3g}% "
              f"| {row['cosine']:.3f} |")
    print()
    print(f"| layers that adapt | {report['metric']} (95% CI) |")
    print("| --- | --- |")
    scale = 100 if report["metric"] == "accuracy" else 1
    for row in report["ablation"]:
        print(f"| {row['label']} | {scale * row['mean']:.2f} ± {scale * row['ci95']:.2f} |")
    return 0
