"""The leaderboard: eval.json files reduced to records, pooled into tables with rliable's intervals, rendered.

``main(Args(...))`` does what ``python scripts/leaderboard.py`` does: it adds the eval.json files found under
``Args.paths`` to the database beside ``Args.output`` (its .json), rebuilds the tables, draws the performance
profile (-profile.png) and writes the page. ``interval_estimates`` gives rliable's IQM and mean with 95%
stratified-bootstrap intervals for any scores. rliable and matplotlib are imported only when used.

docs/results/leaderboard.json is the database: one record per evaluated run (its validated eval.json reduced to
run-level figures, with the file's sha256, commit and arguments), so the table can be rebuilt without the
files. A run that is added again replaces its record (same environment, configuration and run name).

Results are pooled only within one environment, configuration (every setting, defaults included) and latent
cache (the SHA-256 of its tensor file, recorded in eval.json), so that figures measured on different prompts
or latents never share a table. Per table and per policy, the page gives the
interquartile mean (IQM) and the mean of the test-split PSNR across training seeds, each with a 95%
stratified-bootstrap confidence interval (rliable; Agarwal et al., "Deep Reinforcement Learning at the
Edge of the Statistical Precipice", NeurIPS 2021), the energy used as a fraction of the budget, the gap to the
environment's upper reference of the same configuration, and the normalised score
(PSNR - baseline) / (reference - baseline): 0 = the baseline policy (static power), 1 = the reference
(``EnvironmentSpec.upper_reference``: "best-known" for MEG-PowerControl-v0, a search on the actual reward, not a
bound). Its 95% interval resamples test episodes (paired: every policy of a table meets the same episodes) and
training seeds; records made before 2026-11-29 hold no per-episode values, and their interval treats the three
means as independent (wider than paired). A deterministic fixed policy is one run; its PSNR interval is then a
point. The figure is rliable's performance profile of the normalised score over every configuration each policy
was run in. Policies renamed since a record was made are shown under their current names (:data:`RENAMED`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from meg_gym import evaluation
from meg_gym.registry import ENVIRONMENTS, environment

# meg_gym.cache (torch), rliable and matplotlib are imported inside the functions that use them

LEADERBOARD_SCHEMA = "meg-gym-leaderboard/1"
# the profile figure covers the first environment of the table with an upper reference
PROFILE_ENV_ID = next(spec.env_id for spec in ENVIRONMENTS if spec.upper_reference)
UNRECORDED = "unrecorded"
# old policy name -> current name, so that old records join their policy's row
RENAMED = {"oracle": "mmse-water-filling"}


@dataclass
class Args:
    paths: tyro.conf.Positional[list[Path]] = field(default_factory=lambda: [Path("runs")])
    """eval.json files, sweeps' results.jsonl files, or folders searched recursively for both"""
    output: Path = Path("docs/results/leaderboard.md")
    """the page; its .json (the database) and a -profile.png sit beside it"""
    fresh: bool = False
    """ignore the records already in the database"""
    drop: list[str] = field(default_factory=list)
    """remove the records whose run name matches one of these glob patterns (a superseded or withdrawn
    submission), e.g. --drop 'eval__ppo-lagrangian__*'"""
    reps: int = 2000
    """bootstrap resamples for the confidence intervals"""
    seed: int = 0
    """seed of the bootstrap"""


# settings that do not change any result (which extra metrics go into info), left out of a record's configuration
# so that records made with and without them share a table
NEUTRAL_SETTINGS = ("info_metrics",)


def without_neutral_settings(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in NEUTRAL_SETTINGS}


def full_config(data: dict[str, Any]) -> dict[str, Any]:
    """Every environment setting of an eval.json: its env_config, or its env_kwargs over today's defaults."""
    if data.get("env_config"):
        config = dict(data["env_config"])
    else:
        config = {**evaluation.config_class(data["env_id"])().to_dict(), **data["env_kwargs"]}
    config["split"] = "test"
    return without_neutral_settings(config)


