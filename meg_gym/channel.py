"""Wireless channel of the MEG environments: block fading, noise, SNR and energy accounting.

The edge server (ES) sends the seed, a sequence of complex symbols, to the user's device over a single-antenna
link. The seed is split into ``K`` fading blocks; inside block ``k`` the channel is flat and constant
(block fading), so every symbol of that block sees the same complex gain ``h_k``:

    y = sqrt(p_k) * h_k * s + n,      n ~ CN(0, N0)

Conventions used throughout this module:

- Symbols ``s`` have unit average power, E|s|^2 = 1.
- ``power`` (``p``) is the transmit power per symbol, in the same units as ``noise_power`` (``N0``), so the
  receive SNR of block ``k`` is ``p_k * |h_k|^2 / N0``. With the default ``N0 = 1`` a power of 1 means 0 dB
  transmit SNR.
- ``h`` holds the small-scale fading coefficient, normalised so E|h|^2 = 1, times the large-scale amplitude
  ``10 ** (-path_loss_db / 20)``; E|h|^2 is therefore ``10 ** (-path_loss_db / 10)``.
- Gains have shape ``(num_envs, num_blocks)``. Symbols carry one more, last, axis: the symbols inside a block.
  ``h``, ``power`` and ``noise_power`` broadcast against ``symbols.shape[:-1]``.
- Energy accounting (what a block costs, budgets that are never exceeded) lives in :mod:`meg_gym.energy`.
- All randomness comes from the ``numpy.random.Generator`` passed in, so results are reproducible from a seed.
  The batched forms (:func:`transmit_each`, :func:`transmit_interfering`) take one Generator per environment
  (the leading axis), so an environment's draws do not depend on which others run beside it.

Fading models (``ChannelConfig.fading``):

- ``"rayleigh"``: h ~ CN(0, 1), independent per block. |h|^2 is exponential with mean 1.
- ``"rician"``: h = sqrt(K/(K+1)) e^{j phi} + sqrt(1/(K+1)) w, w ~ CN(0, 1) per block, with one uniformly random
  line-of-sight phase ``phi`` per episode (per row).
- ``"nakagami"``: |h| = sqrt(G), G ~ Gamma(shape m, scale 1/m), with a uniform phase, independent per block.
- ``"gauss-markov"``: time-correlated Rayleigh fading, h_0 ~ CN(0, 1), h_k = rho h_{k-1} + sqrt(1 - rho^2) w_k,
  with rho = J0(2 pi f_D T_block), the lag-one value of the Jakes (Clarke) autocorrelation.
- ``"awgn"``: h = 1 (no fading), the path loss still applies.
- ``"sionna-tdl"``: a 3GPP TR 38.901 tapped-delay-line channel drawn with NVIDIA Sionna (optional extra
  ``meg-gym[sionna]``, adapter in :mod:`meg_gym.sionna_tdl`); see :func:`sample_block_gains`.

References:

- W. C. Jakes (ed.), *Microwave Mobile Communications*, Wiley, 1974: the autocorrelation J0(2 pi f_D tau) of a
  Rayleigh-faded carrier under isotropic scattering (Clarke's model).
- K. E. Baddour and N. C. Beaulieu, "Autoregressive modeling for fading channel simulation", IEEE Trans.
  Wireless Commun. 4(4), 2005: first-order (Gauss-Markov) autoregressive fading models.
- A. Goldsmith, *Wireless Communications*, Cambridge University Press, 2005: Rayleigh, Rician and Nakagami-m
  fading distributions (Ch. 3), Shannon capacity log2(1 + SNR) (Ch. 4), outage probability in Rayleigh fading
  1 - exp(-SNR_th / mean SNR) (Ch. 6).
- 3GPP TR 38.901, "Study on channel model for frequencies from 0.5 to 100 GHz", Sec. 7.7.2: TDL-A..E models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from numbers import Real
from typing import Any

import numpy as np

__all__ = [
    "FADING_MODELS",
    "SIONNA_TDL_MODELS",
    "ChannelConfig",
    "bessel_j0",
    "db_to_linear",
    "linear_to_db",
    "mmse_equalise",
    "mmse_equalise_interfering",
    "mmse_mse",
    "observe_gains",
    "outage_probability_rayleigh",
    "receive_snr",
    "sample_block_gains",
    "shannon_capacity",
    "snr_db",
    "simulate_mmse_torch",
    "mmse_with_noise",
    "transmit",
    "transmit_each",
    "transmit_interfering",
    "unit_noise_each",
    "zf_equalise",
]

FADING_MODELS: tuple[str, ...] = ("rayleigh", "rician", "nakagami", "gauss-markov", "awgn", "sionna-tdl")
SIONNA_TDL_MODELS: tuple[str, ...] = ("A", "B", "C", "D", "E")


# ----------------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelConfig:
    """Parameters of the fading channel; validated on construction.

    Numeric fields are stored as Python floats. Every invalid value raises ``ValueError`` (``TypeError`` for a
    value of the wrong type) naming the field, the value given and the allowed range.

    Attributes:
        fading: Fading model, one of :data:`FADING_MODELS`.
        rician_k: Rician K factor (linear power ratio of line-of-sight to scattered component), >= 0.
            K = 0 is Rayleigh fading.
        nakagami_m: Nakagami-m shape parameter, >= 0.5 (m = 1 is Rayleigh fading; larger m, milder fading).
        doppler_hz: Maximum Doppler frequency f_D in Hz, >= 0. Sets the block-to-block correlation of
            ``"gauss-markov"`` and the mobility of ``"sionna-tdl"``.
        block_duration_s: Duration T of one fading block in seconds, > 0.
        path_loss_db: Large-scale path loss in dB (any finite value; negative values are a gain). Scales
            E|h|^2 by ``10 ** (-path_loss_db / 10)``.
        noise_power: Receiver noise power N0 per complex symbol, > 0, in the units of the transmit power.
        csi_error_var: Variance of the agent's channel-estimation error, >= 0: the agent observes
            h_hat = h + e, e ~ CN(0, csi_error_var) (see :func:`observe_gains`). 0 means perfect CSI.
        sionna_model: TR 38.901 TDL profile for ``"sionna-tdl"``, one of ``"A"``..``"E"`` (D and E have a
            line-of-sight tap).
        sionna_delay_spread_s: RMS delay spread in seconds for ``"sionna-tdl"``, > 0 (100 ns is TR 38.901's
            "nominal" value).
        sionna_carrier_hz: Carrier frequency in Hz for ``"sionna-tdl"``, > 0.
    """

    fading: str = "rayleigh"
    rician_k: float = 3.0
    nakagami_m: float = 2.0
    doppler_hz: float = 10.0
    block_duration_s: float = 1e-3
    path_loss_db: float = 0.0
    noise_power: float = 1.0
    csi_error_var: float = 0.0
    sionna_model: str = "A"
    sionna_delay_spread_s: float = 100e-9
    sionna_carrier_hz: float = 3.5e9

    def __post_init__(self) -> None:
        if not isinstance(self.fading, str) or self.fading not in FADING_MODELS:
            raise ValueError(f"ChannelConfig.fading must be one of {list(FADING_MODELS)}, got {self.fading!r}")
        if not isinstance(self.sionna_model, str) or self.sionna_model not in SIONNA_TDL_MODELS:
            raise ValueError(
                f"ChannelConfig.sionna_model must be one of {list(SIONNA_TDL_MODELS)}, got {self.sionna_model!r}"
            )
        # (field, lower bound, lower bound inclusive?); None: any finite value
        bounds: dict[str, tuple[float, bool] | None] = {
            "rician_k": (0.0, True),
            "nakagami_m": (0.5, True),
            "doppler_hz": (0.0, True),
            "block_duration_s": (0.0, False),
            "path_loss_db": None,
            "noise_power": (0.0, False),
            "csi_error_var": (0.0, True),
            "sionna_delay_spread_s": (0.0, False),
            "sionna_carrier_hz": (0.0, False),
        }
        for name, bound in bounds.items():
            value = getattr(self, name)
            if bound is None:
                allowed = "a finite number"
            else:
                allowed = f"a finite number {'>=' if bound[1] else '>'} {bound[0]:g}"
            if isinstance(value, bool) or not isinstance(value, Real):
                raise TypeError(f"ChannelConfig.{name} must be {allowed}, got {value!r} ({type(value).__name__})")
            value = float(value)
            ok = math.isfinite(value)
            if ok and bound is not None:
                ok = value >= bound[0] if bound[1] else value > bound[0]
            if not ok:
                raise ValueError(f"ChannelConfig.{name} must be {allowed}, got {value!r}")
            object.__setattr__(self, name, value)

    @property
    def gauss_markov_rho(self) -> float:
        """Block-to-block correlation rho = J0(2 pi f_D T) of the Jakes model (used by ``"gauss-markov"``)."""
        return float(bessel_j0(2.0 * math.pi * self.doppler_hz * self.block_duration_s))

    @property
    def path_gain(self) -> float:
        """Large-scale power gain 10^(-path_loss_db / 10), i.e. E|h|^2."""
        return 10.0 ** (-self.path_loss_db / 10.0)

    @property
    def channel(self) -> ChannelConfig:
        """The channel part of a configuration that extends this one (environment configs do)."""
        return ChannelConfig(**{f.name: getattr(self, f.name) for f in fields(ChannelConfig)})

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-serialisable)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ----------------------------------------------------------------------------------------------------------------
# Small maths helpers
# ----------------------------------------------------------------------------------------------------------------


def bessel_j0(x: Any) -> np.ndarray:
    """Bessel function of the first kind of order zero, numpy only.

    Uses J0(x) = (1 / 2 pi) * integral over [0, 2 pi) of cos(x sin t) dt, evaluated with the trapezoidal rule on
    N equally spaced points. For a periodic integrand that rule is exact up to the aliased terms
    2 * sum_{m >= 1} J_{mN}(x), which are below double precision once N exceeds 2|x| + 64.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x.copy()
    if not np.all(np.isfinite(x)):
        raise ValueError("bessel_j0 needs finite arguments")
    n = 2 * int(np.ceil(np.max(np.abs(x)))) + 64
    n += n % 2
    t = np.sin(2.0 * np.pi * np.arange(n) / n)
    return np.cos(x[..., None] * t).mean(axis=-1)


