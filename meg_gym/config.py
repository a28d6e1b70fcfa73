"""One configuration dataclass per environment family: the single source of truth for their settings.

``gym.make("MEG-PowerControl-v0", **kwargs)`` maps every keyword onto a field of :class:`PowerControlConfig`
(the channel's fields included, flat: ``gym.make(..., fading="rician", rician_k=5)``) and rejects unknown
names with the list of valid ones. Neither torch nor the model libraries are imported here, so reading a config
is cheap.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, fields
from fractions import Fraction
from numbers import Integral, Real
from typing import Any

from meg_gym.channel import ChannelConfig
from meg_gym.link.rewards import INFO_METRICS, REWARDS

__all__ = ["REWARD_METRICS", "SCHEMES", "PowerControlConfig", "config_from_kwargs"]

REWARD_METRICS = tuple(REWARDS)
SCHEMES = ("seed", "raw-latent")
SPLITS = ("train", "test", "all")
# kept here (not imported from codec) so that reading a config does not import torch
_COMPRESSION_RATIOS = (Fraction(1, 2), Fraction(1, 4), Fraction(1, 8), Fraction(1, 16))


@dataclass(frozen=True)
class PowerControlConfig(ChannelConfig):
    """Settings of MEG-PowerControl-v0 (and its vector env). Channel fields are inherited from ChannelConfig.

    Attributes:
        cache_dir: Latent cache folder; None is the shipped embedded cache.
        split: Prompt split episodes draw from: "train", "test" (held-out prompts, for evaluation) or "all".
        num_blocks: Fading blocks K per episode; one agent step per block. Must divide the seed's symbol count.
        scheme: What is sent: "seed" (the learned codec) or "raw-latent" (the uncompressed reference).
        compression_ratio: Seed size as a fraction of the latent's complex-symbol count: 1/2, 1/4, 1/8 or 1/16.
        codec_dir: Folder of a codec trained with scripts/train_codec.py; None is the shipped one for the ratio.
        ue_steps: Denoising steps the UE runs after decoding the seed (0: the UE only decodes the image).
            The ES then stops after T - ue_steps steps, which must be a split step held by the cache.
        peak_snr_db: Receive SNR in dB at full power (action 1) on a channel of unit gain:
            peak power = noise_power * 10^(peak_snr_db / 10).
        budget_fraction: Energy budget per episode as a fraction of the energy of sending every block at
            peak power. Below 1 the budget binds. The default 0.05 gives an average receive SNR of -3 dB at the
            default peak SNR, while a single block may get up to 20 times its fair share: the regime in which
            where the energy goes matters (with looser budgets the oracle's lead over static power shrinks:
            docs/reproduction.md, figure (c), gives it per budget and names the cache it was measured on).
        symbol_duration_s: Duration of one channel symbol in seconds (energy = power * symbols * duration).
        reward: Image-quality reward given at the last block: "psnr" (dB), "ssim", "ms-ssim", or
            "latent-mse" (the negative mean squared error of the UE's final latent against the clean latent).
        info_metrics: The quality metrics the final info reports, from "psnr", "ssim", "ms_ssim" and
            "latent_mse"; None (default) is psnr, ssim and latent_mse. The reward's own metric is always computed.
            Only what is named is computed: with ``reward="latent-mse", info_metrics=()`` no image is decoded.
    """

    cache_dir: str | None = None
    split: str = "train"
    num_blocks: int = 8
    scheme: str = "seed"
    compression_ratio: float = 0.25
    codec_dir: str | None = None
    ue_steps: int = 0
    peak_snr_db: float = 10.0
    budget_fraction: float = 0.05
    symbol_duration_s: float = 1e-6
    reward: str = "psnr"
    info_metrics: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _one_of(self, "split", SPLITS)
        _one_of(self, "scheme", SCHEMES)
        _one_of(self, "reward", REWARD_METRICS)
        for name in ("cache_dir", "codec_dir"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, str | bytes) and not hasattr(value, "__fspath__"):
                    raise TypeError(f"PowerControlConfig.{name} must be a path or None, got {value!r}")
                object.__setattr__(self, name, str(value))
        _integer(self, "num_blocks", minimum=1)
        _integer(self, "ue_steps", minimum=0)
        _number(self, "peak_snr_db", lower=None)
        _number(self, "budget_fraction", lower=0.0, inclusive=True)
        _number(self, "symbol_duration_s", lower=0.0, inclusive=False)
        try:
            ratio = Fraction(self.compression_ratio).limit_denominator(1024)
        except (TypeError, ValueError):
            ratio = None
        if isinstance(self.compression_ratio, bool) or ratio not in _COMPRESSION_RATIOS:
            allowed = ", ".join(f"{float(r):g}" for r in _COMPRESSION_RATIOS)
            raise ValueError(
                f"PowerControlConfig.compression_ratio must be one of {allowed}, got {self.compression_ratio!r}"
            )
        object.__setattr__(self, "compression_ratio", float(ratio))
        if self.info_metrics is not None:
            names = self.info_metrics
            if isinstance(names, str) or not all(isinstance(n, str) for n in names) or set(names) - set(INFO_METRICS):
                raise ValueError(
                    f"PowerControlConfig.info_metrics must be None or a list of names from {list(INFO_METRICS)}, "
                    f"got {names!r}"
                )
            object.__setattr__(self, "info_metrics", tuple(dict.fromkeys(names)))

    @property
    def channel(self) -> ChannelConfig:
        """The channel part of the configuration."""
        return ChannelConfig(**{f.name: getattr(self, f.name) for f in fields(ChannelConfig)})

    @property
    def peak_power(self) -> float:
        return self.noise_power * 10.0 ** (self.peak_snr_db / 10.0)

    @property
    def ratio(self) -> Fraction:
        return Fraction(self.compression_ratio).limit_denominator(1024)


def _one_of(config: Any, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(config, name)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{type(config).__name__}.{name} must be one of {list(allowed)}, got {value!r}")


def _integer(config: Any, name: str, minimum: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{type(config).__name__}.{name} must be an integer >= {minimum}, got {value!r}")
    object.__setattr__(config, name, int(value))


def _number(config: Any, name: str, lower: float | None, inclusive: bool = True) -> None:
    value = getattr(config, name)
    ok = not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(value)
    if ok and lower is not None:
        ok = value >= lower if inclusive else value > lower
    if not ok:
        bound = "" if lower is None else f" {'>=' if inclusive else '>'} {lower:g}"
        raise ValueError(f"{type(config).__name__}.{name} must be a finite number{bound}, got {value!r}")
    object.__setattr__(config, name, float(value))


def config_from_kwargs(config_class: type, kwargs: dict[str, Any]) -> Any:
    """Build ``config_class`` from keyword arguments, or raise a TypeError that lists the valid names.

    A ready-made config may be passed as ``config=...``; other keywords then override its fields.
    """
    kwargs = dict(kwargs)
    base = kwargs.pop("config", None)
    names = [f.name for f in fields(config_class)]
    unknown = [k for k in kwargs if k not in names]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, names, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TypeError(
            f"unknown {config_class.__name__} setting(s): {', '.join(hints)}. Valid settings: {', '.join(names)}"
        )
    if base is None:
        return config_class(**kwargs)
    if not isinstance(base, config_class):
        raise TypeError(f"config must be a {config_class.__name__}, got {type(base).__name__}")
    return config_class(**{**{n: getattr(base, n) for n in names}, **kwargs})
