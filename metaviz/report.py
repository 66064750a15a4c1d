"""The review report: what a reviewer saw, in one HTML file that opens offline and can be shared.

`build_report(checkpoint, task, settings)` adapts the checkpoint to the task, explains the
answers, runs the trust checks and measures the layers, as the dashboard's pages do, and
returns one self-contained HTML page (metaviz.report_html): the checkpoint's name and content
hash; the task and the command that re-creates it; adaptation curves and answers; the
saliency maps with their trust checks; the layer summary; every setting; package versions and
a timestamp. The dashboard's sidebar and `python -m metaviz report` both call it.
"""
from __future__ import annotations

import json
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from typing import TYPE_CHECKING

import numpy as np

from metaviz import report_html as H
from metaviz import services

if TYPE_CHECKING:
    from metaviz.adaptation import AdaptationTrace
    from metaviz.checkpoints import Checkpoint
    from metaviz.tasks import Task
    from metaviz.updates import AblationRow, LayerStatistics

PACKAGES = ("torch", "numpy", "scipy", "captum", "plotly", "scikit-learn", "umap-learn", "safetensors", "Pillow",
            "streamlit")
MAP_SCALE = 3  # 28x28 maps drawn at 84x84 screen pixels
MAP_COLUMNS = 10  # images per block of the saliency table
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class ReportSettings:
    """What the report shows; None means the checkpoint's own setting (as on the dashboard)."""

    steps: int | None = None  # adaptation steps
    lr: float | None = None  # adaptation step size
    adapt_layers: tuple[str, ...] | None = None  # layers that adapt
    method: str = "Saliency"  # a metaviz.explain.METHODS name
    method_settings: tuple[tuple[str, object], ...] = ()  # (name, value) pairs of the method's knobs
    images: str = "query"  # explain the new images ("query") or the examples ("support")
    step: int | None = None  # the step whose maps are shown beside step 0 (None: the last)
    target: int | None = None  # the class explained (None: each image's answer)
    sign: str = "absolute_value"  # captum's display vocabulary (metaviz.explain_figures.SIGNS)
    outlier_perc: float = 2.0
    randomisation: bool = True  # run the randomisation test (the slowest check)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


UPLOADED_FILE = "uploaded file"  # the `origin` key naming an uploaded zip


def recreate_command(checkpoint: Checkpoint, task: Task, settings: ReportSettings, steps: int, lr: float,
                     layers: tuple[str, ...], origin: dict | None = None) -> str:
    """The `python -m metaviz report` call that re-creates this report's task and settings."""
    source = task.source
    words = ["python", "-m", "metaviz", "report", checkpoint.path or f"{checkpoint.name}.safetensors"]
    if source.get("kind") == "uploaded":
        words += ["--upload", (origin or {}).get(UPLOADED_FILE) or "YOUR-IMAGES.zip"]
        for name in task.class_names:
            words += ["--classes", name]
    elif not task.is_regression:
        from metaviz.tasks import sample_task

        groups = source.get("groups")
        for group in groups or ():
            words += ["--groups", group]
        # Chosen classes change how the seed draws the images: name them only when the seed
        # alone (and the groups) would draw other classes.
        drawn = sample_task(source["dataset"], source["split"], ways=task.ways, shots=source["shots"],
                            queries=source["queries"], seed=source["seed"], groups=groups)
        if drawn.class_names != task.class_names:
            for name in task.class_names:
                words += ["--classes", name]
    words += ["--seed", str(source.get("seed", 0)), "--shots", str(source.get("shots", checkpoint.shots))]
    if source.get("queries") is not None:
        words += ["--queries", str(source["queries"])]
    words += ["--steps", str(steps), "--lr", f"{lr:g}"]
    for layer in layers:
        words += ["--layers", layer]
    if not task.is_regression:
        words += ["--method", settings.method, "--images", settings.images]
        for name, value in settings.method_settings:
            words += ["--method-setting", f"{name}={json.dumps(value)}"]
        if settings.target is not None:
            words += ["--target", str(settings.target)]
    words += ["--out", "report.html"]
    return shlex.join(words)


# --- sections ---------------------------------------------------------------------------------