def config_label(config: dict[str, Any], env_id: str = "MEG-PowerControl-v0") -> str:
    """The settings that differ from today's defaults, e.g. "budget_fraction=0.1", or "default"."""
    # through JSON, as configs are stored (tuples become lists)
    default = json.loads(json.dumps(evaluation.config_class(env_id)().to_dict()))
    changed = [f"{k}={v}" for k, v in sorted(config.items()) if k != "split" and default.get(k) != v]
    return ", ".join(changed) or "default"


def cache_of(recorded: str | None, config: dict[str, Any]) -> str:
    """The cache a result was measured on: as recorded, or inferred for pre-2026-11-28 default-cache runs."""
    from meg_gym.cache import LEGACY_DEFAULT_CACHE

    if recorded:
        return recorded
    return LEGACY_DEFAULT_CACHE if config.get("cache_dir") is None else UNRECORDED


def record_of(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
        evaluation.validate_eval(data)
    except (json.JSONDecodeError, ValueError) as err:
        raise SystemExit(f"{path}: not a valid eval.json ({err}); regenerate it with scripts/evaluate.py") from err
    return record_from(data, str(path), hashlib.sha256(raw).hexdigest())


def records_of(path: Path) -> list[dict[str, Any]]:
    """The records of an eval.json, or of a sweep's results.jsonl (each row's eval.json body, named by the row's
    label, e.g. "ppo (tuned, 8 trials)"). Search trials of a tuning sweep are skipped: they trained on part of train
    with hyperparameters that were then compared, so they are not results."""
    if path.suffix != ".jsonl":
        return [record_of(path)]
    from meg_gym.sweep import read_rows

    records = []
    for row in read_rows(path):
        if row["stage"] == "search":
            continue
        body = row["eval"]
        try:
            evaluation.validate_eval(body)
        except ValueError as err:
            raise SystemExit(f"{path}, trial {row['trial']}: not a valid eval.json body ({err})") from err
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        records.append(record_from(body, f"{path}#{row['trial']}", digest, policy=row["label"]))
    return records


def record_from(data: dict[str, Any], source: str, sha256: str, policy: str | None = None) -> dict[str, Any]:
    """A validated eval.json body reduced to the run-level figures the tables use."""
    args = data["args"]
    training_steps = args.get("total_timesteps") if isinstance(args.get("total_timesteps"), int) else 0
    config = full_config(data)
    return {
        "env_id": data["env_id"],
        "config": config,
        "cache_sha256": cache_of(data.get("cache_sha256"), config),
        "table_sha256": data.get("table_sha256"),
        "policy": RENAMED.get(policy or data["policy"], policy or data["policy"]),
        "training_steps": training_steps or 0,
        "run_name": data["run_name"],
        "seed": args.get("seed"),
        "episodes": data["episodes"],
        "first_eval_seed": data["seeds"][0],
        "psnr": data["psnr"]["mean"],
        "psnr_episode_std": data["psnr"]["std"],
        # for the paired interval of the normalised score (1e-4 dB is far below any difference reported)
        "psnr_per_episode": [round(float(v), 4) for v in data["psnr"]["per_episode"]],
        "ssim": data["ssim"]["mean"],
        "energy_used": data["energy_used"]["mean"],
        "energy_budget": data["energy_budget"],
        # constrained environments: each cost's sum per episode (mean and spread over the test episodes), and limits
        **{
            key: {"mean": data[key]["mean"], "episode_std": data[key]["std"]}
            for key in evaluation.SESSION_COSTS
            if key in data
        },
        **({"cost_limits": data["cost_limits"]} if "cost_limits" in data else {}),
        **({"violations": session_violations(data)} if "cost_limits" in data else {}),
        "git_commit": data["git_commit"],
        "meg_gym_version": data["meg_gym_version"],
        "created": data["created"],
        "source": source,
        "sha256": sha256,
    }


def session_violations(data: dict[str, Any]) -> dict[str, float]:
    """The share of an eval.json's test sessions whose sum of a cost exceeds its limit, per cost and for any cost."""
    over = {
        key: np.asarray(data[key]["per_episode"], dtype=np.float64) > float(limit) * (1 + 1e-9)
        for key, limit in data["cost_limits"].items()
        if key in data
    }
    shares = {key: float(v.mean()) for key, v in over.items()}
    shares["any"] = float(np.logical_or.reduce(list(over.values())).mean()) if over else 0.0
    return shares


def find_evals(paths: list[Path]) -> list[Path]:
    """eval.json and results.jsonl files: as given, or found under folders. A sweep's trials are read from its
    results.jsonl (which names them), not from the eval.json files in its trials/ folder."""
    found = []
    for path in paths:
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            sweeps = sorted(path.rglob("results.jsonl"))
            trial_dirs = [sweep.parent / "trials" for sweep in sweeps]
            found.extend(sweeps)
            found.extend(p for p in sorted(path.rglob("eval.json")) if not any(p.is_relative_to(d) for d in trial_dirs))
        else:
            raise SystemExit(f"{path} does not exist; give eval.json files or folders that hold them")
    return found


def record_key(r: dict[str, Any]) -> tuple:
    return r["env_id"], json.dumps(r["config"], sort_keys=True), r["cache_sha256"], r["run_name"]


def merge(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    old = [{**r, "cache_sha256": cache_of(r.get("cache_sha256"), r["config"]), "policy": RENAMED.get(r["policy"], r["policy"]),
            "config": without_neutral_settings(r["config"])}
           for r in old]  # fmt: skip
    records = {record_key(r): r for r in old}
    records.update({record_key(r): r for r in new})
    return sorted(records.values(), key=lambda r: (r["env_id"], config_label(r["config"], r["env_id"]), r["cache_sha256"],
                                                   r["policy"], r["run_name"]))  # fmt: skip


def entry_name(r: dict[str, Any]) -> str:
    """A policy with its training budget, so that runs of different lengths are not pooled.

    Constrained environments name rows by policy alone (their table gives the budget in its own column); runs of
    one policy with different budgets then get the budget in the name, as elsewhere.
    """
    steps = r["training_steps"]
    if not steps or environment(r["env_id"]).constrained:
        return r["policy"]
    return f"{r['policy']} ({steps // 1000}k)" if steps % 1000 == 0 else f"{r['policy']} ({steps})"


def interval_estimates(scores: dict[str, np.ndarray], reps: int, seed: int) -> dict[str, dict[str, list[float]]]:
    """rliable's IQM and mean with 95% stratified-bootstrap intervals; scores[name] is (runs, tasks)."""
    from rliable import library as rly
    from rliable import metrics

    def aggregate(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])

    np.random.seed(seed)  # rliable's bootstrap draws from numpy's global generator
    points, intervals = rly.get_interval_estimates(scores, aggregate, reps=reps)
    return {
        name: {
            "iqm": [float(points[name][0]), *map(float, intervals[name][:, 0])],
            "mean": [float(points[name][1]), *map(float, intervals[name][:, 1])],
        }
        for name in scores
    }


def build_tables(records: list[dict[str, Any]], reps: int, seed: int) -> list[dict[str, Any]]:
    from meg_gym.cache import cache_fingerprint

    shipped = cache_fingerprint()
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["env_id"], json.dumps(r["config"], sort_keys=True), r["cache_sha256"]), []).append(r)
    tables = []
    for (env_id, config_json, cache), runs in sorted(
        groups.items(), key=lambda g: (g[0][0], config_label(json.loads(g[0][1]), g[0][0]), g[0][2] != shipped)
    ):
        by_entry: dict[str, list[dict[str, Any]]] = {}
        for r in runs:
            by_entry.setdefault(entry_name(r), []).append(r)
        scores = {name: np.array([[r["psnr"]] for r in rs]) for name, rs in by_entry.items()}
        estimates = interval_estimates(scores, reps, seed)
        spec = environment(env_id)
        upper, baseline = spec.upper_reference, spec.baseline_policy
        reference = np.mean([r["psnr"] for r in by_entry[upper]]) if upper in by_entry else None
        static = np.mean([r["psnr"] for r in by_entry[baseline]]) if baseline in by_entry else None
        gaps = (
            interval_estimates({n: reference - s for n, s in scores.items()}, reps, seed)
            if reference is not None
            else {}
        )
        rows = []
        for name, rs in by_entry.items():
            psnr = np.array([r["psnr"] for r in rs])
            rows.append(
                {
                    "policy": name,
                    "runs": len(rs),
                    "seeds": [r["seed"] for r in rs],
                    "episodes": rs[0]["episodes"],
                    "psnr_iqm": estimates[name]["iqm"],
                    "psnr_mean": estimates[name]["mean"],
                    "psnr_episode_se": float(np.mean([r["psnr_episode_std"] for r in rs]) / np.sqrt(rs[0]["episodes"])),
                    "ssim_mean": float(np.mean([r["ssim"] for r in rs])),
                    "energy_fraction": float(np.mean([r["energy_used"] / r["energy_budget"] for r in rs])),
                    "gap_to_reference": gaps[name]["mean"] if gaps else None,
                    "normalised": (
                        ((psnr - static) / (reference - static)).tolist()
                        if reference is not None and static is not None and reference > static
                        else None
                    ),
                    "score": (
                        normalised_score(rs, by_entry[baseline], by_entry[upper], reps, seed)
                        if reference is not None and static is not None and reference > static
                        else None
                    ),
                }
            )
            if spec.constrained:
                rows[-1].update(cost_rates(rs), training_steps=sorted({r["training_steps"] for r in rs}))
        if spec.constrained:
            mixed = [name for name, rs in by_entry.items() if len({r["training_steps"] for r in rs}) > 1]
            if mixed:
                raise SystemExit(f"{env_id}: runs of {mixed} with different training budgets; keep one budget each")
        rows.sort(key=lambda row: -row["psnr_mean"][0])
        config = json.loads(config_json)
        tables.append({"env_id": env_id, "config": config, "label": config_label(config, env_id), "cache_sha256": cache,
                       "rows": rows})  # fmt: skip
    return tables


