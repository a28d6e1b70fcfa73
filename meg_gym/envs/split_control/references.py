"""Fixed policies and references of MEG-SplitControl-v0 (the table :data:`meg_gym.policies.SPLIT_CONTROL_POLICIES`).

Each is ``make(config) -> policy(obs, env)`` over the natively batched env (``env.sessions`` gives the quality
table and the cost model; every policy here reads the table, as ``fidelity="table"`` does). Where a policy needs
tuning, it is tuned on sessions of the *train* prompts (fixed seeds), never on the test prompts it is scored on.

- ``best-fixed``: the one (split step, scheme, energy level) used on every request that has the highest expected
  quality on train sessions among those whose expected costs meet both limits.
- ``time-sharing``: the best open-loop schedule: configuration A on k of the 32 requests, evenly spread, B on the
  others, both at the fair-share energy (or best-fixed, if that is better). It never looks at the channel, so the
  planner minus time-sharing is what adaptivity is worth.
- ``myopic``: per request, the fair-share energy, and the (split, scheme) with the highest expected quality of
  this request among those that meet its deadline and fit this request's even share of the battery left.
- ``lagrangian-greedy``: per request, the action that maximises expected quality minus fixed prices on UE
  energy and ES energy, among those that meet the deadline; the prices are fitted on train sessions so that the
  UE energy meets its limit.
- ``planner``: non-causal (:class:`meg_gym.envs.split_control.planning.DualPlanner`): at each session's first
  request it reads the whole session and plans it by Lagrangian duality; its multipliers on the costs start from
  those fitted on train sessions and are raised until the plans of the sessions starting together meet both limits
  on average (their costs are known exactly in advance). Its bound (an upper bound on every policy that observes
  what the environment observes) is computed by ``scripts/evaluate_split_control.py``.

Every policy here plans on the expected quality given what the observation reveals: the mean over the prompts of
the request's object count and over the noise draws, estimated on the TRAIN prompts' table, as a learner would
(:attr:`Sessions.planning_table`), never on a prompt's own table values, nor on the test table it is scored on; with several blocks per request, causal policies also average over a fixed sample of
fading draws (:func:`meg_gym.envs.split_control.planning.fading_samples`). With `csi_error_var` > 0 they take the
reported SNR as the truth (certainty equivalence).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from meg_gym.envs.split_control.env import BATTERY_LEFT, DEADLINE_S, REQUESTS_LEFT, SNR_DB
from meg_gym.envs.split_control.planning import DualPlanner, action_costs, expected_quality, fading_samples

__all__ = [
    "SPLIT_CONTROL_POLICIES",
    "best_fixed",
    "lagrangian_greedy",
    "myopic",
    "feasible_plan",
    "plan_costs",
    "planner",
    "time_sharing",
    "train_sessions",
]

Policy = Callable[[np.ndarray, Any], np.ndarray]
TRAIN_SEED = 10_000  # train sessions that tune the references (the evaluation seeds of the test prompts differ)


def _sessions_of(config: Any, num_envs: int):
    from meg_gym.envs.split_control.env import Sessions

    return Sessions(dataclasses.replace(config, split="train", fidelity="table"), num_envs)


@functools.lru_cache(maxsize=4)
def _train_previews(config: Any, count: int) -> tuple[Any, list[dict[str, np.ndarray]]]:
    from gymnasium.utils import seeding

    sessions = _sessions_of(config, count)
    rngs = [seeding.np_random(TRAIN_SEED + i)[0] for i in range(count)]
    sessions.reset(np.arange(count), rngs)
    return sessions, [sessions.preview(i, rngs[i]) for i in range(count)]


def train_sessions(config: Any, count: int = 128) -> tuple[Any, list[dict[str, np.ndarray]]]:
    """(train Sessions, previews of ``count`` whole train sessions), memoised per config."""
    return _train_previews(config, count)


def _fixed_statistics(config: Any, count: int = 128) -> dict[str, np.ndarray]:
    """Expected per-request quality and per-session costs of every fixed (split, scheme, level), on train sessions.

    A fixed level spends ``level x`` the fair share of what is left, so the energy of request r is deterministic.
    """
    sessions, previews = train_sessions(config, count)
    levels = sessions.levels
    num_r = config.num_requests
    airtime = sessions.airtime_s
    cap = config.es_peak_power_w * airtime  # (M,)
    # energies (R, M, L): remaining_{r+1} = remaining_r - min(level * remaining_r / left_r, cap)
    remaining = np.full((len(airtime), len(levels)), float(sessions.budget.budget[0]))
    energy = np.zeros((num_r, len(airtime), len(levels)))
    for r in range(num_r):
        energy[r] = np.minimum(levels[None, :] * remaining / (num_r - r), cap[:, None])
        remaining = remaining - energy[r]
    quality = np.zeros((len(sessions.split_steps), len(airtime), len(levels)))
    misses = np.zeros((len(sessions.split_steps), len(airtime)))
    ue_energy, _ = action_costs(sessions, np.zeros(1))
    for pv in previews:
        for r in range(num_r):
            q = expected_quality(sessions, pv["prompt"][r : r + 1], pv["snr_db"][r : r + 1],
                                 pv["gains"][r : r + 1, None, :], energy[r])  # fmt: skip
            quality += q[0]
        misses += action_costs(sessions, pv["deadline_s"])[1].sum(0)
    n = len(previews)
    return {
        "quality": quality / (n * num_r),  # (S, M, L) per request
        "ue_energy": ue_energy * num_r,  # (S,) per session
        "misses": misses / n,  # (S, M) per session
    }


@functools.lru_cache(maxsize=4)
def _best_fixed_choice(config: Any) -> tuple[int, int, int]:
    stats = _fixed_statistics(config)
    limits = config.cost_limits
    feasible = (stats["ue_energy"][:, None, None] <= limits["ue_energy"]) & (
        stats["misses"][:, :, None] <= limits["deadline_miss"]
    )
    if not feasible.any():
        raise ValueError(
            "no fixed (split, scheme, level) meets the cost limits on train sessions; raise ue_energy_limit_j or "
            "deadline_miss_limit"
        )
    score = np.where(feasible, stats["quality"], -np.inf)
    return tuple(int(i) for i in np.unravel_index(score.argmax(), score.shape))


def best_fixed(config: Any) -> Policy:
    """The same feasible (split, scheme, level) on every request, chosen on train sessions."""
    choice = np.array(_best_fixed_choice(config))

    def policy(obs: np.ndarray, env: Any) -> np.ndarray:
        return np.tile(choice, (len(obs), 1))

    return policy


@functools.lru_cache(maxsize=4)
def _time_sharing_schedule(config: Any) -> np.ndarray:
    """(R, 3) actions of the best open-loop schedule, by request index."""
    stats = _fixed_statistics(config)
    limits = config.cost_limits
    sessions, _ = train_sessions(config)
    num_r = config.num_requests
    fair = int(np.argmin(np.abs(sessions.levels - 1.0)))
    q = stats["quality"][:, :, fair].reshape(-1)  # per request, at the fair share
    ue = np.repeat(stats["ue_energy"] / num_r, stats["misses"].shape[1])  # per request
    miss = stats["misses"].reshape(-1) / num_r
    k = np.arange(num_r + 1)[:, None, None] / num_r  # share of requests on A
    value = k * q[None, :, None] + (1 - k) * q[None, None, :]
    ue_mix = (k * ue[None, :, None] + (1 - k) * ue[None, None, :]) * num_r
    miss_mix = (k * miss[None, :, None] + (1 - k) * miss[None, None, :]) * num_r
    ok = (ue_mix <= limits["ue_energy"] + 1e-9) & (miss_mix <= limits["deadline_miss"] + 1e-9)
    score = np.where(ok, value, -np.inf)
    best = np.unravel_index(score.argmax(), score.shape)
    fixed = _best_fixed_choice(config)
    if stats["quality"][fixed] >= score[best]:
        return np.tile(np.array(fixed), (num_r, 1))
    count, a, b = int(best[0]), int(best[1]), int(best[2])
    num_m = stats["misses"].shape[1]
    on_a = np.floor((np.arange(num_r) + 1) * count / num_r) > np.floor(np.arange(num_r) * count / num_r)
    schedule = np.zeros((num_r, 3), dtype=np.int64)
    for r in range(num_r):
        c = a if on_a[r] else b
        schedule[r] = (c // num_m, c % num_m, fair)
    return schedule


def time_sharing(config: Any) -> Policy:
    """The best open-loop mix of two fixed configurations, by request index (chosen on train sessions)."""
    schedule = _time_sharing_schedule(config)
    num_r = config.num_requests

    def policy(obs: np.ndarray, env: Any) -> np.ndarray:
        request = np.rint((1.0 - obs[:, REQUESTS_LEFT]) * num_r).astype(int)
        return schedule[np.clip(request, 0, num_r - 1)]

    return policy


def _request_values(env: Any, obs: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(expected quality (N, S, M, L) of every action for each env's current request, energies (N, M, L))."""
    sessions = env.unwrapped.sessions
    cfg = sessions.config
    fair = sessions.budget.remaining / np.maximum(cfg.num_requests - sessions.request, 1)
    energies = np.minimum(fair[:, None, None] * sessions.levels[None, None, :],
                          (cfg.es_peak_power_w * sessions.airtime_s)[None, :, None])  # fmt: skip
    count = len(obs)
    gains = np.broadcast_to(samples[None], (count, *samples.shape))
    values = expected_quality(sessions, sessions.prompt, obs[:, SNR_DB].astype(np.float64), gains, energies)
    return values, energies


