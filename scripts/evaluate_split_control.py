"""MEG-SplitControl-v0's references on the test sessions, the planner's bound, and the gaps between them.

    python scripts/evaluate_split_control.py                  # writes docs/results/split_control.md (+ .json) and
                                                              # runs/split_control/<policy>/eval.json
    python scripts/evaluate_split_control.py --episodes 128 --output /tmp/sc.md   # a quick look

Every fixed policy of the environment (``best-fixed``, ``time-sharing``, ``myopic``, ``lagrangian-greedy`` and the
non-causal ``planner``) runs under the held-out protocol of :mod:`meg_gym.evaluation` (test prompts, session j
seeded with 1,000,000 + j), so all meet the same channels, prompts and deadlines; differences are paired. Then the
planner's Lagrangian bound (:class:`meg_gym.envs.split_control.planning.DualPlanner`) is computed on those same
sessions: no policy whose costs meet the limits on them can exceed it in expectation. The eval.json files feed the
leaderboard (``python scripts/leaderboard.py runs/split_control``).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro

from meg_gym import evaluation
from meg_gym.config import SplitControlConfig
from meg_gym.registry import environment

ENV_ID = "MEG-SplitControl-v0"


@dataclass
class Args:
    policies: tuple[str, ...] = ("best-fixed", "time-sharing", "myopic", "lagrangian-greedy", "planner")
    episodes: int = 1024
    """test sessions per policy"""
    num_envs: int = 64
    runs_dir: Path = Path("runs/split_control")
    """where each policy's eval.json goes"""
    output: Path = Path("docs/results/split_control.md")
    env: SplitControlConfig = field(default_factory=SplitControlConfig)


def planner_bound(config: SplitControlConfig, episodes: int, num_envs: int) -> dict[str, float]:
    """The Lagrangian bound on the evaluation sessions (multipliers minimising it on them)."""
    from meg_gym.envs.split_control.env import SplitControlVectorEnv
    from meg_gym.envs.split_control.planning import DualPlanner

    env = SplitControlVectorEnv(num_envs=num_envs, config=config, split="test")
    previews = []
    for start in range(0, episodes, num_envs):
        env.reset(seed=evaluation.EVAL_SEED + start)
        previews += [env.preview(i) for i in range(min(num_envs, episodes - start))]
    planner = DualPlanner(env.sessions, table=env.sessions.expected_table)  # the env's own expectation: a bound on it
    table = planner.session_values(previews)
    lam, bound = planner.fit(table)
    return {"bound": bound, "lambda_ue_energy": float(lam[0]), "lambda_deadline_miss": float(lam[1])}


