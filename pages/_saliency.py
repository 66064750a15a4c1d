"""Cached saliency computations and the method-settings widgets for pages/4_Saliency.py (not a
page itself).

Every cache is keyed by identifiers (checkpoint path and content hash, task key, adaptation
steps, step size, adapted layers, method, the method's settings as (name, value) pairs, which
images, step, target), never by tensors: `_task` is left out of the key. The trace comes from
pages._shared's cached adaptation.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import streamlit as st

from metaviz import services
from metaviz.explain import FAINT_CHANGE as CLEAR_CHANGE, KNOBS, METHODS
from pages._shared import adaptation_trace, kept, load_checkpoint, remembered, session_token

if TYPE_CHECKING:
    from metaviz.explain import Attribution
    from metaviz.global_importance import GlobalImportance
    from metaviz.trust import FaithfulnessCurves, RandomisationResult
    from metaviz.tasks import Task

RANDOMISED_KEY = "saliency_randomised"  # the randomisation tests this session has run (their identities)
IMAGE_SETS = {"query": "New images (the ones it must recognise)", "support": "Examples (the ones it learns from)"}
IMAGE_SETS_SHORT = {"query": "new images", "support": "examples"}
STEADY = 0.8  # rank correlation of two runs' maps above which their details agree (a judgement call, see docs)


# --- method settings ------------------------------------------------------------------------

def method_settings(method: str, container) -> tuple[tuple[str, object], ...]:
    """Widgets for the method's knobs (metaviz.explain.KNOBS), drawn in `container`; returns the
    chosen settings as (name, value) pairs, a plain cache key. Each value is kept under a key
    of its own, so it survives a switch to another method or page."""
    chosen = []
    for name in METHODS[method].knobs:
        knob, default = KNOBS[name], METHODS[method].defaults[name]
        store, widget = f"saliency_{method}_{name}", f"saliency_{method}_{name}_input"
        if widget not in st.session_state:
            st.session_state[widget] = st.session_state.get(store, default)
        if knob.choices is not None:
            value = container.selectbox(knob.label, list(knob.choices), key=widget, help=knob.help,
                                        format_func=knob.choices.get)
        else:
            whole = float(knob.step).is_integer() and isinstance(default, int)
            kind = int if whole else float
            value = container.number_input(knob.label, kind(knob.low), kind(knob.high), step=kind(knob.step),
                                           key=widget, help=knob.help)
            value = kind(value)
        st.session_state[store] = value
        chosen.append((name, value))
    return tuple(chosen)


# --- cached computations --------------------------------------------------------------------

def _inputs(path: str, content_hash: str, task_id: str, steps: int, lr: float, layers: tuple[str, ...],
            task: Task):
    return load_checkpoint(path, content_hash), adaptation_trace(path, content_hash, task_id, steps, lr, layers, task)


def images_of(task: Task, images: str):
    return task.query_x if images == "query" else task.support_x


@st.cache_data(max_entries=64, show_spinner=False)
def attributions(path: str, content_hash: str, task_id: str, steps: int, lr: float, layers: tuple[str, ...],
                 method: str, settings: tuple, images: str, step: int, target: int | None,
                 _task: Task) -> Attribution:
    """The method's maps of every query (or support) image at `step`, in one batched call."""
    from metaviz.explain import attribute

    checkpoint, trace = _inputs(path, content_hash, task_id, steps, lr, layers, _task)
    return attribute(checkpoint, trace, step, method, images_of(_task, images), target=target, **dict(settings))


@st.cache_data(max_entries=32, show_spinner="Removing and adding pixels…")
def faithfulness(path: str, content_hash: str, task_id: str, steps: int, lr: float, layers: tuple[str, ...],
                 method: str, settings: tuple, images: str, step: int, target: int | None,
                 _task: Task) -> FaithfulnessCurves:
    from metaviz.explain import network_for
    from metaviz.trust import deletion_insertion_curves

    checkpoint, trace = _inputs(path, content_hash, task_id, steps, lr, layers, _task)
    maps = attributions(path, content_hash, task_id, steps, lr, layers, method, settings, images, step, target, _task)
    network = network_for(checkpoint, trace.params[step], trace.buffers)
    return deletion_insertion_curves(network, images_of(_task, images), maps.targets, maps.values)


def randomisation(path: str, content_hash: str, task_id: str, steps: int, lr: float, layers: tuple[str, ...],
                  method: str, settings: tuple, images: str, step: int, targets: tuple[int, ...], task: Task,
                  progress: Callable[[int, int], None] | None = None) -> RandomisationResult:
    """The randomisation test, computed once per identity; remembered as run in this session,
    so the result stays on screen across reruns."""
    from metaviz.trust import randomisation_test

    identity = (path, content_hash, task_id, steps, lr, layers, method, settings, images, step,
                tuple(int(t) for t in targets))

    def compute() -> RandomisationResult:
        checkpoint, trace = _inputs(path, content_hash, task_id, steps, lr, layers, task)
        return randomisation_test(checkpoint, trace, step, method, images_of(task, images), list(identity[-1]),
                                  progress=progress, **dict(settings))

    result = remembered(("randomisation", *identity), compute)  # kept for every session
    st.session_state.setdefault(RANDOMISED_KEY, set()).add(identity)
    return result


