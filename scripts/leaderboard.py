"""Collect eval.json files into the leaderboard: docs/results/leaderboard.md, docs/results/leaderboard.json and a figure.

    python scripts/leaderboard.py runs/                       # add every eval.json under runs/ and rebuild
    python scripts/leaderboard.py runs/eval__mine__*          # add a submission (one folder per training seed)
    python scripts/leaderboard.py --fresh runs/               # rebuild from these files only

The records, the pooling (one table per environment, configuration and latent cache), rliable's intervals
and the performance profile are meg_gym.leaderboard's; its docstring explains them.
"""

import tyro

from meg_gym.leaderboard import Args, main

if __name__ == "__main__":
    main(tyro.cli(Args))
