"""The UE side of every MEG link: seeds in, images and their quality out, batched.

A :class:`Receiver` holds, for one configuration, everything behind the channel: the cached prompts and
latents of a split, the scheme's encoded symbols (seed codec or raw latent), the VAE decoder, the reference
images (decoded from the clean latents, memoised) and, when the UE runs denoising steps, the split pipeline.
:func:`receiver_for` shares one per process and configuration, so many environments cost one copy.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from meg_gym.link.rewards import IMAGE_METRICS

__all__ = ["Receiver", "receiver_for"]


class Receiver:
    """Everything behind the channel for one configuration: seeds in, images and quality out (batched)."""

    def __init__(self, cache_dir, split, scheme, ratio, codec_dir, ue_steps):
        import torch

        from meg_gym import codec as codec_lib
        from meg_gym.cache import LatentCache
        from meg_gym.generation import embedded
        from meg_gym.generation.imaging import prepare_vae

        self.torch = torch
        self.cache = LatentCache.load(cache_dir)
        self.rows = self.cache.indices(split)
        self.prompts = [self.cache.prompts[r] for r in self.rows]
        total = self.cache.num_inference_steps
        self.split_step = total - ue_steps
        if self.split_step not in self.cache.split_steps:
            held = [total - s for s in self.cache.split_steps]
            raise ValueError(
                f"ue_steps={ue_steps} needs ES latents after {self.split_step} of {total} steps, which the cache at "
                f"{self.cache.path} does not hold; choose ue_steps from {sorted(held)} or rebuild the cache with "
                f"that split step"
            )
        self.ue_steps = ue_steps
        latent_shape = self.cache.latent_shape
        if scheme == "seed":
            self.scheme = codec_lib.load_codec(ratio, codec_dir)
            cfg = self.scheme.config
            if (cfg.latent_channels, cfg.latent_size, cfg.latent_size) != tuple(latent_shape):
                raise ValueError(
                    f"the seed codec at {codec_dir or codec_lib.codec_folder(ratio)} is for latents of shape "
                    f"({cfg.latent_channels}, {cfg.latent_size}, {cfg.latent_size}) but the cache holds "
                    f"{tuple(latent_shape)}; train one for this cache with "
                    f"`python scripts/train_codec.py --cache-dir {self.cache.path} --extra-scenes 0 "
                    f"--ratios {ratio} --output-dir <folder>` and pass codec_dir=<folder>/ratio-..."
                )
        elif scheme == "raw-latent":
            from meg_gym.latent_prior import latent_prior

            self.scheme = codec_lib.RawLatent(latent_shape, prior=latent_prior(cache_dir, self.split_step))
        else:
            self.scheme = codec_lib.RawLatent(latent_shape)  # "raw-latent-zero-mean"
        self.clean = self.cache.clean_latents(self.rows)
        with torch.no_grad():
            symbols, side = self.scheme.encode(self.cache.latents_at(self.split_step, self.rows))
        self.symbols = symbols.numpy().astype(np.complex128)
        self.side = side
        self.num_symbols = self.symbols.shape[1]
        # the cache records the model that built it: "meg-ldm", or a Stable Diffusion folder or hub id
        self.model_name = self.cache.model.get("name") or "meg-ldm"
        if self.model_name == "meg-ldm":
            self.vae = embedded.load_autoencoder()
        else:
            from diffusers import AutoencoderKL

            self.vae = AutoencoderKL.from_pretrained(self.model_name, subfolder="vae", use_safetensors=True)
        prepare_vae(self.vae)
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self._split_pipeline = None
        self._references = torch.zeros((len(self.rows), 3, 0, 0))
        self._have_reference = np.zeros(len(self.rows), dtype=bool)
        self._reference_decoder = None  # the decoder backend the memoised references came from

    @property
    def split_pipeline(self):
        if self._split_pipeline is None:
            from meg_gym.generation.split_pipeline import SplitPipeline

            settings = self.cache.settings
            self._split_pipeline = SplitPipeline.from_pretrained(
                None if self.model_name == "meg-ldm" else self.model_name,
                num_inference_steps=int(settings["num_inference_steps"]),
                guidance_scale=float(settings["guidance_scale"]),
                eta=float(settings.get("eta", 0.0)),
            )
        return self._split_pipeline

    def decode_images(self, latents, batch_size: int | None = None):
        from meg_gym.generation.imaging import decode_latents

        with self.torch.no_grad():
            return decode_latents(self.vae, latents, batch_size)

    def references(self, idx: np.ndarray):
        """Reference images (decoded from the clean latents), memoised as float16, returned float32.

        They are decoded in fixed, aligned chunks of rows (a missing row brings its whole chunk), so each image
        comes out of the same decoder batch whatever episodes ran before: the memoised references, and hence
        the rewards, do not depend on a process's history. They are decoded again if the decoder backend
        (:mod:`meg_gym.generation.onnx_decoder`) changes.
        """
        from meg_gym.generation.imaging import CPU_DECODE_BATCH
        from meg_gym.generation.onnx_decoder import decoder_backend

        backend = decoder_backend(next(self.vae.parameters()).device)
        if backend != self._reference_decoder:  # references come from the decoder that decodes the received images
            self._have_reference[:] = False
            self._reference_decoder = backend
        missing = np.unique(idx[~self._have_reference[idx]])
        if len(missing):
            chunk = CPU_DECODE_BATCH
            missing = np.concatenate(
                [np.arange(c * chunk, min(c * chunk + chunk, len(self.rows))) for c in np.unique(missing // chunk)]
            )
            images = self.decode_images(self.clean[missing], batch_size=chunk)
            if self._references.shape[-1] == 0:
                self._references = self.torch.zeros((len(self.rows), *images.shape[1:]), dtype=self.torch.float16)
            self._references[missing] = images.half()
            self._have_reference[missing] = True
        return self._references[idx].float()

    def decode_all_references(self, batch_size: int = 256) -> None:
        """Decode every reference image now (episodes otherwise decode each on first use), e.g. before timing."""
        for start in range(0, len(self.rows), batch_size):
            self.references(np.arange(start, min(start + batch_size, len(self.rows))))

    def receive(
        self, idx: np.ndarray, estimates: np.ndarray, reliabilities: np.ndarray, metrics: tuple[str, ...]
    ) -> dict[str, Any]:
        """Decode a batch of received seeds and score them. ``idx`` are split-local row indices.

        Args:
            idx: (B,) rows of the split the seeds belong to.
            estimates, reliabilities: (B, K, symbols per block) MMSE estimates and their reliabilities.
            metrics: Names from :data:`meg_gym.link.rewards.INFO_METRICS` to compute. The VAE decodes the images
                only when one of them needs the image.

        Returns:
            Each metric as a float64 array (B,), and ``latents``: the UE's final latents (B, C, H, W).
        """
        from meg_gym import codec as codec_lib
        from meg_gym import quality

        torch = self.torch
        out: dict[str, Any] = {}
        with torch.no_grad():
            received = torch.from_numpy(codec_lib.from_blocks(estimates)).to(torch.complex64)
            rel = torch.from_numpy(codec_lib.from_blocks(reliabilities)).float()
            latents = self.scheme.decode(received, rel, self.side[idx])
            if self.ue_steps:
                prompts = [self.prompts[i] for i in idx]
                latents = self.split_pipeline.ue_complete(latents, prompts, self.split_step)
            if IMAGE_METRICS.intersection(metrics):
                images = self.decode_images(latents)
                pred, target = quality.to_unit(images), quality.to_unit(self.references(idx))
                scores = {"psnr": quality.psnr, "ssim": quality.ssim, "ms_ssim": quality.ms_ssim}
                for name in metrics:
                    if name in scores:
                        out[name] = scores[name](pred, target).double().numpy()
            if "latent_mse" in metrics:
                out["latent_mse"] = (latents - self.clean[idx]).pow(2).flatten(1).mean(1).double().numpy()
        out["latents"] = latents
        return out


@functools.lru_cache(maxsize=8)
def _shared_receiver(cache_dir, split, scheme, ratio, codec_dir, ue_steps) -> Receiver:
    return Receiver(cache_dir, split, scheme, ratio, codec_dir, ue_steps)


def receiver_for(config: Any) -> Receiver:
    """The process-wide :class:`Receiver` of a link configuration (any config with PowerControlConfig's fields)."""
    cache_dir = None if config.cache_dir is None else str(Path(config.cache_dir).resolve())
    codec_dir = None if config.codec_dir is None else str(Path(config.codec_dir).resolve())
    ratio = str(config.ratio) if config.scheme == "seed" else None
    return _shared_receiver(cache_dir, config.split, config.scheme, ratio, codec_dir, config.ue_steps)
