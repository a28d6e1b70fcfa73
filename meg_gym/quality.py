"""Image-quality and prompt-faithfulness metrics for MEG-Shapes generations.

Pixel metrics take float NCHW images in [0, 1] (see :func:`to_unit`) and return one value per image, shape (N,),
because the environments score every generated image separately. Set-level metrics (Frechet distances) return
floats. Attribute accuracy measures whether the objects a caption asks for were drawn.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from meg_gym.generation import shapes
from meg_gym.generation.imaging import to_unit

if TYPE_CHECKING:
    from meg_gym.generation.classifier import ShapesClassifier

__all__ = [
    "MS_SSIM_MIN_SIZE",
    "MsSsimConfig",
    "attribute_accuracy",
    "extract_features",
    "frechet_distance",
    "frechet_distance_from_images",
    "frechet_distance_from_stats",
    "gaussian_stats",
    "inception_fid",
    "latent_mse",
    "ms_ssim",
    "ms_ssim_config",
    "prompt_faithfulness",
    "psnr",
    "ssim",
    "to_unit",
]

ArrayLike = torch.Tensor | np.ndarray

# MS-SSIM exponents of Wang, Simoncelli & Bovik (2003), finest scale first; also torchmetrics' default.
_MS_SSIM_BETAS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_SSIM_SIGMA = 1.5
# torchmetrics sizes its Gaussian window from sigma (2 * int(3.5 * sigma + 0.5) + 1), not from kernel_size,
# so 11 is the window actually applied for sigma 1.5.
_SSIM_KERNEL = 11
_SSIM_BATCH = 16
# Smallest side that holds the 11-tap window at the coarser of two scales (22 // 2 = 11).
MS_SSIM_MIN_SIZE = 22


def _tm_image() -> ModuleType:
    """torchmetrics' functional image metrics, imported on first use.

    Importing any part of torchmetrics 1.9 runs its package ``__init__``, which imports ``transformers`` (for
    BERTScore) when it is installed: seconds of start-up that ``import meg_gym.quality`` must not pay.
    """
    import torchmetrics.functional.image as tmi

    return tmi


def _float(x: torch.Tensor) -> torch.Tensor:
    # Half precision is unsupported on CPU by torchmetrics' image metrics; float64 is kept for exact checks.
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _check_pair(
    pred: torch.Tensor, target: torch.Tensor, data_range: float, min_size: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a pair of NCHW image batches in [0, data_range]; returns them as float tensors."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.ndim != 4:
        raise ValueError(f"expected batched images (N, C, H, W), got shape {tuple(pred.shape)}")
    height, width = pred.shape[-2:]
    if min(height, width) < min_size:
        raise ValueError(f"images must be at least {min_size}x{min_size} pixels, got {height}x{width}")
    pred, target = _float(pred), _float(target)
    # The commonest mistake is passing diffusers-range [-1, 1] images: it would silently halve the data range.
    tol = 1e-3 * data_range
    for name, x in (("pred", pred), ("target", target)):
        lo, hi = float(x.min()), float(x.max())
        if lo < -tol or hi > data_range + tol:
            raise ValueError(
                f"{name} values span [{lo:.3g}, {hi:.3g}], outside [0, {data_range}]; "
                "convert [-1, 1] images with meg_gym.quality.to_unit"
            )
    return pred, target


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, shape (N,).

    Args:
        pred, target: images (N, C, H, W) with values in [0, ``data_range``].
        data_range: peak value; 1.0 for images in [0, 1].

    Identical images have zero error and give ``+inf``.
    """
    pred, target = _check_pair(pred, target, data_range)
    return _tm_image().peak_signal_noise_ratio(pred, target, data_range=data_range, reduction="none", dim=(1, 2, 3))


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity per image, shape (N,): 11-tap Gaussian window, sigma 1.5, reflect padding.

    Images are (N, C, H, W) in [0, ``data_range``], at least 11x11 pixels.
    """
    pred, target = _check_pair(pred, target, data_range, min_size=_SSIM_KERNEL)
    ssim_of = _tm_image().structural_similarity_index_measure
    # per-image values, computed in small batches: on CPU they run faster per image than one large batch
    # (16 at a time was chosen by timing at commit 4f2c706)
    return torch.cat(
        [
            ssim_of(
                pred[i : i + _SSIM_BATCH],
                target[i : i + _SSIM_BATCH],
                sigma=_SSIM_SIGMA,
                kernel_size=_SSIM_KERNEL,
                data_range=data_range,
                reduction="none",
            )  # fmt: skip
            for i in range(0, len(pred), _SSIM_BATCH)
        ]
    )


class MsSsimConfig(NamedTuple):
    """The MS-SSIM settings used for one image size."""

    scales: int
    sigma: float
    kernel_size: int
    betas: tuple[float, ...]


def ms_ssim_config(height: int, width: int | None = None) -> MsSsimConfig:
    """The MS-SSIM configuration :func:`ms_ssim` uses for ``height`` x ``width`` images.

    The standard five scales need images of at least 176 px for the 11-tap window (sigma 1.5) to fit at the
    coarsest scale. Rather than shrink the window, which would change what each scale measures, this keeps the
    window and drops the coarsest scales: it takes the most scales (5 down to 2) whose coarsest level still holds
    the whole window and that torchmetrics' own size check accepts, and renormalises the first exponents of
    Wang et al. to sum to one. At 64x64 that is 3 scales (64, 32, 16 px) with betas (0.0711, 0.4530, 0.4760).

    Raises:
        ValueError: if the image is smaller than :data:`MS_SSIM_MIN_SIZE` (22 px) on a side.
    """
    width = height if width is None else width
    side = min(height, width)
    for scales in range(len(_MS_SSIM_BETAS), 1, -1):
        coarsest = side // 2 ** (scales - 1)
        # torchmetrics also demands side // (scales - 1)**2 > kernel - 1, stricter than the window test at 4 scales.
        if coarsest >= _SSIM_KERNEL and side // (scales - 1) ** 2 > _SSIM_KERNEL - 1:
            betas = _MS_SSIM_BETAS[:scales]
            total = sum(betas)
            return MsSsimConfig(scales, _SSIM_SIGMA, _SSIM_KERNEL, tuple(b / total for b in betas))
    raise ValueError(
        f"MS-SSIM needs images of at least {MS_SSIM_MIN_SIZE}x{MS_SSIM_MIN_SIZE} pixels (two scales of an "
        f"{_SSIM_KERNEL}-tap window), got {height}x{width}; use ssim() for smaller images"
    )


def ms_ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Multi-scale structural similarity per image, shape (N,), with as many scales as the size allows.

    Images are (N, C, H, W) in [0, ``data_range``]; see :func:`ms_ssim_config` for the scales and exponents
    (3 scales at 64x64). Negative per-scale terms are clipped to 0 (torchmetrics' ``normalize="relu"``), since
    a fractional power of a negative number is undefined.

    Raises:
        ValueError: if the images are smaller than :data:`MS_SSIM_MIN_SIZE` on a side.
    """
    pred, target = _check_pair(pred, target, data_range)
    config = ms_ssim_config(*pred.shape[-2:])
    return _tm_image().multiscale_structural_similarity_index_measure(
        pred,
        target,
        sigma=config.sigma,
        kernel_size=config.kernel_size,
        data_range=data_range,
        betas=config.betas,
        normalize="relu",
        reduction="none",
    )


