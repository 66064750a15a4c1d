"""Hundreds of tasks at once: a map of how adapting to each one moves the model, with click-through."""
import hashlib

import streamlit as st

from metaviz import services
from metaviz.embed import DEFAULT_TASKS, MAX_TASKS, METHODS, MIN_TASKS
from metaviz.embed_figures import COLOUR_FIELDS, colour_fields, map_data, search_matches
from pages._embed import task_embedding
from pages._embed_map import task_map
from pages._shared import (
    LIMITS, TaskSettings, adaptation_settings, ensure_app, meta_test_classes, remembered_number_input,
    require_checkpoint, store_task_settings, task_settings,
)
from pages._upload import SAMPLED, SOURCE_KEY

ensure_app()

ADAPTATION_PAGE = "pages/3_Adaptation.py"

checkpoint = require_checkpoint()
settings = task_settings(checkpoint)
regression = checkpoint.is_regression

st.title("Task embeddings")
st.caption("Each point is one task. Adapting to a task moves the model's settings (its parameters) a little; "
           "the map puts tasks whose moves are alike close together. Colour the points by what you want to "
           "compare, hover over a point to see that task, and click it to open the task on the Adaptation page.")

if not regression:
    meta_test_classes(checkpoint)  # missing data: a plain message here, not an error inside the map's work

# The adaptation the map shows is the Adaptation page's, so a clicked task replays there exactly
# as it moved here.
steps, lr, adapt_layers = adaptation_settings(checkpoint)

if steps < 1:
    st.info("The Adaptation page is set to 0 steps: the model does not move, so every task would sit on "
            "the same spot. Choose at least one step there.", icon=":material/info:")
    st.page_link(ADAPTATION_PAGE, label="Adaptation settings", icon=":material/arrow_forward:")
    st.stop()

columns = st.columns([1, 1, 1.4, 1.2])
n_tasks = remembered_number_input(columns[0], "Tasks", "embed_tasks", DEFAULT_TASKS, min_value=MIN_TASKS,
                                  max_value=MAX_TASKS, step=50,
                                  help="How many tasks to draw and adapt to. More tasks take longer: 500 "
                                       "Omniglot tasks can take a minute on a small, busy computer the first "
                                       "time; afterwards the map comes back at once.")
first = remembered_number_input(columns[1], "First task number", "embed_seed", 0, min_value=0,
                                max_value=LIMITS["seed"][1] - MAX_TASKS,
                                help="The tasks are numbered from here on; task number n is the one the Task "
                                     "page shows for that number.")
whole = "all layers that adapt"
if st.session_state.get("embed_layer", whole) not in (whole, *adapt_layers):  # that layer no longer adapts
    del st.session_state["embed_layer"]
layer = columns[2].selectbox("Which part of the update", [whole, *adapt_layers], key="embed_layer",
                             format_func=lambda name: name if name == whole else services.layer_label(name),
                             help="Compare the tasks' whole updates, or only how one layer moved.")
method = columns[3].selectbox("Map", list(METHODS), format_func=METHODS.get, key="embed_method",
                              help="UMAP keeps neighbourhoods (similar tasks together); t-SNE too, more slowly; "
                                   "PCA shows the two directions in which the updates differ most.")
one_group = False
if not regression and checkpoint.dataset == "omniglot":
    one_group = st.toggle("Each task from one alphabet", value=True, key="embed_one_group",
                          help="Draw all classes of a task from one alphabet, the alphabets taking turns, "
                               "to see whether tasks of the same alphabet end up close together.")
method_settings = {}
with st.expander("Map settings"):
    knobs = st.columns(3)
    random_state = int(knobs[0].number_input("Random state", 0, 10_000, 0, key="embed_random_state",
                                             help="The same number always draws the same map."))
    if method == "umap":
        method_settings["n_neighbors"] = int(knobs[1].slider("Neighbours", 2, 100, 15, key="embed_neighbours",
                                                             help="Small: fine local detail; large: the "
                                                                  "overall layout."))
        method_settings["min_dist"] = float(knobs[2].slider("Minimum distance", 0.0, 0.99, 0.1,
                                                            key="embed_min_dist",
                                                            help="How tightly points may pack together."))
    elif method == "tsne":
        method_settings["perplexity"] = float(knobs[1].slider("Perplexity", 5, 100, 30, key="embed_perplexity",
                                                              help="Roughly how many neighbours each point "
                                                                   "keeps in view."))

