"""`python -m metaviz report CHECKPOINT [task flags] --out report.html` (wired in metaviz.cli).

The task flags are the other commands' (--seed, --shots, --steps) plus what the dashboard's
task and saliency settings add; `--upload FILE.zip` builds the task from a zip of images as
the Task page does (one folder per class).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def add_parser(subparsers, threads_help: str) -> None:
    parser = subparsers.add_parser("report", help="a self-contained HTML review report of one task",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    task = parser.add_argument_group("the task (as on the Task page)")
    task.add_argument("--seed", type=int, default=0, help="task number")
    task.add_argument("--shots", type=int, default=None, help="examples per class (default: the checkpoint's)")
    task.add_argument("--queries", type=int, default=None, help="new images per class (default: 5; sine: 10)")
    task.add_argument("--classes", action="append", default=None, help="exactly these classes (repeat the flag)")
    task.add_argument("--groups", action="append", default=None, help="draw from these alphabets / digits only")
    task.add_argument("--upload", type=Path, default=None, help="a .zip of images, one folder per class")
    adaptation = parser.add_argument_group("adaptation (as on the Adaptation page)")
    adaptation.add_argument("--steps", type=int, default=None, help="default: the checkpoint's")
    adaptation.add_argument("--lr", type=float, default=None, help="step size; default: the checkpoint's")
    adaptation.add_argument("--layers", action="append", default=None, help="layers that adapt (repeat the flag)")
    saliency = parser.add_argument_group("saliency (as on the Saliency page)")
    saliency.add_argument("--method", default="Saliency")
    saliency.add_argument("--method-setting", action="append", default=[], metavar="NAME=JSON",
                          help='a setting of the method, e.g. n_steps=100 or baseline="blurred"')
    saliency.add_argument("--images", choices=("query", "support"), default="query")
    saliency.add_argument("--step", type=int, default=None, help="the step shown beside step 0 (default: the last)")
    saliency.add_argument("--target", type=int, default=None, help="explain this class (default: each answer)")
    saliency.add_argument("--sign", default="absolute_value")
    saliency.add_argument("--no-randomisation", action="store_true", help="skip the slowest trust check")
    parser.add_argument("--layer-tasks", type=int, default=0,
                        help="also measure the layers over this many tasks (0: this task only)")
    parser.add_argument("--threads", type=int, default=1, help=threads_help)


def _method_settings(pairs: list[str]) -> tuple[tuple[str, object], ...]:
    settings = []
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator:
            raise ValueError(f"--method-setting {pair!r}: write NAME=VALUE")
        try:
            settings.append((name, json.loads(value)))
        except json.JSONDecodeError:
            settings.append((name, value))  # a bare word: blurred, gausslegendre
    return tuple(settings)


def _task(checkpoint, args):
    """(task, origin): the sampled or uploaded task the flags describe, and what the report
    should say about where an upload came from."""
    from metaviz import services
    from metaviz.report import UPLOADED_FILE
    from metaviz.tasks import sample_task

    shots = args.shots or checkpoint.shots
    queries = args.queries or (10 if checkpoint.is_regression else max(checkpoint.queries, services.DEFAULT_QUERIES))
    if args.upload is None:
        task = sample_task(checkpoint.dataset, checkpoint.test_split, ways=checkpoint.ways, shots=shots,
                           queries=queries, seed=args.seed, classes=args.classes, groups=args.groups)
        return task, {}
    import hashlib

    from metaviz.uploads import UploadError, build_task, read_zip

    data = args.upload.read_bytes()
    try:
        images = read_zip(data)
        classes = args.classes or list(images.class_names)[: checkpoint.ways]
        task = build_task(images, classes, checkpoint.ways, shots, queries, args.seed)
    except UploadError as error:
        raise ValueError(f"{args.upload.name}: {error}") from None
    return task, {UPLOADED_FILE: args.upload.name, "uploaded file SHA-256": hashlib.sha256(data).hexdigest()}


def run(args) -> int:
    from metaviz.checkpoints import load_checkpoint
    from metaviz.report import ReportSettings, build_report

    checkpoint = load_checkpoint(args.checkpoint)
    task, origin = _task(checkpoint, args)
    settings = ReportSettings(steps=args.steps, lr=args.lr, adapt_layers=tuple(args.layers) if args.layers else None,
                              method=args.method, method_settings=_method_settings(args.method_setting),
                              images=args.images, step=args.step, target=args.target, sign=args.sign,
                              randomisation=not args.no_randomisation)
    layer_results = None
    if args.layer_tasks:
        from metaviz.updates import freeze_ablation, layer_statistics

        common = dict(tasks=args.layer_tasks, seed=args.seed, steps=settings.steps, lr=settings.lr)
        layer_results = (layer_statistics(checkpoint, adapt_layers=settings.adapt_layers, **common),
                         freeze_ablation(checkpoint, **common))
    started = time.monotonic()
    html = build_report(checkpoint, task, settings, origin=origin, layer_results=layer_results,
                        progress=lambda fraction, message: print(f"{100 * fraction:3.0f}% {message}"))
    args.out.write_text(html, encoding="utf-8")
    print(f"wrote {args.out} ({len(html.encode()) / 2**20:.1f} MB) in {time.monotonic() - started:.1f} s")
    return 0
