"""Checkpoints that users upload: checked, then kept as metaviz's own safetensors files.

Accepted: `.safetensors` (metaviz checkpoints; tensors and JSON only, nothing to run) and
`.pt`/`.pth` state dicts, which metaviz.checkpoints.import_state_dict reads through
`torch.load(..., weights_only=True)` only, and only where metaviz.safety finds the
environment safe. The type is decided by the name's extension (the browser's claim about a
file's type is the uploader's to make), the size is capped, and damaged, truncated, altered
or ill-fitting files raise CheckpointError with a plain message.

A usable upload is written again by metaviz itself (save_checkpoint: fresh safetensors bytes,
named by content hash, never by the uploader's file name) into a folder of uploads, so the
dashboard's caches, keyed by path and content hash, treat it like any other checkpoint.
No streamlit here.
"""
from __future__ import annotations

import atexit
import dataclasses
import functools
import hashlib
import math
import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from metaviz.checkpoint_format import CHECKPOINT_SUFFIXES, MAX_CHECKPOINT_BYTES
from metaviz.checkpoints import (
    Checkpoint, CheckpointError, checkpoint_from_bytes, import_state_dict, load_checkpoint, save_checkpoint,
)
from metaviz.data import SPLITS
from metaviz.safety import require_safe_environment
from metaviz.training import ALGORITHMS as TRAINED_BY
from metaviz.training import META_LR_DECAYS, TRAIN_CLASSES

MAX_KEPT_UPLOADS = 32  # uploaded checkpoints kept on the server; the oldest go first
DATASETS = ("digits", "omniglot", "sinusoid")  # what metaviz.data can sample tasks from
ALGORITHMS = (*TRAINED_BY, "imported")  # what metaviz trains, and imported weights


@functools.cache
def upload_dir() -> Path:
    """Where this server process keeps uploaded checkpoints, re-written by metaviz: `uploaded/`
    (the sidebar marks them with that name) in a private folder of its own (mkdtemp: mode 0700,
    a fresh name, so no other user of the machine can plant files or links there), removed
    when the process ends."""
    private = Path(tempfile.mkdtemp(prefix="metaviz-"))
    atexit.register(shutil.rmtree, private, ignore_errors=True)
    return private / "uploaded"


def read_user_checkpoint(file_name: str, data: bytes) -> Checkpoint:
    """An uploaded file's bytes as a Checkpoint (not yet saved); CheckpointError with a plain
    reason when it is refused, UnsafeEnvironment when no user file may be opened here."""
    require_safe_environment()
    shown = "".join(character if character.isprintable() else "?" for character in file_name)[:80] or "the file"
    suffix = Path(file_name.lower()).suffix
    if "\0" in file_name or suffix not in CHECKPOINT_SUFFIXES:
        raise CheckpointError(f"{shown}: only checkpoint files ending in {', '.join(CHECKPOINT_SUFFIXES)} "
                              "are accepted")
    if not data:
        raise CheckpointError(f"{shown}: the file is empty (0 bytes)")
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{shown}: the file is {len(data) / 2**20:.1f} MB; at most "
                              f"{MAX_CHECKPOINT_BYTES // 2**20} MB is accepted")
    if suffix == ".safetensors":
        checkpoint = checkpoint_from_bytes(data, shown)
    else:
        checkpoint = import_state_dict(Path(shown), data=data, name=Path(shown).stem)
    return tidy_metadata(checkpoint, shown)


def _number(value, kind=float, low=None, high=None) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        return False
    return math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)


def _numbers(values) -> bool:
    return isinstance(values, list) and all(_number(value) for value in values)


