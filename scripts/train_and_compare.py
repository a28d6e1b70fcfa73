"""README's main job: train PPO on MEG-PowerControl-v0, then compare it with static power and two non-causal references.

    python scripts/train_and_compare.py                 # see README.md for the time it takes and where it was measured
    python scripts/train_and_compare.py --ppo-timesteps 50000 --eval-episodes 256   # a quick look

Each baseline runs as its own script (baselines/*.py) and writes runs/{run_name}/eval.json; this script then
prints their test-split figures side by side. All are evaluated on the same held-out prompts with the same
episode seeds, so the per-episode differences are paired; the table gives the mean difference to static power
with its standard error. The two water-fillings know every block's gain in advance; neither is a bound on the
image quality. The best-known reference (a search on the actual reward, minutes on a CPU) is in
docs/results/leaderboard.md: ``python baselines/non_causal.py --policy best-known`` measures it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Args:
    ppo_timesteps: int = 300_000
    """PPO training steps (README.md says how long the default takes and what it reached)"""
    seed: int = 1
    """PPO's training seed"""
    eval_episodes: int = 1024
    """test-split episodes per policy"""
    runs_dir: Path = Path("runs")
    """where the baselines write their runs (relative to the working directory)"""


def run(script: str, run_name: str, extra: list[str]) -> dict:
    cmd = [sys.executable, str(ROOT / "baselines" / script), "--run-name", run_name, *extra]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)
    return json.loads((Path("runs") / run_name / "eval.json").read_text())


def main(args: Args) -> None:
    stamp = int(time.time())
    evals = ["--eval-episodes", str(args.eval_episodes)]
    t0 = time.time()
    results = {
        "PPO": run(
            "ppo_continuous_action.py",
            f"MEG-PowerControl-v0__ppo__{args.seed}__{stamp}",
            ["--total-timesteps", str(args.ppo_timesteps), "--seed", str(args.seed), "--save-model", *evals],
        ),
        "static power": run("static_power.py", f"MEG-PowerControl-v0__static__{stamp}", evals),
        **{
            f"{label} water-filling (non-causal)": run(
                "non_causal.py",
                f"MEG-PowerControl-v0__{kind}-water-filling__{stamp}",
                ["--policy", f"{kind}-water-filling", *evals],
            )  # fmt: skip
            for kind, label in (("capacity", "capacity"), ("mmse", "MMSE"))
        },
    }
    static = np.asarray(results["static power"]["psnr"]["per_episode"])
    print(f"\nMEG-PowerControl-v0, test prompts, {args.eval_episodes} episodes, {time.time() - t0:.0f} s in all\n")
    print("| policy | PSNR (dB) | vs static (dB, paired) | SSIM | energy used / budget |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        psnr = np.asarray(r["psnr"]["per_episode"])
        diff = psnr - static
        sem = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
        print(
            f"| {name} | {psnr.mean():.2f} | {diff.mean():+.2f} +- {sem:.2f} | {r['ssim']['mean']:.3f} | "
            f"{r['energy_used']['mean'] / r['energy_budget']:.2f} |"
        )


if __name__ == "__main__":
    main(tyro.cli(Args))