tasks = {"n_tasks": int(n_tasks), "seed": int(first), "shots": settings.shots, "queries": settings.queries,
         "one_group": one_group, "layer": None if layer == whole else layer}
adaptation = {"steps": steps, "lr": lr, "adapt_layers": adapt_layers}
embedding, measures = task_embedding(checkpoint.path, checkpoint.content_hash, tasks, adaptation, method,
                                     random_state, method_settings)

shape = (f"{services.plural(settings.shots, 'given point')}, {services.plural(settings.queries, 'point')} to predict"
         if regression else f"{services.plural(settings.shots, 'example')} and "
                            f"{services.plural(settings.queries, 'new image')} per class")
st.markdown(f"Tasks number {int(first)} to {int(first) + len(embedding) - 1} ({shape}, as set on the Task page), "
            f"each adapted with {services.plural(steps, 'step')} of size {lr:g}.")
summary = st.columns(3)
summary[0].metric("Trustworthiness", f"{embedding.trustworthiness:.2f}",
                  help=f"Of each task's {embedding.neighbours} nearest neighbours on the map, how many are "
                       "also near it in the full update. 1.00: all of them; about 0.5: a random map. "
                       "Distances on the map only mean something when this is high.")
if "alphabet" in measures:
    purity = measures["alphabet"]
    summary[1].metric("Neighbours from the same alphabet", f"{100 * purity.observed:.0f}%",
                      delta=f"{100 * (purity.observed - purity.chance):+.0f} points over chance",
                      help=f"Of each task's {purity.k} nearest neighbours on the map, the share that come from "
                           f"the same alphabet. By chance (alphabets shuffled over the points): "
                           f"{100 * purity.chance:.0f}%.")
for column, name in zip(summary[1:], [name for name in ("amplitude", "phase") if name in measures]):
    column.metric(f"Neighbours agree on {name}", f"{measures[name]:.2f}",
                  help=f"How well a task's {name} is predicted by its neighbours' on the map (R²): 1 means "
                       "the map orders the tasks by it, 0 or below that it ignores it.")

controls = st.columns([1, 2])
fields = colour_fields(embedding)
colour_by = controls[0].selectbox("Colour by", fields, format_func=COLOUR_FIELDS.get, key="embed_colour")
query = "" if regression else controls[1].text_input(
    f"Find {services.group_noun(checkpoint.dataset)} or classes", key="embed_search",
    placeholder=services.SEARCH_EXAMPLES.get(checkpoint.dataset, "A class name"),
    help=f"Tasks with a matching {services.group_noun(checkpoint.dataset, 1)} or class stay bright; the others fade.")
matches = search_matches(embedding, query)
if matches is not None:
    controls[1].caption(f"{services.plural(int(matches.sum()), 'task')} of {len(embedding)} match.")

seeds = embedding.metadata["seed"]
groups = embedding.metadata.get("groups")
current = [row for row in range(len(embedding)) if seeds[row] == settings.seed and not settings.classes
           and (groups is None or tuple(groups[row]) == tuple(settings.groups))]
# Zoom and pan last while only the colour or the search changes; another map starts afresh.
identity = repr((checkpoint.content_hash, tasks, adaptation, method, random_state, method_settings))
revision = hashlib.sha256(identity.encode()).hexdigest()[:12]
picture = "the wave and its given points" if regression else "the task's examples, one per class"
clicked = task_map(map_data(embedding, colour_by, current[0] if current else None, matches, revision),
                   key="embedding_map", picture_label=picture)
st.caption(f"Hover over a point to see {picture} and how adapting went; click it to open that task on the "
           "Adaptation page. Drag to zoom in, double-click to zoom out. The axes have no units: only which "
           "tasks sit near which others means something. "
           + ("The red ring marks the current task (the one on the Task page)." if current else ""))

if clicked is not None and 0 <= clicked < len(embedding):
    # The clicked task becomes the current task, set as the Task page sets it; the Adaptation
    # page then replays it with the very settings it moved with here.
    store_task_settings(TaskSettings(shots=settings.shots, queries=settings.queries, seed=int(seeds[clicked]),
                                     groups=tuple(groups[clicked]) if groups is not None else ()))
    st.session_state[SOURCE_KEY] = SAMPLED  # the clicked task, not an uploaded one
    st.switch_page(ADAPTATION_PAGE)
