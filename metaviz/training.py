"""Meta-training (MAML, first-order MAML, ANIL, Reptile), the joint pre-training baseline, and
meta-test evaluation.

Resumable: every `save_every` iterations the full state (meta-parameters, Adam state,
torch RNG state, iteration, history) is written atomically to `<run_dir>/state.safetensors`.
Tasks for iteration i come from a generator seeded with (seed, i), so a resumed run draws
exactly the tasks an uninterrupted one would and ends with the same parameters.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save

from metaviz import batched, reptile
from metaviz.adaptation import adapted_names, inner_loop, task_loss
from metaviz.checkpoints import Checkpoint, atomic_write_bytes, load_checkpoint, save_checkpoint
from metaviz.data import ImageClasses, load_classes
from metaviz.models import OMNIGLOT_MLP_SIZES, ConvNetConfig, MLPConfig, build_model, model_config_to_dict
from metaviz.tasks import Task, TaskSampler, sample_sinusoid_task

ALGORITHMS = ("maml", "fomaml", "anil", "joint", "reptile")
META_LR_DECAYS = ("none", "linear")
TRAIN_CLASSES = ("train", "train+val")
MODELS = ("conv", "mlp")


@dataclass(frozen=True)
class TrainConfig:
    """Defaults: the MAML paper's Omniglot 5-way 1-shot settings (Finn et al. 2017, sec. 5.2)."""

    # maml (second order) | fomaml (first order) | anil (head adapts only) | joint: no inner
    # loop, one model fitted to every task's points at once (the MAML paper's pre-training baseline)
    # | reptile (Nichol et al. 2018, see metaviz.reptile)
    algorithm: str = "maml"
    dataset: str = "omniglot"  # omniglot | digits | sinusoid
    ways: int = 5
    shots: int = 1
    queries: int = 1  # query examples per class during meta-training (paper: = shots)
    inner_lr: float = 0.4
    train_steps: int = 1  # inner steps while meta-training
    test_steps: int = 3  # inner steps at meta-test time (stored in the checkpoint)
    meta_batch: int = 32
    meta_lr: float = 1e-3  # Adam
    meta_lr_decay: str = "none"  # none | linear (Adam's rate falls linearly to 0 over the iterations)
    iterations: int = 60_000
    seed: int = 0
    hidden: int = 64  # conv filters, or MLP width for sinusoid (40 in the paper)
    model: str = "conv"  # image models: conv (4 blocks) | mlp (the MAML paper's 256-128-64-64); sinusoid: MLP
    train_shots: int = 0  # support examples per class while meta-training; 0: `shots` (Reptile paper: 10)
    # Reptile (Nichol et al. 2018): theta += eps * mean(phi - theta), eps linear from outer_lr to outer_lr_final
    outer_lr: float = 1.0
    outer_lr_final: float = 0.0
    inner_batch: int = 0  # Reptile: examples per inner step (0: the whole support set; paper: 10)
    val_every: int = 500
    val_tasks: int = 100
    save_every: int = 100
    device: str = "cpu"
    # A metaviz checkpoint to start from instead of a fresh initialisation (same model): a second
    # phase of a finished run, e.g. with --meta-lr-decay linear. Its history comes first in this one's.
    init_from: str = ""
    # train | train+val: meta-train on the validation alphabets (digits) too, a last fit once the
    # settings were chosen on validation. Such a run has nothing left to validate on, so it does not.
    train_classes: str = "train"

    @property
    def adapt_layers(self) -> tuple[str, ...] | None:
        return ("head",) if self.algorithm == "anil" else None


def model_config_for(config: TrainConfig) -> dict:
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; choose one of {MODELS}")
    if config.dataset == "sinusoid":
        return model_config_to_dict(MLPConfig(out_features=1, in_features=1, hidden_sizes=(config.hidden,) * 2))
    if config.model == "mlp":  # per-image normalisation where the paper has batch norm (see models.MLPConfig)
        return model_config_to_dict(MLPConfig(out_features=config.ways, in_features=28 * 28,
                                              hidden_sizes=OMNIGLOT_MLP_SIZES, norm="layer"))
    return model_config_to_dict(ConvNetConfig(out_features=config.ways, hidden=config.hidden))


