"""Cached saliency computations for pages/4_Saliency.py (not a page itself).

Every cache is keyed by identifiers (checkpoint path and content hash, task key, adaptation
steps, step size, adapted layers, method, step, target), never by tensors: `_task` is left
out of the key. The trace comes from pages._shared's cached adaptation.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import streamlit as st

from pages._shared import adaptation_trace, load_checkpoint

if TYPE_CHECKING:
    from metaviz.explain import Attribution
    from metaviz.trust import FaithfulnessCurves, RandomisationResult
    from metaviz.tasks import Task

RANDOMISED_KEY = "saliency_randomised"  # the randomisation tests this session has run (their identities)


def _inputs(path: str, content_hash: str, task_id: str, steps: int, lr: float, layers: tuple[str, ...],
            task: Task):
    return load_checkpoint(path, content_hash), adaptation_trace(path, content_hash, task_id, steps, lr, layers, task)


@st.cache_data(max_entries=64, show_spinner=False)
def attributions(path: str, content_hash: str, task_id: str, steps: int, lr: float, layers: tuple[str, ...],
                 method: str, step: int, target: int | None, _task: Task) -> Attribution:
    """The method's maps of every query image at `step`, in one batched call."""
    from metaviz.explain import attribute

    checkpoint, trace = _inputs(path, content_hash, task_id, steps, lr, layers, _task)
    return attribute(checkpoint, trace, step, method, _task.query_x, target=target)


@st.cache_data(max_entries=32, show_spinner="Removing and adding pixels…")
def faithfulness(path: str, content_hash: str, task_id: str, steps: int, lr: float, layers: tuple[str, ...],
                 method: str, step: int, target: int | None, _task: Task) -> FaithfulnessCurves:
    from metaviz.explain import network_for
    from metaviz.trust import deletion_insertion_curves

    checkpoint, trace = _inputs(path, content_hash, task_id, steps, lr, layers, _task)
    maps = attributions(path, content_hash, task_id, steps, lr, layers, method, step, target, _task)
    network = network_for(checkpoint, trace.params[step], trace.buffers)
    return deletion_insertion_curves(network, _task.query_x, maps.targets, maps.values)


MAX_RANDOMISATIONS = 16  # results kept for all sessions, oldest dropped first


@st.cache_resource
def _randomisation_results() -> dict:
    """Randomisation results by identity, shared by all sessions. Not st.cache_data: the test
    drives a progress bar made outside it, which st.cache_data cannot replay on a cache hit."""
    return {}


def randomisation(path: str, content_hash: str, task_id: str, steps: int, lr: float, layers: tuple[str, ...],
                  method: str, step: int, targets: tuple[int, ...], task: Task,
                  progress: Callable[[int, int], None] | None = None) -> RandomisationResult:
    """The randomisation test, computed once per identity; remembered as run in this session,
    so the result stays on screen across reruns."""
    from metaviz.trust import randomisation_test

    identity = (path, content_hash, task_id, steps, lr, layers, method, step, tuple(int(t) for t in targets))
    results = _randomisation_results()
    if identity not in results:
        checkpoint, trace = _inputs(path, content_hash, task_id, steps, lr, layers, task)
        result = randomisation_test(checkpoint, trace, step, method, task.query_x, list(identity[-1]),
                                    progress=progress)
        while len(results) >= MAX_RANDOMISATIONS:
            results.pop(next(iter(results)))
        results[identity] = result
    st.session_state.setdefault(RANDOMISED_KEY, set()).add(identity)
    return results[identity]


def randomisation_done(path: str, content_hash: str, task_id: str, steps: int, lr: float, layers: tuple[str, ...],
                       method: str, step: int, targets) -> bool:
    identity = (path, content_hash, task_id, steps, lr, layers, method, step, tuple(int(t) for t in targets))
    return identity in st.session_state.get(RANDOMISED_KEY, set())
