"""Fixed policies and references of the MEG environments, one table per environment family.

A policy is a callable ``policy(obs, env) -> powers`` over a vector env's observation batch (see
:mod:`meg_gym.evaluation`). Each table maps a policy's name to a factory ``make(config) -> policy`` that takes
the environment's config; the environment table (:mod:`meg_gym.registry`) points at it, and
``scripts/evaluate.py --policy NAME`` and the baselines/ command lines build them from there. Observation
indices come from the environment modules.

MEG-PowerControl-v0 (:data:`POWER_CONTROL_POLICIES`):

- ``static``: the fair share of the energy left on every block (an equal split of the budget, capped at
  peak power): the paper's static baseline.
- ``channel-inversion``: truncated channel inversion, power ``fair_share / g`` so that every block arrives
  at about the same SNR, except blocks faded more than ``cutoff_db`` below the mean gain, which get nothing
  (A. Goldsmith, *Wireless Communications*, 2005, Sec. 4.2.4).
- ``threshold``: ``boost x`` the fair share on blocks at least ``threshold_db`` above the mean gain,
  ``fair_share / boost`` on the others; the last block gets everything left.
- ``mmse-water-filling`` (called "oracle" until 2026-11-29): non-causal MMSE water-filling
  (:func:`mmse_water_filling`) over the episode's true gains, read from the env (``episode_gains``). It
  minimises the seed symbols' MSE, not the image PSNR, so it bounds nothing but that MSE.
- ``capacity-water-filling``: non-causal water-filling on the Shannon capacity (:func:`capacity_water_filling`).
- ``best-known``: a non-causal search on the actual reward (:func:`best_known`), started from the best of the
  two water-fillings and static power. The best allocation known, not a bound; the leaderboard normalises
  scores to it (0 = static, 1 = best-known).

The block's gain relative to its mean is ``g = 10^((obs[PEAK_SNR_DB] - mean peak SNR in dB) / 10)``, the
mean peak SNR being ``peak_snr_db - path_loss_db`` (every fading model keeps E|h|^2 = 1).

MEG-MultiCell-v0 (:data:`MULTI_CELL_POLICIES`), every agent on its own observation:

- ``static``: the fair share of the energy left on every block;
- ``full-power``: peak power until the budget runs out, as a selfish agent that ignores the budget and the
  others would;
- ``sinr-threshold``: an SINR estimate from the current own gain and the last interference,
  ``own_snr_db - 10 log10(1 + INR)``; ``boost x`` the fair share above ``threshold_db``, ``1 / boost`` below,
  and everything left on the last block.
- ``best-known``: a centralised non-causal search on the actual reward (:func:`multi_cell_best_known`): all
  links' gains known in advance, one joint allocation per episode. Not a bound; the leaderboard's 1.

MEG-SplitControl-v0 (:data:`SPLIT_CONTROL_POLICIES`): ``best-fixed``, ``time-sharing``, ``myopic``,
``lagrangian-greedy`` and the non-causal ``planner``, defined in :mod:`meg_gym.envs.split_control.references`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from meg_gym.envs import multi_cell as mc
from meg_gym.envs import power_control as pc
from meg_gym.envs.split_control import references as split_references

__all__ = [
    "MULTI_CELL_POLICIES",
    "POWER_CONTROL_POLICIES",
    "SPLIT_CONTROL_POLICIES",
    "Policy",
    "channel_inversion",
    "mmse_water_filling",
    "multi_cell_static",
    "multi_cell_full_power",
    "best_known",
    "hill_climb",
    "multi_cell_best_known",
    "capacity_water_filling",
    "capacity_water_filling_policy",
    "mmse_water_filling_policy",
    "non_causal",
    "sinr_threshold",
    "static_power",
    "threshold",
]

Policy = Callable[[np.ndarray, Any], np.ndarray]


# ----------------------------------------------------------------------------------------------------------------
# MEG-PowerControl-v0
# ----------------------------------------------------------------------------------------------------------------


def static_power(obs: np.ndarray, env: Any) -> np.ndarray:
    """Equal energy per block: the fair share of the energy left, as a fraction of peak power."""
    return np.clip(obs[:, pc.FAIR_SHARE], 0.0, 1.0)[:, None]


def _relative_gain_db(obs: np.ndarray, config: Any) -> np.ndarray:
    return obs[:, pc.PEAK_SNR_DB] - (config.peak_snr_db - config.path_loss_db)


def _last_block(blocks_left: np.ndarray, num_blocks: int) -> np.ndarray:
    return blocks_left * num_blocks <= 1.0 + 1e-6


def channel_inversion(config: Any, cutoff_db: float = -10.0) -> Policy:
    """Truncated channel inversion: ``fair_share / g`` above ``cutoff_db`` (dB relative to the mean gain), else 0."""

    def policy(obs: np.ndarray, env: Any) -> np.ndarray:
        relative_db = _relative_gain_db(obs, config)
        share = obs[:, pc.FAIR_SHARE]
        power = np.where(relative_db >= cutoff_db, share / 10 ** (relative_db / 10), 0.0)
        power = np.where(_last_block(obs[:, pc.BLOCKS_LEFT], config.num_blocks), share, power)
        return np.clip(power, 0.0, 1.0)[:, None]

    return policy


def threshold(config: Any, threshold_db: float = 0.0, boost: float = 2.0) -> Policy:
    """``boost x`` the fair share on blocks at least ``threshold_db`` above the mean gain, ``1 / boost`` below."""

    def policy(obs: np.ndarray, env: Any) -> np.ndarray:
        share = obs[:, pc.FAIR_SHARE]
        power = np.where(_relative_gain_db(obs, config) >= threshold_db, share * boost, share / boost)
        power = np.where(_last_block(obs[:, pc.BLOCKS_LEFT], config.num_blocks), share, power)
        return np.clip(power, 0.0, 1.0)[:, None]

    return policy


def mmse_water_filling(a: np.ndarray, total: np.ndarray, peak: float, steps: int = 100) -> np.ndarray:
    """Powers (N, K) minimising ``sum_k 1/(1 + a_k p_k)`` s.t. ``sum_k p_k <= total`` (N,), ``0 <= p_k <= peak``.

    After MMSE equalisation a seed symbol sent in block k at power p_k has mean squared error
    ``1 / (1 + a_k p_k)``, ``a_k = |h_k|^2 / N0`` (:func:`meg_gym.channel.mmse_mse`); every block carries the
    same number of symbols. The problem is convex; the KKT conditions give
    ``p_k = clip((sqrt(a_k / lambda) - 1) / a_k, 0, peak)``, a water-filling in which blocks too weak for their
    cost get nothing and strong blocks saturate. The multiplier lambda is found by geometric bisection.
    """
    a = np.maximum(np.asarray(a, dtype=np.float64), 1e-300)

    def powers(lam: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", over="ignore"):  # a tiny multiplier means "as much as allowed"
            return np.clip((np.sqrt(a / lam[:, None]) - 1.0) / a, 0.0, peak)

    everything = np.full(a.shape, peak)
    fits = everything.sum(1) <= total
    lo = np.full(len(a), 1e-300)  # tiny multiplier: every block at peak, over the budget
    hi = a.max(1) + 1e-300  # at lambda >= max a_k no block is worth any power
    for _ in range(steps):
        mid = np.sqrt(lo * hi)
        over = powers(mid).sum(1) > total
        lo, hi = np.where(over, mid, lo), np.where(over, hi, mid)
    return np.where(fits[:, None], everything, powers(hi))


def capacity_water_filling(a: np.ndarray, total: np.ndarray, peak: float, steps: int = 100) -> np.ndarray:
    """Powers (N, K) maximising ``sum_k log(1 + a_k p_k)`` s.t. ``sum_k p_k <= total`` (N,), ``0 <= p_k <= peak``.

    Classic water-filling on the Shannon capacity (Cover and Thomas, *Elements of Information Theory*, 2006,
    Sec. 9.4): ``p_k = clip(mu - 1 / a_k, 0, peak)`` with the water level mu found by bisection. It maximises
    what a capacity-achieving code could carry, not the image quality the seed codec gives.
    """
    a = np.maximum(np.asarray(a, dtype=np.float64), 1e-300)
    everything = np.full(a.shape, peak)
    fits = everything.sum(1) <= total
    lo = np.zeros(len(a))
    hi = np.asarray(total, dtype=np.float64) + (1.0 / a).max(1)  # at this level the powers sum past the budget
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        over = np.clip(mid[:, None] - 1.0 / a, 0.0, peak).sum(1) > total
        lo, hi = np.where(over, lo, mid), np.where(over, mid, hi)
    return np.where(fits[:, None], everything, np.clip(lo[:, None] - 1.0 / a, 0.0, peak))


Planner = Callable[[Any, np.ndarray, np.ndarray, np.ndarray, float], np.ndarray]


def non_causal(config: Any, planner: Planner) -> Policy:
    """A policy that plans each episode's powers at its first block from every block's true gain, then plays them.

    ``planner(venv, envs, a, total, peak)`` returns powers (len(envs), K) in watts for the episodes ``envs`` that
    start, given ``a_k = |h_k|^2 / N0`` (len(envs), K), the budget in block-powers ``total`` (sum_k p_k <= total)
    and the peak power.
    """
    num_blocks = config.num_blocks
    plan: dict[str, np.ndarray] = {}

    def policy(obs: np.ndarray, env: Any) -> np.ndarray:
        venv = env.unwrapped
        block = np.rint((1.0 - obs[:, pc.BLOCKS_LEFT]) * num_blocks).astype(int)
        starting = np.flatnonzero(block == 0)
        if "fractions" not in plan or len(plan["fractions"]) != len(obs):
            plan["fractions"] = np.zeros((len(obs), num_blocks))
        if len(starting):
            link = venv.link_parameters()
            a = np.abs(venv.episode_gains()[starting]) ** 2 / link["noise_power"]
            unit_block_energy = link["symbols_per_block"] * link["symbol_duration_s"]
            # a hair under the budget, so that the env's energy rounding never clips the last block
            total = np.full(len(starting), link["energy_budget"] / unit_block_energy * (1 - 1e-9))
            powers = planner(venv, starting, a, total, link["peak_power"])
            plan["fractions"][starting] = powers / link["peak_power"]
        return plan["fractions"][np.arange(len(obs)), np.minimum(block, num_blocks - 1)][:, None]

    return policy


def mmse_water_filling_policy(config: Any, bisection_steps: int = 100) -> Policy:
    """Non-causal MMSE water-filling (:func:`mmse_water_filling`) over each episode's true gains."""
    return non_causal(config, lambda venv, envs, a, total, peak: mmse_water_filling(a, total, peak, bisection_steps))


