"""Check MEG-SplitControl-v0's table fidelity against live runs, with uncertainties, on the default (one channel per
request).

    python scripts/validate_split_table.py --sessions 0 --output runs/validation/cells.md    # part 1 only
    python scripts/validate_split_table.py --no-cells --learners runs/MEG-SplitControl-v0__ppo_* \
        --output runs/validation/ranking.md                                                     # part 2 only
    python scripts/validate_split_table.py --merge runs/validation/cells.json runs/validation/ranking.json
                                                         # docs/results/split_table_validation.md (+ .json) from both parts
    python scripts/validate_split_table.py --prompts 8 --draws 1 --sessions 4 --output /tmp/v.md   # a quick look

1. **Per cell.** For every split step, scheme and SNR of ``--snr-db`` (the table's grid points and the midpoints
   between them), each of ``--prompts`` test prompts is sent ``--draws`` times at that SNR and the UE side runs live
   (:class:`meg_gym.envs.split_control.live.LiveUE`). A request meets one channel, so its SNR is the table's own
   axis. The table predicts each prompt (its mean over its noise draws, interpolated in SNR): the difference is
   paired by prompt, and its spread over prompts holds both sides' sampling errors, so a cell's 95% interval is
   what those errors explain. At grid points the table can differ from live by sampling alone; at midpoints the
   interpolation adds its error. Criteria: each scheme's pooled bias within 0.1 dB, and no more than 5% of cells
   whose interval excludes zero.
2. **Per policy.** Every fixed policy of the environment, and every learner run of ``--learners``, runs
   ``--sessions`` test sessions under both fidelities (the same seeds, hence the same channels, prompts and
   deadlines). Criteria: each policy's |table - live| mean PSNR within 0.3 dB, and no pair that the table
   separates by 0.3 dB or more beyond its paired interval reversed live.

Parts can run as separate processes (one CPU thread each on a 2-core machine) and be merged: cell parts add their
cells, ranking parts their policies.
"""

from __future__ import annotations

import importlib
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from meg_gym import channel, evaluation
from meg_gym.config import SplitControlConfig
from meg_gym.envs.split_control.env import Sessions
from meg_gym.envs.split_control.live import shared_live_ue
from meg_gym.envs.split_control.quality_table import DEFAULT_SNR_GRID_DB
from meg_gym.sweep import trial_row

ENV_ID = "MEG-SplitControl-v0"
COMMAND = "python scripts/validate_split_table.py"
BIAS_LIMIT_DB = 0.1  # each scheme's pooled table - live
POLICY_LIMIT_DB = 0.3  # each policy's table - live mean PSNR, and the separation whose reversal counts


def grid_and_midpoints(grid) -> tuple[float, ...]:
    grid = np.asarray(grid, dtype=np.float64)
    mid = 0.5 * (grid[1:] + grid[:-1])
    return tuple(float(v) for v in np.sort(np.concatenate([grid, mid])))


@dataclass
class Args:
    snr_db: tuple[float, ...] = grid_and_midpoints(DEFAULT_SNR_GRID_DB)
    """SNRs of the cells (dB): by default the table's grid points and the midpoints between them"""
    prompts: int = 128
    """test prompts per cell (the first this many of the table)"""
    draws: int = 1
    """live noise draws per prompt and cell"""
    cells: bool = True
    """run part 1 (per cell)"""
    sessions: int = 128
    """test sessions per policy and fidelity (0: skip part 2)"""
    policies: tuple[str, ...] | None = None
    """the environment's fixed policies to rank (default: all)"""
    learners: tuple[Path, ...] = ()
    """learner run folders (saved with --save-model) ranked beside the fixed policies"""
    fidelities: tuple[str, ...] = ("table", "live")
    """the fidelities the ranking runs under (parts merge: --merge unites their policies)"""
    merge: tuple[Path, ...] = ()
    """render the page from these JSON parts instead of running anything"""
    device: str = "cpu"
    """where the live UE's UNet and VAE run ("cuda" on a GPU machine)"""
    threads: int = 0
    """torch threads (0: torch's default)"""
    seed: int = 0
    output: Path = Path("docs/results/split_table_validation.md")


