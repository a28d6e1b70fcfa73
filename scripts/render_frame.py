"""Draw the README's picture: a MEG-SplitControl-v0 session rendered with ``render_mode="rgb_array"``.

    python scripts/render_frame.py          # docs/split_control_frame.png

The myopic reference serves the first ``--requests`` requests of test session ``--seed`` (table fidelity, the
default), then the frame is drawn (the last request's received image is a live draw at its SNR, as the card says).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import tyro
from PIL import Image

import meg_gym  # noqa: F401  (registers the environments)
from meg_gym.config import SplitControlConfig
from meg_gym.policies import SPLIT_CONTROL_POLICIES


@dataclass
class Args:
    policy: str = "myopic"
    """the reference that acts"""
    requests: int = 20
    """requests served before the frame is drawn"""
    seed: int = 1_000_000
    """the session's seed (the first test session of the evaluation protocol)"""
    output: Path = Path("docs/split_control_frame.png")


def main(args: Args) -> np.ndarray:
    config = SplitControlConfig(split="test")
    policy = SPLIT_CONTROL_POLICIES[args.policy](config)
    # the references act on the vector env's batch; a one-env vector env and the rendering env share the seed
    venv = gym.make_vec("MEG-SplitControl-v0", num_envs=1, vectorization_mode="vector_entry_point", split="test")
    env = gym.make("MEG-SplitControl-v0", render_mode="rgb_array", split="test")
    obs, _ = venv.reset(seed=args.seed)
    env.reset(seed=args.seed)
    for _ in range(args.requests):
        action = policy(obs, venv)
        obs, *_ = venv.step(action)
        env.step(action[0])
    frame = env.render()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame).save(args.output)
    print(
        f"{args.output}: {frame.shape[1]}x{frame.shape[0]}, {args.policy}, {args.requests} requests of session {args.seed}"
    )
    return frame


if __name__ == "__main__":
    main(tyro.cli(Args))
