"""Task sampling: deterministic for a seed (across processes), disjoint splits, uploads."""
import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from metaviz.data import load_classes
from metaviz.tasks import sample_sinusoid_task, sample_task, task_from_images


def fingerprint(task) -> str:
    digest = hashlib.sha256()
    for tensor in (task.support_x, task.support_y, task.query_x, task.query_y):
        digest.update(tensor.numpy().tobytes())
    digest.update("|".join(task.class_names).encode())
    return digest.hexdigest()


def test_same_seed_gives_the_same_task_in_another_process():
    task = sample_task("digits", "test", ways=5, shots=2, queries=3, seed=7)
    code = ("from metaviz.tasks import sample_task; from tests.test_tasks import fingerprint; "
            "print(fingerprint(sample_task('digits', 'test', ways=5, shots=2, queries=3, seed=7)))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == fingerprint(task)


def test_different_seeds_give_different_tasks():
    assert fingerprint(sample_task("digits", seed=1)) != fingerprint(sample_task("digits", seed=2))


def test_task_shapes_and_provenance():
    task = sample_task("digits", "test", ways=5, shots=2, queries=3, seed=0)
    assert task.support_x.shape == (10, 1, 28, 28) and task.query_x.shape == (15, 1, 28, 28)
    assert task.support_y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert task.source["seed"] == 0 and task.source["classes"] == list(task.class_names)
    # The recorded classes re-create the same task.
    again = sample_task("digits", "test", shots=2, queries=3, seed=0, classes=task.source["classes"])
    assert again.class_names == task.class_names


@pytest.mark.parametrize("dataset", ["digits", "omniglot"])
def test_meta_train_and_meta_test_classes_are_disjoint(dataset, request):
    if dataset == "omniglot":
        request.getfixturevalue("omniglot_dir")
    train, test = load_classes(dataset, "train"), load_classes(dataset, "test")
    assert not set(train.class_names) & set(test.class_names)
    assert not set(train.groups) & set(test.groups)
    for seed in range(20):
        assert set(sample_task(dataset, "test", seed=seed).class_names) <= set(test.class_names)


def test_omniglot_task_restricted_to_an_alphabet(omniglot_dir):
    task = sample_task("omniglot", "test", ways=5, shots=1, queries=2, seed=3, groups=["Angelic"])
    assert all(name.startswith("Angelic/") for name in task.class_names)


def test_too_many_ways_is_a_clear_error():
    with pytest.raises(ValueError, match="need 11 classes"):
        sample_task("digits", "test", ways=11)


def test_sinusoid_task_within_the_paper_ranges():
    for seed in range(50):
        task = sample_sinusoid_task(shots=5, seed=seed)
        assert 0.1 <= task.source["amplitude"] <= 5.0 and 0.0 <= task.source["phase"] <= np.pi
        assert task.support_x.shape == (5, 1) and task.support_x.abs().max() <= 5.0
        assert task.is_regression
        expected = task.source["amplitude"] * torch.sin(task.support_x - task.source["phase"])
        assert torch.allclose(task.support_y, expected, atol=1e-5)


def test_task_from_user_images():
    rng = np.random.default_rng(0)
    images = {name: [rng.random((28, 28)) for _ in range(4)] for name in ("cat", "dog", "eel")}
    task = task_from_images(images, shots=1, queries=3)
    assert task.class_names == ("cat", "dog", "eel")
    assert task.support_x.shape == (3, 1, 28, 28) and task.query_x.shape == (9, 1, 28, 28)
    assert task.source["kind"] == "uploaded" and len(task.source["content_sha256"]) == 64
    with pytest.raises(ValueError, match="'cat' has 4 images; 5 needed"):
        task_from_images(images, shots=4, queries=1)