def myopic(config: Any, fading_draws: int = 32) -> Policy:
    """Fair-share energy; the best (split, scheme) for this request within its deadline and its battery share."""
    samples = fading_samples(config, fading_draws)

    def policy(obs: np.ndarray, env: Any) -> np.ndarray:
        sessions = env.unwrapped.sessions
        fair = int(np.argmin(np.abs(sessions.levels - 1.0)))
        values, _ = _request_values(env, obs, samples)
        ue_energy, miss = action_costs(sessions, obs[:, DEADLINE_S].astype(np.float64))
        left = np.maximum(np.rint(obs[:, REQUESTS_LEFT] * config.num_requests), 1)
        share = np.maximum(obs[:, BATTERY_LEFT], 0.0) * config.ue_energy_limit_j / left
        ok = (miss == 0) & (ue_energy[None, :, None] <= share[:, None, None])
        score = np.where(ok, values[..., fair], -np.inf)
        # nothing fits: the fewest UE steps, the best scheme for them
        fewest = (np.arange(len(ue_energy)) == ue_energy.argmin())[None, :, None]
        fallback = np.where(fewest, values[..., fair], -np.inf)
        score = np.where(np.isfinite(score).any((1, 2))[:, None, None], score, fallback)
        flat = score.reshape(len(obs), -1).argmax(1)
        split, scheme = np.unravel_index(flat, score.shape[1:])
        return np.stack([split, scheme, np.full(len(obs), fair)], axis=1)

    return policy