def same_settings(saved: dict, config: TrainConfig) -> bool:
    """A saved run's settings against `config`; a setting added after the run was saved counts
    as its default (what the run used), so older runs stay resumable."""
    return {**dataclasses.asdict(TrainConfig()), **saved} == dataclasses.asdict(config)


class TaskSource:
    """Tasks of one split ("train+val": both, each with the training split's rotations) for
    iteration-seeded generators; sinusoid needs no split."""

    def __init__(self, config: TrainConfig, split: str, queries: int, progress=None, shots: int | None = None):
        self.config, self.queries, self.shots = config, queries, shots or config.shots
        self.sampler = None
        if config.dataset != "sinusoid":
            if split == "train+val":
                classes = _joined(load_classes(config.dataset, "train", progress=progress),
                                  load_classes(config.dataset, "val", rotations=True, progress=progress))
            else:
                classes = load_classes(config.dataset, split, progress=progress)
            self.sampler = TaskSampler(classes, config.ways, self.shots, queries)

    def sample(self, rng: np.random.Generator) -> Task:
        if self.sampler is None:
            return sample_sinusoid_task(shots=self.shots, queries=self.queries,
                                        seed=int(rng.integers(2**63)))
        return self.sampler.sample(rng)


def _joined(first: ImageClasses, second: ImageClasses) -> ImageClasses:
    images = np.concatenate([first.images, second.images])
    images.setflags(write=False)
    return ImageClasses(first.dataset, f"{first.split}+{second.split}", images,
                        first.class_names + second.class_names, first.groups + second.groups)


def task_on(task: Task, device: torch.device) -> Task:
    """The task with its tensors on `device`."""
    return dataclasses.replace(task, support_x=task.support_x.to(device), support_y=task.support_y.to(device),
                               query_x=task.query_x.to(device), query_y=task.query_y.to(device))


def per_step_query_metrics(model, params, buffers, task: Task, steps: int, lr: float, adapt) -> np.ndarray:
    """Query accuracy (classification) or MSE (regression) after each of steps 0..K."""
    history = inner_loop(model, params, buffers, task.support_x, task.support_y, steps=steps, lr=lr,
                         adapt=adapt, first_order=True)
    with torch.no_grad():
        outputs = [model.functional_forward(p, buffers, task.query_x) for p in history]
    if task.is_regression:
        return np.array([task_loss(o, task.query_y).item() for o in outputs])
    return np.array([(o.argmax(-1) == task.query_y).float().mean().item() for o in outputs])


BATCH_TASKS = 20  # tasks evaluated together by metaviz.batched (about 2x task by task: benchmarks/adaptation.py)


def _stacked(tasks: list[Task]) -> tuple[torch.Tensor, ...]:
    """support_x, support_y, query_x, query_y of tasks of one shape, each [T, ...]."""
    return tuple(torch.stack([getattr(task, part) for task in tasks])
                 for part in ("support_x", "support_y", "query_x", "query_y"))


def meta_batch_step(model, params, adapt, tasks: list[Task], config: TrainConfig) -> tuple[float, float]:
    """Adds one meta-batch's MAML / first-order MAML / ANIL meta-gradient to the parameters' .grad,
    all tasks at once (metaviz.batched: the conv net, images); returns its mean query loss and
    accuracy. The training loop's step, also timed by benchmarks/training.py and checked on a
    device by tools/check_batched_step.py."""
    support_x, support_y, query_x, query_y = _stacked(tasks)
    loss, outputs = batched.meta_objective(model, params, adapt, support_x, support_y, query_x, query_y,
                                           config.train_steps, config.inner_lr, first_order=config.algorithm == "fomaml")
    (loss / len(tasks)).backward()
    return loss.item() / len(tasks), (outputs.argmax(-1) == query_y).float().mean().item()


