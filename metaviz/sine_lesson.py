"""The sine-wave lesson: why a meta-learned start adapts faster (the MAML paper's figure 2).

Two models meet the same new sine wave through its K given points and take the same gradient
steps: the meta-learned one (MAML) and a model pre-trained on all training waves at once
(`train --algorithm joint`), the paper's baseline. `sine_adaptation` records each model's whole
predicted curve after every step and its error against the true wave; the figures are in
metaviz.sine_figures. Plain Python, no streamlit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from metaviz.data import SinusoidRange, sinusoid

if TYPE_CHECKING:
    from metaviz.checkpoints import Checkpoint
    from metaviz.tasks import Task

GRID_POINTS = 200  # where each curve is drawn and its error measured, across the waves' x range


@dataclass(frozen=True)
class SineAdaptation:
    """One model's adaptation to one wave, step 0 (before adapting) to step K."""

    model: str  # the checkpoint's name
    x: np.ndarray  # [G] where the curves are evaluated
    truth: np.ndarray  # [G] the true wave
    predictions: np.ndarray  # [K+1, G] the model's curve after each step
    curve_error: np.ndarray  # [K+1] mean squared error against the true wave over x
    support_loss: np.ndarray  # [K+1] mean squared error on the K given points (what the steps minimise)

    @property
    def steps(self) -> int:
        return len(self.curve_error) - 1


def wave_of(task: Task) -> tuple[float, float]:
    """(amplitude, phase) of a sampled sine-wave task; ValueError for any other task."""
    if "amplitude" not in task.source or "phase" not in task.source:
        raise ValueError("this task is not a sampled sine wave (its amplitude and phase are unknown)")
    return float(task.source["amplitude"]), float(task.source["phase"])


def sine_adaptation(checkpoint: Checkpoint, task: Task, steps: int, lr: float,
                    grid_points: int = GRID_POINTS) -> SineAdaptation:
    """Adapts the checkpoint to the wave's given points (every layer, `steps` steps of size
    `lr`: the same for any model compared) and evaluates each step's curve."""
    from metaviz.adaptation import adapt

    if not checkpoint.is_regression:
        raise ValueError(f"{checkpoint.name} classifies images; the lesson needs a sine-wave model")
    amplitude, phase = wave_of(task)
    trace = adapt(checkpoint, task, steps=steps, lr=lr, adapt_layers=checkpoint.layers)
    x = np.linspace(*SinusoidRange().x, grid_points)
    model = checkpoint.build_model()
    with torch.no_grad():
        inputs = torch.from_numpy(x.astype(np.float32))[:, None]
        predictions = np.stack([model.functional_forward(params, trace.buffers, inputs)[:, 0].numpy()
                                for params in trace.params]).astype(np.float64)
    truth = sinusoid(x, amplitude, phase)
    return SineAdaptation(checkpoint.name, x, truth, predictions, ((predictions - truth) ** 2).mean(1),
                          trace.support_loss)


def lesson_text(meta: SineAdaptation, baseline: SineAdaptation) -> str:
    """The comparison in one or two sentences a newcomer can read."""
    first = min(1, meta.steps)
    words = (f"Before learning anything about this wave, both models are far off (error {meta.curve_error[0]:.2f} "
             f"and {baseline.curve_error[0]:.2f}). ")
    if meta.steps == 0:
        return words + "Choose at least one learning step to see them adapt."
    words += (f"After {first} step the meta-learned model's error is {meta.curve_error[first]:.2f}, the "
              f"pre-trained model's {baseline.curve_error[first]:.2f}; after {meta.steps} steps "
              f"{meta.curve_error[-1]:.2f} against {baseline.curve_error[-1]:.2f}.")
    if meta.curve_error[-1] < baseline.curve_error[-1]:
        ratio = baseline.curve_error[-1] / max(meta.curve_error[-1], 1e-12)
        words += f" The meta-learned start ends with an error {ratio:.1f} times smaller."
    else:
        words += " On this wave the pre-trained model does as well or better: try a few other waves."
    return words


def lesson_checkpoints(files, selected: str | None = None):
    """(meta-learned, pre-trained) sine-wave checkpoint files (services.CheckpointFile) from
    `files`: the selected one when it is a meta-learned sine model, else the first; the first
    jointly pre-trained one (`train --algorithm joint`). None where there is none."""
    sine = [file for file in files if file.dataset == "sinusoid" and file.metadata is not None]
    pretrained = [file for file in sine if file.metadata.get("algorithm") == "joint"]
    meta = [file for file in sine if file.metadata.get("algorithm") != "joint"]
    chosen = next((file for file in meta if str(file.path) == selected), meta[0] if meta else None)
    return chosen, pretrained[0] if pretrained else None
