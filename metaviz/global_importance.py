"""Which places of the image a checkpoint relies on in general: attribution strength averaged
over many meta-test tasks and all their classes, before adapting and after.

One task's maps say what the model looked at for those images; averaged over many tasks they
say where it looks at all, and the difference of the two averages where adaptation in
general moves its attention. Each map explains the image's *true* class (not the answer): at
step 0 the answer is close to a guess, and the true class is the one question that means the
same before and after adapting. Each image counts equally: its strength map (|attribution|,
channels summed) is divided by its own total, so a pixel's value is its share of that image's
attribution, and an image with large scores cannot outweigh the rest.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from metaviz.adaptation import adapt
from metaviz.checkpoints import Checkpoint
from metaviz.explain import attribute, method_named, resolved_settings
from metaviz.training import meta_test_tasks


@dataclass(frozen=True)
class GlobalImportance:
    method: str
    settings: dict  # the method's settings after defaults
    tasks: int
    images: int  # images averaged into each map
    steps: int  # "after" is after this many steps
    before: np.ndarray  # [H, W] mean share of each pixel in an image's attribution strength, step 0
    after: np.ndarray  # [H, W] the same after `steps` steps
    mean_image: np.ndarray  # [H, W] the images' mean: where the ink usually is

    @property
    def change(self) -> np.ndarray:
        """after − before: where adapting moves the model's attention, on average."""
        return self.after - self.before


def strength_shares(values) -> np.ndarray:
    """[N, H, W]: each image's |attribution| (channels summed) as shares of its own total; a map
    that is zero everywhere stays zero."""
    values = np.asarray(values, dtype=np.float64)
    strength = np.abs(values.reshape(len(values), -1, *values.shape[-2:]).sum(1))
    totals = strength.sum(axis=(1, 2), keepdims=True)
    return strength / np.where(totals > 0, totals, 1.0)


def global_importance(checkpoint: Checkpoint, method: str, tasks: int = 20, seed: int = 0, steps: int | None = None,
                      lr: float | None = None, adapt_layers: Sequence[str] | None = None, shots: int | None = None,
                      queries: int | None = None, images: str = "query",
                      progress: Callable[[int, int], None] | None = None, **settings) -> GlobalImportance:
    """Mean strength share per pixel over the `images` ("query" or "support") of `tasks` meta-test
    tasks (evaluate's tasks for `seed`), at step 0 and after `steps` steps (default: the
    checkpoint's), each map explaining the image's true class."""
    if checkpoint.is_regression:
        raise ValueError("global importance explains image models; this checkpoint predicts numbers")
    if images not in ("query", "support"):
        raise ValueError(f"images must be 'query' or 'support', not {images!r}")
    if tasks < 1:
        raise ValueError("at least one task is needed")
    settings = resolved_settings(method_named(method), settings)
    model = checkpoint.build_model()
    before = after = image_sum = 0.0
    count, last_step = 0, 0
    for index, task in enumerate(meta_test_tasks(checkpoint, tasks, seed, queries, shots=shots)):
        trace = adapt(checkpoint, task, steps=steps, lr=lr, adapt_layers=adapt_layers, model=model)
        inputs, classes = (task.query_x, task.query_y) if images == "query" else (task.support_x, task.support_y)
        last_step = trace.steps
        maps = [attribute(checkpoint, trace, step, method, inputs, target=classes, model=model, **settings).values
                for step in (0, last_step)]
        before = before + strength_shares(maps[0]).sum(0)
        after = after + strength_shares(maps[1]).sum(0)
        image_sum = image_sum + inputs.numpy().reshape(len(inputs), -1, *inputs.shape[-2:]).mean(1).sum(0)
        count += len(inputs)
        if progress:
            progress(index + 1, tasks)
    return GlobalImportance(method=method_named(method).name, settings=settings, tasks=tasks, images=count,
                            steps=last_step, before=before / count, after=after / count,
                            mean_image=image_sum / count)
