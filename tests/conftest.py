"""Shared fixtures: a tiny randomly initialised Stable Diffusion pipeline built in code (no download)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def make_tiny_sd_pipeline():
    """A StableDiffusionPipeline with a few thousand random weights: 32x32 images, 4x16x16 latents."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

    from meg_gym.generation.embedded import text_encoder_path

    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=32, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 16),
    )  # fmt: skip
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, norm_num_groups=8, attention_head_dim=4,
    )  # fmt: skip
    # A real word-piece tokenizer that ships offline; the text encoder itself is a tiny random CLIP.
    tokenizer = AutoTokenizer.from_pretrained(text_encoder_path(), model_max_length=16)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=16,
            eos_token_id=102,
        )  # fmt: skip
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)  # fmt: skip
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory):
    """The tiny pipeline saved in diffusers' folder format, as a user's local Stable Diffusion folder."""
    folder = tmp_path_factory.mktemp("tiny-sd")
    make_tiny_sd_pipeline().save_pretrained(folder)
    return folder
