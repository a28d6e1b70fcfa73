"""ES/UE split generation on a tiny random Stable Diffusion pipeline loaded from a local folder."""

from __future__ import annotations

import pytest
import torch

from meg_gym.generation.split_pipeline import SplitPipeline

PROMPTS = ["a large red circle at the top left", "a small blue square in the center", "a green cross"]


@pytest.fixture(scope="module")
def split_pipe(tiny_sd_dir):
    return SplitPipeline.from_pretrained(str(tiny_sd_dir), num_inference_steps=6, guidance_scale=3.0)


@pytest.mark.parametrize("split_step", [0, 2, 5, 6])
def test_es_then_ue_equals_whole_generation(split_pipe, split_step):
    whole, _ = split_pipe.es_generate(PROMPTS, [1, 2, 3])
    es, _ = split_pipe.es_generate(PROMPTS, [1, 2, 3], split_step)
    ue = split_pipe.ue_complete(es, PROMPTS, split_step)
    torch.testing.assert_close(ue, whole, rtol=1e-5, atol=1e-5)


def test_split_changes_the_transmitted_latent(split_pipe):
    early, _ = split_pipe.es_generate(PROMPTS, [1, 2, 3], 2)
    late, _ = split_pipe.es_generate(PROMPTS, [1, 2, 3], 6)
    assert not torch.allclose(early, late)


def test_recorded_steps_match_separate_runs(split_pipe):
    _, recorded = split_pipe.es_generate(PROMPTS, [7, 8, 9], record=[0, 3, 6])
    assert sorted(recorded) == [0, 3, 6]
    at3, _ = split_pipe.es_generate(PROMPTS, [7, 8, 9], 3)
    torch.testing.assert_close(recorded[3], at3)


def test_latent_does_not_depend_on_batch(split_pipe):
    batch, _ = split_pipe.es_generate(PROMPTS, [1, 2, 3])
    alone, _ = split_pipe.es_generate(PROMPTS[1:2], [2])
    torch.testing.assert_close(batch[1:2], alone, rtol=1e-4, atol=1e-5)


def test_generate_decodes_images_in_range(split_pipe):
    images = split_pipe.generate(PROMPTS, [1, 2, 3], split_step=4)
    assert images.shape == (3, 3, 32, 32)
    assert images.min() >= -1 and images.max() <= 1
    assert split_pipe.latent_shape == (4, 16, 16)


def test_bad_arguments_are_named(split_pipe):
    with pytest.raises(ValueError, match="one seed per prompt"):
        split_pipe.es_generate(PROMPTS, [1])
    with pytest.raises(ValueError, match="start <= stop"):
        split_pipe.es_generate(PROMPTS, [1, 2, 3], 7)