def second_run_agreement(path: str, content_hash: str, task_id: str, steps: int, lr: float,
                         layers: tuple[str, ...], method: str, settings: tuple, images: str, step: int,
                         target: int | None, task: Task):
    """Rank correlation, image by image, of the step's maps drawn with seed 0 (the ones shown)
    and with seed 1: how much of a sampled map is sampling noise."""
    from metaviz.explain_sampled import seed_agreement

    first, second = (attributions(path, content_hash, task_id, steps, lr, layers, method, settings + seed, images,
                                  step, target, task) for seed in ((), (("seed", 1),)))
    return seed_agreement(first.values, second.values)


def global_key(path: str, content_hash: str, steps: int, lr: float, layers: tuple[str, ...], method: str,
               settings: tuple, images: str, tasks: int, shots: int, queries: int) -> tuple:
    return ("global importance", path, content_hash, steps, lr, layers, method, settings, images, tasks, shots, queries)


def global_maps(key: tuple, progress: Callable[[int, int], None] | None = None) -> GlobalImportance | None:
    """Global importance for `key` (see global_key): the kept result, else (with `progress`)
    computed once and kept for every session; None when not computed and no `progress` given."""
    from metaviz.global_importance import global_importance
    from metaviz.one_run import LONG_COMPUTATIONS

    if progress is None:
        return kept(key)
    _, path, content_hash, steps, lr, layers, method, settings, images, tasks, shots, queries = key
    with LONG_COMPUTATIONS.hold(session_token()):  # a double click waits for the first run's end
        return remembered(key, lambda: global_importance(
            load_checkpoint(path, content_hash), method, tasks=tasks, steps=steps, lr=lr, adapt_layers=layers,
            shots=shots, queries=queries, images=images, progress=progress, **dict(settings)))


def randomisation_done(path: str, content_hash: str, task_id: str, steps: int, lr: float, layers: tuple[str, ...],
                       method: str, settings: tuple, images: str, step: int, targets) -> bool:
    identity = (path, content_hash, task_id, steps, lr, layers, method, settings, images, step,
                tuple(int(t) for t in targets))
    return identity in st.session_state.get(RANDOMISED_KEY, set())


# --- the checks in words --------------------------------------------------------------------

def completeness_words(method: str, attribution: Attribution, step: int) -> str:
    """Whether the map adds up, in words: how many images within 1%, and how honest the
    worst misses are (a miss on an image whose score barely moved is a big fraction of little)."""
    settings = attribution.settings
    start = KNOBS["baseline"].choices[settings.get("baseline", "black")]
    average = "" if "baseline" in settings else ", on average over its random noisy paths"
    errors = 100 * attribution.completeness
    clear = abs(attribution.score_change) >= CLEAR_CHANGE
    within = int((errors <= 1).sum())
    words = (f"{method} promises that the pixels' shares add up to the change in the model's score for the "
             f"explained class between {start} and the image{average}. At step {step} they add up within 1% for "
             f"{within} of {services.plural(len(errors), 'image')}.")
    if within == len(errors):
        return words
    faint, misses = int(((errors > 1) & ~clear).sum()), len(errors) - within
    if faint:
        which = f"{faint} of the {misses} that miss" if faint < misses else \
            "The one that misses" if misses == 1 else f"All {misses} that miss"
        words += (f" {which} {'is an image' if faint == 1 else 'are images'} whose score barely changes between "
                  f"{start} and the image (by less than {CLEAR_CHANGE}), where even a tiny miss is a large fraction.")
    if (errors[clear] > 1).any():
        words += (f" Where the score clearly changes, the worst misses by {errors[clear].max():.0f}%: read those "
                  "maps as rough sketches, not exact shares.")
    return words


def agreement_words(method: str, step: int, agreement) -> str:
    """What two runs of a sampling method with different seeds say about its map, in words."""
    import numpy as np

    from metaviz.trust import SIMILAR

    median = float(np.median(agreement))
    if median >= STEADY:
        verdict = "the map is steady; its details can be read."
    elif median >= SIMILAR:
        verdict = (f"the broad picture holds, but the details change from run to run: read where the strong pieces "
                   f"are, not their exact order (more samples under {method} settings make it steadier).")
    else:
        verdict = (f"much of the map is sampling noise: raise the number of samples under {method} settings before "
                   "reading it.")
    return (f"{method} draws random samples, so each run gives a slightly different map. The step-{step} maps were "
            "drawn a second time with other random samples; each bar is the rank correlation of an image's two maps "
            f"(1: the same order of importance; below the dashed line at {SIMILAR}, grey, the two runs order the "
            f"pieces differently). Median {median:.2f}, lowest {float(np.min(agreement)):.2f}: {verdict}")
