"""The constrained learners on MEG-SplitControl-v0 -> docs/results/constrained_learners.md (+ .json, two figures).

    python scripts/constrained_report.py runs/split_learners      # the run folders (saved with --save-model)

One page with what the safe-RL field reports, for every constrained learner beside the references:

- the test table: PSNR IQM with its 95% interval, each cost against its limit, the share of test sessions over
  each limit, the live PSNR on the fidelity check's sessions, the normalised score, and training wall time. The
  figures come from the leaderboard's database (docs/results/leaderboard.json, built by ``meg-gym leaderboard``
  from the same runs' eval.json) and the fidelity check (docs/results/split_table_validation.json); the wall time
  from each run's model.json;
- learning curves: reward and each cost against its limit over environment steps, mean and 95% t-interval over
  seeds, from the runs' curves.jsonl (``meg_gym.learning_curves``);
- the violations incurred while training: the share of training episodes over a limit so far.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from meg_gym import leaderboard
from meg_gym.learning_curves import collect_runs, curve_summary, plot_curves
from meg_gym.registry import environment

ENV_ID = "MEG-SplitControl-v0"


@dataclass
class Args:
    runs: tyro.conf.Positional[tuple[Path, ...]]
    """learner run folders, or folders holding them (each with curves.jsonl and model.json)"""
    database: Path = Path("docs/results/leaderboard.json")
    """the leaderboard's database (its MEG-SplitControl-v0 default table)"""
    out: Path = Path("docs/results/constrained_learners")
    """the page's path without suffix (.md, .json and two .png beside it)"""


def test_rows(database: Path) -> tuple[list[dict], dict[str, list[tuple[float, float]]]]:
    tables = json.loads(database.read_text())["tables"]
    table = next((t for t in tables if t["env_id"] == ENV_ID and t["label"] == "default"), None)
    if table is None:
        raise SystemExit(f"{database} has no {ENV_ID} default table; build the leaderboard first")
    spec = environment(ENV_ID)
    return table["rows"], leaderboard.live_scores(spec, database.parent)


def live_gap_share(policy: str, live: dict[str, dict], resamples: int = 2000) -> list[float] | None:
    """The policy's share of the best-fixed -> planner gap in the fidelity check's live runs (``live``: name ->
    result), with a 95% paired bootstrap interval over its sessions (each session: the mean over the policy's seeds
    checked live); None if no seed of it ran live."""
    spec = environment(ENV_ID)
    seeds = [
        v["per_session"] for name, v in live.items() if name != policy and leaderboard.policy_of_run(name) == policy
    ]
    if not seeds or spec.baseline_policy not in live or spec.upper_reference not in live:
        return None
    learner = np.mean(seeds, axis=0)
    low, high = np.array(live[spec.baseline_policy]["per_session"]), np.array(live[spec.upper_reference]["per_session"])

    def share(i):
        return (learner[i].mean(-1) - low[i].mean(-1)) / (high[i].mean(-1) - low[i].mean(-1))

    every = np.arange(len(learner))
    draws = share(np.random.default_rng(0).integers(0, len(learner), (resamples, len(learner))))
    return [float(share(every)), *np.percentile(draws, [2.5, 97.5]).tolist()]


