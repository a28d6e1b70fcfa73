"""Static power: the same energy on every block, the paper's static baseline. Nothing is learned.

    python baselines/static_power.py
    python baselines/static_power.py --env.budget-fraction 0.3

Each block gets the fair share of what is left (energy left / blocks left, as a fraction of peak power), which
is an equal split of the budget over the episode's blocks, capped at peak power. The policy is evaluated on the
held-out test prompts and written to runs/{run_name}/eval.json in the schema every baseline shares.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tyro
from torch.utils.tensorboard import SummaryWriter

from meg_gym import evaluation
from meg_gym.config import PowerControlConfig

FAIR_SHARE = 3  # observation index: energy left / (blocks left x peak block energy)


@dataclass
class Args:
    exp_name: str = Path(__file__).stem
    """name of this experiment"""
    seed: int = 1
    """seed of the run (the policy is deterministic; evaluation seeds are fixed by --eval-seed)"""
    total_timesteps: int = 0
    """unused: a static policy has nothing to train (kept so every baseline takes the same flags)"""
    track: bool = False
    """log to Weights & Biases (offline unless WANDB_API_KEY is set)"""
    wandb_project_name: str = "meg-gym"
    """the W&B project"""
    wandb_entity: str | None = None
    """the W&B entity (team)"""
    capture_video: bool = False
    """save GIFs of a few test episodes to videos/{run_name}/"""
    save_model: bool = False
    """nothing to save for a static policy; accepted for a uniform interface"""
    run_name: str | None = None
    """run name; default {env_id}__{exp_name}__{seed}__{time}"""
    env_id: str = "MEG-PowerControl-v0"
    """the environment id"""
    env: PowerControlConfig = field(default_factory=PowerControlConfig)
    """environment settings (the split is always "test" for evaluation)"""
    eval_episodes: int = evaluation.DEFAULT_EVAL_EPISODES
    """test-split episodes"""
    eval_seed: int = evaluation.EVAL_SEED
    """first evaluation seed"""


def static_policy(obs: np.ndarray, env) -> np.ndarray:
    return np.clip(obs[:, FAIR_SHARE], 0.0, 1.0)[:, None]


if __name__ == "__main__":
    args = tyro.cli(Args)
    run_name = args.run_name or f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = Path("runs") / run_name
    tracking = (
        evaluation.start_tracking(args, run_name, args.wandb_project_name, args.wandb_entity) if args.track else None
    )
    writer = SummaryWriter(str(run_dir))
    kwargs = evaluation.env_kwargs(args.env)
    result = evaluation.evaluate_policy(static_policy, args.env_id, kwargs, args.eval_episodes, args.eval_seed)
    path = evaluation.write_eval(run_dir / "eval.json", result, "static", run_name, asdict(args))
    evaluation.log_eval(writer, result)
    print(f"static power: test-split PSNR {result['psnr']['mean']:.2f} dB over {result['episodes']} episodes -> {path}")
    if args.capture_video:
        evaluation.record_gifs(static_policy, args.env_id, kwargs, Path("videos") / run_name, seed=args.eval_seed)
    writer.close()
    if tracking is not None:
        tracking.finish()
