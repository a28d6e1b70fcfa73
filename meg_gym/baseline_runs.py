"""The baseline sweep: run every baseline script (or reuse its run), collect the results, write the table.

``run`` launches one of the repository's baselines/*.py as a subprocess into runs/{run_name} and returns its
eval.json with the training wall time; a run whose eval.json and wall_time.json exist is reused, not redone.
``collect`` does so for every fixed policy (FIXED) and every learner (LEARNERS) and seed of ``Args``;
``main(Args(...))`` does what ``python scripts/baseline_sweep.py`` does. The baselines are scripts of the
source checkout, so running one needs the repository (a clone), not only the installed package.

Runs go to runs/{prefix}__{algo}__{seed} (fixed policies: runs/{prefix}__{name}), so an interrupted sweep
continues where it stopped. The table gives, per policy, the mean over seeds of the test-split mean PSNR,
the spread across seeds (min..max and the standard deviation), the paired difference to static power, and
each learner's wall time per 100k environment steps (training only; the machine is recorded).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import meg_gym

# meg_gym.cache (torch) is imported in main, which uses it

LEARNERS = {
    "ppo": "ppo_continuous_action.py",
    "ddpg": "ddpg_continuous_action.py",
    "td3": "td3_continuous_action.py",
    "sac": "sac_continuous_action.py",
}
FIXED = {
    "static": ("static_power.py", []),
    "channel-inversion": ("heuristics.py", ["--policy", "channel-inversion"]),
    "threshold": ("heuristics.py", ["--policy", "threshold"]),
    "mmse-water-filling": ("non_causal.py", ["--policy", "mmse-water-filling"]),
    "capacity-water-filling": ("non_causal.py", ["--policy", "capacity-water-filling"]),
    "best-known": ("non_causal.py", ["--policy", "best-known"]),
}


@dataclass
class Args:
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    """training seeds of each learner"""
    learners: list[str] = field(default_factory=lambda: list(LEARNERS))
    """which learners to train"""
    timesteps: dict[str, int] = field(
        default_factory=lambda: {"ppo": 200_000, "ddpg": 50_000, "td3": 50_000, "sac": 50_000}
    )
    """training steps per learner"""
    eval_episodes: int = 1024
    """test-split episodes per evaluation"""
    env: dict[str, str] = field(default_factory=dict)
    """environment settings for every baseline, e.g. --env budget-fraction 0.1 peak-snr-db 0"""
    prefix: str = "sweep"
    """runs go to runs/{prefix}__..."""
    output: Path = Path("docs/results/baseline_results.md")
    write: bool = True
    """write --output (and its .json); --no-write only runs and collects"""


def baselines_dir() -> Path:
    """The checkout's baselines/ folder (beside meg_gym/); a clear error if this copy of meg_gym has none."""
    folder = Path(meg_gym.__file__).resolve().parent.parent / "baselines"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} not found: the baseline scripts live in the meg-gym repository, not in the installed "
            "package; run from a clone (pip install -e .)"
        )
    return folder


def run(script: str, run_name: str, extra: list[str]) -> tuple[dict, float]:
    """Run baselines/{script} into runs/{run_name} (or reuse that run); its eval.json and training seconds."""
    path = Path("runs") / run_name / "eval.json"
    timing = path.with_name("wall_time.json")
    if path.exists() and timing.exists():
        return json.loads(path.read_text()), json.loads(timing.read_text())["train_s"]
    cmd = [sys.executable, str(baselines_dir() / script), "--run-name", run_name, *extra]
    print("$", " ".join(cmd[1:]), flush=True)
    start = time.time()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    total = time.time() - start
    eval_s = next((float(x.split()[-1]) for x in out.splitlines() if x.startswith("eval_seconds")), 0.0)
    timing.write_text(json.dumps({"total_s": total, "train_s": total - eval_s}))
    return json.loads(path.read_text()), total - eval_s


def collect(args: Args) -> tuple[dict[str, list[dict]], dict[str, list[float]]]:
    """Run (or reuse) every baseline; eval.json bodies per policy, and each learner's seconds per 100k steps."""
    env_flags = [x for key, value in args.env.items() for x in (f"--env.{key.replace('_', '-')}", str(value))]
    evals = ["--eval-episodes", str(args.eval_episodes), *env_flags]
    results: dict[str, list[dict]] = {}
    wall: dict[str, list[float]] = {}
    for name, (script, extra) in FIXED.items():
        data, _ = run(script, f"{args.prefix}__{name}", extra + evals)
        results[name] = [data]
    for algo in args.learners:
        steps = args.timesteps[algo]
        for seed in args.seeds:
            extra = ["--seed", str(seed), "--total-timesteps", str(steps), *evals]
            data, train_s = run(LEARNERS[algo], f"{args.prefix}__{algo}__{seed}", extra)
            results.setdefault(algo, []).append(data)
            wall.setdefault(algo, []).append(train_s / steps * 100_000)
    return results, wall


def main(args: Args) -> None:
    """Run the sweep and, unless --no-write, write --output (the table) and its .json."""
    from meg_gym.cache import cache_fingerprint

    results, wall = collect(args)
    if not args.write:
        return
    per_episode = {name: [np.asarray(d["psnr"]["per_episode"]) for d in runs] for name, runs in results.items()}
    static = per_episode["static"][0]
    rows = []
    for name, runs in per_episode.items():
        means = np.array([r.mean() for r in runs])
        diffs = np.array([(r - static).mean() for r in runs])
        rows.append(
            {
                "policy": name,
                "seeds": len(runs),
                "psnr_mean": float(means.mean()),
                "psnr_seed_std": float(means.std(ddof=1)) if len(runs) > 1 else 0.0,
                "psnr_seed_min": float(means.min()),
                "psnr_seed_max": float(means.max()),
                "vs_static": float(diffs.mean()),
                "vs_static_per_seed": diffs.tolist(),
                "wall_s_per_100k": float(np.mean(wall[name])) if name in wall else None,
            }
        )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"rows": rows, "timesteps": args.timesteps, "seeds": args.seeds, "commit": commit,
              "cache_sha256": cache_fingerprint(), "machine": platform.processor() or platform.machine(), "eval_episodes": args.eval_episodes}  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = [
        "# Baselines on MEG-PowerControl-v0 (default settings)",
        "",
        f"Made by `python scripts/baseline_sweep.py` at commit `{commit}` on latent cache "
        f"`{result['cache_sha256'][:12]}`, on a 2-core CPU machine; "
        f"training steps {args.timesteps}, seeds {args.seeds}; each policy evaluated on {args.eval_episodes} "
        "test-split episodes with the same seeds. Data: [baseline_results.json](baseline_results.json).",
        "",
        "| policy | seeds | test PSNR (dB), mean over seeds | spread across seeds (min..max, std) | vs static (dB, per seed) | train wall time per 100k steps |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        spread = (
            f"{r['psnr_seed_min']:.2f}..{r['psnr_seed_max']:.2f}, {r['psnr_seed_std']:.2f}" if r["seeds"] > 1 else "-"
        )
        per_seed = ", ".join(f"{d:+.2f}" for d in r["vs_static_per_seed"])
        wall_s = f"{r['wall_s_per_100k'] / 60:.1f} min" if r["wall_s_per_100k"] else "-"
        lines.append(f"| {r['policy']} | {r['seeds']} | {r['psnr_mean']:.2f} | {spread} | {per_seed} | {wall_s} |")
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
