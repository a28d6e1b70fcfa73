"""The seed codec at every split step of the cache: where its error comes from, before the UE denoises or after.

    python scripts/evaluate_split_codec.py                    # writes docs/results/split_codec.md (+ .json)
    python scripts/evaluate_split_codec.py --prompts 32 --output /tmp/split_codec.md   # a quick look

For each split step s of the latent cache (the UE then runs T - s denoising steps), each scheme (the seed codec
at each compression ratio, and the raw latent) and each AWGN receive SNR, on the held-out test prompts:

- **latent SNR**: ``10 log10(mean z_s^2 / mean (z_hat_s - z_s)^2)``: how well the UE's decoded latent matches the
  ES latent at the split step (the codec's own error, channel included); infinity means noiseless;
- **image PSNR**: of the image the UE decodes after running its T - s denoising steps on that latent (the
  environments' reward), against the image of the clean latent;
- the same two with no channel (``clean`` column: the codec alone) and, for the image, with the exact ES latent
  handed to the UE (``exact latent``: the UE's own steps, no codec): what the split alone costs.

Every scheme sees the same noise draws (one torch Generator per SNR, seeded with ``--seed``). This is the
measurement MEG-SplitControl-v0's seed codec must pass at every split step it is used with (issue 16).
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from meg_gym import evaluation, quality
from meg_gym.cache import cache_fingerprint
from meg_gym.channel import db_to_linear, simulate_mmse_torch
from meg_gym.config import PowerControlConfig
from meg_gym.link import receiver_for


@dataclass
class Args:
    snrs_db: tuple[float, ...] = (-10.0, 0.0, 10.0)
    """AWGN receive SNRs"""
    ratios: tuple[float, ...] = (0.25,)
    """seed compression ratios (the shipped codecs: 0.5, 0.25, 0.125, 0.0625)"""
    raw_latent: bool = True
    """also the uncompressed raw latent"""
    prompts: int = 128
    """test prompts per cell"""
    batch_size: int = 64
    """images per batch through the UE's denoising and the decoder"""
    seed: int = 0
    """seed of the channel noise"""
    output: Path = Path("docs/results/split_codec.md")


