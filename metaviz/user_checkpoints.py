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

import hashlib
import tempfile
from pathlib import Path

from metaviz.checkpoints import (
    Checkpoint, CheckpointError, checkpoint_from_bytes, import_state_dict, load_checkpoint, save_checkpoint,
)
from metaviz.safety import require_safe_environment

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")
MAX_CHECKPOINT_BYTES = 20 * 2**20  # the server's upload cap (.streamlit/config.toml); metaviz's nets are < 2 MB
MAX_KEPT_UPLOADS = 32  # uploaded checkpoints kept on the server; the oldest go first


def upload_dir() -> Path:
    """Where uploaded checkpoints are kept, re-written by metaviz: a folder of the temp directory
    (the sidebar marks them with its name)."""
    return Path(tempfile.gettempdir()) / "metaviz" / "uploaded"


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
        return checkpoint_from_bytes(data, shown)
    return import_state_dict(Path(shown), data=data, name=Path(shown).stem)


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
