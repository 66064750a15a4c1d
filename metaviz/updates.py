"""Where adaptation happens: how far each layer moves, which layers a task needs, and how
much each layer's representation changes.

Three views of the same question (Raghu et al. 2020, "Rapid Learning or Feature Reuse?"):

- update magnitudes ||theta_k - theta_0|| per layer, per parameter tensor and per filter,
  absolute and relative to ||theta_0||, for one task (`update_norms`) or many
  (`layer_statistics`, with the cosine similarity of different tasks' updates);
- linear CKA between a layer's representations of the query images before and after
  adaptation (`linear_cka`): 1 means adaptation left that layer's representation as it was;
- a layer-freeze ablation at meta-test time (`freeze_ablation`): which layers must adapt for
  the task to be learned.

Tasks come from `metaviz.training.meta_test_tasks`, the same tasks `evaluate` uses for a
seed, so the "all layers" row of the ablation is the plain meta-test figure on those tasks.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from metaviz.adaptation import AdaptationTrace, adapted_names, inner_loop
from metaviz.checkpoints import Checkpoint
from metaviz.models import layer_of
from metaviz.training import mean_ci95, meta_test_tasks

Progress = Callable[[int, int], None]


def _per_unit(tensor: torch.Tensor) -> torch.Tensor:
    """Squared entries summed per output unit (dim 0): a conv filter, a hidden unit, a class."""
    return tensor.detach().double().pow(2).reshape(tensor.shape[0], -1).sum(1)


@dataclass(frozen=True)
class UpdateNorms:
    """How far one adaptation moved each part of the model, after every step 0..K."""

    layers: tuple[str, ...]  # forward order
    tensors: tuple[str, ...]  # parameter names, forward order
    tensor_absolute: np.ndarray  # [K+1, tensors]: ||theta_k - theta_0|| per parameter tensor
    tensor_initial: np.ndarray  # [tensors]: ||theta_0||
    layer_absolute: np.ndarray  # [K+1, layers]
    layer_initial: np.ndarray  # [layers]
    unit_absolute: dict[str, np.ndarray]  # layer -> [K+1, units] (filters of a conv layer, classes of the head)
    unit_initial: dict[str, np.ndarray]  # layer -> [units]

    @property
    def steps(self) -> int:
        return self.layer_absolute.shape[0] - 1

    @property
    def tensor_relative(self) -> np.ndarray:
        return self.tensor_absolute / np.maximum(self.tensor_initial, 1e-12)

    @property
    def layer_relative(self) -> np.ndarray:
        return self.layer_absolute / np.maximum(self.layer_initial, 1e-12)

    def unit_relative(self, layer: str) -> np.ndarray:
        return self.unit_absolute[layer] / np.maximum(self.unit_initial[layer], 1e-12)


def update_norms(trace: AdaptationTrace) -> UpdateNorms:
    """||theta_k - theta_0|| for every step k, per layer, parameter tensor and output unit."""
    initial = trace.params[0]
    tensors = tuple(initial)
    layers = tuple(dict.fromkeys(layer_of(name) for name in tensors))
    units = {layer: [name for name in tensors if layer_of(name) == layer] for layer in layers}

    def squared_by_unit(params: dict) -> dict[str, torch.Tensor]:
        return {layer: sum(_per_unit(params[name] - initial[name]) for name in names)
                for layer, names in units.items()}

    per_step = [squared_by_unit(params) for params in trace.params]
    unit_absolute = {layer: np.stack([step[layer].sqrt().numpy() for step in per_step]) for layer in layers}
    unit_initial = {layer: sum(_per_unit(initial[name]) for name in names).sqrt().numpy()
                    for layer, names in units.items()}
    tensor_absolute = np.array([[float(torch.linalg.vector_norm((params[name] - initial[name]).double()))
                                 for name in tensors] for params in trace.params])
    return UpdateNorms(
        layers=layers, tensors=tensors, tensor_absolute=tensor_absolute,
        tensor_initial=np.array([float(torch.linalg.vector_norm(initial[name].double())) for name in tensors]),
        layer_absolute=np.stack([np.sqrt((unit_absolute[layer] ** 2).sum(1)) for layer in layers], axis=1),
        layer_initial=np.array([float(np.sqrt((unit_initial[layer] ** 2).sum())) for layer in layers]),
        unit_absolute=unit_absolute, unit_initial=unit_initial,
    )


def linear_cka(first: torch.Tensor | np.ndarray, second: torch.Tensor | np.ndarray) -> float:
    """Linear centred kernel alignment (Kornblith et al. 2019) of two representations of the
    same n examples ([n, ...] each; features flattened). 1: the same up to rotation and scale."""
    x = torch.as_tensor(first).float().reshape(len(first), -1)
    y = torch.as_tensor(second).float().reshape(len(second), -1)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA compares representations of the same examples: {x.shape[0]} vs {y.shape[0]}")
    x, y = x - x.mean(0), y - y.mean(0)
    # Gram form: n x n matrices, cheap when features (conv maps) far outnumber examples. The
    # products run in float32 (the costly part); the sums over the n x n entries in float64.
    gram_x, gram_y = (x @ x.T).double(), (y @ y.T).double()
    denominator = torch.linalg.matrix_norm(gram_x) * torch.linalg.matrix_norm(gram_y)
    if denominator == 0:  # a constant representation: nothing to compare
        return float("nan")
    return float((gram_x * gram_y).sum() / denominator)


@dataclass(frozen=True)
class LayerStatistics:
    """Update statistics over many tasks, each adapted from theta_0."""

    layers: tuple[str, ...]
    absolute: np.ndarray  # [tasks, layers]: ||theta_K - theta_0|| per task
    relative: np.ndarray  # [tasks, layers]: the same over ||theta_0||
    cka: np.ndarray  # [tasks, layers]: CKA of the query representations before vs after
    cosine: np.ndarray  # [layers]: mean cosine similarity of two different tasks' updates
    query_metric: np.ndarray  # [tasks]: accuracy (or MSE) after adapting
    metric: str  # "accuracy" | "mse"
    tasks: int
    seed: int
    steps: int
    lr: float
    queries: int  # query examples per task, all classes together


def _mean_pairwise_cosine(updates: torch.Tensor) -> float:
    """Mean cosine similarity over all pairs of different rows (tasks) of [tasks, dim]."""
    count = updates.shape[0]
    if count < 2 or not updates.any():  # a frozen layer never moves: there is no direction to compare
        return float("nan")
    unit = updates / updates.norm(dim=1, keepdim=True).clamp_min(1e-12)
    similarity = unit @ unit.T
    return float((similarity.sum() - similarity.diagonal().sum()) / (count * (count - 1)))


def _query_metric(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    if targets.dtype == torch.long:
        return float((outputs.argmax(-1) == targets).double().mean())
    return float(torch.nn.functional.mse_loss(outputs, targets))


def layer_statistics(checkpoint: Checkpoint, tasks: int = 100, seed: int = 0, steps: int | None = None,
                     lr: float | None = None, queries: int | None = None,
                     adapt_layers: Sequence[str] | None = None,
                     progress: Progress | None = None) -> LayerStatistics:
    """Adapts `adapt_layers` (default: the checkpoint's) on `tasks` meta-test tasks and measures,
    per layer, how far it moved, how similar different tasks' moves are, and how much its
    query representation changed. A frozen layer's update is exactly zero and its CKA 1."""
    steps = checkpoint.inner_steps if steps is None else int(steps)
    lr = checkpoint.inner_lr if lr is None else float(lr)
    adapt = adapted_names(checkpoint.parameters, checkpoint.adapt_layers if adapt_layers is None else adapt_layers)
    model = checkpoint.build_model()
    params, buffers = checkpoint.parameters, checkpoint.buffers
    layers = checkpoint.layers
    names_by_layer = {layer: [name for name in params if layer_of(name) == layer] for layer in layers}
    initial_norms = np.array([float(torch.sqrt(sum(params[n].double().pow(2).sum() for n in names)))
                              for names in names_by_layer.values()])
    absolute, cka, metric_values, updates = [], [], [], {layer: [] for layer in layers}
    chosen = list(meta_test_tasks(checkpoint, tasks, seed, queries))
    for index, task in enumerate(chosen):
        adapted = inner_loop(model, params, buffers, task.support_x, task.support_y, steps=steps, lr=lr,
                             adapt=adapt, first_order=True)[-1]
        with torch.no_grad():
            before = model.functional_layer_outputs(params, buffers, task.query_x)
            after = model.functional_layer_outputs(adapted, buffers, task.query_x)
            metric_values.append(_query_metric(after["head"], task.query_y))
            cka.append([linear_cka(before[layer], after[layer]) for layer in layers])
            row = []
            for layer, names in names_by_layer.items():
                delta = torch.cat([(adapted[n] - params[n]).detach().reshape(-1) for n in names])
                updates[layer].append(delta)
                row.append(float(delta.double().norm()))
            absolute.append(row)
        if progress:
            progress(index + 1, tasks)
    absolute = np.array(absolute).reshape(len(chosen), len(layers))
    return LayerStatistics(
        layers=layers, absolute=absolute, relative=absolute / np.maximum(initial_norms, 1e-12),
        cka=np.array(cka).reshape(len(chosen), len(layers)),
        cosine=np.array([_mean_pairwise_cosine(torch.stack(updates[layer])) if updates[layer] else float("nan")
                         for layer in layers]),
        query_metric=np.array(metric_values), metric="mse" if checkpoint.is_regression else "accuracy",
        tasks=len(chosen), seed=seed, steps=steps, lr=lr, queries=chosen[0].query_x.shape[0] if chosen else 0,
    )


# --- which layers must adapt: a freeze ablation at meta-test time --------------------------------


def ablation_settings(layers: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """(label, layers that adapt) for: all layers, head only, body only, and the body frozen
    from the input up, one layer more each time (as in the ANIL paper's layer-freezing experiment)."""
    body = [layer for layer in layers if layer != "head"]
    settings = [("all layers", tuple(layers))]
    if "head" in layers and body:
        settings.append(("head only (body frozen)", ("head",)))
        settings.append(("body only (head frozen)", tuple(body)))
    for frozen in range(1, len(body)):
        label = body[0] if frozen == 1 else f"{body[0]}–{body[frozen - 1]}"
        settings.append((f"{label} frozen", tuple(body[frozen:]) + (("head",) if "head" in layers else ())))
    return settings


@dataclass(frozen=True)
class AblationRow:
    label: str
    adapt_layers: tuple[str, ...]
    mean: float  # query accuracy (or MSE) after adapting, over the tasks
    ci95: float  # half-width of the 95% confidence interval
    per_task: np.ndarray


class _FromLayer:
    """The model run from the output of its first `start` body layers on: with those layers
    frozen, their output is computed once per task instead of at every step."""

    def __init__(self, model: torch.nn.Module, start: int):
        self.model, self.start = model, start

    def functional_forward(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return self.model.functional_forward(params, buffers, x, start=self.start)


def _frozen_prefix(layers: Sequence[str], adapting: Sequence[str]) -> int:
    """How many body layers come before the first one that adapts."""
    body = [layer for layer in layers if layer != "head"]
    return next((index for index, layer in enumerate(body) if layer in adapting), len(body))


def freeze_ablation(checkpoint: Checkpoint, tasks: int = 100, seed: int = 0, steps: int | None = None,
                    lr: float | None = None, queries: int | None = None,
                    settings: Sequence[tuple[str, tuple[str, ...]]] | None = None,
                    progress: Progress | None = None) -> list[AblationRow]:
    """Query accuracy (MSE for regression) with 95% CI when only some layers adapt, every
    setting on the same `tasks` meta-test tasks."""
    steps = checkpoint.inner_steps if steps is None else int(steps)
    lr = checkpoint.inner_lr if lr is None else float(lr)
    settings = list(settings or ablation_settings(checkpoint.layers))
    model = checkpoint.build_model()
    params, buffers = checkpoint.parameters, checkpoint.buffers
    layers = checkpoint.layers
    adapt_by_setting = [adapted_names(params, adapting) for _, adapting in settings]
    starts = [_frozen_prefix(layers, adapting) for _, adapting in settings]
    scores = np.zeros((len(settings), tasks))
    for index, task in enumerate(meta_test_tasks(checkpoint, tasks, seed, queries)):
        with torch.no_grad():  # the frozen prefix's outputs, once per task
            support = [task.support_x, *model.functional_layer_outputs(params, buffers, task.support_x).values()]
            query = [task.query_x, *model.functional_layer_outputs(params, buffers, task.query_x).values()]
        for row, (adapt, start) in enumerate(zip(adapt_by_setting, starts)):
            partial = _FromLayer(model, start)
            adapted = inner_loop(partial, params, buffers, support[start], task.support_y, steps=steps, lr=lr,
                                 adapt=adapt, first_order=True)[-1]
            with torch.no_grad():
                scores[row, index] = _query_metric(partial.functional_forward(adapted, buffers, query[start]),
                                                   task.query_y)
        if progress:
            progress(index + 1, tasks)
    return [AblationRow(label, tuple(adapting), *mean_ci95(scores[row]), per_task=scores[row])
            for row, (label, adapting) in enumerate(settings)]


def layers_report(checkpoint: Checkpoint, statistics: LayerStatistics, ablation: Sequence[AblationRow]) -> dict:
    """Everything `python -m metaviz layers` prints, as plain JSON-ready values."""
    cka_mean, cka_ci95 = zip(*(mean_ci95(column[~np.isnan(column)]) for column in statistics.cka.T))
    return {
        "checkpoint": checkpoint.name, "content_hash": checkpoint.content_hash, "tasks": statistics.tasks,
        "seed": statistics.seed, "steps": statistics.steps, "queries": statistics.queries, "metric": statistics.metric,
        "layers": [{"layer": layer, "cka": cka_mean[i], "cka_ci95": cka_ci95[i],
                    "relative_median": float(np.median(statistics.relative[:, i])),
                    "absolute_median": float(np.median(statistics.absolute[:, i])),
                    "cosine": float(statistics.cosine[i])} for i, layer in enumerate(statistics.layers)],
        "ablation": [{"label": row.label, "adapt_layers": list(row.adapt_layers), "mean": row.mean, "ci95": row.ci95}
                     for row in ablation],
    }


# --- plain words for what the numbers say ------------------------------------------------------


def _score(row: AblationRow, metric: str) -> str:
    return f"{100 * row.mean:.1f}%" if metric == "accuracy" else f"an error of {row.mean:.3g}"


REUSED_CKA = 0.9  # the ANIL paper's reading: above this, a layer's representation barely changed


def _listed(layers: Sequence[str], verb_singular: str, verb_plural: str) -> str:
    return f"{', '.join(layers)} {verb_singular if len(layers) == 1 else verb_plural}"


def layer_roles_text(statistics: LayerStatistics) -> str:
    """One or two sentences on where adaptation happens, for readers who never met CKA."""
    cka = np.nanmean(statistics.cka, axis=0)
    frozen = [i for i in range(len(statistics.layers)) if not statistics.absolute[:, i].any()]
    body = [i for i, layer in enumerate(statistics.layers) if layer != "head" and i not in frozen]
    head = statistics.layers.index("head") if "head" in statistics.layers else None
    head_text = f" The head's outputs change much more (similarity {cka[head]:.2f})." if head is not None else ""
    frozen_text = (_listed([statistics.layers[i] for i in frozen], "does", "do") + " not adapt at all here "
                   "(frozen), so they keep their meta-trained weights. ") if frozen else ""
    if not body:
        return frozen_text + "Only the head learns the task." if frozen else \
            "This model has no body layers to compare with its head."
    stable = [statistics.layers[i] for i in body if cka[i] >= REUSED_CKA]
    changed = [statistics.layers[i] for i in body if cka[i] < REUSED_CKA]
    if not changed:
        return (frozen_text + "The body barely changes while adapting: every adapting hidden layer's view of the "
                f"new images stays at least {REUSED_CKA:.0%} similar to before. This model re-uses the features it "
                f"learned during meta-training; the head learns the task.{head_text}")
    if not stable:
        return (frozen_text + "Every adapting layer changes its view of the new images (similarity below "
                f"{REUSED_CKA:.0%} everywhere): this model learns the task throughout, not only in its head.")
    return (frozen_text + _listed(stable, "barely changes", "barely change")
            + f" (similarity at least {REUSED_CKA:.0%}); " + _listed(changed, "changes", "change")
            + " more. The layers that change are where this model learns the task." + head_text)


def task_update_text(norms: UpdateNorms) -> str:
    """Which layer moved most in one adaptation, in % of its own size."""
    if norms.steps == 0:
        return "With 0 adaptation steps nothing changes."
    relative = 100 * norms.layer_relative[-1]
    order = np.argsort(-relative)
    moved = [i for i in order if relative[i] > 0]
    if not moved:
        return "No layer changed: the chosen layers' gradients were zero on this task."
    still = [layer for layer, value in zip(norms.layers, relative) if value == 0]  # forward order
    words = (f"After {norms.steps} step{'s' if norms.steps != 1 else ''}, {norms.layers[moved[0]]} moved most: "
             f"{relative[moved[0]]:.3g}% of its own size.")
    others = [relative[i] for i in moved[1:]]
    if len(others) == 1:
        words += f" The other adapting layer, {norms.layers[moved[1]]}, moved {others[0]:.2g}%."
    elif others:
        words += f" The other adapting layers moved between {min(others):.2g}% and {max(others):.2g}%."
    if still:
        words += f" {', '.join(still)} did not adapt (frozen)."
    return words


def ablation_text(rows: Sequence[AblationRow], metric: str, trained_layers: Sequence[str] | None = None) -> str:
    """Head-only against all layers, next to the ANIL paper's finding. `trained_layers`: the
    layers that adapted in meta-training (None: all), since a row off that setting means less."""
    by_label = {row.label: row for row in rows}
    full, head = by_label.get("all layers"), by_label.get("head only (body frozen)")
    if full is None or head is None:
        return ""
    if trained_layers is not None and tuple(trained_layers) == ("head",):
        return (f"This model was meta-trained with only its head adapting (ANIL), so 'head only' is its own setting: "
                f"{_score(head, metric)}. Adapting every layer, which it never did in training, gives "
                f"{_score(full, metric)}.")
    if metric != "accuracy":
        return (f"Adapting only the head gives an error of {head.mean:.3g} on new points, against {full.mean:.3g} "
                "when every layer adapts.")
    difference = 100 * (full.mean - head.mean)
    change = f"{abs(difference):.1f} points {'below' if difference > 0 else 'above'}"
    words = (f"Adapting only the head scores {100 * head.mean:.1f}%, {change} adapting every layer "
             f"({100 * full.mean:.1f}%). The ANIL paper found that freezing the whole body at test time costs "
             "MAML about one point or less on Omniglot: the body's features are re-used, not re-learned.")
    if difference > 2:
        words += (" A head that adapts alone may just need more steps than the whole model: try more steps on the "
                  "Adaptation page and measure again.")
    body = by_label.get("body only (head frozen)")
    if body is not None and len(body.per_task) and np.ptp(body.per_task) == 0:
        words += (f" With the head frozen every task scores exactly {100 * body.mean:.0f}%: without adapting its "
                  "head the model cannot tell this task's classes apart (which class is which changes from task to "
                  "task, so the meta-trained head knows none of them).")
    return words
