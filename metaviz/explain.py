"""Saliency maps of the adapted model at any inner-loop step, and the checks that say whether
a map can be trusted.

Every captum method is reached through one registry (`METHODS`) and one call,
`attribute(checkpoint, trace, step, method, inputs, target)`. The adapted model is the step's
parameter dict run through the model's own `functional_forward`; nothing is mutated.

Three trust checks, each a function of arrays and a forward function:
- `completeness_error`: do the attributions add up to the change in the model's output?
- `randomisation_test` (Adebayo et al. 2018): does the map change when the learned weights
  are replaced by random ones? If not, it shows the image, not the model.
- `deletion_insertion_curves` (Petsiuk et al. 2018): does removing the pixels the map calls
  important destroy the prediction faster than removing random pixels?
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from captum.attr import (DeepLift, GradientShap, GuidedBackprop, InputXGradient, IntegratedGradients,
                         NoiseTunnel, Occlusion, Saliency)
from scipy.ndimage import gaussian_filter
from scipy.stats import rankdata
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from metaviz.adaptation import AdaptationTrace
from metaviz.checkpoints import Checkpoint
from metaviz.models import build_model, layer_of

BLUR_SIGMA = 3.0  # pixels; wide enough on 28x28 strokes that no stroke shape survives


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


def _gradient_based(captum_method) -> Callable[..., Computed]:
    """Saliency, Input x Gradient, Guided Backprop: one backward pass, no baseline."""
    return lambda network, inputs, targets, **settings: Computed(
        captum_method(network).attribute(inputs, target=targets, **settings))


def _integrated_gradients(network, inputs, targets, baseline, n_steps, rule, refine_to, max_steps):
    """IG, then images whose relative completeness error exceeds `refine_to` are recomputed
    with twice the steps until it holds or `max_steps` is reached. ReLU kinks along the path
    make the integrand rough, so a fixed step count that suits most images misses on a few;
    refining only those keeps the common case fast. Each image is refined on its own error,
    so a batch still gives the same maps as one image at a time."""
    baselines = baseline_images(inputs, baseline)
    integrated_gradients = IntegratedGradients(network)
    values, delta = integrated_gradients.attribute(
        inputs, baselines, target=targets, n_steps=n_steps, method=rule, return_convergence_delta=True)
    values, delta = values.detach().clone(), delta.detach().clone()
    steps_used, steps = torch.full((len(inputs),), n_steps), n_steps
    while refine_to is not None and steps * 2 <= max_steps:
        errors = completeness_error(network, inputs.detach(), baselines, values, targets)
        unfinished = torch.from_numpy(errors > refine_to)
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
    values = NoiseTunnel(Saliency(network)).attribute(
        inputs, nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=samples, stdevs=noise,
        target=targets, abs=abs)
    return Computed(values)


def _gradient_shap(network, inputs, targets, samples, noise):
    baselines = torch.zeros_like(inputs[:1])  # one black page; the noise spreads the paths
    values, delta = GradientShap(network).attribute(
        inputs, baselines, n_samples=samples, stdevs=noise, target=targets, return_convergence_delta=True)
    # deltas come ordered image by image, `samples` each; completeness holds only on average
    return Computed(values, delta.reshape(len(inputs), samples).mean(1))


def _deeplift(network, inputs, targets, baseline):
    baselines = baseline_images(inputs, baseline)
    values, delta = DeepLift(network).attribute(inputs, baselines, target=targets, return_convergence_delta=True)
    return Computed(values, delta, baselines)


def _occlusion(network, inputs, targets, window, stride):
    channels = inputs.shape[1]
    values = Occlusion(network).attribute(
        inputs, sliding_window_shapes=(channels, window, window), strides=(channels, stride, stride),
        baselines=0.0, target=targets, perturbations_per_eval=64)
    return Computed(values)


METHODS: dict[str, AttributionMethod] = {method.name: method for method in (
    AttributionMethod("Saliency", _gradient_based(Saliency), {"abs": True},
                      summary="How much a tiny change of each pixel would change the score."),
    AttributionMethod("Integrated Gradients", _integrated_gradients,
                      {"baseline": "black", "n_steps": 50, "rule": "gausslegendre",
                       "refine_to": 0.01, "max_steps": 200},
                      summary="Each pixel's share of the score, found by fading the image in from a baseline."),
    AttributionMethod("SmoothGrad", _smoothgrad, {"samples": 16, "noise": 0.15, "abs": True}, stochastic=True,
                      summary="Saliency averaged over noisy copies of the image, which removes speckle."),
    AttributionMethod("GradientSHAP", _gradient_shap, {"samples": 16, "noise": 0.1}, stochastic=True,
                      summary="Integrated Gradients averaged over random noisy paths from a black page."),
    AttributionMethod("Input × Gradient", _gradient_based(InputXGradient),
                      summary="Pixel brightness times its saliency: only inked pixels can matter."),
    AttributionMethod("Guided Backprop", _gradient_based(GuidedBackprop),
                      summary="Saliency that keeps only positive evidence at every layer; sharp, "
                              "but known to show edges even of a random model."),
    AttributionMethod("DeepLift", _deeplift, {"baseline": "black"},
                      summary="Each pixel's share of the change from a baseline, in one backward pass."),
    AttributionMethod("Occlusion", _occlusion, {"window": 4, "stride": 2},
                      summary="How much the score drops when a small black square covers each place."),
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


def _as_images(inputs) -> torch.Tensor:
    return torch.as_tensor(inputs, dtype=torch.float32).detach().clone()  # ours to set requires_grad on


def _method(method: str | AttributionMethod) -> AttributionMethod:
    if isinstance(method, AttributionMethod):
        return method
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    return METHODS[method]


def _resolved_settings(method: AttributionMethod, settings: dict) -> dict:
    known = set(method.defaults) | {"seed"}
    unknown = set(settings) - known
    if unknown:
        raise ValueError(f"{method.name} has no settings {sorted(unknown)}; it takes {sorted(known)}")
    return {**method.defaults, "seed": 0, **settings} if method.stochastic else {**method.defaults, **settings}


def predicted_classes(forward: Callable, inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return forward(inputs).argmax(-1)


def _run(method: AttributionMethod, network: AdaptedNetwork, inputs: torch.Tensor, targets: torch.Tensor,
         settings: dict) -> Computed:
    arguments = {key: value for key, value in settings.items() if key != "seed"}
    numpy_state = np.random.get_state()  # GradientShap draws from numpy's global generator
    try:
        with warnings.catch_warnings(), torch.random.fork_rng():
            # captum announces every hook it sets on the ReLUs; the user needs none of that
            warnings.filterwarnings("ignore", message=".*(hooks|required_grads).*")
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
    method = _method(method)
    settings = _resolved_settings(method, settings)
    inputs = _as_images(inputs)
    network = network_for(checkpoint, trace.params[step], trace.buffers, model)
    if target is None:
        targets = predicted_classes(network, inputs)
    else:
        targets = torch.as_tensor(target, dtype=torch.long).expand(len(inputs)).clone()
    computed = _run(method, network, inputs, targets, settings)
    completeness = None
    if computed.baselines is not None:
        completeness = completeness_error(network, inputs.detach(), computed.baselines,
                                          computed.values.detach(), targets)
    return Attribution(
        method=method.name, step=step, targets=targets.numpy(), values=computed.values.detach().numpy(),
        convergence_delta=None if computed.delta is None else computed.delta.detach().numpy(),
        settings={**settings, **(computed.notes or {})}, completeness=completeness,
    )


# --- trust check 1: completeness ------------------------------------------------------------

def completeness_error(forward: Callable, inputs, baselines, attributions, targets) -> np.ndarray:
    """|Σ attributions − (f(x) − f(baseline))| / |f(x) − f(baseline)| per image, f = target logit.

    Integrated Gradients and DeepLift promise that attributions add up to the change in the
    score between baseline and image; this measures how far they miss, as a fraction.
    """
    inputs, baselines, attributions = (torch.as_tensor(a, dtype=torch.float32) for a in
                                       (inputs, baselines, attributions))
    targets = torch.as_tensor(targets, dtype=torch.long)
    with torch.no_grad():
        change = (forward(inputs) - forward(baselines)).gather(1, targets[:, None])[:, 0]
    missing = attributions.flatten(1).sum(1) - change
    return (missing.abs() / change.abs().clamp_min(1e-12)).numpy()


# --- trust check 2: model-parameter randomisation (Adebayo et al. 2018) -------------------

def rank_correlation(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation of each pair of maps ([N, ...] each); 0 where a map is flat."""
    first, second = (rankdata(a.reshape(len(a), -1), axis=1) for a in (first, second))
    first, second = first - first.mean(1, keepdims=True), second - second.mean(1, keepdims=True)
    norms = np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1)
    # a flat map ranks nothing: no agreement can be claimed, so it counts as 0
    return np.where(norms > 0, (first * second).sum(1) / np.where(norms > 0, norms, 1.0), 0.0)