def capacity_water_filling_policy(config: Any, bisection_steps: int = 100) -> Policy:
    """Non-causal capacity water-filling (:func:`capacity_water_filling`) over each episode's true gains."""
    return non_causal(
        config, lambda venv, envs, a, total, peak: capacity_water_filling(a, total, peak, bisection_steps)
    )


def hill_climb(
    quality: Callable[[np.ndarray], np.ndarray], starts: np.ndarray, peak: float, rngs: list, iterations: int
) -> np.ndarray:
    """The search of the best-known references: per episode, the best of ``starts`` (S, B, L, K) powers of L
    links over K blocks, improved by moves of energy between two blocks of one link.

    ``quality(powers (B, L, K)) -> (B,)`` scores whole episodes (the same noise draws for every candidate of an
    episode). Each iteration, episode b's Generator ``rngs[b]`` picks a link, a source and a target block and a
    share (10% to 100%) of the source's power to move (within peak power); the move stays if the score improves.
    Every link keeps its total energy, so a start within the budgets stays within them.
    """
    rows = np.arange(starts.shape[1])
    num_links, num_blocks = starts.shape[2:]
    scores = np.stack([quality(p) for p in starts])
    best, best_score = starts[scores.argmax(0), rows].copy(), scores.max(0)
    for _ in range(iterations):
        draws = np.array(
            [(r.integers(num_links), r.integers(num_blocks), r.integers(1, num_blocks), r.uniform(0.1, 1.0)) for r in rngs]
        )  # fmt: skip
        link, source = draws[:, 0].astype(int), draws[:, 1].astype(int)
        target = (source + draws[:, 2].astype(int)) % num_blocks
        amount = np.minimum(draws[:, 3] * best[rows, link, source], peak - best[rows, link, target])
        proposal = best.copy()
        proposal[rows, link, source] -= amount
        proposal[rows, link, target] += amount
        score = quality(proposal)
        better = score > best_score
        best[better], best_score[better] = proposal[better], score[better]
    return best