def cells(args: Args) -> dict:
    config = SplitControlConfig(split="test")
    sessions = Sessions(config, 1)
    table = sessions.table
    ue = shared_live_ue(None, "test", args.device, table.raw_latent_receiver)
    prompts = np.arange(min(args.prompts, table.num_prompts))
    live_rows = np.searchsorted(ue.rows, table.rows[prompts])
    grid = table.snr_db
    keys, idx, splits, schemes, snrs = [], [], [], [], []
    for i, split in enumerate(sessions.split_steps):
        for scheme in config.schemes:
            for snr in args.snr_db:
                keys.append((int(split), scheme, float(snr), i, table.schemes.index(scheme)))
                idx.append(np.repeat(live_rows, args.draws))
                splits.append(np.full(len(prompts) * args.draws, split))
                schemes += [scheme] * (len(prompts) * args.draws)
                snrs.append(np.full(len(prompts) * args.draws, snr))
    generator = torch.Generator().manual_seed(args.seed)
    block_snr = channel.db_to_linear(np.concatenate(snrs))[:, None]
    live = ue.run(np.concatenate(idx), np.concatenate(splits), schemes, block_snr, generator)["psnr"]
    live = live.reshape(len(keys), len(prompts), args.draws).mean(-1)
    per_cell = []
    for c, (split, scheme, snr, i, j) in enumerate(keys):
        predicted = table.lookup("psnr", prompts, i, j, np.full(len(prompts), snr), None)
        per_cell.append({
            "split_step": split, "scheme": scheme, "snr_db": snr,
            "on_grid": bool(np.isclose(grid, snr).any()),
            "live": float(live[c].mean()), "table": float(predicted.mean()),
            "diff": evaluation.mean_ci(predicted - live[c]),
            "per_prompt_diff": [round(float(v), 4) for v in predicted - live[c]],
        })  # fmt: skip
    return {"cells": per_cell, "prompts": len(prompts), "live_draws": args.draws,
            "table_draws": table.num_draws, "grid_db": [float(g) for g in grid]}  # fmt: skip


def cell_summary(pc: dict) -> dict:
    """Per scheme: pooled bias (all cells, grid points, midpoints) with its CI; RMS of the cells' differences at
    midpoints against the RMS their sampling errors explain; and the cells whose interval excludes zero."""
    out = {}
    for scheme in dict.fromkeys(c["scheme"] for c in pc["cells"]):
        mine = [c for c in pc["cells"] if c["scheme"] == scheme]

        # pooled over cells: the mean of per-prompt differences, its CI over prompts (cells share the prompts)
        def pooled(group):
            if not group:
                return [float("nan")] * 3
            return evaluation.mean_ci(np.mean([c["per_prompt_diff"] for c in group], axis=0))

        mid = [c for c in mine if not c["on_grid"]]
        se = [(c["diff"][2] - c["diff"][0]) / 1.96 for c in mid]
        out[scheme] = {
            "bias": pooled(mine),
            "bias_grid": pooled([c for c in mine if c["on_grid"]]),
            "bias_mid": pooled(mid),
            "rms_mid": float(np.sqrt(np.mean([c["diff"][0] ** 2 for c in mid]))) if mid else float("nan"),
            "rms_mid_sampling": float(np.sqrt(np.mean(np.square(se)))) if mid else float("nan"),
        }
    failing = [c for c in pc["cells"] if c["diff"][1] > 0 or c["diff"][2] < 0]
    return {"schemes": out, "failing": len(failing), "cells": len(pc["cells"]),
            "failing_small": sum(abs(c["diff"][0]) < 0.1 for c in failing),
            "failing_grid": sum(c["on_grid"] for c in failing),
            "failing_mid": sum(not c["on_grid"] for c in failing)}  # fmt: skip


