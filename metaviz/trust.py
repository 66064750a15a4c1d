"""Two of the checks that say whether a saliency map can be trusted (the third,
`completeness_error`, lives in metaviz.explain, which uses it while computing IG):

- `randomisation_test` (Adebayo et al. 2018): does the map change when the learned weights
  are replaced by random ones? If not, it shows the image, not the model.
- `deletion_insertion_curves` (Petsiuk et al. 2018): does removing the pixels the map calls
  important destroy the prediction faster than removing random pixels?
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from scipy.ndimage import gaussian_filter
from scipy.stats import rankdata

from metaviz.adaptation import AdaptationTrace
from metaviz.checkpoints import Checkpoint
from metaviz.explain import AttributionMethod, as_images, method_named, network_for, resolved_settings, run_method
from metaviz.models import build_model, layer_of


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
    method = method_named(method)
    if "refine_to" in method.defaults:
        # ranks are compared, not sums: refining a random model's IG costs up to 4x for nothing
        settings = {**settings, "refine_to": None}
    settings = resolved_settings(method, settings)
    inputs = as_images(inputs)
    targets = torch.as_tensor(targets, dtype=torch.long)
    model = model or checkpoint.build_model()
    params = trace.params[step]
    layers = tuple(reversed(checkpoint.layers))
    total = 1 + len(layers)

    def maps_with(parameters) -> np.ndarray:
        network = network_for(checkpoint, parameters, trace.buffers, model)
        return run_method(method, network, inputs.clone(), targets, settings).values.detach().numpy()

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
    inputs = as_images(inputs)
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
