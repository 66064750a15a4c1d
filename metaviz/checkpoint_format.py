"""The checkpoint file's layout: a safetensors file whose header carries metaviz's metadata.

Torch-free, so the sidebar and the Checkpoint page can read a checkpoint's header before torch
is imported; metaviz.checkpoints writes and fully loads these files.
"""
from __future__ import annotations

import json
from pathlib import Path

FORMAT = "metaviz-checkpoint/1"
METADATA_KEY = "metaviz"
BUFFER_PREFIX = "buffer::"  # buffers (BatchNorm running stats) share the file with parameters
HEADER_LIMIT = 16 * 2**20  # a metaviz header is a few kB; anything far larger is not one
# What the sidebar's upload box accepts (metaviz.user_checkpoints checks it); here, torch-free,
# because the box is drawn on every page, the first one included.
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")
MAX_CHECKPOINT_BYTES = 20 * 2**20  # the server's upload cap (.streamlit/config.toml); metaviz's nets are < 2 MB


def read_header(path: str | Path) -> tuple[dict, list[str]] | None:
    """A checkpoint's metaviz metadata and its tensors' names, from the safetensors header
    alone (no tensor is read); None when the file has no such header.

    The layout is safetensors' own: an 8-byte little-endian header length, then a JSON header
    whose "__metadata__" maps METADATA_KEY to the metaviz JSON.
    """
    try:
        with open(path, "rb") as file:
            length = int.from_bytes(file.read(8), "little")
            if not 0 < length <= HEADER_LIMIT:
                return None
            header = json.loads(file.read(length))
        metadata = json.loads(header.get("__metadata__", {}).get(METADATA_KEY, "null"))
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    if not isinstance(metadata, dict):
        return None
    return metadata, [name for name in header if name != "__metadata__"]