def tidy_metadata(checkpoint: Checkpoint, shown: str) -> Checkpoint:
    """An uploaded checkpoint's metadata is the uploader's text: the fields the dashboard relies
    on must have the types and values metaviz writes (else CheckpointError, naming the field);
    free-form parts (training curves, scores, notes) that do not are dropped, so a crafted file
    cannot break a page. The name keeps letters, digits, spaces and `.,()+-` only: pages show it as
    a title, and with no `[]<>:*` it can be neither a link, nor HTML, nor a Streamlit directive."""
    problems = []
    if checkpoint.dataset not in DATASETS:
        problems.append(f"made for data metaviz does not know ({str(checkpoint.dataset)[:40]!r})")
    if checkpoint.algorithm not in ALGORITHMS:
        problems.append(f"trained with an algorithm metaviz does not know ({str(checkpoint.algorithm)[:40]!r})")
    for field in ("ways", "shots", "queries", "inner_steps"):
        if not _number(getattr(checkpoint, field), int, 0, 10_000):
            problems.append(f"its {field} is not a whole number between 0 and 10000")
    if not _number(checkpoint.inner_lr, float, 0.0, 1e3):
        problems.append("its inner-loop step size is not a number between 0 and 1000")
    if checkpoint.adapt_layers is not None and not set(checkpoint.adapt_layers) <= set(checkpoint.layers):
        problems.append("it names layers to adapt that the model does not have")
    if checkpoint.train_split not in (*SPLITS, *TRAIN_CLASSES) or checkpoint.test_split not in SPLITS:
        problems.append("it names data splits metaviz does not know")
    if problems:
        raise CheckpointError(f"{shown}: " + "; ".join(problems))
    history = checkpoint.history if isinstance(checkpoint.history, dict) else {}
    meta_test = (checkpoint.metrics or {}).get("meta_test") if isinstance(checkpoint.metrics, dict) else None
    keep_score = isinstance(meta_test, dict) and _number(meta_test.get("mean")) and all(
        meta_test.get(key) is None or _number(meta_test.get(key)) for key in ("ci95", "tasks", "steps")) \
        and meta_test.get("metric", "accuracy") in ("accuracy", "mse")
    extra = checkpoint.extra if isinstance(checkpoint.extra, dict) else {}
    planned = extra.get("train_config", {}).get("iterations") if isinstance(extra.get("train_config"), dict) else None
    tidy_extra = {"imported_from": str(extra.get("imported_from", ""))[:80]} if "imported_from" in extra else {}
    if _number(extra.get("iterations_done"), int, 0) and _number(planned, int, 1):
        # What the card says of the run (services.training_progress_text, phase_change), each value
        # only when it is one metaviz writes.
        config = extra["train_config"]
        tidy_config = {"iterations": planned}
        if _number(config.get("shots"), int, 1, 10_000):
            tidy_config["shots"] = config["shots"]
        if config.get("train_classes") in TRAIN_CLASSES:
            tidy_config["train_classes"] = config["train_classes"]
        if config.get("meta_lr_decay") in META_LR_DECAYS:
            tidy_config["meta_lr_decay"] = config["meta_lr_decay"]
        tidy_extra |= {"iterations_done": extra["iterations_done"], "train_config": tidy_config}
        earlier = extra.get("continued_from")
        if isinstance(earlier, dict) and _number(earlier.get("iterations"), int, 1):
            tidy_extra["continued_from"] = {"iterations": earlier["iterations"]} | (
                {"shots": earlier["shots"]} if _number(earlier.get("shots"), int, 1, 10_000) else {})
    try:
        datetime.fromisoformat(checkpoint.created)
        created = checkpoint.created
    except (TypeError, ValueError):
        created = ""
    return dataclasses.replace(
        checkpoint, name=re.sub(r"[^\w .,()+-]", "", str(checkpoint.name))[:80].strip() or "uploaded checkpoint",
        history={key: values for key, values in history.items() if isinstance(key, str) and _numbers(values)},
        metrics={"meta_test": meta_test} if keep_score else {}, extra=tidy_extra, created=created,
        code_version="".join(c for c in str(checkpoint.code_version) if c.isprintable())[:40])


def keep_user_checkpoint(checkpoint: Checkpoint, upload_sha256: str, directory: Path | None = None) -> Checkpoint:
    """Saves an uploaded checkpoint as `<hash of the uploaded bytes>.safetensors` in the uploads
    folder (the same upload twice is one file) and drops the oldest beyond MAX_KEPT_UPLOADS."""
    directory = Path(directory) if directory is not None else upload_dir()
    if not (len(upload_sha256) == 64 and all(character in "0123456789abcdef" for character in upload_sha256)):
        raise ValueError("upload_sha256 must be a sha256 hex digest")  # it becomes a file name
    path = directory / f"{upload_sha256[:24]}.safetensors"
    if path.is_file():
        path.touch()  # kept longest: it was wanted again
        return load_checkpoint(path)
    saved = save_checkpoint(checkpoint, path)
    kept = sorted(directory.glob("*.safetensors"), key=lambda file: file.stat().st_mtime, reverse=True)
    for old in kept[MAX_KEPT_UPLOADS:]:
        old.unlink(missing_ok=True)
    return saved


def accept_upload(file_name: str, data: bytes, directory: Path | None = None) -> Checkpoint:
    """read_user_checkpoint, then keep_user_checkpoint: the saved checkpoint, with its path."""
    checkpoint = read_user_checkpoint(file_name, data)
    return keep_user_checkpoint(checkpoint, hashlib.sha256(data).hexdigest(), directory)
