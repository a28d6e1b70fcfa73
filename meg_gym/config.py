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

__all__ = [
    "COST_PROFILE_SOURCES",
    "REWARD_METRICS",
    "SCHEMES",
    "SPLIT_SCHEMES",
    "PowerControlConfig",
    "SplitControlConfig",
    "config_from_kwargs",
]

REWARD_METRICS = tuple(REWARDS)
SCHEMES = ("seed", "raw-latent", "raw-latent-zero-mean")
# "fit" and "validation" partition "train" for tuning (meg_gym.cache.LatentCache.indices)
SPLITS = ("train", "test", "all", "fit", "validation")
# kept here (not imported from codec) so that reading a config does not import torch
_COMPRESSION_RATIOS = (Fraction(1, 2), Fraction(1, 4), Fraction(1, 8), Fraction(1, 16))
# MEG-SplitControl-v0's schemes, most compressed first (meg_gym.envs.split_control.live.SCHEME_RATIOS holds their
# ratios; a test checks the two agree)
SPLIT_SCHEMES = ("seed-1/16", "seed-1/8", "seed-1/4", "seed-1/2", "raw-latent")


@dataclass(frozen=True)
class PowerControlConfig(ChannelConfig):
    """Settings of MEG-PowerControl-v0 (and its vector env). Channel fields are inherited from ChannelConfig.

    Attributes:
        cache_dir: Latent cache folder; None is the shipped embedded cache.
        split: Prompt split episodes draw from: "train", "test" (held-out prompts, for evaluation) or "all"; for
            tuning, "fit" (seven eighths of train) and "validation" (the other eighth).
        num_blocks: Fading blocks K per episode; one agent step per block. Must divide the seed's symbol count.
        scheme: What is sent: "seed" (the learned codec) or the uncompressed latent, "raw-latent" (decoded by
            the linear MMSE estimator that knows the latent prior's per-element mean and variance, estimated on
            train prompts: the fair reference) or "raw-latent-zero-mean" (equalised as if the latent had zero
            mean: the reference before 2026-11-29, kept for comparison).
        compression_ratio: Seed size as a fraction of the latent's complex-symbol count: 1/2, 1/4, 1/8 or 1/16.
        codec_dir: Folder of a codec trained with scripts/train_codec.py; None is the shipped one for the ratio.
        ue_steps: Denoising steps the UE runs after decoding the seed (0: the UE only decodes the image).
            The ES then stops after T - ue_steps steps, which must be a split step held by the cache.
        peak_snr_db: Receive SNR in dB at full power (action 1) on a channel of unit gain:
            peak power = noise_power * 10^(peak_snr_db / 10).
        budget_fraction: Energy budget per episode as a fraction of the energy of sending every block at
            peak power. Below 1 the budget binds. The default 0.05 gives an average receive SNR of -3 dB at the
            default peak SNR, while a single block may get up to 20 times its fair share: the regime in which
            where the energy goes matters (with looser budgets MMSE water-filling's lead over static power shrinks:
            docs/results/reproduction.md, figure (c), gives it per budget and names the cache it was measured on).
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
    def peak_power(self) -> float:
        return self.noise_power * 10.0 ** (self.peak_snr_db / 10.0)

    @property
    def ratio(self) -> Fraction:
        return Fraction(self.compression_ratio).limit_denominator(1024)


# Where the defaults of SplitControlConfig's cost profile come from (the env card prints this table).
COST_PROFILE_SOURCES: dict[str, str] = {
    "ue_step_s": "Stable Diffusion v1.5 UNet, one pass 79.1 ms on a Samsung Galaxy S24 (Snapdragon 8 Gen 3 NPU), "
    "Qualcomm AI Hub model card (quic/ai-hub-models, qai_hub_models/models/stable_diffusion_v1_5/perf.yaml); two "
    "passes per step with classifier-free guidance: 158 ms",
    "ue_decode_s": "Stable Diffusion v1.5 VAE decoder, 203.2 ms on the same phone, same source",
    "ue_power_w": "assumption: a phone SoC under sustained NPU load draws a few watts (below 10 W); 5 W is not "
    "measured, change it to your device's figure",
    "es_step_s": "Stable Diffusion v1.5 on an NVIDIA A100 with classifier-free guidance, diffusers: about 32 ms per "
    "step (fal-ai/stable-diffusion-benchmarks README)",
    "profile_latent_elements": "Stable Diffusion v1.5 at 512x512: a 4x64x64 latent (16,384 values); airtime scales "
    "with it, not with the embedded model's 4x8x8",
    "symbol_rate_hz": "1 MHz bandwidth, as in Xu et al., LowLatencyMEG (IEEE TCCN 2025, arXiv 2407.07245), code",
    "mean_snr_db": "LowLatencyMEG's link: 30 dBm ES power, -94 dBm noise, path loss 35.3 + 37.6 log10(d), UEs at "
    "200-300 m: -1.5 dB at 250 m; 0 dB here",
    "deadline_s": "LowLatencyMEG's tasks take about 3 s end to end; deadlines drawn from 1-3 s",
    "es_peak_power_w": "46 dBm (40 W), a macro base station's total transmit power on a 10 MHz carrier in 3GPP TR "
    "36.814's evaluation assumptions (Table A.2.1.1-2)",
}


@dataclass(frozen=True)
class SplitControlConfig(ChannelConfig):
    """Settings of MEG-SplitControl-v0 (and its vector env). Channel fields (the small-scale fading of the blocks
    of each request) are inherited from ChannelConfig; ``noise_power`` is folded into ``mean_snr_db``.

    Attributes:
        cache_dir: Latent cache folder; None is the shipped embedded cache.
        split: Prompt split requests draw from: "train" or "test" (held-out prompts, for evaluation); for tuning,
            "fit" or "validation" (the train table's prompts in the cache's fit / validation parts of train).
        fidelity: "table" (outcomes read from the shipped quality table, fast) or "live" (the UE's decode,
            denoising steps and image decode run on every request).
        device: Where ``"live"`` runs the UNet and the VAE ("cpu", "cuda", ...).
        table_dir: Folder of a quality table built with scripts/build_quality_table.py; None is the shipped one.
        num_requests: Requests per session (episode), one agent step each.
        num_blocks: Fading blocks per request; the payload's symbols are interleaved over them.
        split_steps: The ES step counts the agent chooses from; None: every split step of the cache.
        schemes: The schemes the agent chooses from, from "seed-1/16", "seed-1/8", "seed-1/4", "seed-1/2",
            "raw-latent".
        energy_levels: Transmit energy choices, as multiples of the fair share (ES energy left / requests left).
        action_space: "multi-discrete" (default) or "box" (Box(0, 1, (3,)), each entry mapped to an index).
        mean_snr_db: Receive SNR (dB) of a symbol sent at ``es_reference_power_w`` on the session's mean channel.
        snr_drift_sd_db: Standard deviation (dB) of the per-request mean SNR around ``mean_snr_db``.
        snr_drift_rho: Request-to-request correlation of that mean SNR (a Gauss-Markov process in dB), in [0, 1].
        es_reference_power_w: The power the fair share of energy buys for the raw latent.
        es_peak_power_w: Most transmit power the ES can apply; energy above peak x airtime is not spent.
        es_budget_fraction: ES transmit energy budget per session, as a fraction of the energy of sending every
            request's raw latent at the reference power. Never exceeded (requests are clipped).
        symbol_rate_hz: Channel symbols per second (airtime = symbols / rate).
        deadline_s: (low, high): each request's deadline is drawn uniformly from it.
        ue_energy_limit_j: The UE's battery allowance per session (J): the limit on the episodic UE-energy cost.
        deadline_miss_limit: Late requests allowed per session: the limit on the episodic deadline cost.
        effective_snr_beta: EESM parameter of the effective SNR of a request's blocks (table fidelity); None: the
            MMSE-equivalent SNR (see meg_gym.envs.split_control.quality_table.effective_snr_db).
        reward: Per-request reward: "psnr" (dB, default), "ssim", "ms-ssim" or "latent-mse" (negated).
        profile_latent_elements: Latent size of the deployed model the airtime is computed for.
        es_step_s: ES time per denoising step (s).
        ue_step_s: UE time per denoising step (s).
        ue_decode_s: UE time of the VAE decode (s).
        ue_power_w: UE power while it computes (W); UE energy = power x (steps x ue_step_s + ue_decode_s).
    """

    cache_dir: str | None = None
    split: str = "train"
    fidelity: str = "table"
    device: str = "cpu"
    table_dir: str | None = None
    num_requests: int = 32
    num_blocks: int = 1
    split_steps: tuple[int, ...] | None = None
    schemes: tuple[str, ...] = SPLIT_SCHEMES
    energy_levels: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    action_space: str = "multi-discrete"
    mean_snr_db: float = 0.0
    snr_drift_sd_db: float = 6.0
    snr_drift_rho: float = 0.95
    es_reference_power_w: float = 1.0
    es_peak_power_w: float = 40.0
    es_budget_fraction: float = 1.0
    symbol_rate_hz: float = 1e6
    deadline_s: tuple[float, float] = (1.0, 3.0)
    ue_energy_limit_j: float = 80.0
    deadline_miss_limit: float = 1.0
    effective_snr_beta: float | None = None
    reward: str = "psnr"
    profile_latent_elements: int = 16384
    es_step_s: float = 0.032
    ue_step_s: float = 0.158
    ue_decode_s: float = 0.203
    ue_power_w: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _one_of(self, "split", ("train", "test", "fit", "validation"))
        _one_of(self, "fidelity", ("table", "live"))
        _one_of(self, "action_space", ("multi-discrete", "box"))
        _one_of(self, "reward", REWARD_METRICS)
        for name in ("cache_dir", "table_dir"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, str | bytes) and not hasattr(value, "__fspath__"):
                    raise TypeError(f"SplitControlConfig.{name} must be a path or None, got {value!r}")
                object.__setattr__(self, name, str(value))
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(
                f"SplitControlConfig.device must be a device name such as 'cpu' or 'cuda', got {self.device!r}"
            )
        for name in ("num_requests", "num_blocks", "profile_latent_elements"):
            _integer(self, name, minimum=1)
        for name in ("snr_drift_sd_db", "ue_energy_limit_j", "deadline_miss_limit", "es_budget_fraction"):
            _number(self, name, lower=0.0)
        for name in ("es_reference_power_w", "es_peak_power_w", "symbol_rate_hz", "es_step_s", "ue_step_s",
                     "ue_decode_s", "ue_power_w"):  # fmt: skip
            _number(self, name, lower=0.0, inclusive=False)
        _number(self, "mean_snr_db", lower=None)
        _number(self, "snr_drift_rho", lower=0.0)
        if self.snr_drift_rho > 1.0:
            raise ValueError(f"SplitControlConfig.snr_drift_rho must be in [0, 1], got {self.snr_drift_rho!r}")
        if self.effective_snr_beta is not None:
            _number(self, "effective_snr_beta", lower=0.0, inclusive=False)
        object.__setattr__(self, "schemes", _tuple_of(self, "schemes", str, SPLIT_SCHEMES))
        object.__setattr__(self, "energy_levels", _tuple_of(self, "energy_levels", Real))
        if any(not math.isfinite(v) or v <= 0 for v in self.energy_levels):
            raise ValueError(f"SplitControlConfig.energy_levels must be finite numbers > 0, got {self.energy_levels!r}")
        object.__setattr__(self, "energy_levels", tuple(float(v) for v in self.energy_levels))
        if self.split_steps is not None:
            steps = _tuple_of(self, "split_steps", Integral)
            if any(isinstance(s, bool) or s < 0 for s in steps):
                raise ValueError(f"SplitControlConfig.split_steps must be step counts >= 0, got {self.split_steps!r}")
            object.__setattr__(self, "split_steps", tuple(sorted(int(s) for s in steps)))
        deadline = self.deadline_s
        try:
            low, high = (float(v) for v in deadline)
        except (TypeError, ValueError):
            low = high = float("nan")
        if not (0.0 < low <= high < math.inf) or any(isinstance(v, bool) for v in deadline):
            raise ValueError(
                f"SplitControlConfig.deadline_s must be (low, high) seconds with 0 < low <= high, got {deadline!r}"
            )
        object.__setattr__(self, "deadline_s", (low, high))

    @property
    def cost_limits(self) -> dict[str, float]:
        """The limit on each cost's episodic sum: {"ue_energy": J per session, "deadline_miss": late requests}."""
        return {"ue_energy": self.ue_energy_limit_j, "deadline_miss": self.deadline_miss_limit}

    @classmethod
    def card_section(cls) -> str:
        """The cost profile's defaults and their sources, as a Markdown section of the env card."""
        default = cls()
        lines = [
            "## Cost profile",
            "",
            "Quality comes from the embedded LDM; time and energy from the profile of a deployed model below. "
            "The UE's power is an assumption, not a measurement: set `ue_power_w` for your device.",
            "",
            "| setting | default | source |",
            "|---|---|---|",
        ]
        for name, source in COST_PROFILE_SOURCES.items():
            lines.append(f"| `{name}` | {getattr(default, name)} | {source} |")
        return "\n".join(lines)


def _tuple_of(config: Any, name: str, kind: type, allowed: tuple | None = None) -> tuple:
    value = getattr(config, name)
    items = tuple(value) if isinstance(value, list | tuple) else None
    ok = bool(items) and all(isinstance(v, kind) for v in items) and len(set(items)) == len(items)
    if ok and allowed is not None:
        ok = all(v in allowed for v in items)
    if not ok:
        what = f"values from {list(allowed)}" if allowed is not None else f"{kind.__name__} values"
        raise ValueError(f"{type(config).__name__}.{name} must be a non-empty list of distinct {what}, got {value!r}")
    return items


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
