"""Tests of meg_gym.quality: per-image pixel metrics, Frechet distances and attribute accuracy."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from meg_gym import quality
from meg_gym.generation import shapes
from meg_gym.generation.imaging import to_tensor


@pytest.fixture
def images() -> torch.Tensor:
    """Four smooth-ish 64x64 RGB images in [0, 1]."""
    gen = torch.Generator().manual_seed(0)
    coarse = torch.rand(4, 3, 8, 8, generator=gen)
    return torch.nn.functional.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False)


def _noisy(x: torch.Tensor, std: float, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (x + std * torch.randn(x.shape, generator=gen)).clamp(0, 1)


# --- PSNR -------------------------------------------------------------------------------------------------------


def test_psnr_constant_error_is_20_db():
    target = torch.full((3, 3, 16, 16), 0.5, dtype=torch.float64)
    pred = target + 0.1  # MSE 0.01 on a unit range: 10 log10(1 / 0.01) = 20 dB
    values = quality.psnr(pred, target)
    assert values.shape == (3,)
    # torchmetrics takes the log base in float32, so "exactly" means to float32 precision
    torch.testing.assert_close(values, torch.full((3,), 20.0, dtype=torch.float64), atol=1e-5, rtol=0)


def test_psnr_is_per_image_and_inf_for_identical(images):
    pred = images.clone()
    pred[1] = (pred[1] + 0.1).clamp(0, 1)  # only image 1 differs
    values = quality.psnr(pred, images)
    assert values.shape == (4,)
    assert torch.isinf(values[[0, 2, 3]]).all() and (values[[0, 2, 3]] > 0).all()
    assert math.isfinite(values[1].item()) and values[1].item() > 15.0


def test_psnr_respects_data_range():
    target = torch.full((2, 3, 8, 8), 128.0)
    values = quality.psnr(target + 25.5, target, data_range=255.0)
    torch.testing.assert_close(values, torch.full((2,), 20.0), atol=1e-4, rtol=0)


def test_metrics_reject_minus_one_to_one_images(images):
    with pytest.raises(ValueError, match="to_unit"):
        quality.psnr(images * 2 - 1, images)


def test_metrics_reject_mismatched_shapes(images):
    with pytest.raises(ValueError, match="shape"):
        quality.ssim(images, images[:2])


# --- SSIM and MS-SSIM -------------------------------------------------------------------------------------------


def test_ssim_identical_is_one_and_falls_with_noise(images):
    same = quality.ssim(images, images)
    assert same.shape == (4,)
    torch.testing.assert_close(same, torch.ones(4), atol=1e-5, rtol=0)
    mild, strong = quality.ssim(_noisy(images, 0.05), images), quality.ssim(_noisy(images, 0.2), images)
    assert mild.shape == strong.shape == (4,)
    assert (mild < 0.999).all() and (strong < mild).all()


def test_ms_ssim_config_at_64():
    config = quality.ms_ssim_config(64, 64)
    assert config.scales == 3 and config.kernel_size == 11 and config.sigma == 1.5
    assert len(config.betas) == 3 and math.isclose(sum(config.betas), 1.0)
    assert quality.ms_ssim_config(256).scales == 5  # the standard configuration once it fits
    assert quality.ms_ssim_config(quality.MS_SSIM_MIN_SIZE).scales == 2


def test_ms_ssim_on_64x64(images):
    same = quality.ms_ssim(images, images)
    assert same.shape == (4,)
    torch.testing.assert_close(same, torch.ones(4), atol=1e-5, rtol=0)
    mild, strong = quality.ms_ssim(_noisy(images, 0.05), images), quality.ms_ssim(_noisy(images, 0.2), images)
    assert mild.shape == (4,)
    assert (mild < 0.999).all() and (strong < mild).all()


def test_ms_ssim_too_small_raises():
    small = torch.rand(2, 3, quality.MS_SSIM_MIN_SIZE - 1, 64)
    with pytest.raises(ValueError, match=f"at least {quality.MS_SSIM_MIN_SIZE}x{quality.MS_SSIM_MIN_SIZE}"):
        quality.ms_ssim(small, small)
    ok = torch.rand(2, 3, quality.MS_SSIM_MIN_SIZE, quality.MS_SSIM_MIN_SIZE)
    torch.testing.assert_close(quality.ms_ssim(ok, ok), torch.ones(2), atol=1e-5, rtol=0)


# --- latent MSE -------------------------------------------------------------------------------------------------


def test_latent_mse_per_sample():
    target = torch.zeros(3, 4, 8, 8)
    pred = target.clone()
    pred[1] += 0.5
    pred[2, 0] += 2.0  # squared error 4 on one channel of four: mean 1
    torch.testing.assert_close(quality.latent_mse(pred, target), torch.tensor([0.0, 0.25, 1.0]))


# --- Frechet distance -------------------------------------------------------------------------------------------


def _exact_gaussian_sample(mean: np.ndarray, variances: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Samples whose sample mean and (unbiased) covariance are exactly ``mean`` and ``diag(variances)``."""
    z = np.random.default_rng(seed).standard_normal((n, len(mean)))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # whiten: sample cov = I
    return z * np.sqrt(variances) + mean


