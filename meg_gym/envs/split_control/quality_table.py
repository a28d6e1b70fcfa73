"""The shipped quality table of MEG-SplitControl-v0: image quality per prompt, split step, scheme and SNR.

UE denoising of a received latent cannot be cached, so ``fidelity="table"`` reads the outcome of a request from
a table measured live (:mod:`meg_gym.envs.split_control.live`) on AWGN at a grid of receive SNRs, with several
noise draws per cell. A request draws one of the draws and interpolates linearly in SNR (dB) between grid
points; below and above the grid it takes the end point, and the grid (:data:`DEFAULT_SNR_GRID_DB`) reaches from
where every scheme's quality has floored to where the policies' SNRs end. By default a request sees one channel
(one fading block), so its SNR is the table's own axis; with several blocks they enter through one effective SNR
per request (:func:`effective_snr_db`), an approximation. References plan on :meth:`QualityTable.pooled`: the
expected quality given what the agent observes of the prompt (its object count), never a prompt's own values.

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

__all__ = [
    "DEFAULT_SNR_GRID_DB",
    "DEFAULT_TABLE_DIR",
    "QualityTable",
    "QualityTableError",
    "effective_snr_db",
    "shared_table",
]

DEFAULT_TABLE_DIR = ASSETS_DIR / "split-quality-table"
# from where every scheme's quality has (nearly) floored to where the seeds have saturated and the raw latent's PSNR
# is linear in SNR (dB); a request below the grid reads its lowest point, above it its highest. The live check at the
# midpoints (docs/results/split_table_validation.md) found no interpolation bias that finer steps would remove.
DEFAULT_SNR_GRID_DB = (-40.0, -30.0, -25.0, -20.0, -15.0, -10.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0,
                       40.0, 50.0, 60.0)  # fmt: skip
FORMAT = "meg-gym-split-quality-table"
VERSION = 1


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
        split: The prompt split ("train" or "test"; "fit" or "validation" for a part of the train table).
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

    def pooled(self, groups: np.ndarray) -> QualityTable:
        """The table with each prompt's values replaced by the mean over its group's prompts and every noise draw
        (one draw left): the expected quality of each cell given the group alone.

        With ``groups`` the prompts' object counts this is what a policy that observes the object count, and not
        the prompt, can expect: the environment draws prompts uniformly and a request's noise draw independently,
        so given the object count, prompt and draw are uniform over the group's cells. Linear interpolation in SNR
        commutes with the mean, so :meth:`lookup` on the pooled table is the mean of the lookups.
        """
        return self.valued_by(self, groups, groups)

    def valued_by(self, source: QualityTable, groups: np.ndarray, source_groups: np.ndarray) -> QualityTable:
        """This table's prompts, each valued by ``source``'s mean over its prompts of the same group and over its
        noise draws (``source``'s mean over all its prompts for a group it lacks); one draw left.

        With ``source`` another split's table this estimates every cell from measurements that share none of
        this table's noise (see ``Sessions.planning_table``).
        """
        groups, source_groups = np.asarray(groups), np.asarray(source_groups)
        if groups.shape != (self.num_prompts,) or source_groups.shape != (source.num_prompts,):
            raise ValueError(
                f"groups must give one label per prompt ({self.num_prompts} here, {source.num_prompts} in the "
                f"source), got shapes {groups.shape} and {source_groups.shape}"
            )
        same_axes = (source.split_steps == self.split_steps and source.schemes == self.schemes
                     and np.array_equal(source.snr_db, self.snr_db))  # fmt: skip
        if not same_axes:
            raise ValueError(
                f"the {source.split!r} table's split steps, schemes or SNR grid differ from the {self.split!r} "
                "table's; build both splits' tables with the same scripts/build_quality_table.py settings"
            )
        values = {}
        for name, v in source.values.items():
            v = v.astype(np.float64)
            overall = v.mean(axis=(0, -1), keepdims=True)[..., :1]
            out = np.empty((self.num_prompts, *v.shape[1:-1], 1), dtype=np.float64)
            for label in np.unique(groups):
                members = source_groups == label
                out[groups == label] = (
                    v[members].mean(axis=(0, -1), keepdims=True)[..., :1] if members.any() else overall
                )
            values[name] = out
        meta = {**self.meta, "pooled": f"by group, over the prompts and draws of the {source.split!r} table"}
        return dataclasses.replace(self, values=values, meta=meta)

    def restricted_to(self, split: str, rows) -> QualityTable:
        """The table of this one's prompts whose cache rows are in ``rows`` (in this table's order), named ``split``."""
        keep = np.isin(self.rows, np.asarray(rows))
        values = {name: v[keep] for name, v in self.values.items()}
        meta = {**self.meta, "part_of": self.split}
        return dataclasses.replace(self, split=split, rows=self.rows[keep], values=values, meta=meta)

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

    @property
    def raw_latent_receiver(self) -> str:
        """The raw latent's receiver the table was measured with ("lmmse" or, in tables before 2026-12, "zero-mean")."""
        return str(self.meta.get("raw_latent_receiver", "zero-mean"))

    @classmethod
    def load(cls, split: str, folder: Path | str | None = None, partial: bool = False) -> QualityTable:
        """Load and verify a split's table; ``partial`` also accepts one whose build has not finished."""
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
        if meta.get("complete") is False and not partial:
            raise QualityTableError(
                f"{json_path} is an unfinished build (cells still missing); finish it by running its command "
                f"again with --resume: `{meta.get('command')} --resume`"
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


# "fit" and "validation" (for tuning) are parts of the train split: their table is the train table's prompts in
# that part of the cache (LatentCache.indices), and the split whose table a tuning part plans on is "fit"
TUNING_PARTS = ("fit", "validation")


def file_split(split: str) -> str:
    """The split whose table file holds ``split``'s prompts ("train" for the tuning parts)."""
    return "train" if split in TUNING_PARTS else split


@functools.lru_cache(maxsize=8)
def _shared(split: str, folder: str | None, cache_dir: str | None) -> QualityTable:
    if split not in TUNING_PARTS:
        return QualityTable.load(split, folder)
    from meg_gym.cache import VALIDATION_EVERY, LatentCache

    train = _shared("train", folder, None)
    part = train.restricted_to(split, LatentCache.load(cache_dir).indices(split))
    if part.num_prompts == 0:
        raise QualityTableError(
            f"the train quality table's {train.num_prompts} prompts include no {split!r} prompt (every "
            f"{VALIDATION_EVERY}th train prompt of the cache is held out for validation); build a train table "
            "with more prompts (scripts/build_quality_table.py --split train)"
        )
    return part


def shared_table(split: str, folder: Path | str | None = None, cache_dir: Path | str | None = None) -> QualityTable:
    """The process-wide (read-only) quality table of a split (loaded and verified once).

    ``split`` is "train", "test", or a tuning part of train ("fit", "validation"), which needs ``cache_dir``'s
    partition of the train prompts (None: the shipped cache).
    """

    def resolved(path):
        return None if path is None else str(Path(path).resolve())

    return _shared(split, resolved(folder), resolved(cache_dir) if split in TUNING_PARTS else None)