def structural_similarity(first: np.ndarray, second: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """SSIM (Wang et al. 2004, Gaussian window) of each pair of maps ([N, ..., H, W] each).

    Like Adebayo et al., maps are compared as absolute values scaled to [0, 1], since a map's
    overall scale and sign are not what a viewer reads. The window is truncated at 3.5 sigma
    and the borders it cannot cover are cropped, as scikit-image does.
    """
    def normalised(maps):
        maps = np.abs(maps.reshape(len(maps), *maps.shape[-2:])).astype(np.float64)
        peak = maps.max(axis=(1, 2), keepdims=True)
        return maps / np.where(peak > 0, peak, 1.0)

    a, b = normalised(first), normalised(second)
    blur = lambda image: gaussian_filter(image, sigma=(0, sigma, sigma), truncate=3.5)  # noqa: E731
    mean_a, mean_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mean_a**2, blur(b * b) - mean_b**2
    covariance = blur(a * b) - mean_a * mean_b
    c1, c2 = 0.01**2, 0.03**2  # data range 1
    similarity = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)
                  / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)))
    crop = int(3.5 * sigma + 0.5)
    return similarity[:, crop:-crop, crop:-crop].mean(axis=(1, 2))


def randomised_parameters(checkpoint: Checkpoint, params: dict, layers, seed: int = 0) -> dict:
    """`params` with every parameter of `layers` replaced by a fresh, untrained model's.

    A fresh model's initialisation (seeded) is what "random weights" means here: the same
    scale the network started training from, so the comparison is with an untrained net.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        fresh = dict(build_model(checkpoint.model_config).named_parameters())
    layers = set(layers)
    return {name: fresh[name].detach() if layer_of(name) in layers else value for name, value in params.items()}


DEPENDS_ON_MODEL = "this map depends on what the model learned"
SHOWS_THE_IMAGE = "this map barely changes when the weights are random: it shows the image more than the model"
STRENGTH_FOLLOWS_INK = ("only this map's sign (for or against) depends on what the model learned; where it is "
                        "strong barely changes when the weights are random: it mostly shows where the ink is")
SIMILAR = 0.5  # rank correlation that counts as "barely changed" (a judgement call, stated in the docs)


@dataclass(frozen=True)
class RandomisationResult:
    method: str
    layers: tuple[str, ...]  # layers[i]: the i-th layer randomised, from the head down (cumulative)
    spearman: np.ndarray  # [L] mean over images of the rank correlation with the original maps
    spearman_abs: np.ndarray  # [L] the same on absolute values
    ssim: np.ndarray  # [L] structural similarity of the absolute maps
    original: np.ndarray  # [N, ...] maps of the trained model
    randomised: np.ndarray  # [L, N, ...] maps after randomising layers[: i + 1]
    verdict: str
    passed: bool  # the maps changed: the method passes the sanity check


def verdict_for(signed_similarity: float, absolute_similarity: float) -> tuple[str, bool]:
    """Plain words for the rank correlations left once every layer is random.

    A map that keeps most of its ranking with no trained weight left cannot be explaining
    what the model learned (Adebayo et al.). Comparing absolute values too matters: maps that
    multiply by the input are zero on the dark background whatever the weights, so their
    strength can follow the ink while their sign follows the model.
    """
    if absolute_similarity < SIMILAR:
        return DEPENDS_ON_MODEL, True
    if signed_similarity < SIMILAR:
        return STRENGTH_FOLLOWS_INK, False
    return SHOWS_THE_IMAGE, False


def randomisation_test(checkpoint: Checkpoint, trace: AdaptationTrace, step: int,
                       method: str | AttributionMethod, inputs, targets, progress: Callable | None = None,
                       seed: int = 0, model: nn.Module | None = None, **settings) -> RandomisationResult:
    """Cascading model-parameter randomisation: re-initialise layers one by one from the head
    down (cumulatively), recompute the maps for the same `targets`, compare with the original.

    `progress(done, total)` is called after each of the 1 + L attributions (e.g. to drive a
    progress bar). The verdict reads the rank correlations once every layer is random.
    """
    method = _method(method)
    if "refine_to" in method.defaults:
        # ranks are compared, not sums: refining a random model's IG costs up to 4x for nothing
        settings = {"refine_to": None, **settings}
    settings = _resolved_settings(method, settings)
    inputs = _as_images(inputs)
    targets = torch.as_tensor(targets, dtype=torch.long)
    model = model or checkpoint.build_model()
    params = trace.params[step]
    layers = tuple(reversed(checkpoint.layers))
    total = 1 + len(layers)

    def maps_with(parameters) -> np.ndarray:
        network = network_for(checkpoint, parameters, trace.buffers, model)
        return _run(method, network, inputs.clone(), targets, settings).values.detach().numpy()

    original = maps_with(params)
    if progress:
        progress(1, total)
    randomised = []
    for index in range(len(layers)):
        randomised.append(maps_with(randomised_parameters(checkpoint, params, layers[: index + 1], seed)))
        if progress:
            progress(index + 2, total)
    randomised = np.stack(randomised)
    spearman = np.array([rank_correlation(original, maps).mean() for maps in randomised])
    spearman_abs = np.array([rank_correlation(np.abs(original), np.abs(maps)).mean() for maps in randomised])
    ssim = np.array([structural_similarity(original, maps).mean() for maps in randomised])
    verdict, passed = verdict_for(float(spearman[-1]), float(spearman_abs[-1]))
    return RandomisationResult(method.name, layers, spearman, spearman_abs, ssim, original, randomised,
                               verdict, passed)


# --- trust check 3: deletion and insertion (Petsiuk et al. 2018) ---------------------------

@dataclass(frozen=True)
class FaithfulnessCurves:
    """Target probability [N, S+1] as pixels are removed (deletion: lower area is better) or
    added to a black page (insertion: higher is better), in the map's order and a random one."""

    fractions: np.ndarray  # [S+1] fraction of pixels removed / added, 0..1
    deletion: np.ndarray
    insertion: np.ndarray
    random_deletion: np.ndarray
    random_insertion: np.ndarray

    def area(self, curve: str) -> np.ndarray:
        """[N] area under one curve, e.g. area("deletion")."""
        return np.trapezoid(getattr(self, curve), self.fractions, axis=-1)


