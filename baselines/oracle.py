"""Non-causal oracle: sees all K channel gains of the episode in advance and solves the power allocation.

    python baselines/oracle.py

An upper reference, not a causal policy: it reads the future blocks' gains from the environment
(``PowerControlVectorEnv.episode_gains``), which no real transmitter knows.

The model it optimises. After MMSE equalisation, a seed symbol sent in block k at power p_k has mean squared
error 1 / (1 + a_k p_k), a_k = |h_k|^2 / N0 (``meg_gym.channel.mmse_mse``). The oracle minimises the mean of
that error over the seed's symbols, every block carrying the same number of symbols,

    minimise  sum_k 1 / (1 + a_k p_k)   subject to   sum_k p_k <= P,   0 <= p_k <= P_peak,

with P the budget's energy divided by the energy of one block at unit power. The problem is convex; the KKT
conditions give p_k = clip((sqrt(a_k / lambda) - 1) / a_k, 0, P_peak), a water-filling in which blocks too
weak for their cost get nothing and strong blocks saturate. The multiplier lambda is found by bisection. It
is optimal for the symbol MSE, not necessarily for the image PSNR the decoder then produces: if a learned
policy beats it, the MSE model is what it beat.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from meg_gym import evaluation

BLOCKS_LEFT = 2  # observation index


@dataclass
class Args(evaluation.PolicyRunArgs):
    exp_name: str = Path(__file__).stem
    """name of this experiment"""
    bisection_steps: int = 100
    """bisection iterations on the multiplier (geometric, so 100 is far below float precision)"""


def mmse_water_filling(a: np.ndarray, total: np.ndarray, peak: float, steps: int = 100) -> np.ndarray:
    """Powers (N, K) minimising sum_k 1/(1 + a_k p_k) s.t. sum_k p_k <= total (N,), 0 <= p_k <= peak."""
    a = np.maximum(np.asarray(a, dtype=np.float64), 1e-300)

    def powers(lam: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", over="ignore"):  # a tiny multiplier means "as much as allowed"
            return np.clip((np.sqrt(a / lam[:, None]) - 1.0) / a, 0.0, peak)

    everything = np.full(a.shape, peak)
    fits = everything.sum(1) <= total
    lo = np.full(len(a), 1e-300)  # tiny multiplier: every block at peak, over the budget
    hi = a.max(1) + 1e-300  # at lambda >= max a_k no block is worth any power
    for _ in range(steps):
        mid = np.sqrt(lo * hi)
        over = powers(mid).sum(1) > total
        lo, hi = np.where(over, mid, lo), np.where(over, hi, mid)
    return np.where(fits[:, None], everything, powers(hi))


def make_policy(num_blocks: int, bisection_steps: int):
    plan: dict[str, np.ndarray] = {}

    def policy(obs: np.ndarray, env) -> np.ndarray:
        venv = env.unwrapped
        block = np.rint((1.0 - obs[:, BLOCKS_LEFT]) * num_blocks).astype(int)
        starting = block == 0
        if "fractions" not in plan or len(plan["fractions"]) != len(obs):
            plan["fractions"] = np.zeros((len(obs), num_blocks))
        if starting.any():
            link = venv.link_parameters()
            a = np.abs(venv.episode_gains()[starting]) ** 2 / link["noise_power"]
            unit_block_energy = link["symbols_per_block"] * link["symbol_duration_s"]
            total = np.full(int(starting.sum()), link["energy_budget"] / unit_block_energy)
            powers = mmse_water_filling(a, total, link["peak_power"], bisection_steps)
            plan["fractions"][starting] = powers / link["peak_power"]
        return plan["fractions"][np.arange(len(obs)), np.minimum(block, num_blocks - 1)][:, None]

    return policy


if __name__ == "__main__":
    args = tyro.cli(Args)
    evaluation.run_policy(args, make_policy(args.env.num_blocks, args.bisection_steps), "oracle")
