"""MEG-SplitControl-v0: per request of a session, where to split the denoising, how hard to compress, how much
energy to spend, under a UE battery and a deadline (a constrained MDP).

The file holds the single environment (:class:`SplitControlEnv`), its natively batched vector environment
(:class:`SplitControlVectorEnv`) and the session dynamics both run (:class:`Sessions`), so the vector env
reproduces single-env trajectories under the same seeds.
"""

from __future__ import annotations

import math
import re
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from meg_gym import channel
from meg_gym.config import SplitControlConfig, config_from_kwargs
from meg_gym.energy import EnergyBudget
from meg_gym.envs.split_control.live import SCHEME_RATIOS
from meg_gym.envs.split_control.quality_table import effective_snr_db, file_split, shared_table
from meg_gym.link import (
    REWARDS,
    SNR_DB_RANGE,
    check_num_envs,
    check_render_mode,
    merge_infos,
    parse_autoreset_mode,
    reset_generators,
    scalar_info,
    with_masks,
)

__all__ = [
    "COST_NAMES",
    "OBS_NAMES",
    "Sessions",
    "SplitControlEnv",
    "SplitControlVectorEnv",
    "action_indices",
    "make_spaces",
    "prompt_objects",
]

# observation layout (all float32); policies index observations with these
OBS_NAMES = (
    "snr_db",
    "snr_trend_db",
    "battery_left",
    "es_energy_left",
    "requests_left",
    "deadline_s",
    "misses_left",
    "prompt_objects",
)
SNR_DB, SNR_TREND_DB, BATTERY_LEFT, ES_ENERGY_LEFT, REQUESTS_LEFT, DEADLINE_S, MISSES_LEFT, PROMPT_OBJECTS = range(
    len(OBS_NAMES)
)
COST_NAMES = ("ue_energy", "deadline_miss")
MAX_OBJECTS = 3  # MEG-Shapes prompts name one to three objects
STEP_METRICS = ("psnr", "ssim", "latent_mse")  # reported in every step's info (and the reward's metric)


def prompt_objects(prompt: str) -> int:
    """Objects a MEG-Shapes prompt asks for ("a large red circle ..., a small ..."); 0 for other prompts."""
    return len(re.findall(r"\ba (?:large|small)\b", prompt))


def unit_complex_noise(seed: int, n: int) -> np.ndarray:
    """``n`` samples of CN(0, 1) channel noise seeded by ``seed`` (one request's live noise)."""
    drawn = np.random.default_rng(seed).standard_normal((2, n))
    return (drawn[0] + 1j * drawn[1]) * math.sqrt(0.5)


def split_objects(table: Any, prompts: list[str]) -> np.ndarray:
    """The object count (capped at MAX_OBJECTS) of each prompt of a quality table; ``prompts`` are the cache's."""
    return np.array([min(prompt_objects(prompts[r]), MAX_OBJECTS) for r in table.rows], dtype=np.float64)


def make_spaces(config: SplitControlConfig, num_split_steps: int) -> tuple[spaces.Box, spaces.Space]:
    low = np.array([SNR_DB_RANGE[0], -2 * SNR_DB_RANGE[1], -1.0, 0.0, 0.0, 0.0, -1.0, 0.0], dtype=np.float32)
    high = np.array(
        [SNR_DB_RANGE[1], 2 * SNR_DB_RANGE[1], 1.0, 1.0, 1.0, config.deadline_s[1], 1.0, 1.0], dtype=np.float32
    )
    observation_space = spaces.Box(low, high, dtype=np.float32)
    sizes = (num_split_steps, len(config.schemes), len(config.energy_levels))
    if config.action_space == "box":
        action_space: spaces.Space = spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32)
    else:
        action_space = spaces.MultiDiscrete(np.array(sizes, dtype=np.int64))
    return observation_space, action_space


