"""Every shipped checkpoint still reaches its recorded meta-test figure.

Re-evaluates each checkpoint in checkpoints/ on 100 tasks (the first 100 of the recorded
600-task evaluation: task i depends only on the seed and i) and checks the two confidence
intervals overlap, so a change that breaks the model, the inner loop or the data pipeline
fails here.
"""
from pathlib import Path

import pytest

from metaviz.checkpoints import list_checkpoints, load_checkpoint
from metaviz.training import evaluate

CHECKPOINTS = list_checkpoints(Path(__file__).parent.parent / "checkpoints")


def test_the_offline_default_is_shipped():
    assert any(path.stem == "digits-5w1s-maml" for path in CHECKPOINTS)


@pytest.mark.parametrize("path", CHECKPOINTS, ids=[path.stem for path in CHECKPOINTS])
def test_shipped_checkpoint_reproduces_its_recorded_figure(path, request):
    checkpoint = load_checkpoint(path)
    if checkpoint.dataset == "omniglot":
        request.getfixturevalue("omniglot_dir")
    recorded = checkpoint.metrics.get("meta_test")
    assert recorded, f"{path.name} has no recorded meta-test figure (python -m metaviz evaluate --record)"
    again = evaluate(checkpoint, tasks=100, seed=recorded["seed"], steps=recorded["steps"], shots=recorded["shots"],
                     queries=recorded["queries"])
    assert abs(again["mean"] - recorded["mean"]) <= again["ci95"] + recorded["ci95"], (again, recorded)
