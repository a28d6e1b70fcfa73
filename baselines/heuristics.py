"""Hand-made causal power policies: truncated channel inversion, and a threshold (greedy) policy.

    python baselines/heuristics.py --policy channel-inversion
    python baselines/heuristics.py --policy threshold --threshold-db 0 --boost 2

Both read only the observation: the current block's peak receive SNR (entry 0) and the fair share (entry 3,
energy left / (blocks left x peak block energy)). The block's gain relative to its mean is
``g = 10^((obs[0] - mean peak SNR in dB) / 10)``, where the mean peak SNR is ``peak_snr_db - path_loss_db``
(with unit-mean fading; the Rician LOS and Nakagami models keep E|h|^2 = 1).

- channel-inversion: power ``fair_share / g`` so that every block arrives at about the same SNR, except blocks
  faded deeper than ``--cutoff-db`` below the mean, which get nothing (truncated channel inversion, A.
  Goldsmith, *Wireless Communications*, 2005, Sec. 4.2.4).
- threshold: ``boost x fair_share`` on blocks at least ``--threshold-db`` above the mean gain, and
  ``fair_share / boost`` on the others: spend more where the channel is good. The last block always gets
  everything that is left.

Results go to runs/{run_name}/eval.json in the shared schema (test prompts, fixed seeds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

from meg_gym import evaluation

PEAK_SNR_DB, BLOCKS_LEFT, FAIR_SHARE = 0, 2, 3  # observation indices


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


def make_policy(args: Args):
    mean_peak_snr_db = args.env.peak_snr_db - args.env.path_loss_db

    def policy(obs: np.ndarray, env) -> np.ndarray:
        relative_db = obs[:, PEAK_SNR_DB] - mean_peak_snr_db
        share = obs[:, FAIR_SHARE]
        if args.policy == "channel-inversion":
            power = np.where(relative_db >= args.cutoff_db, share / 10 ** (relative_db / 10), 0.0)
        else:
            power = np.where(relative_db >= args.threshold_db, share * args.boost, share / args.boost)
        last = obs[:, BLOCKS_LEFT] * args.env.num_blocks <= 1.0 + 1e-6
        power = np.where(last, share, power)
        return np.clip(power, 0.0, 1.0)[:, None]

    return policy


if __name__ == "__main__":
    args = tyro.cli(Args)
    evaluation.run_policy(args, make_policy(args), args.policy)
