"""What crosses the channel: the learned seed codec and the paper's reference schemes.

MEG sends the UE a *seed*, a short sequence of complex channel symbols computed from the LDM latent, instead
of the image. Three ways to fill the channel are compared (Zhong et al., "Enabling Distributed Generative AI
in 6G: Mobile-Edge Generation", IEEE IoT J. 12(6), 2024, Sec. IV):

- :class:`SeedCodec`, the learned joint source-channel code (JSCC): a convolutional encoder maps the latent to
  ``ratio x`` the latent's complex-symbol count, normalised to unit average power; the decoder maps the
  MMSE-equalised symbols back to a latent. It is trained through the noisy channel at random SNRs to minimise
  the latent reconstruction error (``scripts/train_codec.py``). The decoder also sees each symbol's
  reliability ``snr / (1 + snr)``: the UE knows its own channel (it needs it to equalise), and with it one
  decoder serves every SNR and every fading pattern, including blocks sent with no power at all.
- :class:`RawLatent`, the uncompressed reference: the latent's real values paired into complex symbols, with
  the same unit average power normalisation and MMSE equalisation, decoded by the linear MMSE estimator that
  knows the latent prior's per-element mean and variance (or, as before 2026-11-29, as if zero-mean). The
  per-latent normalisation gain is side information (one real number per image) that we assume arrives
  intact; it is not counted as a symbol.
- Centralised generation and downloading: the ES decodes the image itself and sends the pixels, either
  analogue and uncoded (:func:`centralised_analogue`) or digitally at a fixed rate with outage
  (:func:`centralised_digital`).

Symbol layout. Both latent schemes emit ``(batch, num_symbols)`` complex symbols. :func:`to_blocks`
interleaves them over the ``K`` fading blocks (symbol ``i`` goes to block ``i % K``), so a deep fade thins
the whole seed a little instead of erasing one region of the latent.

Conventions follow :mod:`meg_gym.channel`: unit-power symbols, receive SNR ``p |h|^2 / N0`` per block.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from meg_gym import ASSETS_DIR
from meg_gym.channel import simulate_mmse_torch

__all__ = [
    "CODEC_DIR",
    "COMPRESSION_RATIOS",
    "DEFAULT_COMPRESSION_RATIO",
    "RawLatent",
    "SeedCodec",
    "centralised_analogue",
    "centralised_digital",
    "codec_folder",
    "digital_symbols",
    "from_blocks",
    "image_bits",
    "load_codec",
    "reliability",
    "check_blocks",
    "symbol_snr",
    "to_blocks",
]

CODEC_DIR = ASSETS_DIR / "seed-codec"
COMPRESSION_RATIOS = (Fraction(1, 2), Fraction(1, 4), Fraction(1, 8), Fraction(1, 16))
DEFAULT_COMPRESSION_RATIO = Fraction(1, 4)
TRAIN_COMMAND = "python scripts/train_codec.py"


def parse_ratio(ratio: Any) -> Fraction:
    """A compression ratio given as 0.25, "1/4" or Fraction(1, 4), checked against :data:`COMPRESSION_RATIOS`."""
    try:
        value = Fraction(ratio).limit_denominator(1024) if not isinstance(ratio, str) else Fraction(ratio.strip())
    except (TypeError, ValueError, ZeroDivisionError):
        value = None
    if value not in COMPRESSION_RATIOS:
        allowed = ", ".join(str(r) for r in COMPRESSION_RATIOS)
        raise ValueError(f"compression ratio must be one of {allowed} (or the same as a float), got {ratio!r}")
    return value


def codec_folder(ratio: Any, root: Path | str = CODEC_DIR) -> Path:
    """Folder of the shipped codec for a compression ratio, e.g. ``assets/seed-codec/ratio-1-4``."""
    r = parse_ratio(ratio)
    return Path(root) / f"ratio-{r.numerator}-{r.denominator}"


# ----------------------------------------------------------------------------------------------------------------
# Symbol layout and the channel as the codec sees it
# ----------------------------------------------------------------------------------------------------------------


def check_blocks(num_symbols: int, num_blocks: int) -> None:
    """Raise ValueError (listing the valid counts) unless ``num_symbols`` split evenly into ``num_blocks`` blocks."""
    if num_blocks < 1 or num_symbols % num_blocks:
        divisors = [k for k in range(1, num_symbols + 1) if num_symbols % k == 0]
        raise ValueError(
            f"{num_symbols} seed symbols cannot be split evenly into {num_blocks} fading blocks; "
            f"choose num_blocks from {divisors}"
        )


def to_blocks(symbols: Any, num_blocks: int) -> Any:
    """(..., n) -> (..., K, n / K): symbol ``i`` goes to block ``i % K`` (works on numpy arrays and tensors)."""
    n = symbols.shape[-1]
    check_blocks(n, num_blocks)
    out = symbols.reshape(*symbols.shape[:-1], n // num_blocks, num_blocks)
    return out.swapaxes(-1, -2) if isinstance(out, np.ndarray) else out.transpose(-1, -2)


def from_blocks(blocks: Any) -> Any:
    """Inverse of :func:`to_blocks`: (..., K, n / K) -> (..., n)."""
    out = blocks.swapaxes(-1, -2) if isinstance(blocks, np.ndarray) else blocks.transpose(-1, -2)
    return out.reshape(*out.shape[:-2], -1)


def reliability(snr: Any) -> Any:
    """snr / (1 + snr): the share of an MMSE estimate's power that is signal; 0 for a block sent with no power."""
    return snr / (1.0 + snr)


