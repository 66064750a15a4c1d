"""A lesson for audiences new to meta-learning: a meta-learned start against a pre-trained one,
both learning the same new sine wave from a handful of points."""
import streamlit as st

from metaviz import services
from metaviz.embed import MAX_TASKS, MIN_TASKS
from metaviz.embed_figures import embedding_scatter
from metaviz.sine_figures import error_per_step, sine_lesson_figure
from metaviz.sine_lesson import lesson_checkpoints, lesson_text, sine_adaptation
from pages._embed import task_embedding
from metaviz.tasks import sample_task
from pages._shared import (
    CHECKPOINT_KEY, LIMITS, ensure_app, kept, load_checkpoint, remembered, remembered_number_input,
)

ensure_app()

st.title("Learning to learn, on sine waves")
st.caption("Each task here is one sine wave, of unknown height (amplitude) and shift (phase). A model sees only a "
           "few points of a new wave and must draw the whole curve after a few small learning steps. Two models "
           "start from different places: one was meta-learned (MAML) for exactly this, learning to learn new waves "
           "fast; the other was simply trained on all the training waves at once. Both then learn the new wave "
           "the same way.")

meta_file, pretrained_file = lesson_checkpoints(services.find_checkpoints(), st.session_state.get(CHECKPOINT_KEY))
if meta_file is None or pretrained_file is None:
    missing = "a meta-learned sine-wave model" if meta_file is None else "a pre-trained sine-wave model"
    st.info(f"This lesson needs {missing} in the checkpoint folder ({services.checkpoint_dir()}). "
            "checkpoints/README.md has the commands that train both (a few minutes each on a laptop):")
    st.code("python -m metaviz train --algorithm maml --dataset sinusoid --run-dir runs/sinusoid-maml "
            "--out checkpoints/sinusoid-maml.safetensors\n"
            "python -m metaviz train --algorithm joint --dataset sinusoid --run-dir runs/sinusoid-joint "
            "--out checkpoints/sinusoid-joint.safetensors", language="bash")
    st.stop()
meta_model, pretrained_model = (load_checkpoint(str(file.path), services.file_sha256(file.path))
                                for file in (meta_file, pretrained_file))

columns = st.columns(4)
seed = int(remembered_number_input(columns[0], "Wave number", "sine_seed", 0, min_value=0,
                                   max_value=LIMITS["seed"][1], help="Each number draws another wave (and other "
                                                                     "points of it); the same number, the same wave."))
shots = int(remembered_number_input(columns[1], "Points given", "sine_shots", meta_model.shots, min_value=1,
                                    max_value=20, help=f"K: how many points of the wave the models see. The "
                                                       f"meta-learned model trained with {meta_model.shots}."))
steps = int(remembered_number_input(columns[2], "Learning steps", "sine_steps", meta_model.inner_steps,
                                    min_value=1, max_value=50, help="Gradient steps on the given points."))
lr = float(remembered_number_input(columns[3], "Step size", "sine_lr", float(meta_model.inner_lr), min_value=0.001,
                                   max_value=1.0, step=0.005, format="%.3f",
                                   help=f"How far each step moves. The meta-learned model trained with "
                                        f"{meta_model.inner_lr:g}; both models use the size chosen here."))

task = sample_task("sinusoid", shots=shots, queries=10, seed=seed)
try:
    meta, pretrained = (sine_adaptation(model, task, steps, lr) for model in (meta_model, pretrained_model))
except (ValueError, RuntimeError) as error:
    st.error(f"The models could not learn this wave: {services.markdown_text(error)}")
    st.stop()

amplitude, phase = task.source["amplitude"], task.source["phase"]
st.markdown(f"**Wave number {seed}**: height {amplitude:.2f}, shift {phase:.2f}; "
            f"{services.plural(shots, 'point')} given.")
summary = st.columns(2)
for column, name, adaptation in zip(summary, ("Meta-learned start", "Pre-trained start"), (meta, pretrained)):
    column.metric(f"{name}: error after {services.plural(steps, 'step')}", f"{adaptation.curve_error[-1]:.2f}",
                  delta=f"{adaptation.curve_error[-1] - adaptation.curve_error[0]:+.2f} from step 0",
                  delta_color="inverse",
                  help="The average squared distance between the model's curve and the true wave, over the "
                       "whole range of x. 0 means the curve is exact.")
st.plotly_chart(sine_lesson_figure(task, meta, pretrained), width="stretch", config={"displayModeBar": False})
st.caption("Grey: the true wave, hidden from the models except for the blue points. Orange: what each model draws "
           "after the step on the slider (dotted: before it learned anything). Press ▶ Play to watch both learn "
           "step by step. The meta-learned start was trained to be a good place to learn from; the pre-trained "
           "one learned the average of all waves (a low wave in the middle of them all), and a few small steps "
           "barely move it.")
st.markdown(lesson_text(meta, pretrained))

st.subheader("The error, step by step")
st.plotly_chart(error_per_step(meta, pretrained), width="stretch", config={"displayModeBar": False})
st.caption(f"Models: {services.markdown_text(meta_model.name)} ({services.ALGORITHM_NAMES.get(meta_model.algorithm, '')}) "
           f"and {services.markdown_text(pretrained_model.name)} (pre-trained on all waves jointly, the baseline "
           "of the MAML paper, Finn et al. 2017). Both learn with the same steps and step size.")

st.subheader("Hundreds of waves at once")
st.caption("Each point is one wave. The meta-learned model learns each wave, and the map puts waves whose learning "
           "changed the model alike close together. Coloured by height (left) and shift (right): the model's "
           "changes follow what the waves are, without ever being told.")
count = int(remembered_number_input(st, "Waves on the map", "sine_map_tasks", 200, min_value=MIN_TASKS,
                                    max_value=MAX_TASKS, step=50))
tasks = {"n_tasks": count, "seed": 0, "shots": shots, "queries": 10, "one_group": False, "layer": None}
adaptation = {"steps": steps, "lr": lr, "adapt_layers": tuple(meta_model.adapt_layers or meta_model.layers)}
identity = (meta_model.path, meta_model.content_hash, tasks, adaptation, "umap", 0, {})
key = ("sine map", meta_model.content_hash, tuple(sorted(tasks.items())), tuple(sorted(adaptation.items())))
if kept(key) is None and not st.button(f"Draw the map of {count} waves", type="primary", key="sine_map"):
    st.info(f"Press **Draw the map of {count} waves**: the model learns each of them (it takes a little while "
            "the first time).", icon=":material/info:")
    st.stop()
embedding, measures = task_embedding(*identity)
remembered(key, lambda: True)  # drawn once: from now on the map comes back without a press
maps = st.columns(2)
for column, field in zip(maps, ("amplitude", "phase")):
    figure = embedding_scatter(embedding, field)
    figure.update_layout(height=430)
    column.plotly_chart(figure, width="stretch", config={"displayModeBar": False})
    column.caption(f"Neighbours agree on the {'height' if field == 'amplitude' else 'shift'}: R² "
                   f"{measures[field]:.2f} (1: the map orders the waves by it).")
