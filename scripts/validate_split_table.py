"""Check MEG-SplitControl-v0's table fidelity against live runs on the default fading; fit the effective-SNR map.

    python scripts/validate_split_table.py                       # writes docs/split_table_validation.md (+ .json)
    python scripts/validate_split_table.py --prompts 8 --sessions 8 --output /tmp/v.md   # a quick look

1. **Per cell.** For every split step, scheme and mean SNR of ``--snr-db``, ``--prompts`` test prompts each cross
   ``--draws`` independent Rayleigh block-fading channels (the env's ``num_blocks``); the UE side runs live
   (:class:`meg_gym.envs.split_control.live.LiveUE`). The table predicts each request from its blocks' SNRs through
   the effective-SNR map. The page gives, per (split, scheme, SNR) cell, the live mean PSNR, the table's, and the
   difference, for the MMSE-equivalent map (the env's default) and for EESM at the beta that fits best.
2. **Ranking.** Every fixed policy of the environment runs ``--sessions`` test sessions under both fidelities
   (the same seeds, hence the same channels, prompts and deadlines); the page gives both rankings.
"""

from __future__ import annotations

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


@dataclass
class Args:
    snr_db: tuple[float, ...] = (-5.0, 5.0, 15.0)
    """mean receive SNRs of the cells (dB)"""
    prompts: int = 32
    """test prompts per cell"""
    draws: int = 2
    """fading channels per prompt and cell"""
    betas: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    """EESM parameters tried"""
    sessions: int = 64
    """test sessions per policy and fidelity for the ranking (0: skip it)"""
    seed: int = 0
    output: Path = Path("docs/split_table_validation.md")


def cells(args: Args) -> dict:
    config = SplitControlConfig(split="test")
    sessions = Sessions(config, 1)
    table, ue = sessions.table, shared_live_ue(None, "test", "cpu")
    rng = np.random.default_rng(args.seed)
    prompts = np.arange(min(args.prompts, table.num_prompts))
    live_rows = np.searchsorted(ue.rows, table.rows[prompts])
    keys, live, gains_all = [], [], []
    idx, splits, schemes, block_snr = [], [], [], []
    for i, split in enumerate(sessions.split_steps):
        for j, scheme in enumerate(config.schemes):
            for snr in args.snr_db:
                gains = channel.sample_block_gains(config.channel, len(prompts) * args.draws, config.num_blocks, rng)
                keys.append((int(split), scheme, float(snr), i, j))
                idx.append(np.repeat(live_rows, args.draws))
                splits.append(np.full(len(gains), split))
                schemes += [scheme] * len(gains)
                block_snr.append(channel.db_to_linear(snr) * np.abs(gains) ** 2)
                gains_all.append(np.repeat(prompts, args.draws))
    generator = torch.Generator().manual_seed(args.seed)
    out = ue.run(np.concatenate(idx), np.concatenate(splits), schemes, np.concatenate(block_snr), generator, ("psnr",))
    live = out["psnr"]
    n = len(prompts) * args.draws
    per_cell = []
    fits = {}
    for beta in (None, *args.betas):
        errors = []
        for c, (split, scheme, snr, i, j) in enumerate(keys):
            eff = effective_snr_db(block_snr[c], beta)
            predicted = table.lookup("psnr", gains_all[c], i, j, eff)
            errors.append(float(predicted.mean() - live[c * n : (c + 1) * n].mean()))
            if beta is None:
                per_cell.append({"split_step": split, "scheme": scheme, "snr_db": snr,
                                 "live": float(live[c * n : (c + 1) * n].mean()), "table": float(predicted.mean())})  # fmt: skip
        fits["mmse" if beta is None else f"eesm {beta:g}"] = {
            "max_abs": float(np.max(np.abs(errors))),
            "rms": float(np.sqrt(np.mean(np.square(errors)))),
            "errors": errors,
        }
    return {"cells": per_cell, "fits": fits, "requests_per_cell": n}


def ranking(args: Args) -> dict:
    from meg_gym.policies import SPLIT_CONTROL_POLICIES

    config = SplitControlConfig()
    out = {}
    for fidelity in ("table", "live"):
        kwargs = evaluation.env_kwargs(SplitControlConfig(fidelity=fidelity))
        out[fidelity] = {}
        for name, make in SPLIT_CONTROL_POLICIES.items():
            result = evaluation.evaluate_policy(
                make(config), ENV_ID, kwargs, args.sessions, num_envs=min(64, args.sessions)
            )
            out[fidelity][name] = result["psnr"]["mean"]
            print(f"{fidelity} {name}: {out[fidelity][name]:.2f} dB", flush=True)
    return out


def main(args: Args) -> dict:
    start = time.time()
    result = {"per_cell": cells(args)}
    best = min(result["per_cell"]["fits"].items(), key=lambda kv: kv[1]["rms"])
    print(f"per cell: MMSE map max |diff| {result['per_cell']['fits']['mmse']['max_abs']:.2f} dB; best {best[0]} "
          f"{best[1]['max_abs']:.2f} dB", flush=True)  # fmt: skip
    if args.sessions:
        result["ranking"] = ranking(args)
    result.update(command="python scripts/validate_split_table.py", commit=evaluation.git_commit(),
                  machine=platform.processor() or platform.machine(), wall_s=time.time() - start,
                  args=json.loads(json.dumps(args.__dict__, default=str)))  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.output.write_text(render(result))
    print(args.output.read_text())
    return result


def render(r: dict) -> str:
    pc = r["per_cell"]
    fits = pc["fits"]
    best = min(fits.items(), key=lambda kv: kv[1]["rms"])
    lines = [
        "# MEG-SplitControl-v0: table fidelity against live runs",
        "",
        f"Made by `{r['command']}` at commit `{r['commit']}` ({r['machine']}, {r['wall_s'] / 60:.1f} min). Default "
        f"fading (Rayleigh, 4 blocks per request), {pc['requests_per_cell']} live requests per cell.",
        "",
        f"Largest per-cell difference of mean PSNR (table - live): **{fits['mmse']['max_abs']:.2f} dB** with the "
        f"MMSE-equivalent map (the default; RMS {fits['mmse']['rms']:.2f}); best EESM fit {best[0]}: "
        f"{best[1]['max_abs']:.2f} dB (RMS {best[1]['rms']:.2f}).",
        "",
        "| map | max abs diff (dB) | RMS (dB) |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v['max_abs']:.2f} | {v['rms']:.2f} |" for k, v in fits.items()]
    lines += ["", "| split step | scheme | SNR (dB) | live | table (MMSE map) | diff |", "|---|---|---|---|---|---|"]
    lines += [f"| {c['split_step']} | {c['scheme']} | {c['snr_db']:+g} | {c['live']:.2f} | {c['table']:.2f} | "
              f"{c['table'] - c['live']:+.2f} |" for c in pc["cells"]]  # fmt: skip
    if "ranking" in r:
        t, live = r["ranking"]["table"], r["ranking"]["live"]
        order_t = sorted(t, key=lambda k: -t[k])
        order_l = sorted(live, key=lambda k: -live[k])
        lines += ["", f"Ranking on the same test sessions: {'the same' if order_t == order_l else 'DIFFERENT'}.", "",
                  "| policy | table PSNR | live PSNR |", "|---|---|---|"]  # fmt: skip
        lines += [f"| {k} | {t[k]:.2f} | {live[k]:.2f} |" for k in order_t]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(tyro.cli(Args))
