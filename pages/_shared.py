"""Streamlit glue shared by app.py and the pages (not a page itself: st.navigation lists the pages).

Cached loaders are keyed by plain identifiers (checkpoint path and content hash, dataset,
split, seed, settings), never by tensors or models. Settings that must outlive a page switch
live under session-state keys of their own: Streamlit forgets a widget's state when a page
without that widget runs.
"""
from __future__ import annotations

import json
import os
import runpy
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from metaviz import services

if TYPE_CHECKING:
    from metaviz.adaptation import AdaptationTrace
    from metaviz.checkpoints import Checkpoint
    from metaviz.data import ImageClasses
    from metaviz.tasks import Task

CHECKPOINT_KEY = "checkpoint_path"  # the sidebar picker's widget key (app.py renders it on every page)
TASK_SETTINGS_KEY = "task_settings"
TASK_PAGE = "pages/2_Task.py"
HOME_PAGE = "pages/1_Checkpoint.py"
LIMITS = {"shots": (1, 20), "queries": (1, 50), "seed": (0, 2**31 - 1)}


APP = Path(__file__).resolve().parents[1] / "app.py"
_this_run = threading.local()  # Streamlit runs each session's script in a thread of its own
IDLE_BEFORE_WARM_UP = 3.0  # seconds without a page running before UMAP's warm-up starts


@dataclass
class _PagesRunning:
    """How many pages run now, in all sessions of this process, and when the last one ended."""
    count: int = 0
    last_end: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    warm_up_waiter: threading.Thread | None = None


_pages = _PagesRunning()


# --- every page runs inside app.py ------------------------------------------------------------


@contextmanager
def inside_app() -> Iterator[None]:
    """app.py runs the selected page inside this (also a page that stops early or reruns)."""
    _this_run.inside_app = True
    with _pages.lock:
        _pages.count += 1
    try:
        yield
    finally:
        _this_run.inside_app = False
        with _pages.lock:
            _pages.count -= 1
            _pages.last_end = time.monotonic()


def ensure_app() -> None:
    """Called first by every page: runs the page inside app.py (sidebar, navigation) if it is not.

    Streamlit sends a process's first script run, and every AppTest run, through its legacy
    pages/-folder navigation, which runs the requested page file on its own. Then app.py runs
    now (its st.navigation runs this page in turn), and this bare run of the page stops.
    """
    if getattr(_this_run, "inside_app", False):
        return
    runpy.run_path(str(APP))
    st.stop()


def warm_up_for_later_pages() -> None:
    """app.py calls this once a page has run to its end. When no page has run for
    IDLE_BEFORE_WARM_UP seconds, a background thread then loads UMAP (metaviz.embed.start_warm_up,
    once per process): the Task embeddings page's first map finds it loaded, instead of importing
    it beside its tasks (2-3 s of Python holding the interpreter, which slowed their drawing);
    waiting for a quiet moment keeps that import from slowing the page a user opens next.
    Only once torch is loaded (every page that shows a model loads it), so that a page that
    needs no model never waits for torch's import here."""
    if "torch" not in sys.modules:
        return
    with _pages.lock:
        if _pages.warm_up_waiter is None:
            _pages.warm_up_waiter = threading.Thread(target=_warm_up_when_idle, name="umap-warm-up-waiter",
                                                     daemon=True)
            _pages.warm_up_waiter.start()


def _seconds_idle() -> float:
    with _pages.lock:
        return 0.0 if _pages.count else time.monotonic() - _pages.last_end


def _warm_up_when_idle() -> None:
    while (idle := _seconds_idle()) < IDLE_BEFORE_WARM_UP:
        time.sleep(max(IDLE_BEFORE_WARM_UP - idle, 0.1))
    from metaviz.embed import start_warm_up

    start_warm_up()  # a no-op where a map started it already


# --- checkpoint -----------------------------------------------------------------------------