def _greedy_actions(env: Any, obs: np.ndarray, samples: np.ndarray, prices: tuple[float, float]) -> np.ndarray:
    sessions = env.unwrapped.sessions
    cfg = sessions.config
    values, energies = _request_values(env, obs, samples)
    ue_energy, miss = action_costs(sessions, obs[:, DEADLINE_S].astype(np.float64))
    fair0 = float(sessions.budget.budget[0]) / cfg.num_requests
    score = values - prices[0] * ue_energy[None, :, None, None] - prices[1] * (energies / fair0)[:, None, :, :]
    score = np.where((miss == 0)[..., None], score, -np.inf)
    score = np.where(np.isfinite(score).any((1, 2, 3))[:, None, None, None], score, values)
    flat = score.reshape(len(obs), -1).argmax(1)
    return np.stack(np.unravel_index(flat, score.shape[1:]), axis=1)


@functools.lru_cache(maxsize=4)
def _greedy_prices(config: Any, fading_draws: int, sessions_count: int = 32) -> tuple[float, float]:
    """Prices (per J of UE energy, per fair share of ES energy) fitted on train sessions: for each ES price, the
    smallest UE price whose mean session UE energy meets the limit (bisection); the pair with the best quality."""
    from meg_gym.envs.split_control.env import SplitControlVectorEnv

    samples = fading_samples(config, fading_draws)
    env = SplitControlVectorEnv(num_envs=sessions_count, config=config, split="train", fidelity="table")

    def run(prices: tuple[float, float]) -> tuple[float, float]:
        obs, _ = env.reset(seed=TRAIN_SEED)
        quality, ue = 0.0, 0.0
        for _ in range(config.num_requests):
            obs, reward, _, _, info = env.step(_greedy_actions(env, obs, samples, prices))
            quality += reward.mean()
            ue += info["costs"]["ue_energy"].mean()
        return quality / config.num_requests, ue

    best = (-np.inf, (0.0, 0.0))
    for es_price in (0.0, 0.5, 1.0, 2.0, 4.0):
        low, high = 0.0, 8.0
        if run((low, es_price))[1] > config.ue_energy_limit_j:
            for _ in range(6):
                mid = 0.5 * (low + high)
                low, high = (mid, high) if run((mid, es_price))[1] > config.ue_energy_limit_j else (low, mid)
            low = high
        quality, _ = run((low, es_price))
        if quality > best[0]:
            best = (quality, (low, es_price))
    return best[1]


