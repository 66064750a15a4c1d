"""Checkpoints from users (issue 8): only safetensors or weights-only state dicts, a safe
environment, a size cap, and plain messages for damaged, altered or ill-fitting files."""
import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save as save_safetensors

from metaviz import safety, user_checkpoints
from metaviz.checkpoints import CheckpointError, load_checkpoint
from metaviz.models import ConvNetConfig, build_model
from metaviz.safety import UnsafeEnvironment, unsafe_environment
from metaviz.user_checkpoints import keep_user_checkpoint, read_user_checkpoint
from tests.test_app import write_checkpoint


@pytest.fixture
def checkpoint_bytes(tmp_path) -> bytes:
    return write_checkpoint(tmp_path).read_bytes()


def state_dict_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def header_of(data: bytes) -> tuple[int, dict]:
    length = int.from_bytes(data[:8], "little")
    return length, json.loads(data[8 : 8 + length])


# --- the environment ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "true", "YES", "anything"])
def test_the_force_no_weights_only_variable_makes_the_environment_unsafe(value):
    problem = unsafe_environment({safety.UNSAFE_VARIABLE: value}, version="2.14.1")
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set" in problem and "metaviz does not start" in problem


@pytest.mark.parametrize("value", ["0", "", "false"])
def test_the_variable_switched_off_is_fine(value):
    assert unsafe_environment({safety.UNSAFE_VARIABLE: value}, version="2.14.1") is None


@pytest.mark.parametrize("version, unsafe", [("2.9.1", True), ("2.4.0+cpu", True), ("1.13.1", True),
                                             ("2.10.0", False), ("2.14.1+cu130", False), ("3.0.0", False)])
def test_torch_must_be_at_least_2_10(version, unsafe):
    problem = unsafe_environment({}, version=version)
    assert (problem is not None) == unsafe
    if unsafe:
        assert "metaviz needs 2.10 or newer" in problem


def test_the_installed_torch_is_new_enough():
    assert safety.torch_version() >= safety.MIN_TORCH


def test_no_user_file_is_opened_in_an_unsafe_environment(monkeypatch, checkpoint_bytes):
    monkeypatch.setenv(safety.UNSAFE_VARIABLE, "1")
    for name, data in (("a.safetensors", checkpoint_bytes), ("b.pt", state_dict_bytes({"x": torch.zeros(1)}))):
        with pytest.raises(UnsafeEnvironment, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
            read_user_checkpoint(name, data)


# --- accepted files ----------------------------------------------------------------------------


def test_a_safetensors_checkpoint_is_kept_as_metaviz_rewrote_it(tmp_path, checkpoint_bytes):
    checkpoint = read_user_checkpoint("my model.safetensors", checkpoint_bytes)
    digest = hashlib.sha256(checkpoint_bytes).hexdigest()
    kept = keep_user_checkpoint(checkpoint, digest, tmp_path / "uploads")
    assert kept.path == str(tmp_path / "uploads" / f"{digest[:24]}.safetensors")  # never the uploader's name
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(load_checkpoint(kept.path).build_model()(x), checkpoint.build_model()(x))
    assert keep_user_checkpoint(checkpoint, digest, tmp_path / "uploads").path == kept.path  # the same upload: one file
    assert len(list((tmp_path / "uploads").iterdir())) == 1
    with pytest.raises(ValueError):
        keep_user_checkpoint(checkpoint, "../../etc/passwd", tmp_path / "uploads")


def test_only_the_newest_uploads_are_kept(tmp_path, monkeypatch, checkpoint_bytes):
    monkeypatch.setattr(user_checkpoints, "MAX_KEPT_UPLOADS", 2)
    checkpoint = read_user_checkpoint("a.safetensors", checkpoint_bytes)
    for index in range(4):
        digest = hashlib.sha256(bytes([index])).hexdigest()
        keep_user_checkpoint(checkpoint, digest, tmp_path)
        os.utime(tmp_path / f"{digest[:24]}.safetensors", (index, index))  # distinct ages, oldest first
    assert len(list(tmp_path.iterdir())) == 2


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".PT"])
def test_a_state_dict_is_read_weights_only(suffix):
    model = build_model(ConvNetConfig())
    checkpoint = read_user_checkpoint(f"weights{suffix}", state_dict_bytes(model.state_dict()))
    x = torch.rand(2, 1, 28, 28)
    assert checkpoint.algorithm == "imported" and torch.equal(checkpoint.build_model()(x), model(x))


# --- refused files -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model.pkl", "model.ckpt", "model.safetensors.exe", "model.pt\0.safetensors",
                                  "model"])
