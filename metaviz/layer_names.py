"""Which user-facing layer (conv1..conv4, fc1.., head) a parameter belongs to, from its name.

Kept apart from metaviz.models, and free of torch, because the dashboard's first page names a
checkpoint's layers from its file header before torch is imported.
"""
from __future__ import annotations

import re

_LAYER_PATTERNS = (
    (re.compile(r"^blocks\.(\d+)\."), "conv{}"),
    (re.compile(r"^layers\.(\d+)\."), "fc{}"),
    (re.compile(r"^norms\.(\d+)\."), "fc{}"),  # an MLP's per-image normalisation of that layer
)


def layer_of(parameter_name: str) -> str:
    """The user-facing layer a parameter belongs to: conv1..conv4 / fc1.. / head."""
    if parameter_name.startswith("head."):
        return "head"
    for pattern, template in _LAYER_PATTERNS:
        match = pattern.match(parameter_name)
        if match:
            return template.format(int(match.group(1)) + 1)
    raise ValueError(f"parameter {parameter_name!r} belongs to no known layer")
