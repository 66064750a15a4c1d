"""What the model looks at in each new image, before and after adapting, and whether to trust the map."""
import streamlit as st

from metaviz import services
from metaviz.explain import METHODS  # the registry alone: captum loads when a map is first computed
from metaviz.trust import SIMILAR
from metaviz.explain_figures import (
    SIGNS, faithfulness_figure, global_importance_figure, randomisation_figure, saliency_grid, seed_agreement_figure,
)
from metaviz.figures import readable_class_name
from pages._shared import (
    adaptation_settings, current_task, ensure_app, remembered_number_input, run_adaptation, task_key, task_page,
)
from pages._progress import with_progress_bar
from pages._saliency import (
    IMAGE_SETS, IMAGE_SETS_SHORT, agreement_words, attributions, completeness_words, faithfulness, global_key, global_maps, images_of, method_settings,
    randomisation, randomisation_done, second_run_agreement,
)

ensure_app()

checkpoint, settings = task_page()

st.title("Saliency")
st.caption("Which pixels of each new image the model's answer rests on, how adapting to the task changed "
           "that, and checks that say whether the map itself can be trusted.")
if checkpoint.is_regression:
    st.info("Saliency maps explain image models; this checkpoint predicts numbers from numbers.")
    st.stop()

# The adaptation settings are the Adaptation page's (kept per checkpoint), else the checkpoint's.
key = services.short_hash(checkpoint.content_hash)
steps, lr, layers = adaptation_settings(checkpoint)
task = current_task(checkpoint, settings)
run_adaptation(checkpoint, task, steps, lr, layers)  # adapts once (cached) and says so if adapting fails
st.markdown(f"The model adapts with {services.plural(steps, 'step')} of size {lr:g} "
            "(change this on the Adaptation page).")

columns = st.columns([2, 1, 2])
method = columns[0].selectbox("Method", list(METHODS), key="saliency_method",
                              format_func=lambda name: f"{name}: {METHODS[name].summary}")
step = columns[1].slider("Adaptation step", 0, steps, value=steps, key=f"saliency_step_{key}_{steps}",
                         help="0 is the meta-trained model before it has seen this task's examples.") if steps else 0
explain = columns[2].radio("Explain", ["The class the model answers", "A class I choose"], horizontal=True,
                           key="saliency_explain")
target = None
if explain == "A class I choose":
    target = columns[2].selectbox("Class", range(task.ways), key="saliency_class",
                                  format_func=lambda label: readable_class_name(task.class_names[label]))
st.caption(f"{method}: {METHODS[method].summary}")
display = st.columns([2, 2, 1])
images = display[0].radio("Images to explain", list(IMAGE_SETS), format_func=IMAGE_SETS.get, key="saliency_images")
if METHODS[method].knobs:
    settings_box = display[0].expander(f"{method} settings")
    method_choices = method_settings(method, settings_box)
else:
    method_choices = ()
    display[0].caption(f"{method} has no settings to choose.")
sign = display[1].selectbox("Show", SIGNS, key="saliency_sign",
                            format_func={"absolute_value": "strength only (either direction)",
                                         "positive": "evidence for the class only",
                                         "negative": "evidence against the class only",
                                         "all": "for (red) and against (blue)"}.get)
outlier_perc = display[2].number_input("Clip the strongest pixels (%)", 0.0, 20.0, 2.0, 0.5, key="saliency_outliers",
                                       help="The strongest pixels of each map are clipped, so a few extreme "
                                            "ones do not make the rest invisible (captum's outlier_perc).")

identity = (checkpoint.path, checkpoint.content_hash, task_key(task), steps, lr, layers, method, method_choices,
            images)
with st.spinner(f"Computing {method} maps…"):
    before = attributions(*identity, 0, target, task)
    after = attributions(*identity, step, target, task)
explained = "the class the model answers at each step" if target is None else \
    f"the class {readable_class_name(task.class_names[target])}"
shown = "new image" if images == "query" else "example the model learns from"
st.subheader("What the model looks at in each " + ("new image" if images == "query" else "example"))
st.caption(f"Each column is one {shown}; the maps explain {explained}. Under each map: the model's answer at "
           "that step (✓ right, ✗ wrong) and how sure it is. The last row is the step's map minus step 0's: red where the model "
           "puts more weight after adapting, blue where it puts less.")