@torch.no_grad()
def _query_scores(model, adapted: list[dict], tasks: list[Task]) -> tuple[float, float]:
    """Mean query loss and accuracy over tasks, each task with its own adapted parameters."""
    outputs = [model.functional_forward(params, {}, task.query_x) for params, task in zip(adapted, tasks)]
    loss = np.mean([task_loss(output, task.query_y).item() for output, task in zip(outputs, tasks)])
    accuracy = np.mean([(output.argmax(-1) == task.query_y).float().mean().item() for output, task in zip(outputs, tasks)])
    return float(loss), float(accuracy)


def _batch_query_accuracies(model, params, tasks: list[Task], steps: int, lr: float, adapt) -> np.ndarray:
    """[T, K+1] query accuracy after steps 0..K for tasks of one shape, all at once: the numbers
    per_step_query_metrics gives task by task (within float32 rounding; tests/test_batched.py)."""
    support_x, support_y, query_x, query_y = _stacked(tasks)
    per_step = []
    for step_params in batched.adaptation_steps(model, params, adapt, support_x, support_y, steps, lr):
        adapted = {name: batched.from_matmul_layout(name, step_params[name].detach(), params[name].shape)
                   for name in adapt}
        outputs = batched.predict_tasks(model, params, adapted, query_x)
        per_step.append((outputs.argmax(-1) == query_y).float().mean(1).numpy())
    return np.stack(per_step, 1)


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation 95% confidence interval."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(1.96 * values.std(ddof=1) / math.sqrt(len(values)))


def default_test_queries(checkpoint: Checkpoint, queries: int | None = None) -> int:
    """Query examples per class at meta-test time: 15 images (the usual Omniglot protocol), or
    10 points for sinusoid."""
    return queries or (10 if checkpoint.is_regression else 15)


def meta_test_tasks(checkpoint: Checkpoint, count: int, seed: int = 0, queries: int | None = None,
                    split: str | None = None, shots: int | None = None) -> Iterator[Task]:
    """The `count` tasks `evaluate` uses for this seed, in its order: task i comes from a
    generator seeded with (seed, i), so any statistic over them refers to the same tasks."""
    config = TrainConfig(dataset=checkpoint.dataset, ways=checkpoint.ways, shots=shots or checkpoint.shots)
    source = TaskSource(config, split or checkpoint.test_split, default_test_queries(checkpoint, queries))
    for index in range(count):
        yield source.sample(np.random.default_rng([seed, index]))


