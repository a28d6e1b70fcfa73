"""Expected outcomes of MEG-SplitControl-v0's actions, and the planner that bounds every causal policy.

Everything here reads the quality table, as ``fidelity="table"`` does. :func:`expected_quality` gives a request's
expected reward for every (split step, scheme, energy) given what the environment's observation reveals: the mean
over the prompts of the request's object count and over the noise draws (estimated on the train prompts:
:attr:`Sessions.planning_table`), and, when the request's block gains are not known (several blocks per request),
over a fixed sample of fading draws. No reference plans on a prompt's own table values: with a few noise
draws per prompt, the best cell for a prompt is also the luckiest draw, a gain live runs do not repeat.

**The planner** (:class:`DualPlanner`) sees a whole session in advance (mean SNRs, block gains, prompts and
deadlines, read from a copy of the environment's Generator) and solves the constrained allocation by Lagrangian
duality. For multipliers ``lam`` on the UE-energy and deadline costs and ``mu`` on the ES energy:

    D(lam) = E_sessions[ min_mu  sum_r max_{a, E} (q_r(a, E) - lam . c_r(a) - mu E) + mu B ] + lam . limits

Why it bounds every policy that observes what the environment observes, in table mode: such a policy's expected
return is ``E[sum_r q_r(a_r, E_r)]`` with ``q`` the mean over the prompts of the request's object count and over
the noise draws (the prompt beyond its object count, and the draw, are independent of everything the policy has
seen, and the planner knows no more of them either). The bound is computed on that expectation as the environment
serves it (:attr:`Sessions.expected_table`); the played planner, like every reference, plans on its estimate from
the train prompts (:attr:`Sessions.planning_table`), so that its choices do not follow the test table's noise.
For any policy that meets the cost limits in expectation and the ES budget in every session (the environment
clips it), adding ``lam . (limits - costs) >= 0`` and ``mu (B - sum E) >= 0`` can only raise its value; the
result is at most the per-request maximum over every action and every energy in ``[0, peak power x airtime]``
(the levels the environment offers are a subset), with the future known. So ``D(lam)`` bounds the policy for
every ``lam, mu >= 0`` (weak duality), and the planner minimises it. Energies are searched on a grid; the bound
takes, on each grid interval, the interval's lowest energy and the highest quality the interval can reach (the
table is piecewise linear in SNR dB, so that is an end point or a table grid point inside), so the grid never
makes the bound too low. The *played* planner takes the argmax plan at the multipliers (``lam`` fitted on train
sessions, ``mu`` per session) and follows its energies with the environment's levels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from meg_gym import channel
from meg_gym.envs.split_control.quality_table import effective_snr_db
from meg_gym.link import REWARDS

__all__ = ["DualPlanner", "action_costs", "energy_grid", "expected_quality", "fading_samples"]


def fading_samples(config: Any, count: int = 32, seed: int = 20261129) -> np.ndarray:
    """(count, num_blocks) block gains from the config's fading model: the fixed sample causal policies average over.

    With one block per request the observation's SNR already holds the request's fading (the UE reports it), so
    there is nothing to average: one unit gain, (1, 1).
    """
    if config.num_blocks == 1:
        return np.ones((1, 1), dtype=np.complex128)
    rng = np.random.default_rng(seed)
    return channel.sample_block_gains(config.channel, count, config.num_blocks, rng)


def action_costs(sessions: Any, deadline_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(UE energy per split index (S,), deadline miss (..., S, M) for requests with deadlines ``deadline_s`` (...))."""
    cfg = sessions.config
    ue_steps = sessions.total_steps - sessions.split_steps
    ue_energy = cfg.ue_power_w * (ue_steps * cfg.ue_step_s + cfg.ue_decode_s)
    latency = (
        sessions.split_steps[:, None] * cfg.es_step_s
        + sessions.airtime_s[None, :]
        + (ue_steps * cfg.ue_step_s + cfg.ue_decode_s)[:, None]
    )
    miss = (latency > np.asarray(deadline_s)[..., None, None]).astype(np.float64)
    return ue_energy, miss


def energy_grid(sessions: Any, points: int = 33, octaves: float = 6.0) -> np.ndarray:
    """(M, J) transmit energies per scheme: 0, then ``points - 1`` log-spaced multiples of the session's first fair
    share from 2^-octaves to 2^octaves, each capped at the scheme's peak power times its airtime."""
    cfg = sessions.config
    fair0 = float(sessions.budget.budget[0]) / cfg.num_requests
    grid = np.concatenate([[0.0], fair0 * 2.0 ** np.linspace(-octaves, octaves, points - 1)])
    return np.minimum(grid[None, :], cfg.es_peak_power_w * sessions.airtime_s[:, None])


