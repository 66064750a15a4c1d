"""Checkpoints: one `.safetensors` file each, metadata as JSON in its header.

safetensors holds tensors and strings only, so loading a checkpoint can never run code.
Plain PyTorch / learn2learn state dicts (`.pt`, `.pth`) are imported through
`torch.load(..., weights_only=True)`, with the argument always explicit, and only where
metaviz.safety finds the environment safe (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD unset, torch >= 2.10).
Damaged, truncated or altered files and weights that do not fit their model are
CheckpointErrors whose message says which, in plain words.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from metaviz.checkpoint_format import BUFFER_PREFIX, FORMAT, METADATA_KEY
from metaviz.models import ConvNetConfig, build_model, layer_of, model_config_to_dict
from metaviz.safety import require_safe_environment


class CheckpointError(ValueError):
    """The file is not a usable checkpoint; the message says why."""


@dataclass(frozen=True)
class Checkpoint:
    name: str
    model_config: dict  # rebuilds the model: metaviz.models.build_model(model_config)
    parameters: dict[str, torch.Tensor]  # the meta-parameters theta_0
    algorithm: str  # "maml" | "fomaml" | "anil" | "imported"
    dataset: str  # "omniglot" | "digits" | "sinusoid"
    ways: int
    shots: int
    queries: int
    inner_lr: float
    inner_steps: int
    adapt_layers: tuple[str, ...] | None = None  # None: every layer adapts
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    train_split: str = "train"
    test_split: str = "test"
    history: dict = field(default_factory=dict)  # training curves, lists keyed by name
    metrics: dict = field(default_factory=dict)  # evaluation results
    created: str = ""
    code_version: str = ""
    extra: dict = field(default_factory=dict)  # free-form settings (e.g. training flags)
    path: str | None = None
    content_hash: str = ""  # sha256 of the file; the cache key for everything derived

    @property
    def is_regression(self) -> bool:
        return self.dataset == "sinusoid"

    @property
    def layers(self) -> tuple[str, ...]:
        names: list[str] = []
        for name in self.parameters:
            if layer_of(name) not in names:
                names.append(layer_of(name))
        return tuple(names)

    def build_model(self) -> torch.nn.Module:
        """A fresh model holding theta_0 (eval mode); callers may not share it across threads."""
        model = build_model(self.model_config)
        problem = fit_problem(model, {**self.parameters, **self.buffers})
        if problem:
            raise ValueError(problem)
        model.load_state_dict({**self.parameters, **self.buffers}, strict=True)
        return model

    def metadata(self) -> dict:
        skip = {"parameters", "buffers", "path", "content_hash"}
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        values["adapt_layers"] = list(self.adapt_layers) if self.adapt_layers is not None else None
        return {"format": FORMAT, **values}


def _shape(tensor_or_size) -> str:
    return "[" + ", ".join(str(size) for size in tuple(tensor_or_size)) + "]"


def fit_problem(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> str | None:
    """What keeps these tensors from fitting the model, in words (the first few problems);
    None when every weight the model needs is there, with the right shape, and nothing else."""
    expected = {name: value.shape for name, value in model.state_dict().items()}
    problems = [f"{name} is missing" for name in expected if name not in tensors]
    problems += [f"{name} is {_shape(tensors[name].shape)} where the model needs {_shape(shape)}"
                 for name, shape in expected.items() if name in tensors and tensors[name].shape != shape]
    problems += [f"{name} belongs to no layer of the model" for name in tensors if name not in expected]
    if not problems:
        return None
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "the weights do not fit the model the file describes: " + "; ".join(problems[:3]) + more


def parameter_hash(checkpoint: Checkpoint) -> str:
    """sha256 of the meta-parameters and buffers as they are in memory now (names, shapes, bytes):
    a shared, cached checkpoint that someone changed in place no longer matches its file."""
    digest = hashlib.sha256()
    for name, tensor in sorted({**checkpoint.parameters, **checkpoint.buffers}.items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()


def code_version() -> str:
    from metaviz import __version__

    return __version__


def _serialise(checkpoint: Checkpoint) -> bytes:
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in checkpoint.parameters.items()}
    tensors.update({BUFFER_PREFIX + name: t.detach().cpu().contiguous() for name, t in checkpoint.buffers.items()})
    return save_safetensors_bytes(tensors, metadata={METADATA_KEY: json.dumps(checkpoint.metadata())})


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, os.replace: a crash leaves the old file or the new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp_name, 0o644)  # mkstemp's 0600 would hide the file from other users
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Checkpoint:
    """Writes atomically; returns the checkpoint with its path and content hash set."""
    if not checkpoint.created:
        checkpoint = dataclasses.replace(checkpoint, created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if not checkpoint.code_version:
        checkpoint = dataclasses.replace(checkpoint, code_version=code_version())
    data = _serialise(checkpoint)
    atomic_write_bytes(Path(path), data)
    return dataclasses.replace(checkpoint, path=str(path), content_hash=hashlib.sha256(data).hexdigest())


def _layout_problem(data: bytes) -> str | None:
    """What is wrong with a safetensors file's framing (8-byte header length, JSON header, then
    the tensors' bytes at the offsets the header gives), in words; None when it holds together."""
    if len(data) < 8:
        return "the file is too short to be a checkpoint"
    header_length = int.from_bytes(data[:8], "little")
    if header_length > len(data) - 8:
        if header_length > 100 * 2**20:
            return "it is not a safetensors checkpoint (its first bytes are not a safetensors header)"
        return "the file is incomplete: it ends inside its header (perhaps a download or copy was cut short)"
    try:
        header = json.loads(data[8 : 8 + header_length])
        ends = [int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, IndexError, AttributeError):
        return "its header is damaged, so the file is not a usable safetensors checkpoint"
    stored = len(data) - 8 - header_length
    if ends and max(ends) > stored:
        return (f"the file is incomplete: its weights stop after {stored:,} of {max(ends):,} bytes "
                "(perhaps a download or copy was cut short)")
    return None


