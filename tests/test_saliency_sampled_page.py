"""The Saliency page's sampling methods (LIME, Kernel SHAP: their settings and the agreement of
two runs) and its global importance over many tasks, through AppTest."""
import pytest

from tests.test_app import all_text, checkpoint_dir, start, visit, write_checkpoint  # noqa: F401 (fixture)
from tests.test_saliency_page import settle

PAGE = "pages/4_Saliency.py"


@pytest.fixture
def app(checkpoint_dir):  # noqa: F811 (the fixture imported above)
    write_checkpoint(checkpoint_dir)
    return visit(start(queries="1"), PAGE)  # 5 new images: quick maps


@pytest.mark.parametrize("method", ["LIME", "Kernel SHAP"])
def test_sampling_methods_show_their_settings_and_how_well_two_runs_agree(app, method):
    assert "Would a second run draw the same map?" not in all_text(app)  # Saliency draws no samples
    settle(app.selectbox(key="saliency_method").set_value(method).run())
    first = app.get("plotly_chart")[0].proto.spec
    settle(app.number_input(key=f"saliency_{method}_n_samples_input").set_value(50).run())
    assert app.get("plotly_chart")[0].proto.spec != first  # fewer samples, another map
    assert app.selectbox(key=f"saliency_{method}_patch_input").value == 4
    text = all_text(app)
    assert "Would a second run draw the same map?" in text and "Median" in text and "lowest" in text
    assert len(app.get("plotly_chart")) == 3  # maps, agreement of two runs, deletion/insertion
    if method == "Kernel SHAP":
        assert "they add up within 1% for" in text
    else:
        assert "LIME makes no promise that its map adds up" in text


def test_global_importance_is_measured_on_request_with_progress_and_kept(app):
    assert "Where the model looks over many tasks" in all_text(app)
    charts = len(app.get("plotly_chart"))
    assert "Press **Measure on 10 tasks**" in all_text(app)
    settle(app.number_input(key="saliency_global_tasks_input").set_value(2).run())
    settle(app.button(key="saliency_global").click().run())
    assert len(app.get("plotly_chart")) == charts + 1
    assert "Average over 10 images of 2 tasks" in all_text(app)  # 5 classes x 1 new image x 2 tasks
    visit(app, "pages/3_Adaptation.py")
    visit(app, PAGE)  # the number of tasks is remembered, the result kept: shown without pressing again
    assert "Average over 10 images of 2 tasks" in all_text(app)


def test_agreement_words_grade_how_steady_a_sampled_map_is():
    from pages._saliency import agreement_words

    assert "the map is steady" in agreement_words("LIME", 3, [0.9, 0.85, 0.7])
    middling = agreement_words("LIME", 3, [0.6, 0.65, 0.4])
    assert "the broad picture holds" in middling and "Median 0.60, lowest 0.40" in middling
    assert "much of the map is sampling noise" in agreement_words("Kernel SHAP", 1, [0.2, 0.3, 0.6])