def _snr_db(sessions: Any, snr_db: np.ndarray, gains: np.ndarray, energies: np.ndarray) -> np.ndarray:
    """Effective SNR (dB) for requests (R,) with block gains (R, F, K) and energies (M, J) or (R, M, J): (R, M, J, F)."""
    cfg = sessions.config
    energies = np.broadcast_to(energies, (len(snr_db), *np.shape(energies)[-2:]))
    power = energies / sessions.airtime_s[None, :, None]  # (R, M, J)
    scale = channel.db_to_linear(snr_db)[:, None, None, None, None] / cfg.es_reference_power_w
    block = scale * power[:, :, :, None, None] * (np.abs(gains) ** 2)[:, None, None, :, :]
    with np.errstate(divide="ignore"):
        return effective_snr_db(block, cfg.effective_snr_beta)


def expected_quality(sessions: Any, prompt: np.ndarray, snr_db: np.ndarray, gains: np.ndarray, energies: np.ndarray,
                     grid_points: bool = False, table: Any = None) -> np.ndarray:  # fmt: skip
    """Expected reward of requests (R,) for every split index, scheme index and energy: (R, S, M, J).

    ``gains`` (R, F, K) are the block gains averaged over (F = 1 when they are known); ``energies`` (M, J) are shared
    by every request, or (R, M, J) its own. ``table`` is a pooled table (one value per object count); None is
    :attr:`Sessions.planning_table`, what the references plan on (estimated on the train prompts). With
    ``grid_points``, also returns the reward at the table's SNR grid points, (R, S, M, G), and the effective SNRs
    (R, M, J, F), which the planner's bound needs.
    """
    table = sessions.planning_table if table is None else table
    reward = REWARDS[sessions.config.reward]
    metric = reward.metric
    eff = _snr_db(sessions, snr_db, gains, energies)  # (R, M, J, F)
    p = prompt[:, None, None, None, None]
    s = sessions.split_columns[None, :, None, None, None]
    m = sessions.scheme_columns[None, None, :, None, None]
    values = table.lookup(metric, p, s, m, eff[:, None])  # (R, S, M, J, F)
    quality = reward({metric: values}).mean(-1)
    if not grid_points:
        return quality
    at_grid = table.values[metric][p[..., 0, 0], s[..., 0, 0], m[..., 0, 0]].mean(-1)  # (R, S, M, G)
    return quality, reward({metric: at_grid}), eff


