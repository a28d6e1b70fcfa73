"""Build MEG-SplitControl-v0's quality table: live UE outcomes on an AWGN SNR grid, per prompt.

    python scripts/build_quality_table.py --split test --prompts 128     # the shipped test table
    python scripts/build_quality_table.py --split train --prompts 128    # the shipped train table
    python scripts/build_quality_table.py --split test --prompts 8 --output-dir /tmp/table   # a quick look

For the first ``--prompts`` prompts of the split, every split step of the cache, every scheme (seed 1/16, 1/8,
1/4, 1/2, raw latent), every SNR of ``--snr-db`` and ``--draws`` noise draws, the UE decodes the received
payload, runs its denoising steps and decodes the image (:class:`meg_gym.envs.split_control.LiveUE`); PSNR,
SSIM, MS-SSIM and the final latent's MSE are stored. The table is written after every chunk of prompts, and
``--resume`` continues from the prompts a table already holds, so an interrupted build loses one chunk at most.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import tyro

from meg_gym import evaluation
from meg_gym.cache import cache_fingerprint
from meg_gym.channel import db_to_linear
from meg_gym.envs.split_control.live import SCHEME_NAMES, LiveUE
from meg_gym.envs.split_control.quality_table import DEFAULT_TABLE_DIR, QualityTable, QualityTableError
from meg_gym.link.rewards import INFO_METRICS


@dataclass
class Args:
    split: str = "test"
    """prompt split: "train" or "test" (one table file each)"""
    prompts: int = 128
    """the first this many prompts of the split"""
    snr_db: tuple[float, ...] = (-10.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
    """AWGN receive SNR grid (dB), increasing"""
    draws: int = 2
    """noise draws per cell"""
    chunk: int = 32
    """prompts per chunk (the table is saved after each)"""
    seed: int = 0
    """seed of the channel noise"""
    device: str = "cpu"
    threads: int = 0
    """torch threads (0: torch's default)"""
    output_dir: Path = DEFAULT_TABLE_DIR
    resume: bool = False
    """continue a table in --output-dir that holds fewer prompts"""
    cache_dir: str | None = None
    metrics: tuple[str, ...] = field(default_factory=lambda: INFO_METRICS)


def main(args: Args) -> QualityTable:
    if args.threads:
        torch.set_num_threads(args.threads)
    grid = np.asarray(args.snr_db, dtype=np.float64)
    if len(grid) < 2 or np.any(np.diff(grid) <= 0):
        raise SystemExit(f"--snr-db needs at least two increasing values, got {list(args.snr_db)}")
    ue = LiveUE(args.cache_dir, args.split, args.device)
    num = min(args.prompts, len(ue.rows))
    shape = (num, len(ue.split_steps), len(SCHEME_NAMES), len(grid), args.draws)
    values = {m: np.full(shape, np.nan, dtype=np.float32) for m in args.metrics}
    done, wall_before = 0, 0.0
    if args.resume:
        try:
            old = QualityTable.load(args.split, args.output_dir)
        except QualityTableError:
            old = None
        if old is not None:
            same = (old.split_steps == ue.split_steps and old.schemes == SCHEME_NAMES
                    and np.array_equal(old.snr_db, grid) and old.num_draws == args.draws)  # fmt: skip
            if not same or old.meta.get("seed") != args.seed:
                raise SystemExit(f"the table in {args.output_dir} has other axes or seed; drop --resume to rebuild it")
            done = min(old.num_prompts, num)
            for m in args.metrics:
                values[m][:done] = old.values[m][:done]
            wall_before = float(old.meta.get("wall_s", 0.0))
            print(f"resuming after {done} prompts", flush=True)
    start = time.time()
    commit = evaluation.git_commit()  # the code that runs (read when meg_gym.evaluation was imported)
    s_n, m_n, g_n, d_n = shape[1:]
    table = None
    for first in range(done, num, args.chunk):
        chunk = np.arange(first, min(first + args.chunk, num))
        # every (prompt, split, scheme, snr, draw) of the chunk, prompt fastest
        p, s, m, g, d = (a.ravel() for a in np.meshgrid(chunk, range(s_n), range(m_n), range(g_n), range(d_n),
                                                         indexing="ij"))  # fmt: skip
        generator = torch.Generator().manual_seed(args.seed * 1_000_003 + first)
        block_snr = db_to_linear(grid[g])[:, None]
        out = ue.run(p, np.asarray(ue.split_steps)[s], [SCHEME_NAMES[i] for i in m], block_snr, generator, args.metrics)
        for name in args.metrics:
            values[name][p, s, m, g, d] = out[name]
        table = QualityTable(
            split=args.split,
            rows=ue.rows[: chunk[-1] + 1],
            split_steps=ue.split_steps,
            schemes=SCHEME_NAMES,
            snr_db=grid,
            values={k: v[: chunk[-1] + 1] for k, v in values.items()},
            meta={
                "command": f"python scripts/build_quality_table.py --split {args.split} --prompts {args.prompts}"
                + (f" --threads {args.threads}" if args.threads else ""),
                "commit": commit,
                "cache_sha256": cache_fingerprint(args.cache_dir),
                "seed": args.seed,
                "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
                "wall_s": wall_before + time.time() - start,
            },
        )
        table.save(args.output_dir)
        psnr = values["psnr"][: chunk[-1] + 1].mean() if "psnr" in values else float("nan")
        print(f"{chunk[-1] + 1}/{num} prompts, {time.time() - start:.0f} s, mean PSNR so far {psnr:.2f} dB", flush=True)
    if table is None:
        table = QualityTable.load(args.split, args.output_dir)
    return table


if __name__ == "__main__":
    main(tyro.cli(Args))
