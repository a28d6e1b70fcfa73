"""The image-quality metrics an episode can report, and the rewards made from them: one small table.

A reward names the info metric it is computed from; ``latent-mse`` turns an error into a reward by its
sign, so that higher is always better. Metrics that need the decoded image are marked, so an environment
that asks for none of them never runs the VAE decoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_INFO_METRICS", "IMAGE_METRICS", "INFO_METRICS", "REWARDS", "Reward", "metrics_to_compute"]

INFO_METRICS = ("psnr", "ssim", "ms_ssim", "latent_mse")
IMAGE_METRICS = frozenset({"psnr", "ssim", "ms_ssim"})
DEFAULT_INFO_METRICS = ("psnr", "ssim", "latent_mse")


@dataclass(frozen=True)
class Reward:
    """A reward computed from one info metric: ``metric``'s value, negated when ``negate`` (for errors)."""

    metric: str
    negate: bool = False

    def __call__(self, metrics: Mapping[str, np.ndarray]) -> np.ndarray:
        value = metrics[self.metric]
        return -value if self.negate else value


REWARDS: dict[str, Reward] = {
    "psnr": Reward("psnr"),  # dB against the reference image
    "ssim": Reward("ssim"),
    "ms-ssim": Reward("ms_ssim"),
    "latent-mse": Reward("latent_mse", negate=True),  # of the UE's final latent against the clean latent
}


def metrics_to_compute(reward: str, info_metrics: tuple[str, ...] | None) -> tuple[str, ...]:
    """The metrics an episode's end computes: those asked for (default :data:`DEFAULT_INFO_METRICS`) and the reward's."""
    asked = DEFAULT_INFO_METRICS if info_metrics is None else tuple(info_metrics)
    needed = REWARDS[reward].metric
    return asked if needed in asked else (*asked, needed)
