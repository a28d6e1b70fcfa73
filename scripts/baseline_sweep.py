"""Train every learner for several seeds, evaluate every baseline, and write docs/results/baseline_results.md (+ .json).

    python scripts/baseline_sweep.py                                  # 3 seeds, the default step counts
    python scripts/baseline_sweep.py --seeds 1 --learners ppo --timesteps.ppo 20000   # a smoke run
    python scripts/baseline_sweep.py --prefix bf0.1 --env budget-fraction 0.1 --no-write

Runs go to runs/{prefix}__{algo}__{seed} (fixed policies: runs/{prefix}__{name}); a run whose eval.json already exists is not redone, so an
interrupted sweep continues where it stopped. The table gives, per policy, the mean over seeds of the
test-split mean PSNR, the spread across seeds (min..max and the standard deviation), the paired difference
to static power, and each learner's wall time per 100k environment steps (training only; the machine is
recorded). The sweep itself is meg_gym.baseline_runs.
"""

import tyro

from meg_gym.baseline_runs import Args, main

if __name__ == "__main__":
    main(tyro.cli(Args))