@st.cache_resource(max_entries=8, show_spinner="Opening the checkpoint…")
def load_checkpoint(path: str, content_hash: str) -> Checkpoint:
    """One shared, never mutated Checkpoint per file version (content_hash is the cache key)."""
    import torch

    from metaviz.checkpoints import load_checkpoint as load

    # The nets are tiny: one thread per computation is about as fast as two, and on a busy
    # machine torch's spinning threads made one adaptation 250x slower (benchmarks/README.md).
    torch.set_num_threads(int(os.environ.get("METAVIZ_TORCH_THREADS", "1")))
    return load(path)


def selected_checkpoint() -> Checkpoint | None:
    """The checkpoint picked in the sidebar; None when the folder has none. Stops the page
    with a plain message when the file cannot be read."""
    path = st.session_state.get(CHECKPOINT_KEY)
    if not path:
        return None
    from metaviz.checkpoints import CheckpointError

    try:
        return load_checkpoint(path, services.file_sha256(path))
    except OSError as error:
        st.error(f"The checkpoint file {path} cannot be read ({error.strerror or error}). "
                 "It may have been moved or deleted; pick another one in the sidebar.")
    except CheckpointError as error:
        st.error(f"This file is not a checkpoint metaviz can open: {error}. Pick another one in the sidebar.")
    st.stop()


def selected_card() -> services.CheckpointCard | Checkpoint | None:
    """What the Checkpoint page shows about the picked checkpoint, read from its file header
    without importing torch (about 2 s of a first page); None when the folder has none. A file
    whose header is not a metaviz card goes through selected_checkpoint(), which says why."""
    path = st.session_state.get(CHECKPOINT_KEY)
    if not path:
        return None
    try:
        card = services.read_card(path, services.file_sha256(path))
    except OSError:
        card = None
    return card or selected_checkpoint()


def require_checkpoint() -> Checkpoint:
    """The selected checkpoint, or a pointer to the page that explains how to get one."""
    checkpoint = selected_checkpoint()
    if checkpoint is None:
        st.info("There is no model checkpoint to work with yet.")
        st.page_link(HOME_PAGE, label="How to add or train one", icon=":material/arrow_forward:")
        st.stop()
    return checkpoint


# --- task settings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSettings:
    shots: int
    queries: int
    seed: int
    groups: tuple[str, ...] = ()  # draw the classes from these alphabets (digits: "digit 7") only
    classes: tuple[str, ...] = ()  # exactly these classes, in label order (wins over groups)

    def restriction(self) -> dict:
        """sample_task's `groups`/`classes` arguments: only the ones the user chose."""
        if self.classes:
            return {"classes": self.classes}
        return {"groups": self.groups} if self.groups else {}


CHOICE_FIELDS = ("groups", "classes")  # the task settings that name classes; the link repeats them


def remembered_number_input(container, label: str, key: str, default: float, **kwargs) -> float:
    """st.number_input whose value survives a visit to another page (kept under `key`)."""
    widget_key = f"{key}_input"
    if widget_key not in st.session_state:
        st.session_state[widget_key] = st.session_state.get(key, default)
    value = container.number_input(label, key=widget_key, **kwargs)
    st.session_state[key] = value
    return value


def _clamp(field: str, value: int) -> int:
    low, high = LIMITS[field]
    return min(max(value, low), high)


def _from_link(link: Mapping[str, list[str]], field: str, default: int) -> int:
    """A setting from the page link (?seed=3&shots=1&queries=5); the default when absent or garbled."""
    try:
        return _clamp(field, int(link[field][-1]))
    except (KeyError, IndexError, ValueError):
        return default


def page_link_values() -> dict[str, list[str]]:
    """The page link's settings, every value of a repeated key kept (?classes=a&classes=b)."""
    return {key: st.query_params.get_all(key) for key in st.query_params}


def resolved_task_settings(checkpoint: Checkpoint, stored: dict | None, link: Mapping[str, list[str]]) -> dict:
    """The stored task settings, else the link's, else the checkpoint's (plain Python: the
    sidebar's report reads them outside the script run too).

    Chosen alphabets or classes belong to one dataset: another checkpoint's data forgets them."""
    if stored is None:
        defaults = {"shots": _clamp("shots", checkpoint.shots),
                    "queries": _clamp("queries", max(checkpoint.queries, services.DEFAULT_QUERIES)), "seed": 0}
        stored = {field: _from_link(link, field, default) for field, default in defaults.items()}
        stored |= {field: tuple(link.get(field, ())) for field in CHOICE_FIELDS}
        stored["dataset"] = checkpoint.dataset
    if stored.get("dataset") != checkpoint.dataset or checkpoint.is_regression:
        stored = {**stored, "groups": (), "classes": (), "dataset": checkpoint.dataset}
    return stored