def _model_section(checkpoint: Checkpoint) -> str:
    score = services.meta_test_text(checkpoint.metrics)
    return H.key_values([
        ("name", checkpoint.name), ("file", checkpoint.path or "(not saved)"),
        ("content hash (SHA-256 of the file)", checkpoint.content_hash or "unknown"),
        ("algorithm", services.ALGORITHM_NAMES.get(checkpoint.algorithm, checkpoint.algorithm)),
        ("data", services.DATASET_NAMES.get(checkpoint.dataset, checkpoint.dataset)),
        ("task shape", services.task_shape(checkpoint.ways, checkpoint.shots)),
        ("inner loop it was trained with", services.inner_loop_text(checkpoint)),
        ("layers that adapt", services.adapted_layers_text(checkpoint)),
        ("meta-training", services.training_progress_text(checkpoint.extra)),
        ("meta-test", f"{score[0]} ({score[1]})" if score else "not measured"),
    ])


def _task_images(task: Task) -> str:
    """Support and query images, one column per class, as PNGs (the class names escaped)."""
    from metaviz.figures import readable_class_name

    rows = []
    for role, x, y in (("examples (support set)", task.support_x, task.support_y),
                       ("new images (query set)", task.query_x, task.query_y)):
        images, labels = np.asarray(x)[:, 0], np.asarray(y)
        cells = []
        for label in range(task.ways):
            pictures = "".join(H.image(picture, f"{role}, {task.class_names[label]}", 2)
                               for picture in images[labels == label])
            cells.append(f"<td>{pictures}</td>")
        rows.append(f"<tr><th>{H.text(role)}</th>{''.join(cells)}</tr>")
    heads = "".join(f"<th>{H.text(readable_class_name(name))}</th>" for name in task.class_names)
    return f'<table class="maps"><thead><tr><th></th>{heads}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _task_section(checkpoint: Checkpoint, task: Task, origin: dict, command: str) -> str:
    from metaviz.figures import task_grid

    source = {key: ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
              for key, value in task.source.items()}
    body = H.paragraph("Where the task comes from: with these values (and, for an upload, the same files) the "
                       "task is re-created exactly.")
    body += H.key_values([*source.items(), *origin.items()])
    body += "<h3>Re-create this report</h3><pre>" + H.text(command) + "</pre>"
    if task.is_regression:
        return body + H.figure(task_grid(task), "task-points")
    return body + "<h3>The images</h3>" + _task_images(task)


def _adaptation_section(task: Task, trace: AdaptationTrace) -> str:
    from metaviz.adaptation import prediction_changes
    from metaviz.figures import adaptation_curves, flipped_predictions, query_predictions

    rows = []
    for step in range(trace.steps + 1):
        row = {"step": step, "loss on the examples": f"{trace.support_loss[step]:.4g}",
               "loss on the new items": f"{trace.query_loss[step]:.4g}"}
        if trace.query_accuracy is not None:
            row |= {"examples right": f"{100 * trace.support_accuracy[step]:.0f}%",
                    "new images right": f"{100 * trace.query_accuracy[step]:.0f}%"}
        rows.append(row)
    body = H.table(rows) + H.figure(adaptation_curves(trace), "adaptation-curves")
    if trace.query_probabilities is None:  # regression: the model's answer for every point to predict
        body += "<h3>The model's prediction for each point to predict</h3>"
        outputs, x, y = trace.query_outputs[..., 0], np.asarray(task.query_x)[:, 0], np.asarray(task.query_y)[:, 0]
        return body + H.table([{"x": f"{x[index]:.3f}", "true y": f"{y[index]:.3f}",
                                "before adapting": f"{outputs[0, index]:.3f}",
                                f"after {trace.steps} steps": f"{outputs[-1, index]:.3f}"}
                               for index in np.argsort(x)])
    changes = prediction_changes(trace, task.query_y)
    body += "<h3>The model's answer for each new image</h3>"
    body += H.paragraph("At the last step; press ▶ to play every step. "
                        f"Between step 0 and step {trace.steps}, {len(changes['fixed'])} answers became right, "
                        f"{len(changes['broken'])} became wrong and {len(changes['still_wrong'])} went from one wrong "
                        "class to another.")
    body += H.figure(query_predictions(task, trace, trace.steps), "query-predictions")
    flips = flipped_predictions(task, trace)
    return body + (H.figure(flips, "changed-answers") if flips is not None else "")


def _map_cells(images, maps, answers, sureness, true_classes, class_names) -> str:
    from metaviz.explain_figures import overlay
    from metaviz.figures import readable_class_name

    cells = []
    for index, picture in enumerate(images):
        mark = "" if answers is None else ("✓ " if answers[index] == true_classes[index] else "✗ ")
        label = "" if answers is None else \
            f"{mark}{readable_class_name(class_names[answers[index]])} {100 * sureness[index]:.0f}%"
        cells.append(f"<td>{H.image(overlay(picture, maps[index]), label or 'difference', MAP_SCALE)}"
                     f"<br>{H.text(label)}</td>")
    return "".join(cells)


