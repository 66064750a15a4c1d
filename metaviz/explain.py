"""Saliency maps of the adapted model at any inner-loop step, and the checks that say whether
a map can be trusted.

Every captum method is reached through one registry (`METHODS`) and one call,
`attribute(checkpoint, trace, step, method, inputs, target)`. The adapted model is the step's
parameter dict run through the model's own `functional_forward`; nothing is mutated.

Trust check 1 lives here, because IG uses it to refine its integral:
- `completeness_error`: do the attributions add up to the change in the model's output?
The other two (randomisation test, deletion/insertion curves) are in metaviz.trust.

captum is imported when a method first runs, not with this module: the dashboard lists the
methods and their settings (`METHODS`, `KNOBS`) without paying for captum's import.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from metaviz.adaptation import AdaptationTrace
from metaviz.checkpoints import Checkpoint
from metaviz.explain_sampled import PATCH, kernel_shap, lime

BLUR_SIGMA = 3.0  # pixels; wide enough on 28x28 strokes that no stroke shape survives
# logits: a target score that moves less than this between baseline and image has little to
# explain, and a relative completeness error divides by almost nothing there
FAINT_CHANGE = 0.5


# --- the adapted model as a module ---------------------------------------------------------

class _ReluThroughModules(TorchFunctionMode):
    """Routes the i-th `F.relu` of a forward pass through the i-th `nn.ReLU` module.

    Guided Backprop and DeepLift change how gradients pass ReLUs by hooking `nn.ReLU`
    modules; the models call `F.relu`, which no hook sees. Intercepting the call (instead of
    re-writing the forward with modules) keeps one forward pass: the model's own.
    """

    def __init__(self, relus: nn.ModuleList):
        super().__init__()
        self.relus, self.used = relus, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.relu and not kwargs.get("inplace", False) and len(args) == 1:
            if self.used >= len(self.relus):
                raise RuntimeError(f"the forward pass applied more than {len(self.relus)} ReLUs")
            module = self.relus[self.used]
            self.used += 1
            return module(args[0])  # the mode is paused inside this handler: no recursion
        return func(*args, **kwargs)


class AdaptedNetwork(nn.Module):
    """The model with one step's parameters, as the nn.Module captum's hooks need.

    Parameters are plain tensors (not nn.Parameters), so captum differentiates with respect to
    the inputs only and nothing can update them; the checkpoint's model is never touched.
    Every ReLU is its own module: captum's hooks must see each nonlinearity once.
    """

    def __init__(self, model: nn.Module, params: dict, buffers: dict, relu_count: int):
        super().__init__()
        self.functional_forward = model.functional_forward  # a bound method, not a submodule
        self.params, self.fixed_buffers = params, buffers
        self.relus = nn.ModuleList(nn.ReLU() for _ in range(relu_count))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with _ReluThroughModules(self.relus):
            return self.functional_forward(self.params, self.fixed_buffers, x)


def network_for(checkpoint: Checkpoint, params: dict, buffers: dict | None = None,
                model: nn.Module | None = None) -> AdaptedNetwork:
    """`params` (any step's, or randomised ones) run through the checkpoint's model."""
    config = checkpoint.model_config
    relus = config.get("blocks", 4) if config.get("kind", "conv") == "conv" else len(config["hidden_sizes"])
    buffers = checkpoint.buffers if buffers is None else buffers
    return AdaptedNetwork(model or checkpoint.build_model(), params, buffers, relus).eval()


# --- baselines and the registry ------------------------------------------------------------

def _captum(name: str):
    import captum.attr  # lazily: see the module docstring

    return getattr(captum.attr, name)


def baseline_images(inputs: torch.Tensor, kind: str = "black") -> torch.Tensor:
    """The "absence of signal" an attribution is measured against.

    - "black": all zeros. The images are bright strokes on a dark background, so black is the
      empty page: attributions answer "what did the strokes contribute?".
    - "blurred": each image blurred (Gaussian, sigma BLUR_SIGMA px). Keeps where the ink is
      and how much of it, removes the stroke shapes: attributions answer "what did the
      shape, beyond a smudge of ink in that place, contribute?".
    """
    if kind == "black":
        return torch.zeros_like(inputs)
    if kind == "blurred":
        sigma = (0,) * (inputs.dim() - 2) + (BLUR_SIGMA, BLUR_SIGMA)
        blurred = gaussian_filter(inputs.detach().cpu().numpy(), sigma=sigma, mode="constant", cval=0.0)
        return torch.from_numpy(blurred).to(inputs)
    raise ValueError(f"unknown baseline {kind!r}; choose 'black' or 'blurred'")


class Computed(NamedTuple):
    values: torch.Tensor
    delta: torch.Tensor | None = None  # captum's convergence delta, one per image
    baselines: torch.Tensor | None = None  # the one baseline per image completeness refers to
    notes: dict | None = None  # what the method decided while running (e.g. steps used per image)


@dataclass(frozen=True)
class AttributionMethod:
    name: str
    compute: Callable[..., Computed]  # (network, inputs, targets, **settings) -> Computed
    defaults: dict = field(default_factory=dict)
    stochastic: bool = False  # draws noise: seeded, so the same call gives the same map
    summary: str = ""  # one sentence a clinician can read
    knobs: tuple[str, ...] = ()  # the settings a user may change (see KNOBS); the rest stay at their defaults


def _gradient_based(captum_method: str) -> Callable[..., Computed]:
    """Saliency, Input x Gradient, Guided Backprop: one backward pass, no baseline."""
    return lambda network, inputs, targets, **settings: Computed(
        _captum(captum_method)(network).attribute(inputs, target=targets, **settings))


def _integrated_gradients(network, inputs, targets, baseline, n_steps, rule, refine_to, max_steps):
    """IG, then images whose completeness error exceeds `refine_to` are recomputed with twice
    the steps until it holds or `max_steps` is reached. ReLU kinks along the path make the
    integrand rough, so a fixed step count that suits most images misses on a few; refining
    only those keeps the common case fast. Each image is refined on its own error, so a batch
    still gives the same maps as one image at a time.

    The error allowed is `refine_to` of the score's change, but never less than `refine_to` of
    FAINT_CHANGE: where the score barely moves, a relative error divides by almost nothing and
    chasing it cost up to 800 steps for a map with nothing to show (the reported relative
    error stays what it is; the page says when an image's change is faint)."""
    baselines = baseline_images(inputs, baseline)
    integrated_gradients = _captum("IntegratedGradients")(network)
    values, delta = integrated_gradients.attribute(
        inputs, baselines, target=targets, n_steps=n_steps, method=rule, return_convergence_delta=True)
    values, delta = values.detach().clone(), delta.detach().clone()
    steps_used, steps = torch.full((len(inputs),), n_steps), n_steps
    change = score_change(network, inputs.detach(), baselines, targets) if refine_to is not None else None
    while refine_to is not None and steps * 2 <= max_steps:
        missing = (values.flatten(1).sum(1) - change).abs()
        unfinished = missing > refine_to * change.abs().clamp_min(FAINT_CHANGE)
        if not unfinished.any():
            break
        steps *= 2
        refined, refined_delta = integrated_gradients.attribute(
            inputs.detach()[unfinished], baselines[unfinished], target=targets[unfinished], n_steps=steps,
            method=rule, return_convergence_delta=True)
        values[unfinished], delta[unfinished] = refined.detach(), refined_delta.detach()
        steps_used[unfinished] = steps
    return Computed(values, delta, baselines, {"steps_used": steps_used.tolist()})


def _smoothgrad(network, inputs, targets, samples, noise, abs):
    values = _captum("NoiseTunnel")(_captum("Saliency")(network)).attribute(
        inputs, nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=samples, stdevs=noise,
        target=targets, abs=abs)
    return Computed(values)


def _gradient_shap(network, inputs, targets, samples, noise):
    baselines = torch.zeros_like(inputs[:1])  # one black page; the noise spreads the paths
    values, delta = _captum("GradientShap")(network).attribute(
        inputs, baselines, n_samples=samples, stdevs=noise, target=targets, return_convergence_delta=True)
    # deltas come ordered image by image, `samples` each; completeness holds only on average
    return Computed(values, delta.reshape(len(inputs), samples).mean(1))


def _deeplift(network, inputs, targets, baseline):
    baselines = baseline_images(inputs, baseline)
    values, delta = _captum("DeepLift")(network).attribute(inputs, baselines, target=targets, return_convergence_delta=True)
    return Computed(values, delta, baselines)


def _occlusion(network, inputs, targets, window, stride):
    channels = inputs.shape[1]
    values = _captum("Occlusion")(network).attribute(
        inputs, sliding_window_shapes=(channels, window, window), strides=(channels, stride, stride),
        baselines=0.0, target=targets, perturbations_per_eval=64)
    return Computed(values)


@dataclass(frozen=True)
class Knob:
    """One method setting as a user meets it: plain words, and either a few named choices
    (value -> label) or a number between `low` and `high` in steps of `step`."""

    label: str
    help: str
    choices: dict | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None


KNOBS: dict[str, Knob] = {
    "baseline": Knob("Compare the image with", "What 'no evidence' looks like. A black page asks what the strokes "
                     "contributed; a blurred copy asks what their shape contributed beyond a smudge of ink there.",
                     choices={"black": "a black page", "blurred": "a blurred copy of the image"}),
    "n_steps": Knob("Steps from the baseline to the image", "How finely the fade-in is sampled. More steps: "
                    "the shares add up more exactly, and it takes longer.", low=8, high=200, step=1),
    "rule": Knob("How the steps are placed", "Gauss–Legendre places the steps so that the sum is exact for smooth "
                 "changes; the trapezoid rule spaces them evenly (needs more steps for the same accuracy).",
                 choices={"gausslegendre": "Gauss–Legendre", "riemann_trapezoid": "evenly (trapezoid)"}),
    "refine_to": Knob("Images whose shares miss by more than 1%", "Recompute them with twice the steps, "
                      "again if needed, up to 800 steps.",
                      choices={0.01: "recompute with more steps", None: "leave as they are"}),
    "samples": Knob("Noisy copies per image", "How many noisy copies are averaged. More: a steadier map, "
                    "and it takes longer.", low=2, high=64, step=1),
    "noise": Knob("Noise strength", "Spread of the noise added to each pixel, as a share of the brightness "
                  "range (0 to 1).", low=0.0, high=0.5, step=0.05),
    "window": Knob("Size of the covering square (pixels)", "Larger squares hide whole stroke parts; smaller ones "
                   "find single pixels but miss evidence spread over a region.", low=2, high=10, step=1),
    "stride": Knob("Square moves by (pixels)", "1 tries every position; 2 is four times faster.", low=1, high=2,
                   step=1),
    "n_samples": Knob("Copies per image", "How many copies, each with random pieces hidden, the model scores. More: "
                      "a steadier map (see the agreement of two runs below), and it takes longer.",
                      low=50, high=2000, step=50),
    "patch": Knob("Piece size", "The image is cut into square pieces that are shown or hidden together.",
                  choices={2: "2 × 2 pixels (196 pieces)", 4: "4 × 4 pixels (49 pieces)", 7: "7 × 7 pixels (16 pieces)"}),
}

METHODS: dict[str, AttributionMethod] = {method.name: method for method in (
    AttributionMethod("Saliency", _gradient_based("Saliency"), {"abs": True},
                      summary="How much a tiny change of each pixel would change the score."),
    AttributionMethod("Integrated Gradients", _integrated_gradients,
                      {"baseline": "black", "n_steps": 50, "rule": "gausslegendre",
                       "refine_to": 0.01, "max_steps": 800},
                      summary="Each pixel's share of the score, found by fading the image in from a baseline.",
                      knobs=("baseline", "n_steps", "rule", "refine_to")),
    AttributionMethod("SmoothGrad", _smoothgrad, {"samples": 16, "noise": 0.15, "abs": True}, stochastic=True,
                      summary="Saliency averaged over noisy copies of the image, which removes speckle.",
                      knobs=("samples", "noise")),
    AttributionMethod("GradientSHAP", _gradient_shap, {"samples": 16, "noise": 0.1}, stochastic=True,
                      summary="Integrated Gradients averaged over random noisy paths from a black page.",
                      knobs=("samples", "noise")),
    AttributionMethod("Input × Gradient", _gradient_based("InputXGradient"),
                      summary="Pixel brightness times its saliency: only inked pixels can matter."),
    AttributionMethod("Guided Backprop", _gradient_based("GuidedBackprop"),
                      summary="Saliency that keeps only positive evidence at every layer; sharp, "
                              "but known to show edges even of a random model."),
    AttributionMethod("DeepLift", _deeplift, {"baseline": "black"},
                      summary="Each pixel's share of the change from a baseline, in one backward pass.",
                      knobs=("baseline",)),
    AttributionMethod("Occlusion", _occlusion, {"window": 4, "stride": 2},
                      summary="How much the score drops when a small black square covers each place.",
                      knobs=("window", "stride")),
    AttributionMethod("LIME", lime, {"baseline": "black", "n_samples": 200, "patch": PATCH}, stochastic=True,
                      summary="A simple model fitted to the scores of copies with random pieces hidden: "
                              "what each piece adds.", knobs=("n_samples", "patch", "baseline")),
    AttributionMethod("Kernel SHAP", kernel_shap, {"baseline": "black", "n_samples": 200, "patch": PATCH},
                      stochastic=True, summary="Each piece's fair share of the score (Shapley value), estimated "
                                               "from copies with random pieces hidden.",
                      knobs=("n_samples", "patch", "baseline")),
)}


# --- attribute ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Attribution:
    method: str
    step: int
    targets: np.ndarray  # [N] the class each map explains
    values: np.ndarray  # shaped like the inputs, [N, 1, 28, 28]
    convergence_delta: np.ndarray | None  # [N] captum's Σattr − (f(x) − f(b)); None without one
    settings: dict  # the method's settings after defaults (baseline, n_steps, seed, ...)
    completeness: np.ndarray | None = None  # [N] relative completeness error, see completeness_error
    score_change: np.ndarray | None = None  # [N] f(x) − f(baseline) of the target logit, what the map should add up to
    probabilities: np.ndarray | None = None  # [N, classes] the model's answer for each image at `step`


def as_images(inputs) -> torch.Tensor:
    return torch.as_tensor(inputs, dtype=torch.float32).detach().clone()  # ours to set requires_grad on


def method_named(method: str | AttributionMethod) -> AttributionMethod:
    if isinstance(method, AttributionMethod):
        return method
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    return METHODS[method]


def resolved_settings(method: AttributionMethod, settings: dict) -> dict:
    known = set(method.defaults) | {"seed"}
    unknown = set(settings) - known
    if unknown:
        raise ValueError(f"{method.name} has no settings {sorted(unknown)}; it takes {sorted(known)}")
    return {**method.defaults, "seed": 0, **settings} if method.stochastic else {**method.defaults, **settings}


def run_method(method: AttributionMethod, network: AdaptedNetwork, inputs: torch.Tensor, targets: torch.Tensor,
         settings: dict) -> Computed:
    arguments = {key: value for key, value in settings.items() if key != "seed"}
    numpy_state = np.random.get_state()  # GradientShap draws from numpy's global generator
    try:
        with warnings.catch_warnings(), torch.random.fork_rng():
            # captum announces every hook it sets on the ReLUs; the user needs none of that
            warnings.filterwarnings("ignore", message=".*(hooks|required_grads|multiple inputs).*")
            torch.manual_seed(settings.get("seed", 0))  # stochastic methods: same call, same map
            np.random.seed(settings.get("seed", 0))
            return method.compute(network, inputs.requires_grad_(), targets, **arguments)
    finally:
        np.random.set_state(numpy_state)


def attribute(checkpoint: Checkpoint, trace: AdaptationTrace, step: int, method: str | AttributionMethod,
              inputs, target=None, model: nn.Module | None = None, **settings) -> Attribution:
    """Attributions of `inputs` (query or support images) by the model adapted for `step` steps.

    `target`: None explains each image's predicted class at that step; an int explains that
    class for every image; a sequence gives one class per image. All images go through
    captum in one batched call (each image's prediction depends on that image alone).
    """
    method = method_named(method)
    settings = resolved_settings(method, settings)
    inputs = as_images(inputs)
    network = network_for(checkpoint, trace.params[step], trace.buffers, model)
    with torch.no_grad():
        probabilities = network(inputs).softmax(-1)
    if target is None:
        targets = probabilities.argmax(-1)
    else:
        targets = torch.as_tensor(target, dtype=torch.long).expand(len(inputs)).clone()
    computed = run_method(method, network, inputs, targets, settings)
    values = computed.values.detach()
    delta = None if computed.delta is None else computed.delta.detach()
    if computed.baselines is not None:
        change = score_change(network, inputs.detach(), computed.baselines, targets)
    elif delta is not None:
        # no single baseline (GradientSHAP averages noisy paths): captum's delta is
        # Σ attributions − (mean change along those paths), which gives the change back
        change = values.flatten(1).sum(1) - delta
    else:
        change = None
    return Attribution(
        method=method.name, step=step, targets=targets.numpy(), values=values.numpy(),
        convergence_delta=None if delta is None else delta.numpy(),
        settings={**settings, **(computed.notes or {})},
        completeness=None if change is None else relative_miss(values, change),
        score_change=None if change is None else change.numpy(), probabilities=probabilities.numpy(),
    )


# --- trust check 1: completeness ------------------------------------------------------------

def score_change(forward: Callable, inputs, baselines, targets) -> torch.Tensor:
    """f(x) − f(baseline) per image, f = the target class's logit."""
    inputs, baselines = (torch.as_tensor(a, dtype=torch.float32) for a in (inputs, baselines))
    targets = torch.as_tensor(targets, dtype=torch.long)
    with torch.no_grad():
        return (forward(inputs) - forward(baselines)).gather(1, targets[:, None])[:, 0]


def relative_miss(attributions, change: torch.Tensor) -> np.ndarray:
    """|Σ attributions − change| / |change| per image."""
    missing = torch.as_tensor(attributions, dtype=torch.float32).flatten(1).sum(1) - change
    return (missing.abs() / change.abs().clamp_min(1e-12)).numpy()


def completeness_error(forward: Callable, inputs, baselines, attributions, targets) -> np.ndarray:
    """|Σ attributions − (f(x) − f(baseline))| / |f(x) − f(baseline)| per image, f = target logit.

    Integrated Gradients and DeepLift promise that attributions add up to the change in the
    score between baseline and image; this measures how far they miss, as a fraction. Where
    the score barely moves (|change| well under one logit) the fraction divides by almost
    nothing: read it together with the change (`Attribution.score_change`).
    """
    return relative_miss(attributions, score_change(forward, inputs, baselines, targets))
