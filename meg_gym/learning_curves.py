"""Learning curves and training-time violations of the constrained learners, from their runs' ``curves.jsonl``.

Every constrained learner writes one line per update (``meg_gym.constrained.TrainingCurves``): the training
episodes' mean return, each cost over its limit, and the violations summed since the start. This module groups
runs by algorithm, puts every run on one grid of environment steps, and reports the mean over seeds with a 95%
t-interval (few seeds: the interval is wide, as it should be); ``scripts/constrained_report.py`` writes the
figures and the page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["collect_runs", "curve_summary", "plot_curves"]


def _read(run_dir: Path) -> dict[str, Any] | None:
    curves, meta = run_dir / "curves.jsonl", run_dir / "model.json"
    if not curves.exists() or not meta.exists():
        return None
    rows = [json.loads(line) for line in curves.read_text().splitlines() if line.strip()]
    if not rows:
        return None
    info = json.loads(meta.read_text())
    args = info.get("args", {})
    env = args.get("env", {}) if isinstance(args.get("env"), dict) else {}
    return {
        "run": run_dir.name,
        "algorithm": info.get("algorithm", run_dir.name),
        "env_id": args.get("env_id", "?"),
        "seed": args.get("seed"),
        "steps_per_episode": int(env.get("num_requests", 1)) if args.get("env_id", "").startswith("MEG-") else 1,
        "cost_names": info.get("cost_names", []),
        "wall_time_s": info.get("train_wall_time_s"),
        "step": np.array([r["step"] for r in rows], dtype=np.float64),
        "return": np.array([r["return"] for r in rows]),
        "cost_over_limit": np.array([r["cost_over_limit"] for r in rows]),
        "violation_share": np.array([r["violation_share"] for r in rows]),
        "violating_episodes": np.array([r["cumulative_violating_episodes"] for r in rows], dtype=np.float64),
        "episodes": np.cumsum([r["episodes"] for r in rows]).astype(np.float64),
    }


def collect_runs(paths: list[Path]) -> dict[str, list[dict[str, Any]]]:
    """Runs (folders holding curves.jsonl and model.json, given or found one level down) grouped by algorithm."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        candidates = [path] if (path / "curves.jsonl").exists() else sorted(p for p in path.iterdir() if p.is_dir())
        for run_dir in candidates:
            run = _read(run_dir)
            if run is not None:
                found.setdefault(run["algorithm"], []).append(run)
    if not found:
        raise SystemExit(f"no run with curves.jsonl and model.json under {[str(p) for p in paths]}")
    return found


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along the first axis (edges averaged over what exists)."""
    if window <= 1:
        return values
    kernel = np.ones(window)
    pad = np.ones_like(values)
    total = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), 0, values)
    count = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), 0, pad)
    return total / count


def _mean_ci(samples: np.ndarray) -> dict[str, list[float]]:
    """Mean over axis 0 with a 95% t-interval (one sample: the interval is the value itself)."""
    from scipy import stats

    n = samples.shape[0]
    mean = samples.mean(0)
    if n < 2:
        return {"mean": mean.tolist(), "low": mean.tolist(), "high": mean.tolist()}
    half = stats.t.ppf(0.975, n - 1) * samples.std(0, ddof=1) / np.sqrt(n)
    return {"mean": mean.tolist(), "low": (mean - half).tolist(), "high": (mean + half).tolist()}


def curve_summary(runs: dict[str, list[dict[str, Any]]], points: int = 60, window: int = 9) -> dict[str, Any]:
    """Per algorithm, on a common step grid: return per step, each cost over its limit, the share of training
    episodes over any limit so far, and the final figures (violating episodes, wall time) per seed."""
    out: dict[str, Any] = {}
    for name, group in sorted(runs.items()):
        end = min(r["step"][-1] for r in group)
        grid = np.linspace(end / points, end, points)
        per_run = {"return": [], "costs": [], "violating_share": []}
        for r in group:
            per_step = _smooth(r["return"] / r["steps_per_episode"], window)
            per_run["return"].append(np.interp(grid, r["step"], per_step))
            costs = _smooth(r["cost_over_limit"], window)
            per_run["costs"].append(
                np.stack([np.interp(grid, r["step"], costs[:, k]) for k in range(costs.shape[1])], 1)
            )
            per_run["violating_share"].append(np.interp(grid, r["step"], r["violating_episodes"] / r["episodes"]))
        costs = np.stack(per_run["costs"])
        out[name] = {
            "runs": [r["run"] for r in group],
            "seeds": [r["seed"] for r in group],
            "env_id": group[0]["env_id"],
            "cost_names": group[0]["cost_names"],
            "steps": grid.tolist(),
            "return_per_step": _mean_ci(np.stack(per_run["return"])),
            "cost_over_limit": [_mean_ci(costs[:, :, k]) for k in range(costs.shape[2])],
            "violating_episode_share": _mean_ci(np.stack(per_run["violating_share"])),
            "final_violating_episodes": [int(r["violating_episodes"][-1]) for r in group],
            "final_episodes": [int(r["episodes"][-1]) for r in group],
            "wall_time_s": [r["wall_time_s"] for r in group],
        }
    return out


def plot_curves(summary: dict[str, Any], curves_png: Path, violations_png: Path, ylabel: str) -> None:
    """Two figures: learning curves (return and each cost against its limit), and training-time violations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(summary)
    cost_names = summary[names[0]]["cost_names"]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, 1 + len(cost_names), figsize=(4.2 * (1 + len(cost_names)), 3.4))
    for i, name in enumerate(names):
        s, c = summary[name], colours[i % len(colours)]
        steps = np.asarray(s["steps"]) / 1e3
        series = [s["return_per_step"], *s["cost_over_limit"]]
        for k, (ax, band) in enumerate(zip(axes, series, strict=True)):
            low = band["low"] if k == 0 else np.maximum(band["low"], 0.0)  # a cost is never negative
            ax.plot(steps, band["mean"], color=c, label=f"{name} ({len(s['runs'])})")
            ax.fill_between(steps, low, band["high"], color=c, alpha=0.2, linewidth=0)
    axes[0].set_ylabel(ylabel)
    for ax, cost in zip(axes[1:], cost_names, strict=True):
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
        ax.set_ylim(0.0, 3.0)  # the first updates reach 10x a limit; the axis shows the region around the limit
        ax.set_ylabel(f"{cost} per episode / limit")
    for ax in axes:
        ax.set_xlabel("environment steps (thousands)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(curves_png, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for i, name in enumerate(names):
        s, c = summary[name], colours[i % len(colours)]
        steps = np.asarray(s["steps"]) / 1e3
        band = s["violating_episode_share"]
        ax.plot(steps, band["mean"], color=c, label=name)
        ax.fill_between(steps, np.maximum(band["low"], 0.0), np.minimum(band["high"], 1.0), color=c, alpha=0.2,
                        linewidth=0)  # fmt: skip
    ax.set_xlabel("environment steps (thousands)")
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("training episodes over a limit so far (share)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(violations_png, dpi=110)
    plt.close(fig)
