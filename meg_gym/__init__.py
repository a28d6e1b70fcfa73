"""meg-gym: reinforcement-learning benchmark environments for mobile-edge generation (MEG).

``import meg_gym`` stays light: it imports neither torch's model libraries (diffusers, transformers) nor
the assets. The Gymnasium environments of the table in :mod:`meg_gym.registry` register here with string
entry points, so their modules load on ``gym.make``.
"""

from __future__ import annotations

__version__ = "0.1.0"

import os
import sys
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent / "assets"


def _register_envs() -> None:
    from gymnasium.envs.registration import register, registry

    from meg_gym.registry import ENVIRONMENTS

    for spec in ENVIRONMENTS:
        if not spec.multi_agent and spec.env_id not in registry:
            register(
                id=spec.env_id,
                entry_point=spec.env_class,
                vector_entry_point=spec.vector_class,
                max_episode_steps=None,
            )
    # not a MEG task: the small constrained MDP with a known optimum that checks the constrained learners
    if "meg_gym/TabularCMDP-v0" not in registry:
        register(
            id="meg_gym/TabularCMDP-v0",
            entry_point="meg_gym.envs.tabular_cmdp:TabularCMDPEnv",
            vector_entry_point="meg_gym.envs.tabular_cmdp:TabularCMDPVectorEnv",
        )


_register_envs()


def _one_torch_thread_after_fork() -> None:
    # A process forked after torch ran OpenMP work (AsyncVectorEnv's default on Linux) deadlocks in its first
    # parallel region with GNU libgomp. One thread per worker avoids the pool and suits N workers on N cores.
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_one_torch_thread_after_fork)


def __getattr__(name: str):
    # `meg_gym.multi_cell_v0.parallel_env(...)` works after a plain `import meg_gym`, importing PettingZoo only then
    if name == "multi_cell_v0":
        import importlib

        return importlib.import_module("meg_gym.multi_cell_v0")
    raise AttributeError(f"module 'meg_gym' has no attribute {name!r}")


__all__ = ["ASSETS_DIR", "__version__", "multi_cell_v0"]
