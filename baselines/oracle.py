"""Non-causal oracle: sees all K channel gains of the episode in advance and solves the power allocation.

    python baselines/oracle.py

An upper reference, not a causal policy: it reads the future blocks' gains from the environment
(``PowerControlVectorEnv.episode_gains``), which no real transmitter knows. It is MMSE water-filling
(``meg_gym.policies.mmse_water_filling``): the allocation that minimises the seed symbols' mean squared error
under the energy budget. That is optimal for the symbol MSE, not necessarily for the image PSNR the decoder
then produces: if a learned policy beats it, the MSE model is what it beat.
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
    bisection_steps: int = 100
    """bisection iterations on the multiplier (geometric, so 100 is far below float precision)"""


if __name__ == "__main__":
    args = tyro.cli(Args)
    evaluation.run_policy(args, policies.oracle(args.env, args.bisection_steps), "oracle")