def _search_starts(a: np.ndarray, total: np.ndarray, peak: float) -> np.ndarray:
    """(3, N, K) starting allocations of the best-known searches: static power, MMSE and capacity water-filling."""
    static = np.minimum(np.repeat(total[:, None] / a.shape[1], a.shape[1], axis=1), peak)
    return np.stack([static, mmse_water_filling(a, total, peak), capacity_water_filling(a, total, peak)])


def _search_generators(gains: np.ndarray, seed: int) -> tuple[list[np.random.Generator], np.ndarray]:
    """One Generator per episode seeded from ``seed`` and that episode's gains (plans do not depend on the batch),
    and a seed per episode for its planning noise draws."""
    rngs = [np.random.default_rng([seed, zlib.crc32(np.ascontiguousarray(g).tobytes())]) for g in gains]
    return rngs, np.array([int(rng.integers(2**62)) for rng in rngs])


def best_known(config: Any, draws: int = 4, iterations: int = 24, seed: int = 0) -> Policy:
    """Non-causal search on the actual reward: per episode, with every gain and the prompt known in advance.

    Start from the best of static power, MMSE and capacity water-filling, then hill-climb (:func:`hill_climb`): each
    iteration moves a random share of one block's energy to another block (within peak power) and keeps the move if
    the episode's expected quality improves. Quality is the real pipeline's (decode, VAE, metric) averaged over
    ``draws`` noise draws of its own (``PowerControlVectorEnv.expected_quality``), the same draws for every
    candidate of an episode and never the evaluation's noise, so the score it then gets in evaluation is an honest
    one. It is the best allocation this search finds, not a bound: a longer search, or one that knew the
    evaluation's noise, could do better. Each episode's search is seeded from ``seed`` and its gains, so plans do
    not depend on the batch.
    """

    def planner(venv: Any, envs: np.ndarray, a: np.ndarray, total: np.ndarray, peak: float) -> np.ndarray:
        rngs, noise_seeds = _search_generators(venv.episode_gains()[envs], seed)

        def quality(powers: np.ndarray) -> np.ndarray:
            return venv.expected_quality(powers[:, 0], envs, draws, noise_seeds)

        starts = _search_starts(a, total, peak)
        return hill_climb(quality, starts[:, :, None], peak, rngs, iterations)[:, 0]

    return non_causal(config, planner)


