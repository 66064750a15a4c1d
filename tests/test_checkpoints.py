"""Checkpoints: safetensors round trip, safe imports of PyTorch / learn2learn state dicts."""
import copy
import os
import pickletools
import subprocess
import sys
import textwrap
import zipfile

import learn2learn
import pytest
import torch

from metaviz.checkpoints import (
    Checkpoint, CheckpointError, import_state_dict, list_checkpoints, load_checkpoint, save_checkpoint,
)
from metaviz.models import ConvNetConfig, build_model, model_config_to_dict


def make_checkpoint(**overrides) -> Checkpoint:
    torch.manual_seed(0)
    config = ConvNetConfig()
    model = build_model(config)
    values = dict(
        name="test", model_config=model_config_to_dict(config),
        parameters={k: v.detach() for k, v in model.named_parameters()}, algorithm="maml",
        dataset="omniglot", ways=5, shots=1, queries=5, inner_lr=0.4, inner_steps=3,
        history={"meta_loss": [1.5, 0.5]}, metrics={"meta_test": {"mean": 0.9}},
    )
    return Checkpoint(**{**values, **overrides})


def test_round_trip_gives_identical_outputs(tmp_path):
    original = make_checkpoint(adapt_layers=("head",))
    saved = save_checkpoint(original, tmp_path / "a.safetensors")
    loaded = load_checkpoint(tmp_path / "a.safetensors")
    x = torch.rand(7, 1, 28, 28)
    assert torch.equal(original.build_model()(x), loaded.build_model()(x))
    assert loaded.adapt_layers == ("head",)
    assert loaded.history == original.history and loaded.metrics == original.metrics
    assert loaded.content_hash == saved.content_hash and len(loaded.content_hash) == 64
    assert loaded.created and loaded.code_version
    assert list_checkpoints(tmp_path) == [tmp_path / "a.safetensors"]


def test_content_hash_changes_with_the_weights(tmp_path):
    first = save_checkpoint(make_checkpoint(), tmp_path / "a.safetensors")
    changed = make_checkpoint()
    changed.parameters["head.bias"] = changed.parameters["head.bias"] + 1
    second = save_checkpoint(changed, tmp_path / "b.safetensors")
    assert first.content_hash != second.content_hash


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"\xff" * 100])
def test_garbage_is_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_checkpoint(path)


def test_safetensors_without_metaviz_metadata_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(3)}, tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match="without metaviz metadata"):
        load_checkpoint(tmp_path / "plain.safetensors")


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path):
    broken = make_checkpoint()
    broken.parameters["head.weight"] = torch.zeros(3, 3)
    save_checkpoint(broken, tmp_path / "broken.safetensors")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "broken.safetensors")


PAYLOAD = textwrap.dedent("""
    import os, sys, torch
    from pathlib import Path

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + sys.argv[2],))

    torch.save({"head.weight": torch.zeros(5, 64), "evil": Payload()}, sys.argv[1])
""")

IMPORT = textwrap.dedent("""
    import sys
    from metaviz.checkpoints import CheckpointError, import_state_dict
    from metaviz.safety import UnsafeEnvironment
    try:
        import_state_dict(sys.argv[1])
    except (CheckpointError, UnsafeEnvironment) as error:
        print("REFUSED", error)
""")


def pickled_callables(path) -> set[str]:
    """What a torch file's pickle would import and call, read without unpickling it."""
    with zipfile.ZipFile(path) as archive:
        program = archive.read(next(name for name in archive.namelist() if name.endswith("data.pkl")))
    return {str(argument) for opcode, argument, _ in pickletools.genops(program) if opcode.name == "GLOBAL"}


@pytest.mark.parametrize("force_unsafe", [False, True], ids=["plain", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1"])
def test_pickle_payload_is_refused_and_never_runs(tmp_path, force_unsafe):
    evil, marker = tmp_path / "evil.pt", tmp_path / "payload-ran"
    subprocess.run([sys.executable, "-c", PAYLOAD, str(evil), str(marker)], check=True)
    # Control, without unpickling anything: the file really asks for os.system.
    assert {"posix system", "nt system"} & pickled_callables(evil)
    env = {key: value for key, value in os.environ.items() if key != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    if force_unsafe:
        env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    result = subprocess.run([sys.executable, "-c", IMPORT, str(evil)], env=env, capture_output=True, text=True,
                            check=True)
    assert "REFUSED" in result.stdout
    assert ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set" if force_unsafe else "evil.pt") in result.stdout
    assert not marker.exists(), "the pickle payload ran"


@pytest.mark.parametrize("wrapped", [False, True], ids=["OmniglotCNN", "MAML-wrapped"])
def test_learn2learn_state_dict_imports_with_identical_outputs(tmp_path, wrapped):
    torch.manual_seed(0)
    reference = learn2learn.vision.models.OmniglotCNN(output_size=5)
    # Give BatchNorm non-trivial running statistics, as a trained model would have.
    with torch.no_grad():
        reference.train()(torch.rand(32, 1, 28, 28))
    reference.eval()
    source = learn2learn.algorithms.MAML(reference, lr=0.4) if wrapped else reference
    if wrapped:
        assert all(key.startswith("module.") for key in source.state_dict())
    torch.save(source.state_dict(), tmp_path / "l2l.pt")
    checkpoint = import_state_dict(tmp_path / "l2l.pt")
    assert checkpoint.model_config["norm"] == "batch_running"
    x = torch.rand(9, 1, 28, 28)
    with torch.no_grad():
        expected = reference(x)
        actual = checkpoint.build_model()(x)
    assert torch.allclose(actual, expected, atol=1e-5)
    # ...and it survives the trip through metaviz's own format.
    save_checkpoint(checkpoint, tmp_path / "imported.safetensors")
    with torch.no_grad():
        assert torch.allclose(load_checkpoint(tmp_path / "imported.safetensors").build_model()(x), expected, atol=1e-5)


def test_metaviz_state_dict_imports(tmp_path):
    model = build_model(ConvNetConfig())
    torch.save(copy.deepcopy(model.state_dict()), tmp_path / "own.pth")
    checkpoint = import_state_dict(tmp_path / "own.pth")
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(checkpoint.build_model()(x), model(x))


def test_state_dict_of_another_architecture_is_a_clear_error(tmp_path):
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a 4-block conv net"):
        import_state_dict(tmp_path / "other.pt")


def test_loaded_parameters_keep_the_forward_order(tmp_path):
    save_checkpoint(make_checkpoint(), tmp_path / "a.safetensors")
    loaded = load_checkpoint(tmp_path / "a.safetensors")
    assert list(loaded.parameters) == [name for name, _ in build_model(ConvNetConfig()).named_parameters()]
    assert loaded.layers == ("conv1", "conv2", "conv3", "conv4", "head")
