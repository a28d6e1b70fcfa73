"""Check MEG-SplitControl-v0's table fidelity against live runs on the default fading, with uncertainties.

    python scripts/validate_split_table.py --sessions 0 --output runs/validation/cells.md    # part 1 only
    python scripts/validate_split_table.py --no-cells --learners runs/MEG-SplitControl-v0__ppo_* \
        --output runs/validation/ranking.md                                                     # part 2 only
    python scripts/validate_split_table.py --merge runs/validation/cells.json runs/validation/ranking.json
                                                         # docs/split_table_validation.md (+ .json) from both parts
    python scripts/validate_split_table.py --prompts 8 --draws 1 --sessions 4 --output /tmp/v.md   # a quick look

1. **Per cell.** For every split step, scheme and mean SNR of ``--snr-db``, each of ``--prompts`` test prompts
   meets ``--draws`` independent block-fading channels (the env's default fading and ``num_blocks``) and the UE
   side runs live (:class:`meg_gym.envs.split_control.live.LiveUE`). The table predicts the same requests (same
   prompt, same block SNRs, mean over its noise draws) through the effective-SNR map, so the difference is
   paired: prompt and fading cancel, and what is left is the live run's own noise (the UE's denoising amplifies
   the channel noise: one prompt's PSNR varies by several dB between noise draws) and the table's. Each cell
   gets the mean difference with its 95% CI, and the table's own sampling error there (its draws' spread over
   the square root of its samples): a cell can be no more accurate than that.
2. **Ranking.** Every fixed policy of the environment, and every learner run of ``--learners``, runs
   ``--sessions`` test sessions under both fidelities (the same seeds, hence the same channels, prompts and
   deadlines); the page gives both rankings with 95% CIs.

The two parts can run as separate processes (one CPU thread each on a 2-core machine) and be merged.
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
from meg_gym.envs.split_control.quality_table import effective_snr_db

ENV_ID = "MEG-SplitControl-v0"
COMMAND = "python scripts/validate_split_table.py"


@dataclass
class Args:
    snr_db: tuple[float, ...] = (-5.0, 5.0, 15.0)
    """mean receive SNRs of the cells (dB)"""
    prompts: int = 128
    """test prompts per cell (the first this many of the table)"""
    draws: int = 3
    """fading channels (and live noise draws) per prompt and cell"""
    betas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    """EESM parameters tried besides the MMSE-equivalent map"""
    cells: bool = True
    """run part 1 (per cell)"""
    sessions: int = 64
    """test sessions per policy and fidelity for the ranking (0: skip part 2)"""
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
    output: Path = Path("docs/split_table_validation.md")


def cells(args: Args) -> dict:
    config = SplitControlConfig(split="test")
    sessions = Sessions(config, 1)
    table, ue = sessions.table, shared_live_ue(None, "test", args.device)
    rng = np.random.default_rng(args.seed)
    prompts = np.arange(min(args.prompts, table.num_prompts))
    live_rows = np.searchsorted(ue.rows, table.rows[prompts])
    n = len(prompts) * args.draws
    keys, idx, splits, schemes, block_snr = [], [], [], [], []
    for i, split in enumerate(sessions.split_steps):
        for j, scheme in enumerate(config.schemes):
            for snr in args.snr_db:
                gains = channel.sample_block_gains(config.channel, n, config.num_blocks, rng)
                keys.append((int(split), scheme, float(snr), i, j))
                idx.append(np.repeat(live_rows, args.draws))
                splits.append(np.full(n, split))
                schemes += [scheme] * n
                block_snr.append(channel.db_to_linear(snr) * np.abs(gains) ** 2)
    generator = torch.Generator().manual_seed(args.seed)
    live = ue.run(np.concatenate(idx), np.concatenate(splits), schemes, np.concatenate(block_snr), generator)["psnr"]
    request_prompts = np.repeat(prompts, args.draws)
    psnr = table.values["psnr"]
    draw_sd = psnr.std(-1, ddof=1) if table.num_draws > 1 else np.full(psnr.shape[:-1], np.nan)  # (P, S, M, G)
    per_cell, fits, paired = [], {}, []
    for beta in (None, *args.betas):
        errors = []
        for c, (split, scheme, snr, i, j) in enumerate(keys):
            predicted = table.lookup("psnr", request_prompts, i, j, effective_snr_db(block_snr[c], beta))
            measured = live[c * n : (c + 1) * n]
            diff = evaluation.mean_ci(predicted - measured)
            errors.append(diff)
            if beta is None:
                paired.append(predicted - measured)
                grid = int(np.argmin(np.abs(table.snr_db - snr)))
                per_cell.append({
                    "split_step": split, "scheme": scheme, "snr_db": snr, "live": evaluation.mean_ci(measured),
                    "table": float(predicted.mean()), "diff": diff,
                    # the shipped table's own sampling error in this cell (its draws at the nearest grid point)
                    "table_se": float(np.sqrt(np.mean(draw_sd[prompts, i, j, grid] ** 2) / (len(prompts) * table.num_draws))),
                })  # fmt: skip
        point = np.array([e[0] for e in errors])
        half = np.array([e[2] - e[0] for e in errors])
        fits["mmse" if beta is None else f"eesm {beta:g}"] = {
            "max_abs": float(np.max(np.abs(point))),
            "rms": float(np.sqrt(np.mean(point**2))),
            "cells_ci_excludes_zero": int(np.sum(np.abs(point) > half)),
            "errors": point.tolist(),
        }
    by_scheme = {
        scheme: evaluation.mean_ci(np.concatenate([paired[c] for c, key in enumerate(keys) if key[4] == j]))
        for j, scheme in enumerate(config.schemes)
    }
    return {"cells": per_cell, "fits": fits, "by_scheme": by_scheme, "requests_per_cell": n,
            "prompts": len(prompts), "table_draws": table.num_draws, "snr_db": list(args.snr_db)}  # fmt: skip


def learner_policy(run_dir: Path):
    meta = evaluation.read_model_json(run_dir)
    module = importlib.import_module(f"meg_gym_baselines.{meta['learner']}")  # baselines/, installed
    return module.load_policy(run_dir), str(meta["args"].get("exp_name") or meta["algorithm"])


def ranking(args: Args) -> dict:
    from meg_gym.policies import SPLIT_CONTROL_POLICIES

    config = SplitControlConfig()
    unknown = set(args.policies or ()) - set(SPLIT_CONTROL_POLICIES)
    if unknown:
        raise SystemExit(f"--policies: no fixed policy {sorted(unknown)}; choose from {list(SPLIT_CONTROL_POLICIES)}")
    chosen = args.policies if args.policies is not None else tuple(SPLIT_CONTROL_POLICIES)
    policies = {name: SPLIT_CONTROL_POLICIES[name](config) for name in chosen}
    for run_dir in args.learners:
        policy, algorithm = learner_policy(run_dir)
        policies[f"{algorithm.replace('_', '-')} ({run_dir.name.rsplit('__', 1)[-1]})"] = policy
    out = {}
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
    return {"sessions": args.sessions, "policies": out}


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
            if "per_cell" in part:
                result["per_cell"] = part["per_cell"]
            if "ranking" in part:  # later parts add policies and fidelities, or replace them
                merged = result.setdefault("ranking", {"sessions": part["ranking"]["sessions"], "policies": {}})
                if merged["sessions"] != part["ranking"]["sessions"]:
                    raise SystemExit(f"{path} ranks on {part['ranking']['sessions']} sessions, the parts before on "
                                     f"{merged['sessions']}: merge parts run on the same sessions")  # fmt: skip
                for fidelity, policies in part["ranking"]["policies"].items():
                    merged["policies"].setdefault(fidelity, {}).update(policies)
    else:
        result = {}
        if args.cells:
            result["per_cell"] = cells(args)
            fits = result["per_cell"]["fits"]
            print(f"per cell: MMSE map max |diff| {fits['mmse']['max_abs']:.2f} dB, RMS {fits['mmse']['rms']:.2f}",
                  flush=True)  # fmt: skip
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


def fmt_ci(v: list[float]) -> str:
    return f"{v[0]:+.2f} [{v[1]:+.2f}, {v[2]:+.2f}]"


def render(r: dict) -> str:
    lines = ["# MEG-SplitControl-v0: table fidelity against live runs", ""]
    if "merged_by" in r:
        lines += [f"Merged by `{r['merged_by']}` from the parts below, in order:", ""]
    lines += [f"- `{p['command']}{part_flags(p.get('args', {}))}` at commit `{p['commit']}` ({p['machine']}, "
              f"{p['wall_s'] / 60:.1f} min){'; later parts replace the rows they share' if i else ''}"
              for i, p in enumerate(r["parts"])]  # fmt: skip
    if "per_cell" in r:
        pc = r["per_cell"]
        fits = pc["fits"]
        mmse = fits["mmse"]
        n_cells = len(pc["cells"])
        lines += [
            "",
            "## Per cell",
            "",
            f"Default fading (Rayleigh, 4 blocks per request); {pc['requests_per_cell']} live requests per cell "
            f"({pc['prompts']} test prompts x {pc['requests_per_cell'] // pc['prompts']} channels), each compared "
            "with the table's prediction of the same request (paired). Largest per-cell mean difference (table - "
            f"live) with the MMSE-equivalent map (the default): **{mmse['max_abs']:.2f} dB** (RMS "
            f"{mmse['rms']:.2f}); its 95% CI excludes zero in {mmse['cells_ci_excludes_zero']} of {n_cells} cells "
            f"(about {0.05 * n_cells:.0f} expected by chance if table and live agreed exactly).",
            "",
            "| map | max abs diff (dB) | RMS (dB) | cells whose CI excludes 0 |",
            "|---|---|---|---|",
        ]
        lines += [f"| {k} | {v['max_abs']:.2f} | {v['rms']:.2f} | {v['cells_ci_excludes_zero']} |"
                  for k, v in fits.items()]  # fmt: skip
        lines += ["", "Pooled over split steps and SNRs (MMSE map), table - live:", "",
                  "| scheme | mean diff (dB) [95% CI] |", "|---|---|"]  # fmt: skip
        lines += [f"| {k} | {fmt_ci(v)} |" for k, v in pc["by_scheme"].items()]
        lines += ["", "`table SE`: the shipped table's own sampling error in the cell (from its "
                  f"{pc['table_draws']} noise draws per prompt).", "",
                  "| split step | scheme | SNR (dB) | live | table | table - live [95% CI] | table SE |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {c['split_step']} | {c['scheme']} | {c['snr_db']:+g} | {c['live'][0]:.2f} | {c['table']:.2f} | "
                  f"{fmt_ci(c['diff'])} | {c['table_se']:.2f} |" for c in pc["cells"]]  # fmt: skip
    if "ranking" in r:
        lines += render_ranking(r["ranking"])
    return "\n".join(lines) + "\n"


def pair_verdicts(policies: dict) -> dict[tuple[str, str], int]:
    """For every pair (a, b): +1 if a beats b beyond the paired 95% CI over the same sessions, -1 if b beats a, 0 tied."""
    out = {}
    names = list(policies)
    for a in names:
        for b in names:
            if a != b:
                low, high = evaluation.mean_ci(np.subtract(policies[a]["per_session"], policies[b]["per_session"]))[1:]
                out[a, b] = 1 if low > 0 else -1 if high < 0 else 0
    return out


def render_ranking(ranking: dict) -> list[str]:
    if set(ranking["policies"]) != {"table", "live"}:
        (fidelity, pol), *_ = ranking["policies"].items()
        lines = ["", f"## Ranking ({fidelity} fidelity only)", "", "| policy | PSNR [95% CI] | UE J / misses |",
                 "|---|---|---|"]  # fmt: skip
        for k in sorted(pol, key=lambda k: -pol[k]["psnr"][0]):
            lines.append(f"| {k} | {pol[k]['psnr'][0]:.2f} [{pol[k]['psnr'][1]:.2f}, {pol[k]['psnr'][2]:.2f}] | "
                         f"{pol[k]['ue_energy']:.1f} / {pol[k]['deadline_miss']:.2f} |")  # fmt: skip
        return lines
    t, live = ranking["policies"]["table"], ranking["policies"]["live"]
    order_t = sorted(t, key=lambda k: -t[k]["psnr"][0])
    order_l = sorted(live, key=lambda k: -live[k]["psnr"][0])
    lines = ["", "## Ranking", "",
             f"{ranking['sessions']} test sessions per policy, the same sessions (channels, prompts, deadlines) under "
             "both fidelities, so differences are paired. PSNR is the mean over sessions with its 95% CI; costs are "
             "per session (limits 80 J, 1 miss) and equal under both fidelities (the same actions meet the same "
             f"sessions). Order of the means: **{'the same' if order_t == order_l else 'different'}**.", ""]  # fmt: skip
    vt, vl = pair_verdicts(t), pair_verdicts(live)
    reversed_pairs = [(a, b) for (a, b), v in vt.items() if v == 1 and vl[a, b] == -1]
    tied_live = [(a, b) for (a, b), v in vt.items() if v == 1 and vl[a, b] == 0]
    apart = sum(1 for v in vt.values() if v == 1)
    lines += [f"Pairs the table ranks apart beyond their paired 95% CI: {apart}. Of these, live ranks "
              f"**{len(reversed_pairs)} the other way** beyond its CI"
              + (f" ({', '.join(f'{a} > {b}' for a, b in reversed_pairs)} in the table)" if reversed_pairs else "")
              + f", and {len(tied_live)} as a tie: "
              + (", ".join(f"{a} > {b}" for a, b in tied_live) or "none") + ".", ""]  # fmt: skip
    base = "best-fixed" if "best-fixed" in t else order_t[-1]
    lines += [f"| policy | table PSNR | live PSNR | live rank | table - {base} | live - {base} | UE J / misses |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for k in order_t:
        dt = evaluation.mean_ci(np.subtract(t[k]["per_session"], t[base]["per_session"]))
        dl = evaluation.mean_ci(np.subtract(live[k]["per_session"], live[base]["per_session"]))
        lines.append(f"| {k} | {t[k]['psnr'][0]:.2f} | {live[k]['psnr'][0]:.2f} | {order_l.index(k) + 1} | "
                     f"{fmt_ci(dt) if k != base else ''} | {fmt_ci(dl) if k != base else ''} | "
                     f"{t[k]['ue_energy']:.1f} / {t[k]['deadline_miss']:.2f} |")  # fmt: skip
    return lines


if __name__ == "__main__":
    main(tyro.cli(Args))