def test_other_file_types_are_refused_by_name(name, checkpoint_bytes):
    with pytest.raises(CheckpointError, match=r"only checkpoint files ending in \.safetensors, \.pt, \.pth"):
        read_user_checkpoint(name, checkpoint_bytes)


def test_empty_and_oversized_files(monkeypatch, checkpoint_bytes):
    with pytest.raises(CheckpointError, match=r"the file is empty \(0 bytes\)"):
        read_user_checkpoint("a.safetensors", b"")
    monkeypatch.setattr(user_checkpoints, "MAX_CHECKPOINT_BYTES", 1000)
    with pytest.raises(CheckpointError, match="at most 0 MB is accepted"):
        read_user_checkpoint("a.safetensors", checkpoint_bytes)


def test_the_size_cap_matches_the_servers():
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text())
    assert user_checkpoints.MAX_CHECKPOINT_BYTES == config["server"]["maxUploadSize"] * 2**20


def test_truncated_safetensors_say_so(checkpoint_bytes):
    length, _ = header_of(checkpoint_bytes)
    for cut, message in ((4, "too short to be a checkpoint"), (8 + length // 2, "ends inside its header"),
                         (len(checkpoint_bytes) - 1000, "its weights stop after")):
        with pytest.raises(CheckpointError, match=f"a.safetensors: .*{message}"):
            read_user_checkpoint("a.safetensors", checkpoint_bytes[:cut])


def test_a_tampered_header_is_a_clear_error(checkpoint_bytes):
    length, header = header_of(checkpoint_bytes)
    damaged = checkpoint_bytes[:8] + b"{" * length + checkpoint_bytes[8 + length :]
    with pytest.raises(CheckpointError, match="its header is damaged"):
        read_user_checkpoint("a.safetensors", damaged)
    name = next(key for key in header if key != "__metadata__")
    header[name]["data_offsets"][0] += 4  # the tensor's bytes no longer match its shape
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= length
    text += b" " * (length - len(text))
    with pytest.raises(CheckpointError, match="does not match its contents, so the file is damaged or was altered"):
        read_user_checkpoint("a.safetensors", checkpoint_bytes[:8] + text + checkpoint_bytes[8 + length :])


def test_metadata_that_does_not_fit_the_weights_names_the_layer(checkpoint_bytes):
    """Someone edited the metadata to claim a wider net: the error names the mismatching weight."""
    checkpoint = read_user_checkpoint("a.safetensors", checkpoint_bytes)
    metadata = {**checkpoint.metadata(), "model_config": {**checkpoint.model_config, "hidden": 32}}
    tensors = {**checkpoint.parameters}
    data = save_safetensors(tensors, metadata={"metaviz": json.dumps(metadata)})
    with pytest.raises(CheckpointError, match=r"do not fit.* blocks\.0\.conv\.weight is \[64, 1, 3, 3\] where the "
                                              r"model needs \[32, 1, 3, 3\]"):
        read_user_checkpoint("a.safetensors", data)


def test_a_state_dict_of_the_wrong_shape_names_the_layer():
    state = build_model(ConvNetConfig()).state_dict()
    state["head.weight"] = torch.zeros(5, 99)
    with pytest.raises(CheckpointError, match=r"head\.weight is \[5, 99\] where the model needs \[5, \d+\]"):
        read_user_checkpoint("odd.pt", state_dict_bytes(state))


def test_a_truncated_state_dict_says_damaged_not_dangerous():
    data = state_dict_bytes(build_model(ConvNetConfig()).state_dict())
    with pytest.raises(CheckpointError, match="damaged or incomplete"):
        read_user_checkpoint("cut.pt", data[: len(data) // 2])


PAYLOAD = textwrap.dedent("""
    import os, sys, torch

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + sys.argv[2],))

    torch.save({"head.weight": torch.zeros(5, 64), "evil": Payload()}, sys.argv[1])
""")


def test_an_uploaded_pickle_payload_is_refused_and_never_runs(tmp_path):
    evil, marker = tmp_path / "evil.pt", tmp_path / "payload-ran"
    subprocess.run([sys.executable, "-c", PAYLOAD, str(evil), str(marker)], check=True)
    with pytest.raises(CheckpointError, match="could run code on this computer"):
        read_user_checkpoint("evil.pt", evil.read_bytes())
    assert not marker.exists(), "the pickle payload ran"


# --- metadata from strangers ---------------------------------------------------------------------


def crafted(checkpoint_bytes: bytes, **changes) -> bytes:
    """The same weights with metadata fields changed as an uploader could."""
    checkpoint = read_user_checkpoint("a.safetensors", checkpoint_bytes)
    metadata = {**checkpoint.metadata(), **changes}
    tensors = {**checkpoint.parameters, **{f"buffer::{k}": v for k, v in checkpoint.buffers.items()}}
    return save_safetensors(tensors, metadata={"metaviz": json.dumps(metadata)})


@pytest.mark.parametrize("changes, message", [
    ({"dataset": "../../etc"}, "made for data metaviz does not know"),
    ({"algorithm": "<script>"}, "trained with an algorithm metaviz does not know"),
    ({"ways": "5"}, "its ways is not a whole number"),
    ({"inner_lr": float("nan")}, "step size is not a number"),
    ({"adapt_layers": ["conv1", "secret"]}, "names layers to adapt that the model does not have"),
    ({"test_split": "everything"}, "names data splits metaviz does not know"),
])
def test_metadata_the_pages_rely_on_must_be_what_metaviz_writes(checkpoint_bytes, changes, message):
    with pytest.raises(CheckpointError, match=message):
        read_user_checkpoint("a.safetensors", crafted(checkpoint_bytes, **changes))


def test_free_form_metadata_that_could_break_a_page_is_dropped(checkpoint_bytes):
    data = crafted(checkpoint_bytes, name="[click](javascript:alert(1)) <img src=x> :red[boo]",
                   history={"meta_loss": ["a", "b"], "iteration": [1, 2]},
                   metrics={"meta_test": {"mean": "97%", "ci95": 0.1}}, extra={"iterations_done": "lots"},
                   created="<b>yesterday</b>")
    checkpoint = read_user_checkpoint("a.safetensors", data)
    assert checkpoint.name == "click(javascriptalert(1)) img srcx redboo"
    assert checkpoint.history == {"iteration": [1, 2]} and checkpoint.metrics == {} and checkpoint.extra == {}
    assert checkpoint.created == ""
    good = read_user_checkpoint("b.safetensors", checkpoint_bytes)  # what metaviz writes passes untouched
    original = load_checkpoint_bytes(checkpoint_bytes)
    assert (good.name, good.history, good.metrics, good.created) == (original.name, original.history,
                                                                      original.metrics, original.created)


def load_checkpoint_bytes(data: bytes):
    from metaviz.checkpoints import checkpoint_from_bytes

    return checkpoint_from_bytes(data, "original")


def test_uploads_are_kept_in_a_private_folder_of_the_process():
    folder = user_checkpoints.upload_dir()
    assert folder.name == "uploaded" and folder.parent.name.startswith("metaviz-")
    assert folder.parent.stat().st_mode & 0o777 == 0o700  # no other user can plant files or links there
    assert user_checkpoints.upload_dir() == folder  # one per process


def test_a_continued_run_keeps_only_its_earlier_iteration_count(checkpoint_bytes):
    finished = {"iterations_done": 600, "train_config": {"iterations": 600}}
    kept = read_user_checkpoint("a.safetensors", crafted(
        checkpoint_bytes, extra={**finished, "continued_from": {"iterations": 3000, "name": "<b>x</b>"}}))
    assert kept.extra["continued_from"] == {"iterations": 3000}
    dropped = read_user_checkpoint("b.safetensors", crafted(
        checkpoint_bytes, extra={**finished, "continued_from": {"iterations": "many"}}))
    assert "continued_from" not in dropped.extra
    from metaviz.services import training_progress_text

    # What the card says of a last phase survives when it is a value metaviz writes, and only then.
    last_fit = read_user_checkpoint("c.safetensors", crafted(checkpoint_bytes, extra={
        "iterations_done": 400, "continued_from": {"iterations": 3000, "shots": 1},
        "train_config": {"iterations": 400, "shots": 5, "train_classes": "train+val", "meta_lr_decay": "linear"}}))
    assert last_fit.extra["continued_from"] == {"iterations": 3000, "shots": 1}
    text = training_progress_text(last_fit.extra)
    assert "on 5-shot tasks" in text and "validation classes" in text and "fell linearly" in text
    odd = read_user_checkpoint("d.safetensors", crafted(checkpoint_bytes, extra={
        "iterations_done": 400, "continued_from": {"iterations": 3000, "shots": "<b>1</b>"},
        "train_config": {"iterations": 400, "shots": -5, "train_classes": "<b>all</b>", "meta_lr_decay": 3}}))
    assert odd.extra["continued_from"] == {"iterations": 3000} and odd.extra["train_config"] == {"iterations": 400}
