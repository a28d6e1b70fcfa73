"""MEG-MultiCell-v0, PettingZoo style: ``from meg_gym import multi_cell_v0; env = multi_cell_v0.parallel_env()``.

``env()`` gives the same game through PettingZoo's AEC (turn-based) API. See
:class:`meg_gym.envs.multi_cell.MultiCellEnv` for the description, and ``MultiCellVectorEnv`` for the batched
version the baselines train on.
"""

from __future__ import annotations

from typing import Any

from meg_gym.envs.multi_cell import MultiCellConfig, MultiCellEnv, MultiCellVectorEnv, parallel_env

__all__ = ["MultiCellConfig", "MultiCellEnv", "MultiCellVectorEnv", "env", "parallel_env"]


def env(render_mode: str | None = None, **kwargs: Any):
    """The AEC version (agents act in turn; the block is sent once all have chosen)."""
    from pettingzoo.utils.conversions import parallel_to_aec

    return parallel_to_aec(parallel_env(render_mode=render_mode, **kwargs))