def normalised_score(
    runs: list[dict[str, Any]], baseline: list[dict[str, Any]], reference: list[dict[str, Any]], reps: int, seed: int
) -> list[float]:
    """[point, low, high]: (PSNR - baseline) / (reference - baseline) with a 95% bootstrap interval.

    Paired when every run holds its per-episode PSNR on the same episodes: each resample draws the test
    episodes (the same for all three) and the policy's training seeds. Otherwise each run's mean is redrawn from
    its own episodes' spread as if the three were independent, which overstates the uncertainty.
    """
    rng = np.random.default_rng(seed)
    # a fixed policy's records are repeats of one deterministic run: where some hold per-episode values, use those
    runs, baseline, reference = (
        ([r for r in g if r.get("psnr_per_episode")] or g) if all(not r["training_steps"] for r in g) else g
        for g in (runs, baseline, reference)
    )
    groups = [runs, baseline, reference]
    point_means = [np.mean([r["psnr"] for r in g]) for g in groups]
    point = (point_means[0] - point_means[1]) / (point_means[2] - point_means[1])
    episodes = {(r["episodes"], r["first_eval_seed"]) for g in groups for r in g}
    if all(r.get("psnr_per_episode") for g in groups for r in g) and len(episodes) == 1:
        x = np.array([r["psnr_per_episode"] for r in runs])
        b = np.mean([r["psnr_per_episode"] for r in baseline], axis=0)
        ref = np.mean([r["psnr_per_episode"] for r in reference], axis=0)
        n = x.shape[1]
        samples = []
        for _ in range(reps):
            idx, seeds = rng.integers(n, size=n), rng.integers(len(x), size=len(x))
            low = b[idx].mean()
            samples.append((x[seeds][:, idx].mean() - low) / (ref[idx].mean() - low))
    else:

        def redraw(group: list[dict[str, Any]], size: int) -> np.ndarray:
            means = np.array([r["psnr"] for r in group])
            se = np.array([r["psnr_episode_std"] / np.sqrt(r["episodes"]) for r in group])
            pick = rng.integers(len(group), size=(size, len(group)))
            return (means[pick] + se[pick] * rng.standard_normal(pick.shape)).mean(axis=1)

        x, b, ref = (redraw(g, reps) for g in groups)
        samples = (x - b) / (ref - b)
    low, high = np.percentile(samples, [2.5, 97.5])
    return [float(point), float(low), float(high)]