def _target_probabilities(forward, images: torch.Tensor, targets: torch.Tensor, chunk: int = 512) -> np.ndarray:
    """images [S, N, C, H, W] -> softmax probability of each image's target, [N, S]."""
    steps, count = images.shape[:2]
    flat, flat_targets = images.reshape(-1, *images.shape[2:]), targets.repeat(steps)
    with torch.no_grad():
        probabilities = torch.cat([forward(flat[i : i + chunk]).softmax(-1) for i in range(0, len(flat), chunk)])
    return probabilities.gather(1, flat_targets[:, None])[:, 0].reshape(steps, count).T.numpy()


def deletion_insertion_curves(forward: Callable, inputs, targets, attributions, steps: int = 28,
                              random_seed: int = 0, background: float = 0.0) -> FaithfulnessCurves:
    """Pixels (summed over channels) are taken most-attributed first; removing one sets it to
    `background` (0: the dark page). `steps` + 1 points from 0 to all pixels."""
    inputs = _as_images(inputs)
    targets = torch.as_tensor(targets, dtype=torch.long)
    count, channels, height, width = inputs.shape
    pixels = height * width
    importance = np.asarray(attributions, dtype=np.float64).reshape(count, channels, pixels).sum(1)
    # stable sort of the negated map: ties (flat background) keep a fixed, reproducible order
    by_attribution = np.argsort(-importance, axis=1, kind="stable")
    at_random = np.random.default_rng(random_seed).permuted(np.tile(np.arange(pixels), (count, 1)), axis=1)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    taken_counts = np.round(fractions * pixels).astype(int)

    def curves(order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(pixels)[None].repeat(count, 0), axis=1)
        taken = torch.from_numpy(rank[None] < taken_counts[:, None, None])  # [S+1, N, pixels]
        taken = taken.reshape(steps + 1, count, 1, height, width)
        page = torch.full_like(inputs, background)
        deleted = torch.where(taken, page, inputs)
        inserted = torch.where(taken, inputs, page)
        return _target_probabilities(forward, deleted, targets), _target_probabilities(forward, inserted, targets)

    deletion, insertion = curves(by_attribution)
    random_deletion, random_insertion = curves(at_random)
    return FaithfulnessCurves(fractions, deletion, insertion, random_deletion, random_insertion)