def latent_mse(pred_latents: torch.Tensor, target_latents: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample over all non-batch dimensions, shape (N,)."""
    if pred_latents.shape != target_latents.shape:
        raise ValueError(f"latents differ in shape: {tuple(pred_latents.shape)} vs {tuple(target_latents.shape)}")
    if pred_latents.ndim < 2:
        raise ValueError(f"expected batched latents (N, ...), got shape {tuple(pred_latents.shape)}")
    diff = _float(pred_latents) - _float(target_latents)
    return diff.pow(2).flatten(1).mean(dim=1)


def _features64(features: ArrayLike) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected features of shape (N, D), got {x.shape}")
    if len(x) < 2:
        raise ValueError(f"a covariance needs at least 2 samples, got {len(x)}")
    return x


def gaussian_stats(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    x = _features64(features)
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a positive semi-definite matrix."""
    values, vectors = np.linalg.eigh(matrix)
    # Round-off can leave a PSD covariance with tiny negative eigenvalues; they are zero in exact arithmetic.
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance_from_stats(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu_a, cov_a) and N(mu_b, cov_b).

    ``||mu_a - mu_b||^2 + tr(cov_a) + tr(cov_b) - 2 tr((cov_a cov_b)^(1/2))``. The trace of the matrix square root
    is taken as the sum of square roots of the eigenvalues of the symmetric ``cov_a^(1/2) cov_b cov_a^(1/2)``
    (which has the same eigenvalues as ``cov_a cov_b``). Unlike ``scipy.linalg.sqrtm`` of the non-symmetric
    product this never produces imaginary parts, and it copes with singular covariances (fewer samples than
    dimensions). The result is clipped at 0 against round-off.
    """
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    cov_a, cov_b = np.atleast_2d(np.asarray(cov_a, np.float64)), np.atleast_2d(np.asarray(cov_b, np.float64))
    if mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (mu_a.size, mu_a.size):
        raise ValueError(f"mismatched statistics: means {mu_a.shape}, {mu_b.shape}; covs {cov_a.shape}, {cov_b.shape}")
    root_a = _sqrt_psd(cov_a)
    middle = root_a @ cov_b @ root_a
    middle = (middle + middle.T) / 2  # remove the asymmetry that round-off adds, so eigvalsh applies
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0.0, None)).sum()
    diff = mu_a - mu_b
    distance = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt
    return max(float(distance), 0.0)


def frechet_distance(features_a: ArrayLike, features_b: ArrayLike) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N_a, D) and (N_b, D), in float64.

    Each set needs at least 2 samples; the distance is symmetric and 0 for identical sets.
    """
    mu_a, cov_a = gaussian_stats(features_a)
    mu_b, cov_b = gaussian_stats(features_b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature dimensions differ: {mu_a.size} vs {mu_b.size}")
    return frechet_distance_from_stats(mu_a, cov_a, mu_b, cov_b)


@torch.no_grad()
def extract_features(
    images: torch.Tensor, extractor: Callable[[torch.Tensor], torch.Tensor], batch_size: int
) -> np.ndarray:
    """(N, D) float64 features of ``images``, computed ``batch_size`` at a time with ``extractor``."""
    parts = []
    for start in range(0, len(images), batch_size):
        out = extractor(images[start : start + batch_size])
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise TypeError(
                "the feature extractor must return a (N, D) tensor; for a ShapesClassifier pass `classifier.features`"
            )
        parts.append(out.detach().cpu().double())
    return torch.cat(parts).numpy()


def frechet_distance_from_images(
    images_a: torch.Tensor,
    images_b: torch.Tensor,
    feature_extractor: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 256,
) -> float:
    """Frechet distance between two image sets in the feature space of ``feature_extractor``.

    Args:
        images_a, images_b: float images (N, 3, H, W) in [-1, 1], on the extractor's device.
        feature_extractor: maps a batch of images to (B, D) features, e.g. ``ShapesClassifier.features``
            (the FID-style distance of MEG-Shapes). Put its module in eval mode, or batch norm makes the
            features depend on the batch.
        batch_size: images per extractor call.
    """
    return frechet_distance(
        extract_features(images_a, feature_extractor, batch_size),
        extract_features(images_b, feature_extractor, batch_size),
    )


def inception_fid(
    images_a: torch.Tensor, images_b: torch.Tensor, weights_path: str | Path, batch_size: int = 64
) -> float:
    """Inception-v3 FID (2048-d pool features) between two image sets in [0, 1], for Stable Diffusion caches.

    Uses torchmetrics' ``FrechetInceptionDistance`` with torch-fidelity's Inception network and only a local
    weights file (``weights-inception-2015-12-05-6726825d.pth``); nothing is downloaded.

    Raises:
        RuntimeError: if the weights file or the torch-fidelity package is missing.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise RuntimeError(
            f"no Inception-v3 FID weights at {path}: copy torch-fidelity's "
            "weights-inception-2015-12-05-6726825d.pth (its v0.2.0 release asset) there; they are never downloaded"
        )
    if importlib.util.find_spec("torch_fidelity") is None:
        raise RuntimeError("Inception FID needs the torch-fidelity package: pip install torch-fidelity")
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(path))
    for real, images in ((True, images_a), (False, images_b)):
        for start in range(0, len(images), batch_size):
            # The Inception network expects uint8; round rather than truncate as normalize=True would.
            batch = images[start : start + batch_size].clamp(0, 1).mul(255).round().to(torch.uint8)
            metric.update(batch, real=real)
    return float(metric.compute())


_HEADS = ("present", "shape", "colour", "size")


def _indices(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def attribute_accuracy(predictions: Mapping[str, ArrayLike], scenes: Sequence[shapes.Scene]) -> dict[str, Any]:
    """Per-object prompt faithfulness of classifier predictions against the scenes that were asked for.

    Args:
        predictions: ``ShapesClassifier.predict`` output, class indices (N, 9) for the heads "present",
            "shape", "colour" and "size".
        scenes: the N scenes whose captions prompted the images.

    Returns:
        Fractions of caption objects drawn correctly; an object counts only if its cell is predicted present.
        "shape_colour" (present, right shape and colour: the headline), "shape", "colour", "size", "present";
        "one_object" and "multi_object": "shape_colour" over objects of one-object scenes and of scenes with
        more objects (nan if there are none); "objects": object counts {"all", "one_object", "multi_object"}.
        Predicted objects in cells the caption leaves empty are not penalised.
    """
    if len(scenes) == 0:
        raise ValueError("no scenes given")
    missing = [head for head in _HEADS if head not in predictions]
    if missing:
        raise ValueError(f"predictions lack the heads {missing}")
    target = shapes.attribute_targets(list(scenes))
    pred = {head: _indices(predictions[head]) for head in _HEADS}
    for head, value in pred.items():
        if value.shape != target[head].shape:
            raise ValueError(f"predictions[{head!r}] has shape {value.shape}, expected {target[head].shape}")

    wanted = target["present"] == 1  # (N, cells): one entry per caption object
    found = pred["present"] == 1
    right = {head: found & (pred[head] == target[head]) for head in ("shape", "colour", "size")}
    shape_colour = right["shape"] & right["colour"]
    counts = np.array([len(scene.objects) for scene in scenes])
    one = wanted & (counts == 1)[:, None]
    multi = wanted & (counts > 1)[:, None]

    def fraction(hit: np.ndarray, mask: np.ndarray) -> float:
        return float(hit[mask].mean()) if mask.any() else float("nan")

    return {
        "shape_colour": fraction(shape_colour, wanted),
        "shape": fraction(right["shape"], wanted),
        "colour": fraction(right["colour"], wanted),
        "size": fraction(right["size"], wanted),
        "present": fraction(found, wanted),
        "one_object": fraction(shape_colour, one),
        "multi_object": fraction(shape_colour, multi),
        "objects": {"all": int(wanted.sum()), "one_object": int(one.sum()), "multi_object": int(multi.sum())},
    }


def prompt_faithfulness(
    images: torch.Tensor, scenes: Sequence[shapes.Scene], classifier: ShapesClassifier, batch_size: int = 256
) -> dict[str, Any]:
    """:func:`attribute_accuracy` of ``classifier``'s predictions on ``images`` (N, 3, 64, 64) in [-1, 1].

    The classifier runs in eval mode (its batch-norm statistics must not depend on the batch) and is returned
    to its previous mode afterwards. Get the shipped one with ``meg_gym.generation.classifier.load_classifier``.
    """
    if len(images) != len(scenes):
        raise ValueError(f"{len(images)} images but {len(scenes)} scenes")
    device = next(classifier.parameters()).device
    was_training = classifier.training
    classifier.eval()
    try:
        predictions = classifier.predict(images.to(device), batch_size=batch_size)
    finally:
        classifier.train(was_training)
    return attribute_accuracy(predictions, scenes)