def checkpoint_from_bytes(data: bytes, name: str, path: str | None = None) -> Checkpoint:
    """Parses a checkpoint file's bytes (never unpickles); CheckpointError when it is not one."""
    problem = _layout_problem(data)
    if problem:
        raise CheckpointError(f"{name}: {problem}")
    try:
        tensors = load_safetensors_bytes(data)
        header_length = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_length])
        metadata = json.loads(header.get("__metadata__", {}).get(METADATA_KEY, "null"))
    except (SafetensorError, ValueError, UnicodeDecodeError, OSError) as error:
        raise CheckpointError(f"{name}: its header does not match its contents, so the file is damaged or was "
                              f"altered ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(f"{name}: a safetensors file, but without metaviz metadata")
    metadata.pop("format")
    known = {f.name for f in dataclasses.fields(Checkpoint)}
    extra_keys = set(metadata) - known
    if extra_keys:
        raise CheckpointError(f"{name}: unknown metadata fields {sorted(extra_keys)}")
    parameters = {k: v for k, v in tensors.items() if not k.startswith(BUFFER_PREFIX)}
    buffers = {k[len(BUFFER_PREFIX):]: v for k, v in tensors.items() if k.startswith(BUFFER_PREFIX)}
    try:  # safetensors stores tensors in its own order; restore the model's (forward) order
        order = [name for name, _ in build_model(metadata["model_config"]).named_parameters()]
        parameters = {name: parameters[name] for name in order} if set(order) == set(parameters) else parameters
    except (KeyError, TypeError, ValueError):
        pass  # reported below, where the weights are fitted to the model
    adapt_layers = metadata.get("adapt_layers")
    try:
        checkpoint = Checkpoint(
            **{**metadata, "adapt_layers": tuple(adapt_layers) if adapt_layers is not None else None},
            parameters=parameters, buffers=buffers, path=path,
            content_hash=hashlib.sha256(data).hexdigest(),
        )
        checkpoint.build_model()  # the tensors must fit the architecture they claim
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{name}: metadata and weights do not fit together: {error}") from None
    return checkpoint


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror}") from None
    return checkpoint_from_bytes(data, path.name, str(path))


