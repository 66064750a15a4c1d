"""Task embeddings for pages/6_Task_embeddings.py, computed once and kept (not a page itself).

Adapting hundreds of tasks takes seconds, and the page shows a progress bar meanwhile. A bar
cannot live inside st.cache_data: Streamlit replays the elements a cached function drew, and
a bar drawn into the page from inside that function breaks the replay
(CacheReplayClosureError). So the results live in a small store shared by every session
(one st.cache_resource), keyed by plain identifiers (checkpoint path and content hash, task
settings, layer, method settings), and the bar is drawn by the page around the computation.
Stored results are never mutated.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import streamlit as st

from pages._shared import load_checkpoint, remembered, session_token

if TYPE_CHECKING:
    from metaviz.embed import Embedding, TaskUpdates

def _with_progress(compute: Callable):
    bar = st.progress(0.0, text="Adapting the model to each task…")
    try:
        return compute(lambda fraction, message: bar.progress(min(fraction, 1.0), text=message))
    finally:
        bar.empty()


def task_updates(path: str, content_hash: str, tasks: dict, adaptation: dict,
                 while_adapting: Callable[[], object] | None = None) -> TaskUpdates:
    """`tasks`: n_tasks, seed, shots, queries, one_group, layer; `adaptation`: steps, lr,
    adapt_layers (a tuple). Both plain values, so the key is plain too. `while_adapting`: see
    metaviz.embed.collect_updates (not part of the key)."""
    from metaviz.embed import collect_updates

    key = ("updates", path, content_hash, tuple(sorted(tasks.items())), tuple(sorted(adaptation.items())))
    return remembered(key, lambda: _with_progress(
        lambda progress: collect_updates(load_checkpoint(path, content_hash), **tasks, **adaptation,
                                         progress=progress, while_adapting=while_adapting)))


def task_embedding(path: str, content_hash: str, tasks: dict, adaptation: dict, method: str, random_state: int,
                   method_settings: dict) -> tuple[Embedding, dict]:
    """The embedding and its structure measures (metaviz.embed.structure_measures)."""
    from metaviz import embed

    key = ("embedding", path, content_hash, tuple(sorted(tasks.items())), tuple(sorted(adaptation.items())),
           method, random_state, tuple(sorted(method_settings.items())))

    def compute():
        # UMAP's kernels load (or compile) while the tasks adapt.
        updates = task_updates(path, content_hash, tasks, adaptation,
                               while_adapting=embed.start_warm_up if method == "umap" else None)
        with st.spinner("Drawing the map of the tasks…"):
            embedding = embed.embed_updates(updates, method, random_state, **method_settings)
            return embedding, embed.structure_measures(embedding)

    from metaviz.one_run import LONG_COMPUTATIONS

    # A rerun of this session while its map is being made (a double click, a changed setting)
    # waits here for the first computation instead of starting a second one beside it.
    with LONG_COMPUTATIONS.hold(session_token()):
        return remembered(key, compute)
