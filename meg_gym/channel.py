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
- A block of ``n`` symbols of duration ``T_s`` sent at power ``p`` spends the energy ``p * (n * T_s)``
  (see :func:`block_energy`); the energy spent in an episode never exceeds its budget
  (see :class:`EnergyBudget` and :func:`clip_to_budget`).
- All randomness comes from the ``numpy.random.Generator`` passed in, so results are reproducible from a seed.

Fading models (``ChannelConfig.fading``):

- ``"rayleigh"``: h ~ CN(0, 1), independent per block. |h|^2 is exponential with mean 1.
- ``"rician"``: h = sqrt(K/(K+1)) e^{j phi} + sqrt(1/(K+1)) w, w ~ CN(0, 1) per block, with one uniformly random
  line-of-sight phase ``phi`` per episode (per row).
- ``"nakagami"``: |h| = sqrt(G), G ~ Gamma(shape m, scale 1/m), with a uniform phase, independent per block.
- ``"gauss-markov"``: time-correlated Rayleigh fading, h_0 ~ CN(0, 1), h_k = rho h_{k-1} + sqrt(1 - rho^2) w_k,
  with rho = J0(2 pi f_D T_block), the lag-one value of the Jakes (Clarke) autocorrelation.
- ``"awgn"``: h = 1 (no fading), the path loss still applies.
- ``"sionna-tdl"``: a 3GPP TR 38.901 tapped-delay-line channel drawn with NVIDIA Sionna (optional extra
  ``meg-gym[sionna]``); see :func:`sample_block_gains`.

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

import importlib.util
import math
from dataclasses import dataclass, fields
from functools import lru_cache
from numbers import Real
from typing import Any

import numpy as np

__all__ = [
    "FADING_MODELS",
    "SIONNA_TDL_MODELS",
    "ChannelConfig",
    "EnergyBudget",
    "bessel_j0",
    "block_energy",
    "clip_to_budget",
    "db_to_linear",
    "linear_to_db",
    "mmse_equalise",
    "mmse_mse",
    "observe_gains",
    "outage_probability_rayleigh",
    "receive_snr",
    "sample_block_gains",
    "shannon_capacity",
    "snr_db",
    "transmit",
    "zf_equalise",
]

FADING_MODELS: tuple[str, ...] = ("rayleigh", "rician", "nakagami", "gauss-markov", "awgn", "sionna-tdl")
SIONNA_TDL_MODELS: tuple[str, ...] = ("A", "B", "C", "D", "E")

_SIONNA_INSTALL_HINT = 'pip install "meg-gym[sionna]"'


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
        h = _sample_sionna_tdl(config, num_envs, num_blocks, rng)
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


# ---- Sionna (optional) -----------------------------------------------------------------------------------------


def _import_sionna() -> tuple[Any, Any, float]:
    """Import torch and Sionna's TDL lazily; returns (torch, TDL class, speed of light).

    Importing ``sionna.phy`` the first time builds Sionna's global configuration, which reseeds torch's global
    random generators; their state is saved and restored around the import so that importing Sionna does not
    change any other random stream of the program.
    """
    import sys

    if "sionna.phy" not in sys.modules and importlib.util.find_spec("sionna") is None:
        raise ImportError(
            'fading="sionna-tdl" needs NVIDIA Sionna >= 2.0 (package sionna-no-rt), which is not installed. '
            f"Install it with: {_SIONNA_INSTALL_HINT}"
        )
    import torch

    cpu_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        import sionna
        import sionna.phy
        from sionna.phy import SPEED_OF_LIGHT
        from sionna.phy.channel.tr38901 import TDL
    except ImportError as exc:
        raise ImportError(
            f'fading="sionna-tdl" needs NVIDIA Sionna >= 2.0 (package sionna-no-rt), which failed to import: {exc}. '
            f"Install it with: {_SIONNA_INSTALL_HINT}"
        ) from exc
    finally:
        torch.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
    version = getattr(sionna, "__version__", "0")
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        major = 0
    if major < 2:
        raise ImportError(
            f'fading="sionna-tdl" needs Sionna >= 2.0 (PyTorch backend), found {version}. '
            f"Install it with: {_SIONNA_INSTALL_HINT}"
        )
    return torch, TDL, float(SPEED_OF_LIGHT)


