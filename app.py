"""metaviz dashboard: `streamlit run app.py` (or `make run`).

Sets up what every page shares (the checkpoint picker in the sidebar) and the navigation.
No model is loaded here: the picker reads only checkpoint headers, so the first screen
appears before torch is imported.
"""
import streamlit as st

from metaviz import services
from metaviz.allocator import keep_freed_memory
from metaviz.safety import unsafe_environment
from pages._checkpoint_upload import checkpoint_upload
from pages._report import report_download
from pages._shared import CHECKPOINT_KEY, inside_app, warm_up_for_later_pages

OTHER_FOLDER_KEY = "other_checkpoint_folder"  # the folder named in the sidebar, kept for the session
CHOSEN_KEY = "chosen_checkpoint"  # the picked checkpoint's path, kept for the session

keep_freed_memory()  # large batches reuse freed memory instead of faulting it in again (metaviz.allocator)
st.set_page_config(page_title="metaviz: how a few-shot model adapts", page_icon=":material/neurology:",
                   layout="wide")
if problem := unsafe_environment():  # files from users could run code here: refuse to start (metaviz.safety)
    st.error(problem, icon=":material/gpp_bad:")
    st.stop()


def keep(widget: str, store: str) -> None:
    """on_change: copies a sidebar widget's value to a key of its own. A widget's state can be
    dropped or its id change between runs (AppTest runs app.py from inside each page), and
    each run re-seeds the widget from that key."""
    st.session_state[store] = st.session_state[widget]


def other_folder_checkpoints() -> list[services.CheckpointFile]:
    """The checkpoints of the folder named under "Other checkpoint folder" (kept for the session);
    a warning, and none, when that folder cannot give any."""
    widget = f"{OTHER_FOLDER_KEY}_input"
    st.session_state[widget] = folder = st.session_state.get(OTHER_FOLDER_KEY, "")
    with st.expander("Other checkpoint folder", key="other_checkpoint_folder_expander"):
        st.text_input("Folder on the server", key=widget, placeholder="/path/to/checkpoints",
                      on_change=keep, args=(widget, OTHER_FOLDER_KEY),
                      help="A folder on the computer that runs metaviz. Its .safetensors checkpoints join "
                           "the list above, marked with the folder's name. Leave empty to list only "
                           f"{services.checkpoint_dir()}.")
    if not folder.strip():
        return []
    try:
        return services.checkpoints_in_folder(folder)
    except services.CheckpointFolderError as error:
        # Outside the expander, so the message shows even when the expander is closed.
        st.warning(services.markdown_text(error), icon=":material/folder_off:")
        return []


def checkpoint_picker() -> None:
    with st.sidebar:
        st.markdown("### Model")
        picker = st.container()  # filled last: the folder field below decides what it lists
        others = other_folder_checkpoints() + checkpoint_upload(CHOSEN_KEY)
    files = services.find_checkpoints()
    known = {file.path.resolve() for file in files}
    others = [file for file in others if file.path.resolve() not in known]  # the usual folder named again
    with picker:
        if not files and not others:
            st.session_state.pop(CHECKPOINT_KEY, None)
            st.caption(f"No checkpoints in `{services.checkpoint_dir()}` yet.")
            return
        by_path = {str(file.path): file for file in files + others}
        labels = {**{str(file.path): file.label for file in files},
                  **{str(file.path): f"{file.label} · {file.path.parent.name}/" for file in others}}
        if st.session_state.get(CHOSEN_KEY) not in by_path:
            # First run (or the file went away): the link's checkpoint, else the default one.
            linked = [f for f in files + others if f.path.stem == st.query_params.get("checkpoint")]
            fallback = services.default_checkpoint(files) or services.default_checkpoint(others)
            st.session_state[CHOSEN_KEY] = str((linked or [fallback])[0].path)
        st.session_state[CHECKPOINT_KEY] = st.session_state[CHOSEN_KEY]  # the pages read the widget's key
        st.selectbox("Checkpoint", list(by_path), format_func=labels.get, key=CHECKPOINT_KEY,
                     on_change=keep, args=(CHECKPOINT_KEY, CHOSEN_KEY),
                     help="A meta-trained model. Files come from the checkpoint folder "
                          f"({services.checkpoint_dir()}) and from the folder named under 'Other checkpoint "
                          "folder'; those are marked with their folder's name.")
        chosen = by_path[st.session_state[CHECKPOINT_KEY]]
        where = "" if chosen in files else f" · from {services.markdown_text(chosen.path.parent)}"
        st.caption(chosen.summary + where)
        st.query_params["checkpoint"] = chosen.path.stem  # a link names its model


checkpoint_picker()
report_download()  # built only when clicked: see pages/_report.py
navigation = st.navigation([
    st.Page("pages/1_Checkpoint.py", title="Checkpoint", icon=":material/badge:", default=True),
    st.Page("pages/2_Task.py", title="Task", icon=":material/grid_view:"),
    st.Page("pages/3_Adaptation.py", title="Adaptation", icon=":material/trending_down:"),
    st.Page("pages/4_Saliency.py", title="Saliency", icon=":material/visibility:"),
    st.Page("pages/5_Layers.py", title="Layers", icon=":material/stacks:"),
    st.Page("pages/6_Task_embeddings.py", title="Task embeddings", icon=":material/scatter_plot:"),
    st.Page("pages/7_Sine_waves.py", title="Sine-wave lesson", icon=":material/school:"),
])
with st.sidebar:
    st.caption("metaviz shows how a meta-learned model learns a new task from a handful of examples, "
               "and what it decides afterwards.")
with inside_app():  # see pages/_shared.ensure_app
    navigation.run()
warm_up_for_later_pages()  # after the page: see pages/_shared.py
