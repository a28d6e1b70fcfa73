"""What every MEG environment does the same way at its API: argument checks, actions, and info layout.

Power actions are validated here (finite values clipped to [0, 1] and counted, NaN/inf and bad shapes
rejected with the fix in the message); per-environment info arrays are laid out as Gymnasium's vector envs do
(``info[key]`` and the mask ``info["_" + key]``) and merged; single-env infos are rows of the batched ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode

__all__ = [
    "SNR_DB_RANGE",
    "check_num_envs",
    "check_render_mode",
    "merge_infos",
    "parse_autoreset_mode",
    "power_fractions",
    "reset_generators",
    "scalar_info",
    "with_masks",
]

SNR_DB_RANGE = (-60.0, 60.0)  # observations in dB are clipped to this range (deep fades give -inf)


def check_num_envs(num_envs: Any) -> int:
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
    return num_envs


def check_render_mode(render_mode: str | None, metadata: dict[str, Any]) -> str | None:
    if render_mode is not None and render_mode not in metadata["render_modes"]:
        raise ValueError(f"render_mode must be None or one of {metadata['render_modes']}, got {render_mode!r}")
    return render_mode


def parse_autoreset_mode(value: AutoresetMode | str) -> AutoresetMode:
    """NEXT_STEP or SAME_STEP (as the enum or its string value); anything else raises ValueError."""
    modes = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)
    try:
        mode = AutoresetMode(value)
    except ValueError:
        mode = None
    if mode not in modes:
        raise ValueError(f"autoreset_mode must be one of {[m.value for m in modes]}, got {value!r}")
    return mode


def reset_generators(
    rngs: list[np.random.Generator], seed: int | list[int | None] | None, started: bool
) -> list[np.random.Generator]:
    """Generators after ``reset(seed=...)``: env ``i`` gets ``seed + i`` (as SyncVectorEnv), or its own entry of a list.

    Without a seed, environments keep their Generators once started (a fresh one each before the first reset).
    """
    n = len(rngs)
    if seed is None:
        seeds: list[int | None] = [None] * n
    elif isinstance(seed, int | np.integer):
        seeds = [int(seed) + i for i in range(n)]
    else:
        seeds = list(seed)
        if len(seeds) != n:
            raise ValueError(f"reset got {len(seeds)} seeds for {n} environments")
    return [
        seeding.np_random(s)[0] if s is not None or not started else rng for rng, s in zip(rngs, seeds, strict=True)
    ]


def power_fractions(actions: Any, shape: tuple[int, ...], what: str = "the action") -> tuple[np.ndarray, np.ndarray]:
    """(power fractions clipped to [0, 1] with shape ``shape``, whether each was clipped).

    Accepts ``shape`` or ``shape + (1,)`` (one Box(0, 1, (1,)) action per environment; a single environment,
    ``shape == ()``, also takes a plain number). Non-numbers, other shapes, NaN and inf raise ValueError.
    """
    try:
        a = np.asarray(actions, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be a number in [0, 1] (power as a fraction of peak), got {actions!r}") from err
    if a.shape not in (shape, (*shape, 1)):
        expected = "(1,)" if shape == () else f"{(*shape, 1)} or {shape}"
        raise ValueError(f"{what} must have shape {expected}, got shape {a.shape}")
    a = a.reshape(shape)
    if not np.all(np.isfinite(a)):
        raise ValueError(
            f"{what} must be finite (power as a fraction of peak in [0, 1]), got {a.tolist()}; "
            "check the policy for NaN or inf outputs"
        )
    clipped = np.clip(a, 0.0, 1.0)
    return clipped, clipped != a


def with_masks(info: dict[str, Any], envs: np.ndarray | None, num_envs: int) -> dict[str, np.ndarray]:
    """Per-env info arrays laid out as Gymnasium's vector envs do: ``info[key]`` (num_envs, ...) and ``info[_key]``.

    ``info`` holds one row per environment in ``envs`` (all environments when None).
    """
    envs = np.arange(num_envs) if envs is None else envs
    out = {}
    for key, value in info.items():
        value = np.asarray(value)
        full = (
            np.full(num_envs, None, dtype=object)
            if value.dtype == object
            else np.zeros((num_envs, *value.shape[1:]), dtype=value.dtype)
        )
        full[envs] = value
        mask = np.zeros(num_envs, dtype=bool)
        mask[envs] = True
        out[key], out[f"_{key}"] = full, mask
    return out


def merge_infos(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Merge two masked info dicts; where both hold a key, ``b`` wins on its own entries."""
    out = dict(a)
    for key, value in b.items():
        if key.startswith("_") or key not in out:
            out[key] = value if key not in out else (out[key] | value)
            continue
        mask = b[f"_{key}"]
        merged = out[key].copy()
        if merged.dtype != value.dtype and merged.dtype != object:
            merged = merged.astype(np.result_type(merged.dtype, value.dtype))
        merged[mask] = value[mask]
        out[key] = merged
    return out


def scalar_info(info: dict[str, np.ndarray], j: int) -> dict[str, Any]:
    """Row ``j`` of batched info arrays, with numpy scalars turned into Python numbers."""
    out = {}
    for key, value in info.items():
        v = value[j]
        out[key] = v.item() if isinstance(v, np.generic) else v
    return out