def latent_snr_db(estimate: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    signal = target.pow(2).flatten(1).mean(1)
    error = (estimate - target).pow(2).flatten(1).mean(1).clamp_min(1e-30)
    return (10 * torch.log10(signal / error)).double().numpy()


def measure(receiver, idx: np.ndarray, snr_db: float | None, generator: torch.Generator, exact: bool = False):
    """(latent SNR per image, image PSNR per image) for one scheme, split step and SNR (None: no channel)."""
    target = receiver.cache.latents_at(receiver.split_step, receiver.rows[idx]).float()
    with torch.no_grad():
        if exact:
            latents = target
        else:
            symbols = torch.from_numpy(receiver.symbols[idx]).to(torch.complex64)
            if snr_db is None:
                received, rel = symbols, torch.ones(symbols.shape)
            else:
                snr = torch.full(symbols.shape, float(db_to_linear(snr_db)))
                received, rel = simulate_mmse_torch(symbols, snr, generator)
            latents = receiver.scheme.decode(received, rel, receiver.side[idx])
        lat_snr = latent_snr_db(latents, target)
        final = latents
        if receiver.ue_steps:
            prompts = [receiver.prompts[i] for i in idx]
            final = receiver.split_pipeline.ue_complete(latents, prompts, receiver.split_step)
        images = receiver.decode_images(final)
        psnr = quality.psnr(quality.to_unit(images), quality.to_unit(receiver.references(idx))).double().numpy()
    return lat_snr, psnr


def main(args: Args) -> dict:
    start = time.time()
    probe = receiver_for(PowerControlConfig(split="test"))
    total = probe.cache.num_inference_steps
    ue_steps_list = sorted((total - s for s in probe.cache.split_steps), reverse=True)
    schemes = {f"seed {r:g}": {"compression_ratio": r} for r in args.ratios}
    if args.raw_latent:
        schemes["raw latent"] = {"scheme": "raw-latent"}
    idx_all = np.arange(min(args.prompts, len(probe.rows)))
    batches = [idx_all[i : i + args.batch_size] for i in range(0, len(idx_all), args.batch_size)]
    rows = []
    for ue_steps in ue_steps_list:
        exact_psnr = None
        for name, kwargs in schemes.items():
            receiver = receiver_for(PowerControlConfig(split="test", ue_steps=ue_steps, **kwargs))
            if exact_psnr is None:
                exact_psnr = float(np.mean(np.concatenate([measure(receiver, b, None, None, exact=True)[1]
                                                           for b in batches])))  # fmt: skip
            row = {"split_step": receiver.split_step, "ue_steps": ue_steps, "scheme": name,
                   "symbols": int(receiver.num_symbols), "exact_latent_psnr": exact_psnr, "cells": {}}  # fmt: skip
            for snr_db in (*args.snrs_db, None):
                generator = torch.Generator().manual_seed(args.seed + (0 if snr_db is None else int(snr_db) + 1000))
                parts = [measure(receiver, b, snr_db, generator) for b in batches]
                lat = np.concatenate([p[0] for p in parts])
                psnr = np.concatenate([p[1] for p in parts])
                key = "clean" if snr_db is None else f"{snr_db:+g} dB"
                row["cells"][key] = {
                    "latent_snr_db": float(np.mean(np.minimum(lat, 99.0))),
                    "psnr": float(psnr.mean()),
                    "psnr_se": float(psnr.std(ddof=1) / math.sqrt(len(psnr))),
                }
            rows.append(row)
            cells = ", ".join(f"{k} {c['psnr']:.2f} dB ({c['latent_snr_db']:.1f})" for k, c in row["cells"].items())
            print(f"UE steps {ue_steps:2d}, {name}: exact {exact_psnr:.2f} dB; {cells}", flush=True)
    result = {
        "rows": rows,
        "prompts": len(idx_all),
        "num_inference_steps": total,
        "command": "python scripts/evaluate_split_codec.py",
        "commit": evaluation.git_commit(),
        "cache_sha256": cache_fingerprint(),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "wall_s": time.time() - start,
        "args": json.loads(json.dumps(asdict(args), default=str)),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(result, indent=1))
    args.output.write_text(render(result))
    print(args.output.read_text())
    return result


def render(r: dict) -> str:
    keys = list(r["rows"][0]["cells"])
    lines = [
        "# The seed codec at every split step",
        "",
        f"Made by `{r['command']}` at commit `{r['commit']}` on latent cache `{r['cache_sha256'][:12]}`, on "
        f"{r['machine']}, in {r['wall_s'] / 60:.1f} min. Data: [split_codec.json](split_codec.json). "
        f"{r['prompts']} test prompts per cell, AWGN, MMSE equalisation; T = {r['num_inference_steps']} denoising "
        "steps, the ES runs the first (split step), the UE the rest.",
        "",
        "Image PSNR (dB) of the image the UE decodes after its denoising steps, against the image of the clean "
        "latent (the environments' reward); in brackets the latent SNR (dB) of the decoded latent against the ES "
        "latent at the split step. `exact latent`: the ES latent handed over without codec or channel. `clean`: the "
        "codec without channel noise.",
        "",
        "| split step | UE steps | scheme | symbols | exact latent | " + " | ".join(keys) + " |",
        "|---|---|---|---|---|" + "---|" * len(keys),
    ]
    for row in r["rows"]:
        cells = " | ".join(f"{c['psnr']:.2f} ({c['latent_snr_db']:.1f})" for c in row["cells"].values())
        lines.append(
            f"| {row['split_step']} | {row['ue_steps']} | {row['scheme']} | {row['symbols']} | "
            f"{row['exact_latent_psnr']:.2f} | {cells} |"
        )
    lines += [
        "",
        "Standard errors of the PSNR means are in the JSON (`psnr_se`).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(tyro.cli(Args))
