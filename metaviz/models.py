"""The networks metaviz adapts: the MAML paper's 4-block conv net and a ReLU MLP.

A model is rebuilt from a plain dict (its config), so a checkpoint carries the arguments
that rebuild it. Every normalisation here keeps a query image's prediction a function of
that image alone (see DESIGN.md): per-image layer normalisation for the models metaviz
trains, and running statistics (never batch statistics) for imported BatchNorm models.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from metaviz.layer_names import layer_of

NORMS = ("layer", "batch_running", "none")


@dataclass(frozen=True)
class ConvNetConfig:
    """4 x [conv 3x3 (stride 2) -> norm -> ReLU], spatial mean, linear head (Finn et al. 2017)."""

    out_features: int = 5  # ways
    in_channels: int = 1
    hidden: int = 64  # filters per conv block
    blocks: int = 4  # 28 -> 14 -> 7 -> 4 -> 2 with stride 2
    norm: str = "layer"  # per-image; "batch_running" only for imported BatchNorm weights
    kind: str = field(default="conv", init=False)


@dataclass(frozen=True)
class MLPConfig:
    """Fully connected ReLU net; (40, 40) with 1 input is the MAML paper's sinusoid model.

    The MAML paper's Omniglot MLP is (256, 128, 64, 64) on the flattened 28x28 image, with
    batch norm after every hidden layer; here "layer" normalises each image's hidden units on
    their own (per-image, as the conv net does), so a prediction never depends on the batch.
    """

    out_features: int = 1
    in_features: int = 1
    hidden_sizes: tuple[int, ...] = (40, 40)
    norm: str = "none"  # "layer": per-image normalisation after every hidden layer (image MLPs)
    kind: str = field(default="mlp", init=False)


OMNIGLOT_MLP_SIZES = (256, 128, 64, 64)  # Finn et al. 2017, sec. 5.2


class LayerNorm2d(nn.Module):
    """Holds the per-channel (conv) or per-unit (MLP) scale and shift of a per-image normalisation."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))


class ConvBlock(nn.Module):
    """Holds one block's parameters; ConvNet.functional_forward does the computing."""

    def __init__(self, in_channels: int, out_channels: int, norm: str):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        if norm == "layer":
            self.norm = LayerNorm2d(out_channels)
        elif norm == "batch_running":
            self.norm = nn.BatchNorm2d(out_channels)