def main(args: Args) -> dict:
    runs = collect_runs(list(args.runs))
    summary = curve_summary(runs)
    rows, live = test_rows(args.database)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    curves_png = args.out.with_name(args.out.name + "_curves.png")
    violations_png = args.out.with_name(args.out.name + "_violations.png")
    plot_curves(summary, curves_png, violations_png, "PSNR per request (dB)")
    command = "python " + shlex.join(sys.argv)
    learners = set(summary)
    live_runs = leaderboard.fidelity_check_runs(environment(ENV_ID), args.database.parent).get("live", {})
    entries = []
    for row in rows:
        seen = live.get(row["policy"], [])
        walls = [w for w in summary.get(row["policy"], {}).get("wall_time_s", []) if w]
        entries.append({
            "policy": row["policy"],
            "kind": "learner" if row["policy"].split(" (")[0] in learners else "reference",
            "runs": row["runs"],
            "psnr_iqm": row["psnr_iqm"],
            "ue_energy": row["ue_energy"],
            "deadline_miss": row["deadline_miss"],
            "violation_share": row.get("violation_share", {}),
            "live_psnr": float(np.mean([v[0] for v in seen])) if seen else None,
            "live_runs": len(seen),
            "table_psnr_same_sessions": float(np.mean([v[1] for v in seen])) if seen else None,
            "live_score": live_gap_share(row["policy"], live_runs),
            "score": row["score"],
            "train_wall_time_s": float(np.mean(walls)) if walls else None,
        })  # fmt: skip
    limits = rows[0]["cost_limits"]
    within = [e for e in entries if e["kind"] == "learner" and all(e[c][0] <= v for c, v in limits.items())]
    best = max(within, key=lambda e: e["psnr_iqm"][0], default=None)  # the best that meets both limits on average
    data = {"command": command, "cost_limits": limits, "entries": entries, "best_learner": best and best["policy"],
            "curves": summary}  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")

    def ci(v: list[float], digits: int = 2, scale: float = 1.0) -> str:
        return f"{v[0] * scale:.{digits}f} [{v[1] * scale:.{digits}f}, {v[2] * scale:.{digits}f}]"

    lines = [
        "# Constrained learners on MEG-SplitControl-v0",
        "",
        f"Generated by `{command}` on this project's 2-core CPU machine, from the leaderboard's database "
        f"(`{args.database}`, 1,024 test sessions per run), the table-fidelity check's live runs and the runs' "
        "`curves.jsonl`. Every learner runs its file's defaults for 600k environment steps (untuned), 3 seeds; a "
        "row *(tuned, K trials)* runs the setting its tuning selected on validation sessions among K "
        "([tuning_split_control.md](tuning_split_control.md)), 3 seeds, same steps. The curves are the untuned runs'. "
        f"Limits per session: UE energy {limits['ue_energy']:g} J, deadline misses {limits['deadline_miss']:g}.",
        "",
        "*over a limit*: the share of test sessions whose cost exceeds the limit (UE energy / deadline misses), "
        "95% interval; *live*: the mean PSNR of the same policies on the fidelity check's first 128 test sessions "
        "run live (the UE's denoising and decode on every request), in brackets the table on those sessions, and "
        "the number of seeds checked live; *score*: 0 = best-fixed, 1 = the non-causal planner; *wall time*: "
        "training, per seed, with two trainings sharing the machine's two cores; *live score*: the score of the "
        "live runs on those sessions (the mean of the seeds checked live; paired bootstrap interval over sessions).",
        "",
        "| policy | kind | runs | PSNR IQM [95% CI] | UE energy (J) | deadline misses | over a limit (%) | live (table) PSNR | "
        "score [95% CI] | live score [95% CI] | wall time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        over = e["violation_share"]
        shares = " / ".join(ci(over[k], 1, 100) for k in ("ue_energy", "deadline_miss") if k in over) or "-"
        live_text = (f"{e['live_psnr']:.2f} ({e['table_psnr_same_sessions']:.2f}), {e['live_runs']}"
                     if e["live_psnr"] is not None else "-")  # fmt: skip
        wall = f"{e['train_wall_time_s']:.0f}" if e["train_wall_time_s"] else "-"
        score = ci(e["score"]) if e["score"] is not None else "-"
        lines.append(
            f"| {e['policy']} | {e['kind']} | {e['runs']} | {ci(e['psnr_iqm'])} | {ci(e['ue_energy'], 1)} | "
            f"{ci(e['deadline_miss'])} | {shares} | {live_text} | {score} | "
            f"{ci(e['live_score']) if e['live_score'] else '-'} | {wall} |"
        )
    lines += [
        "",
        f"Best learner by PSNR IQM among those within both limits (mean cost per session): **{data['best_learner']}**"
        + (
            f"; live, its share of the best-fixed -> planner gap on the fidelity check's sessions is "
            f"{ci(best['live_score'])} (paired bootstrap over the sessions, the mean of its {best['live_runs']} seeds "
            "checked live)."
            if best and best["live_score"]
            else "."
        ),
        "",
        "## Learning curves",
        "",
        "Training episodes (train prompts), per update: PSNR per request and each cost per session over its limit "
        "(1 = the limit; the axis stops at 3, above which the first updates go), mean over seeds with a 95% "
        "t-interval, each seed smoothed over 9 updates.",
        "",
        f"![learning curves]({curves_png.name})",
        "",
        "## Violations while training",
        "",
        f"![training violations]({violations_png.name})",
        "",
        "| learner | seeds | training episodes over a limit | final training cost / limit (UE energy, misses) |",
        "|---|---|---|---|",
    ]
    for name, s in summary.items():
        share = np.array(s["final_violating_episodes"]) / np.array(s["final_episodes"])
        finals = ", ".join(f"{c['mean'][-1]:.2f}" for c in s["cost_over_limit"])
        lines.append(
            f"| {name} | {len(s['runs'])} | {share.mean():.1%} ({sum(s['final_violating_episodes']):,} of "
            f"{sum(s['final_episodes']):,}) | {finals} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(args.out.with_suffix(".md").read_text())
    return data


if __name__ == "__main__":
    main(tyro.cli(Args))
