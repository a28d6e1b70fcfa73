"""Wrappers for constrained environments: Safety-Gymnasium's step signature over ``info["cost"]``.

Safety-Gymnasium's environments return ``(obs, reward, cost, terminated, truncated, info)`` from ``step``; meg-gym's
constrained environments keep Gymnasium's 5-tuple (so every Gymnasium tool works on them) and put the cost in
``info["cost"]`` (and each component in ``info["costs"]``). These wrappers give the 6-tuple to safe-RL code
written for Safety-Gymnasium.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorWrapper

__all__ = ["SafetyGymnasiumStep", "SafetyGymnasiumVectorStep"]


def _cost(info: dict[str, Any], env: Any) -> Any:
    if "cost" not in info:
        raise KeyError(
            f"{env} put no 'cost' in its step info; the Safety-Gymnasium wrappers need a constrained environment "
            "such as MEG-SplitControl-v0"
        )
    return info["cost"]


class SafetyGymnasiumStep(gym.Wrapper):
    """``step`` returns ``(obs, reward, cost, terminated, truncated, info)`` with ``cost = info["cost"]`` (a float)."""

    def step(self, action: Any):  # type: ignore[override]
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, float(_cost(info, self.env)), terminated, truncated, info


class SafetyGymnasiumVectorStep(VectorWrapper):
    """The vector version: ``cost`` is a float array (num_envs,); 0 where an environment reported none (autoreset)."""

    def step(self, actions: Any):  # type: ignore[override]
        obs, reward, terminated, truncated, info = self.env.step(actions)
        cost = np.asarray(_cost(info, self.env), dtype=np.float64)
        mask = info.get("_cost")
        if mask is not None:
            cost = np.where(mask, cost, 0.0)
        return obs, reward, cost, terminated, truncated, info
