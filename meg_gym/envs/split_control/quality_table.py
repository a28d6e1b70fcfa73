"""The shipped quality table of MEG-SplitControl-v0: image quality per prompt, split step, scheme and SNR.

UE denoising of a received latent cannot be cached, so ``fidelity="table"`` reads the outcome of a request from
a table measured live (:mod:`meg_gym.envs.split_control.live`) on AWGN at a grid of receive SNRs, with several
noise draws per cell. A request draws one of the draws and interpolates linearly in SNR (dB) between grid
points; below and above the grid it takes the end point. Fading within a request enters through one effective
SNR per request (:func:`effective_snr_db`). The environment reads each prompt's values shrunk toward the mean over
prompts (:meth:`QualityTable.shrunk`), because a few noise draws cannot tell a prompt's expected quality from luck.

Files (one pair per prompt split, in ``meg_gym/assets/split-quality-table/``): ``<split>.safetensors`` with one
float32 tensor per metric, shape (prompts, split steps, schemes, SNR points, draws), plus the cache rows; and
``<split>.json`` with the axes, the command that built it, its commit, the cache it was measured on and the
tensor file's SHA-256, which :meth:`QualityTable.load` checks.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from meg_gym import ASSETS_DIR

__all__ = ["DEFAULT_TABLE_DIR", "QualityTable", "QualityTableError", "effective_snr_db", "shared_table"]

DEFAULT_TABLE_DIR = ASSETS_DIR / "split-quality-table"
FORMAT = "meg-gym-split-quality-table"
VERSION = 1
METRIC_RANGES = {"ssim": (-1.0, 1.0), "ms_ssim": (0.0, 1.0)}  # what the metric can be


class QualityTableError(RuntimeError):
    """A quality table is missing, damaged or does not match the cache it is used with."""


def effective_snr_db(block_snr: np.ndarray, beta: float | None = None) -> np.ndarray:
    """One SNR (dB) per request from its blocks' linear SNRs (..., K), as system-level simulators abstract a PHY.

    With ``beta`` None: the SNR whose MMSE error equals the blocks' mean MMSE error,
    ``1 / (1 + snr_eff) = mean_k 1 / (1 + snr_k)`` (exact for the raw latent's linear estimate). With ``beta``: the
    exponential effective SNR mapping (EESM), ``snr_eff = -beta ln mean_k exp(-snr_k / beta)``, beta fitted on
    live runs.
    """
    snr = np.asarray(block_snr, dtype=np.float64)
    if beta is None:
        eff = 1.0 / np.mean(1.0 / (1.0 + snr), axis=-1) - 1.0
    else:
        scaled = -snr / beta
        top = scaled.max(axis=-1, keepdims=True)
        eff = -beta * (np.log(np.mean(np.exp(scaled - top), axis=-1)) + top[..., 0])
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.maximum(eff, 0.0))


@dataclass
class QualityTable:
    """Quality of every (prompt, split step, scheme, SNR grid point, noise draw) of one prompt split.

    Attributes:
        split: The prompt split ("train" or "test").
        rows: (P,) cache rows of the prompts, in the split's order (prompt ``i`` of the env is ``rows[i]``).
        split_steps: The ES step counts on the second axis.
        schemes: The scheme names on the third axis.
        snr_db: (G,) the AWGN receive SNRs of the grid.
        values: Metric name -> float32 array (P, S, M, G, D).
        meta: What the JSON records (command, commit, cache fingerprint, ...).
    """

    split: str
    rows: np.ndarray
    split_steps: tuple[int, ...]
    schemes: tuple[str, ...]
    snr_db: np.ndarray
    values: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_prompts(self) -> int:
        return len(self.rows)

    @property
    def num_draws(self) -> int:
        return next(iter(self.values.values())).shape[-1]

    def _weights(self, snr_db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        grid = self.snr_db
        x = np.clip(np.nan_to_num(np.asarray(snr_db, dtype=np.float64), nan=grid[0], neginf=grid[0]), grid[0], grid[-1])
        upper = np.clip(np.searchsorted(grid, x, side="right"), 1, len(grid) - 1)
        weight = (x - grid[upper - 1]) / (grid[upper] - grid[upper - 1])
        return upper, weight

    def lookup(self, metric: str, prompt, split_index, scheme_index, snr_db, draw=None) -> np.ndarray:
        """The metric for requests (arrays broadcast together), interpolated linearly in SNR (dB).

        ``draw`` picks the noise draw of each request; None averages over the draws (the expected outcome).
        """
        table = self.values[metric]
        upper, weight = self._weights(snr_db)
        if draw is None:
            lo = table[prompt, split_index, scheme_index, upper - 1].mean(-1)
            hi = table[prompt, split_index, scheme_index, upper].mean(-1)
        else:
            lo = table[prompt, split_index, scheme_index, upper - 1, draw]
            hi = table[prompt, split_index, scheme_index, upper, draw]
        return (1.0 - weight) * lo + weight * hi

    def shrunk(self) -> QualityTable:
        """The table as the environment reads it: each prompt's mean over its noise draws shrunk toward the cell's
        mean over prompts (empirical Bayes), the draws' deviations from the prompt's mean kept.

        A prompt's outcome varies by several dB from one noise draw to the next (the UE's denoising amplifies the
        channel noise), so with a few draws per prompt a prompt's mean in a cell is part signal, part noise, and a
        policy that picks, per request, the best cell for that prompt would also pick the luckiest draws: a gain
        live runs do not repeat. Per (split step, scheme, SNR point) and metric, with ``m_p`` the prompt means,
        ``c`` their mean, ``w`` the mean within-prompt variance and ``D`` the draws, the prompt means become
        ``c + r (m_p - c)`` with ``r = b / (b + w / D)``, ``b = max(0, var_p(m_p) - w / D)`` (the between-prompt
        variance). Cell means over prompts are unchanged (up to clipping SSIM at 1). Latent MSE, heavy-tailed, is
        left as measured. With one draw there is nothing to estimate ``w`` from, and the table is returned as it is.
        """
        draws = self.num_draws
        if draws < 2:
            return self
        values = {}
        for name, v in self.values.items():
            if name == "latent_mse":  # heavy-tailed and positive: no shrinkage keeps both its means and its sign
                values[name] = v
                continue
            v = v.astype(np.float64)
            prompt_mean = v.mean(-1, keepdims=True)
            cell_mean = prompt_mean.mean(0, keepdims=True)
            within = v.var(-1, ddof=1, keepdims=True).mean(0, keepdims=True) / draws
            between = np.maximum(0.0, prompt_mean.var(0, ddof=1, keepdims=True) - within)
            total = between + within
            reliability = np.divide(between, total, out=np.ones_like(total), where=total > 0)
            out = v - (1.0 - reliability) * (prompt_mean - cell_mean)
            low, high = METRIC_RANGES.get(name, (-np.inf, np.inf))
            values[name] = np.clip(out, low, high).astype(np.float32)
        return dataclasses.replace(self, values=values, meta={**self.meta, "shrinkage": "empirical-bayes"})

    # ------------------------------------------------------------------ files
    def save(self, folder: Path | str) -> Path:
        from safetensors.numpy import save_file

        from meg_gym.cache import sha256_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {name: np.ascontiguousarray(v, dtype=np.float32) for name, v in self.values.items()}
        tensors["rows"] = np.asarray(self.rows, dtype=np.int64)
        path = folder / f"{self.split}.safetensors"
        save_file(tensors, str(path))
        meta = {
            **self.meta,
            "format": FORMAT,
            "version": VERSION,
            "split": self.split,
            "split_steps": list(self.split_steps),
            "schemes": list(self.schemes),
            "snr_db": [float(s) for s in self.snr_db],
            "draws": self.num_draws,
            "metrics": sorted(self.values),
            "file": path.name,
            "sha256": sha256_file(path),
        }
        (folder / f"{self.split}.json").write_text(json.dumps(meta, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, split: str, folder: Path | str | None = None) -> QualityTable:
        from safetensors.numpy import load_file

        from meg_gym.cache import sha256_file

        folder = DEFAULT_TABLE_DIR if folder is None else Path(folder)
        rebuild = (
            f"rebuild it with `python scripts/build_quality_table.py --split {split} --output-dir {folder}` "
            "(docs/envs/split_control.md gives the command the shipped table was made with)"
        )
        json_path = folder / f"{split}.json"
        try:
            meta = json.loads(json_path.read_text())
        except FileNotFoundError as err:
            raise QualityTableError(f"no quality table for split {split!r} at {json_path}; {rebuild}") from err
        except ValueError as err:
            raise QualityTableError(f"{json_path} is not valid JSON ({err}); {rebuild}") from err
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise QualityTableError(
                f"{json_path} is not a version-{VERSION} {FORMAT} file (format={meta.get('format')!r}, "
                f"version={meta.get('version')!r}); {rebuild}"
            )
        path = folder / meta["file"]
        if not path.exists():
            raise QualityTableError(f"{json_path} names {path}, which is missing; {rebuild}")
        digest = sha256_file(path)
        if digest != meta["sha256"]:
            raise QualityTableError(
                f"{path} does not match its checksum in {json_path.name} (got {digest[:12]}, expected "
                f"{meta['sha256'][:12]}): the file is damaged or was replaced; {rebuild}"
            )
        tensors = load_file(str(path))
        rows = tensors.pop("rows")
        return cls(
            split=split,
            rows=rows,
            split_steps=tuple(int(s) for s in meta["split_steps"]),
            schemes=tuple(meta["schemes"]),
            snr_db=np.asarray(meta["snr_db"], dtype=np.float64),
            values=tensors,
            meta=meta,
        )


@functools.lru_cache(maxsize=8)
def _shared(split: str, folder: str | None) -> QualityTable:
    return QualityTable.load(split, folder).shrunk()


def shared_table(split: str, folder: Path | str | None = None) -> QualityTable:
    """The process-wide (read-only) quality table of a split as the environment reads it (loaded, verified and
    shrunk once; see :meth:`QualityTable.shrunk`)."""
    return _shared(split, None if folder is None else str(Path(folder).resolve()))
