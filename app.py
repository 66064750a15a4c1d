"""metaviz dashboard: `streamlit run app.py` (or `make run`).

Sets up what every page shares (the checkpoint picker in the sidebar) and the navigation.
No model is loaded here: the picker reads only checkpoint headers, so the first screen
appears before torch is imported.
"""
from pathlib import Path

import streamlit as st

from metaviz import services
from pages._shared import CHECKPOINT_KEY, inside_app

st.set_page_config(page_title="metaviz: how a few-shot model adapts", page_icon=":material/neurology:",
                   layout="wide")


def checkpoint_picker() -> None:
    files = services.find_checkpoints()
    with st.sidebar:
        st.markdown("### Model")
        if not files:
            st.session_state.pop(CHECKPOINT_KEY, None)
            st.caption(f"No checkpoints in `{services.checkpoint_dir()}` yet.")
            return
        by_path = {str(file.path): file for file in files}
        if st.session_state.get(CHECKPOINT_KEY) not in by_path:
            # First run (or the file went away): the link's checkpoint, else the default one.
            linked = [f for f in files if f.path.stem == st.query_params.get("checkpoint")]
            st.session_state[CHECKPOINT_KEY] = str((linked or [services.default_checkpoint(files)])[0].path)
        st.selectbox("Checkpoint", list(by_path), format_func=lambda path: by_path[path].label, key=CHECKPOINT_KEY,
                     help="A meta-trained model. Files come from the checkpoint folder "
                          f"({services.checkpoint_dir()}).")
        st.caption(by_path[st.session_state[CHECKPOINT_KEY]].summary)
        st.query_params["checkpoint"] = Path(st.session_state[CHECKPOINT_KEY]).stem  # a link names its model


checkpoint_picker()
navigation = st.navigation([
    st.Page("pages/1_Checkpoint.py", title="Checkpoint", icon=":material/badge:", default=True),
    st.Page("pages/2_Task.py", title="Task", icon=":material/grid_view:"),
    st.Page("pages/3_Adaptation.py", title="Adaptation", icon=":material/trending_down:"),
])
with st.sidebar:
    st.caption("metaviz shows how a meta-learned model learns a new task from a handful of examples, "
               "and what it decides afterwards.")
with inside_app():  # see pages/_shared.ensure_app
    navigation.run()
