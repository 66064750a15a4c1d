"""Few-shot tasks: N-way K-shot Q-query classification, sinusoid regression, user images.

A `Task` records where it came from (`source`), so the same task can be re-created bit for
bit: sampling depends only on the dataset split and the seed (numpy's PCG64 generator, which
gives the same stream on every platform and process).
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from metaviz.data import ImageClasses, SinusoidRange, load_classes, sinusoid

SINUSOID_QUERY_POINTS = 100


@dataclass(frozen=True)
class Task:
    support_x: torch.Tensor  # [ways*shots, 1, 28, 28] images, or [shots, 1] regression inputs
    support_y: torch.Tensor  # long class indices, or float [shots, 1] targets
    query_x: torch.Tensor
    query_y: torch.Tensor
    class_names: tuple[str, ...] = ()  # empty for regression
    source: dict = field(default_factory=dict)  # how to re-create it (see sample_task)

    @property
    def is_regression(self) -> bool:
        return not self.class_names

    @property
    def ways(self) -> int:
        return len(self.class_names)


class TaskSampler:
    """Draws N-way K-shot Q-query tasks from one split already in memory (the trainer's loop)."""

    def __init__(self, classes: ImageClasses, ways: int, shots: int, queries: int):
        per_class = classes.images.shape[1]
        if ways > classes.num_classes:
            raise ValueError(
                f"{ways}-way tasks need {ways} classes; the {classes.dataset} {classes.split} "
                f"split has {classes.num_classes}"
            )
        if shots + queries > per_class:
            raise ValueError(
                f"{shots} shots + {queries} queries need {shots + queries} images per class; "
                f"the {classes.dataset} {classes.split} split has {per_class}"
            )
        self.classes, self.ways, self.shots, self.queries = classes, ways, shots, queries

    def sample(self, rng: np.random.Generator, class_indices: Sequence[int] | None = None) -> Task:
        if class_indices is None:
            class_indices = rng.choice(self.classes.num_classes, self.ways, replace=False)
        class_indices = np.asarray(class_indices)
        per_class = self.classes.images.shape[1]
        picks = np.stack([rng.permutation(per_class)[: self.shots + self.queries] for _ in class_indices])
        # Fancy indexing copies, so the shared (read-only) class images are never aliased.
        images = torch.from_numpy(self.classes.images[class_indices[:, None], picks]).unsqueeze(2)
        labels = torch.arange(len(class_indices))
        support = images[:, : self.shots].reshape(-1, *images.shape[2:])
        query = images[:, self.shots :].reshape(-1, *images.shape[2:])
        return Task(
            support_x=support,
            support_y=labels.repeat_interleave(self.shots),
            query_x=query,
            query_y=labels.repeat_interleave(self.queries),
            class_names=tuple(self.classes.class_names[i] for i in class_indices),
        )


def class_indices_for(classes: ImageClasses, names: Sequence[str]) -> list[int]:
    lookup = {name: index for index, name in enumerate(classes.class_names)}
    missing = [name for name in names if name not in lookup]
    if missing:
        raise ValueError(f"unknown classes in the {classes.dataset} {classes.split} split: {missing}")
    return [lookup[name] for name in names]


def sample_task(
    dataset: str,
    split: str = "test",
    ways: int = 5,
    shots: int = 1,
    queries: int = 5,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
) -> Task:
    """One task, the same for the same arguments in every process.

    `classes` fixes the class names (in label order); `groups` restricts the draw to those
    alphabets (Omniglot) or digits.
    """
    if dataset == "sinusoid":
        return sample_sinusoid_task(shots=shots, seed=seed, queries=queries or SINUSOID_QUERY_POINTS)
    pool = load_classes(dataset, split)
    rng = np.random.default_rng(seed)
    if classes is not None:
        chosen = class_indices_for(pool, classes)
    elif groups is not None:
        allowed = np.flatnonzero(np.isin(pool.group_of_class, list(groups)))
        if len(allowed) < ways:
            raise ValueError(f"the groups {list(groups)} hold {len(allowed)} classes; {ways} needed")
        chosen = rng.choice(allowed, ways, replace=False)
    else:
        chosen = None
    task = TaskSampler(pool, len(classes) if classes is not None else ways, shots, queries).sample(rng, chosen)
    source = {
        "kind": "sampled", "dataset": dataset, "split": split, "ways": task.ways, "shots": shots,
        "queries": queries, "seed": seed, "classes": list(task.class_names),
    }
    if groups is not None:
        source["groups"] = list(groups)
    return Task(task.support_x, task.support_y, task.query_x, task.query_y, task.class_names, source)


def sample_sinusoid_task(shots: int = 5, seed: int = 0, queries: int = SINUSOID_QUERY_POINTS,
                         ranges: SinusoidRange = SinusoidRange()) -> Task:
    """y = A sin(x - phase) with A, phase and the x's drawn uniformly (MAML paper, section 5.1)."""
    rng = np.random.default_rng(seed)
    amplitude = float(rng.uniform(*ranges.amplitude))
    phase = float(rng.uniform(*ranges.phase))
    x = rng.uniform(*ranges.x, size=(shots + queries, 1))
    y = sinusoid(x, amplitude, phase)
    as_tensor = lambda array: torch.from_numpy(array.astype(np.float32))  # noqa: E731
    return Task(
        support_x=as_tensor(x[:shots]), support_y=as_tensor(y[:shots]),
        query_x=as_tensor(x[shots:]), query_y=as_tensor(y[shots:]),
        source={"kind": "sampled", "dataset": "sinusoid", "shots": shots, "queries": queries,
                "seed": seed, "amplitude": amplitude, "phase": phase},
    )


def task_from_images(
    images_by_class: Mapping[str, Sequence[np.ndarray]], shots: int, queries: int | None = None,
    seed: int = 0,
) -> Task:
    """A task from labelled 28x28 float images in [0, 1] (bright strokes on dark).

    The first `shots` images of each class (after a seeded shuffle) form the support set,
    the next `queries` (default: all the rest) the query set.
    """
    if len(images_by_class) < 2:
        raise ValueError("a classification task needs at least two classes")
    rng = np.random.default_rng(seed)
    support_x, support_y, query_x, query_y = [], [], [], []
    digest = hashlib.sha256()
    for label, (name, images) in enumerate(images_by_class.items()):
        images = [np.asarray(image, dtype=np.float32) for image in images]
        wanted = shots + (queries or 1)
        if len(images) < wanted:
            raise ValueError(f"class {name!r} has {len(images)} images; {wanted} needed")
        if any(image.shape != (28, 28) for image in images):
            raise ValueError(f"class {name!r}: every image must be 28x28 after conversion")
        order = rng.permutation(len(images))
        taken_queries = order[shots:] if queries is None else order[shots : shots + queries]
        support_x += [images[i] for i in order[:shots]]
        query_x += [images[i] for i in taken_queries]
        support_y += [label] * shots
        query_y += [label] * len(taken_queries)
        digest.update(name.encode())
        for image in images:
            digest.update(image.tobytes())
    stack = lambda images: torch.from_numpy(np.stack(images)).unsqueeze(1)  # noqa: E731
    return Task(
        support_x=stack(support_x), support_y=torch.tensor(support_y),
        query_x=stack(query_x), query_y=torch.tensor(query_y),
        class_names=tuple(images_by_class),
        source={"kind": "uploaded", "shots": shots, "queries": queries, "seed": seed,
                "content_sha256": digest.hexdigest()},
    )
