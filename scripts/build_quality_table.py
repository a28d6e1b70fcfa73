"""Build MEG-SplitControl-v0's quality table: live UE outcomes on an AWGN SNR grid, per prompt.

    python scripts/build_quality_table.py --split test --prompts 128     # a whole test table
    python scripts/build_quality_table.py --split test --prompts 8 --output-dir /tmp/table   # a quick look
    # the shipped tables: the earlier table's seed cells kept, the raw latent and the new SNR points measured
    python scripts/build_quality_table.py --split test --extend-from <old table> --rebuild-schemes raw-latent --seed 1

For the first ``--prompts`` prompts of the split, every split step of the cache, every scheme (seed 1/16, 1/8,
1/4, 1/2, raw latent), every SNR of ``--snr-db`` and ``--draws`` noise draws, the UE decodes the received
payload, runs its denoising steps and decodes the image (:class:`meg_gym.envs.split_control.LiveUE`); PSNR,
SSIM, MS-SSIM and the final latent's MSE are stored.

``--extend-from`` keeps the cells of an existing table (same prompts, split steps and draws) at the SNR points
both grids share, except for the schemes of ``--rebuild-schemes``, and measures only the rest; give it another
``--seed`` than the old table's so the new cells draw fresh noise. The table is written after every chunk of
prompts (marked incomplete until the last), and ``--resume`` measures only the cells a table in ``--output-dir``
still lacks, so an interrupted build loses one chunk at most. Two processes can share a build: one runs with
``--prompts-from K`` into another folder, and ``--resume --fill-from <that folder>`` merges its cells (the noise of
a chunk is seeded by its first prompt, so the cells are those one process would have measured).
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import tyro

from meg_gym import evaluation
from meg_gym.cache import cache_fingerprint
from meg_gym.channel import db_to_linear
from meg_gym.envs.split_control.live import RAW_LATENT_RECEIVERS, SCHEME_NAMES, LiveUE
from meg_gym.envs.split_control.quality_table import (
    DEFAULT_SNR_GRID_DB,
    DEFAULT_TABLE_DIR,
    QualityTable,
    QualityTableError,
)
from meg_gym.link.rewards import INFO_METRICS


@dataclass
class Args:
    split: str = "test"
    """prompt split: "train" or "test" (one table file each)"""
    prompts: int = 128
    """the first this many prompts of the split (with --extend-from: the old table's prompts)"""
    snr_db: tuple[float, ...] = DEFAULT_SNR_GRID_DB
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
    """measure only the cells the (incomplete) table in --output-dir still lacks"""
    extend_from: Path | None = None
    """an existing table folder whose cells are kept (see the module docstring)"""
    rebuild_schemes: tuple[str, ...] = ()
    """with --extend-from: schemes measured anew at every SNR point"""
    prompts_from: int = 0
    """measure only the chunks from this prompt on (to share a build between processes; see --fill-from)"""
    fill_from: Path | None = None
    """with --resume: first copy the cells that another process's build in this folder has measured"""
    raw_latent_receiver: str = "lmmse"
    """the raw latent's receiver: "lmmse" (with the latent prior) or "zero-mean" (tables before 2026-12)"""
    cache_dir: str | None = None
    metrics: tuple[str, ...] = field(default_factory=lambda: INFO_METRICS)


def _command() -> str:
    return "python scripts/build_quality_table.py " + " ".join(sys.argv[1:])


def _kept_cells(old: QualityTable, grid: np.ndarray, args: Args, values: dict[str, np.ndarray]) -> list[dict]:
    """Copy the old table's reusable cells into ``values``; the old table's build records, as parts."""
    if old.num_draws != args.draws or old.schemes != SCHEME_NAMES:
        raise SystemExit(f"--extend-from {args.extend_from}: its draws or schemes differ from this build's")
    unknown = set(args.rebuild_schemes) - set(SCHEME_NAMES)
    if unknown:
        raise SystemExit(f"--rebuild-schemes: unknown {sorted(unknown)}; choose from {list(SCHEME_NAMES)}")
    for g_new, snr in enumerate(grid):
        match = np.flatnonzero(np.isclose(old.snr_db, snr))
        if not len(match):
            continue
        for m, scheme in enumerate(SCHEME_NAMES):
            if scheme in args.rebuild_schemes:
                continue
            for name in values:
                values[name][:, :, m, g_new] = old.values[name][:, :, m, match[0]]
    parts = old.meta.get("parts") or [
        {k: old.meta.get(k) for k in ("command", "commit", "seed", "machine", "wall_s", "raw_latent_receiver")}
    ]
    return [{**p, "kept": f"schemes {[s for s in SCHEME_NAMES if s not in args.rebuild_schemes]} at SNR "
             f"{[float(s) for s in grid if np.isclose(old.snr_db, s).any()]} dB"} for p in parts]  # fmt: skip


def main(args: Args) -> QualityTable:
    if args.threads:
        torch.set_num_threads(args.threads)
    grid = np.asarray(args.snr_db, dtype=np.float64)
    if len(grid) < 2 or np.any(np.diff(grid) <= 0):
        raise SystemExit(f"--snr-db needs at least two increasing values, got {list(args.snr_db)}")
    if args.raw_latent_receiver not in RAW_LATENT_RECEIVERS:
        raise SystemExit(f"--raw-latent-receiver must be one of {list(RAW_LATENT_RECEIVERS)}")
    ue = LiveUE(args.cache_dir, args.split, args.device, raw_latent_receiver=args.raw_latent_receiver)
    old = None
    if args.extend_from is not None:
        old = QualityTable.load(args.split, args.extend_from)
        if old.split_steps != ue.split_steps or not np.array_equal(old.rows, ue.rows[: old.num_prompts]):
            raise SystemExit(f"--extend-from {args.extend_from}: its prompts or split steps differ from the cache's")
        num = old.num_prompts
    else:
        num = min(args.prompts, len(ue.rows))
    shape = (num, len(ue.split_steps), len(SCHEME_NAMES), len(grid), args.draws)
    values = {m: np.full(shape, np.nan, dtype=np.float32) for m in args.metrics}
    parts: list[dict] = []
    wall_before = 0.0
    if args.resume:
        try:
            partial = QualityTable.load(args.split, args.output_dir, partial=True)
        except QualityTableError:
            partial = None
        if partial is not None:
            same = (partial.split_steps == ue.split_steps and partial.schemes == SCHEME_NAMES
                    and np.array_equal(partial.snr_db, grid) and partial.num_draws == args.draws
                    and partial.meta.get("seed") == args.seed)  # fmt: skip
            if not same:
                raise SystemExit(f"the table in {args.output_dir} has other axes or seed; drop --resume to rebuild it")
            held = min(partial.num_prompts, num)
            for m in args.metrics:
                values[m][:held] = partial.values[m][:held]
            parts = [p for p in partial.meta.get("parts", []) if "kept" in p]
            wall_before = float(partial.meta.get("wall_s", 0.0))
            if args.fill_from is not None:
                other = QualityTable.load(args.split, args.fill_from, partial=True)
                if (
                    other.values[args.metrics[0]].shape != values[args.metrics[0]].shape
                    or other.meta.get("seed") != args.seed
                ):
                    raise SystemExit(f"--fill-from {args.fill_from}: another build (axes or seed differ)")
                for m in args.metrics:
                    values[m] = np.where(np.isnan(values[m]), other.values[m], values[m])
                wall_before += float(other.meta.get("wall_s", 0.0))
                parts.append({**other.meta["parts"][-1], "measured": "the cells it held, copied by --fill-from"})
            print(f"resuming: {int(np.isnan(values['psnr']).sum())} cells to measure", flush=True)
    elif old is not None:
        parts = _kept_cells(old, grid, args, values)
    start = time.time()
    commit = evaluation.git_commit()  # the code that runs (read when meg_gym.evaluation was imported)
    probe = values[args.metrics[0]]
    table = None
    for first in range(args.prompts_from, num, args.chunk):
        chunk = np.arange(first, min(first + args.chunk, num))
        # the cells of this chunk still to measure, prompt fastest
        p, s, m, g, d = _missing(probe, chunk)
        if len(p) == 0 and first + args.chunk < num:
            continue
        generator = torch.Generator().manual_seed(args.seed * 1_000_003 + first)
        if len(p):
            block_snr = db_to_linear(grid[g])[:, None]
            out = ue.run(p, np.asarray(ue.split_steps)[s], [SCHEME_NAMES[i] for i in m], block_snr, generator,
                         args.metrics)  # fmt: skip
            for name in args.metrics:
                values[name][p, s, m, g, d] = out[name]
        complete = not np.isnan(probe).any()
        this_part = {"command": _command(), "commit": commit, "seed": args.seed,
                     "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
                     "wall_s": wall_before + time.time() - start, "raw_latent_receiver": args.raw_latent_receiver,
                     "measured": "every cell not kept"}  # fmt: skip
        table = QualityTable(
            split=args.split,
            rows=ue.rows[:num],
            split_steps=ue.split_steps,
            schemes=SCHEME_NAMES,
            snr_db=grid,
            values=values,
            meta={
                **{k: this_part[k] for k in ("command", "commit", "seed", "machine", "wall_s")},
                "cache_sha256": cache_fingerprint(args.cache_dir),
                "raw_latent_receiver": args.raw_latent_receiver,
                "complete": complete,
                "parts": [*parts, this_part],
            },
        )
        table.save(args.output_dir)
        done = int((~np.isnan(probe)).sum())
        print(f"{chunk[-1] + 1}/{num} prompts, {time.time() - start:.0f} s, {done}/{probe.size} cells", flush=True)
    if table is None:
        table = QualityTable.load(args.split, args.output_dir)
    return table


def _missing(probe: np.ndarray, chunk: np.ndarray) -> tuple[np.ndarray, ...]:
    """(prompt, split, scheme, snr, draw) indices of the chunk's unmeasured cells, grouped so prompts vary fastest."""
    s, m, g, d, p = np.nonzero(np.isnan(probe[chunk]).transpose(1, 2, 3, 4, 0))
    return chunk[p], s, m, g, d


if __name__ == "__main__":
    main(tyro.cli(Args))
