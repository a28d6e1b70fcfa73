"""Conversions between uint8 images (N, H, W, 3) and diffusers' float tensors (N, 3, H, W) in [-1, 1], and VAE
decoding tuned for the CPU."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [-1, 1]."""
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images of shape (N, H, W, 3), got {images.dtype} {tuple(images.shape)}")
    return images.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float NCHW in [-1, 1] -> uint8 NHWC (values outside [-1, 1] are clipped)."""
    out = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return np.ascontiguousarray(out.permute(0, 2, 3, 1).cpu().numpy())


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clipped: the range the quality metrics use."""
    return images.float().add(1).div(2).clamp(0, 1)


# On CPU the VAE decoder runs fastest in small batches with channels-last tensors (larger batches fall out of
# the caches; the images agree to float rounding). Batches of 8 were chosen by timing at commit 4f2c706; the
# decode's measured cost, batched and one image at a time, is in docs/results/benchmarks.md.
CPU_DECODE_BATCH = 8


def prepare_vae(vae: torch.nn.Module) -> torch.nn.Module:
    """Put a VAE in eval mode, and in channels-last memory format when it runs on the CPU."""
    vae.eval()
    if next(vae.parameters()).device.type == "cpu":
        vae.to(memory_format=torch.channels_last)
    return vae


def decode_latents(vae, latents: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Latents in the UNet's space -> images in [-1, 1], float32 NCHW (batched as the device runs best).

    On the CPU, ONNX Runtime runs the decoder when it is installed (see :mod:`meg_gym.generation.onnx_decoder`).
    """
    from meg_gym.generation.onnx_decoder import decoder_backend, onnx_decoder_for

    device = next(vae.parameters()).device
    on_cpu = device.type == "cpu"
    batch_size = batch_size or (CPU_DECODE_BATCH if on_cpu else 64)
    scale = vae.config.scaling_factor
    if decoder_backend(device) == "onnxruntime":
        decode = onnx_decoder_for(vae)
        parts = [
            decode(latents[start : start + batch_size].float() / scale) for start in range(0, len(latents), batch_size)
        ]
        return torch.cat(parts).clamp(-1, 1).contiguous()
    memory_format = torch.channels_last if on_cpu else torch.contiguous_format
    parts = []
    for start in range(0, len(latents), batch_size):
        z = (latents[start : start + batch_size].to(device, vae.dtype) / scale).contiguous(memory_format=memory_format)
        parts.append(vae.decode(z).sample.float().clamp(-1, 1))
    return torch.cat(parts).contiguous()