def main(args: Args) -> dict:
    start = time.time()
    spec = environment(ENV_ID)
    fixed = spec.fixed_policies()
    kwargs = evaluation.env_kwargs(args.env)
    results, per_episode = {}, {}
    for name in args.policies:
        t0 = time.time()
        policy = fixed[name](args.env)
        result = evaluation.evaluate_policy(policy, ENV_ID, kwargs, args.episodes, num_envs=args.num_envs)
        evaluation.write_eval(args.runs_dir / name / "eval.json", result, name, name,
                              {"env": args.env.to_dict(), "source": {"kind": "fixed"}})  # fmt: skip
        per_episode[name] = {k: np.array(result[k]["per_episode"]) for k in ("psnr", "ue_energy", "deadline_miss")}
        limits = result["cost_limits"]
        results[name] = {
            "psnr": evaluation.mean_ci(per_episode[name]["psnr"]),
            "ssim": result["ssim"]["mean"],
            "es_energy_fraction": result["energy_used"]["mean"] / result["energy_budget"],
            "costs": {c: evaluation.mean_ci(per_episode[name][c]) for c in limits},
            "within_limits": {c: bool(per_episode[name][c].mean() <= limits[c] + 1e-9) for c in limits},
            "wall_s": time.time() - t0,
        }
        print(f"{name}: PSNR {results[name]['psnr'][0]:.2f} dB, UE energy {results[name]['costs']['ue_energy'][0]:.1f} "
              f"J, misses {results[name]['costs']['deadline_miss'][0]:.2f} ({time.time() - t0:.0f} s)", flush=True)  # fmt: skip
    gaps = {}
    if "planner" in per_episode:
        for other in per_episode:
            if other != "planner":
                gaps[f"planner - {other}"] = evaluation.mean_ci(
                    per_episode["planner"]["psnr"] - per_episode[other]["psnr"]
                )
    t0 = time.time()
    bound = planner_bound(args.env, args.episodes, args.num_envs)
    bound["wall_s"] = time.time() - t0
    print(f"planner bound: {bound['bound']:.2f} dB per request", flush=True)
    from meg_gym.cache import cache_fingerprint
    from meg_gym.envs.split_control.quality_table import QualityTable

    table = QualityTable.load("test", args.env.table_dir)
    grid = list(table.snr_db)
    codec = {
        f"{split} / {scheme}": {f"{snr:+g} dB": float(table.values["psnr"][:, i, j, grid.index(snr)].mean())
                                for snr in (-10.0, 0.0, 10.0)}
        for i, split in enumerate(table.split_steps)
        for j, scheme in enumerate(table.schemes)
    }  # fmt: skip
    report = {
        "codec_per_split_step": codec,
        "table": {k: table.meta.get(k) for k in ("command", "commit", "wall_s", "machine")}
        | {"prompts": table.num_prompts, "draws": table.num_draws, "snr_db": grid},
        "policies": results,
        "paired_gaps": gaps,
        "planner_bound": bound,
        "cost_limits": args.env.cost_limits,
        "episodes": args.episodes,
        "command": "python scripts/evaluate_split_control.py",
        "commit": evaluation.git_commit(),
        "cache_sha256": cache_fingerprint(args.env.cache_dir),
        "machine": platform.processor() or platform.machine(),
        "wall_s": time.time() - start,
        "env": args.env.to_dict(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.output.write_text(render(report))
    print(args.output.read_text())
    return report


def render(r: dict) -> str:
    def ci(v: list[float], digits: int = 2) -> str:
        return f"{v[0]:.{digits}f} [{v[1]:.{digits}f}, {v[2]:.{digits}f}]"

    limits = r["cost_limits"]
    lines = [
        "# MEG-SplitControl-v0: references, the planner's bound, and the gaps",
        "",
        f"Made by `{r['command']}` at commit `{r['commit']}` on latent cache `{r['cache_sha256'][:12]}` "
        f"({r['machine']}, {r['wall_s'] / 60:.1f} min), table fidelity, default settings, {r['episodes']} test sessions "
        "of 32 requests each (session j seeded with 1,000,000 + j, the same for every policy). Data: "
        "[split_control.json](split_control.json).",
        "",
        f"PSNR is the mean per request (dB), with a 95% interval over sessions. Costs are sums per session, against "
        f"their limits: UE energy {limits['ue_energy']:g} J, deadline misses {limits['deadline_miss']:g}. "
        "*ES energy* is the ES transmit energy used as a fraction of its budget (a hard limit).",
        "",
        "| policy | PSNR (dB) [95% CI] | SSIM | UE energy (J) [95% CI] | deadline misses [95% CI] | within limits | ES energy |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in sorted(r["policies"].items(), key=lambda kv: -kv[1]["psnr"][0]):
        ok = (
            "yes"
            if all(row["within_limits"].values())
            else "no: " + ", ".join(k for k, v in row["within_limits"].items() if not v)
        )
        lines.append(
            f"| {name} | {ci(row['psnr'])} | {row['ssim']:.3f} | {ci(row['costs']['ue_energy'], 1)} | "
            f"{ci(row['costs']['deadline_miss'])} | {ok} | {row['es_energy_fraction']:.2f} |"
        )
    b = r["planner_bound"]
    lines += [
        "",
        f"**Planner bound: {b['bound']:.2f} dB per request** (Lagrangian dual on these sessions, multipliers "
        f"{b['lambda_ue_energy']:.3g} per J of UE energy and {b['lambda_deadline_miss']:.3g} per miss). No policy "
        "that observes what the environment observes and whose mean costs on these sessions meet the limits can "
        "score more in expectation in table fidelity (see `meg_gym.envs.split_control.planning`). The played planner, "
        "like every reference, plans on the expected quality given each request's object count as estimated on the "
        "train prompts' table (the bound uses the test table's own), and follows its plan with the environment's "
        "energy levels, so it sits below the bound.",
        "",
        "Paired differences (same sessions), mean [95% CI]:",
        "",
        "| difference | PSNR (dB) |",
        "|---|---|",
    ]
    lines += [f"| {k} | {ci(v)} |" for k, v in r["paired_gaps"].items()]
    t = r["table"]
    lines += [
        "",
        "## The payload at every split step",
        "",
        f"Mean image PSNR (dB) after the UE's denoising steps, from the shipped quality table (test split, "
        f"{t['prompts']} prompts x {t['draws']} noise draws, AWGN; made by `{t['command']}` at commit "
        f"`{str(t['commit'])[:12]}`): what each scheme delivers at each split step. T = 20 steps; the UE runs "
        "20 - split.",
        "",
        "| split step / scheme | -10 dB | 0 dB | +10 dB |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {k} | " + " | ".join(f"{x:.2f}" for x in v.values()) + " |" for k, v in r["codec_per_split_step"].items()
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(tyro.cli(Args))
