"""Tuned vs untuned learners of one environment: a page (+ .json) from tuning sweeps' results.jsonl.

    python scripts/tuning_report.py --search runs/tune/search-ppo runs/tune/search-offpolicy4 \
        --tuned runs/tune/tuned-ppo runs/tune/tuned-ddpg-td3 runs/tune/tuned-sac        # -> docs/results/tuning.md
    python scripts/tuning_report.py --search runs/tune_split/search --tuned runs/tune_split/tuned \
        --output docs/results/tuning_split_control.md                                   # the constrained learners

The sweeps are scripts/sweep.py's (the commands are in each folder's sweep.json and in docs/sweeps.md). Per
algorithm: the hyperparameter settings tried (the search trained on the "fit" prompts and scored on the held-out
"validation" prompts), the one selected, and the test-prompt PSNR of the tuned runs against the untuned runs of
the same algorithm and training steps in the leaderboard database (docs/results/leaderboard.json, the shipped cache,
default settings). On a constrained environment (MEG-SplitControl-v0) the selection is feasibility-aware
(``meg_gym.sweep.choose_setting``) and the page adds each cost against its limit and the share of test sessions
over each limit, for the search settings on validation and for the tuned and untuned runs on test.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro

from meg_gym.cache import cache_fingerprint
from meg_gym.leaderboard import config_label, session_violations
from meg_gym.sweep import ALGORITHMS, MODES, baseline_args, choose_setting, cli_flags, draw_search, read_rows


@dataclass
class Args:
    search: list[Path] = field(
        default_factory=lambda: [Path("runs/tune/search-ppo"), Path("runs/tune/search-offpolicy4")]
    )
    """search sweeps' folders"""
    tuned: list[Path] = field(
        default_factory=lambda: [Path(f"runs/tune/tuned-{name}") for name in ("ppo", "ddpg-td3", "sac")]
    )
    """sweeps of the selected settings (--hparams-from)"""
    database: Path = Path("docs/results/leaderboard.json")
    """where the untuned runs' records are"""
    output: Path = Path("docs/results/tuning.md")
    """the page (its data: the same name, .json)"""
    budget: int = 4
    """the trial budget per algorithm: an algorithm searched with more settings is checked to select the same one
    among its first ``budget`` settings (in the order they were drawn)"""


def wall_hours(rows: list[dict]) -> float:
    """The wall time the trials kept the machine busy: the union of their [start, end] intervals, so that the
    idle time between sweeps started on different days does not count."""
    ends = [dt.datetime.fromisoformat(r["finished"]).timestamp() for r in rows]
    intervals = sorted((end - r["wall_s"], end) for end, r in zip(ends, rows, strict=True))
    busy, covered_until = 0.0, -np.inf
    for start, end in intervals:
        busy += max(0.0, end - max(start, covered_until))
        covered_until = max(covered_until, end)
    return busy / 3600


def untuned_runs(database: Path, env_id: str, algo: str, steps: int) -> list[dict]:
    """The leaderboard's records of ``algo``'s runs with its defaults: default settings, the shipped cache."""
    shipped = cache_fingerprint()
    return [
        r
        for r in json.loads(database.read_text())["records"]
        if r["env_id"] == env_id and r["policy"] == algo and r["training_steps"] == steps
        and r["cache_sha256"] == shipped and config_label(r["config"], env_id) == "default"
    ]  # fmt: skip


