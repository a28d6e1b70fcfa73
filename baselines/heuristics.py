"""Hand-made causal power policies: truncated channel inversion, and a threshold (greedy) policy.

    python baselines/heuristics.py --policy channel-inversion
    python baselines/heuristics.py --policy threshold --threshold-db 0 --boost 2

Both read only the observation: the current block's peak receive SNR and the fair share of the energy left.
The policies themselves are ``meg_gym.policies.channel_inversion`` and ``meg_gym.policies.threshold`` (their
docstrings say how each spends the energy); this file evaluates one under the protocol. Results go to
runs/{run_name}/eval.json in the shared schema (test prompts, fixed seeds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from meg_gym import evaluation, policies


@dataclass
class Args(evaluation.PolicyRunArgs):
    exp_name: str = Path(__file__).stem
    """name of this experiment"""
    policy: Literal["channel-inversion", "threshold"] = "threshold"
    """which heuristic"""
    cutoff_db: float = -10.0
    """channel inversion: blocks this far below the mean gain (dB) get no power"""
    threshold_db: float = 0.0
    """threshold policy: gain (dB relative to the mean) from which a block counts as good"""
    boost: float = 2.0
    """threshold policy: good blocks get boost x the fair share, the others fair share / boost"""


def make_policy(args: Args) -> policies.Policy:
    if args.policy == "channel-inversion":
        return policies.channel_inversion(args.env, args.cutoff_db)
    return policies.threshold(args.env, args.threshold_db, args.boost)


if __name__ == "__main__":
    args = tyro.cli(Args)
    evaluation.run_policy(args, make_policy(args), args.policy)