def test_frechet_identical_sets_is_zero():
    feats = np.random.default_rng(0).standard_normal((200, 16)) * 3 + 1
    assert quality.frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-8)
    assert quality.frechet_distance(torch.from_numpy(feats).float(), torch.from_numpy(feats).float()) < 1e-4


def test_frechet_matches_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, -1.0, 0.0, 0.5])
    s1, s2 = np.array([1.0, 4.0, 0.25, 2.0]), np.array([9.0, 1.0, 0.25, 0.5])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))  # = 9 + 5.5 = 14.5
    a = _exact_gaussian_sample(mu1, s1, 500, seed=1)
    b = _exact_gaussian_sample(mu2, s2, 300, seed=2)
    assert quality.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert quality.frechet_distance_from_stats(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(14.5, rel=1e-12)


def test_frechet_symmetric_and_matches_scipy_sqrtm():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((300, 8)) @ rng.standard_normal((8, 8))
    b = rng.standard_normal((250, 8)) @ rng.standard_normal((8, 8)) + 0.7
    d_ab, d_ba = quality.frechet_distance(a, b), quality.frechet_distance(b, a)
    assert d_ab == pytest.approx(d_ba, rel=1e-9)
    (mu_a, cov_a), (mu_b, cov_b) = quality.gaussian_stats(a), quality.gaussian_stats(b)
    reference = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b).real)
    assert d_ab == pytest.approx(reference, rel=1e-7)


def test_frechet_handles_fewer_samples_than_dimensions():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((10, 64)), rng.standard_normal((12, 64)) + 1.0
    d = quality.frechet_distance(a, b)
    assert math.isfinite(d) and d > 64 * 0.5  # the mean shift alone contributes 64
    with pytest.raises(ValueError, match="at least 2"):
        quality.frechet_distance(a[:1], b)
    with pytest.raises(ValueError, match="dimensions"):
        quality.frechet_distance(a, b[:, :32])


def test_frechet_distance_from_images_with_classifier():
    from meg_gym.generation.classifier import ShapesClassifier

    torch.manual_seed(0)
    classifier = ShapesClassifier().eval()
    scenes = shapes.sample_scenes("train", 24)
    real = to_tensor(shapes.render_batch(scenes))
    noise = torch.rand(24, 3, 64, 64, generator=torch.Generator().manual_seed(5)) * 2 - 1

    same = quality.frechet_distance_from_images(real, real, classifier.features)
    apart = quality.frechet_distance_from_images(real, noise, classifier.features, batch_size=7)
    assert apart > 0
    assert same <= 1e-3 * apart  # random-init features are small, so compare with the scale of a real gap
    with torch.no_grad():
        direct = quality.frechet_distance(classifier.features(real), classifier.features(noise))
    assert apart == pytest.approx(direct, rel=1e-4)  # batching in eval mode does not change the features
    with pytest.raises(TypeError, match="features"):
        quality.frechet_distance_from_images(real, noise, classifier)  # forward returns a dict of logits


def test_inception_fid_needs_local_weights(tmp_path: Path):
    x = torch.rand(2, 3, 64, 64)
    with pytest.raises(RuntimeError, match="weights-inception"):
        quality.inception_fid(x, x, tmp_path / "missing.pth")
    if importlib.util.find_spec("torch_fidelity") is None:  # weights present, package absent: still a clear error
        weights = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
        weights.write_bytes(b"stand-in")
        with pytest.raises(RuntimeError, match="torch-fidelity"):
            quality.inception_fid(x, x, weights)


# --- attribute accuracy -----------------------------------------------------------------------------------------