class ConvNet(nn.Module):
    """The forward pass is a pure function of parameter dicts (`functional_forward`), so the
    inner loop needs no module swapping: calling the ops directly is measurably faster than
    torch.func.functional_call for a net this small."""

    def __init__(self, config: ConvNetConfig):
        super().__init__()
        if config.norm not in NORMS:
            raise ValueError(f"unknown norm {config.norm!r}; choose one of {NORMS}")
        self.norm = config.norm
        channels = [config.in_channels] + [config.hidden] * config.blocks
        self.blocks = nn.Sequential(
            *(ConvBlock(c_in, c_out, config.norm) for c_in, c_out in zip(channels, channels[1:]))
        )
        self.head = nn.Linear(config.hidden, config.out_features)

    def _block(self, index: int, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        prefix = f"blocks.{index}."
        x = F.conv2d(x, params[prefix + "conv.weight"], params[prefix + "conv.bias"], stride=2, padding=1)
        if self.norm == "layer":
            x = F.group_norm(x, 1, params[prefix + "norm.weight"], params[prefix + "norm.bias"], eps=1e-5)
        elif self.norm == "batch_running":  # running statistics: never the batch's own
            x = F.batch_norm(x, buffers[prefix + "norm.running_mean"], buffers[prefix + "norm.running_var"],
                             params[prefix + "norm.weight"], params[prefix + "norm.bias"], training=False, eps=1e-5)
        return F.relu(x)

    def functional_forward(self, params: dict, buffers: dict, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """The logits for input images `x`; with `start` = j, `x` is instead the output of block j
        (j blocks already applied), so a frozen prefix of blocks is computed once, not every step."""
        for index in range(start, len(self.blocks)):
            x = self._block(index, params, buffers, x)
        return F.linear(x.mean(dim=(2, 3)), params["head.weight"], params["head.bias"])

    @torch.no_grad()
    def predict(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        """functional_forward's logits without autograd, in channels-last memory: oneDNN's faster
        layout for these small convolutions (30 images 3.2-3.5 -> 2.9 ms, one thread of this CPU);
        the same numbers within float32 rounding."""
        params = {name: value.contiguous(memory_format=torch.channels_last) if value.dim() == 4 else value
                  for name, value in params.items()}
        return self.functional_forward(params, buffers, x.contiguous(memory_format=torch.channels_last))

    def functional_layer_outputs(self, params: dict, buffers: dict, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every layer's output for `x` ('conv1'..'convN' after ReLU, 'head' the logits): the
        representations that representation-similarity measures such as CKA compare."""
        outputs = {}
        for index in range(len(self.blocks)):
            x = outputs[f"conv{index + 1}"] = self._block(index, params, buffers, x)
        outputs["head"] = F.linear(x.mean(dim=(2, 3)), params["head.weight"], params["head.bias"])
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.functional_forward(dict(self.named_parameters()), dict(self.named_buffers()), x)


class MLP(nn.Module):
    """Linear -> (per-image norm) -> ReLU per hidden layer, then a linear head. Parameter names
    `layers.i.*` (the linear maps) and `norms.i.*` (their normalisation) both belong to fc{i+1}."""

    def __init__(self, config: MLPConfig):
        super().__init__()
        if config.norm not in ("layer", "none"):
            raise ValueError(f"unknown MLP norm {config.norm!r}; choose 'layer' or 'none'")
        sizes = [config.in_features, *config.hidden_sizes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        if config.norm == "layer":
            self.norms = nn.ModuleList(LayerNorm2d(size) for size in config.hidden_sizes)
        self.head = nn.Linear(sizes[-1], config.out_features)
        self.norm = config.norm

    def _hidden(self, index: int, params: dict, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, params[f"layers.{index}.weight"], params[f"layers.{index}.bias"])
        if self.norm == "layer":
            x = F.layer_norm(x, x.shape[-1:], params[f"norms.{index}.weight"], params[f"norms.{index}.bias"], eps=1e-5)
        return F.relu(x)

    def functional_layer_outputs(self, params: dict, buffers: dict, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every layer's output for `x` ('fc1'.. after ReLU, 'head' the outputs)."""
        outputs = {}
        x = x.flatten(1)
        for index in range(len(self.layers)):
            x = outputs[f"fc{index + 1}"] = self._hidden(index, params, x)
        outputs["head"] = F.linear(x, params["head.weight"], params["head.bias"])
        return outputs

    def functional_forward(self, params: dict, buffers: dict, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """The outputs for inputs `x`; with `start` = j, `x` is the output of hidden layer j."""
        x = x.flatten(1) if start == 0 else x
        for index in range(start, len(self.layers)):
            x = self._hidden(index, params, x)
        return F.linear(x, params["head.weight"], params["head.bias"])

    @torch.no_grad()
    def predict(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        """functional_forward's outputs without autograd (as ConvNet.predict)."""
        return self.functional_forward(params, buffers, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.functional_forward(dict(self.named_parameters()), {}, x)


def model_config_from_dict(config: dict) -> ConvNetConfig | MLPConfig:
    values = {key: value for key, value in config.items() if key != "kind"}
    kind = config.get("kind", "conv")
    if kind == "conv":
        return ConvNetConfig(**values)
    if kind == "mlp":
        values["hidden_sizes"] = tuple(values.get("hidden_sizes", MLPConfig.hidden_sizes))
        return MLPConfig(**values)
    raise ValueError(f"unknown model kind {kind!r}; expected 'conv' or 'mlp'")


def model_config_to_dict(config: ConvNetConfig | MLPConfig) -> dict:
    values = asdict(config)
    if "hidden_sizes" in values:
        values["hidden_sizes"] = list(values["hidden_sizes"])
    return values


def build_model(config: dict | ConvNetConfig | MLPConfig) -> nn.Module:
    """The model in eval mode: imported BatchNorm layers then use running statistics."""
    if isinstance(config, dict):
        config = model_config_from_dict(config)
    model = ConvNet(config) if isinstance(config, ConvNetConfig) else MLP(config)
    return model.eval()


def layer_names(model: nn.Module) -> tuple[str, ...]:
    """Layers in forward order, e.g. ('conv1', 'conv2', 'conv3', 'conv4', 'head')."""
    names: list[str] = []
    for name, _ in model.named_parameters():
        layer = layer_of(name)
        if layer not in names:
            names.append(layer)
    return tuple(names)
