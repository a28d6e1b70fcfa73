"""The latent prior: the per-element mean and variance of a cache's latents at each split step, over train prompts.

The raw-latent reference's receiver (``codec.RawLatent`` with a prior) is the linear MMSE estimator of the latent
given what arrived: it needs the prior's mean and variance per element. They are estimated on the TRAIN prompts
only, so no test prompt informs the receiver. The shipped cache's prior ships as an asset
(``assets/latent-prior``: prior.safetensors with ``mean`` and ``var`` of shape (split steps, C, H, W), and
prior.json naming the cache it was estimated on and the command that built it); for any other cache it is
estimated from that cache's train prompts on first use (a second, so nothing needs building).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from meg_gym import ASSETS_DIR

PRIOR_DIR = ASSETS_DIR / "latent-prior"
PRIOR_SCHEMA = "meg-gym-latent-prior/1"
BUILD_COMMAND = "python scripts/build_latent_prior.py"
TENSOR_NAME, JSON_NAME = "prior.safetensors", "prior.json"


def estimate_prior(cache: Any) -> dict[str, Any]:
    """Mean and (population) variance per element at every split step over the cache's train prompts, float32."""
    import torch

    rows = cache.indices("train")
    latents = cache.es_latents[rows].to(torch.float64)  # (N, S, C, H, W)
    return {"mean": latents.mean(0).float(), "var": latents.var(0, unbiased=False).float()}


def save_prior(folder: Path | str, cache: Any, prior: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    from meg_gym.cache import cache_fingerprint

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in prior.items()}, str(folder / TENSOR_NAME))
    meta = {
        "schema": PRIOR_SCHEMA,
        "cache_sha256": cache_fingerprint(cache.path),
        "split_steps": list(cache.split_steps),
        "train_prompts": int(len(cache.indices("train"))),
        "command": BUILD_COMMAND,
    }
    (folder / JSON_NAME).write_text(json.dumps(meta, indent=1))
    return folder


@functools.lru_cache(maxsize=8)
def _prior_of(cache_path: str | None) -> tuple[list[int], Any, Any]:
    from safetensors.torch import load_file

    from meg_gym.cache import LatentCache, cache_fingerprint

    cache = LatentCache.load(cache_path)
    meta_path = PRIOR_DIR / JSON_NAME
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("schema") == PRIOR_SCHEMA and meta.get("cache_sha256") == cache_fingerprint(cache.path):
            try:
                stored = load_file(str(PRIOR_DIR / TENSOR_NAME))
            except Exception as err:  # safetensors raises its own error types for damaged files
                raise RuntimeError(
                    f"{PRIOR_DIR / TENSOR_NAME} is damaged ({err}); rebuild it with `{BUILD_COMMAND}`"
                ) from err
            shape = (len(cache.split_steps), *cache.latent_shape)
            if tuple(stored["mean"].shape) != shape or tuple(stored["var"].shape) != shape:
                raise RuntimeError(
                    f"{PRIOR_DIR / TENSOR_NAME} does not fit its cache; rebuild it with `{BUILD_COMMAND}`"
                )
            return list(meta["split_steps"]), stored["mean"], stored["var"]
    prior = estimate_prior(cache)
    return list(cache.split_steps), prior["mean"], prior["var"]


def latent_prior(cache_path: Path | str | None, split_step: int) -> tuple[Any, Any]:
    """(mean, var), each (C, H, W), of the latents after ``split_step`` ES steps over the cache's train prompts:
    the shipped asset for the shipped cache, else estimated from the cache (``cache_path`` None: the shipped one)."""
    steps, mean, var = _prior_of(None if cache_path is None else str(cache_path))
    return mean[steps.index(split_step)], var[steps.index(split_step)]
