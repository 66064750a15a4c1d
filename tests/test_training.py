"""Meta-training: resumable after SIGKILL with identical results; evaluation CLI."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from metaviz.checkpoints import load_checkpoint
from safetensors.torch import load_file

from metaviz.training import TrainConfig, train

TINY = ["--dataset", "digits", "--meta-batch", "2", "--queries", "2", "--iterations", "40",
        "--val-every", "20", "--val-tasks", "3", "--save-every", "1", "--threads", "1"]


def saved_iteration(state) -> int:
    """The iteration the state file records, from one read of its bytes. The trainer replaces
    the file (atomically) while the test polls it, and safe_open(framework="pt") opens the path
    twice (the header, then torch's mapping of the data): a replacement in between paired one
    file's header with the next one's size and failed the test once, with no file ever torn."""
    if not state.exists():
        return 0
    data = state.read_bytes()
    header_size = int.from_bytes(data[:8], "little")  # safetensors: 8-byte length, then a JSON header
    return int(json.loads(data[8 : 8 + header_size])["__metadata__"]["iteration"])


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "metaviz", *args], capture_output=True, text=True, **kwargs)


REPTILE_FLAGS = ["--algorithm", "reptile", "--train-steps", "3", "--inner-batch", "3", "--train-shots", "2",
                 "--inner-lr", "0.1"]


@pytest.mark.slow
@pytest.mark.parametrize("algorithm_flags", [[], REPTILE_FLAGS], ids=["maml", "reptile"])
def test_sigkill_at_any_moment_then_resume_matches_an_uninterrupted_run(tmp_path, algorithm_flags):
    flags = [*TINY, *algorithm_flags]
    reference = run_cli("train", *flags, "--run-dir", tmp_path / "a", "--out", tmp_path / "a.safetensors")
    assert reference.returncode == 0, reference.stderr

    run_dir, out = tmp_path / "b", tmp_path / "b.safetensors"
    state = run_dir / "state.safetensors"
    for kill_at in (5, 17, 31):  # kill the process at different moments, more than once
        process = subprocess.Popen([sys.executable, "-m", "metaviz", "train", *flags, "--run-dir", run_dir,
                                    "--out", out, *(["--resume"] if state.exists() else [])],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while saved_iteration(state) < kill_at and process.poll() is None:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        # Never corrupt: whatever the moment of the kill, the state loads whole.
        assert kill_at <= saved_iteration(state) < 40
        assert "rng::torch" in load_file(state)
    finished = run_cli("train", *flags, "--run-dir", run_dir, "--out", out, "--resume")
    assert finished.returncode == 0, finished.stderr

    a, b = load_checkpoint(tmp_path / "a.safetensors"), load_checkpoint(out)
    for name in a.parameters:
        assert torch.equal(a.parameters[name], b.parameters[name]), name
    assert a.history["val_metric"] == b.history["val_metric"]


def test_resume_refuses_other_settings(tmp_path):
    config = TrainConfig(dataset="digits", meta_batch=2, queries=2, iterations=4, val_every=2, val_tasks=2,
                         save_every=1)
    assert train(config, tmp_path, stop_after=2, show_progress=False) is None
    other = TrainConfig(**{**config.__dict__, "meta_lr": 0.5})
    with pytest.raises(ValueError, match="other settings"):
        train(other, tmp_path, resume=True, show_progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train(config, tmp_path, show_progress=False)


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "anil"])
def test_each_algorithm_trains_and_records_its_settings(tmp_path, algorithm):
    config = TrainConfig(algorithm=algorithm, dataset="digits", meta_batch=2, queries=2, iterations=3,
                         val_every=3, val_tasks=2, save_every=3)
    checkpoint = train(config, tmp_path, out=tmp_path / "c.safetensors", show_progress=False)
    loaded = load_checkpoint(tmp_path / "c.safetensors")
    assert loaded.algorithm == algorithm
    assert loaded.adapt_layers == (("head",) if algorithm == "anil" else None)
    assert len(loaded.history["val_metric"]) == 1 and loaded.history["seconds"] > 0
    assert loaded.content_hash == checkpoint.content_hash


def test_sinusoid_trains(tmp_path):
    config = TrainConfig(dataset="sinusoid", shots=10, queries=10, inner_lr=0.01, meta_batch=4, iterations=5,
                         hidden=40, val_every=5, val_tasks=5, save_every=5)
    checkpoint = train(config, tmp_path, out=tmp_path / "s.safetensors", show_progress=False)
    assert checkpoint.is_regression and checkpoint.model_config["kind"] == "mlp"


def test_evaluate_json(tmp_path):
    config = TrainConfig(dataset="digits", meta_batch=2, queries=2, iterations=2, val_every=2, val_tasks=2,
                         save_every=2)
    train(config, tmp_path, out=tmp_path / "c.safetensors", show_progress=False)
    result = run_cli("evaluate", tmp_path / "c.safetensors", "--tasks", "12", "--steps", "2", "--json", check=True)
    report = json.loads(result.stdout)
    assert {"mean", "ci95", "tasks", "per_step"} <= report.keys()
    assert report["tasks"] == 12 and len(report["per_step"]) == 3
    assert 0.0 <= report["mean"] <= 1.0 and report["ci95"] > 0


def test_evaluate_missing_checkpoint_is_a_clear_error(tmp_path):
    result = run_cli("evaluate", tmp_path / "nope.safetensors")
    assert result.returncode == 2 and "cannot read checkpoint" in result.stderr and "Traceback" not in result.stderr


def test_a_stopped_run_can_be_exported_as_a_partial_checkpoint(tmp_path):
    config = TrainConfig(dataset="digits", meta_batch=2, queries=2, iterations=10, val_every=5, val_tasks=2,
                         save_every=1)
    partial = train(config, tmp_path / "run", out=tmp_path / "p.safetensors", stop_after=3, save_partial=True,
                    show_progress=False)
    assert load_checkpoint(tmp_path / "p.safetensors").extra["iterations_done"] == 3
    finished = train(config, tmp_path / "run", out=tmp_path / "f.safetensors", resume=True, show_progress=False)
    assert finished.extra["iterations_done"] == 10
    assert any(not torch.equal(partial.parameters[k], finished.parameters[k]) for k in partial.parameters)


def test_a_second_phase_starts_from_the_earlier_checkpoint_and_continues_its_history(tmp_path):
    config = TrainConfig(dataset="digits", meta_batch=2, queries=2, iterations=3, val_every=3, val_tasks=2,
                         save_every=3)
    earlier = train(config, tmp_path / "a", out=tmp_path / "a.safetensors", show_progress=False)
    # With a meta-learning rate of 0 nothing moves: the second phase starts where the first ended.
    still = TrainConfig(**{**config.__dict__, "iterations": 2, "meta_lr": 0.0, "val_every": 2,
                           "init_from": str(tmp_path / "a.safetensors")})
    continued = train(still, tmp_path / "b", out=tmp_path / "b.safetensors", show_progress=False)
    for name, value in earlier.parameters.items():
        assert torch.equal(value, continued.parameters[name]), name
    assert continued.history["iteration"] == [3, 5] and continued.history["val_iteration"] == [3, 5]
    assert continued.history["seconds"] > earlier.history["seconds"]
    assert continued.extra["continued_from"] == {"name": earlier.name, "content_hash": earlier.content_hash,
                                                 "iterations": 3, "shots": earlier.shots}
    other_model = TrainConfig(**{**still.__dict__, "hidden": 8})
    with pytest.raises(ValueError, match="different model"):
        train(other_model, tmp_path / "c", show_progress=False)


def test_linear_meta_lr_decay_takes_full_steps_first_then_smaller_ones(tmp_path):
    config = TrainConfig(dataset="digits", meta_batch=2, queries=2, iterations=2, val_every=2, val_tasks=2,
                         save_every=1, meta_lr=0.01)
    decaying = TrainConfig(**{**config.__dict__, "meta_lr_decay": "linear"})
    runs = {}
    for label, settings in (("constant", config), ("linear", decaying)):
        first = train(settings, tmp_path / label, out=tmp_path / f"{label}1.safetensors", stop_after=1,
                      save_partial=True, show_progress=False)
        second = train(settings, tmp_path / label, out=tmp_path / f"{label}2.safetensors", resume=True,
                       show_progress=False)
        runs[label] = first.parameters, second.parameters
    for name in runs["constant"][0]:
        assert torch.equal(runs["constant"][0][name], runs["linear"][0][name]), name  # iteration 0: the full rate
    assert any(not torch.equal(runs["constant"][1][k], runs["linear"][1][k]) for k in runs["constant"][1])
    with pytest.raises(ValueError, match="meta-lr decay"):
        train(TrainConfig(**{**config.__dict__, "meta_lr_decay": "cosine"}), tmp_path / "x", show_progress=False)


def test_a_last_fit_on_the_validation_classes_too(tmp_path):
    from metaviz.training import TaskSource, TrainConfig, train
    from metaviz.user_checkpoints import tidy_metadata

    config = TrainConfig(dataset="digits", meta_batch=2, queries=2, iterations=3, val_every=1, val_tasks=2,
                         save_every=1, train_classes="train+val")
    classes = TaskSource(config, "train+val", 2).sampler.classes
    assert classes.num_classes == 12 + 8 and classes.split == "train+val"  # digits 0-3, then 4 and 5 rotated
    assert {"digit 4", "digit 5"} <= set(classes.groups) and not classes.images.flags.writeable
    checkpoint = train(config, tmp_path / "run", out=tmp_path / "c.safetensors", show_progress=False)
    assert checkpoint.train_split == "train+val"
    assert checkpoint.history["val_metric"] == [] and len(checkpoint.history["meta_loss"]) == 1  # nothing to validate on
    assert tidy_metadata(load_checkpoint(tmp_path / "c.safetensors"), "c").train_split == "train+val"  # uploadable
    with pytest.raises(ValueError, match="no classes to add"):
        train(TrainConfig(dataset="sinusoid", train_classes="train+val"), tmp_path / "sine")
    with pytest.raises(ValueError, match="unknown training classes"):
        train(TrainConfig(dataset="digits", train_classes="test"), tmp_path / "test")