def _saliency_section(checkpoint: Checkpoint, task: Task, trace: AdaptationTrace, settings: ReportSettings,
                      progress: Progress) -> str:
    from metaviz.explain import METHODS, attribute, network_for
    from metaviz.explain_figures import faithfulness_figure, normalise_map, randomisation_figure
    from metaviz.trust import SIMILAR, deletion_insertion_curves, randomisation_test

    step = trace.steps if settings.step is None else min(max(settings.step, 0), trace.steps)
    inputs = task.query_x if settings.images == "query" else task.support_x
    true_classes = np.asarray(task.query_y if settings.images == "query" else task.support_y)
    options = dict(settings.method_settings)
    progress(0.35, f"{settings.method} maps…")
    before = attribute(checkpoint, trace, 0, settings.method, inputs, target=settings.target, **options)
    after = attribute(checkpoint, trace, step, settings.method, inputs, target=settings.target, **options)
    shown = [normalise_map(maps.values, settings.sign, settings.outlier_perc) for maps in (before, after)]
    pictures = np.asarray(inputs)[:, 0]
    rows = [("before adapting (step 0)", shown[0], before), (f"after step {step}", shown[1], after),
            ("what adapting changed", np.clip(shown[1] - shown[0], -1, 1), None)]
    blocks = []
    for start in range(0, len(pictures), MAP_COLUMNS):  # blocks of columns, as on the Saliency page
        shown_here = slice(start, start + MAP_COLUMNS)
        blocks.append("".join(
            f"<tr><th>{H.text(name)}</th>" + _map_cells(
                pictures[shown_here], maps[shown_here],
                None if result is None else result.probabilities.argmax(-1)[shown_here],
                None if result is None else result.probabilities.max(-1)[shown_here], true_classes[shown_here],
                task.class_names) + "</tr>"
            for name, maps, result in rows))
    table = '<tr><td colspan="99"></td></tr>'.join(blocks)
    explained = "each image's answer at that step" if settings.target is None else \
        f"the class {task.class_names[settings.target]}"
    body = H.paragraph(f"{settings.method}: {METHODS[settings.method].summary} The maps explain {explained}. "
                       "Red: evidence for the class; blue: against it. In the last row red means the model relies "
                       "more on that place after adapting, blue less. Under each map: the answer (✓ right, ✗ wrong) "
                       "and how sure the model is.")
    body += f'<div style="overflow-x:auto"><table class="maps"><tbody>{table}</tbody></table></div>'

    body += "<h3>Can this map be trusted?</h3><h4>Does it add up?</h4>"
    if after.completeness is None:
        body += H.paragraph(f"{settings.method} makes no promise that its map adds up to the model's score; there is "
                            "nothing to check.")
    else:
        misses = 100 * after.completeness
        body += H.paragraph(f"At step {step} the pixels' shares add up to the change in the model's score within 1% "
                            f"for {int((misses <= 1).sum())} of {len(misses)} images.")
        body += H.table([{"image": index + 1, "miss": f"{miss:.2f}%", "score change": f"{change:.3g}"}
                         for index, (miss, change) in enumerate(zip(misses, after.score_change))])

    body += "<h4>Does it depend on what the model learned? (randomisation test)</h4>"
    if settings.randomisation:
        progress(0.5, "Randomisation test…")
        result = randomisation_test(checkpoint, trace, step, settings.method, inputs, after.targets, **options)
        body += H.figure(randomisation_figure(result.layers, result.spearman, result.spearman_abs, result.ssim,
                                              SIMILAR), "randomisation")
        css = "verdict-good" if result.passed else "verdict-bad"
        body += H.paragraph(f"Verdict for {settings.method}: {result.verdict}.", css)
    else:
        body += H.paragraph("Not run for this report.", "note")

    progress(0.75, "Deleting and inserting pixels…")
    body += "<h4>Does removing the pixels it points at change the answer? (deletion and insertion)</h4>"
    network = network_for(checkpoint, trace.params[step], trace.buffers)
    curves = deletion_insertion_curves(network, inputs, after.targets, after.values)
    body += H.figure(faithfulness_figure(curves.fractions, curves.deletion, curves.insertion, curves.random_deletion,
                                         curves.random_insertion), "faithfulness")
    areas = {name: float(curves.area(name).mean()) for name in
             ("deletion", "random_deletion", "insertion", "random_insertion")}
    body += H.paragraph(f"Deletion area {areas['deletion']:.3f} (random order {areas['random_deletion']:.3f}; lower "
                        f"is better); insertion area {areas['insertion']:.3f} (random order "
                        f"{areas['random_insertion']:.3f}; higher is better).")
    return body