def lagrangian_greedy(config: Any, fading_draws: int = 32) -> Policy:
    """Per request, expected quality minus fixed prices on UE and ES energy, within the deadline (prices from train)."""
    samples = fading_samples(config, fading_draws)
    prices = _greedy_prices(config, fading_draws)

    def policy(obs: np.ndarray, env: Any) -> np.ndarray:
        return _greedy_actions(env, obs, samples, prices)

    return policy


@functools.lru_cache(maxsize=4)
def _planner_multipliers(config: Any) -> tuple[float, float]:
    """Multipliers minimising the bound on train sessions, then raised until the argmax plans meet both limits there
    (at the bound's own multipliers a deterministic plan can overshoot a limit that a randomised one would meet)."""
    sessions, previews = train_sessions(config, 64)
    planner = DualPlanner(sessions)
    table = planner.session_values(previews)
    lam, _ = planner.fit(table)
    for _ in range(40):
        plan = planner.plan(table, lam)
        costs = plan_costs(planner, table, plan)
        over = costs > planner.limits + 1e-9
        if not over.any():
            break
        lam = np.where(over, np.maximum(lam * 1.25, 1e-3), lam)
    return float(lam[0]), float(lam[1])


def feasible_plan(planner: DualPlanner, table: dict[str, np.ndarray], lam: np.ndarray) -> dict[str, np.ndarray]:
    """The argmax plans of these sessions, each multiplier raised (x1.25) until the sessions' mean costs meet its limit.

    A plan's costs are exactly what the sessions will cost (they depend only on the actions and the deadlines, which
    the preview reveals), so the played planner meets both limits on every batch it plans.
    """
    for _ in range(60):
        plan = planner.plan(table, lam)
        over = plan_costs(planner, table, plan) > planner.limits + 1e-9
        if not over.any():
            return plan
        lam = np.where(over, np.maximum(lam * 1.25, 1e-3), lam)
    raise RuntimeError(f"no multipliers up to {lam} make the plans meet the limits {planner.limits}")


def plan_costs(planner: DualPlanner, table: dict[str, np.ndarray], plan: dict[str, np.ndarray]) -> np.ndarray:
    """Mean cost sums per session (UE energy, deadline misses) of plans on the sessions of ``table``."""
    z, r = np.indices(plan["split"].shape)
    a = plan["split"] * planner.energies.shape[0] + plan["scheme"]
    return table["costs"][z, r, a].sum(1).mean(0)


def planner(config: Any) -> Policy:
    """Non-causal: plans each session at its first request from a preview of it (module docstring)."""
    lam = np.array(_planner_multipliers(config))
    state: dict[str, Any] = {}

    def policy(obs: np.ndarray, env: Any) -> np.ndarray:
        venv = env.unwrapped
        sessions = venv.sessions
        num_r = config.num_requests
        request = np.rint((1.0 - obs[:, REQUESTS_LEFT]) * num_r).astype(int)
        if "planner" not in state:
            state["planner"] = DualPlanner(sessions)
            state["plan"] = None
        starting = np.flatnonzero(request == 0)
        if len(starting):
            previews = [venv.preview(i) for i in starting]
            plan = feasible_plan(state["planner"], state["planner"].session_values(previews), lam)
            if state["plan"] is None or len(state["plan"]["split"]) != len(obs):
                state["plan"] = {k: np.zeros((len(obs), num_r), dtype=v.dtype) for k, v in plan.items()}
            for key, value in plan.items():
                state["plan"][key][starting] = value
        rows = np.arange(len(obs))
        r = np.clip(request, 0, num_r - 1)
        energy = state["plan"]["energy"][rows, r]
        fair = sessions.budget.remaining / np.maximum(num_r - sessions.request, 1)
        with np.errstate(divide="ignore"):
            gap = np.abs(np.log(np.maximum(energy, 1e-300))[:, None] - np.log(fair[:, None] * sessions.levels[None]))
        return np.stack([state["plan"]["split"][rows, r], state["plan"]["scheme"][rows, r], gap.argmin(1)], axis=1)

    return policy


SPLIT_CONTROL_POLICIES: dict[str, Callable[[Any], Policy]] = {
    "best-fixed": best_fixed,
    "time-sharing": time_sharing,
    "myopic": myopic,
    "lagrangian-greedy": lagrangian_greedy,
    "planner": planner,
}