@lru_cache(maxsize=1)
def _seeded_tdl_class() -> tuple[Any, type, float]:
    """Sionna's TDL with its random generator replaced by one passed in, so draws follow our seed only."""
    torch, tdl, speed_of_light = _import_sionna()

    class _SeededTDL(tdl):
        # Sionna objects draw from ``self.torch_rng`` (by default the global generator of ``sionna.phy.config``).
        def __init__(self, *args: Any, generator: Any, **kwargs: Any) -> None:
            self._meg_generator = generator
            super().__init__(*args, **kwargs)

        @property
        def torch_rng(self) -> Any:
            return self._meg_generator

    return torch, _SeededTDL, speed_of_light


def _sample_sionna_tdl(config: ChannelConfig, num_envs: int, num_blocks: int, rng: np.random.Generator) -> np.ndarray:
    torch, seeded_tdl, speed_of_light = _seeded_tdl_class()
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(rng.integers(0, 2**63 - 1)))
    speed = config.doppler_hz * speed_of_light / config.sionna_carrier_hz
    model = seeded_tdl(
        config.sionna_model,
        delay_spread=config.sionna_delay_spread_s,
        carrier_frequency=config.sionna_carrier_hz,
        min_speed=speed,
        max_speed=speed,
        precision="double",
        device="cpu",
        generator=generator,
    )
    with torch.no_grad():
        # a: [batch, num_rx=1, num_rx_ant=1, num_tx=1, num_tx_ant=1, num_paths, num_time_steps]
        a, _ = model(batch_size=num_envs, num_time_steps=num_blocks, sampling_frequency=1.0 / config.block_duration_s)
        dc_response = a.sum(dim=5)[:, 0, 0, 0, 0, :]
        total_power = float(model.mean_powers.sum())
    return dc_response.cpu().numpy().astype(np.complex128) / math.sqrt(total_power)


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


# ----------------------------------------------------------------------------------------------------------------
# Energy accounting
# ----------------------------------------------------------------------------------------------------------------


def _block_duration(symbols_in_block: Any, symbol_duration: Any) -> np.ndarray:
    """Validated ``symbols_in_block * symbol_duration`` (seconds of transmission per block), as floats."""
    n = np.asarray(symbols_in_block)
    if n.dtype == bool or not np.issubdtype(n.dtype, np.integer) or np.any(n < 0):
        raise ValueError(f"symbols_in_block must be a non-negative integer, got {symbols_in_block!r}")
    t = np.asarray(symbol_duration, dtype=np.float64)
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ValueError(f"symbol_duration must be a finite number > 0, got {symbol_duration!r}")
    return n.astype(np.float64) * t


def block_energy(power: Any, symbols_in_block: Any, symbol_duration: Any) -> np.ndarray:
    """Energy spent by one block: ``power * (symbols_in_block * symbol_duration)``.

    Always computed in this order, so the spend that :func:`clip_to_budget` checks is the spend callers record.
    All arguments broadcast together (one value per environment, or shared).
    """
    return np.asarray(power, dtype=np.float64) * _block_duration(symbols_in_block, symbol_duration)


def _requested(requested_power: Any) -> np.ndarray:
    p = np.asarray(requested_power, dtype=np.float64)
    if np.any(np.isnan(p)):
        raise ValueError("requested_power contains NaN")
    return np.maximum(p, 0.0)


def _shrink_until(applied: np.ndarray, violates: Any, max_steps: int = 16) -> np.ndarray:
    """Step ``applied`` down one float at a time where ``violates(applied)``; fall back to 0 if still violating."""
    for _ in range(max_steps):
        bad = violates(applied)
        if not np.any(bad):
            return applied
        applied = np.where(bad, np.nextafter(applied, 0.0), applied)
    return np.where(violates(applied), 0.0, applied)