def list_checkpoints(directory: str | Path) -> list[Path]:
    """The `.safetensors` files in a folder (not recursive), sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.safetensors") if p.is_file())


# --- importing plain PyTorch / learn2learn state dicts -------------------------------------

_LEARN2LEARN_KEY = re.compile(r"^(?:features\.1|base)\.(\d+)\.(conv|normalize)\.(.+)$")


def _from_learn2learn_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """learn2learn's OmniglotCNN keys (base.i.conv/normalize, classifier) to metaviz's."""
    converted = {}
    for key, value in state.items():
        match = _LEARN2LEARN_KEY.match(key)
        if match:
            block, part, rest = match.groups()
            converted[f"blocks.{block}.{'conv' if part == 'conv' else 'norm'}.{rest}"] = value
        elif key.startswith("classifier."):
            converted["head." + key[len("classifier."):]] = value
        else:
            converted[key] = value
    return converted


def import_state_dict(
    path: str | Path, *, dataset: str = "omniglot", ways: int | None = None, shots: int = 1,
    queries: int = 1, inner_lr: float = 0.4, inner_steps: int = 3, name: str | None = None,
    data: bytes | None = None,
) -> Checkpoint:
    """A `.pt`/`.pth` state dict of the 4-block conv net (metaviz or learn2learn layout,
    optionally wrapped by learn2learn's MAML: keys prefixed `module.`) as a Checkpoint.

    `data`: the file's bytes when it was uploaded rather than read from disk (`path` then
    only names it).
    """
    path = Path(path)
    require_safe_environment()  # UnsafeEnvironment: no .pt file is opened at all (see metaviz.safety)
    try:
        # weights_only=True, always written out: the unpickler then builds tensors and plain
        # containers only, and refuses anything that would call code.
        state = torch.load(io.BytesIO(data) if data is not None else path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # refused by the weights-only unpickler: never retry unsafely
        raise CheckpointError(
            f"{path.name}: refused. Only plain tensor state dicts load; this file holds other "
            f"Python objects, which could run code on this computer ({type(error).__name__})."
        ) from None
    except Exception as error:  # a damaged or truncated zip/pickle: torch raises RuntimeError, EOFError, ...
        raise CheckpointError(f"{path.name}: the file is damaged or incomplete (perhaps a download or copy was "
                              f"cut short), so no weights could be read from it ({type(error).__name__}).") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path.name}: not a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = _from_learn2learn_layout(state)
    state.pop("features.0.lambda", None)
    has_batch_norm = any(k.endswith("running_mean") for k in state)
    try:
        hidden, in_channels = state["blocks.0.conv.weight"].shape[:2]
        blocks = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
        out_features = state["head.weight"].shape[0]
    except KeyError as error:
        raise CheckpointError(f"{path.name}: not a 4-block conv net state dict (missing {error})") from None
    config = ConvNetConfig(out_features=out_features, in_channels=in_channels, hidden=hidden, blocks=blocks,
                           norm="batch_running" if has_batch_norm else "layer")
    model = build_model(config)
    parameter_names = {n for n, _ in model.named_parameters()}
    buffer_names = {n for n, _ in model.named_buffers()}
    state = {k: v for k, v in state.items() if k in parameter_names | buffer_names}
    checkpoint = Checkpoint(
        name=name or path.stem, model_config=model_config_to_dict(config),
        parameters={k: v for k, v in state.items() if k in parameter_names},
        buffers={k: v for k, v in state.items() if k in buffer_names},
        algorithm="imported", dataset=dataset, ways=ways or out_features, shots=shots, queries=queries,
        inner_lr=inner_lr, inner_steps=inner_steps, extra={"imported_from": path.name},
    )
    try:
        checkpoint.build_model()
    except (ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path.name}: {error}") from None
    return checkpoint
