"""Sample a few-shot task from the checkpoint's meta-test split and show its images."""
import random

import streamlit as st

from metaviz import services
from metaviz.figures import MAX_NAMED_COLUMNS, readable_class_name, task_grid
from pages._shared import (
    LIMITS, TaskSettings, ensure_app, load_task, meta_test_classes, require_checkpoint, store_task_settings,
    task_settings,
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


def class_choice() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The optional alphabets (digits) to draw from and exact classes, in a closed expander;
    kept in the task settings, so in the link too."""
    pool = meta_test_classes(checkpoint)
    group_options = list(dict.fromkeys(pool.groups))
    chosen_groups = st.session_state.get("task_groups_input", settings.groups)
    # A stored choice can name what this data lacks (a link's typo, another checkpoint's data):
    # a multiselect refuses values outside its options, so those are dropped here.
    st.session_state["task_groups_input"] = [name for name in chosen_groups if name in group_options]
    nouns = services.group_noun(checkpoint.dataset)
    with st.expander(f"Choose {nouns} or classes (optional)", key="task_choice_expander"):
        st.caption(f"Leave both empty to draw {checkpoint.ways} classes at random from all "
                   f"{pool.num_classes} classes of the {checkpoint.test_split} split. Pick some {nouns} to draw "
                   f"only from them, or pick exactly {checkpoint.ways} classes to fix the task's classes: the task "
                   "number then only decides which images of them are shown.")
        left, right = st.columns(2)
        groups = left.multiselect(f"Only these {nouns}", group_options, key="task_groups_input",
                                  format_func=lambda name: name.replace("_", " "), placeholder=f"All {nouns}")
        class_options = [name for name, group in zip(pool.class_names, pool.groups) if not groups or group in groups]
        chosen_classes = st.session_state.get("task_classes_input", settings.classes)
        st.session_state["task_classes_input"] = [name for name in chosen_classes if name in class_options]
        classes = right.multiselect(f"Exactly these {checkpoint.ways} classes", class_options,
                                    key="task_classes_input", max_selections=checkpoint.ways,
                                    format_func=readable_class_name, placeholder="Drawn at random",
                                    help="In the order picked: the first is class 1 of the task, and so on."
                                    + (f" Only classes of the chosen {nouns} are listed." if groups else ""))
    return tuple(groups), tuple(classes)


groups, classes = class_choice() if source == SAMPLED and not regression else (settings.groups, settings.classes)
settings = TaskSettings(shots=int(shots), queries=int(queries), seed=int(seed), groups=groups, classes=classes)
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
    class_list = "; ".join(f"{index + 1} = **{name}**" if numbered else f"**{name}**"
                           for index, name in enumerate(names))
    if settings.classes:
        origin = f"chosen by hand from the {checkpoint.test_split} split"
    elif settings.groups:
        chosen = ", ".join(services.markdown_text(name.replace("_", " ")) for name in settings.groups)
        origin = f"drawn only from {chosen} in the {checkpoint.test_split} split"
    else:
        origin = f"from the {checkpoint.test_split} split"
    st.markdown(f"Classes in this task: {class_list}, {origin} "
                "(the model never saw them during training). Each column is one class.")

st.plotly_chart(task_grid(task), width="stretch", config={"displayModeBar": False})
if source == SAMPLED:
    st.caption("This page's link holds the task settings: share it to show someone exactly this task.")
else:
    st.caption("Uploaded images stay in this browser session only: a link cannot bring them to someone else.")
st.page_link("pages/3_Adaptation.py", label="Next: watch the model adapt to this task",
             icon=":material/arrow_forward:")
