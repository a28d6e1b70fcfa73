"""Non-causal references for MEG-PowerControl-v0: they see every block's gain of the episode in advance.

    python baselines/non_causal.py --policy best-known               # search on the actual reward (minutes)
    python baselines/non_causal.py --policy mmse-water-filling       # was "oracle"
    python baselines/non_causal.py --policy capacity-water-filling

References, not causal policies: they read the future blocks' gains from the environment
(``PowerControlVectorEnv.episode_gains``), which no real transmitter knows. None of them is a bound on the image
quality:

- ``mmse-water-filling`` minimises the seed symbols' mean squared error under the energy budget
  (``meg_gym.policies.mmse_water_filling``); until 2026-11-29 it was called the "oracle".
- ``capacity-water-filling`` maximises the Shannon capacity of the blocks (``meg_gym.policies.capacity_water_filling``).
- ``best-known`` starts from the best of those two and static power and hill-climbs on the realised image quality
  through the real decoder, averaged over noise draws of its own (``meg_gym.policies.best_known``). It is the
  best allocation known, the 1 of the leaderboard's normalised score; a longer search could find a better one.
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
    policy: Literal["best-known", "mmse-water-filling", "capacity-water-filling"] = "best-known"
    """which reference"""
    bisection_steps: int = 100
    """water-filling: bisection iterations on the multiplier (100 is far below float precision)"""
    draws: int = 4
    """best-known: noise draws per candidate allocation (its own draws, never the evaluation's)"""
    iterations: int = 24
    """best-known: hill-climbing moves tried per episode"""
    search_seed: int = 0
    """best-known: seed of the search (combined with each episode's gains)"""


def make_policy(args: Args) -> policies.Policy:
    if args.policy == "best-known":
        return policies.best_known(args.env, args.draws, args.iterations, args.search_seed)
    if args.policy == "capacity-water-filling":
        return policies.capacity_water_filling_policy(args.env, args.bisection_steps)
    return policies.mmse_water_filling_policy(args.env, args.bisection_steps)


if __name__ == "__main__":
    args = tyro.cli(Args)
    evaluation.run_policy(args, make_policy(args), args.policy)