def _normalise_power(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale each row of reals so the complex symbols they form have unit average power; returns the gains."""
    flat = x.flatten(1)
    scale = torch.sqrt(flat.shape[1] / 2 / flat.pow(2).sum(1).clamp_min(1e-12))
    return flat * scale[:, None], scale


def _reals_to_complex(flat: torch.Tensor) -> torch.Tensor:
    return torch.view_as_complex(flat.float().reshape(flat.shape[0], -1, 2).contiguous())


def _complex_to_reals(symbols: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(symbols.to(torch.complex64)).flatten(1)


# ----------------------------------------------------------------------------------------------------------------
# The learned seed codec
# ----------------------------------------------------------------------------------------------------------------


class _ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SeedCodec(ModelMixin, ConfigMixin):
    """Convolutional JSCC seed encoder and decoder over an LDM latent.

    The encoder halves the latent's height and width and keeps ``seed_channels`` channels, so a latent of
    ``C x H x W`` reals becomes ``seed_channels * H * W / 8`` complex symbols: compression ratio
    ``seed_channels / (4 C)`` of the latent's ``C H W / 2`` complex symbols. Fully convolutional, so the same
    class serves the embedded 4x8x8 latents and Stable Diffusion's 4x64x64.

    Args:
        latent_channels: Channels of the LDM latent.
        latent_size: Height (= width) of the latent the codec was trained on (recorded, and checked by the env).
        seed_channels: Channels of the seed map; sets the compression ratio.
        hidden_channels: Width of the convolutional trunk.
        num_res_blocks: Residual blocks on each side of the down/up-sampling.
    """

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 4,
        latent_size: int = 8,
        seed_channels: int = 4,
        hidden_channels: int = 64,
        num_res_blocks: int = 2,
    ):
        super().__init__()
        if latent_size % 2:
            raise ValueError(f"latent_size must be even, got {latent_size}")
        h = hidden_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(latent_channels, h, 3, padding=1),
            *[_ResBlock(h) for _ in range(num_res_blocks)],
            nn.Conv2d(h, h, 3, stride=2, padding=1),
            *[_ResBlock(h) for _ in range(num_res_blocks)],
            nn.GroupNorm(8, h), nn.SiLU(), nn.Conv2d(h, seed_channels, 1),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.Conv2d(2 * seed_channels, h, 3, padding=1),
            *[_ResBlock(h) for _ in range(num_res_blocks)],
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(h, h, 3, padding=1),
            *[_ResBlock(h) for _ in range(num_res_blocks)],
            nn.GroupNorm(8, h), nn.SiLU(), nn.Conv2d(h, latent_channels, 3, padding=1),
        )  # fmt: skip

    @property
    def seed_shape(self) -> tuple[int, int, int]:
        half = self.config.latent_size // 2
        return (self.config.seed_channels, half, half)

    @property
    def num_symbols(self) -> int:
        """Complex channel symbols per seed."""
        c, h, w = self.seed_shape
        return c * h * w // 2

    @property
    def compression_ratio(self) -> Fraction:
        return Fraction(self.config.seed_channels, 4 * self.config.latent_channels)

    def encode(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents (B, C, H, W) -> (complex64 seed symbols (B, n) with unit average power, ones (B,)).

        The second output is the side information of the interface shared with :class:`RawLatent`; the codec
        needs none, so it is all ones.
        """
        flat, _ = _normalise_power(self.encoder(latents.float()))
        return _reals_to_complex(flat), torch.ones(len(latents))

    def decode(self, received: torch.Tensor, reliabilities: torch.Tensor, side: torch.Tensor | None = None):
        """MMSE-equalised symbols (B, n) and their reliabilities (B, n) -> latents (B, C, H, W)."""
        del side
        shape = (len(received), *self.seed_shape)
        reals = _complex_to_reals(received).view(shape)
        rel = torch.as_tensor(reliabilities, dtype=torch.float32).repeat_interleave(2, dim=1).view(shape)
        return self.decoder(torch.cat([reals, rel], dim=1))

    def forward(self, latents: torch.Tensor, snr: torch.Tensor, generator: torch.Generator | None = None):
        """Encode, send through :func:`meg_gym.channel.simulate_mmse_torch` at the given per-symbol SNR, decode (for training)."""
        symbols, _ = self.encode(latents)
        received, rel = simulate_mmse_torch(symbols, snr, generator)
        return self.decode(received, rel)


def load_codec(ratio: Any = DEFAULT_COMPRESSION_RATIO, folder: Path | str | None = None) -> SeedCodec:
    """The trained seed codec for ``ratio`` (shipped for the embedded model), or the one saved in ``folder``."""
    from meg_gym.weights import load_pretrained

    path = Path(folder) if folder is not None else codec_folder(ratio)
    command = f"{TRAIN_COMMAND} --ratios {parse_ratio(ratio)}" + ("" if folder is None else f" --output-dir {path}")
    fix = f"Reinstall meg-gym for the shipped codecs, or train it with `{command}`."
    codec = load_pretrained(SeedCodec, path, "seed codec", fix).float().eval()  # shipped in float16, run in float32
    codec.requires_grad_(False)
    return codec


# ----------------------------------------------------------------------------------------------------------------
# Reference schemes
# ----------------------------------------------------------------------------------------------------------------


class RawLatent:
    """The raw latent sent uncompressed: ``C H W / 2`` complex symbols, unit average power, MMSE equalised.

    The per-latent normalisation gain ``c`` travels as side information (one real per image, assumed error-free).
    The receiver is one of two:

    - with a ``prior`` (per-element mean and variance, :mod:`meg_gym.latent_prior`): the linear MMSE estimate of
      each latent value z from its zero-forced observation ``z + e``, ``e ~ N(0, v)``, ``v = 1 / (2 snr c^2)``:
      ``z_hat = mu + var / (var + v) * (observation - mu)``; a value sent with no power decodes to the prior mean.
      This is the fair raw-latent reference (scheme "raw-latent").
    - without one: the symbol-level MMSE estimate divided by ``c``, which treats the latent as zero-mean with the
      variance of its normalisation (scheme "raw-latent-zero-mean", the reference before 2026-11-29).
    """

    def __init__(self, latent_shape: Sequence[int], prior: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.latent_shape = tuple(int(s) for s in latent_shape)
        if math.prod(self.latent_shape) % 2:
            raise ValueError(f"a latent of shape {self.latent_shape} has an odd number of values")
        self.prior = None
        if prior is not None:
            mean, var = (torch.as_tensor(t, dtype=torch.float32).reshape(self.latent_shape) for t in prior)
            self.prior = (mean.flatten(), var.flatten().clamp_min(1e-12))

    @property
    def num_symbols(self) -> int:
        return math.prod(self.latent_shape) // 2

    compression_ratio = Fraction(1)

    def encode(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat, scale = _normalise_power(latents.float())
        return _reals_to_complex(flat), scale

    def decode(self, received: torch.Tensor, reliabilities: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """Latents from the MMSE-equalised symbols, their reliabilities ``r = snr / (1 + snr)`` and the gains."""
        estimate = _complex_to_reals(received)
        if self.prior is None:
            return (estimate / side[:, None]).view(len(received), *self.latent_shape)
        mean, var = self.prior
        r = torch.repeat_interleave(
            torch.as_tensor(reliabilities, dtype=torch.float32).reshape(len(received), -1), 2, 1
        )
        c = side[:, None].float()
        # z_hat = mu + var / (var + v) * (estimate / (r c) - mu), with v = (1 - r) / (2 r c^2), written without
        # dividing by r so that a value sent with no power (r = 0, estimate = 0) decodes to mu
        z = mean + (2 * var * c * estimate - 2 * var * r * c**2 * mean) / (2 * var * r * c**2 + 1 - r)
        return z.view(len(received), *self.latent_shape)


def image_bits(images_uint8: np.ndarray, compress: bool = False) -> np.ndarray:
    """Bits per image for digital downloading: 8 bits per subpixel, or the lossless PNG size with ``compress``."""
    images_uint8 = np.asarray(images_uint8)
    if not compress:
        return np.full(len(images_uint8), images_uint8[0].size * 8, dtype=np.int64)
    from PIL import Image

    sizes = []
    for img in images_uint8:
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, format="PNG", optimize=True)
        sizes.append(buffer.tell() * 8)
    return np.asarray(sizes, dtype=np.int64)


def digital_symbols(bits: Any, rate: float) -> np.ndarray:
    """Channel symbols to carry ``bits`` at ``rate`` bits per complex symbol (rounded up)."""
    if not rate > 0:
        raise ValueError(f"rate must be > 0 bits per symbol, got {rate}")
    return np.ceil(np.asarray(bits, dtype=np.float64) / rate).astype(np.int64)


def centralised_analogue(images: torch.Tensor, block_snr: Any, generator: torch.Generator | None = None):
    """Uncoded analogue image transmission: pixels as symbols, unit average power, MMSE equalised.

    Args:
        images: (B, 3, H, W) in [-1, 1], the image the ES generated.
        block_snr: Linear receive SNR, (B,) for AWGN or (B, K) for K fading blocks (pixels interleaved over
            the blocks like seed symbols).

    Returns:
        The received images (B, 3, H, W), clipped to [-1, 1]. It uses ``3 H W / 2`` channel symbols each.
    """
    flat, scale = _normalise_power(images.float())
    symbols = _reals_to_complex(flat)
    snr = symbol_snr(block_snr, symbols.shape[1])
    received, _ = simulate_mmse_torch(symbols, snr, generator)
    return (_complex_to_reals(received) / scale[:, None]).view(images.shape).clamp(-1, 1)


def symbol_snr(block_snr: Any, num_symbols: int) -> torch.Tensor:
    """Per-symbol SNR (B, n) from one SNR per image (B,) or per fading block (B, K), interleaved like the seed."""
    snr = torch.as_tensor(np.asarray(block_snr, dtype=np.float32))
    if snr.ndim == 1:
        return snr[:, None].expand(-1, num_symbols)
    return from_blocks(snr[:, :, None].expand(-1, -1, num_symbols // snr.shape[1]))


def centralised_digital(images: torch.Tensor, block_snr: Any, rate: float) -> tuple[torch.Tensor, np.ndarray]:
    """Digital downloading at a fixed rate, coded across the fading blocks, with outage.

    The ES sends the 8-bit image in one codeword at ``rate`` bits per symbol, spread evenly over the K blocks.
    Decoding succeeds when the mean capacity of the blocks, ``mean_k log2(1 + snr_k)``, reaches the rate
    (the outage condition of a parallel channel: D. Tse and P. Viswanath, *Fundamentals of Wireless
    Communication*, 2005, Sec. 5.4.4); then the UE shows the 8-bit image, otherwise a mid-grey image.

    Returns:
        (received images in [-1, 1], boolean outage per image).
    """
    snr = np.asarray(block_snr, dtype=np.float64)
    snr = snr[:, None] if snr.ndim == 1 else snr
    outage = np.log2(1.0 + snr).mean(axis=1) < rate
    quantised = images.float().clamp(-1, 1).add(1).mul(127.5).round().div(127.5).sub(1)
    received = torch.where(torch.as_tensor(outage)[:, None, None, None], torch.zeros_like(quantised), quantised)
    return received, outage