def cost_rates(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each cost's mean sum per episode with a 95% interval, and its limit.

    One run: the interval is over its test episodes (mean +- 1.96 SE). Several runs: over the runs' means (normal
    interval across training seeds, widened by the episodes' own SE).
    """
    out: dict[str, Any] = {"cost_limits": runs[0].get("cost_limits", {})}
    for key in evaluation.SESSION_COSTS:
        means = np.array([r[key]["mean"] for r in runs])
        episode_se = np.array([r[key]["episode_std"] for r in runs]) / np.sqrt(runs[0]["episodes"])
        se = np.sqrt(np.mean(episode_se**2) / len(runs) + (means.var(ddof=1) / len(runs) if len(runs) > 1 else 0.0))
        out[key] = [float(means.mean()), float(means.mean() - 1.96 * se), float(means.mean() + 1.96 * se)]
    if all("violations" in r for r in runs):
        out["violation_share"] = {key: violation_interval(runs, key) for key in runs[0]["violations"]}
    return out


def violation_interval(runs: list[dict[str, Any]], key: str) -> list[float]:
    """[share, low, high]: the share of test sessions over a limit with a 95% interval.

    One run: Wilson's score interval over its sessions (it stays inside [0, 1] and is not empty at a share of 0).
    Several runs: the mean of the runs' shares, normal across the runs, widened by each run's binomial spread, and
    at least the Wilson interval of all their sessions pooled.
    """
    shares = np.array([r["violations"][key] for r in runs])
    n = runs[0]["episodes"]
    p, z, total = shares.mean(), 1.96, n * len(runs)
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    wilson = [float(max(0.0, centre - half)), float(min(1.0, centre + half))]  # all sessions pooled
    if len(runs) == 1:
        return [float(p), *wilson]
    binomial = np.mean(shares * (1 - shares) / n) / len(runs)
    se = np.sqrt(binomial + shares.var(ddof=1) / len(runs))
    # the spread across seeds, and never narrower than the pooled sessions' Wilson interval (seeds that all
    # meet a limit in every session would otherwise give an interval of zero width)
    return [float(p), min(wilson[0], float(max(0.0, p - 1.96 * se))), max(wilson[1], float(min(1.0, p + 1.96 * se)))]


def performance_profile(tables: list[dict[str, Any]], path: Path, reps: int, seed: int) -> list[str]:
    """rliable's performance profile of the normalised score per policy, its bootstrap intervals with ``reps``
    draws seeded by ``seed`` (as the tables' intervals); returns the policies drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library as rly
    from rliable import plot_utils

    usable = [
        t for t in tables if all(row["normalised"] is not None for row in t["rows"]) and t["env_id"] == PROFILE_ENV_ID
    ]
    if not usable:
        return []
    names = set.intersection(*({row["policy"] for row in t["rows"]} for t in usable))
    scores = {}
    for name in sorted(names):
        columns = [next(row for row in t["rows"] if row["policy"] == name)["normalised"] for t in usable]
        if len({len(c) for c in columns}) == 1:  # rliable needs the same number of runs in every configuration
            scores[name] = np.array(columns).T
    if not scores:
        return []
    low = min(float(s.min()) for s in scores.values())
    taus = np.linspace(max(min(low, 0.0) - 0.05, -2.0), 1.05, 241)  # below -2 every policy is far worse than static
    np.random.seed(seed)  # rliable's bootstrap draws from numpy's global generator
    profiles, intervals = rly.create_performance_profile(scores, taus, reps=reps)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {name: plt.cm.tab20(i % 20) for i, name in enumerate(scores)}
    plot_utils.plot_performance_profiles(
        profiles, taus, performance_profile_cis=intervals, colors=colors,
        xlabel=r"normalised score $\tau$ (0 = static power, 1 = best-known)", ax=ax,
    )  # fmt: skip
    ax.legend([plt.Line2D([0], [0], color=colors[n], lw=2) for n in scores], list(scores), loc="lower left", fontsize=8)
    ax.set_title(f"Performance profiles over {len(usable)} configuration(s) of {PROFILE_ENV_ID}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return list(scores)


def interval(values: list[float], digits: int = 2) -> str:
    point, low, high = values
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def reference_name(table: dict[str, Any]) -> str:
    return environment(table["env_id"]).upper_reference or "reference"


def render(
    tables: list[dict[str, Any]],
    records: list[dict[str, Any]],
    figure: Path | None,
    drawn: list[str],
    docs: Path = Path("docs"),
) -> str:
    """The page; ``docs`` is the folder it is written to (the fidelity checks' pages lie beside it)."""
    from meg_gym.cache import cache_fingerprint

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    shipped = cache_fingerprint()
    lines = [
        "# Leaderboard",
        "",
        f"Made by `python scripts/leaderboard.py` at commit `{commit or 'unknown'}` ({platform.machine()}), from "
        f"{len(records)} evaluated runs in [leaderboard.json](leaderboard.json). Every figure is the test-split "
        "PSNR (dB) under the held-out protocol of `meg_gym.evaluation` (TEST prompts, episode j seeded with "
        "1,000,000 + j, so every policy of a configuration meets the same channels and prompts). "
        "IQM and mean are across training seeds with 95% stratified-bootstrap intervals (rliable); a fixed policy "
        "is deterministic and has one run. *episode SE* is the standard error over the test episodes of one run; "
        "*energy* is the energy used as a fraction of the budget; *gap* is the upper reference's mean minus "
        "the policy's, with its interval; *score* is (PSNR - static) / (reference - static), 0 = static power, "
        "1 = the reference, with a 95% bootstrap interval over test episodes and seeds (paired where the records "
        "hold per-episode values, else treating the means as independent). The reference of "
        "MEG-PowerControl-v0 is `best-known`, a non-causal search on the actual reward: the best allocation "
        "known, not a bound (`mmse-water-filling` was called the oracle before 2026-11-29). A table holds one environment, configuration and latent cache (the "
        "first 12 hex digits of the SHA-256 of its tensor file); results on different caches are never pooled. "
        "How to submit a result: see the README's *Leaderboard* section.",
        "",
    ]
    if figure is not None and drawn:
        lines += [
            f"![performance profiles]({figure.name})",
            "",
            "Performance profiles (rliable): the fraction of runs, over every configuration below, whose "
            "normalised score (PSNR - static) / (best-known - static) exceeds tau; shaded: 95% bootstrap "
            f"intervals. Drawn for the policies run in every configuration: {', '.join(drawn)}.",
            "",
        ]
    for t in tables:
        cache = t["cache_sha256"]
        which = " (the shipped default)" if cache == shipped else ""
        lines += [f"## {t['env_id']}: {t['label']}, cache {cache[:12]}{which}", ""]
        if environment(t["env_id"]).constrained:
            lines += constrained_table(t, docs)
            continue
        lines += [
            f"| policy | runs | PSNR IQM [95% CI] | PSNR mean [95% CI] | episode SE | SSIM | energy | "
            f"gap to {reference_name(t)} [95% CI] | score [95% CI] |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in t["rows"]:
            gap = interval(row["gap_to_reference"]) if row["gap_to_reference"] is not None else "-"
            score = interval(row["score"]) if row["score"] is not None else "-"
            lines.append(
                f"| {row['policy']} | {row['runs']} | {interval(row['psnr_iqm'])} | {interval(row['psnr_mean'])} | "
                f"{row['psnr_episode_se']:.2f} | {row['ssim_mean']:.3f} | {row['energy_fraction']:.2f} | {gap} | {score} |"
            )
        lines.append("")
    return "\n".join(lines)


def superseded_table(r: dict[str, Any]) -> bool:
    """A table-fidelity record of the shipped quality table that was read from another version of it."""
    spec = environment(r["env_id"])
    config = r["config"]
    if not spec.fidelity_check or config.get("fidelity", "table") != "table" or config.get("table_dir"):
        return False
    from meg_gym.envs.split_control.quality_table import QualityTable

    return r.get("table_sha256") != QualityTable.load("test").meta["sha256"]


def fidelity_check_runs(spec: Any, docs: Path) -> dict[str, dict[str, Any]]:
    """The fidelity check's policies per fidelity ({"live": {name: result}, "table": ...}), from the .json beside
    its page; empty without the page. Learner seeds are named "<policy> (<seed>)" (see :func:`policy_of_run`)."""
    path = docs / Path(spec.fidelity_check).with_suffix(".json")
    if not path.exists():
        return {}
    return json.loads(path.read_text()).get("ranking", {}).get("policies", {})


def policy_of_run(name: str) -> str:
    """The policy a fidelity-check run belongs to: "ppo-lagrangian (2)" -> "ppo-lagrangian", "cpo (tuned, 4 trials)
    (1)" -> "cpo (tuned, 4 trials)"; a fixed policy's name is its own."""
    return name.rsplit(" (", 1)[0]


def live_scores(spec: Any, docs: Path) -> dict[str, list[tuple[float, float]]]:
    """(live, table) mean PSNR of each policy's runs on the fidelity check's sessions, the same sessions under both
    fidelities; empty without the check's page."""
    policies = fidelity_check_runs(spec, docs)
    live, table = policies.get("live", {}), policies.get("table", {})
    out: dict[str, list[tuple[float, float]]] = {}
    for name, entry in live.items():
        if name in table:
            out.setdefault(policy_of_run(name), []).append((float(entry["psnr"][0]), float(table[name]["psnr"][0])))
    return out


def constrained_table(t: dict[str, Any], docs: Path = Path("docs")) -> list[str]:
    """The rows of a constrained environment: PSNR per request, each cost per session against its limit."""
    spec = environment(t["env_id"])
    limits = next((row["cost_limits"] for row in t["rows"] if row.get("cost_limits")), {})
    lines = [
        f"Every number is per session of the test split (PSNR: mean per request). Costs are sums per session with "
        f"95% intervals, against the limits UE energy {limits.get('ue_energy', '?')} J and deadline misses "
        f"{limits.get('deadline_miss', '?')}; *within limits*: the mean cost per session meets each limit; "
        f"*sessions over a limit*: the share of test sessions whose UE energy / deadline misses exceed the limit; "
        f"*score* is normalised, 0 = `{spec.baseline_policy}`, "
        f"1 = `{spec.upper_reference}` (the played non-causal planner, not its bound). Fidelity: "
        f"{t['config'].get('fidelity', 'table')}"
        + (
            f" (the same policies ranked under live fidelity, on the same sessions: "
            f"[{spec.fidelity_check}]({spec.fidelity_check}))."
            if spec.fidelity_check and t["config"].get("fidelity", "table") == "table"
            else "."
        ),
        "",
        "| policy | runs | training steps | PSNR IQM [95% CI] | PSNR mean [95% CI] | live (table) PSNR | UE energy (J) [95% CI] | deadline misses [95% CI] | within limits | sessions over a limit [95% CI] | score [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    checked = spec.fidelity_check and t["config"].get("fidelity", "table") == "table" and t["label"] == "default"
    live = live_scores(spec, docs) if checked else {}
    report = docs / Path(spec.reference_report).with_suffix(".json") if spec.reference_report else None
    if report is not None and report.exists() and t["label"] == "default":
        bound = json.loads(report.read_text()).get("planner_bound", {}).get("bound")
        if bound is not None:
            lines.insert(1, "")
            lines.insert(2, f"The `{spec.upper_reference}`'s Lagrangian dual bound on these sessions: **{bound:.2f} dB "
                         f"per request** ([{spec.reference_report}]({spec.reference_report})); no policy that observes "
                         "what the environment observes and meets the limits can exceed it in expectation.")  # fmt: skip
    if live:
        lines.insert(1, "")
        sessions = json.loads((docs / Path(spec.fidelity_check).with_suffix(".json")).read_text())["ranking"][
            "sessions"
        ]
        lines.insert(2, f"*live (table) PSNR*: the same policy on the first {sessions} test sessions run live (the UE's "
                     "denoising and decode on every request), and in brackets the table on the same sessions; for "
                     "learners, the mean over their seeds.")  # fmt: skip
    for row in t["rows"]:
        seen = live.get(row["policy"], [])
        live_psnr = f"{np.mean([v[0] for v in seen]):.2f} ({np.mean([v[1] for v in seen]):.2f})" if seen else "-"
        ok = all(row[k][0] <= limits.get(k, np.inf) + 1e-9 for k in evaluation.SESSION_COSTS)
        score = interval(row["score"]) if row["score"] is not None else "-"
        shares = row.get("violation_share", {})
        over = (
            " / ".join(interval([100 * v for v in shares[k]], 1) + "%" for k in evaluation.SESSION_COSTS if k in shares)
            if shares
            else "-"
        )
        steps = ", ".join(f"{s // 1000}k" if s else "-" for s in row["training_steps"])
        lines.append(
            f"| {row['policy']} | {row['runs']} | {steps} | {interval(row['psnr_iqm'])} | {interval(row['psnr_mean'])} | "
            f"{live_psnr} | {interval(row['ue_energy'], 1)} | {interval(row['deadline_miss'])} | {'yes' if ok else 'no'} | {over} | {score} |"
        )
    return [*lines, ""]


def main(args: Args) -> list[dict[str, Any]]:
    database = args.output.with_suffix(".json")
    old: list[dict[str, Any]] = []
    if database.exists() and not args.fresh:
        stored = json.loads(database.read_text())
        if stored.get("schema") != LEADERBOARD_SCHEMA:
            raise SystemExit(f"{database} is not a {LEADERBOARD_SCHEMA} database; rebuild it with --fresh")
        old = stored["records"]
    new = [record for p in find_evals(args.paths) for record in records_of(p)] if args.paths else []
    records = merge(old, new)
    if args.drop:
        kept = [r for r in records if not any(fnmatch.fnmatchcase(r["run_name"], pattern) for pattern in args.drop)]
        print(f"dropped {len(records) - len(kept)} records matching {args.drop}")
        records = kept
    current = [r for r in records if not superseded_table(r)]
    if len(current) < len(records):
        print(f"dropped {len(records) - len(current)} records read from an earlier quality table (re-evaluate them)")
    records = current
    if not records:
        raise SystemExit("no eval.json found: evaluate a policy first (scripts/evaluate.py or a baseline script)")
    tables = build_tables(records, args.reps, args.seed)
    figure = args.output.with_name(args.output.stem + "-profile.png")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    drawn = performance_profile(tables, figure, args.reps, args.seed)
    database.write_text(json.dumps({"schema": LEADERBOARD_SCHEMA, "records": records, "tables": tables}, indent=1))
    args.output.write_text(render(tables, records, figure, drawn, args.output.parent))
    print(f"{len(new)} results added, {len(records)} runs in {len(tables)} configuration(s) -> {args.output}")
    return tables
