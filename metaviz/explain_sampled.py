"""LIME and Kernel SHAP: explanations from the model's scores on copies of an image with random
pieces hidden, fitted by a simple surrogate (captum's `Lime` and `KernelShap`).

Both treat an image as a set of pieces (features) that are either shown or hidden (replaced by
the baseline). The pieces are square patches (`patch_mask`), not superpixels: a glyph is thin
strokes on an empty page, which a superpixel method cuts into "background" and a few stroke
blobs of very different sizes, while patches give every image the same 49 (4 x 4 px on 28 x 28)
equal pieces, so a sampling budget means the same for every image and the maps of images and
methods can be compared. 4 x 4 px also suits the digits: they are scikit-learn's 8 x 8 images
upscaled to 28 x 28, so one patch is about one of their original pixels (2 x 2 px pieces would
split those, and 196 pieces need about four times the samples for an equally steady fit).

Both draw random coalitions: two runs with different seeds give different maps. `seed_agreement`
measures by how much (rank correlation of the two runs' maps, image by image).

captum is imported on first use (see metaviz.explain); this module imports no other metaviz
module at load time, so metaviz.explain can list these methods in its registry.
"""
from __future__ import annotations

import numpy as np
import torch

PATCH = 4  # pixels per side of one piece: 49 pieces on a 28 x 28 image


def patch_mask(height: int, width: int, patch: int = PATCH) -> torch.Tensor:
    """[1, 1, height, width] piece index of each pixel: square patches, row by row; the last row
    and column of patches are smaller when `patch` does not divide the size."""
    if patch < 1:
        raise ValueError("patch must be at least 1 pixel")
    columns = -(-width // patch)
    rows = torch.arange(height)[:, None] // patch
    return (rows * columns + torch.arange(width)[None, :] // patch)[None, None]


def _hidden_as(inputs: torch.Tensor, baseline: str) -> torch.Tensor:
    from metaviz.explain import baseline_images

    return baseline_images(inputs.detach(), baseline)


def _sampled(explainer, inputs, targets, baseline: str, n_samples: int, patch: int):
    """A piece's coefficient is spread evenly over its pixels, so a map's pixels add up to what
    its pieces add up to (Kernel SHAP: the score's change, which the page then checks)."""
    from metaviz.explain import Computed

    mask = patch_mask(*inputs.shape[-2:], patch).expand(1, inputs.shape[1], -1, -1)
    hidden = _hidden_as(inputs, baseline)
    values = explainer.attribute(
        inputs, baselines=hidden, target=targets, feature_mask=mask, n_samples=n_samples,
        perturbations_per_eval=min(n_samples, 256), return_input_shape=True, show_progress=False)
    pixels_per_piece = torch.bincount(mask.flatten())[mask].to(values.dtype)
    return Computed(values.detach() / pixels_per_piece, baselines=hidden, notes={"pieces": int(mask.max()) + 1})


def lime(network, inputs, targets, baseline: str, n_samples: int, patch: int):
    """LIME (Ribeiro et al. 2016): a linear model fitted to the scores of `n_samples` copies, each
    weighted by its closeness to the image (captum's exponential kernel on cosine distance). A
    piece's colour is its coefficient: the score it adds when shown.

    The fit is a ridge regression (alpha 1), as in the authors' `lime` package, not captum's
    default Lasso (alpha 0.01): the Lasso set every piece to zero, a blank map, wherever the
    score moves by less than about a logit (an untrained model, or step 0 of some tasks)."""
    from captum._utils.models.linear_model import SkLearnRidge

    from metaviz.explain import _captum
    from metaviz.import_lock import SCIKIT_LEARN_IMPORTS

    with SCIKIT_LEARN_IMPORTS:  # captum imports these at the fit: see metaviz.import_lock
        import sklearn.linear_model  # noqa: F401
        import sklearn.svm  # noqa: F401
    explainer = _captum("Lime")(network, interpretable_model=SkLearnRidge(alpha=1.0))
    # a regression fit promises no sum of its coefficients: nothing to check
    return _sampled(explainer, inputs, targets, baseline, n_samples, patch)._replace(baselines=None)


def kernel_shap(network, inputs, targets, baseline: str, n_samples: int, patch: int):
    """Kernel SHAP (Lundberg & Lee 2017): a linear fit whose sampling and weights (the Shapley
    kernel) make the coefficients estimate each piece's Shapley value; they add up to the change
    in the score between the all-hidden and the full image, up to sampling error."""
    from metaviz.explain import _captum

    return _sampled(_captum("KernelShap")(network), inputs, targets, baseline, n_samples, patch)


def seed_agreement(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Rank correlation (Spearman), image by image, of two runs' maps ([N, ...] each). Each
    piece's value fills its patch; with equal patches this equals the correlation over pieces."""
    from metaviz.trust import rank_correlation

    return rank_correlation(np.asarray(first), np.asarray(second))
