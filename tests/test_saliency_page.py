"""The Saliency page through AppTest: each method's settings, maps of the support images as well
as the queries, the chosen class, captum's display conventions, and the trust panel's words.

(The walk through method, step and the randomisation button is in tests/test_app.py.)
"""
import json

import pytest

from metaviz.explain import KNOBS, METHODS
from tests.test_app import all_text, checkpoint_dir, start, visit, write_checkpoint  # noqa: F401 (fixture)

PAGE = "pages/4_Saliency.py"


@pytest.fixture
def app(checkpoint_dir):  # noqa: F811 (the fixture imported above)
    write_checkpoint(checkpoint_dir)
    return visit(start(), PAGE)


def maps_figure(app) -> str:
    return app.get("plotly_chart")[0].proto.spec


def settle(app):
    assert not app.exception, app.exception
    assert not app.error, [element.value for element in app.error]
    return app


def test_every_method_shows_its_own_settings(app):
    for method, entry in METHODS.items():
        settle(app.selectbox(key="saliency_method").set_value(method).run())
        shown = {key for key in (widget.key for widget in list(app.selectbox) + list(app.number_input))
                 if key.startswith(f"saliency_{method}_")}
        assert shown == {f"saliency_{method}_{knob}_input" for knob in entry.knobs}, method
        if not entry.knobs:
            assert f"{method} has no settings to choose." in all_text(app)


def test_integrated_gradients_settings_change_the_map_and_are_remembered(app):
    settle(app.selectbox(key="saliency_method").set_value("Integrated Gradients").run())
    black = maps_figure(app)
    assert "between a black page and the image" in all_text(app)
    app.selectbox(key="saliency_Integrated Gradients_baseline_input").set_value("blurred")
    app.number_input(key="saliency_Integrated Gradients_n_steps_input").set_value(16)
    settle(app.run())
    assert maps_figure(app) != black
    assert "between a blurred copy of the image and the image" in all_text(app)

    settle(app.selectbox(key="saliency_method").set_value("Saliency").run())
    settle(app.selectbox(key="saliency_method").set_value("Integrated Gradients").run())
    assert app.selectbox(key="saliency_Integrated Gradients_baseline_input").value == "blurred"
    assert app.number_input(key="saliency_Integrated Gradients_n_steps_input").value == 16


def test_occlusion_window_and_smoothgrad_noise_change_the_map(app):
    settle(app.selectbox(key="saliency_method").set_value("Occlusion").run())
    square = maps_figure(app)
    settle(app.number_input(key="saliency_Occlusion_window_input").set_value(7).run())
    assert maps_figure(app) != square
    settle(app.selectbox(key="saliency_method").set_value("SmoothGrad").run())
    noisy = maps_figure(app)
    settle(app.number_input(key="saliency_SmoothGrad_noise_input").set_value(0.4).run())
    assert maps_figure(app) != noisy


def test_support_images_are_explained_too(app):
    assert app.radio(key="saliency_images").value == "query"
    queries = maps_figure(app)
    assert queries.count('"type":"image"') == 3 * 25  # 5 classes x 5 new images, three rows each
    settle(app.radio(key="saliency_images").set_value("support").run())
    assert maps_figure(app).count('"type":"image"') == 3 * 5  # one example per class
    assert "What the model looks at in each example" in all_text(app)
    layout = json.loads(maps_figure(app))["layout"]
    labels = [axis["title"]["text"] for name, axis in layout.items()
              if name.startswith("xaxis") and axis["title"]["text"]]  # the difference row has none
    assert len(labels) == 2 * 5 and all(("✓" in label) != ("✗" in label) for label in labels)  # right or wrong
    assert "Each column is one example the model learns from" in all_text(app)
    settle(app.button(key="saliency_randomise").click().run())
    verdicts = [element.value for element in list(app.success) + list(app.warning)]
    assert len(verdicts) == 1 and verdicts[0].startswith("Verdict for Saliency: ")


def test_a_chosen_class_and_captums_sign_conventions(app):
    predicted = maps_figure(app)
    settle(app.radio(key="saliency_explain").set_value("A class I choose").run())
    settle(app.selectbox(key="saliency_class").set_value(4).run())
    assert "the maps explain the class digit" in all_text(app)
    assert maps_figure(app) != predicted
    settle(app.selectbox(key="saliency_method").set_value("Integrated Gradients").run())
    shown = {}
    for sign in ("absolute_value", "positive", "negative", "all"):
        shown[sign] = maps_figure(settle(app.selectbox(key="saliency_sign").set_value(sign).run()))
    assert len(set(shown.values())) == 4  # each convention draws a different picture
    settle(app.number_input(key="saliency_outliers").set_value(10.0).run())
    assert maps_figure(app) != shown["all"]


def test_gradient_shap_completeness_is_read_on_average(app):
    settle(app.selectbox(key="saliency_method").set_value("GradientSHAP").run())
    text = all_text(app)
    assert "on average over its random noisy paths" in text and "they add up within 1% for" in text


def test_knobs_name_real_settings_with_their_defaults_in_range():
    for method in METHODS.values():
        for name in method.knobs:
            knob, default = KNOBS[name], method.defaults[name]
            if knob.choices is not None:
                assert default in knob.choices, (method.name, name)
            else:
                assert knob.low <= default <= knob.high, (method.name, name)


def test_completeness_words_separate_faint_scores_from_real_misses():
    import numpy as np

    from metaviz.explain import Attribution
    from pages._saliency import completeness_words

    def words(completeness, change, **settings):
        attribution = Attribution("Integrated Gradients", 2, np.zeros(3), np.zeros((3, 1, 2, 2)), None,
                                  {"baseline": "black", **settings}, np.array(completeness), np.array(change))
        return completeness_words("Integrated Gradients", attribution, 2)

    assert words([0.001, 0.004, 0.009], [2.0, 0.1, 3.0]).endswith("they add up within 1% for 3 of 3 images.")
    text = words([0.005, 0.2, 0.03], [2.0, 0.1, 3.0], baseline="blurred")
    assert "within 1% for 1 of 3 images" in text
    assert "1 of the 2 that miss is an image whose score barely changes between a blurred copy" in text
    assert "the worst misses by 3%" in text
    text = words([0.005, 0.2], [2.0, -0.3])
    assert "The one that misses is an image whose score barely changes" in text
    assert "worst" not in text  # the only miss is on a faint score
    assert "All 2 that miss are images" in words([0.005, 0.2, 0.3], [2.0, -0.3, 0.1])
