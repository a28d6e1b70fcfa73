"""Static power: the same energy on every block, the paper's static baseline. Nothing is learned.

    python baselines/static_power.py
    python baselines/static_power.py --env.budget-fraction 0.3

Each block gets the fair share of what is left (energy left / blocks left, as a fraction of peak power), which
is an equal split of the budget over the episode's blocks, capped at peak power. The policy is evaluated on the
held-out test prompts and written to runs/{run_name}/eval.json in the schema every baseline shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from meg_gym import evaluation

FAIR_SHARE = 3  # observation index: energy left / (blocks left x peak block energy)


@dataclass
class Args(evaluation.PolicyRunArgs):
    exp_name: str = Path(__file__).stem
    """name of this experiment"""


def static_policy(obs: np.ndarray, env) -> np.ndarray:
    return np.clip(obs[:, FAIR_SHARE], 0.0, 1.0)[:, None]


if __name__ == "__main__":
    args = tyro.cli(Args)
    evaluation.run_policy(args, static_policy, "static")
