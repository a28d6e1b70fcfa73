"""The shipped embedded model, classifier and default cache: present, loadable, consistent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meg_gym.cache import LatentCache
from meg_gym.generation import embedded, shapes


@pytest.fixture(scope="module")
def cache():
    return LatentCache.load()


@pytest.fixture(scope="module")
def split_pipe():
    from meg_gym.generation.split_pipeline import SplitPipeline

    return SplitPipeline.from_pretrained()


def test_default_cache_meets_the_brief(cache):
    assert len(cache.indices("train")) >= 2000 and len(cache.indices("test")) >= 500
    assert cache.latent_shape == (4, 8, 8)
    assert cache.split_steps[-1] == cache.num_inference_steps
    files = list(LatentCache.load().path.iterdir())
    assert sum(f.stat().st_size for f in files) <= 20e6
    assert torch.isfinite(cache.es_latents.float()).all()


def test_default_cache_prompts_are_meg_shapes_scenes(cache):
    seed = cache.model["scene_seed"]
    test_rows = cache.indices("test")
    for k in (0, 7, len(test_rows) - 1):
        assert cache.prompts[test_rows[k]] == shapes.sample_scene("test", k, seed).caption
    train_rows = cache.indices("train")
    assert cache.prompts[train_rows[3]] == shapes.sample_scene("train", 3, seed).caption
    attrs = shapes.sample_scene("test", 0, seed).attributes()
    np.testing.assert_array_equal(cache.attributes["colour"][test_rows[0]].numpy(), attrs["colour"])


def test_embedded_pipeline_reproduces_cached_latents(cache, split_pipe):
    rows = cache.indices("test")[:4]
    prompts = [cache.prompts[r] for r in rows]
    seeds = cache.noise_seeds[rows].tolist()
    split = cache.split_steps[1]
    _, recorded = split_pipe.es_generate(prompts, seeds, record=[split, cache.num_inference_steps])
    torch.testing.assert_close(recorded[split], cache.latents_at(split, rows), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(recorded[cache.num_inference_steps], cache.clean_latents(rows), rtol=1e-2, atol=1e-2)


def test_embedded_model_is_a_stable_diffusion_pipeline(split_pipe):
    from diffusers import StableDiffusionPipeline

    pipe = split_pipe.pipe
    assert isinstance(pipe, StableDiffusionPipeline)
    out = pipe("a large red circle in the center", num_inference_steps=4, output_type="np").images
    assert out.shape == (1, 64, 64, 3)


def test_assets_load_from_diffusers_folders():
    from diffusers import AutoencoderTiny, UNet2DConditionModel

    vae = AutoencoderTiny.from_pretrained(embedded.EMBEDDED_MODEL_DIR / "vae")
    unet = UNet2DConditionModel.from_pretrained(embedded.EMBEDDED_MODEL_DIR / "unet")
    assert vae.config.latent_channels == 4 and unet.config.cross_attention_dim == 384

    def size(*folders):
        return sum(p.stat().st_size for f in folders for p in (embedded.ASSETS_DIR / f).rglob("*") if p.is_file())

    assert size("meg-ldm", "shapes-classifier") <= 25e6  # the generation side's weights
    assert size("seed-codec") <= 8e6
    assert size(".") <= 45e6  # everything shipped, the default cache included


def test_classifier_reads_a_render():
    from meg_gym.generation.classifier import load_classifier
    from meg_gym.generation.imaging import to_tensor

    scene = shapes.sample_scene("test", 11, num_objects=1)
    pred = load_classifier().predict(to_tensor(scene.render()[None]))
    obj = scene.objects[0]
    assert pred["present"][0, obj.cell] == 1
    assert pred["shape"][0, obj.cell] == shapes.SHAPES.index(obj.shape)
    assert pred["colour"][0, obj.cell] == shapes.COLOUR_NAMES.index(obj.colour)


def test_missing_assets_name_the_rebuild_command(tmp_path):
    from meg_gym.generation.classifier import load_classifier

    with pytest.raises(FileNotFoundError, match="train_autoencoder.py"):
        embedded.load_autoencoder(tmp_path)
    with pytest.raises(FileNotFoundError, match="train_classifier.py"):
        load_classifier(tmp_path)
