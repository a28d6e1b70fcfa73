"""Build a latent cache: run the ES side of generation once for every prompt and store the latents.

The default builds the shipped MEG-Shapes cache with the embedded model:

    python scripts/build_cache.py

Any diffusers Stable Diffusion pipeline (local folder or hub id) with your own prompts:

    python scripts/build_cache.py --model path/to/sd --prompts-file prompts.json --output-dir caches/sd

``prompts.json`` is a list of {"prompt": ..., "split": "train" | "test"}. A rerun of the same command
resumes where it stopped. To shard across processes or GPUs, launch it with accelerate:

    accelerate launch --num_processes 4 scripts/build_cache.py --model ... --output-dir ...
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import tyro

from meg_gym.cache import DEFAULT_CACHE_DIR, build_cache
from meg_gym.generation import embedded, shapes
from meg_gym.generation.split_pipeline import SplitPipeline


@dataclass
class Args:
    model: str | None = None
    """diffusers Stable Diffusion folder or hub id; None uses the embedded MEG-Shapes model"""
    output_dir: Path = DEFAULT_CACHE_DIR
    """cache folder to write (cache.json + latents.safetensors)"""
    prompts_file: Path | None = None
    """JSON list of {"prompt", "split"}; None uses MEG-Shapes prompts"""
    num_train: int = 3000
    """MEG-Shapes train prompts (scene indices 0..num_train-1 of the train split)"""
    num_test: int = 1000
    """MEG-Shapes test prompts (scene indices 0..num_test-1 of the test split)"""
    scene_seed: int = 0
    """MEG-Shapes scene seed"""
    split_steps: tuple[int, ...] = (5, 10, 15, 20)
    """ES split steps whose latents are stored (T is always added)"""
    num_inference_steps: int = embedded.DEFAULT_NUM_INFERENCE_STEPS
    guidance_scale: float = embedded.DEFAULT_GUIDANCE_SCALE
    noise_seed: int = 0
    """row i starts from noise seeded noise_seed + i"""
    batch_size: int = 128
    reference_images: Literal["auto", "yes", "no"] = "auto"
    """store decoded reference images; auto: only for external models (the embedded decoder is cheap)"""
    latent_dtype: Literal["float16", "float32"] = "float16"
    device: str = "cpu"


def meg_shapes_prompts(args: Args):
    scenes = shapes.sample_scenes("train", args.num_train, args.scene_seed) + shapes.sample_scenes(
        "test", args.num_test, args.scene_seed
    )
    splits = ["train"] * args.num_train + ["test"] * args.num_test
    attributes = shapes.attribute_targets(scenes)
    return [s.caption for s in scenes], splits, attributes


def file_prompts(path: Path):
    try:
        rows = json.loads(path.read_text())
        prompts, splits = [r["prompt"] for r in rows], [r["split"] for r in rows]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SystemExit(
            f"--prompts-file {path}: expected a JSON list of {{'prompt': str, 'split': 'train'|'test'}} ({exc})"
        ) from exc
    bad = sorted(set(splits) - {"train", "test"})
    if bad:
        raise SystemExit(f"--prompts-file {path}: unknown split labels {bad}; use 'train' or 'test'")
    return prompts, splits, None


def main(args: Args) -> None:
    from accelerate import PartialState

    state = PartialState()
    torch.manual_seed(0)
    device = state.device if args.device == "auto" else args.device
    pipe = SplitPipeline.from_pretrained(
        args.model, device=device, num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale
    )
    if args.prompts_file is not None:
        prompts, splits, attributes = file_prompts(args.prompts_file)
    elif args.model is None:
        prompts, splits, attributes = meg_shapes_prompts(args)
    else:
        raise SystemExit("--prompts-file is required with --model (MEG-Shapes prompts only suit the embedded model)")
    store_refs = args.reference_images == "yes" or (args.reference_images == "auto" and args.model is not None)
    model_info = {"name": args.model or "meg-ldm", "scene_seed": args.scene_seed if args.prompts_file is None else None}
    cache = build_cache(
        pipe,
        prompts,
        splits,
        args.output_dir,
        split_steps=list(args.split_steps),
        batch_size=args.batch_size,
        noise_seed=args.noise_seed,
        store_reference_images=store_refs,
        attributes=attributes,
        latent_dtype=getattr(torch, args.latent_dtype),
        model_info=model_info,
        build_command="python scripts/build_cache.py " + shlex.join(sys.argv[1:]),
        process_index=state.process_index,
        num_processes=state.num_processes,
        progress=True,
        wait_for_everyone=state.wait_for_everyone,
    )
    if cache is not None:
        size = sum(p.stat().st_size for p in Path(args.output_dir).iterdir() if p.is_file())
        counts = {s: int((cache.splits == s).sum()) for s in ("train", "test")}
        print(
            f"wrote {len(cache)} prompts {counts}, split steps {cache.split_steps}, to {args.output_dir} ({size / 1e6:.1f} MB)"
        )


if __name__ == "__main__":
    main(tyro.cli(Args))
