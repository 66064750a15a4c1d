"""Models: a query image's prediction depends on that image alone (DESIGN.md)."""
import pytest
import torch

from metaviz.adaptation import inner_loop
from metaviz.models import ConvNetConfig, MLPConfig, build_model, layer_names


@pytest.mark.parametrize("norm", ["layer", "batch_running", "none"])
def test_query_logits_do_not_depend_on_other_queries(norm):
    torch.manual_seed(0)
    model = build_model(ConvNetConfig(norm=norm))
    queries = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        together = model(queries)
        alone = model(queries[:1])
        replaced = model(torch.cat([queries[:1], torch.rand(9, 1, 28, 28)]))
    assert torch.allclose(together[:1], alone, atol=1e-6)
    assert torch.allclose(together[:1], replaced[:1], atol=1e-6)


@pytest.mark.parametrize("config", [ConvNetConfig(norm="layer"), ConvNetConfig(norm="batch_running"),
                                    ConvNetConfig(norm="none"),
                                    MLPConfig(in_features=784, hidden_sizes=(32, 16), norm="layer")],
                         ids=["conv-layer", "conv-batch-running", "conv-none", "mlp"])
def test_predict_gives_the_forward_pass_logits_without_a_graph(config):
    torch.manual_seed(0)
    model = build_model(config)
    params = {name: value + 0.1 * torch.randn_like(value) for name, value in model.named_parameters()}
    buffers = dict(model.named_buffers())
    images = torch.rand(7, 1, 28, 28)
    predicted = model.predict(params, buffers, images)
    assert not predicted.requires_grad
    assert torch.allclose(predicted, model.functional_forward(params, buffers, images), atol=1e-5)


def test_query_independence_holds_after_adaptation():
    torch.manual_seed(0)
    model = build_model(ConvNetConfig())
    params = dict(model.named_parameters())
    support_x, support_y = torch.rand(5, 1, 28, 28), torch.arange(5)
    final = inner_loop(model, params, {}, support_x, support_y, steps=3, lr=0.4, adapt=tuple(params))[-1]
    queries = torch.rand(5, 1, 28, 28)
    forward = torch.func.functional_call
    with torch.no_grad():
        together = forward(model, final, (queries,))
        alone = forward(model, final, (queries[2:3],))
    assert torch.allclose(together[2:3], alone, atol=1e-6)


def test_layer_names_follow_forward_order():
    assert layer_names(build_model(ConvNetConfig())) == ("conv1", "conv2", "conv3", "conv4", "head")
    assert layer_names(build_model(MLPConfig())) == ("fc1", "fc2", "head")


def test_conv_net_shapes():
    model = build_model(ConvNetConfig(out_features=20))
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 20)
    assert sum(p.numel() for p in model.parameters()) < 200_000  # the paper's small net
