"""Latent cache: round trip, the documented errors, and the builder end to end on a tiny SD pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from meg_gym.cache import (
    CacheCorruptedError,
    CacheMismatchError,
    CacheNotFoundError,
    CacheVersionError,
    LatentCache,
    build_cache,
)
from meg_gym.generation.split_pipeline import SplitPipeline

ROOT = Path(__file__).resolve().parent.parent


def small_cache(n=6) -> LatentCache:
    gen = torch.Generator().manual_seed(0)
    return LatentCache(
        prompts=[f"prompt {i}" for i in range(n)],
        splits=np.array(["train"] * (n - 2) + ["test"] * 2),
        split_steps=[2, 4],
        es_latents=torch.randn(n, 2, 4, 8, 8, generator=gen).half(),
        noise_seeds=torch.arange(n),
        settings={"num_inference_steps": 4},
        model={"name": "unit-test"},
        attributes={"present": torch.ones(n, 9, dtype=torch.int8)},
        build_command="python scripts/build_cache.py --output-dir somewhere",
    )


def test_round_trip(tmp_path):
    cache = small_cache()
    cache.save(tmp_path)
    loaded = LatentCache.load(tmp_path)
    assert loaded.prompts == cache.prompts
    assert list(loaded.splits) == list(cache.splits)
    torch.testing.assert_close(loaded.es_latents, cache.es_latents)
    torch.testing.assert_close(loaded.attributes["present"], cache.attributes["present"])
    assert loaded.model == {"name": "unit-test"}
    np.testing.assert_array_equal(loaded.indices("test"), [4, 5])
    torch.testing.assert_close(loaded.clean_latents(), cache.es_latents[:, 1].float())
    assert loaded.latents_at(2, [0]).dtype == torch.float32
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_cache_names_the_rebuild_command(tmp_path):
    with pytest.raises(CacheNotFoundError, match="scripts/build_cache.py"):
        LatentCache.load(tmp_path / "nowhere")
    small_cache().save(tmp_path)
    (tmp_path / "latents.safetensors").unlink()
    with pytest.raises(CacheNotFoundError, match="--output-dir somewhere"):
        LatentCache.load(tmp_path)


def test_truncated_cache(tmp_path):
    small_cache().save(tmp_path)
    path = tmp_path / "latents.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CacheCorruptedError, match="truncated"):
        LatentCache.load(tmp_path)


def test_corrupted_cache(tmp_path):
    small_cache().save(tmp_path)
    path = tmp_path / "latents.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # same size, one flipped byte
    path.write_bytes(bytes(data))
    with pytest.raises(CacheCorruptedError, match="checksum"):
        LatentCache.load(tmp_path)


def test_corrupted_json(tmp_path):
    small_cache().save(tmp_path)
    (tmp_path / "cache.json").write_text("{not json")
    with pytest.raises(CacheCorruptedError, match="not valid JSON"):
        LatentCache.load(tmp_path)


def test_version_mismatch(tmp_path):
    small_cache().save(tmp_path)
    meta = json.loads((tmp_path / "cache.json").read_text())
    meta["version"] = 99
    (tmp_path / "cache.json").write_text(json.dumps(meta))
    with pytest.raises(CacheVersionError, match="version 99"):
        LatentCache.load(tmp_path)


def test_shape_mismatch(tmp_path):
    small_cache().save(tmp_path)
    meta = json.loads((tmp_path / "cache.json").read_text())
    meta["latent_shape"] = [4, 16, 16]
    (tmp_path / "cache.json").write_text(json.dumps(meta))
    with pytest.raises(CacheMismatchError, match="shape"):
        LatentCache.load(tmp_path)
    cache = small_cache()
    with pytest.raises(CacheMismatchError, match="needs"):
        cache.require(latent_shape=(4, 16, 16))
    with pytest.raises(CacheMismatchError, match="split step 3"):
        cache.require(split_step=3)


def test_not_a_cache(tmp_path):
    (tmp_path / "cache.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CacheMismatchError, match="not a meg-gym latent cache"):
        LatentCache.load(tmp_path)


def test_inconsistent_cache_is_rejected():
    with pytest.raises(CacheMismatchError):
        LatentCache(prompts=["a"], splits=np.array(["train"]), split_steps=[4], es_latents=torch.zeros(2, 1, 4, 8, 8),
                    noise_seeds=torch.zeros(1), settings={})  # fmt: skip


def test_builder_resumes_and_matches_direct_generation(tiny_sd_dir, tmp_path):
    pipe = SplitPipeline.from_pretrained(str(tiny_sd_dir), num_inference_steps=4, guidance_scale=2.0)
    prompts = [f"a small red circle number {i}" for i in range(5)]
    splits = ["train", "train", "train", "test", "test"]
    out = tmp_path / "cache"
    # a first run that "crashed" after one batch: keep only its first part
    build_cache(pipe, prompts, splits, out, split_steps=[2], batch_size=2, progress=False)
    (out / "cache.json").unlink()
    parts = out / "parts"
    parts.mkdir()
    first = parts / "part-0000000.safetensors"
    from safetensors.torch import save_file

    save_file({"es_latents": torch.full((2, 2, 4, 16, 16), 7.0, dtype=torch.float16),
               "noise_seeds": torch.tensor([0, 1]), "reference_images": torch.zeros(2, 32, 32, 3, dtype=torch.uint8)},
              str(first))  # fmt: skip
    cache = build_cache(pipe, prompts, splits, out, split_steps=[2], batch_size=2, progress=False)
    assert not parts.exists()
    assert torch.all(cache.es_latents[:2] == 7.0)  # the finished part was reused, not recomputed
    direct, recorded = pipe.es_generate(prompts[2:], [2, 3, 4], record=[2])
    torch.testing.assert_close(cache.clean_latents([2, 3, 4]), direct, rtol=2e-3, atol=2e-3)  # float16 storage
    torch.testing.assert_close(cache.latents_at(2, [2, 3, 4]), recorded[2], rtol=2e-3, atol=2e-3)
    assert cache.reference_images.shape == (5, 32, 32, 3)


def test_build_cache_script_on_a_local_sd_folder(tiny_sd_dir, tmp_path):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(
        json.dumps([{"prompt": "a red circle", "split": "train"}, {"prompt": "a blue cross", "split": "test"}])
    )
    out = tmp_path / "sd-cache"
    cmd = [sys.executable, str(ROOT / "scripts" / "build_cache.py"), "--model", str(tiny_sd_dir), "--prompts-file",
           str(prompts), "--output-dir", str(out), "--num-inference-steps", "3", "--split-steps", "1", "2"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    cache = LatentCache.load(out)
    assert cache.split_steps == [1, 2, 3]
    assert cache.prompts == ["a red circle", "a blue cross"]
    assert cache.reference_images is not None
    assert cache.model["name"] == str(tiny_sd_dir)
    assert "--prompts-file" in cache.build_command


def test_sharded_build_matches_single_process(tiny_sd_dir, tmp_path):
    pipe = SplitPipeline.from_pretrained(str(tiny_sd_dir), num_inference_steps=3, guidance_scale=1.0)
    prompts = [f"prompt {i}" for i in range(5)]
    splits = ["train"] * 3 + ["test"] * 2
    kwargs = dict(split_steps=[1], batch_size=2, progress=False, store_reference_images=False)
    single = build_cache(pipe, prompts, splits, tmp_path / "single", **kwargs)
    # two "processes" share the batches; the non-main one returns None and process 0 assembles
    assert build_cache(pipe, prompts, splits, tmp_path / "sharded", process_index=1, num_processes=2, **kwargs) is None
    sharded = build_cache(pipe, prompts, splits, tmp_path / "sharded", process_index=0, num_processes=2, **kwargs)
    torch.testing.assert_close(sharded.es_latents, single.es_latents)
    assert LatentCache.load(tmp_path / "sharded").prompts == prompts