def db_to_linear(db: Any) -> np.ndarray:
    """10^(db / 10)."""
    return np.power(10.0, np.asarray(db, dtype=np.float64) / 10.0)


def linear_to_db(value: Any) -> np.ndarray:
    """10 log10(value); -inf for 0."""
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.asarray(value, dtype=np.float64))


# ----------------------------------------------------------------------------------------------------------------
# Fading
# ----------------------------------------------------------------------------------------------------------------


def _complex_normal(rng: np.random.Generator, shape: tuple[int, ...], variance: float = 1.0) -> np.ndarray:
    """Circularly symmetric CN(0, variance) samples: real part drawn first, then imaginary part."""
    scale = math.sqrt(variance / 2.0)
    re = rng.standard_normal(shape)
    im = rng.standard_normal(shape)
    return scale * (re + 1j * im)


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def sample_block_gains(config: ChannelConfig, num_envs: int, num_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Draw the channel gain of every fading block of ``num_envs`` episodes.

    Args:
        config: The channel parameters.
        num_envs: Number of independent episodes (rows), >= 1.
        num_blocks: Fading blocks per episode (columns), >= 1.
        rng: The only source of randomness; the same generator state gives the same gains.

    Returns:
        complex128 array of shape ``(num_envs, num_blocks)``: the small-scale coefficient (E|h|^2 = 1) times
        ``sqrt(config.path_gain)``. See the module docstring for each model.

    ``"sionna-tdl"`` imports Sionna (``pip install "meg-gym[sionna]"``) on first use and draws, for each episode,
    a single-antenna 3GPP TR 38.901 TDL channel (Sionna's sum-of-sinusoids generator,
    ``sionna.phy.channel.tr38901.TDL``) sampled once per block, at the block starts, with the terminal speed
    that gives the maximum Doppler ``config.doppler_hz`` at ``config.sionna_carrier_hz``. The block gain is
    the channel's frequency response at the carrier (DC of the baseband), i.e. the sum of the complex tap
    coefficients, divided by the square root of the profile's total mean power so that E|h|^2 = 1. At DC the
    tap delays drop out, so the delay spread does not change the gain's statistics; the profile does (TDL-D and
    TDL-E have a line-of-sight tap and fade less), and the Doppler sets how fast the gain changes from block to
    block. Sionna draws from a private ``torch.Generator`` seeded with one ``rng.integers(0, 2**63 - 1)`` draw;
    Sionna's global seed and torch's global random state are left untouched. It runs on the CPU in double
    precision, whatever devices exist.
    """
    if not isinstance(config, ChannelConfig):
        raise TypeError(f"config must be a ChannelConfig, got {type(config).__name__}")
    num_envs = _check_count("num_envs", num_envs)
    num_blocks = _check_count("num_blocks", num_blocks)
    shape = (num_envs, num_blocks)
    fading = config.fading
    if fading == "rayleigh":
        h = _complex_normal(rng, shape)
    elif fading == "rician":
        k = config.rician_k
        phase = rng.uniform(0.0, 2.0 * np.pi, size=(num_envs, 1))
        h = math.sqrt(k / (k + 1.0)) * np.exp(1j * phase) + math.sqrt(1.0 / (k + 1.0)) * _complex_normal(rng, shape)
    elif fading == "nakagami":
        m = config.nakagami_m
        amplitude = np.sqrt(rng.gamma(shape=m, scale=1.0 / m, size=shape))
        phase = rng.uniform(0.0, 2.0 * np.pi, size=shape)
        h = amplitude * np.exp(1j * phase)
    elif fading == "gauss-markov":
        rho = config.gauss_markov_rho
        w = _complex_normal(rng, shape)
        h = np.empty(shape, dtype=np.complex128)
        h[:, 0] = w[:, 0]
        innovation = math.sqrt(max(0.0, 1.0 - rho * rho))
        for k in range(1, num_blocks):
            h[:, k] = rho * h[:, k - 1] + innovation * w[:, k]
    elif fading == "awgn":
        h = np.ones(shape, dtype=np.complex128)
    elif fading == "sionna-tdl":
        from meg_gym.sionna_tdl import sample_tdl_gains

        h = sample_tdl_gains(config, num_envs, num_blocks, rng)
    else:  # pragma: no cover - ChannelConfig validates fading
        raise ValueError(f"unknown fading model {fading!r}")
    return np.asarray(h, dtype=np.complex128) * math.sqrt(config.path_gain)


def observe_gains(config: ChannelConfig, h: Any, rng: np.random.Generator) -> np.ndarray:
    """The agent's channel estimate h_hat = h + e, e ~ CN(0, ``config.csi_error_var``) independent per entry.

    The error variance is absolute (it does not scale with the path loss). With ``csi_error_var == 0`` this
    returns an exact copy of ``h`` and draws nothing from ``rng``.
    """
    h = np.asarray(h, dtype=np.complex128)
    if config.csi_error_var == 0.0:
        return h.copy()
    return h + _complex_normal(rng, h.shape, config.csi_error_var)


# ----------------------------------------------------------------------------------------------------------------
# Transmission and equalisation
# ----------------------------------------------------------------------------------------------------------------


def _per_block(value: Any, name: str, dtype: Any = np.float64) -> np.ndarray:
    """A per-block quantity with a trailing axis added so it broadcasts over the symbols of the block."""
    arr = np.asarray(value, dtype=dtype)
    if dtype is np.float64 and (np.any(np.isnan(arr)) or np.any(arr < 0)):
        raise ValueError(f"{name} must be >= 0 everywhere and not NaN, got a minimum of {np.min(arr)}")
    return arr[..., None]


def transmit(symbols: Any, h: Any, power: Any, noise_power: Any, rng: np.random.Generator) -> np.ndarray:
    """Send unit-power symbols through the block-fading channel: y = sqrt(p) * h * s + n, n ~ CN(0, N0).

    Args:
        symbols: Complex symbols with unit average power; the last axis indexes the symbols of one block,
            e.g. shape ``(num_envs, num_blocks, symbols_per_block)``.
        h: Channel gain per block, broadcastable to ``symbols.shape[:-1]``.
        power: Transmit power per symbol (>= 0), same units as ``noise_power``; broadcastable like ``h``.
        noise_power: Noise power N0 (>= 0) per complex symbol; broadcastable like ``h``.
        rng: Source of the noise (real parts drawn first, then imaginary parts).

    Returns:
        complex128 received symbols, of the broadcast shape of all inputs.
    """
    s = np.asarray(symbols, dtype=np.complex128)
    g = np.sqrt(_per_block(power, "power")) * _per_block(h, "h", np.complex128)
    n0 = _per_block(noise_power, "noise_power")
    shape = np.broadcast_shapes(s.shape, g.shape, n0.shape)
    noise = np.sqrt(n0 / 2.0) * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    return g * s + noise


def unit_noise_each(rngs: Sequence[np.random.Generator], shape: tuple[int, ...]) -> np.ndarray:
    """``re + 1j * im`` of shape ``(len(rngs), *shape)``: row ``e`` from ``rngs[e]``, real parts drawn first.

    Each row is what :func:`transmit` draws from one Generator for symbols of ``shape`` (before scaling by
    ``sqrt(N0 / 2)``), so a batch of environments reproduces each environment's single-env noise exactly.
    """
    noise = np.empty((len(rngs), *shape), dtype=np.complex128)
    for e, rng in enumerate(rngs):
        re = rng.standard_normal(shape)
        noise[e] = re + 1j * rng.standard_normal(shape)
    return noise


def transmit_each(
    symbols: Any, h: Any, power: Any, noise_power: float, rngs: Sequence[np.random.Generator]
) -> np.ndarray:
    """:func:`transmit` for a batch of environments, the noise of row ``e`` drawn from ``rngs[e]``.

    Args:
        symbols: ``(num_envs, symbols_per_block)`` unit-power symbols, one block per environment.
        h, power: ``(num_envs,)`` gain and transmit power of that block.
        noise_power: Noise power N0, shared.
        rngs: One Generator per environment.

    Returns:
        ``(num_envs, symbols_per_block)`` received symbols, equal to calling :func:`transmit` row by row.
    """
    s = np.asarray(symbols, dtype=np.complex128)
    g = np.sqrt(_per_block(power, "power")) * _per_block(h, "h", np.complex128)
    return g * s + np.sqrt(noise_power / 2.0) * unit_noise_each(rngs, s.shape[1:])


def noise_draws(seeds: Any, draws: int, shape: tuple[int, ...], noise_power: float) -> np.ndarray:
    """CN(0, N0) noise of shape ``(draws, len(seeds), *shape)``; row e's draws come from ``default_rng(seeds[e])``
    alone, so a planner's candidates scored under one seed meet the same noise whatever the batch."""
    seeds = np.atleast_1d(seeds)
    out = np.empty((draws, len(seeds), *shape), dtype=np.complex128)
    for e, seed in enumerate(seeds):
        rng = np.random.default_rng(int(seed))
        out[:, e] = _complex_normal(rng, (draws, *shape), noise_power)
    return out


