"""Conversions between uint8 images (N, H, W, 3) and diffusers' float tensors (N, 3, H, W) in [-1, 1]."""

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
