"""The latent cache: ES-side generation done once, offline, and loaded in milliseconds.

A cache is a folder of two files:

- ``cache.json``: format name and version, the generation settings, the prompts and their split labels,
  the split steps, tensor shapes, the SHA-256 and size of the tensor file, and the command that built it.
- ``latents.safetensors``: ``es_latents`` (N, S, C, H, W), the ES latents after each of the S candidate
  split steps (the last split step is T, so its slice is the clean final latent); ``noise_seeds`` (N,);
  optionally ``reference_images`` (N, H, W, 3) uint8 and per-cell MEG-Shapes attributes
  ``attr_present/shape/colour/size`` (N, 9).

Only safetensors and JSON are read: loading never executes code. A missing, truncated, corrupted or
mismatched cache raises a :class:`CacheError` subclass whose message says what is wrong and the command
that rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

CACHE_FORMAT = "meg-gym-latent-cache"
CACHE_VERSION = 1
JSON_NAME = "cache.json"
TENSOR_NAME = "latents.safetensors"
DEFAULT_CACHE_DIR = Path(__file__).resolve().parent / "assets" / "meg-shapes-cache"
DEFAULT_BUILD_COMMAND = "python scripts/build_cache.py"
# The shipped default cache from its first commit (3dd0f5b) until 2026-11-28, when the embedded UNet was
# retrained. Results written before then do not name their cache; on the default cache they used this one.
LEGACY_DEFAULT_CACHE = "6dfe2dc6a263cd2d3f29e6b00626f16da53fade806282c3aeb7203fcc2c4e9f3"
ATTRIBUTE_KEYS = ("present", "shape", "colour", "size")


# "validation" holds every 8th train prompt (one eighth of train), "fit" the other seven eighths
VALIDATION_EVERY = 8


class CacheError(RuntimeError):
    """Base class of every cache loading error."""


class CacheNotFoundError(CacheError, FileNotFoundError):
    """The cache folder or one of its files is missing."""


class CacheCorruptedError(CacheError):
    """A file is truncated, damaged or does not match its recorded checksum."""


class CacheVersionError(CacheError):
    """The cache was written in a format version this meg-gym cannot read."""


class CacheMismatchError(CacheError):
    """The cache is internally inconsistent, or does not match what the caller needs."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cache_fingerprint(folder: Path | str | None = None) -> str:
    """The SHA-256 of a cache's tensor file as its cache.json records it (default: the shipped cache).

    Results name the data they were measured on with it, so figures from different caches are never pooled.
    Reads cache.json only; :meth:`LatentCache.load` is what verifies the file against it.
    """
    folder = DEFAULT_CACHE_DIR if folder is None else Path(folder)
    try:
        return str(json.loads((folder / JSON_NAME).read_text())["files"][TENSOR_NAME]["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CacheCorruptedError(
            f"cannot read the checksum of {folder / TENSOR_NAME} from {folder / JSON_NAME} ({exc}). "
            f"{_rebuild_hint(None, folder)}"
        ) from exc


def _rebuild_hint(meta: dict | None, folder: Path) -> str:
    command = (meta or {}).get("build_command") or f"{DEFAULT_BUILD_COMMAND} --output-dir {folder}"
    return f"Rebuild it with `{command}`" + (
        " (or reinstall meg-gym for the default cache)." if folder == DEFAULT_CACHE_DIR else "."
    )


@dataclass
class LatentCache:
    """Prompts with their ES latents at each candidate split step. Tensors are on the CPU."""

    prompts: list[str]
    splits: np.ndarray  # (N,) of "train" / "test"
    split_steps: list[int]
    es_latents: torch.Tensor  # (N, S, C, H, W), float16 or float32
    noise_seeds: torch.Tensor  # (N,) int64
    settings: dict
    model: dict = field(default_factory=dict)
    reference_images: torch.Tensor | None = None  # (N, H, W, 3) uint8
    attributes: dict[str, torch.Tensor] | None = None  # each (N, 9) int8
    build_command: str = DEFAULT_BUILD_COMMAND
    path: Path | None = None

    def __post_init__(self):
        self.splits = np.asarray(self.splits, dtype=str)
        n = len(self.prompts)
        if self.es_latents.ndim != 5 or len(self.es_latents) != n or self.es_latents.shape[1] != len(self.split_steps):
            raise CacheMismatchError(
                f"es_latents has shape {tuple(self.es_latents.shape)}, expected ({n}, {len(self.split_steps)}, C, H, W) "
                f"for {n} prompts and split steps {self.split_steps}"
            )
        if len(self.splits) != n or len(self.noise_seeds) != n:
            raise CacheMismatchError(
                f"{n} prompts but {len(self.splits)} split labels and {len(self.noise_seeds)} seeds"
            )
        if list(self.split_steps) != sorted(set(self.split_steps)):
            raise CacheMismatchError(f"split steps must be increasing and distinct, got {self.split_steps}")
        if self.reference_images is not None and len(self.reference_images) != n:
            raise CacheMismatchError(f"{len(self.reference_images)} reference images for {n} prompts")

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return tuple(self.es_latents.shape[2:])

    @property
    def num_inference_steps(self) -> int:
        return int(self.settings["num_inference_steps"])

    def indices(self, split: str) -> np.ndarray:
        """Row indices of one split: "train", "test", "all" (every row), or a part of train for tuning.

        "validation" is every VALIDATION_EVERY-th train prompt (in cache order) and "fit" the rest of train, so a
        learner tuned by training on "fit" and scoring on "validation" never sees the validation prompts, and
        neither touches "test".
        """
        if split == "all":
            return np.arange(len(self))
        if split in ("fit", "validation"):
            train = self.indices("train")
            held_out = np.arange(len(train)) % VALIDATION_EVERY == VALIDATION_EVERY - 1
            return train[held_out] if split == "validation" else train[~held_out]
        rows = np.flatnonzero(self.splits == split)
        if len(rows) == 0:
            raise ValueError(f"the cache has no {split!r} prompts; it holds splits {sorted(set(self.splits))}")
        return rows

    def latents_at(self, split_step: int, rows=None) -> torch.Tensor:
        """ES latents after ``split_step`` denoising steps, float32 (rows, C, H, W)."""
        if split_step not in self.split_steps:
            raise ValueError(f"split step {split_step} is not cached; this cache holds {self.split_steps}")
        sel = self.es_latents[:, self.split_steps.index(split_step)]
        return (sel if rows is None else sel[torch.as_tensor(rows)]).float()

    def clean_latents(self, rows=None) -> torch.Tensor:
        """The final latents z (after all T steps), float32."""
        return self.latents_at(self.num_inference_steps, rows)

    # ------------------------------------------------------------------ save / load
    def save(self, folder: Path | str) -> Path:
        """Write the two files atomically (temporary names, then rename), so a crash leaves no half cache."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"es_latents": self.es_latents.contiguous(), "noise_seeds": self.noise_seeds.long().contiguous()}
        if self.reference_images is not None:
            tensors["reference_images"] = self.reference_images.to(torch.uint8).contiguous()
        for key, value in (self.attributes or {}).items():
            tensors[f"attr_{key}"] = value.to(torch.int8).contiguous()
        tmp_tensors = folder / (TENSOR_NAME + ".tmp")
        save_file(tensors, str(tmp_tensors), metadata={"format": CACHE_FORMAT, "version": str(CACHE_VERSION)})
        meta = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "num_prompts": len(self),
            "split_counts": {s: int((self.splits == s).sum()) for s in sorted(set(self.splits))},
            "split_steps": list(self.split_steps),
            "latent_shape": list(self.latent_shape),
            "latent_dtype": str(self.es_latents.dtype).removeprefix("torch."),
            "settings": self.settings,
            "model": self.model,
            "build_command": self.build_command,
            "files": {TENSOR_NAME: {"sha256": sha256_file(tmp_tensors), "bytes": tmp_tensors.stat().st_size}},
            "prompts": list(self.prompts),
            "splits": [str(s) for s in self.splits],
        }
        tmp_json = folder / (JSON_NAME + ".tmp")
        tmp_json.write_text(json.dumps(meta, indent=1))
        os.replace(tmp_tensors, folder / TENSOR_NAME)
        os.replace(tmp_json, folder / JSON_NAME)
        self.path = folder
        return folder

    @classmethod
    def load(cls, folder: Path | str | None = None, verify: bool = True) -> LatentCache:
        """Load a cache folder (default: the shipped MEG-Shapes cache), checking format, checksum and shapes."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = DEFAULT_CACHE_DIR if folder is None else Path(folder)
        json_path, tensor_path = folder / JSON_NAME, folder / TENSOR_NAME
        if not json_path.is_file():
            raise CacheNotFoundError(
                f"no latent cache at {folder}: {JSON_NAME} is missing. {_rebuild_hint(None, folder)}"
            )
        try:
            meta = json.loads(json_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CacheCorruptedError(f"{json_path} is not valid JSON ({exc}). {_rebuild_hint(None, folder)}") from exc
        hint = _rebuild_hint(meta, folder)
        if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
            raise CacheMismatchError(
                f"{json_path} is not a meg-gym latent cache (format {meta.get('format') if isinstance(meta, dict) else None!r}). {hint}"
            )
        if meta.get("version") != CACHE_VERSION:
            raise CacheVersionError(
                f"{folder} was written in cache format version {meta.get('version')}, but this meg-gym reads version "
                f"{CACHE_VERSION}. {hint}"
            )
        missing = [
            k
            for k in ("num_prompts", "split_steps", "latent_shape", "settings", "files", "prompts", "splits")
            if k not in meta
        ]
        if missing:
            raise CacheCorruptedError(f"{json_path} lacks the fields {missing}. {hint}")
        if not tensor_path.is_file():
            raise CacheNotFoundError(f"{tensor_path} is missing. {hint}")
        record = meta["files"].get(TENSOR_NAME, {})
        size = tensor_path.stat().st_size
        if record.get("bytes") is not None and size != record["bytes"]:
            raise CacheCorruptedError(
                f"{tensor_path} is {size} bytes but {record['bytes']} were written: the file is truncated or damaged. {hint}"
            )
        if verify and record.get("sha256") and sha256_file(tensor_path) != record["sha256"]:
            raise CacheCorruptedError(f"{tensor_path} does not match its SHA-256 checksum: the file is damaged. {hint}")
        try:
            tensors = load_file(str(tensor_path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CacheCorruptedError(f"{tensor_path} cannot be read as safetensors ({exc}). {hint}") from exc
        n, steps = int(meta["num_prompts"]), list(meta["split_steps"])
        expected = (n, len(steps), *meta["latent_shape"])
        if "es_latents" not in tensors or tuple(tensors["es_latents"].shape) != expected:
            got = tuple(tensors["es_latents"].shape) if "es_latents" in tensors else None
            raise CacheMismatchError(f"{tensor_path}: es_latents has shape {got}, {json_path} says {expected}. {hint}")
        if len(meta["prompts"]) != n or len(meta["splits"]) != n:
            raise CacheMismatchError(f"{json_path} lists {len(meta['prompts'])} prompts for num_prompts={n}. {hint}")
        attributes = {k: tensors[f"attr_{k}"] for k in ATTRIBUTE_KEYS if f"attr_{k}" in tensors} or None
        try:
            return cls(
                prompts=list(meta["prompts"]),
                splits=np.asarray(meta["splits"]),
                split_steps=steps,
                es_latents=tensors["es_latents"],
                noise_seeds=tensors.get("noise_seeds", torch.zeros(n, dtype=torch.long)),
                settings=meta["settings"],
                model=meta.get("model", {}),
                reference_images=tensors.get("reference_images"),
                attributes=attributes,
                build_command=meta.get("build_command", DEFAULT_BUILD_COMMAND),
                path=folder,
            )
        except CacheMismatchError as exc:
            raise CacheMismatchError(f"{folder}: {exc}. {hint}") from exc

    def require(self, *, latent_shape=None, split_step=None, model_name=None) -> None:
        """Check that this cache fits a consumer; raise :class:`CacheMismatchError` naming the difference."""
        hint = _rebuild_hint({"build_command": self.build_command}, self.path or DEFAULT_CACHE_DIR)
        if latent_shape is not None and tuple(latent_shape) != self.latent_shape:
            raise CacheMismatchError(
                f"cache latents are {self.latent_shape}, the model needs {tuple(latent_shape)}. {hint}"
            )
        if split_step is not None and split_step not in self.split_steps:
            raise CacheMismatchError(
                f"split step {split_step} is not in this cache (it holds {self.split_steps}). {hint}"
            )
        if model_name is not None and self.model.get("name") != model_name:
            raise CacheMismatchError(
                f"cache was built with model {self.model.get('name')!r}, not {model_name!r}. {hint}"
            )


def build_cache(
    pipeline,
    prompts: list[str],
    splits: list[str],
    output_dir: Path | str,
    split_steps: list[int] | None = None,
    batch_size: int = 64,
    noise_seed: int = 0,
    store_reference_images: bool = True,
    attributes: dict[str, np.ndarray] | None = None,
    latent_dtype: torch.dtype = torch.float16,
    model_info: dict | None = None,
    build_command: str = DEFAULT_BUILD_COMMAND,
    process_index: int = 0,
    num_processes: int = 1,
    progress: bool = True,
    wait_for_everyone=None,
) -> LatentCache | None:
    """Generate the ES latents for ``prompts`` with a :class:`~meg_gym.generation.split_pipeline.SplitPipeline`.

    Work is cut into batches written as ``parts/part-XXXXXX.safetensors`` under ``output_dir``; a rerun skips
    the parts already written (resume), and ``num_processes`` processes take every ``num_processes``-th
    batch (sharding, e.g. under ``accelerate launch``). Process 0 assembles and saves the cache, removes the
    parts, and returns it; other processes return None. Row ``i`` starts from noise seeded ``noise_seed + i``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    output_dir = Path(output_dir)
    if len(prompts) != len(splits):
        raise ValueError(f"{len(prompts)} prompts but {len(splits)} split labels")
    steps_total = pipeline.num_inference_steps
    split_steps = sorted(set(split_steps or [steps_total]) | {steps_total})
    if split_steps[0] < 0 or split_steps[-1] > steps_total:
        raise ValueError(f"split steps must lie in 0..{steps_total}, got {split_steps}")
    parts_dir = output_dir / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    batches = list(range(0, len(prompts), batch_size))
    mine = [b for i, b in enumerate(batches) if i % num_processes == process_index]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(mine), desc=f"cache [{process_index + 1}/{num_processes}]")
    for start in mine:
        part = parts_dir / f"part-{start:07d}.safetensors"
        if part.exists():
            try:
                load_file(str(part))
                if bar:
                    bar.update(1)
                continue
            except (SafetensorError, OSError):
                part.unlink()  # a part cut short by a crash: redo it
        rows = range(start, min(start + batch_size, len(prompts)))
        batch_prompts = [prompts[i] for i in rows]
        seeds = [noise_seed + i for i in rows]
        _, recorded = pipeline.es_generate(batch_prompts, seeds, steps_total, record=split_steps)
        tensors = {
            "es_latents": torch.stack([recorded[s] for s in split_steps], 1).to("cpu", latent_dtype).contiguous(),
            "noise_seeds": torch.tensor(seeds, dtype=torch.long),
        }
        if store_reference_images:
            from meg_gym.generation.imaging import to_uint8

            clean = tensors["es_latents"][:, -1].float()  # decode what is stored, so references match the env
            tensors["reference_images"] = torch.from_numpy(to_uint8(pipeline.decode(clean))).contiguous()
        save_file(tensors, str(part) + ".tmp")
        os.replace(str(part) + ".tmp", part)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    if wait_for_everyone is not None:
        wait_for_everyone()
    if process_index != 0:
        return None
    parts = [load_file(str(parts_dir / f"part-{b:07d}.safetensors")) for b in batches]
    cache = LatentCache(
        prompts=list(prompts),
        splits=np.asarray(splits),
        split_steps=split_steps,
        es_latents=torch.cat([p["es_latents"] for p in parts]),
        noise_seeds=torch.cat([p["noise_seeds"] for p in parts]),
        settings=pipeline.settings(),
        model=model_info or {},
        reference_images=torch.cat([p["reference_images"] for p in parts]) if store_reference_images else None,
        attributes={k: torch.as_tensor(v) for k, v in attributes.items()} if attributes else None,
        build_command=build_command,
    )
    cache.save(output_dir)
    for b in batches:
        (parts_dir / f"part-{b:07d}.safetensors").unlink()
    parts_dir.rmdir()
    return cache