POWER_CONTROL_POLICIES: dict[str, Callable[[Any], Policy]] = {
    "static": lambda config: static_power,
    "channel-inversion": channel_inversion,
    "threshold": threshold,
    "mmse-water-filling": mmse_water_filling_policy,
    "capacity-water-filling": capacity_water_filling_policy,
    "best-known": best_known,
}


# ----------------------------------------------------------------------------------------------------------------
# MEG-MultiCell-v0: observations (num_envs, N, obs_dim) -> powers (num_envs, N)
# ----------------------------------------------------------------------------------------------------------------


def multi_cell_static(obs: np.ndarray, env: Any) -> np.ndarray:
    return np.clip(obs[..., mc.FAIR_SHARE], 0.0, 1.0)


def multi_cell_full_power(obs: np.ndarray, env: Any) -> np.ndarray:
    return np.ones_like(obs[..., mc.FAIR_SHARE])


def sinr_threshold(config: Any, threshold_db: float = 10.0, boost: float = 2.0) -> Policy:
    """``boost x`` the fair share where the estimated SINR reaches ``threshold_db``, ``1 / boost`` below."""

    def policy(obs: np.ndarray, env: Any) -> np.ndarray:
        share = obs[..., mc.FAIR_SHARE]
        inr = 10.0 ** (obs[..., mc.LAST_INTERFERENCE_DB] / 10.0)
        sinr_db = obs[..., mc.OWN_PEAK_SNR_DB] - 10.0 * np.log10(1.0 + inr)
        power = np.where(sinr_db >= threshold_db, share * boost, share / boost)
        return np.clip(np.where(_last_block(obs[..., mc.BLOCKS_LEFT], config.num_blocks), share, power), 0.0, 1.0)

    return policy


