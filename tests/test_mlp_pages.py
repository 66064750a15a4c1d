"""Every page with checkpoints this repository trains in a few iterations here: the MAML paper's
fully connected net (`--model mlp`) and a Reptile conv net. The pages must handle both as they
handle the shipped conv nets: adaptation, saliency (LIME and global importance included),
layers (the many-task measurements included) and task embeddings."""
from pathlib import Path

import pytest

from metaviz.training import TrainConfig, train
from tests.test_app import PAGES, all_text, start, visit
from metaviz import services

SETUPS = {
    "digits-mlp": dict(algorithm="maml", model="mlp"),
    "digits-reptile": dict(algorithm="reptile", train_shots=2, inner_batch=4, outer_lr=0.5),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("checkpoints")
    for name, setup in SETUPS.items():
        config = TrainConfig(dataset="digits", meta_batch=2, queries=2, train_steps=2, test_steps=3, inner_lr=0.2,
                             iterations=3, val_every=3, val_tasks=2, save_every=3, **setup)
        train(config, tmp_path_factory.mktemp(name), out=directory / f"{name}.safetensors", name=name,
              show_progress=False)
    return directory


@pytest.mark.parametrize("name", list(SETUPS))
def test_every_page_works_with_the_checkpoint(trained, monkeypatch, name):
    monkeypatch.setenv(services.CHECKPOINT_DIR_VARIABLE, str(trained))
    app = start(checkpoint=name, queries="1")
    mlp = name == "digits-mlp"
    layers = "fc1" if mlp else "conv1"
    expected = {
        "pages/1_Checkpoint.py": [name, "Algorithm: " + ("MAML" if mlp else "Reptile"),
                                  "fully connected, hidden layers 256-128-64-64" if mlp else "4 convolution blocks"],
        "pages/2_Task.py": ["Classes in this task", "digit"],
        "pages/3_Adaptation.py": ["after 3 steps", "Step by step"],
        "pages/4_Saliency.py": ["What the model looks at in each new image", "deletion area",
                                "Where the model looks over many tasks"],
        "pages/5_Layers.py": ["This task", "moved most", "Many tasks",
                              "unit (neuron) of a fully connected layer" if mlp else "filter of a convolution layer"],
        "pages/6_Task_embeddings.py": ["Tasks number 0 to 199", "Trustworthiness"],
        "pages/7_Sine_waves.py": ["This lesson needs a meta-learned sine-wave model"],  # no sine checkpoint here
    }
    for page in PAGES:
        visit(app, page)
        assert app.selectbox(key="checkpoint_path").value == str(trained / f"{name}.safetensors")
        text = all_text(app)
        for snippet in expected[page]:
            assert snippet in text, f"{page}: {snippet!r} not shown"
        assert not app.error, f"{page}: {[error.value for error in app.error]}"
        assert "Traceback" not in text

    visit(app, "pages/5_Layers.py")
    assert layers in app.get("plotly_chart")[0].proto.spec  # the layers x steps map names this net's layers
    app.slider(key="layers_tasks").set_value(10).run()
    app.button(key="layers_measure").click().run()
    assert not app.exception and not app.error
    assert "How much each layer's view of the new images changes" in all_text(app)

    visit(app, "pages/4_Saliency.py")
    app.selectbox(key="saliency_method").set_value("LIME").run()
    app.number_input(key="saliency_LIME_n_samples_input").set_value(50).run()
    app.number_input(key="saliency_global_tasks_input").set_value(2).run()
    app.button(key="saliency_global").click().run()
    assert not app.exception and not app.error
    text = all_text(app)
    assert "Would a second run draw the same map?" in text and "Average over 10 images of 2 tasks" in text
