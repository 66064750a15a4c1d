"""Conditions under which metaviz refuses to open files from users, or to start at all.

PyTorch `.pt` files are pickles: loading one without the weights-only unpickler can run any
code the file's author chose. metaviz loads them only with `weights_only=True`, written out
at every call, and then only when two more things hold:

- TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is not set. Today an explicit `weights_only=True` wins
  over it, but the variable states an intent to load pickles unsafely, which a server that
  takes files from strangers must not share (and a later torch may honour it differently).
- torch is at least 2.10: a heap corruption in the weights-only unpickler was fixed there.

No streamlit here: the dashboard (app.py) and the library call `unsafe_environment()`.
"""
from __future__ import annotations

import os
import re

MIN_TORCH = (2, 10)
UNSAFE_VARIABLE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
_OFF_VALUES = ("", "0", "false", "no", "n", "off")


class UnsafeEnvironment(RuntimeError):
    """metaviz will not load user files (and the dashboard will not start) in this environment."""


def torch_version(version: str | None = None) -> tuple[int, int]:
    """(major, minor) of torch's version string, e.g. '2.14.1+cu130' -> (2, 14)."""
    if version is None:  # the installed distribution's metadata: the first screen needs no torch import
        from importlib.metadata import version as installed_version

        version = installed_version("torch")
    match = re.match(r"(\d+)\.(\d+)", str(version))
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def unsafe_environment(environ: dict | None = None, version: str | None = None) -> str | None:
    """Why this environment is unsafe for files from users, in plain words; None when it is safe."""
    environ = os.environ if environ is None else environ
    value = environ.get(UNSAFE_VARIABLE)
    if value is not None and value.strip().lower() not in _OFF_VALUES:
        return (f"The environment variable {UNSAFE_VARIABLE} is set ({value!r}). It asks PyTorch to load "
                "model files in a way that can run code hidden in them, so metaviz does not start. "
                f"Unset it (`unset {UNSAFE_VARIABLE}`) and start metaviz again.")
    have = torch_version(version)
    if have < MIN_TORCH:
        need = ".".join(map(str, MIN_TORCH))
        return (f"PyTorch {'.'.join(map(str, have))} is installed; metaviz needs {need} or newer, because "
                "older releases have a memory-safety bug in the loader used for model files. "
                f"Upgrade it (pip install 'torch>={need}') and start metaviz again.")
    return None


def require_safe_environment() -> None:
    """UnsafeEnvironment with the reason, when there is one."""
    problem = unsafe_environment()
    if problem:
        raise UnsafeEnvironment(problem)
