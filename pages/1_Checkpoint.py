"""Home: what the selected checkpoint is, how it was trained, and how well it does."""
import streamlit as st

from metaviz import services
from metaviz.figures import training_curves
from pages._shared import TASK_PAGE, ensure_app, selected_card, selected_checkpoint

ensure_app()

checkpoint = selected_card()  # the header only: the page appears before torch is imported
if checkpoint is None:
    directory = services.checkpoint_dir()
    st.title("Welcome to metaviz")
    st.info("There is no model checkpoint to show yet.", icon=":material/info:")
    st.markdown(
        "metaviz shows how a *meta-learned* model picks up a new task from a handful of labelled "
        "examples. It needs a trained model (a checkpoint file) to start.\n\n"
        "**To add one**, copy a `.safetensors` checkpoint into this folder and reload the page:"
    )
    st.code(str(directory), language=None)
    st.markdown("**To train one** (handwritten digits, no download needed), run this in a terminal "
                "in the metaviz folder, then reload the page. Training takes a while on a laptop; add "
                "`--iterations 500` for a rough model sooner.")
    st.code(services.train_command(directory), language="bash")
    st.caption("Checkpoints kept elsewhere on this computer can be listed too: name their folder under "
               "**Other checkpoint folder** in the sidebar. A different default folder can be set with the "
               f"environment variable `{services.CHECKPOINT_DIR_VARIABLE}` before starting the dashboard.")
    st.stop()

st.title(checkpoint.name)
st.caption("A meta-trained model: a starting point from which a few examples of a new task are "
           "enough to adapt it to that task.")
weights_check = st.container()  # a file whose weights do not fit its header says so here, at the top

with st.container(border=True):
    columns = st.columns([1, 1, 1.4, 1.2])
    columns[0].metric("Algorithm", services.ALGORITHM_NAMES.get(checkpoint.algorithm, checkpoint.algorithm),
                      help=services.ALGORITHM_DESCRIPTIONS.get(checkpoint.algorithm))
    columns[1].metric("Data", services.DATASET_NAMES.get(checkpoint.dataset, checkpoint.dataset),
                      help=services.DATASET_DESCRIPTIONS.get(checkpoint.dataset))
    columns[2].metric("Task shape", services.task_shape(checkpoint.ways, checkpoint.shots),
                      help=services.task_shape_explained(checkpoint.ways, checkpoint.shots))
    meta_test = services.meta_test_text(checkpoint.metrics)
    if meta_test is None:
        columns[3].metric("Meta-test score", "not measured yet",
                          help=f"Measure it with: python -m metaviz evaluate {checkpoint.path} --record")
    else:
        label = "Meta-test accuracy" if checkpoint.metrics["meta_test"].get("metric", "accuracy") == "accuracy" \
            else "Meta-test error"
        # The metric shows the mean only (a long value is cut off in narrow windows); the
        # interval and how it was measured follow in full below.
        columns[3].metric(label, meta_test[0].split(" ± ")[0], help=meta_test[1])

    st.markdown(services.task_shape_explained(checkpoint.ways, checkpoint.shots))
    details = {
        "Trained on tasks of": services.training_tasks_text(checkpoint.ways, checkpoint.shots, checkpoint.queries,
                                                             checkpoint.extra),
        "Adaptation (inner loop)": services.inner_loop_text(checkpoint),
        "Network": services.network_text(checkpoint.model_config),
        "Layers that adapt": services.adapted_layers_text(checkpoint),
        "Classes come from": f"the {checkpoint.test_split} split, classes never seen in training"
        if not checkpoint.is_regression else "new random sine waves",
        **({"Meta-test score": f"{meta_test[0]}. {meta_test[1]}"} if meta_test else {}),
        "Meta-training": services.training_progress_text(checkpoint.extra),
        "Created": services.created_text(checkpoint.created),
        "Content hash": f"`{services.short_hash(checkpoint.content_hash)}`",
        "File": f"`{checkpoint.path}`",
    }
    st.markdown("\n".join(f"- **{label}:** {value}" for label, value in details.items()))

st.subheader("Meta-training")
if services.has_training_history(checkpoint.history):
    metric = "mse" if checkpoint.is_regression else "accuracy"
    st.plotly_chart(training_curves(checkpoint.history, metric, services.phase_change(checkpoint.extra)),
                    width="stretch")
    st.caption(services.training_curves_caption(checkpoint.extra))
else:
    st.caption("This checkpoint carries no training curves (it may have been imported).")

st.page_link(TASK_PAGE, label="Next: sample a task for this model", icon=":material/arrow_forward:")

with weights_check:  # last, once the card is on screen: opens the weights (torch), as every other page will
    selected_checkpoint()