def transmit_interfering(symbols: Any, g: Any, noise_power: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Links that share a band: UE ``i`` receives ``y_i = sum_j g_ij s_j + n_i``, n ~ CN(0, N0).

    Args:
        symbols: ``(num_envs, N, symbols_per_block)``: what each of the N transmitters sends in this block.
        g: ``(num_envs, N, N)`` complex amplitude from transmitter ``j`` at receiver ``i``
            (``sqrt(power_j * large-scale gain_ij) * h_ij``).
        noise_power: Noise power N0 at every receiver.
        rngs: One Generator per environment; row ``e``'s noise, ``(N, symbols_per_block)``, comes from ``rngs[e]``.

    Returns:
        ``(num_envs, N, symbols_per_block)`` received symbols.
    """
    s = np.asarray(symbols, dtype=np.complex128)
    return np.einsum("mij,mjs->mis", g, s) + np.sqrt(noise_power / 2.0) * unit_noise_each(rngs, s.shape[1:])


@lru_cache(maxsize=16)
def _cross_links(n: int) -> np.ndarray:
    """(n, n) boolean mask of the pairs i != j (read-only, shared)."""
    mask = ~np.eye(n, dtype=bool)
    mask.flags.writeable = False
    return mask


def mmse_equalise_interfering(y: Any, g: Any, noise_power: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each receiver's linear MMSE estimate of its own transmitter's symbols, the interference taken as noise.

    With ``g`` as in :func:`transmit_interfering`, receiver ``i`` estimates ``s_i`` as
    ``conj(g_ii) y_i / (|g_ii|^2 + I_i + N0)``, ``I_i = sum_{j != i} |g_ij|^2``.

    Returns:
        (estimates ``(num_envs, N, symbols_per_block)``, SINR ``|g_ii|^2 / (I_i + N0)`` and interference power
        ``I_i``, both ``(num_envs, N)``).
    """
    power = np.abs(g) ** 2
    own_power = np.einsum("mii->mi", power)
    interference = (power * _cross_links(power.shape[-1])).sum(axis=2)  # the others summed, not total minus own
    den = own_power + interference + noise_power
    estimates = np.conj(np.einsum("mii->mi", g))[..., None] * y / den[..., None]
    return estimates, own_power / (interference + noise_power), interference


def simulate_mmse_torch(symbols: Any, snr: Any, generator: Any = None) -> tuple[Any, Any]:
    """The MMSE-equalised channel in torch, for training the seed codec and for sweeps over SNR.

    After MMSE equalisation the estimate depends on the channel only through the receive SNR (the noise is
    circularly symmetric), so a real positive gain ``sqrt(snr)`` is exact for any complex ``h``.

    Args:
        symbols: Complex unit-power symbols, a tensor (B, n).
        snr: Linear receive SNR per symbol, broadcastable to (B, n), >= 0.
        generator: The ``torch.Generator`` the noise comes from (None: torch's global one).

    Returns:
        (MMSE estimates, reliability ``snr / (1 + snr)``), both (B, n); the first complex, the second real.
    """
    import torch

    noise = torch.complex(
        torch.randn(symbols.shape, generator=generator), torch.randn(symbols.shape, generator=generator)
    ) * math.sqrt(0.5)
    return mmse_with_noise(symbols, snr, noise)


def mmse_with_noise(symbols: Any, snr: Any, noise: Any) -> tuple[Any, Any]:
    """:func:`simulate_mmse_torch` with the unit complex Gaussian noise given (B, n), e.g. drawn per environment."""
    import torch

    snr = torch.as_tensor(snr, dtype=torch.float32).expand(symbols.shape)
    gain = snr.sqrt()
    received = gain * symbols + noise.to(symbols.dtype)
    return gain / (snr + 1.0) * received, snr / (1.0 + snr)


def mmse_equalise(y: Any, h: Any, power: Any, noise_power: Any) -> np.ndarray:
    """Linear MMSE estimate of unit-power symbols: s_hat = conj(g) y / (|g|^2 + N0), with g = sqrt(p) h.

    Shapes as in :func:`transmit`. Its mean squared error is 1 / (1 + SNR) per block (:func:`mmse_mse`). A block
    sent with zero power (or ``g = 0`` and ``N0 = 0``) is estimated as 0, the prior mean.
    """
    y = np.asarray(y, dtype=np.complex128)
    g = np.sqrt(_per_block(power, "power")) * _per_block(h, "h", np.complex128)
    den = np.abs(g) ** 2 + _per_block(noise_power, "noise_power")
    num = np.conj(g) * y
    den = np.broadcast_to(den, num.shape)
    return np.divide(num, den, out=np.zeros(num.shape, dtype=np.complex128), where=den > 0)


def zf_equalise(y: Any, h: Any, power: Any) -> np.ndarray:
    """Zero-forcing estimate s_hat = y / (sqrt(p) h); blocks with ``sqrt(p) h == 0`` are estimated as 0.

    Unbiased, but its error N0 / (p |h|^2) grows without bound in deep fades, unlike :func:`mmse_equalise`.
    """
    y = np.asarray(y, dtype=np.complex128)
    g = np.sqrt(_per_block(power, "power")) * _per_block(h, "h", np.complex128)
    g = np.broadcast_to(g, np.broadcast_shapes(g.shape, y.shape))
    y = np.broadcast_to(y, g.shape)
    return np.divide(y, g, out=np.zeros(g.shape, dtype=np.complex128), where=g != 0)


def receive_snr(power: Any, h: Any, noise_power: Any) -> np.ndarray:
    """Per-block receive SNR (linear): power * |h|^2 / noise_power."""
    return np.asarray(power, dtype=np.float64) * np.abs(np.asarray(h)) ** 2 / np.asarray(noise_power, np.float64)


def snr_db(power: Any, h: Any, noise_power: Any) -> np.ndarray:
    """Per-block receive SNR in dB: 10 log10(power * |h|^2 / noise_power); -inf for zero power."""
    return linear_to_db(receive_snr(power, h, noise_power))


def mmse_mse(snr: Any) -> np.ndarray:
    """Mean squared error 1 / (1 + SNR) of the linear MMSE estimate of a unit-power symbol (linear SNR)."""
    return 1.0 / (1.0 + np.asarray(snr, dtype=np.float64))


def outage_probability_rayleigh(threshold_snr: Any, mean_snr: Any) -> np.ndarray:
    """P(SNR < threshold) = 1 - exp(-threshold / mean_snr) in Rayleigh fading, linear SNRs (Goldsmith 2005, Ch. 6).

    The receive SNR of a Rayleigh-faded link is exponentially distributed with mean ``mean_snr``.
    """
    mean_snr = np.asarray(mean_snr, dtype=np.float64)
    if np.any(~(mean_snr > 0)):
        raise ValueError(f"mean_snr must be > 0, got {mean_snr!r}")
    threshold = np.maximum(np.asarray(threshold_snr, dtype=np.float64), 0.0)
    return -np.expm1(-threshold / mean_snr)


def shannon_capacity(snr: Any) -> np.ndarray:
    """Shannon capacity log2(1 + SNR) in bit/s/Hz of an AWGN channel at linear SNR ``snr`` (Goldsmith 2005, Ch. 4)."""
    return np.log1p(np.asarray(snr, dtype=np.float64)) / math.log(2.0)