def settings_of(stored: dict) -> TaskSettings:
    return TaskSettings(shots=stored["shots"], queries=stored["queries"], seed=stored["seed"],
                        groups=tuple(stored["groups"]), classes=tuple(stored["classes"]))


def task_settings(checkpoint: Checkpoint) -> TaskSettings:
    """This session's task settings: set from the page link on the first visit, else the checkpoint's."""
    stored = resolved_task_settings(checkpoint, st.session_state.get(TASK_SETTINGS_KEY), page_link_values())
    st.session_state[TASK_SETTINGS_KEY] = stored
    return settings_of(stored)


def task_page() -> tuple[Checkpoint, TaskSettings]:
    """How a page about the current task starts (after ensure_app): the selected checkpoint (or
    a pointer to get one), and this session's task settings, mirrored in the page link."""
    checkpoint = require_checkpoint()
    settings = task_settings(checkpoint)
    store_task_settings(settings)  # the link re-creates the task on every page
    return checkpoint, settings


def store_task_settings(settings: TaskSettings) -> None:
    """Keeps the settings for other pages and mirrors them in the page link, so a link re-creates the task."""
    stored = asdict(settings)
    st.session_state[TASK_SETTINGS_KEY] = {**st.session_state.get(TASK_SETTINGS_KEY, {}), **stored}
    st.query_params.update({field: str(stored.pop(field)) for field in ("shots", "queries", "seed")})
    for field, names in stored.items():  # groups, classes: the key repeats, once per name (?classes=a&classes=b)
        if names:
            st.query_params[field] = list(names)
        else:
            st.query_params.pop(field, None)


# --- task and adaptation ----------------------------------------------------------------------


def _load_data_with_progress(dataset: str, split: str) -> ImageClasses:
    """The split's classes from metaviz.data's in-memory cache; a progress bar appears only for
    a real download or decode."""
    from metaviz.data import load_classes

    bar = None

    def progress(fraction: float, message: str) -> None:
        nonlocal bar
        if bar is None and fraction < 1.0:
            bar = st.progress(0.0, text=message)
        if bar is not None:
            bar.progress(fraction, text=message)

    try:
        return load_classes(dataset, split, progress=progress)
    finally:
        if bar is not None:
            bar.empty()


@st.cache_data(max_entries=64, show_spinner=False)
def sampled_task(dataset: str, split: str, ways: int, shots: int, queries: int, seed: int,
                 groups: tuple[str, ...] | None = None, classes: tuple[str, ...] | None = None) -> Task:
    from metaviz.tasks import sample_task

    return sample_task(dataset, split, ways=ways, shots=shots, queries=queries, seed=seed,
                       groups=groups, classes=classes)


def meta_test_classes(checkpoint: Checkpoint) -> ImageClasses:
    """The classes of the checkpoint's meta-test split (an image checkpoint's); on failure a
    plain message and the page stops."""
    from metaviz.data import DataError, DataNotFoundError

    try:
        return _load_data_with_progress(checkpoint.dataset, checkpoint.test_split)
    except DataNotFoundError as error:
        st.error(f"The {services.DATASET_NAMES.get(checkpoint.dataset, checkpoint.dataset)} images are not "
                 f"available. {error}")
    except (DataError, ValueError) as error:
        st.error(f"This task cannot be built: {error}")
    st.stop()


def load_task(checkpoint: Checkpoint, settings: TaskSettings) -> Task:
    """The task these settings describe, from the checkpoint's meta-test split; on failure a
    plain message and the page stops."""
    from metaviz.data import DataError

    restriction = {}
    if not checkpoint.is_regression:
        pool = meta_test_classes(checkpoint)
        problem = services.task_choice_problem(checkpoint.dataset, pool.class_names, pool.groups, checkpoint.ways,
                                               settings.groups, settings.classes)
        if problem:
            st.error(problem, icon=":material/error:")
            st.stop()
        restriction = settings.restriction()
    try:
        return sampled_task(checkpoint.dataset, checkpoint.test_split, checkpoint.ways,
                            settings.shots, settings.queries, settings.seed, **restriction)
    except (DataError, ValueError) as error:
        st.error(f"This task cannot be built: {services.markdown_text(error)}")
    st.stop()


