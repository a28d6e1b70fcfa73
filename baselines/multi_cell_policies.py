"""Fixed policies for MEG-MultiCell-v0: static power, every agent at full power, and an SINR threshold.

    python baselines/multi_cell_policies.py --policy static
    python baselines/multi_cell_policies.py --policy full-power          # the interference (and budget) trap
    python baselines/multi_cell_policies.py --policy sinr-threshold --env.num-links 6

Each agent reads only its own observation (entries: own peak SNR in dB, last block's interference-to-noise
ratio in dB at its UE, energy left, blocks left, fair share):

- static: the fair share of the energy left on every block (equal energy per block);
- full-power: peak power on every block until the budget runs out, as a selfish agent that ignores the budget
  and the others would; with the default budget (0.05 of all 8 blocks at peak) it spends everything on the
  first block, at 40% of peak power;
- sinr-threshold: an SINR estimate from the current own gain and the last interference,
  ``own_snr_db - 10 log10(1 + INR)``; ``boost x`` the fair share above ``--threshold-db``, ``1 / boost`` below,
  and everything left on the last block.

Results go to runs/{run_name}/eval.json in the shared schema (test prompts, fixed seeds), with every agent's
figures under ``per_agent``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

from meg_gym import evaluation
from meg_gym.envs.multi_cell import MultiCellConfig

OWN_SNR_DB, LAST_INR_DB, BLOCKS_LEFT, FAIR_SHARE = 0, 1, 3, 4  # observation indices


@dataclass
class Args(evaluation.PolicyRunArgs):
    exp_name: str = Path(__file__).stem
    """name of this experiment"""
    env_id: str = evaluation.MULTI_CELL_ID
    """the environment id"""
    env: MultiCellConfig = field(default_factory=MultiCellConfig)
    """environment settings (the split is always "test" for evaluation)"""
    policy: Literal["static", "full-power", "sinr-threshold"] = "static"
    """which policy every agent follows"""
    threshold_db: float = 10.0
    """sinr-threshold: estimated SINR (dB) from which a block counts as good"""
    boost: float = 2.0
    """sinr-threshold: good blocks get boost x the fair share, the others fair share / boost"""


def make_policy(args: Args):
    num_blocks = args.env.num_blocks

    def policy(obs: np.ndarray, env) -> np.ndarray:
        share = obs[..., FAIR_SHARE]
        if args.policy == "static":
            return np.clip(share, 0.0, 1.0)
        if args.policy == "full-power":
            return np.ones_like(share)
        sinr_db = obs[..., OWN_SNR_DB] - 10.0 * np.log10(1.0 + 10.0 ** (obs[..., LAST_INR_DB] / 10.0))
        power = np.where(sinr_db >= args.threshold_db, share * args.boost, share / args.boost)
        last = obs[..., BLOCKS_LEFT] * num_blocks <= 1.0 + 1e-6
        return np.clip(np.where(last, share, power), 0.0, 1.0)

    return policy


if __name__ == "__main__":
    args = tyro.cli(Args)
    evaluation.run_policy(args, make_policy(args), args.policy)
