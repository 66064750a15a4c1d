"""Computations over many tasks for pages/5_Layers.py (not a page itself).

They take seconds, so they run when the user asks, behind a progress bar, and their results
are kept for all sessions (pages._shared.remembered) by identity: checkpoint path and content
hash, number of tasks, seed, adaptation settings.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pages._shared import kept, load_checkpoint, remembered, session_token

if TYPE_CHECKING:
    from metaviz.updates import AblationRow, LayerStatistics


def identity(path: str, content_hash: str, tasks: int, seed: int, steps: int, lr: float,
             layers: tuple[str, ...]) -> tuple:
    return "layers", path, content_hash, int(tasks), int(seed), int(steps), float(lr), tuple(layers)


def measured(identity: tuple) -> tuple[LayerStatistics, list[AblationRow]] | None:
    """The statistics and ablation already measured for this identity, if any."""
    return kept(identity)


def measure(identity: tuple, progress: Callable[[float, str], None]) -> tuple[LayerStatistics, list[AblationRow]]:
    """Update statistics and the freeze ablation over the identity's tasks (see `identity`)."""
    from metaviz.one_run import LONG_COMPUTATIONS

    with LONG_COMPUTATIONS.hold(session_token()):  # a double click waits for the first run's end
        return remembered(identity, lambda: _measure(identity, progress))


def _measure(identity: tuple, progress: Callable[[float, str], None]) -> tuple[LayerStatistics, list[AblationRow]]:
    from metaviz.updates import freeze_ablation, layer_statistics

    _, path, content_hash, tasks, seed, steps, lr, layers = identity
    checkpoint = load_checkpoint(path, content_hash)
    statistics = layer_statistics(
        checkpoint, tasks=tasks, seed=seed, steps=steps, lr=lr, adapt_layers=layers,
        progress=lambda done, total: progress(0.4 * done / total, f"Adapting task {done} of {total}: update sizes"))
    ablation = freeze_ablation(
        checkpoint, tasks=tasks, seed=seed, steps=steps, lr=lr,
        progress=lambda done, total: progress(0.4 + 0.6 * done / total,
                                              f"Task {done} of {total}: adapting with some layers frozen"))
    return statistics, ablation
