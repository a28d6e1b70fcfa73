"""MEG-MultiCell-v0 baselines: IPPO (several seeds) vs static power vs every agent at full power; writes
docs/results/multi_cell_results.md (+ .json) with the mean PSNR per agent and overall, and steps per second.

    python scripts/multi_cell_results.py                         # 3 IPPO seeds of 100k steps (timed on the page)
    python scripts/multi_cell_results.py --seeds 1 --ippo-steps 4096 --eval-episodes 64 --output /tmp/mc.md

Runs go to runs/multicell__{policy}[__{seed}] and are reused when their eval.json exists.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro

from meg_gym import baseline_runs, evaluation
from meg_gym.cache import cache_fingerprint

FIXED = {
    "static": ["--policy", "static"],
    "full-power": ["--policy", "full-power"],
    "sinr-threshold": ["--policy", "sinr-threshold"],
}


@dataclass
class Args:
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    """IPPO training seeds"""
    ippo_steps: int = 100_000
    """IPPO environment steps per seed (each moves all N agents of 16 episodes by one block)"""
    eval_episodes: int = 1024
    """test-split episodes per evaluation"""
    speed_seconds: float = 5.0
    """duration of each steps-per-second measurement"""
    output: Path = Path("docs/results/multi_cell_results.md")


def steps_per_second(seconds: float) -> dict[str, float]:
    """Environment steps per second with random actions: the PettingZoo env, and the batched env of 64."""
    from meg_gym.envs.multi_cell import MultiCellConfig, MultiCellVectorEnv, parallel_env
    from meg_gym.link import receiver_for

    # steady state: every prompt's reference image decoded once (an env does that on first use)
    receiver_for(MultiCellConfig(split="train").link_config).decode_all_references()
    rng = np.random.default_rng(0)
    env = parallel_env()
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if not env.agents:
            env.reset()
        env.step({a: rng.uniform(0, 1, 1) for a in env.agents})
        steps += 1
    parallel = steps / (time.perf_counter() - start)
    vec = MultiCellVectorEnv(num_envs=64)
    vec.reset(seed=0)
    for _ in range(16):  # warm-up: reference images of the first episodes
        vec.step(rng.uniform(0, 1, (64, vec.num_agents)))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        vec.step(rng.uniform(0, 1, (64, vec.num_agents)))
        steps += 64
    batched = steps / (time.perf_counter() - start)
    n = vec.num_agents
    return {"parallel_env": parallel, "parallel_env_agent_steps": parallel * n, "vector_64": batched,
            "vector_64_agent_steps": batched * n}  # fmt: skip


def main(args: Args) -> None:
    evals = ["--eval-episodes", str(args.eval_episodes)]
    results: dict[str, list[dict]] = {}
    wall = []
    for name, extra in FIXED.items():
        data, _ = baseline_runs.run("multi_cell_policies.py", f"multicell__{name}", extra + evals)
        results[name] = [data]
    for seed in args.seeds:
        extra = ["--seed", str(seed), "--total-timesteps", str(args.ippo_steps), *evals]
        data, train_s = baseline_runs.run("ippo_multi_cell.py", f"multicell__ippo__{seed}", extra)
        results.setdefault("ippo", []).append(data)
        wall.append(train_s / args.ippo_steps * 100_000)
    speed = steps_per_second(args.speed_seconds)
    static = np.asarray(results["static"][0]["psnr"]["per_episode"])
    rows = []
    for name, runs in results.items():
        means = np.array([d["psnr"]["mean"] for d in runs])
        per_agent = np.array([d["per_agent"]["psnr"]["mean"] for d in runs])  # (runs, N)
        diffs = np.array([(np.asarray(d["psnr"]["per_episode"]) - static).mean() for d in runs])
        rows.append(
            {
                "policy": name,
                "runs": len(runs),
                "psnr": float(means.mean()),
                "psnr_seed_min": float(means.min()),
                "psnr_seed_max": float(means.max()),
                "per_agent_psnr": per_agent.mean(axis=0).tolist(),
                "vs_static_per_seed": diffs.tolist(),
                "energy_fraction": float(np.mean([d["energy_used"]["mean"] / d["energy_budget"] for d in runs])),
            }
        )
    config = results["static"][0]["env_config"]
    result = {"rows": rows, "steps_per_second": speed, "ippo_wall_s_per_100k": float(np.mean(wall)),
              "ippo_steps": args.ippo_steps, "seeds": args.seeds, "eval_episodes": args.eval_episodes,
              "config": config, "commit": evaluation.git_commit(),
              "cache_sha256": cache_fingerprint(),
              "machine": platform.processor() or platform.machine()}  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(result, indent=1))
    n = config["num_links"]
    lines = [
        "# MEG-MultiCell-v0: baselines",
        "",
        f"Made by `python scripts/multi_cell_results.py` at commit `{result['commit']}` on latent cache "
        f"`{result['cache_sha256'][:12]}`, on a 2-core CPU machine. "
        f"Default configuration: {n} links in a {config['area_m']:g} m square, UEs {config['ue_min_distance_m']:g}-"
        f"{config['ue_max_distance_m']:g} m from their server, path-loss exponent {config['path_loss_exponent']:g}, "
        f"peak SNR {config['peak_snr_db']:g} dB at {config['reference_distance_m']:g} m, Rayleigh block fading, "
        f"{config['num_blocks']} blocks, budget {config['budget_fraction']:g} of all blocks at peak power per agent, "
        f"own-quality rewards. IPPO: {args.ippo_steps:,} environment steps per seed (x {n} agents), seeds "
        f"{args.seeds}. Every policy on the same {args.eval_episodes} test episodes. "
        "Data: [multi_cell_results.json](multi_cell_results.json).",
        "",
        "| policy | runs | mean PSNR (dB), all agents | spread across seeds | "
        + " | ".join(f"es_{i}" for i in range(n))
        + " | vs static (per seed) | energy / budget |",
        "|---|---|---|---|" + "---|" * n + "---|---|",
    ]
    for r in rows:
        spread = f"{r['psnr_seed_min']:.2f}..{r['psnr_seed_max']:.2f}" if r["runs"] > 1 else "-"
        agents = " | ".join(f"{p:.2f}" for p in r["per_agent_psnr"])
        diffs = ", ".join(f"{d:+.2f}" for d in r["vs_static_per_seed"])
        lines.append(
            f"| {r['policy']} | {r['runs']} | {r['psnr']:.2f} | {spread} | {agents} | {diffs} | "
            f"{r['energy_fraction']:.2f} |"
        )
    lines += [
        "",
        "Per-agent columns are each agent's own mean PSNR over the test episodes (agents are exchangeable: "
        "positions are drawn afresh every episode, so the columns differ only by chance).",
        "",
        "Other configurations of MEG-MultiCell-v0 (for instance the earlier default budget of 0.25) are on the "
        "[leaderboard](leaderboard.md), one table per configuration and latent cache.",
        "",
        "## Speed",
        "",
        "| environment | environment steps/s | agent steps/s |",
        "|---|---|---|",
        f"| PettingZoo parallel env (one episode) | {speed['parallel_env']:,.0f} | {speed['parallel_env_agent_steps']:,.0f} |",
        f"| MultiCellVectorEnv(64) | {speed['vector_64']:,.0f} | {speed['vector_64_agent_steps']:,.0f} |",
        "",
        f"IPPO training: {result['ippo_wall_s_per_100k'] / 60:.1f} min per 100k environment steps.",
        "",
    ]
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main(tyro.cli(Args))
