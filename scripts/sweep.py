"""Run algorithms x seeds x environment configurations as parallel trials on Ray; resumable; one JSON line each.

    pip install -e ".[sweep]"
    python scripts/sweep.py --env MEG-PowerControl-v0 --algo ppo --seeds 3 --total-timesteps 100000 --out runs/sweeps/ppo
    python scripts/sweep.py ... --resume                              # continue an interrupted sweep
    python scripts/sweep.py --algo ppo ddpg --env-config '{}' '{"budget_fraction": 0.1}' --out runs/sweeps/budgets
    python scripts/sweep.py --address auto ...                        # on a cluster started with `ray start`
    python scripts/leaderboard.py runs/sweeps/ppo/results.jsonl       # the leaderboard from a sweep's rows

Tuning (equal trial budget per algorithm; selected on validation prompts held out of train, reported on test):

    python scripts/sweep.py --algo ppo ddpg td3 sac --search-trials 8 --seeds 1 --out runs/tune/search
    python scripts/sweep.py --algo ppo ddpg td3 sac --hparams-from runs/tune/search --seeds 3 --out runs/tune/tuned

Each trial runs the algorithm's baselines/ file in DIR/trials/{key}/ and the driver appends its row (env_id, algo,
seed, full config, hyperparameters, commit, cache_sha256, test PSNR and the leaderboard's figures, wall time,
the eval.json body) to DIR/results.jsonl. Retries, resume, tuning and security: meg_gym.sweep's docstring and
docs/sweeps.md.
"""

import tyro

from meg_gym.sweep import Args, main

if __name__ == "__main__":
    main(tyro.cli(Args))