def multi_cell_best_known(config: Any, draws: int = 2, iterations: int = 16, seed: int = 0) -> Policy:
    """Centralised non-causal search on the actual reward: every link's gains (own and interfering, every block)
    known in advance, one joint allocation per episode maximising the mean quality of all links.

    Starts: static power, and each link's MMSE and capacity water-filling on its own gains with the interference
    ignored; then :func:`hill_climb` with moves of energy between two blocks of one link, scored by the real
    pipeline (interference, MMSE equalisation, decode, VAE, metric) averaged over ``draws`` noise draws of its own
    (``MultiCellVectorEnv.expected_quality``), never the evaluation's. The best joint allocation this search
    finds, not a bound.
    """
    num_blocks = config.num_blocks
    plan: dict[str, np.ndarray] = {}

    def policy(obs: np.ndarray, env: Any) -> np.ndarray:
        block = int(np.rint((1.0 - obs[0, 0, mc.BLOCKS_LEFT]) * num_blocks))  # every episode is at the same block
        if block == 0:
            link = env.link_parameters()
            gains = env.episode_gains()  # (M, N, N, K): [receiving UE i, transmitting ES j]
            m, n = gains.shape[:2]
            a = np.einsum("miik->mik", gains).reshape(m * n, num_blocks) / link["noise_power"]
            unit_block_energy = link["symbols_per_block"] * link["symbol_duration_s"]
            total = np.full(m * n, link["energy_budget"] / unit_block_energy * (1 - 1e-9))
            peak = link["peak_power"]
            starts = _search_starts(a, total, peak)
            rngs, noise_seeds = _search_generators(gains, seed)
            envs = np.arange(m)

            def quality(powers: np.ndarray) -> np.ndarray:
                return env.expected_quality(powers, envs, draws, noise_seeds).mean(axis=1)

            best = hill_climb(quality, starts.reshape(3, m, n, num_blocks), peak, rngs, iterations)
            plan["fractions"] = best / peak
        return plan["fractions"][:, :, min(block, num_blocks - 1)]

    return policy


MULTI_CELL_POLICIES: dict[str, Callable[[Any], Policy]] = {
    "static": lambda config: multi_cell_static,
    "full-power": lambda config: multi_cell_full_power,
    "sinr-threshold": sinr_threshold,
    "best-known": multi_cell_best_known,
}


# ----------------------------------------------------------------------------------------------------------------
# MEG-SplitControl-v0: observations (num_envs, 8) -> actions (num_envs, 3); see its module for each policy
# ----------------------------------------------------------------------------------------------------------------

SPLIT_CONTROL_POLICIES = split_references.SPLIT_CONTROL_POLICIES
