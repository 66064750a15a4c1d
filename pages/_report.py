"""The sidebar's "Download review report" button, on every page (not a page itself).

The report takes seconds to build (adaptation, saliency maps, trust checks), so it is built
only when the user clicks: st.download_button gets a callable, which Streamlit runs on a
thread of its own after the click. Each script run only takes a snapshot of what the report
needs (the chosen checkpoint, a shallow copy of the session's settings, the page link);
the callable, outside any script run, must not touch st.* (Streamlit ignores it there), so
it reads that snapshot and calls the library (metaviz.report).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import streamlit as st

from pages._shared import CHECKPOINT_KEY, TASK_SETTINGS_KEY, adaptation_settings, page_link_values, \
    resolved_task_settings, settings_of

if TYPE_CHECKING:
    from metaviz.checkpoints import Checkpoint
    from metaviz.report import ReportSettings
    from metaviz.tasks import Task

BUTTON_LABEL = "Download review report"


def report_download() -> None:
    """The button (in the sidebar); nothing when no checkpoint is chosen."""
    path = st.session_state.get(CHECKPOINT_KEY)
    if not path:
        return
    snapshot = {"path": path, "state": dict(st.session_state), "link": page_link_values()}
    st.sidebar.download_button(
        BUTTON_LABEL, data=lambda: report_html(snapshot).encode("utf-8"), file_name=report_file_name(path),
        mime="text/html", on_click="ignore", icon=":material/download:", key="review_report",
        help="One HTML file that opens offline and can be shared: the model and its content hash, the current "
             "task (and how to re-create it), the adaptation, the saliency maps with their trust checks, the "
             "layers, every setting and the package versions. Takes a few seconds to prepare.")


def report_file_name(path: str, now: datetime | None = None) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.rsplit("/", 1)[-1].removesuffix(".safetensors"))
    return f"metaviz-report-{stem}-{(now or datetime.now(timezone.utc)):%Y%m%d-%H%M%S}.html"


def report_html(snapshot: dict) -> str:
    """The report for a snapshot; a short page saying what went wrong when it cannot be built
    (the user clicked a download, so a file with the reason is better than nothing)."""
    from metaviz import report_html as H
    from metaviz.checkpoints import CheckpointError, load_checkpoint
    from metaviz.data import DataError, DataNotFoundError
    from metaviz.report import build_report
    from metaviz.uploads import UploadError

    try:
        checkpoint = load_checkpoint(snapshot["path"])
        task, origin = _task(checkpoint, snapshot)
        return build_report(checkpoint, task, _report_settings(checkpoint, snapshot["state"]), origin=origin,
                            layer_results=_layer_results(checkpoint, snapshot["state"]))
    except (CheckpointError, DataError, DataNotFoundError, UploadError, ValueError, RuntimeError) as error:
        return H.page("metaviz review report: not available", "The report could not be built.",
                      [("reason", "Why", H.paragraph(error))])


def _task(checkpoint: Checkpoint, snapshot: dict) -> tuple[Task, dict]:
    """The task the pages show (the uploaded one when chosen), and what the report should say
    about an upload's origin."""
    from metaviz.tasks import sample_task
    from metaviz.uploads import build_task
    from pages._upload import SOURCE_KEY, UPLOAD_KEY, UPLOADED, _classes_key

    state = snapshot["state"]
    settings = settings_of(resolved_task_settings(checkpoint, state.get(TASK_SETTINGS_KEY), snapshot["link"]))
    stored = state.get(UPLOAD_KEY)
    if state.get(SOURCE_KEY) == UPLOADED and not checkpoint.is_regression and stored is not None:
        images = stored["images"]
        chosen = state.get(_classes_key(images)) or list(images.class_names)[: checkpoint.ways]
        task = build_task(images, chosen, checkpoint.ways, settings.shots, settings.queries, settings.seed)
        return task, {"uploaded": stored["label"], "uploaded files' SHA-256": stored["signature"],
                      "converted images' SHA-256": images.content_sha256}
    task = sample_task(checkpoint.dataset, checkpoint.test_split, ways=checkpoint.ways, shots=settings.shots,
                       queries=settings.queries, seed=settings.seed, **settings.restriction())
    return task, {}


def _report_settings(checkpoint: Checkpoint, state: Mapping) -> ReportSettings:
    """The Adaptation and Saliency pages' current choices (their widgets' keys), else their defaults."""
    from metaviz import services
    from metaviz.explain import METHODS
    from metaviz.report import ReportSettings

    steps, lr, layers = adaptation_settings(checkpoint, state)
    method = state.get("saliency_method") if state.get("saliency_method") in METHODS else next(iter(METHODS))
    defaults = METHODS[method].defaults
    knobs = tuple((name, state.get(f"saliency_{method}_{name}", defaults[name])) for name in METHODS[method].knobs)
    target = state.get("saliency_class") if state.get("saliency_explain") == "A class I choose" else None
    step = state.get(f"saliency_step_{services.short_hash(checkpoint.content_hash)}_{steps}")
    return ReportSettings(steps=steps, lr=lr, adapt_layers=layers, method=method, method_settings=knobs,
                          images=state.get("saliency_images", "query"), step=step, target=target,
                          sign=state.get("saliency_sign", "absolute_value"),
                          outlier_perc=float(state.get("saliency_outliers", 2.0)))


def _layer_results(checkpoint: Checkpoint, state: Mapping):
    """The Layers page's many-task measurements, when this session's settings were measured."""
    from pages._layers import identity, measured

    steps, lr, layers = adaptation_settings(checkpoint, state)
    wanted = identity(checkpoint.path, checkpoint.content_hash, state.get("layers_tasks", 100),
                      state.get("layers_seed", 0), steps, lr, layers)
    try:
        return measured(wanted)
    except Exception:  # noqa: BLE001 the shared store is Streamlit's; outside a script run it may refuse
        return None