def _scenes_and_truth() -> tuple[list[shapes.Scene], dict[str, torch.Tensor]]:
    scenes = [shapes.sample_scene("train", i) for i in range(12)]
    truth = {k: torch.from_numpy(v) for k, v in shapes.attribute_targets(scenes).items()}
    return scenes, truth


def test_attribute_accuracy_perfect_predictions():
    scenes, truth = _scenes_and_truth()
    counts = [len(s.objects) for s in scenes]
    assert 1 in counts and any(c > 1 for c in counts)  # both groups are exercised
    result = quality.attribute_accuracy(truth, scenes)
    for key in ("shape_colour", "shape", "colour", "size", "present", "one_object", "multi_object"):
        assert result[key] == 1.0, key
    assert result["objects"] == {
        "all": sum(counts),
        "one_object": counts.count(1),
        "multi_object": sum(c for c in counts if c > 1),
    }


def test_attribute_accuracy_one_wrong_colour():
    scenes, truth = _scenes_and_truth()
    total = sum(len(s.objects) for s in scenes)
    multi_total = sum(len(s.objects) for s in scenes if len(s.objects) > 1)
    i = next(k for k, s in enumerate(scenes) if len(s.objects) > 1)
    cell = scenes[i].objects[0].cell
    pred = {k: v.clone() for k, v in truth.items()}
    pred["colour"][i, cell] = (pred["colour"][i, cell] + 1) % len(shapes.COLOUR_NAMES)

    result = quality.attribute_accuracy(pred, scenes)
    assert result["shape_colour"] == pytest.approx((total - 1) / total)
    assert result["colour"] == pytest.approx((total - 1) / total)
    assert result["shape"] == result["size"] == result["present"] == 1.0
    assert result["one_object"] == 1.0
    assert result["multi_object"] == pytest.approx((multi_total - 1) / multi_total)


def test_attribute_accuracy_missed_object_and_extra_objects():
    scenes, truth = _scenes_and_truth()
    total = sum(len(s.objects) for s in scenes)
    one_total = sum(1 for s in scenes if len(s.objects) == 1)
    i = next(k for k, s in enumerate(scenes) if len(s.objects) == 1)
    pred = {k: v.clone().numpy() for k, v in truth.items()}  # numpy input is accepted too
    pred["present"][i, scenes[i].objects[0].cell] = 0  # drawn attributes do not count if the object is missed
    empty = truth["present"] == 0
    pred["present"][empty.numpy()] = 1  # hallucinated objects in empty cells are not penalised

    result = quality.attribute_accuracy(pred, scenes)
    for key in ("shape_colour", "shape", "colour", "size", "present"):
        assert result[key] == pytest.approx((total - 1) / total), key
    assert result["one_object"] == pytest.approx((one_total - 1) / one_total)
    assert result["multi_object"] == 1.0


def test_attribute_accuracy_validates_shapes():
    scenes, truth = _scenes_and_truth()
    with pytest.raises(ValueError, match="shape"):
        quality.attribute_accuracy({k: v[:-1] for k, v in truth.items()}, scenes)
    with pytest.raises(ValueError, match="size"):
        quality.attribute_accuracy({k: v for k, v in truth.items() if k != "size"}, scenes)


def test_prompt_faithfulness_runs_classifier_in_eval_mode():
    from meg_gym.generation.classifier import ShapesClassifier

    torch.manual_seed(0)
    classifier = ShapesClassifier()  # left in training mode on purpose
    scenes = shapes.sample_scenes("train", 8)
    images = to_tensor(shapes.render_batch(scenes))
    norm = next(m for m in classifier.modules() if isinstance(m, torch.nn.BatchNorm2d))
    result = quality.prompt_faithfulness(images, scenes, classifier)
    assert classifier.training  # mode restored
    assert torch.all(norm.running_mean == 0)  # eval mode: batch norm statistics were not updated
    classifier.eval()
    expected = quality.attribute_accuracy(classifier.predict(images), scenes)
    np.testing.assert_equal(result, expected)  # same as eval-mode predictions (NaN-aware comparison)
    assert 0.0 <= result["shape_colour"] <= 1.0
    assert result["objects"]["all"] == sum(len(s.objects) for s in scenes)


# --- import hygiene ---------------------------------------------------------------------------------------------


def test_import_does_not_pull_diffusers_or_transformers():
    code = "import meg_gym.quality, sys; assert 'diffusers' not in sys.modules and 'transformers' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
