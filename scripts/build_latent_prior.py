"""Estimate the latent prior (per-element mean and variance at each split step, train prompts) of a cache.

    python scripts/build_latent_prior.py                                   # the shipped asset, assets/latent-prior
    python scripts/build_latent_prior.py --cache-dir my-cache --output-dir my-prior

The raw-latent reference's LMMSE receiver uses it (meg_gym.latent_prior explains why and how). Other caches do
not need a file: their prior is estimated from their train prompts on first use.
"""

from dataclasses import dataclass
from pathlib import Path

import tyro

from meg_gym.cache import LatentCache
from meg_gym.latent_prior import PRIOR_DIR, estimate_prior, save_prior


@dataclass
class Args:
    cache_dir: Path | None = None
    """the latent cache (default: the shipped one)"""
    output_dir: Path = PRIOR_DIR
    """where prior.safetensors and prior.json go"""


if __name__ == "__main__":
    args = tyro.cli(Args)
    cache = LatentCache.load(args.cache_dir)
    prior = estimate_prior(cache)
    folder = save_prior(args.output_dir, cache, prior)
    share = (prior["mean"] ** 2).mean(dim=(1, 2, 3)) / (prior["mean"] ** 2 + prior["var"]).mean(dim=(1, 2, 3))
    for step, s in zip(cache.split_steps, share.tolist(), strict=True):
        print(f"split step {step}: the prior mean holds {s:.1%} of the latent's power")
    print(f"-> {folder}")