def clip_to_budget(requested_power: Any, energy_left: Any, symbols_in_block: Any, symbol_duration: Any) -> np.ndarray:
    """The power actually applied to a block: as close to ``requested_power`` as the energy left allows.

    Vectorised over environments: all arguments broadcast together. The result satisfies, elementwise and in
    floating point, ``0 <= applied <= max(requested, 0)`` and
    ``block_energy(applied, symbols_in_block, symbol_duration) <= energy_left``, so
    ``energy_left - block_energy(...)`` is never negative. Negative requests give 0, ``+inf`` gives all that
    is left; NaN raises ``ValueError``. A block of zero symbols transmits nothing: its applied power is 0.
    """
    duration = _block_duration(symbols_in_block, symbol_duration)
    left = np.asarray(energy_left, dtype=np.float64)
    if np.any(np.isnan(left)) or np.any(left < 0):
        raise ValueError(f"energy_left must be >= 0, got {energy_left!r}")
    req = _requested(requested_power)
    active = duration > 0
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        cap = left / np.where(active, duration, 1.0)
    applied = np.where(active, np.minimum(req, np.minimum(cap, np.finfo(np.float64).max)), 0.0)

    def violates(p: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return p * duration > left

    return _shrink_until(np.asarray(applied, dtype=np.float64), violates)


def _sum_rounded_up(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """fl(a + b), moved up one float wherever rounding went below the exact sum (Knuth's TwoSum error term)."""
    s = a + b
    b_virtual = s - a
    a_virtual = s - b_virtual
    err = (a - a_virtual) + (b - b_virtual)
    return np.where(err > 0, np.nextafter(s, np.inf), s)


class EnergyBudget:
    """Per-episode energy accounting for a batch of environments; never lets spending exceed the budget.

    ``spent`` is kept as an upper bound of the exact sum of the block energies recorded so far (each addition
    is rounded up when floating-point rounding would have lost energy), and every block is clipped so that
    ``spent <= budget`` afterwards. Hence the exact total of the energies returned by :meth:`spend` never
    exceeds ``budget``, and :attr:`remaining` is never negative.

    Args:
        budget: Energy budget per environment (scalar or shape ``(num_envs,)``), finite and >= 0.
        symbols_in_block: Default number of symbols per block (may be overridden per call).
        symbol_duration: Symbol duration T_s in seconds (> 0), shared or one per environment.
        num_envs: Number of environments when ``budget`` is a scalar (default 1, giving shape ``(1,)``).
    """

    def __init__(self, budget: Any, symbols_in_block: int, symbol_duration: Any, num_envs: int | None = None):
        _block_duration(symbols_in_block, symbol_duration)
        budget = np.asarray(budget, dtype=np.float64)
        if budget.ndim == 0:
            budget = np.full(1 if num_envs is None else _check_count("num_envs", num_envs), float(budget))
        if budget.ndim != 1 or not np.all(np.isfinite(budget)) or np.any(budget < 0):
            raise ValueError("budget must be finite and >= 0, a scalar or a 1-D array (one entry per environment)")
        if num_envs is not None and budget.shape[0] != num_envs:
            raise ValueError(f"budget has {budget.shape[0]} entries but num_envs={num_envs}")
        self.budget = budget
        self.symbols_in_block = int(symbols_in_block)
        self.symbol_duration = (
            float(symbol_duration) if np.ndim(symbol_duration) == 0 else np.asarray(symbol_duration, dtype=np.float64)
        )
        self.spent = np.zeros_like(budget)

    @property
    def num_envs(self) -> int:
        return int(self.budget.shape[0])

    @property
    def remaining(self) -> np.ndarray:
        """Energy left per environment, >= 0."""
        return np.maximum(self.budget - self.spent, 0.0)

    def reset(self, mask: Any = None, budget: Any = None) -> None:
        """Start new episodes: zero ``spent`` (where ``mask`` is true, or everywhere), optionally with a new budget."""
        sel = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if budget is not None:
            new = np.broadcast_to(np.asarray(budget, dtype=np.float64), self.budget.shape)
            if not np.all(np.isfinite(new[sel])) or np.any(new[sel] < 0):
                raise ValueError("budget must be finite and >= 0")
            self.budget = np.where(sel, new, self.budget)
        self.spent = np.where(sel, 0.0, self.spent)

    def spend(self, requested_power: Any, symbols_in_block: int | None = None, mask: Any = None) -> np.ndarray:
        """Clip the requested powers to the budget, record the energy spent and return the applied powers.

        Args:
            requested_power: Power requested per environment (scalar or shape ``(num_envs,)``).
            symbols_in_block: Symbols in this block if it differs from the default (e.g. a shorter last block).
            mask: Optional boolean per environment; environments outside it transmit nothing (applied 0).

        Returns:
            Applied power per environment, shape ``(num_envs,)``, with ``0 <= applied <= max(requested, 0)``.
        """
        n = self.symbols_in_block if symbols_in_block is None else symbols_in_block
        req = np.broadcast_to(_requested(requested_power), self.budget.shape)
        if mask is not None:
            req = np.where(np.asarray(mask, dtype=bool), req, 0.0)
        applied = clip_to_budget(req, self.remaining, n, self.symbol_duration)

        def violates(p: np.ndarray) -> np.ndarray:
            return _sum_rounded_up(self.spent, block_energy(p, n, self.symbol_duration)) > self.budget

        applied = _shrink_until(applied, violates)
        self.spent = _sum_rounded_up(self.spent, block_energy(applied, n, self.symbol_duration))
        return applied

    def __repr__(self) -> str:
        return (
            f"EnergyBudget(num_envs={self.num_envs}, symbols_in_block={self.symbols_in_block}, "
            f"symbol_duration={self.symbol_duration!r})"
        )
