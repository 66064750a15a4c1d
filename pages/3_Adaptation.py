"""Adapt the checkpoint to the current task and show how loss and accuracy change per step."""
import streamlit as st

from metaviz import services
from metaviz.figures import adaptation_curves
from pages._shared import (
    TASK_PAGE, ensure_app, remembered_number_input, require_checkpoint, run_adaptation, store_task_settings,
    task_settings,
)

ensure_app()

checkpoint = require_checkpoint()
settings = task_settings(checkpoint)
store_task_settings(settings)  # the link re-creates the task here too

st.title("Adaptation")
st.caption("The model takes a few small gradient steps on the task's labelled examples (the support set). "
           "The query set, which it never trains on, shows whether it really learned the new task.")

# Kept per checkpoint: another checkpoint brings its own default settings.
key = services.short_hash(checkpoint.content_hash)
columns = st.columns([1, 1, 2], vertical_alignment="bottom")
steps = remembered_number_input(columns[0], "Adaptation steps", f"steps_{key}", checkpoint.inner_steps,
                                min_value=0, max_value=100,
                                help=f"The checkpoint was trained to use {checkpoint.inner_steps}.")
lr = remembered_number_input(columns[1], "Step size (learning rate)", f"lr_{key}", float(checkpoint.inner_lr),
                             min_value=0.0, max_value=10.0, step=0.05, format="%.3g",
                             help=f"The checkpoint was trained with {checkpoint.inner_lr:g}.")
if checkpoint.is_regression:
    columns[2].markdown(f"Task number {settings.seed}: {services.plural(settings.shots, 'given point')}, "
                        f"{services.plural(settings.queries, 'point')} to predict.")
else:
    columns[2].markdown(f"Task number {settings.seed}: {services.plural(settings.shots, 'example')} and "
                        f"{services.plural(settings.queries, 'new image')} per class.")

trace = run_adaptation(checkpoint, settings, int(steps), float(lr))

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
st.page_link(TASK_PAGE, label="Change the task", icon=":material/arrow_back:")