st.plotly_chart(saliency_grid(
    images_of(task, images).numpy(), before.values, after.values, step, task.class_names,
    before.probabilities.argmax(-1), after.probabilities.argmax(-1), before.probabilities.max(-1),
    after.probabilities.max(-1), sign=sign, outlier_perc=float(outlier_perc),
    true_classes=(task.query_y if images == "query" else task.support_y).numpy()),
    width="stretch", config={"displayModeBar": False})

st.header("Can this map be trusted?")
st.subheader("Does it add up?")
if after.completeness is None:
    st.markdown(f"{method} makes no promise that its map adds up to the model's score, so there is nothing to "
                "check here (Integrated Gradients, DeepLift and GradientSHAP make one).")
else:
    st.markdown(completeness_words(method, after, step))

st.subheader("Does it depend on what the model learned?")
st.caption("The randomisation test (Adebayo et al. 2018): the trained weights are replaced by random ones, layer "
           "by layer from the output down, and the maps recomputed. A map that stays the same cannot be "
           "explaining what the model learned.")
targets = after.targets
if st.button("Run the randomisation test", key="saliency_randomise") or randomisation_done(*identity, step, targets):
    bar = st.progress(0.0, text="Randomising the layers…")
    result = randomisation(*identity, step, tuple(int(t) for t in targets), task,
                           lambda done, total: bar.progress(done / total, text=f"{done} of {total} maps"))
    bar.empty()
    st.plotly_chart(randomisation_figure(result.layers, result.spearman, result.spearman_abs, result.ssim, SIMILAR),
                    width="stretch", config={"displayModeBar": False})
    (st.success if result.passed else st.warning)(f"Verdict for {method}: {result.verdict}.")

st.subheader("Does removing the pixels it points at change the answer?")
curves = faithfulness(*identity, step, target, task)
deletion, random_deletion = float(curves.area("deletion").mean()), float(curves.area("random_deletion").mean())
st.plotly_chart(faithfulness_figure(curves.fractions, curves.deletion, curves.insertion, curves.random_deletion,
                                    curves.random_insertion), width="stretch", config={"displayModeBar": False})
st.caption("Pixels are blacked out (deletion) or revealed on a black page (insertion), most important first. "
           "A trustworthy map's deletion curve drops faster than random, and its insertion curve rises faster. "
           f"Here the deletion area is {deletion:.2f} against {random_deletion:.2f} for a random order: "
           + ("the map points at pixels the answer rests on." if deletion < random_deletion - 0.005 else
              "the map does no better than chance at finding the pixels the answer rests on."))

if METHODS[method].stochastic:
    st.subheader("Would a second run draw the same map?")
    agreement = second_run_agreement(*identity, step, target, task)
    st.plotly_chart(seed_agreement_figure(agreement, SIMILAR), width="stretch", config={"displayModeBar": False})
    st.caption(agreement_words(method, step, agreement))

st.header("Where the model looks over many tasks")
st.caption(f"{method} maps of the {IMAGE_SETS_SHORT[images]} of many new tasks from the "
           "meta-test data, each explaining the image's true class, averaged: which places the model relies on in "
           "general, before and after adapting. Each image counts equally (its map is taken as shares of its "
           "own total strength).")
columns = st.columns([2, 1], vertical_alignment="bottom")
tasks = int(remembered_number_input(columns[0], "Number of tasks", "saliency_global_tasks", 10, min_value=1,
                                    max_value=200, help="More tasks give a steadier average and take longer."))
wanted = global_key(checkpoint.path, checkpoint.content_hash, steps, lr, layers, method, method_choices, images,
                    tasks, settings.shots, settings.queries)
overall = global_maps(wanted)
if overall is None and columns[1].button(f"Measure on {tasks} tasks", type="primary", key="saliency_global"):
    overall = with_progress_bar(
        lambda progress: global_maps(wanted, lambda done, total: progress(done / total, f"{done} of {total} tasks")),
        "Adapting and explaining the first task…", "The model cannot be measured on new tasks from its data")
if overall is None:
    st.info(f"Press **Measure on {tasks} tasks** to average the {method} maps of {tasks} new tasks.",
            icon=":material/info:")
else:
    st.plotly_chart(global_importance_figure(overall.mean_image, overall.before, overall.after, overall.steps,
                                             float(outlier_perc)), width="stretch", config={"displayModeBar": False})
    st.caption(f"Average over {overall.images} images of {services.plural(overall.tasks, 'task')}, under the grey "
               "of the average image (where the ink usually is). Darker red: a larger share of the maps' strength. "
               "The last map is after minus before: red where the model relies more on a place after adapting, "
               "blue where less.")
