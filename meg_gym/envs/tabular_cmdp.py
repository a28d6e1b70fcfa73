"""A small finite-horizon constrained MDP whose optimum is known exactly: the check every constrained learner passes.

MEG-SplitControl-v0 has no known optimum (its planner is non-causal and its dual bound is loose), so a learner's
implementation cannot be checked on it. This environment is a random tabular CMDP, small enough that linear
programming over occupancy measures (Altman, *Constrained Markov Decision Processes*, 1999, ch. 3) gives the best
return any policy reaches within its cost limits, and that any stochastic policy's return and costs are computed
exactly by backward induction. ``tests/test_constrained_learners.py`` trains every learner of ``baselines/`` on it
and checks the learned stochastic policy against the LP optimum.

It has the same constrained interface as MEG-SplitControl-v0: ``info["costs"]`` (a dict, one entry per cost),
``info["cost"]`` (their sum, each divided by its limit), ``info["cost_vector"]``, and ``cost_limits``; episodes
have a fixed length, so every environment of a vector ends on the same step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from meg_gym.config import config_from_kwargs
from meg_gym.link.vector import check_num_envs, parse_autoreset_mode, reset_generators

ENV_ID = "meg_gym/TabularCMDP-v0"
COST_NAMES = ("cost_a", "cost_b")


@dataclass(frozen=True)
class TabularCMDPConfig:
    """The random problem: its size, the draw that makes it, and how tight each cost limit is."""

    problem_seed: int = 0
    """seed of the transition, reward and cost tables (the episodes' own seed is reset's)"""
    num_states: int = 4
    """states; the observation is one-hot state followed by one-hot time step"""
    num_actions: int = 3
    """actions (Discrete)"""
    horizon: int = 5
    """steps per episode"""
    limit_fractions: tuple[float, float] = (0.5, 0.6)
    """each cost's limit, placed between the least cost any policy reaches (0) and the cost of the unconstrained
    optimum (1); below 1 the limit binds at the optimum"""

    def __post_init__(self):
        if self.num_states < 1 or self.num_actions < 2 or self.horizon < 1:
            raise ValueError("TabularCMDPConfig needs num_states >= 1, num_actions >= 2 and horizon >= 1")
        if len(self.limit_fractions) != len(COST_NAMES) or not all(0 <= f for f in self.limit_fractions):
            raise ValueError(f"limit_fractions needs {len(COST_NAMES)} values >= 0, one per cost {COST_NAMES}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TabularProblem:
    """The tables of one problem, its LP optimum and exact policy evaluation.

    ``transition[s, a, s']``, ``reward[s, a]``, ``cost[k, s, a]``, ``initial[s]``. Costs rise with reward (each is
    the reward plus independent noise), so a policy buys return with cost, as in MEG-SplitControl-v0.
    """

    def __init__(self, config: TabularCMDPConfig):
        self.config = config
        rng = np.random.default_rng(config.problem_seed)
        s, a = config.num_states, config.num_actions
        self.transition = rng.dirichlet(np.full(s, 0.5), size=(s, a))
        self.reward = rng.uniform(0.0, 1.0, size=(s, a))
        noise = rng.uniform(0.0, 1.0, size=(len(COST_NAMES), s, a))
        self.cost = 0.5 * (self.reward[None] + noise)
        self.initial = rng.dirichlet(np.ones(s))
        least = np.array([self._best(-self.cost[k])[0] * -1.0 for k in range(len(COST_NAMES))])
        unconstrained = self.evaluate(self._best(self.reward)[1])[1]
        self.limits = least + np.asarray(config.limit_fractions) * (unconstrained - least)

    @property
    def cost_limits(self) -> dict[str, float]:
        return {name: float(limit) for name, limit in zip(COST_NAMES, self.limits, strict=True)}

    def _best(self, signal: np.ndarray) -> tuple[float, np.ndarray]:
        """The best value of a per-step signal over deterministic policies (backward induction) and that policy."""
        h, (s, a) = self.config.horizon, signal.shape
        value, policy = np.zeros(s), np.zeros((h, s, a))
        for t in reversed(range(h)):
            q = signal + self.transition @ value
            policy[t, np.arange(s), q.argmax(1)] = 1.0
            value = q.max(1)
        return float(self.initial @ value), policy

    def evaluate(self, policy: np.ndarray) -> tuple[float, np.ndarray]:
        """Exact expected return and expected costs (one per cost) of a policy ``(horizon, states, actions)``."""
        policy = np.asarray(policy, dtype=np.float64)
        expected = (self.config.horizon, self.config.num_states, self.config.num_actions)
        if policy.shape != expected:
            raise ValueError(f"policy has shape {policy.shape}; it needs (horizon, states, actions) = {expected}")
        if np.any(policy < -1e-9) or not np.allclose(policy.sum(-1), 1.0, atol=1e-6):
            raise ValueError("policy rows must be probability distributions over actions")
        state, ret, costs = self.initial.copy(), 0.0, np.zeros(len(COST_NAMES))
        for t in range(self.config.horizon):
            occupancy = state[:, None] * policy[t]
            ret += float((occupancy * self.reward).sum())
            costs += (occupancy[None] * self.cost).sum((1, 2))
            state = np.einsum("sa,sap->p", occupancy, self.transition)
        return ret, costs

    def solve(self, limits: np.ndarray | None = None) -> dict[str, Any]:
        """The constrained optimum by linear programming over occupancy measures ``d[t, s, a]``.

        Maximise ``sum d r`` subject to ``sum_a d[0, s, a] = initial[s]``, flow conservation
        ``sum_a d[t+1, s', a] = sum_{s,a} d[t, s, a] P(s'|s, a)``, ``d >= 0`` and ``sum d c_k <= limit_k``.
        The optimal policy is ``d[t, s, a] / sum_a d[t, s, a]`` (uniform where a state is never reached).
        """
        from scipy.optimize import linprog

        h, s, a = self.config.horizon, self.config.num_states, self.config.num_actions
        limits = self.limits if limits is None else np.asarray(limits, dtype=np.float64)
        n = h * s * a
        index = np.arange(n).reshape(h, s, a)
        equality = np.zeros((h * s, n))
        rhs = np.zeros(h * s)
        for state in range(s):
            equality[state, index[0, state]] = 1.0
            rhs[state] = self.initial[state]
        for t in range(h - 1):
            for nxt in range(s):
                row = (t + 1) * s + nxt
                equality[row, index[t + 1, nxt]] = 1.0
                equality[row, index[t].ravel()] -= self.transition[:, :, nxt].ravel()
        inequality = np.stack([np.tile(self.cost[k].ravel(), h) for k in range(len(COST_NAMES))])
        result = linprog(
            -np.tile(self.reward.ravel(), h), A_ub=inequality, b_ub=limits, A_eq=equality, b_eq=rhs,
            bounds=(0, None), method="highs",
        )  # fmt: skip
        if result.status != 0:
            raise RuntimeError(f"the tabular CMDP's LP failed: {result.message}")
        occupancy = result.x.reshape(h, s, a)
        mass = occupancy.sum(-1, keepdims=True)
        policy = np.where(mass > 1e-12, occupancy / np.maximum(mass, 1e-300), 1.0 / a)
        ret, costs = self.evaluate(policy)
        return {"return": ret, "costs": costs, "policy": policy, "limits": limits}

    def unconstrained(self) -> dict[str, Any]:
        """The best return with no cost limit, and the costs it incurs (each above its limit when it binds)."""
        ret, policy = self._best(self.reward)
        return {"return": ret, "costs": self.evaluate(policy)[1], "policy": policy}

    def observations(self) -> np.ndarray:
        """Every observation, ``(horizon, states, obs_dim)``: query a policy network on it to get its table."""
        h, s = self.config.horizon, self.config.num_states
        obs = np.zeros((h, s, s + h), dtype=np.float32)
        for t in range(h):
            obs[t, np.arange(s), np.arange(s)] = 1.0
            obs[t, :, s + t] = 1.0
        return obs


def _spaces(config: TabularCMDPConfig) -> tuple[spaces.Box, spaces.Discrete]:
    dim = config.num_states + config.horizon
    return spaces.Box(0.0, 1.0, (dim,), np.float32), spaces.Discrete(config.num_actions)


class TabularCMDPEnv(gym.Env):
    """meg_gym/TabularCMDP-v0: a random finite-horizon CMDP with two costs and a known LP optimum.

    ## Description
    A check for constrained learners, not a MEG task: see the module docstring. ``env.unwrapped.problem`` holds
    the tables, ``problem.solve()`` the optimum and ``problem.evaluate(policy)`` exact policy evaluation.

    ## Action Space
    `Discrete(num_actions)`.

    ## Observation Space
    `Box(0, 1, (num_states + horizon,))`: one-hot state, then one-hot time step.

    ## Rewards
    `reward[s, a]` in [0, 1] per step.

    ## Costs
    `info["costs"]` holds `cost_a` and `cost_b` per step, each in [0, 1]; their limits are `cost_limits`.

    ## Episode End
    Terminates after `horizon` steps.
    """

    metadata = {"render_modes": []}

    def __init__(self, render_mode: str | None = None, **kwargs: Any):
        self.config = config_from_kwargs(TabularCMDPConfig, kwargs)
        self.problem = TabularProblem(self.config)
        self.observation_space, self.action_space = _spaces(self.config)
        self.render_mode = render_mode
        self._table = self.problem.observations()  # every observation, built once (step only indexes it)
        self._state, self._t = 0, 0

    @property
    def cost_limits(self) -> dict[str, float]:
        return self.problem.cost_limits

    def _obs(self) -> np.ndarray:
        return self._table[min(self._t, self.config.horizon - 1), self._state].copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._state = int(self.np_random.choice(self.config.num_states, p=self.problem.initial))
        self._t = 0
        return self._obs(), {}

    def step(self, action: Any):
        a = int(action)
        if not self.action_space.contains(a):
            raise ValueError(f"action {action!r} is outside {self.action_space}")
        p = self.problem
        reward = float(p.reward[self._state, a])
        cost_vector = p.cost[:, self._state, a].copy()
        self._state = int(self.np_random.choice(self.config.num_states, p=p.transition[self._state, a]))
        self._t += 1
        info = {
            "costs": {name: float(c) for name, c in zip(COST_NAMES, cost_vector, strict=True)},
            "cost": float((cost_vector / p.limits).sum()),
            "cost_vector": cost_vector,
        }
        return self._obs(), reward, self._t >= self.config.horizon, False, info


class TabularCMDPVectorEnv(VectorEnv):
    """meg_gym/TabularCMDP-v0 for ``num_envs`` episodes at once, in numpy. All episodes end on the same step.

    Autoreset as in MEG-SplitControl-v0's vector env: ``NEXT_STEP`` (default) or ``SAME_STEP``, where the ending
    step's info moves to ``final_info`` (with ``final_obs``) and the returned observation starts the next episode.
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
        self.config = config_from_kwargs(TabularCMDPConfig, kwargs)
        self.problem = TabularProblem(self.config)
        self.render_mode = render_mode
        self.single_observation_space, self.single_action_space = _spaces(self.config)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._table = self.problem.observations()
        self._cumulative = {
            "initial": np.cumsum(self.problem.initial),
            "transition": np.cumsum(self.problem.transition, axis=-1),
        }
        self._rngs = [seeding.np_random()[0] for _ in range(num_envs)]
        self._state = np.zeros(num_envs, dtype=np.int64)
        self._t = 0
        self._autoreset = False
        self._started = False

    @property
    def cost_limits(self) -> dict[str, float]:
        return self.problem.cost_limits

    def _draw(self, cumulative: np.ndarray) -> np.ndarray:
        u = np.array([rng.random() for rng in self._rngs])
        return np.minimum((u[:, None] > cumulative).sum(-1), self.config.num_states - 1)

    def _restart(self) -> None:
        self._state = self._draw(np.broadcast_to(self._cumulative["initial"], (self.num_envs, self.config.num_states)))
        self._t = 0
        self._autoreset = False

    def _obs(self) -> np.ndarray:
        return self._table[min(self._t, self.config.horizon - 1), self._state].copy()

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        self._rngs = reset_generators(self._rngs, seed, self._started)
        self._started = True
        self._restart()
        return self._obs(), {}

    def step(self, actions: Any):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        n = self.num_envs
        if self._autoreset:
            self._restart()
            return self._obs(), np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), {}
        a = np.asarray(actions, dtype=np.int64).reshape(n)
        if np.any((a < 0) | (a >= self.config.num_actions)):
            raise ValueError(f"actions {a.tolist()} fall outside {self.single_action_space}")
        p = self.problem
        rewards = p.reward[self._state, a].astype(np.float64)
        cost_vector = p.cost[:, self._state, a].T.copy()
        self._state = self._draw(self._cumulative["transition"][self._state, a])
        self._t += 1
        ended = self._t >= self.config.horizon
        terminated = np.full(n, ended)
        everyone = np.ones(n, dtype=bool)
        infos: dict[str, Any] = {
            "costs": {name: cost_vector[:, k] for k, name in enumerate(COST_NAMES)},
            "_costs": everyone.copy(),
            "cost": (cost_vector / p.limits).sum(1),
            "_cost": everyone.copy(),
            "cost_vector": cost_vector,
            "_cost_vector": everyone.copy(),
        }
        if ended and self.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP:
            final_obs = np.empty(n, dtype=object)
            last = self._obs()
            for i in range(n):
                final_obs[i] = last[i]
            infos = {"final_obs": final_obs, "_final_obs": everyone.copy(), "final_info": infos,
                     "_final_info": everyone.copy()}  # fmt: skip
            self._restart()
        elif ended:
            self._autoreset = True
        return self._obs(), rewards, terminated, np.zeros(n, dtype=bool), infos
