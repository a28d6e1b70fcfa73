"""Mean PSNR against the UE battery allowance on MEG-SplitControl-v0: references and learners, one limit at a time.

    # the references at each limit (80 J is the default, already in runs/split_control)
    for L in 40 160; do python scripts/evaluate_split_control.py --env.ue-energy-limit-j $L \
        --runs-dir runs/cost_limit/refs_$L --output runs/cost_limit/refs_$L.md; done
    # the learners at each limit (80 J: the leaderboard's runs in runs/split_learners), as Ray trials or one by one:
    meg-gym sweep --env MEG-SplitControl-v0 --algo ppo-lagrangian --seeds 3 --total-timesteps 600000 \
        --env-config '{"ue_energy_limit_j": 40}' '{"ue_energy_limit_j": 160}' --out runs/cost_limit/ppo-lagrangian
    for L in 40 160; do for S in 1 2 3; do meg-gym train focops --seed $S --env.ue-energy-limit-j $L --save-model \
        --run-name cost_limit/focops/focops_${L}__$S; done; done
    # the tuned FOCOPS (its setting from the tuning search; 80 J: the tuned runs in runs/tune_split/tuned)
    meg-gym sweep --env MEG-SplitControl-v0 --algo focops --hparams-from runs/tune_split/search --seeds 3 \
        --total-timesteps 600000 --env-config '{"ue_energy_limit_j": 40}' '{"ue_energy_limit_j": 160}' \
        --out runs/cost_limit/focops-tuned
    python scripts/cost_limit_sweep.py runs/split_control runs/split_learners runs/cost_limit runs/tune_split/tuned

Reads eval.json files and sweeps' results.jsonl (as the leaderboard does), keeps the default configuration except
for ``ue_energy_limit_j``, and writes docs/results/cost_limit_sweep.md (+ .json, .png): per policy and limit, the
mean PSNR per request (learners: mean over seeds with a 95% t-interval; references: over the 1,024 test
sessions), the UE energy spent per session, and the share of sessions over a limit.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from scipy import stats

from meg_gym.config import SplitControlConfig
from meg_gym.leaderboard import find_evals, records_of

ENV_ID = "MEG-SplitControl-v0"
LIMIT = "ue_energy_limit_j"


@dataclass
class Args:
    paths: tyro.conf.Positional[tuple[Path, ...]]
    """eval.json files, results.jsonl files, or folders holding them"""
    policies: tuple[str, ...] = ()
    """policies to show (default: every policy found at two limits or more)"""
    out: Path = Path("docs/results/cost_limit_sweep")
    """the page's path without suffix (.md, .json, .png)"""


def interval(values: np.ndarray, episode_se: float) -> list[float]:
    """[mean, low, high]: t-interval over runs (seeds), or the sessions' normal interval for a single run."""
    mean = float(values.mean())
    if len(values) > 1:
        half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    else:
        half = 1.96 * episode_se
    return [mean, mean - half, mean + half]


def collect(paths: list[Path]) -> dict[str, dict[float, list[dict]]]:
    default = json.loads(
        json.dumps({k: v for k, v in SplitControlConfig(split="test").to_dict().items() if k != LIMIT})
    )
    found: dict[str, dict[float, list[dict]]] = {}
    for path in find_evals(paths):
        for r in records_of(path):
            if r["env_id"] != ENV_ID:
                continue
            config = dict(r["config"])
            limit = float(config.pop(LIMIT, SplitControlConfig().ue_energy_limit_j))
            if any(config.get(k, v) != v for k, v in default.items() if k in config):
                continue  # another configuration than the default's, besides the limit
            found.setdefault(r["policy"], {}).setdefault(limit, []).append(r)
    return found


def summarise(found: dict[str, dict[float, list[dict]]], policies: tuple[str, ...]) -> dict:
    chosen = policies or tuple(p for p, by in found.items() if len(by) >= 2)
    out: dict = {}
    for policy in chosen:
        if policy not in found:
            raise SystemExit(f"no eval.json of {policy!r}; found {sorted(found)}")
        out[policy] = {}
        for limit, runs in sorted(found[policy].items()):
            psnr = np.array([r["psnr"] for r in runs])
            se = float(np.mean([r["psnr_episode_std"] for r in runs]) / np.sqrt(runs[0]["episodes"]))
            out[policy][str(limit)] = {
                "runs": len(runs),
                "psnr": interval(psnr, se),
                "ue_energy": float(np.mean([r["ue_energy"]["mean"] for r in runs])),
                "deadline_miss": float(np.mean([r["deadline_miss"]["mean"] for r in runs])),
                "violation_share": float(np.mean([r.get("violations", {}).get("any", np.nan) for r in runs])),
            }
    return out


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for policy, by_limit in summary.items():
        limits = np.array([float(k) for k in by_limit])
        psnr = np.array([v["psnr"] for v in by_limit.values()])
        line = left.errorbar(limits, psnr[:, 0], yerr=[psnr[:, 0] - psnr[:, 1], psnr[:, 2] - psnr[:, 0]],
                             marker="o", capsize=3, label=policy)  # fmt: skip
        right.plot(limits, [v["ue_energy"] for v in by_limit.values()], marker="o", color=line[0].get_color())
    every = sorted({float(k) for by in summary.values() for k in by})
    right.plot(every, every, color="black", linestyle="--", linewidth=1, label="the limit")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(every, [f"{v:g}" for v in every])
        ax.set_xlabel("UE energy limit per session (J)")
        ax.grid(alpha=0.3)
    left.set_ylabel("PSNR per request (dB)")
    right.set_ylabel("UE energy spent per session (J)")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args: Args) -> dict:
    summary = summarise(collect(list(args.paths)), args.policies)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure = args.out.with_suffix(".png")
    plot(summary, figure)
    command = "python " + shlex.join(sys.argv)
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "policies": summary}, indent=2) + "\n")
    limits = sorted({float(k) for by in summary.values() for k in by})
    lines = [
        "# MEG-SplitControl-v0: quality against the UE battery allowance",
        "",
        f"Generated by `{command}` (this project's 2-core CPU machine; the runs' commands are in the script's "
        "docstring). Default configuration except the UE energy limit per session; 1,024 test sessions per run; the "
        "deadline-miss limit stays 1. Learners: mean over their seeds with a 95% t-interval (the number of seeds in "
        "brackets); references: one run each, interval over the sessions. *over*: the share of test sessions that "
        "break a limit. Learners named without *(tuned, K trials)* run their files' defaults at every limit; a tuned "
        "one runs the setting its tuning selected at 80 J ([tuning_split_control.md](tuning_split_control.md)) "
        "at every limit, not retuned per limit.",
        "",
        f"![PSNR against the UE energy limit]({figure.name})",
        "",
        "| policy | " + " | ".join(f"{v:g} J: PSNR (dB) / energy (J) / over" for v in limits) + " |",
        "|---|" + "---|" * len(limits),
    ]
    for policy, by_limit in summary.items():
        cells = []
        for v in limits:
            c = by_limit.get(str(v))
            cells.append(
                f"{c['psnr'][0]:.2f} [{c['psnr'][1]:.2f}, {c['psnr'][2]:.2f}] ({c['runs']}) / {c['ue_energy']:.1f} / "
                f"{c['violation_share']:.0%}"
                if c
                else "-"
            )
        lines.append(f"| {policy} | " + " | ".join(cells) + " |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(args.out.with_suffix(".md").read_text())
    return summary


if __name__ == "__main__":
    main(tyro.cli(Args))