class DualPlanner:
    """The non-causal planner of MEG-SplitControl-v0 by Lagrangian duality (see the module docstring).

    Args:
        sessions: The environment's :class:`meg_gym.envs.split_control.env.Sessions` (config and table).
        points: Energy grid points per scheme.
        table: The expected quality it plans on: None is :attr:`Sessions.planning_table` (the played planner);
            the bound on the environment's policies takes the environment's own, :attr:`Sessions.expected_table`.
    """

    def __init__(self, sessions: Any, points: int = 33, table: Any = None):
        self.sessions = sessions
        self.table = table
        self.config = sessions.config
        self.energies = energy_grid(sessions, points)  # (M, J)
        self.budget = float(sessions.budget.budget[0])
        self.limits = np.array([self.config.cost_limits["ue_energy"], self.config.cost_limits["deadline_miss"]])

    def session_values(self, previews: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Per session (Z) and request (R): values (Z, R, A, J), their interval upper bounds, and costs (Z, R, A, 2).

        ``A`` flattens (split index, scheme index). Each preview must cover a whole session.
        """
        ue_energy, _ = action_costs(self.sessions, np.zeros(1))
        num_s, num_m = len(ue_energy), self.energies.shape[0]
        values, upper, costs = [], [], []
        grid_db = self.sessions.table.snr_db
        for pv in previews:
            q, at_grid, eff = expected_quality(self.sessions, pv["prompt"], pv["snr_db"], pv["gains"][:, None, :],
                                               self.energies, grid_points=True, table=self.table)  # fmt: skip
            eff = eff[..., 0]  # (R, M, J)
            lo, hi = eff[:, :, :-1], eff[:, :, 1:]
            inside = (grid_db > lo[..., None]) & (grid_db < hi[..., None])  # (R, M, J-1, G)
            between = np.where(inside[:, None], at_grid[:, :, :, None, :], -np.inf).max(-1)  # (R, S, M, J-1)
            top = np.maximum(np.maximum(q[..., :-1], q[..., 1:]), between)
            up = np.concatenate([top, q[..., -1:]], axis=-1)  # interval [E_j, E_j+1] priced at E_j
            _, miss = action_costs(self.sessions, pv["deadline_s"])  # (R, S, M)
            r = len(pv["prompt"])
            cost = np.stack([np.broadcast_to(ue_energy[None, :, None], (r, num_s, num_m)), miss], axis=-1)
            values.append(q.reshape(r, num_s * num_m, -1))
            upper.append(up.reshape(r, num_s * num_m, -1))
            costs.append(cost.reshape(r, num_s * num_m, 2))
        return {"values": np.stack(values), "upper": np.stack(upper), "costs": np.stack(costs)}

    def _inner(self, values: np.ndarray, costs: np.ndarray, lam: np.ndarray, iterations: int = 30):
        """Per session, min over mu of the Lagrangian: (dual value per session, the argmax plan's A and J indices (Z, R)
        at the smallest multiplier found whose plan spends at most the budget, that multiplier)."""
        energies = np.tile(self.energies, (len(self.sessions.split_steps), 1))  # (A, J)
        penalised = values - (costs @ lam)[..., None]  # (Z, R, A, J)
        z = values.shape[0]

        def best(mu: np.ndarray):
            obj = penalised - mu[:, None, None, None] * energies[None, None]
            flat = obj.reshape(*obj.shape[:2], -1)
            k = flat.argmax(-1)
            return np.take_along_axis(flat, k[..., None], -1)[..., 0], k

        # bisection on the subgradient B - sum_r E_r(mu) of the convex function of mu
        low, high = np.zeros(z), np.full(z, 1.0)
        for _ in range(60):
            _, k = best(high)
            spent = energies.reshape(-1)[k].sum(-1)
            if np.all(spent <= self.budget):
                break
            high = np.where(spent > self.budget, high * 4.0, high)
        _, k = best(low)
        feasible_at_zero = energies.reshape(-1)[k].sum(-1) <= self.budget
        for _ in range(iterations):
            mid = 0.5 * (low + high)
            _, k = best(mid)
            over = energies.reshape(-1)[k].sum(-1) > self.budget
            low, high = np.where(over, mid, low), np.where(over, high, mid)
        mu = np.where(feasible_at_zero, 0.0, high)  # spends at most the budget: the plan's multiplier
        value_high, k = best(mu)
        value_low, _ = best(np.where(feasible_at_zero, 0.0, low))
        # the convex function's minimum lies in [low, high]: the lower end value is a valid (tighter) bound too
        dual = np.minimum(value_high.sum(-1) + mu * self.budget,
                          value_low.sum(-1) + np.where(feasible_at_zero, 0.0, low) * self.budget)  # fmt: skip
        num_j = energies.shape[1]
        return dual, k // num_j, k % num_j, mu

    def bound(self, table: dict[str, np.ndarray], lam: np.ndarray) -> float:
        """D(lam) per request: an upper bound on every causal policy's mean reward per request (module docstring)."""
        dual, _, _, _ = self._inner(table["upper"], table["costs"], np.asarray(lam, dtype=np.float64))
        r = table["values"].shape[1]
        return float((dual.mean() + np.asarray(lam) @ self.limits) / r)

    def fit(self, table: dict[str, np.ndarray], start: tuple[float, float] = (0.1, 1.0)) -> tuple[np.ndarray, float]:
        """The multipliers that minimise the bound on these sessions (Nelder-Mead in log space), and the bound."""
        from scipy.optimize import minimize

        def objective(x: np.ndarray) -> float:
            return self.bound(table, np.exp(x))

        result = minimize(objective, np.log(np.asarray(start)), method="Nelder-Mead",
                          options={"xatol": 0.02, "fatol": 1e-3, "maxfev": 80})  # fmt: skip
        lam = np.exp(result.x)
        return lam, float(result.fun)

    def plan(self, table: dict[str, np.ndarray], lam: np.ndarray) -> dict[str, np.ndarray]:
        """The argmax plan at ``lam``: per session and request, split index, scheme index, energy (J) and its grid index."""
        _, a, j, _ = self._inner(table["values"], table["costs"], np.asarray(lam, dtype=np.float64))
        num_m = self.energies.shape[0]
        scheme = a % num_m
        return {"split": a // num_m, "scheme": scheme, "energy": self.energies[scheme, j], "energy_index": j}