def action_indices(actions: Any, sizes: tuple[int, int, int], box: bool, shape: tuple[int, ...]) -> np.ndarray:
    """(split, scheme, energy level) indices, shape ``shape + (3,)``, from MultiDiscrete or Box actions.

    A Box entry ``x`` in [0, 1] maps to index ``min(floor(x * n), n - 1)`` of its ``n`` choices (finite values
    outside [0, 1] are clipped first). Bad shapes, NaN, inf, non-integers and out-of-range indices raise ValueError.
    """
    try:
        a = np.asarray(actions, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"the action must be 3 numbers (split, scheme, energy level), got {actions!r}") from err
    if a.shape != (*shape, 3):
        raise ValueError(f"the action must have shape {(*shape, 3)} (split, scheme, energy level), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"the action must be finite, got {a.tolist()}; check the policy for NaN or inf outputs")
    n = np.array(sizes)
    if box:
        return np.minimum(np.floor(np.clip(a, 0.0, 1.0) * n), n - 1).astype(np.int64)
    if np.any(a != np.round(a)) or np.any(a < 0) or np.any(a >= n):
        raise ValueError(
            f"a MultiDiscrete action holds integer indices below {list(sizes)} (split step, scheme, energy level), "
            f"got {a.tolist()}"
        )
    return a.astype(np.int64)


class Sessions:
    """The sessions of ``num_envs`` environments: state, dynamics, costs and outcomes, batched in numpy.

    Each environment draws everything from its own Generator, in the same order, whatever the batch, so a vector
    env and single envs seeded alike follow the same trajectories.
    """

    def __init__(self, config: SplitControlConfig, num_envs: int):
        self.config = config
        self.channel = config.channel  # built once: the per-request gain draws use it
        self.num_envs = num_envs
        self.table = shared_table(config.split, config.table_dir, config.cache_dir)
        self._check_table()
        from meg_gym.cache import LatentCache

        cache = LatentCache.load(config.cache_dir)
        self.total_steps = cache.num_inference_steps
        allowed = self.table.split_steps if config.split_steps is None else config.split_steps
        missing = sorted(set(allowed) - set(self.table.split_steps))
        if missing:
            raise ValueError(
                f"split_steps {missing} are not in the quality table (it holds {list(self.table.split_steps)}); "
                "choose from those, or build a cache and table with those split steps"
            )
        self.split_steps = np.array(allowed, dtype=np.int64)
        self.split_columns = np.array([self.table.split_steps.index(s) for s in allowed])
        self.scheme_columns = np.array([self.table.schemes.index(s) for s in config.schemes])
        self.levels = np.array(config.energy_levels)
        self.sizes = (len(self.split_steps), len(config.schemes), len(self.levels))
        self.prompts = [cache.prompts[r] for r in self.table.rows]
        self.objects = split_objects(self.table, cache.prompts)
        half = config.profile_latent_elements // 2
        ratios = np.array([float(SCHEME_RATIOS[s]) for s in config.schemes])
        self.airtime_s = ratios * half / config.symbol_rate_hz  # per scheme index
        raw_airtime = half / config.symbol_rate_hz
        budget = config.num_requests * config.es_budget_fraction * config.es_reference_power_w * raw_airtime
        # energies are spent as one "block" of one unit of time, so the budget's guarantee covers them exactly
        self.budget = EnergyBudget(budget, 1, 1.0, num_envs)
        self.live = None
        self._acquire_live()
        self.metrics = tuple(dict.fromkeys((*STEP_METRICS, REWARDS[config.reward].metric)))
        n = num_envs
        self.request = np.zeros(n, dtype=np.int64)
        self.prompt = np.zeros(n, dtype=np.int64)
        self.snr_db = np.zeros(n)  # the request's mean SNR (dB) at the reference power, before small-scale fading
        self.gains = np.ones((n, config.num_blocks), dtype=np.complex128)  # its fading blocks' gains
        self.reported_snr_db = np.zeros(n)  # what the agent observes of the request's channel
        self.previous_reported_snr_db = np.zeros(n)
        self.deadline = np.zeros(n)
        self.ue_used = np.zeros(n)
        self.misses = np.zeros(n)
        self.quality_sum = np.zeros(n)
        self.last_noise: dict[int, Any] = {}  # env -> the noise of its last request (live), for render()
        self._expected_table = self._planning_table = None

    def _acquire_live(self) -> None:
        if self.config.fidelity == "live":
            from meg_gym.envs.split_control.live import shared_live_ue

            cfg = self.config
            # the receiver the table was measured with, so that both fidelities serve the same physics
            self.live = shared_live_ue(cfg.cache_dir, file_split(cfg.split), cfg.device, self.table.raw_latent_receiver)
            self.live_index = np.searchsorted(self.live.rows, self.table.rows)
            self.live_symbols = max(self.live.num_symbols(s) for s in cfg.schemes)

    def __getstate__(self) -> dict[str, Any]:
        return {
            k: v for k, v in self.__dict__.items() if k not in ("live", "table", "_expected_table", "_planning_table")
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.table = shared_table(self.config.split, self.config.table_dir, self.config.cache_dir)
        self._expected_table = self._planning_table = None
        self.live = None
        self._acquire_live()

    def _check_table(self) -> None:
        from meg_gym.cache import cache_fingerprint

        expected = cache_fingerprint(self.config.cache_dir)
        got = self.table.meta.get("cache_sha256")
        if got != expected:
            raise ValueError(
                f"the quality table for split {self.config.split!r} was measured on latent cache {str(got)[:12]}, "
                f"but this environment uses cache {expected[:12]}; build a table for it with "
                f"`python scripts/build_quality_table.py --split {file_split(self.config.split)} --cache-dir <cache> "
                "--output-dir <folder>` and pass table_dir=<folder>"
            )
        missing = [s for s in self.config.schemes if s not in self.table.schemes]
        if missing:
            raise ValueError(f"the quality table has no {missing}; it holds {list(self.table.schemes)}")

    @property
    def expected_table(self):
        """This split's table pooled over the prompts of each object count and over the noise draws: the expected
        quality of every (split step, scheme, SNR) given what the observation reveals of the prompt, as table
        fidelity serves it. The planner's bound is computed on it."""
        if self._expected_table is None:
            self._expected_table = self.table.pooled(self.objects)
        return self._expected_table

    @property
    def planning_table(self):
        """What the references plan on: the same expectation (per object count, pooled over prompts and draws),
        estimated on the table of the prompts a learner would have trained on: the train table for test sessions,
        the fit table for validation sessions (tuning).

        A test session's outcomes are read from the test table, whose noise this estimate does not share. Planning
        on the test table's own class means would pick, among many actions, those whose means its noise happens
        to raise, a gain live runs do not repeat (the optimizer's curse: measured +0.2 to +0.3 dB of table over
        live for the adaptive references, 2026-12-02). On train and fit sessions it is :attr:`expected_table`.
        """
        if self._planning_table is None:
            source = {"test": "train", "validation": "fit"}.get(self.config.split)
            if source is None:
                self._planning_table = self.expected_table
            else:
                from meg_gym.cache import LatentCache

                cfg = self.config
                known = shared_table(source, cfg.table_dir, cfg.cache_dir)
                prompts = LatentCache.load(cfg.cache_dir).prompts
                self._planning_table = self.table.valued_by(known, self.objects, split_objects(known, prompts))
        return self._planning_table

    # ---------------------------------------------------------------- state
    def _next_request(self, rng, snr_db: float | None) -> tuple[float, int, float, np.ndarray, float]:
        """(mean SNR dB, prompt, deadline, block gains (K,), reported SNR dB) of a request, after one with mean SNR
        ``snr_db`` (None: the first).

        With one block per request the UE's report is the request's own SNR, ``snr_db + 10 log10 |h_hat|^2`` with
        ``h_hat`` the gain as estimated (``csi_error_var``); with more blocks the channel changes while the request
        is sent, so the report is the mean SNR alone.
        """
        cfg = self.config
        if snr_db is None:
            drift = rng.normal(0.0, cfg.snr_drift_sd_db)
        else:
            innovation = math.sqrt(max(0.0, 1.0 - cfg.snr_drift_rho**2)) * cfg.snr_drift_sd_db
            drift = cfg.snr_drift_rho * (snr_db - cfg.mean_snr_db) + rng.normal(0.0, innovation)
        mean_db = cfg.mean_snr_db + drift
        prompt, deadline = int(rng.integers(self.table.num_prompts)), float(rng.uniform(*cfg.deadline_s))
        gains = channel.sample_block_gains(self.channel, 1, cfg.num_blocks, rng)[0]
        reported = mean_db
        if cfg.num_blocks == 1:
            estimate = channel.observe_gains(self.channel, gains, rng)
            reported = mean_db + 10.0 * math.log10(max(float(np.abs(estimate[0]) ** 2), 1e-30))
        return mean_db, prompt, deadline, gains, reported

    def _outcome_noise(self, rng) -> Any:
        """The table's noise draw, or the live channel noise, of a request being served.

        Both fidelities take the same thing from the session's Generator (one 63-bit key that seeds the request's
        noise), so a seed gives the same channels, prompts and deadlines in either fidelity.
        """
        key = int(rng.integers(2**63))
        if self.live is None:
            return key % self.table.num_draws
        return unit_complex_noise(key, self.live_symbols)

    def _new_request(self, envs: np.ndarray, rngs, first: bool) -> None:
        for i in envs:
            self.previous_reported_snr_db[i] = self.reported_snr_db[i]
            self.snr_db[i], self.prompt[i], self.deadline[i], self.gains[i], self.reported_snr_db[i] = (
                self._next_request(rngs[i], None if first else self.snr_db[i])
            )
            if first:
                self.previous_reported_snr_db[i] = self.reported_snr_db[i]

    def preview(self, i: int, rng) -> dict[str, np.ndarray]:
        """Everything chance holds for the rest of env ``i``'s session, read from a copy of its Generator.

        Non-causal: it reveals future channels, prompts, deadlines and noise draws (none depends on the actions).
        It exists for the planner of :mod:`meg_gym.envs.split_control.planning`; a policy that uses it is not a
        valid entry for the causal leaderboard.
        """
        import copy

        rng = copy.deepcopy(rng)
        left = self.config.num_requests - int(self.request[i])
        snr, prompt, deadline, gains = (
            float(self.snr_db[i]),
            int(self.prompt[i]),
            float(self.deadline[i]),
            self.gains[i],
        )
        out: dict[str, list] = {"snr_db": [], "prompt": [], "deadline_s": [], "gains": [], "draw": []}
        for j in range(left):
            draw = self._outcome_noise(rng)
            for key, value in zip(out, (snr, prompt, deadline, gains.copy(), draw), strict=True):
                out[key].append(value)
            if j < left - 1:
                snr, prompt, deadline, gains, _ = self._next_request(rng, snr)
        return {k: np.array(v) for k, v in out.items()}

    def reset(self, envs: np.ndarray, rngs) -> None:
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[envs] = True
        self.budget.reset(mask)
        self.request[envs] = 0
        self.ue_used[envs] = 0.0
        self.misses[envs] = 0.0
        self.quality_sum[envs] = 0.0
        self._new_request(envs, rngs, first=True)

    def observations(self) -> np.ndarray:
        cfg = self.config
        limits = cfg.cost_limits
        battery = (
            1.0 - np.divide(self.ue_used, limits["ue_energy"]) if limits["ue_energy"] > 0 else -np.sign(self.ue_used)
        )
        misses = 1.0 - self.misses / limits["deadline_miss"] if limits["deadline_miss"] > 0 else -np.sign(self.misses)
        left = np.divide(
            self.budget.remaining, self.budget.budget, out=np.zeros(self.num_envs), where=self.budget.budget > 0
        )
        obs = np.stack(
            [
                np.clip(self.reported_snr_db, *SNR_DB_RANGE),
                np.clip(
                    self.reported_snr_db - self.previous_reported_snr_db, -2 * SNR_DB_RANGE[1], 2 * SNR_DB_RANGE[1]
                ),
                np.clip(battery, -1.0, 1.0),
                left,
                (cfg.num_requests - self.request) / cfg.num_requests,
                self.deadline,
                np.clip(misses, -1.0, 1.0),
                self.objects[self.prompt] / MAX_OBJECTS,
            ],
            axis=1,
        )
        return obs.astype(np.float32)

    # ---------------------------------------------------------------- dynamics
    def step(self, choice: np.ndarray, envs: np.ndarray, rngs) -> dict[str, np.ndarray]:
        """Serve the current request of ``envs`` with ``choice`` (rows (split, scheme, level) indices); per-env info."""
        cfg = self.config
        split_i, scheme_i, level_i = choice[envs, 0], choice[envs, 1], choice[envs, 2]
        split_step = self.split_steps[split_i]
        ue_steps = self.total_steps - split_step
        airtime = self.airtime_s[scheme_i]
        requests_left = cfg.num_requests - self.request[envs]
        fair = self.budget.remaining[envs] / requests_left
        requested = self.levels[level_i] * fair
        wanted = np.zeros(self.num_envs)
        wanted[envs] = np.minimum(requested, cfg.es_peak_power_w * airtime)
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[envs] = True
        applied = self.budget.spend(wanted, mask=mask)[envs]
        power = applied / airtime
        drawn = [self._outcome_noise(rngs[i]) for i in envs]
        self.last_noise = dict(zip(envs.tolist(), drawn, strict=True))  # what render() replays
        gains = self.gains[envs]
        block_snr = power[:, None] / cfg.es_reference_power_w * channel.db_to_linear(self.snr_db[envs])[:, None]
        block_snr = block_snr * np.abs(gains) ** 2
        eff_db = effective_snr_db(block_snr, cfg.effective_snr_beta)
        prompts = self.prompt[envs]
        if self.live is None:
            draws = np.array(drawn)
            cols = (prompts, self.split_columns[split_i], self.scheme_columns[scheme_i])
            metrics = {m: self.table.lookup(m, *cols, eff_db, draws) for m in self.metrics}
        else:
            noise = drawn
            schemes = [cfg.schemes[j] for j in scheme_i]
            metrics = self.live.run(
                self.live_index[prompts], split_step, schemes, block_snr, None, self.metrics, noise=noise
            )
        quality = REWARDS[cfg.reward](metrics)
        ue_energy = cfg.ue_power_w * (ue_steps * cfg.ue_step_s + cfg.ue_decode_s)
        latency = split_step * cfg.es_step_s + airtime + ue_steps * cfg.ue_step_s + cfg.ue_decode_s
        miss = (latency > self.deadline[envs]).astype(np.float64)
        self.ue_used[envs] += ue_energy
        self.misses[envs] += miss
        self.quality_sum[envs] += quality
        limits = cfg.cost_limits
        costs = {"ue_energy": ue_energy, "deadline_miss": miss}
        cost = sum(np.divide(costs[c], limits[c]) if limits[c] > 0 else costs[c] * np.inf for c in COST_NAMES)
        info = {
            "quality": quality,
            **metrics,
            "split_step": split_step,
            "ue_steps": ue_steps,
            "scheme": np.array([cfg.schemes[j] for j in scheme_i], dtype=object),
            "energy_level": self.levels[level_i],
            "energy_requested_j": requested,
            "energy_applied_j": applied,
            "snr_db": self.snr_db[envs].copy(),
            "reported_snr_db": self.reported_snr_db[envs].copy(),
            "effective_snr_db": eff_db,
            "block_snr_db": channel.linear_to_db(block_snr),
            "latency_s": latency,
            "deadline_s": self.deadline[envs].copy(),
            "ue_energy_j": ue_energy,
            "cost": np.nan_to_num(cost, posinf=np.finfo(np.float64).max),
            "costs": costs,
            "cost_vector": np.stack([costs[c] for c in COST_NAMES], axis=1),
            "prompt": np.array([self.prompts[p] for p in prompts], dtype=object),
        }
        self.request[envs] += 1
        going = envs[self.request[envs] < cfg.num_requests]
        self._new_request(going, rngs, first=False)
        return info

    def session_summary(self, envs: np.ndarray) -> dict[str, np.ndarray]:
        cfg = self.config
        return {
            "session_mean_quality": self.quality_sum[envs] / cfg.num_requests,
            "session_ue_energy_j": self.ue_used[envs].copy(),
            "session_deadline_misses": self.misses[envs].copy(),
            "session_es_energy_j": self.budget.spent[envs].copy(),
            "session_es_budget_j": self.budget.budget[envs].copy(),
        }

    def ended(self, envs: np.ndarray) -> np.ndarray:
        return envs[self.request[envs] >= self.config.num_requests]


def _flatten_costs(info: dict[str, Any]) -> dict[str, Any]:
    """Move ``costs`` out of a batched info so the flat helpers apply; :func:`_nest_costs` puts it back."""
    info = dict(info)
    for name, value in info.pop("costs").items():
        info[f"costs.{name}"] = value
    return info


def _nest_costs(info: dict[str, Any], single: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    costs: dict[str, Any] = {}
    for key, value in info.items():
        if key.startswith("costs.") or key.startswith("_costs."):
            name = key.split(".", 1)[1]
            costs[("_" if key.startswith("_") else "") + name] = value
        else:
            out[key] = value
    if costs:
        out["costs"] = costs
        if not single:
            out["_costs"] = next(v for k, v in costs.items() if k.startswith("_")).copy()
    return out


class SplitControlEnv(gym.Env):
    """
    ## Description

    A session of `num_requests` (default 32) text-to-image requests from one phone (UE) to an edge server (ES)
    that runs a latent diffusion model of T denoising steps (mobile-edge generation; Zhong et al., IEEE IoT J.
    2025; Xu et al., "LowLatencyMEG", IEEE TCCN 2025, cast the step split as a constrained MDP). For each request
    the agent chooses:

    - the **split step** s: the ES runs the first s steps and sends its latent; the UE runs the other T - s;
    - the **scheme**: the learned seed codec at 1/16, 1/8, 1/4 or 1/2 of the latent's symbols, or the raw latent
      (decoded by the linear MMSE estimator that knows the latent prior at the split step, as
      MEG-PowerControl-v0's `raw-latent`);
    - the **transmit energy**, as a multiple of the fair share (ES energy left / requests left).

    **One channel per request.** A request's airtime is at most the raw latent's: SD v1.5's 4x64x64 latent is
    16,384 real values, 8,192 complex symbols, 8.2 ms at `symbol_rate_hz` = 1 MHz (a seed at 1/16: 0.5 ms). A
    walking user (3 km/h) at 3.5 GHz has a maximum Doppler shift f_D = v f_c / c = 9.7 Hz, and a coherence time of
    about 0.179 / f_D = 18 ms (correlation 0.5, Clarke's model) to 0.423 / f_D = 44 ms (the geometric-mean rule;
    Rappaport, *Wireless Communications*, 2nd ed., Sec. 5.4.3). So by default (`num_blocks=1`) a request meets one
    Rayleigh-faded channel (every fading model of MEG-PowerControl-v0 is selectable) around its mean SNR, which
    drifts over the session (a Gauss-Markov process in dB, one value per request). At scheduling time the ES knows
    the channel the UE reported: the agent observes the request's own SNR, the mean SNR times the estimated gain
    |h_hat|^2 (exact by default; `csi_error_var` adds the estimation error e ~ CN(0, csi_error_var) of
    MEG-PowerControl-v0 to h). `num_blocks > 1` models a fast-moving phone: the payload's symbols are interleaved
    over that many independent blocks, the agent observes only the mean SNR, and table fidelity maps the blocks to
    one effective SNR, an approximation: measured with 4 blocks against live runs on 2026-11-29 (the previous
    table, zero-mean raw latent), it under-predicted the seeds by 0.11 to 0.39 dB pooled per scheme and
    over-predicted the raw latent by 0.21 dB.

    The UE equalises (MMSE), decodes the payload, runs its T - s denoising steps and decodes the image; the reward
    is that image's quality against the image of the clean latent. Time and
    energy come from a cost profile of a deployed Stable Diffusion v1.5 class model (edge GPU, phone NPU; the
    sources are on the card). The ES's transmit energy comes from a session budget that is never exceeded
    (requests are clipped); the UE's energy and each request's deadline are **costs** with limits, a
    constrained MDP.

    With `fidelity="table"` (default) the outcome of a request is read from the shipped quality table: measured
    live per prompt, split step and scheme on an AWGN SNR grid from -40 to +60 dB, 5 dB apart up to +40 (below
    -30 dB every scheme's quality changes by at most 0.1 dB per dB; above +30 dB the seeds' has saturated and the raw
    latent's PSNR grows linearly in dB), with several noise draws per cell; a request reads one draw of its prompt, interpolated linearly in SNR (dB). With one
    block per request the request's SNR is the table's own axis: no abstraction stands between them. With
    `fidelity="live"` the UE's decode, denoising and image decode run on every request (`device` sets where). One
    seed gives the same sessions (channels, prompts, deadlines) under both fidelities. How far the table is from live
    runs, per (split step, scheme, SNR) and per policy on the same sessions, is measured in
    `docs/results/split_table_validation.md` (the table fidelity check).

    ## Action Space

    `MultiDiscrete([S, M, L])`: the index of the split step (in `split_steps`, default every split step of the
    cache: 5, 10, 15, 20 of T = 20), of the scheme (in `schemes`) and of the energy level (in `energy_levels`,
    default 0.25, 0.5, 1, 2, 4 times the fair share). With `action_space="box"`, `Box(0, 1, (3,), float32)`:
    each entry x maps to index `min(floor(x * n), n - 1)` of its n choices, so DDPG, TD3 and SAC run unchanged.
    Bad shapes, NaN, inf and out-of-range indices raise `ValueError`.

    ## Observation Space

    `Box(8,)` of float32:

    | index | observation | range |
    |---|---|---|
    | 0 | the request's receive SNR at the reference power as the UE reported it, dB (with `num_blocks` > 1: its mean SNR) | [-60, 60] |
    | 1 | its change since the previous request, dB (0 at the first) | [-120, 120] |
    | 2 | battery left: 1 - UE energy used / `ue_energy_limit_j` | [-1, 1] |
    | 3 | ES energy left, as a fraction of the session budget | [0, 1] |
    | 4 | requests left including this one, as a fraction of `num_requests` | [0, 1] |
    | 5 | this request's deadline, s | [0, `deadline_s[1]`] |
    | 6 | deadline misses left: 1 - misses / `deadline_miss_limit` | [-1, 1] |
    | 7 | the prompt's object count / 3 | [0, 1] |

    ## Rewards

    Per request, the image quality selected by `reward`: PSNR in dB (default), `"ssim"`, `"ms-ssim"`, or
    `"latent-mse"` (negated). `info["quality"]` repeats it.

    ## Costs

    Every step's info holds `info["costs"]`, a dict with `"ue_energy"` (the UE's energy for this request, J:
    `ue_power_w * ((T - s) * ue_step_s + ue_decode_s)`) and `"deadline_miss"` (1 if the latency
    `s * es_step_s + airtime + (T - s) * ue_step_s + ue_decode_s` exceeds the request's deadline), and
    `info["cost"]`, their sum with each divided by its episode limit (`ue_energy_limit_j`,
    `deadline_miss_limit`; `config.cost_limits`). A session meets its limits when each cost's sum stays within
    its limit. Keeping the episodic sum of `info["cost"]` at most 1 is sufficient for both limits but stricter than
    needed (it also forbids using one limit's slack for the other): a learner that handles several constraints
    should read `info["cost_vector"]`, the costs as a float array in the order of `config.cost_limits`
    (`"ue_energy"`, `"deadline_miss"`), and keep each episodic sum within its own limit.
    `meg_gym.wrappers.SafetyGymnasiumStep` gives Safety-Gymnasium's 6-tuple (its cost is `info["cost"]`).

    ## Starting State

    A full ES budget and battery; the first request's mean SNR drawn from N(`mean_snr_db`, `snr_drift_sd_db`^2),
    a prompt drawn uniformly from the quality table's prompts of the split, a deadline uniform in `deadline_s`.

    ## Episode End

    The episode terminates after `num_requests` requests; there is no truncation. The last step's info adds
    `session_mean_quality`, `session_ue_energy_j`, `session_deadline_misses`, `session_es_energy_j` and
    `session_es_budget_j`. Stepping after the end without `reset()` raises `RuntimeError`.

    ## Arguments

    Every field of `meg_gym.config.SplitControlConfig` is a keyword of `gym.make`; unknown names raise
    `TypeError` listing the valid ones:

    ```python
    import gymnasium as gym
    import meg_gym

    env = gym.make(
        "MEG-SplitControl-v0",
        split="train",                 # or "test" (held-out prompts, for evaluation); "fit"/"validation" to tune
        fidelity="table",              # or "live" (UNet and VAE on every request; device="cuda" to use a GPU)
        num_requests=32,               # requests per session
        ue_energy_limit_j=80.0,        # UE battery allowance per session (J)
        deadline_miss_limit=1.0,       # late requests allowed per session
        action_space="multi-discrete", # or "box"
    )
    ```

    `gym.make_vec("MEG-SplitControl-v0", num_envs=64, vectorization_mode="vector_entry_point")` returns
    :class:`SplitControlVectorEnv`.

    ## Rendering

    `render_mode="rgb_array"` (what Stable-Baselines3's `make_vec_env` passes) draws the session so far: per
    request the reported SNR, the energy level, the quality (coloured by scheme, labelled with the split step),
    the battery, deadline-miss and ES-energy state, and the last request's reference image beside its received
    image. The UE's image is run live for the frame: in live fidelity with the request's own channel noise, in
    table fidelity (the table holds qualities, not images) as a fresh draw at the request's SNR, labelled so.

    ## Version History

    * v0: Initial release.
    * v0, 2026-12-02: one channel per request by default (`num_blocks=1`; was 4), observed as the UE reports it;
      the raw latent decodes with the LMMSE receiver; the quality table's SNR grid spans -40 to +60 dB (was -10 to
      +25, clamped beyond); the references plan on the expected quality given the prompt's object count (not on a
      prompt's own table values); `info["cost_vector"]`; `render_mode="rgb_array"`. Results differ from before.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, **kwargs: Any):
        self.config = config_from_kwargs(SplitControlConfig, kwargs)
        self.render_mode = check_render_mode(render_mode, self.metadata)
        self.sessions = Sessions(self.config, 1)
        self.observation_space, self.action_space = make_spaces(self.config, self.sessions.sizes[0])
        self._started = False
        self._done = False
        self._history: list[dict[str, Any]] = []

    @property
    def cost_limits(self) -> dict[str, float]:
        return self.config.cost_limits

    @property
    def quality_table_sha256(self) -> str | None:
        """The SHA-256 of the quality table's tensor file in table fidelity (None live), recorded in eval.json."""
        return self.sessions.table.meta["sha256"] if self.config.fidelity == "table" else None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.sessions.reset(np.array([0]), [self.np_random])
        self._started, self._done = True, False
        self._history = []
        return self.sessions.observations()[0], {"prompt": self.sessions.prompts[self.sessions.prompt[0]]}

    def step(self, action: Any):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("the session has ended (all requests served); call reset() to start a new one")
        choice = action_indices(action, self.sessions.sizes, self.config.action_space == "box", ())
        everyone = np.array([0])
        served = int(self.sessions.prompt[0])
        info = self.sessions.step(choice[None], everyone, [self.np_random])
        if len(self.sessions.ended(everyone)):
            info.update(self.sessions.session_summary(everyone))
            self._done = True
        costs = {k: float(v[0]) for k, v in info.pop("costs").items()}
        info = scalar_info(info, 0)
        info["costs"] = costs
        if self.render_mode is not None:
            self._history.append({**info, "prompt_index": served,
                                  "noise": self.sessions.last_noise.get(0)})  # fmt: skip
        return self.sessions.observations()[0], float(info["quality"]), self._done, False, info

    def render(self):
        """The session so far as an RGB frame (see the card's Render section); None unless ``render_mode="rgb_array"``."""
        if self.render_mode != "rgb_array":
            return None
        if not self._started:
            raise RuntimeError("call reset() before render()")
        from meg_gym.envs.rendering import draw_session

        cfg, sessions = self.config, self.sessions
        reference = received = None
        label = "received (after the first request)"
        if self._history:
            reference, received, label = self._last_images()
        limits = cfg.cost_limits
        left = sessions.budget.remaining[0] / sessions.budget.budget[0] if sessions.budget.budget[0] > 0 else 0.0
        prompt = self._history[-1]["prompt"] if self._history else sessions.prompts[sessions.prompt[0]]
        return draw_session(prompt, reference, received, label, self._history, cfg.num_requests, cfg.schemes,
                            (float(sessions.ue_used[0]), limits["ue_energy"]),
                            (float(sessions.misses[0]), limits["deadline_miss"]), float(left))  # fmt: skip

    def _last_images(self):
        """(reference, received, label) of the last request, run live: with its own channel noise in live fidelity,
        with a fresh draw at its SNR in table fidelity (the table holds qualities, not images)."""
        from meg_gym.envs.split_control.live import shared_live_ue

        cfg, last = self.config, self._history[-1]
        ue = shared_live_ue(cfg.cache_dir, file_split(cfg.split), cfg.device, self.sessions.table.raw_latent_receiver)
        row = np.searchsorted(ue.rows, self.sessions.table.rows[last["prompt_index"]])
        noise = last["noise"]
        label = f"received: {last['scheme']}, split {last['split_step']}, {last['quality']:.1f} dB"
        if noise is None or not isinstance(noise, np.ndarray):
            noise = unit_complex_noise(len(self._history), max(ue.num_symbols(s) for s in cfg.schemes))
            label = (f"a live draw at its SNR: {last['scheme']}, split {last['split_step']} "
                     f"(the table's draw: {last['quality']:.1f} dB)")  # fmt: skip
        block_snr = channel.db_to_linear(np.asarray(last["block_snr_db"], dtype=np.float64)).reshape(1, -1)
        out = ue.run(np.array([row]), np.array([last["split_step"]]), [last["scheme"]], block_snr, None, (),
                     noise=[noise], return_images=True)  # fmt: skip
        return out["references"][0], out["images"][0], label

    def preview(self) -> dict[str, np.ndarray]:
        """The rest of this session (non-causal; see :meth:`Sessions.preview`)."""
        return self.sessions.preview(0, self.np_random)


class SplitControlVectorEnv(VectorEnv):
    """MEG-SplitControl-v0 for ``num_envs`` sessions at once, natively batched (see :class:`SplitControlEnv`).

    Sub-environment ``i`` of ``reset(seed=s)`` is seeded with ``s + i``, as in ``SyncVectorEnv``, and follows the
    trajectory of ``SplitControlEnv`` reset with that seed. Every session ends on the same step (they all have
    ``num_requests`` requests). Autoreset follows ``autoreset_mode`` as in MEG-PowerControl-v0's vector env
    (``NEXT_STEP`` default, or ``SAME_STEP`` with ``final_obs`` and ``final_info``). ``info["costs"]`` is a dict of
    per-environment arrays with its masks, as Gymnasium lays out nested infos.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        **kwargs: Any,
    ):
        self.num_envs = check_num_envs(num_envs)
        self.metadata = {**self.metadata, "autoreset_mode": parse_autoreset_mode(autoreset_mode)}
        self.config = config_from_kwargs(SplitControlConfig, kwargs)
        self.render_mode = check_render_mode(render_mode, self.metadata)
        self.sessions = Sessions(self.config, num_envs)
        self.single_observation_space, self.single_action_space = make_spaces(self.config, self.sessions.sizes[0])
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._rngs = [seeding.np_random()[0] for _ in range(num_envs)]
        self._autoreset = np.zeros(num_envs, dtype=bool)
        self._started = False
        self.spec = None

    @property
    def cost_limits(self) -> dict[str, float]:
        return self.config.cost_limits

    @property
    def quality_table_sha256(self) -> str | None:
        """The SHA-256 of the quality table's tensor file in table fidelity (None live), recorded in eval.json."""
        return self.sessions.table.meta["sha256"] if self.config.fidelity == "table" else None

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        self._rngs = reset_generators(self._rngs, seed, self._started)
        everyone = np.arange(self.num_envs)
        self.sessions.reset(everyone, self._rngs)
        self._autoreset[:] = False
        self._started = True
        prompts = np.array([self.sessions.prompts[p] for p in self.sessions.prompt], dtype=object)
        return self.sessions.observations(), with_masks({"prompt": prompts}, None, self.num_envs)

    def step(self, actions: Any):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        n = self.num_envs
        choice = action_indices(actions, self.sessions.sizes, self.config.action_space == "box", (n,))
        restart = np.flatnonzero(self._autoreset)
        active = np.flatnonzero(~self._autoreset)
        rewards = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        infos: dict[str, Any] = {}
        if len(active):
            step_info = _flatten_costs(self.sessions.step(choice, active, self._rngs))
            ended = self.sessions.ended(active)
            rewards[active] = step_info["quality"]
            terminated[ended] = True
            same_step = self.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
            infos = with_masks(step_info, active, n)
            if len(ended):
                infos.update(with_masks(self.sessions.session_summary(ended), ended, n))
            if same_step and len(ended):
                last_obs = self.sessions.observations()
                final_obs = np.full(n, None, dtype=object)
                for i in ended:
                    final_obs[i] = last_obs[i]
                mask = np.isin(np.arange(n), ended)
                infos = {"final_obs": final_obs, "_final_obs": mask, "final_info": _nest_costs(infos, False),
                         "_final_info": mask.copy()}  # fmt: skip
                restart = ended
        if len(restart):
            self.sessions.reset(restart, self._rngs)
            prompts = np.array([self.sessions.prompts[p] for p in self.sessions.prompt[restart]], dtype=object)
            infos = merge_infos(infos, with_masks({"prompt": prompts}, restart, n))
        if self.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP:
            self._autoreset = terminated.copy()
        return self.sessions.observations(), rewards, terminated, np.zeros(n, dtype=bool), _nest_costs(infos, False)

    def preview(self, i: int) -> dict[str, np.ndarray]:
        """The rest of sub-environment ``i``'s session (non-causal; see :meth:`Sessions.preview`)."""
        return self.sessions.preview(i, self._rngs[i])
