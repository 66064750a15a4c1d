"""Where in the model adaptation happens: how far each layer moves, how much its view of the
new images changes, and which layers must adapt at all."""
import streamlit as st

from metaviz import services
from metaviz.layer_figures import (
    ablation_figure, ablation_table, cka_bars, unit_heatmap, update_bars, update_boxes, update_heatmap,
)
from metaviz.updates import ablation_text, layer_roles_text, task_update_text, update_norms
from pages._layers import identity, measure, measured
from pages._progress import with_progress_bar
from pages._shared import (
    adaptation_settings, current_task, ensure_app, run_adaptation, task_page,
)

ensure_app()

checkpoint, settings = task_page()

st.title("Layers")
st.caption("Which parts of the model change when it adapts to a new task. Meta-learning research asks whether "
           "a model like this learns each task throughout, or re-uses the features it already has and only "
           "re-learns its last layer (the head).")

steps, lr, layers = adaptation_settings(checkpoint)
st.markdown(f"The model adapts with {services.plural(steps, 'step')} of size {lr:g}; adapting: "
            f"{', '.join(layers)} (change this on the Adaptation page).")
key = services.short_hash(checkpoint.content_hash)

st.subheader("This task")
task = current_task(checkpoint, settings)
trace = run_adaptation(checkpoint, task, steps, lr, layers)
norms = update_norms(trace)
st.markdown(task_update_text(norms))
st.caption("Each row is a layer, from the input (top) to the output (bottom). The colour shows how far the layer's "
           "weights have moved from where meta-training left them, as a percentage of the layer's own size.")
st.plotly_chart(update_heatmap(norms), width="stretch", config={"displayModeBar": False})
step = st.slider("Adaptation step to show below", 0, steps, value=steps, key=f"layers_step_{key}_{steps}") \
    if steps else 0
convolutional = checkpoint.model_config.get("kind", "conv") == "conv"
by_tensor, by_unit = st.tabs(["Each weight tensor", "Each filter" if convolutional else "Each unit"])
with by_tensor:
    st.caption("Absolute change (left) grows with a tensor's size; relative change (right) is in % of the "
               "tensor's own size, so small and large tensors compare fairly.")
    st.plotly_chart(update_bars(norms, step), width="stretch", config={"displayModeBar": False})
with by_unit:
    unit, units = ("filter of a convolution layer", "filters") if convolutional else \
        ("unit (neuron) of a fully connected layer", "units")
    st.caption(f"Each {unit} (each class, for the head): how far its weights moved, in % of its own size. "
               f"A few dark cells mean adaptation leans on a few {units}.")
    st.plotly_chart(unit_heatmap(norms, step), width="stretch", config={"displayModeBar": False})

st.subheader("Many tasks")
st.caption("The same measurements over many new tasks from the meta-test data, adapting as above, and a "
           "test of which layers must adapt at all: the same tasks adapted with some layers frozen.")
columns = st.columns([1.8, 1, 1.5], vertical_alignment="bottom")
tasks = columns[0].slider("Number of tasks", 10, 500, value=100, step=10, key="layers_tasks",
                          help="More tasks give tighter confidence intervals and take longer.")
seed = columns[1].number_input("First task number", 0, 2**31 - 1, value=0, key="layers_seed",
                               help="Which tasks: the same number gives the same tasks (and those tasks are the "
                                    "ones `python -m metaviz evaluate --seed` uses).")
wanted = identity(checkpoint.path, checkpoint.content_hash, tasks, seed, steps, lr, layers)
results = measured(wanted)
if results is None and columns[2].button(f"Measure on {tasks} tasks", type="primary", key="layers_measure"):
    results = with_progress_bar(lambda progress: measure(wanted, progress), "Sampling tasks…",
                                "The model cannot be measured on new tasks from its data")
if results is None:
    st.info(f"Press **Measure on {tasks} tasks** to adapt the model to {tasks} new tasks and compare its layers.",
            icon=":material/info:")
    st.stop()

statistics, ablation = results
st.markdown(f"**{layer_roles_text(statistics)}**")

st.markdown("##### How much each layer's view of the new images changes")
st.caption("For each layer, the similarity (linear CKA) between what it computes for the task's new images "
           "before and after adapting: 1 means adapting left the layer's view as it was. Mean over the tasks, "
           "with its 95% confidence interval. The dashed line is the ANIL paper's reading: above 0.9 a layer "
           "barely changed.")
st.plotly_chart(cka_bars(statistics), width="stretch", config={"displayModeBar": False})

st.markdown("##### How far each layer moves")
st.caption("Left: each box spans the middle half of the tasks' changes (line: the median). Right: 1 means "
           "different tasks push the layer in the same direction, 0 means unrelated directions.")
st.plotly_chart(update_boxes(statistics), width="stretch", config={"displayModeBar": False})

st.markdown("##### Which layers must adapt")
metric = "mse" if checkpoint.is_regression else "accuracy"
st.markdown(ablation_text(ablation, metric, checkpoint.adapt_layers))
st.plotly_chart(ablation_figure(ablation, metric, None if checkpoint.is_regression else 1 / checkpoint.ways),
                width="stretch", config={"displayModeBar": False})
st.dataframe(ablation_table(ablation, metric), hide_index=True, width="stretch")
st.caption(f"The same {tasks} tasks in every row; ± is the 95% confidence interval. 'Frozen' layers keep their "
           "meta-trained weights while the others adapt.")