def learner_policy(run_dir: Path):
    """(policy, its name in the ranking) of a saved run: "<exp name> (<seed>)", or for a sweep's trial
    (SWEEP/trials/KEY/runs/KEY, run with --save-models) "<its leaderboard label> (<seed>)"."""
    meta = evaluation.read_model_json(run_dir)
    module = importlib.import_module(f"meg_gym_baselines.{meta['learner']}")  # baselines/, installed
    row = trial_row(run_dir)
    if row is not None:
        name = f"{row['label']} ({row['seed']})"
    else:
        name = f"{str(meta['args'].get('exp_name') or meta['algorithm']).replace('_', '-')} ({run_dir.name.rsplit('__', 1)[-1]})"
    return module.load_policy(run_dir), name


def ranking(args: Args) -> dict:
    from meg_gym.policies import SPLIT_CONTROL_POLICIES

    config = SplitControlConfig()
    unknown = set(args.policies or ()) - set(SPLIT_CONTROL_POLICIES)
    if unknown:
        raise SystemExit(f"--policies: no fixed policy {sorted(unknown)}; choose from {list(SPLIT_CONTROL_POLICIES)}")
    chosen = args.policies if args.policies is not None else tuple(SPLIT_CONTROL_POLICIES)
    policies = {name: SPLIT_CONTROL_POLICIES[name](config) for name in chosen}
    for run_dir in args.learners:
        policy, name = learner_policy(run_dir)
        policies[name] = policy
    out: dict = {"outside_grid": {name: grid_reads(policy, args.sessions) for name, policy in policies.items()}}
    for fidelity in args.fidelities:
        kwargs = evaluation.env_kwargs(SplitControlConfig(fidelity=fidelity, device=args.device))
        out[fidelity] = {}
        for name, policy in policies.items():
            result = evaluation.evaluate_policy(policy, ENV_ID, kwargs, args.sessions, num_envs=min(64, args.sessions))
            out[fidelity][name] = {
                "psnr": evaluation.mean_ci(result["psnr"]["per_episode"]),
                "per_session": [round(float(v), 4) for v in result["psnr"]["per_episode"]],
                "ue_energy": float(np.mean(result["ue_energy"]["per_episode"])),
                "deadline_miss": float(np.mean(result["deadline_miss"]["per_episode"])),
            }
            print(f"{fidelity} {name}: {out[fidelity][name]['psnr'][0]:.2f} dB", flush=True)
    outside = out.pop("outside_grid")
    return {"sessions": args.sessions, "policies": out, "outside_grid": outside}


def grid_reads(policy, sessions: int) -> dict[str, float]:
    """Shares of a policy's requests (table fidelity, the test sessions) whose SNR lies below / above the grid."""
    from meg_gym.envs.split_control.env import SplitControlVectorEnv

    num_envs = min(64, sessions)
    env = SplitControlVectorEnv(num_envs=num_envs, split="test")
    grid = env.sessions.table.snr_db
    below = above = total = 0
    for start in range(0, sessions, num_envs):
        obs, _ = env.reset(seed=evaluation.EVAL_SEED + start)
        for _ in range(env.config.num_requests):
            obs, _, _, _, info = env.step(policy(obs, env))
            snr = np.asarray(info["effective_snr_db"])[: sessions - start]
            below, above, total = (
                below + int((snr < grid[0]).sum()),
                above + int((snr > grid[-1]).sum()),
                total + len(snr),
            )
    return {"below": below / total, "above": above / total}


