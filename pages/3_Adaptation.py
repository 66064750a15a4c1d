"""Adapt the checkpoint to the current task and show how loss and accuracy change per step."""
import streamlit as st

from metaviz import services
from metaviz.adaptation import prediction_changes
from metaviz.figures import adaptation_curves, flipped_predictions, query_predictions
from pages._shared import (
    TASK_PAGE, current_task, ensure_app, remembered_number_input, run_adaptation, task_page,
)
from pages._upload import using_upload

ensure_app()

checkpoint, settings = task_page()

st.title("Adaptation")
st.caption("The model takes a few small gradient steps on the task's labelled examples (the support set). "
           "The query set, which it never trains on, shows whether it really learned the new task.")

# Kept per checkpoint: another checkpoint brings its own default settings.
key = services.short_hash(checkpoint.content_hash)
columns = st.columns([1, 1, 3], vertical_alignment="bottom")
steps = remembered_number_input(columns[0], "Adaptation steps", f"steps_{key}", checkpoint.inner_steps,
                                min_value=0, max_value=100,
                                help=f"The checkpoint was trained to use {checkpoint.inner_steps}.")
lr = remembered_number_input(columns[1], "Step size (learning rate)", f"lr_{key}", float(checkpoint.inner_lr),
                             min_value=0.0, max_value=10.0, step=0.05, format="%.3g",
                             help=f"The checkpoint was trained with {checkpoint.inner_lr:g}.")
layers_key = f"layers_{key}"
if f"{layers_key}_input" not in st.session_state:
    st.session_state[f"{layers_key}_input"] = st.session_state.get(
        layers_key, list(checkpoint.adapt_layers or checkpoint.layers))
layers = columns[2].multiselect("Layers that adapt", list(checkpoint.layers), key=f"{layers_key}_input",
                                placeholder="Choose layers",
                                help="Only these layers change during adaptation; the others keep their "
                                     "meta-trained values. "
                                     + ", ".join(services.layer_label(layer) for layer in checkpoint.layers)
                                     + f". The checkpoint was trained with {services.adapted_layers_text(checkpoint)}.")
st.session_state[layers_key] = layers
task = current_task(checkpoint, settings)
if checkpoint.is_regression:
    st.markdown(f"Task number {settings.seed}: {services.plural(settings.shots, 'given point')}, "
                f"{services.plural(settings.queries, 'point')} to predict.")
else:
    chosen = " (classes chosen by hand)" if settings.classes else \
        f" (from the chosen {services.group_noun(checkpoint.dataset)})" if settings.groups else ""
    source = "Your uploaded images" if using_upload() else f"Task number {settings.seed}{chosen}"
    st.markdown(f"{source}: {services.plural(task.support_x.shape[0] // task.ways, 'example')} and "
                f"{services.plural(task.query_x.shape[0] // task.ways, 'new image')} per class.")
if not layers:
    st.warning("Choose at least one layer to adapt.", icon=":material/warning:")
    st.stop()

trace = run_adaptation(checkpoint, task, int(steps), float(lr), tuple(layers))

if trace.query_accuracy is not None:
    before, after = 100 * trace.query_accuracy[0], 100 * trace.query_accuracy[-1]
    summary = st.columns(3)
    summary[0].metric("New images recognised before adapting", f"{before:.0f}%",
                      help="Share of the query images the model classifies correctly with its meta-trained "
                           "starting point, before it has seen this task's examples.")
    summary[1].metric(f"Recognised after {services.plural(trace.steps, 'step')}", f"{after:.0f}%",
                      delta=f"{after - before:+.0f} points" if round(after) != round(before) else None)
    summary[2].metric("Chance level", f"{100 / checkpoint.ways:.0f}%",
                      help="What guessing at random would score with this many classes.")
else:
    summary = st.columns(2)
    summary[0].metric("Error on new points before adapting", f"{trace.query_loss[0]:.3g}")
    summary[1].metric(f"Error after {services.plural(trace.steps, 'step')}", f"{trace.query_loss[-1]:.3g}")

st.plotly_chart(adaptation_curves(trace), width="stretch", config={"displayModeBar": False})

if trace.query_probabilities is not None:
    st.subheader("Step by step: what the model answers for each new image")
    if trace.steps > 0:
        step = st.slider("Adaptation step to show", 0, trace.steps, value=trace.steps, key=f"step_{key}_{trace.steps}",
                         help="0 is the meta-trained model before it has seen this task's examples.")
    else:
        step = 0
    st.caption("Each row is one new image. The blue cells show how sure the model is that the image belongs "
               "to each class; its answer is the most likely class. Press ▶ in the chart to play every step.")
    st.plotly_chart(query_predictions(task, trace, step), width="stretch",
                    config={"displayModeBar": False})

    st.subheader(f"Answers that changed between step 0 and step {trace.steps}")
    changes = prediction_changes(trace, task.query_y)
    changed = sum(len(indices) for indices in changes.values())
    if changed == 0:
        st.markdown("No answer changed: the model answers every new image as it did before adapting.")
    else:
        parts = [f"{services.plural(len(changes['fixed']), 'answer')} became right" if changes["fixed"] else "",
                 f"{services.plural(len(changes['broken']), 'answer')} became wrong" if changes["broken"] else "",
                 f"{len(changes['still_wrong'])} went from one wrong class to another" if changes["still_wrong"]
                 else ""]
        st.markdown(f"Adapting changed {changed} of the {len(task.query_y)} answers: "
                    + ", ".join(part for part in parts if part) + ".")
        st.plotly_chart(flipped_predictions(task, trace), width="stretch", config={"displayModeBar": False})

st.page_link(TASK_PAGE, label="Change the task", icon=":material/arrow_back:")
