"""Sample a few-shot task from the checkpoint's meta-test split and show its images."""
import random

import streamlit as st

from metaviz import services
from metaviz.figures import MAX_NAMED_COLUMNS, readable_class_name, task_grid
from pages._shared import (
    LIMITS, TaskSettings, ensure_app, load_task, require_checkpoint, store_task_settings, task_settings,
)
from pages._upload import SAMPLED, SOURCE_KEY, UPLOADED, upload_section

ensure_app()

checkpoint = require_checkpoint()
settings = task_settings(checkpoint)

regression = checkpoint.is_regression
st.title("Task")
if regression:
    st.caption("A few-shot regression task: a few points of a new curve (the support set), and more points of "
               "the same curve (the query set) that the model must then predict.")
else:
    st.caption("A few-shot task: a handful of labelled examples per class (the support set), and new images "
               "of the same classes (the query set) that the model must then recognise.")

# Widget state is re-seeded from the stored settings after a visit to another page.
for field in ("shots", "queries", "seed"):
    st.session_state.setdefault(f"task_{field}_input", getattr(settings, field))
st.session_state.setdefault("task_source_input", st.session_state.get(SOURCE_KEY, SAMPLED))

if not regression:
    dataset_name = services.DATASET_NAMES.get(checkpoint.dataset, checkpoint.dataset)
    source = st.radio("Where the images come from", [SAMPLED, UPLOADED], horizontal=True, key="task_source_input",
                      format_func={SAMPLED: f"Sample from the {dataset_name} data",
                                   UPLOADED: "Upload my own images"}.get)
    st.session_state[SOURCE_KEY] = source
else:
    source = SAMPLED


def new_seed() -> None:
    st.session_state["task_seed_input"] = random.randint(0, 9999)


if regression:
    labels = {"shots": ("Given points", "How many points of the curve the model adapts on (shots)."),
              "queries": ("Points to predict", "How many other points of the curve it is tested on.")}
else:
    labels = {"shots": ("Examples per class", "How many labelled examples of each class the model adapts on (shots)."),
              "queries": ("New images per class", "How many new images of each class it is tested on (queries).")}
columns = list(st.columns([1, 1, 1, 1.2] if regression else [1, 1, 1, 1, 1.2], vertical_alignment="bottom"))
if not regression:
    columns.pop(0).number_input("Classes per task", value=checkpoint.ways, disabled=True,
                                help="Fixed by the checkpoint: its last layer has one output per class.")
shots = columns[0].number_input(labels["shots"][0], *LIMITS["shots"], key="task_shots_input", help=labels["shots"][1])
queries = columns[1].number_input(labels["queries"][0], *LIMITS["queries"], key="task_queries_input",
                                  help=labels["queries"][1])
seed = columns[2].number_input("Task number (seed)", *LIMITS["seed"], key="task_seed_input",
                               help="The same number always gives the same task." if source == SAMPLED else
                               "Decides which of your images are examples and which are tested; "
                               "'Shuffle again' picks another split.")
columns[3].button("Draw another task" if source == SAMPLED else "Shuffle again", on_click=new_seed,
                  icon=":material/casino:")

settings = TaskSettings(shots=int(shots), queries=int(queries), seed=int(seed))
store_task_settings(settings)

if source == UPLOADED:
    task = upload_section(checkpoint, settings)
    st.subheader("The task")
    names = "; ".join(f"**{services.markdown_text(name)}**" for name in task.class_names)
    st.markdown(f"Classes in this task: {names}, from your upload. Each column is one class. "
                f"{services.plural(task.support_x.shape[0] // task.ways, 'image')} per class to learn from, "
                f"{services.plural(task.query_x.shape[0] // task.ways, 'new image')} per class to test on.")
elif regression:
    task = load_task(checkpoint, settings)
    st.markdown(f"A new sine wave: the model sees **{settings.shots} points** and must predict the rest.")
else:
    task = load_task(checkpoint, settings)
    numbered = task.ways > MAX_NAMED_COLUMNS  # the grid numbers its columns instead of naming them
    names = [readable_class_name(name) for name in task.class_names]
    classes = "; ".join(f"{index + 1} = **{name}**" if numbered else f"**{name}**" for index, name in enumerate(names))
    st.markdown(f"Classes in this task: {classes}, from the {checkpoint.test_split} split "
                "(the model never saw them during training). Each column is one class.")

st.plotly_chart(task_grid(task), width="stretch", config={"displayModeBar": False})
if source == SAMPLED:
    st.caption("This page's link holds the task settings: share it to show someone exactly this task.")
else:
    st.caption("Uploaded images stay in this browser session only: a link cannot bring them to someone else.")
st.page_link("pages/3_Adaptation.py", label="Next: watch the model adapt to this task",
             icon=":material/arrow_forward:")