def main(args: Args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    start, commit = time.time(), evaluation.git_commit()
    if args.merge:
        result = {"parts": [], "merged_by": f"{COMMAND} --merge " + " ".join(str(p) for p in args.merge)}
        for path in args.merge:
            part = json.loads(path.read_text())
            result["parts"].append(
                {k: part[k] for k in ("command", "commit", "machine", "wall_s", "args") if k in part}
            )
            if "per_cell" in part:  # later parts add cells, or replace those they share
                merged_cells = result.setdefault("per_cell", {**part["per_cell"], "cells": []})
                key = lambda c: (c["split_step"], c["scheme"], c["snr_db"])  # noqa: E731
                fresh = {key(c) for c in part["per_cell"]["cells"]}
                merged_cells["cells"] = [c for c in merged_cells["cells"] if key(c) not in fresh]
                merged_cells["cells"] += part["per_cell"]["cells"]
                merged_cells.update({k: v for k, v in part["per_cell"].items() if k != "cells"})  # the latest grid
            if "ranking" in part:  # later parts add policies and fidelities, or replace them
                merged = result.setdefault("ranking", {"sessions": part["ranking"]["sessions"], "policies": {}})
                if merged["sessions"] != part["ranking"]["sessions"]:
                    raise SystemExit(f"{path} ranks on {part['ranking']['sessions']} sessions, the parts before on "
                                     f"{merged['sessions']}: merge parts run on the same sessions")  # fmt: skip
                for fidelity, policies in part["ranking"]["policies"].items():
                    merged["policies"].setdefault(fidelity, {}).update(policies)
                merged.setdefault("outside_grid", {}).update(part["ranking"].get("outside_grid", {}))
    else:
        result = {}
        if args.cells:
            result["per_cell"] = cells(args)
            summary = cell_summary(result["per_cell"])
            print(f"per cell: {summary['failing']} of {summary['cells']} cells' intervals exclude 0", flush=True)
        if args.sessions:
            result["ranking"] = ranking(args)
        result.update(command=COMMAND, commit=commit, machine=platform.processor() or platform.machine(),
                      wall_s=time.time() - start, args=json.loads(json.dumps(args.__dict__, default=str)))  # fmt: skip
        result["parts"] = [{k: result[k] for k in ("command", "commit", "machine", "wall_s", "args")}]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.output.write_text(render(result))
    print(args.output.read_text())
    return result


def part_flags(args: dict) -> str:
    """The flags of a part's command line that differ from the defaults (how that part was run)."""
    defaults = json.loads(json.dumps(Args().__dict__, default=str))
    flags = []
    for key, value in args.items():
        if key in ("output", "merge") or defaults.get(key) == value:
            continue
        name = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(name if value else f"--no-{key.replace('_', '-')}")
        elif isinstance(value, list):
            flags.append(f"{name} " + " ".join(str(v) for v in value))
        else:
            flags.append(f"{name} {value}")
    return "".join(" " + f for f in flags)


def fmt_ci(v: list[float], digits: int = 2) -> str:
    return f"{v[0]:+.{digits}f} [{v[1]:+.{digits}f}, {v[2]:+.{digits}f}]"


def render(r: dict) -> str:
    lines = ["# MEG-SplitControl-v0: table fidelity against live runs", ""]
    if "merged_by" in r:
        lines += [f"Merged by `{r['merged_by']}` from the parts below, in order:", ""]
    lines += [f"- `{p['command']}{part_flags(p.get('args', {}))}` at commit `{p['commit']}` ({p['machine']}, "
              f"{p['wall_s'] / 60:.1f} min){'; later parts replace the rows they share' if i else ''}"
              for i, p in enumerate(r["parts"])]  # fmt: skip
    if "per_cell" in r:
        lines += render_cells(r["per_cell"])
    if "ranking" in r:
        lines += render_ranking(r["ranking"])
    return "\n".join(lines) + "\n"


def chance_high(cells: int, rate: float = 0.05) -> int:
    """The one-sided 95% upper end of how many of ``cells`` exclude zero by chance (normal approximation)."""
    return int(np.ceil(cells * rate + 1.645 * np.sqrt(cells * rate * (1 - rate))))


def render_cells(pc: dict) -> list[str]:
    summary = cell_summary(pc)
    share = summary["failing"] / summary["cells"]
    worst = max(abs(v["bias"][0]) for v in summary["schemes"].values())
    lines = [
        "",
        "## Per cell",
        "",
        f"One channel per request (the default): each cell sends each of {pc['prompts']} test prompts "
        f"{pc['live_draws']} time(s) at the cell's SNR, live, and compares it with the table's prediction for the same "
        f"prompt (the mean of its {pc['table_draws']} noise draws, interpolated in SNR). Cells at the table's grid "
        "points and at the midpoints between them; the table's grid: "
        + ", ".join(f"{g:+g}" for g in pc["grid_db"])
        + " dB.",
        "",
        f"- **Cells whose 95% interval excludes zero: {summary['failing']} of {summary['cells']} ({share:.1%})**, "
        f"{summary['failing_grid']} at grid points and {summary['failing_mid']} at midpoints; "
        f"{summary['failing_small']} of them differ by less than 0.1 dB (criterion: no more often than chance, 5%: "
        f"{0.05 * summary['cells']:.0f} expected when table and live agree, up to {chance_high(summary['cells'])} "
        "in 95% of checks).",
        f"- **Largest pooled bias of a scheme: {worst:.3f} dB** (criterion: within {BIAS_LIMIT_DB} dB).",
        "",
        "Per scheme, table - live pooled over its cells (mean of the per-prompt differences, 95% CI over prompts); "
        "at midpoints, the RMS of the cells' differences beside the RMS their sampling errors alone would give "
        "(interpolation error shows as the first exceeding the second):",
        "",
        "| scheme | pooled bias | at grid points | at midpoints | RMS at midpoints | RMS from sampling |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {k} | {fmt_ci(v['bias'], 3)} | {fmt_ci(v['bias_grid'], 3)} | {fmt_ci(v['bias_mid'], 3)} | "
              f"{v['rms_mid']:.3f} | {v['rms_mid_sampling']:.3f} |" for k, v in summary["schemes"].items()]  # fmt: skip
    lines += ["", "| split step | scheme | SNR (dB) | grid point | live | table | table - live [95% CI] |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {c['split_step']} | {c['scheme']} | {c['snr_db']:+g} | {'yes' if c['on_grid'] else ''} | "
              f"{c['live']:.2f} | {c['table']:.2f} | {fmt_ci(c['diff'])}"
              f"{' **' if c['diff'][1] > 0 or c['diff'][2] < 0 else ''} |"
              for c in sorted(pc["cells"], key=lambda c: (c["split_step"], c["scheme"], c["snr_db"]))]  # fmt: skip
    return lines


def pair_verdicts(policies: dict, margin: float = 0.0) -> dict[tuple[str, str], int]:
    """For every pair (a, b): +1 if a beats b by ``margin`` dB or more and beyond the paired 95% CI over the same
    sessions, -1 if b beats a so, 0 otherwise."""
    out = {}
    names = list(policies)
    for a in names:
        for b in names:
            if a != b:
                mean, low, high = evaluation.mean_ci(
                    np.subtract(policies[a]["per_session"], policies[b]["per_session"])
                )
                out[a, b] = 1 if low > 0 and mean >= margin else -1 if high < 0 and mean <= -margin else 0
    return out


def policy_summary(ranking: dict) -> dict:
    """Per policy, live - table on the same sessions; the pairs the table separates by POLICY_LIMIT_DB and what live
    makes of them."""
    t, live = ranking["policies"]["table"], ranking["policies"]["live"]
    names = [k for k in t if k in live]
    gap = {k: evaluation.mean_ci(np.subtract(t[k]["per_session"], live[k]["per_session"])) for k in names}
    vt = pair_verdicts({k: t[k] for k in names}, POLICY_LIMIT_DB)
    vl = pair_verdicts({k: live[k] for k in names})
    separated = [(a, b) for (a, b), v in vt.items() if v == 1]
    reversed_ = [(a, b) for a, b in separated if vl[a, b] == -1]
    flipped = [(a, b) for a, b in separated
               if np.mean(live[a]["per_session"]) < np.mean(live[b]["per_session"])]  # fmt: skip
    return {"gap": gap, "largest": max(abs(v[0]) for v in gap.values()), "separated": separated,
            "reversed": reversed_, "flipped_means": flipped}  # fmt: skip


def render_ranking(ranking: dict) -> list[str]:
    if set(ranking["policies"]) != {"table", "live"}:
        (fidelity, pol), *_ = ranking["policies"].items()
        lines = ["", f"## Per policy ({fidelity} fidelity only)", "", "| policy | PSNR [95% CI] | UE J / misses |",
                 "|---|---|---|"]  # fmt: skip
        for k in sorted(pol, key=lambda k: -pol[k]["psnr"][0]):
            lines.append(f"| {k} | {pol[k]['psnr'][0]:.2f} [{pol[k]['psnr'][1]:.2f}, {pol[k]['psnr'][2]:.2f}] | "
                         f"{pol[k]['ue_energy']:.1f} / {pol[k]['deadline_miss']:.2f} |")  # fmt: skip
        return lines
    t, live = ranking["policies"]["table"], ranking["policies"]["live"]
    summary = policy_summary(ranking)
    order_t = sorted(summary["gap"], key=lambda k: -t[k]["psnr"][0])
    order_l = sorted(summary["gap"], key=lambda k: -live[k]["psnr"][0])
    outside = ranking.get("outside_grid", {})
    lines = ["", "## Per policy", "",
             f"{ranking['sessions']} test sessions per policy, the same sessions (channels, prompts, deadlines) under "
             "both fidelities, so differences are paired. PSNR is the mean per request over sessions; costs are per "
             "session and equal under both fidelities (the same actions meet the same sessions).", "",
             f"- **Largest |table - live|: {summary['largest']:.2f} dB** (criterion: within {POLICY_LIMIT_DB} dB for "
             "every policy).",
             f"- Pairs the table separates by {POLICY_LIMIT_DB} dB or more beyond their paired 95% CI: "
             f"{len(summary['separated'])}; **reversed live beyond its CI: {len(summary['reversed'])}**"
             + (" (" + ", ".join(f"{a} > {b}" for a, b in summary["reversed"]) + " in the table)"
                if summary["reversed"] else "")
             + f"; live means in the other order: {len(summary['flipped_means'])}"
             + (" (" + ", ".join(f"{a} > {b}" for a, b in summary["flipped_means"]) + " in the table)"
                if summary["flipped_means"] else "") + ".",
             f"- Order of the means: **{'the same' if order_t == order_l else 'different'}** under both fidelities.",
             "- Requests whose SNR lies outside the table's grid (table fidelity, so read from its end point): "
             + (", ".join(f"{k} {100 * v['below']:.2f}% below / {100 * v['above']:.2f}% above"
                          for k, v in outside.items()) or "not measured") + ".", ""]  # fmt: skip
    base = "best-fixed" if "best-fixed" in t else order_t[-1]
    lines += [f"| policy | table PSNR | live PSNR | table - live [95% CI] | live rank | table - {base} | "
              f"live - {base} | UE J / misses |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for k in order_t:
        dt = evaluation.mean_ci(np.subtract(t[k]["per_session"], t[base]["per_session"]))
        dl = evaluation.mean_ci(np.subtract(live[k]["per_session"], live[base]["per_session"]))
        lines.append(f"| {k} | {t[k]['psnr'][0]:.2f} | {live[k]['psnr'][0]:.2f} | {fmt_ci(summary['gap'][k])} | "
                     f"{order_l.index(k) + 1} | {fmt_ci(dt) if k != base else ''} | "
                     f"{fmt_ci(dl) if k != base else ''} | {t[k]['ue_energy']:.1f} / {t[k]['deadline_miss']:.2f} |")  # fmt: skip
    return lines


if __name__ == "__main__":
    main(tyro.cli(Args))