def task_key(task: Task) -> str:
    """A task's identity for caches: where it came from (dataset, split, classes, seed; or the
    uploaded images' content hash), which re-creates it exactly."""
    return json.dumps(task.source, sort_keys=True)


def current_task(checkpoint: Checkpoint, settings: TaskSettings) -> Task:
    """The task the pages work with: the uploaded one when the user chose it, else the sampled one."""
    from pages._upload import uploaded_task, using_upload

    if using_upload() and not checkpoint.is_regression:
        return uploaded_task(checkpoint, settings, elsewhere=True)
    return load_task(checkpoint, settings)


@st.cache_data(max_entries=32, show_spinner="Adapting the model to the task…")
def adaptation_trace(path: str, content_hash: str, task_id: str, steps: int, lr: float,
                     adapt_layers: tuple[str, ...], _task: Task) -> AdaptationTrace:
    """Keyed by identifiers only: `_task` (unhashed) is the task that `task_id` names."""
    from metaviz.adaptation import adapt

    return adapt(load_checkpoint(path, content_hash), _task, steps=steps, lr=lr, adapt_layers=adapt_layers)


def session_token() -> str:
    """This browser session's own random token (session state is per session): the key under
    which metaviz.one_run lets one long computation of the session run at a time."""
    import uuid

    return st.session_state.setdefault("one_run_session_token", uuid.uuid4().hex)


def run_adaptation(checkpoint: Checkpoint, task: Task, steps: int, lr: float,
                   adapt_layers: tuple[str, ...]) -> AdaptationTrace:
    from metaviz.one_run import LONG_COMPUTATIONS

    try:
        with LONG_COMPUTATIONS.hold(session_token()):  # a double click waits for the first run's end
            return adaptation_trace(checkpoint.path, checkpoint.content_hash, task_key(task), steps, lr,
                                    tuple(adapt_layers), task)
    except (ValueError, RuntimeError) as error:
        st.error(f"Adaptation failed: {services.markdown_text(error)}")
    st.stop()


def adaptation_settings(checkpoint: Checkpoint, state: Mapping | None = None) -> tuple[int, float, tuple[str, ...]]:
    """(steps, step size, layers that adapt): the Adaptation page's choice for this checkpoint
    (kept per checkpoint), else the checkpoint's own. `state`: a copy of the session state
    (default: the live one)."""
    state = st.session_state if state is None else state
    key = services.short_hash(checkpoint.content_hash)
    steps = int(state.get(f"steps_{key}", checkpoint.inner_steps))
    lr = float(state.get(f"lr_{key}", checkpoint.inner_lr))
    layers = tuple(state.get(f"layers_{key}") or checkpoint.adapt_layers or checkpoint.layers)
    return steps, lr, layers


# --- results of long computations, kept for every session ------------------------------------

STORE_SIZE = 12  # results kept: a few settings of a few checkpoints


@st.cache_resource
def _store() -> tuple[OrderedDict, threading.Lock]:
    """Not st.cache_data: the long computations drive a progress bar made outside them, which
    st.cache_data could not replay on a cache hit."""
    return OrderedDict(), threading.Lock()


def kept(key: tuple):
    """The stored result for `key` (plain identifiers), or None."""
    store, lock = _store()
    with lock:
        if key in store:
            store.move_to_end(key)
        return store.get(key)


def remembered(key: tuple, compute: Callable[[], object]):
    """The stored result for `key`, else `compute()`'s (kept; the least recently used goes)."""
    found = kept(key)
    if found is not None:
        return found
    value = compute()  # outside the lock: one session's long computation never blocks another's page
    store, lock = _store()
    with lock:
        store[key] = value
        while len(store) > STORE_SIZE:
            store.popitem(last=False)
    return value
