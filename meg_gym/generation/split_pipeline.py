"""ES/UE split generation over any diffusers Stable Diffusion pipeline.

The edge server (ES) runs denoising steps 1..s, the phone (UE) runs s+1..T and decodes. One implementation
serves the embedded MEG-Shapes model and any :class:`diffusers.StableDiffusionPipeline` (a local folder or a
hub id): it only uses the pipeline's components (tokenizer, text encoder, UNet, scheduler, VAE).

Latents live in the UNet's space (VAE latents times ``vae.config.scaling_factor``), as in diffusers. With
``s = T`` the UE only decodes. The scheduler must be stateless between steps (DDIM is, and is the default)
so that the UE can pick up at any step.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from meg_gym.generation import embedded
from meg_gym.generation.imaging import decode_latents, prepare_vae


class SplitPipeline:
    """Split text-to-image generation: ``es_generate`` then ``ue_complete`` then ``decode``.

    Args:
        pipe: a ``StableDiffusionPipeline`` (or any pipeline with the same components).
        num_inference_steps: T, the total number of denoising steps.
        guidance_scale: classifier-free guidance weight (1 disables guidance).
        eta: DDIM's stochasticity (0: deterministic).
    """

    def __init__(self, pipe, num_inference_steps: int = embedded.DEFAULT_NUM_INFERENCE_STEPS,
                 guidance_scale: float = embedded.DEFAULT_GUIDANCE_SCALE, eta: float = 0.0):  # fmt: skip
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        self.pipe = pipe
        prepare_vae(pipe.vae)
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = float(guidance_scale)
        self.eta = float(eta)
        self.scheduler = pipe.scheduler
        self.scheduler.set_timesteps(self.num_inference_steps)
        self.timesteps = self.scheduler.timesteps.clone()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, model: str | Path | None = None, device="cpu", **kwargs) -> SplitPipeline:
        """``model=None`` loads the embedded MEG-Shapes LDM; otherwise a diffusers Stable Diffusion folder or hub id."""
        if model is None or str(model) in ("embedded", "meg-ldm"):
            pipe = embedded.load_embedded_pipeline(device=device)
        else:
            from diffusers import DDIMScheduler, StableDiffusionPipeline

            pipe = StableDiffusionPipeline.from_pretrained(
                str(model), safety_checker=None, requires_safety_checker=False, use_safetensors=True
            ).to(device)
            pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
            pipe.set_progress_bar_config(disable=True)
        return cls(pipe, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.pipe.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.pipe.unet.dtype

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        cfg = self.pipe.unet.config
        return (cfg.in_channels, cfg.sample_size, cfg.sample_size)

    @property
    def do_guidance(self) -> bool:
        return self.guidance_scale > 1.0

    def settings(self) -> dict:
        """The generation settings a cache records."""
        return {
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "eta": self.eta,
            "scheduler": type(self.scheduler).__name__,
            "timesteps": [int(t) for t in self.timesteps],
            "latent_shape": list(self.latent_shape),
            "vae_scaling_factor": float(self.pipe.vae.config.scaling_factor),
        }

    # ------------------------------------------------------------------ pieces
    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Text-encoder states for the prompts and, with guidance, for the empty prompt."""
        cond, uncond = self.pipe.encode_prompt(list(prompts), self.device, 1, self.do_guidance)
        return cond, uncond

    def initial_latents(self, seeds: Sequence[int]) -> torch.Tensor:
        """Starting noise, one generator per prompt, so a latent does not depend on its batch."""
        noise = [
            torch.randn(self.latent_shape, generator=torch.Generator("cpu").manual_seed(int(s)), dtype=torch.float32)
            for s in seeds
        ]
        return torch.stack(noise).to(self.device, self.dtype) * self.scheduler.init_noise_sigma

    @torch.no_grad()
    def denoise(self, latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None,
                start: int, stop: int, record: Sequence[int] = ()) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:  # fmt: skip
        """Run denoising steps ``start+1 .. stop`` (1-based). Returns the latents and those after each step in ``record``."""
        if not 0 <= start <= stop <= self.num_inference_steps:
            raise ValueError(f"need 0 <= start <= stop <= {self.num_inference_steps}, got start={start}, stop={stop}")
        self.scheduler.set_timesteps(self.num_inference_steps)
        recorded = {start: latents.clone()} if start in record else {}
        text = torch.cat([uncond, cond]) if self.do_guidance else cond
        for step in range(start, stop):
            t = self.timesteps[step]
            model_in = torch.cat([latents, latents]) if self.do_guidance else latents
            model_in = self.scheduler.scale_model_input(model_in, t)
            noise = self.pipe.unet(model_in, t, encoder_hidden_states=text).sample
            if self.do_guidance:
                noise_uncond, noise_cond = noise.chunk(2)
                noise = noise_uncond + self.guidance_scale * (noise_cond - noise_uncond)
            latents = self.scheduler.step(noise, t, latents, eta=self.eta).prev_sample
            if step + 1 in record:
                recorded[step + 1] = latents.clone()
        return latents, recorded

    def es_generate(self, prompts: Sequence[str], seeds: Sequence[int], split_step: int | None = None,
                    record: Sequence[int] = ()) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:  # fmt: skip
        """ES side: encode the prompts and run steps 1..split_step (default: all) from seeded noise."""
        if len(prompts) != len(seeds):
            raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds; give one seed per prompt")
        split_step = self.num_inference_steps if split_step is None else int(split_step)
        cond, uncond = self.encode_prompts(prompts)
        return self.denoise(self.initial_latents(seeds), cond, uncond, 0, split_step, record)

    def ue_complete(self, latents: torch.Tensor, prompts: Sequence[str], split_step: int) -> torch.Tensor:
        """UE side: run steps split_step+1..T on received latents (a no-op when split_step == T)."""
        if split_step == self.num_inference_steps:
            return latents
        cond, uncond = self.encode_prompts(prompts)
        return self.denoise(latents.to(self.device, self.dtype), cond, uncond, split_step, self.num_inference_steps)[0]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Latents (UNet space) -> images in [-1, 1], NCHW float32 (in batches of 8 on CPU, where that is fastest)."""
        return decode_latents(self.pipe.vae, latents, batch_size)

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], split_step: int | None = None,
                 batch_size: int | None = None) -> torch.Tensor:  # fmt: skip
        """Whole generation, ES steps then UE steps then decode: images in [-1, 1], ``batch_size`` prompts at a time."""
        split_step = self.num_inference_steps if split_step is None else int(split_step)
        step = batch_size or max(len(prompts), 1)
        images = []
        for start in range(0, len(prompts), step):
            batch = prompts[start : start + step]
            latents, _ = self.es_generate(batch, seeds[start : start + step], split_step)
            images.append(self.decode(self.ue_complete(latents, batch, split_step)))
        return torch.cat(images)