def evaluate(checkpoint: Checkpoint, tasks: int = 600, seed: int = 0, steps: int | None = None,
             queries: int | None = None, split: str | None = None, device: str = "cpu", shots: int | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Meta-test accuracy (or MSE for sinusoid) with 95% CI over `tasks` tasks, per step."""
    steps = checkpoint.inner_steps if steps is None else steps
    queries = default_test_queries(checkpoint, queries)
    shots = shots or checkpoint.shots
    torch_device = torch.device(device)
    model = checkpoint.build_model().to(torch_device)
    params = {k: v.to(torch_device) for k, v in checkpoint.parameters.items()}
    buffers = {k: v.to(torch_device) for k, v in checkpoint.buffers.items()}
    adapt = adapted_names(params, checkpoint.adapt_layers)
    # The conv net (classification): a batch of tasks at a time.
    together = batched.supports(model) and torch_device.type == "cpu" and not checkpoint.is_regression
    stream = meta_test_tasks(checkpoint, tasks, seed, queries, split, shots)
    results = []
    while batch := list(itertools.islice(stream, BATCH_TASKS if together else 1)):
        if together:
            results += list(_batch_query_accuracies(model, params, batch, steps, checkpoint.inner_lr, adapt))
        else:
            results.append(per_step_query_metrics(model, params, buffers, task_on(batch[0], torch_device), steps,
                                                  checkpoint.inner_lr, adapt))
        if progress:
            progress(len(results), tasks)
    results = np.stack(results)
    per_step = [dict(zip(("mean", "ci95"), mean_ci95(results[:, k]))) for k in range(steps + 1)]
    return {
        "metric": "mse" if checkpoint.is_regression else "accuracy",
        "mean": per_step[-1]["mean"], "ci95": per_step[-1]["ci95"], "tasks": tasks, "steps": steps,
        "seed": seed, "shots": shots, "queries": queries, "split": split or checkpoint.test_split, "per_step": per_step,
    }


# --- resumable training state ---------------------------------------------------------------

def _save_state(path: Path, iteration: int, params: dict, optimizer: torch.optim.Adam, history: dict,
                config: TrainConfig) -> None:
    tensors = {f"param::{k}": v.detach().cpu().contiguous() for k, v in params.items()}
    names = list(params)
    for index, name in enumerate(names):
        state = optimizer.state.get(optimizer.param_groups[0]["params"][index], {})
        for key in ("exp_avg", "exp_avg_sq", "step"):
            if key in state:
                tensors[f"adam::{key}::{name}"] = state[key].detach().cpu().reshape(state[key].shape).contiguous()
    tensors["rng::torch"] = torch.get_rng_state()
    metadata = {"iteration": str(iteration), "history": json.dumps(history),
                "config": json.dumps(dataclasses.asdict(config))}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def _load_state(path: Path, params: dict, optimizer: torch.optim.Adam) -> tuple[int, dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as file:
        metadata = file.metadata()
    tensors = load_file(str(path))
    with torch.no_grad():
        for name, value in params.items():
            value.copy_(tensors[f"param::{name}"])
    for index, name in enumerate(params):
        if f"adam::step::{name}" in tensors:
            parameter = optimizer.param_groups[0]["params"][index]
            optimizer.state[parameter] = {key: tensors[f"adam::{key}::{name}"].to(parameter.device)
                                          for key in ("step", "exp_avg", "exp_avg_sq")}
    torch.set_rng_state(tensors["rng::torch"])
    return int(metadata["iteration"]), json.loads(metadata["history"]), json.loads(metadata["config"])


def _earlier_phase(config: TrainConfig, model_config: dict) -> Checkpoint | None:
    """The checkpoint `init_from` names, checked to be the same model; None without one."""
    if not config.init_from:
        return None
    earlier = load_checkpoint(config.init_from)
    if earlier.model_config != model_config:
        raise ValueError(f"{config.init_from} is a different model ({earlier.model_config}); "
                         f"these settings build {model_config}")
    return earlier


def _iterations_of(checkpoint: Checkpoint | None) -> int:
    if checkpoint is None:
        return 0
    logged = checkpoint.history.get("iteration") or [0]  # the last entry is the run's end
    return int(logged[-1])


@dataclass
class History:
    iteration: list = field(default_factory=list)
    meta_loss: list = field(default_factory=list)
    meta_accuracy: list = field(default_factory=list)
    val_iteration: list = field(default_factory=list)
    val_metric: list = field(default_factory=list)
    seconds: float = 0.0  # wall-clock training time, summed over resumed sessions


def train(config: TrainConfig, run_dir: str | Path, out: str | Path | None = None, name: str | None = None,
          resume: bool = False, stop_after: int | None = None, show_progress: bool = True,
          log_every: int = 50, save_partial: bool = False) -> Checkpoint | None:
    """Meta-trains; returns the final Checkpoint (saved to `out`), or None when stopped early.

    `stop_after` ends this process after that many iterations (a state file stays for --resume);
    with `save_partial` the checkpoint is written anyway, marked with the iterations done.
    """
    if config.algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {config.algorithm!r}; choose one of {ALGORITHMS}")
    if config.train_classes not in TRAIN_CLASSES:
        raise ValueError(f"unknown training classes {config.train_classes!r}; choose one of {TRAIN_CLASSES}")
    if config.train_classes != "train" and config.dataset == "sinusoid":
        raise ValueError("sine-wave tasks have no classes to add: --train-classes is for image datasets")
    if config.meta_lr_decay not in META_LR_DECAYS:
        raise ValueError(f"unknown meta-lr decay {config.meta_lr_decay!r}; choose one of {META_LR_DECAYS}")
    run_dir = Path(run_dir)
    state_path = run_dir / "state.safetensors"
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model_config = model_config_for(config)
    model = build_model(model_config).to(device)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    optimizer = torch.optim.Adam(params.values(), lr=config.meta_lr)
    history = History()
    start = 0
    earlier = _earlier_phase(config, model_config)
    if earlier is not None:
        with torch.no_grad():
            for key, value in params.items():
                value.copy_(earlier.parameters[key])
        history = History(**earlier.history)
    offset = _iterations_of(earlier)  # this phase's iteration 1 is the run's offset + 1
    if resume and state_path.exists():
        start, saved_history, saved_config = _load_state(state_path, params, optimizer)
        if not same_settings(saved_config, config):
            raise ValueError(f"{state_path} was written with other settings: {saved_config}")
        history = History(**saved_history)
    elif state_path.exists() and not resume:
        raise FileExistsError(f"{state_path} exists: pass --resume to continue it, or choose another run folder")

    train_source = TaskSource(config, config.train_classes, config.queries, shots=config.train_shots or config.shots)
    validating = config.train_classes == "train"
    val_source = TaskSource(config, "val", 10 if config.dataset == "sinusoid" else 15) if validating else None
    adapt = adapted_names(params, config.adapt_layers)
    classification = config.dataset != "sinusoid"
    # MAML-type steps on the conv net: the whole meta-batch at once (metaviz.batched; about 1.5x
    # task by task for second order, benchmarks/training.py), the same meta-gradient within rounding.
    # On a GPU too (an H100: 66 ms a step at meta-batch 64, 15 queries, 3 steps; its meta-gradient
    # checked against task by task there, checkpoints/README.md's fifth try). Reptile too, on the
    # CPU (its inner loops, 1.3-1.45x task by task with the paper's settings), the same tasks and
    # mini-batches as task by task.
    together = batched.supports(model) and (config.algorithm in ("maml", "fomaml", "anil")
                                            or (config.algorithm == "reptile" and device.type == "cpu"))

    def validate() -> float:
        detached = {k: v.detach() for k, v in params.items()}
        scores = [per_step_query_metrics(model, detached, {},
                                         task_on(val_source.sample(np.random.default_rng([10**6, i])), device),
                                         config.test_steps, config.inner_lr, adapt)[-1]
                  for i in range(config.val_tasks)]
        return float(np.mean(scores))

    from tqdm import tqdm

    bar = tqdm(total=config.iterations, initial=start, disable=not show_progress, dynamic_ncols=True)
    window_loss, window_accuracy = [], []
    end = config.iterations if stop_after is None else min(config.iterations, start + stop_after)
    started = time.monotonic()
    for iteration in range(start, end):
        rng = np.random.default_rng([config.seed, iteration])
        optimizer.zero_grad(set_to_none=True)
        if config.meta_lr_decay == "linear":
            optimizer.param_groups[0]["lr"] = reptile.outer_step_size(iteration, config.iterations, config.meta_lr, 0.0)
        total_loss, total_correct, reptile_adapted = 0.0, 0.0, []
        if together and config.algorithm == "reptile":
            tasks, step_indices = [], []
            for _ in range(config.meta_batch):  # the order task by task draws them in
                tasks.append(train_source.sample(rng))
                step_indices.append(reptile.inner_batches(len(tasks[-1].support_x), config.train_steps,
                                                          config.inner_batch, rng))
            reptile_adapted = reptile.adapt_tasks_together(
                model, params, [task.support_x for task in tasks], [task.support_y for task in tasks], step_indices,
                lr=config.inner_lr, adapt=adapt)
            total_loss, total_correct = _query_scores(model, reptile_adapted, tasks)
        elif together:
            tasks = [task_on(train_source.sample(rng), device) for _ in range(config.meta_batch)]
            total_loss, total_correct = meta_batch_step(model, params, adapt, tasks, config)
        else:
            for _ in range(config.meta_batch):
                task = task_on(train_source.sample(rng), device)
                if config.algorithm == "joint":  # the baseline fits all of a task's points, without adapting
                    task = dataclasses.replace(task, query_x=torch.cat([task.support_x, task.query_x]),
                                               query_y=torch.cat([task.support_y, task.query_y]))
                    adapted = params
                elif config.algorithm == "reptile":  # phi from SGD steps; the query loss is only reported
                    adapted = reptile.adapt_to_task(model, params, task.support_x, task.support_y, steps=config.train_steps,
                                                    lr=config.inner_lr, adapt=adapt, batch=config.inner_batch, rng=rng)
                    reptile_adapted.append(adapted)
                else:
                    adapted = inner_loop(model, params, {}, task.support_x, task.support_y, steps=config.train_steps,
                                         lr=config.inner_lr, adapt=adapt, first_order=config.algorithm == "fomaml")[-1]
                outputs = model.functional_forward(adapted, {}, task.query_x)
                loss = task_loss(outputs, task.query_y) / config.meta_batch
                if loss.requires_grad:  # Reptile's needs no gradient
                    loss.backward()
                total_loss += loss.item()
                if classification:
                    total_correct += (outputs.argmax(-1) == task.query_y).float().mean().item() / config.meta_batch
        if config.algorithm == "reptile":
            epsilon = reptile.outer_step_size(iteration, config.iterations, config.outer_lr, config.outer_lr_final)
            reptile.meta_update(params, reptile_adapted, epsilon)
        else:
            optimizer.step()
        window_loss.append(total_loss)
        window_accuracy.append(total_correct)
        done = iteration + 1
        if done % log_every == 0 or done == end:
            history.iteration.append(offset + done)
            history.meta_loss.append(float(np.mean(window_loss)))
            history.meta_accuracy.append(float(np.mean(window_accuracy)) if classification else None)
            window_loss, window_accuracy = [], []
            bar.set_postfix(loss=f"{history.meta_loss[-1]:.3f}",
                            **({"acc": f"{history.meta_accuracy[-1]:.3f}"} if classification else {}))
        if validating and (done % config.val_every == 0 or done == config.iterations):
            history.val_iteration.append(offset + done)
            history.val_metric.append(validate())
            bar.write(f"iteration {done}: validation {'accuracy' if classification else 'MSE'} "
                      f"{history.val_metric[-1]:.4f}")
        if done % config.save_every == 0 or done == end:
            history.seconds += time.monotonic() - started
            started = time.monotonic()
            _save_state(state_path, done, params, optimizer, dataclasses.asdict(history), config)
        bar.update(1)
    bar.close()
    if end < config.iterations and not save_partial:
        return None
    history_dict = dataclasses.asdict(history)
    checkpoint = Checkpoint(
        name=name or Path(out).stem if out else (name or "checkpoint"), model_config=model_config,
        parameters={k: v.detach().cpu() for k, v in params.items()}, algorithm=config.algorithm,
        dataset=config.dataset, ways=config.ways if classification else 0, shots=config.shots,
        queries=config.queries, inner_lr=config.inner_lr, inner_steps=config.test_steps,
        adapt_layers=config.adapt_layers, train_split=config.train_classes, test_split="test",
        history=history_dict, extra={"train_config": dataclasses.asdict(config), "iterations_done": end,
                                     **({"continued_from": {"name": earlier.name, "content_hash": earlier.content_hash,
                                                            "iterations": offset, "shots": earlier.shots}}
                                        if earlier else {})},
    )
    if out:
        checkpoint = save_checkpoint(checkpoint, out)
    return checkpoint
