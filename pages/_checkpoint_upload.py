"""The sidebar's "Upload a checkpoint" box (not a page itself; app.py calls it).

metaviz.user_checkpoints decides what is accepted and writes a usable upload again as a
metaviz safetensors file named by its content hash; this session keeps the paths of its
uploads, and the picker lists them (marked `uploaded/`) next to the shared checkpoints.
Other sessions never see them listed. A refused file gets a plain message in the sidebar,
and the app carries on with the checkpoint it had.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from metaviz import services
from metaviz.checkpoint_format import CHECKPOINT_SUFFIXES, MAX_CHECKPOINT_BYTES

PATHS_KEY = "uploaded_checkpoint_paths"  # this session's uploads, in upload order
LAST_KEY = "uploaded_checkpoint_last"  # sha256 of the file last read: a rerun does not read it again
WIDGET_KEY = "checkpoint_upload_file"


def _read(file, chosen_key: str) -> None:
    from metaviz.checkpoints import CheckpointError
    from metaviz.safety import UnsafeEnvironment
    from metaviz.user_checkpoints import accept_upload

    data = file.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    if st.session_state.get(LAST_KEY) == digest:
        return
    st.session_state[LAST_KEY] = digest
    try:
        with st.spinner("Checking the checkpoint…"):
            checkpoint = accept_upload(file.name, data)
    except (CheckpointError, UnsafeEnvironment) as error:
        st.session_state[f"{LAST_KEY}_error"] = str(error)
        return
    st.session_state.pop(f"{LAST_KEY}_error", None)
    paths = st.session_state.setdefault(PATHS_KEY, [])
    if checkpoint.path not in paths:
        paths.append(checkpoint.path)
    st.session_state[chosen_key] = checkpoint.path  # the picker shows the new upload


def checkpoint_upload(chosen_key: str) -> list[services.CheckpointFile]:
    """The upload box (call inside the sidebar); returns this session's uploaded checkpoints."""
    with st.expander("Upload a checkpoint", key="checkpoint_upload_expander"):
        file = st.file_uploader(
            "Checkpoint file", type=[suffix.strip(".") for suffix in CHECKPOINT_SUFFIXES], key=WIDGET_KEY,
            help="A metaviz checkpoint (.safetensors), or a PyTorch state dict of the 4-block conv net (.pt, .pth; "
                 "only tensors are read from it, nothing in it can run). At most "
                 f"{MAX_CHECKPOINT_BYTES // 2**20} MB. It stays on this server for this session's use.")
    if file is None:
        st.session_state.pop(LAST_KEY, None)
        st.session_state.pop(f"{LAST_KEY}_error", None)
    else:
        _read(file, chosen_key)
    problem = st.session_state.get(f"{LAST_KEY}_error")
    if problem:  # outside the expander, so it shows when the expander is closed
        st.error(f"This checkpoint cannot be used: {services.markdown_text(problem)}. The model picked above "
                 "stays in use.", icon=":material/error:")
    kept = [Path(path) for path in st.session_state.get(PATHS_KEY, []) if Path(path).is_file()]
    return [services.CheckpointFile(path, services.read_header_metadata(path)) for path in kept]