def costs_of(runs: list[dict], limits: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per cost: the mean over runs of its mean per test session, and the mean share of sessions over its limit
    (``runs`` are sweep rows, whose ``eval`` is the run's eval.json, or leaderboard records)."""
    out = {}
    for cost in limits:
        means = [r[f"{cost}_mean"] if f"{cost}_mean" in r else r[cost]["mean"] for r in runs]
        shares = [(session_violations(r["eval"]) if "eval" in r else r["violations"])[cost] for r in runs]
        out[cost] = {"mean": float(np.mean(means)), "over_limit_share": float(np.mean(shares))}
    return out


def setting_key(hparams: dict) -> str:
    """One text per hyperparameter setting, whatever the order of its names."""
    return json.dumps(hparams, sort_keys=True)


def short_commit(commit: str) -> str:
    """12 hex digits, keeping the -dirty flag that sweep rows carry for uncommitted working trees"""
    return commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")


def main(args: Args) -> dict:
    search = [r for folder in args.search for r in read_rows(folder / "results.jsonl")]
    tuned = [r for folder in args.tuned for r in read_rows(folder / "results.jsonl")]
    envs = sorted({r["env_id"] for r in search + tuned})
    if len(envs) != 1:
        raise SystemExit(f"the sweeps hold {len(envs)} environments ({envs}); give the sweeps of one environment")
    env_id = envs[0]
    limits = (tuned or search)[0].get("cost_limits") or {}
    report = {"env_id": env_id, "cost_limits": limits, "algorithms": [], "search_hours": wall_hours(search),
              "tuned_hours": wall_hours(tuned), "commits": sorted({r["commit"] for r in search + tuned}),
              "dates": sorted({r["finished"][:10] for r in search + tuned}),
              "cache_sha256": sorted({r["cache_sha256"] for r in search + tuned})}  # fmt: skip
    for algo in sorted({r["algo"] for r in search + tuned}):
        rows = [r for r in search if r["algo"] == algo]
        final = [r for r in tuned if r["algo"] == algo]
        steps = (final or rows)[0]["total_timesteps"]
        # a search that selects the defaults needs no tuned runs: they would repeat the untuned runs
        defaults_selected = not final and choose_setting(rows)[0] == {}
        if not final and not defaults_selected:
            raise SystemExit(f"no tuned runs of {algo}, whose search selected {choose_setting(rows)[0]}; run the "
                             f"sweep with --hparams-from {args.search[0]} --algo {algo} and pass its folder to --tuned")  # fmt: skip
        defaults = baseline_args(algo)
        by_setting: dict[str, list[dict]] = {}
        for r in rows:
            by_setting.setdefault(setting_key(r["hparams"]), []).append(r)
        order = [setting_key(h) for h in draw_search(algo, len(by_setting), 0)]  # the order the search drew them
        settings = []
        for key, mine in by_setting.items():
            setting = {"hparams": json.loads(key), "validation_psnr": float(np.mean([r["validation_psnr_mean"] for r in mine])),
                       "seeds": len(mine), "test_psnr": float(np.mean([r["psnr_mean"] for r in mine]))}  # fmt: skip
            if limits:
                setting["validation_costs"] = {
                    c: float(np.mean([r["validation_costs"][c] for r in mine])) for c in limits
                }
                setting["feasible"] = all(setting["validation_costs"][c] <= v for c, v in limits.items())
            setting["drawn"] = order.index(key) + 1
            settings.append(setting)
        within, _ = choose_setting([r for r in rows if order.index(setting_key(r["hparams"])) < args.budget])
        settings.sort(key=lambda s: -s["validation_psnr"])
        chosen = final[0]["hparams"] if final else {}
        untuned_records = untuned_runs(args.database, env_id, algo, steps)
        untuned = [r["psnr"] for r in untuned_records]
        tuned_psnr = [r["psnr_mean"] for r in final] if final else untuned
        diff = float(np.mean(tuned_psnr) - np.mean(untuned)) if untuned else None
        se = (
            np.sqrt(np.var(tuned_psnr, ddof=1) / len(tuned_psnr) + np.var(untuned, ddof=1) / len(untuned))
            if len(untuned) > 1
            else None
        )
        entry = {
            "algo": algo, "steps_per_trial": steps, "search_trials": len(rows), "settings": settings,
            "selected": chosen, "defaults": {k: defaults[k] for k in chosen},
            "tuned_test_psnr": tuned_psnr, "untuned_test_psnr": untuned,
            "tuned_minus_untuned": diff, "ci": [diff - 1.96 * se, diff + 1.96 * se] if se is not None else None,
            "search_env_steps": sum(r["total_timesteps"] for r in rows),
            "search_trial_hours": sum(r["wall_s"] for r in rows) / 3600,
            "same_selection_within_budget": within == chosen,
            "defaults_selected": defaults_selected,
        }  # fmt: skip
        if limits:
            entry["tuned_costs"] = costs_of(final or untuned_records, limits)
            entry["untuned_costs"] = costs_of(untuned_records, limits) if untuned_records else None
        report["algorithms"].append(entry)
    args.output.with_suffix(".json").write_text(json.dumps(report, indent=1))
    constrained = bool(limits)
    lines = [
        f"# Tuned learners on {env_id}",
        "",
        "Made by `python scripts/tuning_report.py` from the tuning sweeps of `scripts/sweep.py` (commands below) at "
        f"commit(s) {', '.join(short_commit(c) for c in report['commits'])}, latent cache "
        f"{', '.join(c[:12] for c in report['cache_sha256'])}, on this project's 2-core CPU machine "
        f"({', '.join(report['dates'])}; -dirty: the working tree had uncommitted changes). "
        "Data: [tuning.json](tuning.json).",
        "",
        "Protocol: every algorithm gets the same budget of search trials, each one training run of the baseline's "
        "step count on the *fit* prompts (seven eighths of train), scored on the held-out *validation* prompts "
        "(the other eighth of train; 512 episodes). The first setting is the baseline's defaults, the others are "
        "drawn at random from `meg_gym.sweep.SEARCH_SPACES`. The setting with the best validation PSNR "
        + (
            "among those whose mean validation costs meet every limit (the one over its limits least if none does) "
            if constrained
            else ""
        )
        + "is then trained on all train prompts with 3 seeds and evaluated on the test prompts (1,024 episodes, the "
        "leaderboard's protocol). Test prompts decide nothing. *Untuned* are the leaderboard's runs of the "
        "defaults with the same steps (3 seeds, same cache and test episodes). Interval: normal, over the seeds' "
        "means (tuned and untuned independent).",
        "",
        f"Wall time on 2 cores (the time trials were running; 2 trials at a time, 1 thread each, sharing the machine "
        f"with other jobs for part of it): search {report['search_hours']:.2f} h, tuned runs "
        f"{report['tuned_hours']:.2f} h.",
        "",
        f"Budget: {args.budget} search trials per learner. "
        + " ".join(
            f"{a['algo']} ran {a['search_trials']}; its first {args.budget} "
            + (
                "select the same setting, so its selection had the same budget."
                if a["same_selection_within_budget"]
                else "would select another setting: its selection had a larger budget than the others'."
            )
            for a in report["algorithms"]
            if a["search_trials"] > args.budget
        ),
        "",
        "| learner | steps per run | search trials | selected hyperparameters (defaults) | test PSNR untuned, 3 seeds | test PSNR tuned, 3 seeds | tuned - untuned [95% CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in report["algorithms"]:
        chosen = ", ".join(f"{k} {v} ({a['defaults'][k]})" for k, v in sorted(a["selected"].items())) or (
            "the defaults (tuned runs = the untuned runs)" if a["defaults_selected"] else "the defaults"
        )
        spread = lambda v: f"{np.mean(v):.2f} ({min(v):.2f}..{max(v):.2f})" if v else "-"  # noqa: E731
        diff = f"{a['tuned_minus_untuned']:+.2f}" if a["tuned_minus_untuned"] is not None else "-"
        if a["ci"]:
            diff += f" [{a['ci'][0]:+.2f}, {a['ci'][1]:+.2f}]"
        lines.append(f"| {a['algo']} | {a['steps_per_trial'] // 1000}k | {a['search_trials']} | {chosen} | "
                     f"{spread(a['untuned_test_psnr'])} | {spread(a['tuned_test_psnr'])} | {diff} |")  # fmt: skip
    if constrained:
        names = list(limits)
        lines += [
            "",
            "Costs on the test sessions, untuned -> tuned (mean over the seeds; limits "
            + ", ".join(f"{c} {v:g}" for c, v in limits.items())
            + "), and the share of test sessions over each limit:",
            "",
            "| learner | "
            + " | ".join(f"{c} (limit {limits[c]:g})" for c in names)
            + " | "
            + " | ".join(f"over the {c} limit (%)" for c in names)
            + " |",
            "|---|" + "---|" * (2 * len(names)),
        ]
        for a in report["algorithms"]:
            before, after = a["untuned_costs"], a["tuned_costs"]
            cells = [f"{before[c]['mean']:.2f} -> {after[c]['mean']:.2f}" if before else f"{after[c]['mean']:.2f}"
                     for c in names]  # fmt: skip
            cells += [
                f"{100 * before[c]['over_limit_share']:.1f} -> {100 * after[c]['over_limit_share']:.1f}"
                if before
                else f"{100 * after[c]['over_limit_share']:.1f}"
                for c in names
            ]
            lines.append(f"| {a['algo']} | " + " | ".join(cells) + " |")
    lines += ["", "## Train a tuned learner", ""]
    for a in report["algorithms"]:
        flags = " ".join(
            [
                "--total-timesteps",
                str(a["steps_per_trial"]),
                *cli_flags("", {**MODES.get(a["algo"], {}), **a["selected"]}),
            ]
        )
        lines.append(f"- {a['algo']}: `python baselines/{ALGORITHMS[a['algo']][0]} {flags}`")
    lines += ["", "## Commands (each folder's sweep.json)", ""]
    for folder in [*args.search, *args.tuned]:
        meta = json.loads((folder / "sweep.json").read_text())
        lines.append(f"- `{folder}`: `python {' '.join(meta['command'])}`")
    lines += ["", "## The search, per learner (validation PSNR, best first)", ""]
    for a in report["algorithms"]:
        lines += [f"**{a['algo']}** ({a['search_trials']} trials of {a['steps_per_trial'] // 1000}k steps, "
                  f"{a['search_trial_hours']:.1f} trial-hours):", ""]  # fmt: skip
        for s in a["settings"]:
            text = ", ".join(f"{k} {v}" for k, v in sorted(s["hparams"].items())) or "defaults"
            costs = ""
            if constrained:
                costs = (" (" + ", ".join(f"{c} {v:.2f}" for c, v in s["validation_costs"].items())
                         + ("" if s["feasible"] else "; over a limit: not selectable") + ")")  # fmt: skip
            lines.append(f"- {s['validation_psnr']:.3f} dB{costs} (setting {s['drawn']}): {text}")
        lines.append("")
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main(tyro.cli(Args))
