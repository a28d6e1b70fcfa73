"""Fixed policies for MEG-MultiCell-v0: static power, full power, an SINR threshold, and the best-known reference.

    python baselines/multi_cell_policies.py --policy static
    python baselines/multi_cell_policies.py --policy best-known          # centralised, non-causal (minutes)
    python baselines/multi_cell_policies.py --policy full-power          # the interference (and budget) trap
    python baselines/multi_cell_policies.py --policy sinr-threshold --env.num-links 6

Each agent reads only its own observation, except ``best-known``: a centralised, non-causal search on the actual
reward that knows every link's gains in advance (the leaderboard's upper reference, not a bound). The policies are ``meg_gym.policies.MULTI_CELL_POLICIES`` (see
that module for what each does); with the default budget (0.05 of all 8 blocks at peak) full power spends
everything on the first block, at 40% of peak power. Results go to runs/{run_name}/eval.json in the shared
schema (test prompts, fixed seeds), with every agent's figures under ``per_agent``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tyro

from meg_gym import evaluation, policies
from meg_gym.envs.multi_cell import MultiCellConfig


@dataclass
class Args(evaluation.PolicyRunArgs):
    exp_name: str = Path(__file__).stem
    """name of this experiment"""
    env_id: str = "MEG-MultiCell-v0"
    """the environment id"""
    env: MultiCellConfig = field(default_factory=MultiCellConfig)
    """environment settings (the split is always "test" for evaluation)"""
    policy: Literal["static", "full-power", "sinr-threshold", "best-known"] = "static"
    """which policy every agent follows"""
    threshold_db: float = 10.0
    """sinr-threshold: estimated SINR (dB) from which a block counts as good"""
    boost: float = 2.0
    """sinr-threshold: good blocks get boost x the fair share, the others fair share / boost"""
    draws: int = 2
    """best-known: noise draws per candidate allocation (its own draws, never the evaluation's)"""
    iterations: int = 16
    """best-known: hill-climbing moves tried per episode"""


def make_policy(args: Args) -> policies.Policy:
    if args.policy == "sinr-threshold":
        return policies.sinr_threshold(args.env, args.threshold_db, args.boost)
    if args.policy == "best-known":
        return policies.multi_cell_best_known(args.env, args.draws, args.iterations)
    return policies.MULTI_CELL_POLICIES[args.policy](args.env)


if __name__ == "__main__":
    args = tyro.cli(Args)
    evaluation.run_policy(args, make_policy(args), args.policy)
