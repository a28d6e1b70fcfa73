"""The one table of MEG environments: what each is, where its parts live, which fixed policies it has.

Every tool that needs to know about an environment (Gymnasium registration, the evaluation protocol,
``scripts/evaluate.py``, the environment cards, the leaderboard) reads it from :data:`ENVIRONMENTS`, so
adding an environment means adding its module, its config and one row here (see
docs/adding_an_environment.md). Parts are named as ``"module:attribute"`` strings and imported on use, so
reading the table stays light.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["ENVIRONMENTS", "EnvironmentSpec", "environment", "load"]


def load(target: str) -> Any:
    """The object a ``"module:attribute"`` string names."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class EnvironmentSpec:
    """One environment of the suite.

    Attributes:
        env_id: Its id, e.g. "MEG-PowerControl-v0".
        env_class: The environment class: a ``gymnasium.Env`` (registered with Gymnasium under ``env_id``) or,
            when ``multi_agent``, a PettingZoo ``ParallelEnv``.
        vector_class: Its natively batched version: Gymnasium's ``vector_entry_point``, or for a multi-agent
            env the batched env that takes actions of shape (num_envs, num_agents) and ends all episodes together.
        config_class: The dataclass of its settings (every ``gym.make`` keyword is one of its fields).
        card: Path of its environment card, generated from ``env_class``'s docstring and the config's.
        policies: Its fixed policies and references: a dict name -> ``make(config) -> policy(obs, env)``.
        multi_agent: PettingZoo API; observations (num_envs, num_agents, obs_dim) in the batched env.
        upper_reference: Its non-causal upper reference, the 1 of the leaderboard's normalised score: the best
            policy known for it, named for what it is ("best-known", "planner"); a bound only where its docs
            prove one. None if it has none.
        baseline_policy: The fixed policy scores are compared against (e.g. static power).
        constrained: A constrained MDP: every step's info has ``cost`` and ``costs``, the config ``cost_limits``;
            an episode is a session of requests with a reward each, summarised per request and per session.
        fidelity_check: The report page (in docs/results/, beside the leaderboard) that checks its fast fidelity
            against live runs, which the leaderboard links and whose live scores it shows beside the table's; None
            if it has one fidelity.
        reference_report: The report page (relative to docs/results/) of its references, whose JSON holds the upper
            reference's bound (``planner_bound``), named beside the leaderboard's normalisation; None if none.
    """

    env_id: str
    env_class: str
    vector_class: str
    config_class: str
    card: str
    policies: str
    multi_agent: bool = False
    upper_reference: str | None = None
    baseline_policy: str = "static"
    constrained: bool = False
    fidelity_check: str | None = None
    reference_report: str | None = None

    def config_type(self) -> type:
        return load(self.config_class)

    def vector_type(self) -> type:
        return load(self.vector_class)

    def fixed_policies(self) -> dict[str, Any]:
        return load(self.policies)


ENVIRONMENTS: tuple[EnvironmentSpec, ...] = (
    EnvironmentSpec(
        env_id="MEG-PowerControl-v0",
        env_class="meg_gym.envs.power_control:PowerControlEnv",
        vector_class="meg_gym.envs.power_control:PowerControlVectorEnv",
        config_class="meg_gym.config:PowerControlConfig",
        card="docs/envs/power_control.md",
        policies="meg_gym.policies:POWER_CONTROL_POLICIES",
        upper_reference="best-known",
    ),
    EnvironmentSpec(
        env_id="MEG-MultiCell-v0",
        env_class="meg_gym.envs.multi_cell:MultiCellEnv",
        vector_class="meg_gym.envs.multi_cell:MultiCellVectorEnv",
        config_class="meg_gym.envs.multi_cell:MultiCellConfig",
        card="docs/envs/multi_cell.md",
        policies="meg_gym.policies:MULTI_CELL_POLICIES",
        multi_agent=True,
        upper_reference="best-known",
    ),
    EnvironmentSpec(
        env_id="MEG-SplitControl-v0",
        env_class="meg_gym.envs.split_control.env:SplitControlEnv",
        vector_class="meg_gym.envs.split_control.env:SplitControlVectorEnv",
        config_class="meg_gym.config:SplitControlConfig",
        card="docs/envs/split_control.md",
        policies="meg_gym.policies:SPLIT_CONTROL_POLICIES",
        upper_reference="planner",
        baseline_policy="best-fixed",
        constrained=True,
        fidelity_check="split_table_validation.md",
        reference_report="split_control.md",
    ),
)


def environment(env_id: str) -> EnvironmentSpec:
    """The row of ``env_id``; ValueError listing the known ids otherwise."""
    for spec in ENVIRONMENTS:
        if spec.env_id == env_id:
            return spec
    raise ValueError(f"unknown environment {env_id!r}; the suite has {[s.env_id for s in ENVIRONMENTS]}")
