"""Static power: the same energy on every block, the paper's static baseline. Nothing is learned.

    python baselines/static_power.py
    python baselines/static_power.py --env.budget-fraction 0.3

Each block gets the fair share of what is left (energy left / blocks left, as a fraction of peak power), which
is an equal split of the budget over the episode's blocks, capped at peak power (``meg_gym.policies.static_power``).
The policy is evaluated on the held-out test prompts and written to runs/{run_name}/eval.json in the schema
every baseline shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro

from meg_gym import evaluation, policies


@dataclass
class Args(evaluation.PolicyRunArgs):
    exp_name: str = Path(__file__).stem
    """name of this experiment"""


if __name__ == "__main__":
    args = tyro.cli(Args)
    evaluation.run_policy(args, policies.static_power, "static")