def _layers_section(trace: AdaptationTrace, layer_results: tuple[LayerStatistics, list[AblationRow]] | None,
                    metric: str) -> str:
    from metaviz.layer_figures import ablation_table, cka_bars, update_bars, update_heatmap
    from metaviz.updates import layer_roles_text, task_update_text, update_norms

    norms = update_norms(trace)
    body = H.paragraph(task_update_text(norms).replace("**", ""))
    body += H.figure(update_heatmap(norms), "layer-updates") + H.figure(update_bars(norms), "tensor-updates")
    if layer_results is None:
        return body + H.paragraph("Measurements over many tasks were not made for this report.", "note")
    statistics, ablation = layer_results
    body += f"<h3>Over {statistics.tasks} tasks</h3>" + H.paragraph(layer_roles_text(statistics).replace("**", ""))
    return body + H.figure(cka_bars(statistics), "layer-cka") + H.table(ablation_table(ablation, metric))


def _settings_rows(checkpoint: Checkpoint, task: Task, settings: ReportSettings, steps: int, lr: float,
                   layers: tuple[str, ...]) -> list[tuple[str, object]]:
    rows = [("adaptation steps", steps), ("step size (learning rate)", lr), ("layers that adapt", ", ".join(layers))]
    if not task.is_regression:
        chosen = asdict(settings)
        chosen.pop("steps"), chosen.pop("lr"), chosen.pop("adapt_layers")
        chosen["method_settings"] = json.dumps(dict(settings.method_settings))
        chosen["step"] = f"the last ({steps})" if settings.step is None else min(max(settings.step, 0), steps)
        rows += [(f"saliency {name.replace('_', ' ')}", "each image's answer" if name == "target" and value is None
                  else value) for name, value in chosen.items()]
    return rows


def build_report(checkpoint: Checkpoint, task: Task, settings: ReportSettings = ReportSettings(),
                 origin: dict | None = None, layer_results: tuple | None = None, now: datetime | None = None,
                 progress: Progress | None = None) -> str:
    """The report as one HTML string. `origin`: extra facts about where the task came from
    (for an upload: what was uploaded and its SHA-256), shown with the task; `layer_results`:
    (LayerStatistics, ablation rows) measured over many tasks, when the user measured them."""
    from metaviz.adaptation import adapt

    progress = progress or (lambda fraction, message: None)
    started = time.monotonic()
    now = now or datetime.now(timezone.utc)
    steps = checkpoint.inner_steps if settings.steps is None else int(settings.steps)
    lr = checkpoint.inner_lr if settings.lr is None else float(settings.lr)
    layers = tuple(settings.adapt_layers or checkpoint.adapt_layers or checkpoint.layers)
    if not task.is_regression:
        from metaviz.explain import method_named

        method_named(settings.method)  # an unknown method is a plain ValueError before any work
    progress(0.05, "Adapting the model to the task…")
    trace = adapt(checkpoint, task, steps=steps, lr=lr, adapt_layers=layers)
    command = recreate_command(checkpoint, task, settings, steps, lr, layers, origin)
    sections = [("model", "The model", _model_section(checkpoint)),
                ("task", "The task", _task_section(checkpoint, task, origin or {}, command)),
                ("adaptation", "Adaptation", _adaptation_section(task, trace))]
    if not task.is_regression:
        sections.append(("saliency", "Saliency and its trust checks",
                         _saliency_section(checkpoint, task, trace, settings, progress)))
    progress(0.9, "Layers…")
    metric = "mse" if task.is_regression else "accuracy"
    sections.append(("layers", "Layers", _layers_section(trace, layer_results, metric)))
    sections.append(("settings", "Settings", H.key_values(_settings_rows(checkpoint, task, settings, steps, lr,
                                                                          layers))))
    environment = [("created", now.isoformat(timespec="seconds")),
                   ("seconds to build", f"{time.monotonic() - started:.1f}"),
                   ("platform", f"{platform.system()} {platform.machine()}"),
                   ("python executable", sys.executable), *package_versions().items()]
    sections.append(("environment", "Versions and time", H.key_values(environment)))
    title = f"metaviz review: {checkpoint.name}"
    lead = (f"Created {services.created_text(now.isoformat())} from checkpoint {checkpoint.name} "
            f"(SHA-256 {services.short_hash(checkpoint.content_hash)}…). Opens offline; nothing here needs a network.")
    return H.page(title, lead, sections)
