"""The held-out evaluation protocol and the eval.json schema every baseline writes.

Protocol: episodes on the TEST prompt split, episode ``j`` seeded with ``seed + j`` (default seed
:data:`EVAL_SEED`), run in the native vector env in batches. An episode is fully determined by its seed and
the policy's actions, so the figures do not depend on the batch size. Learned policies act deterministically
(their mean action).

A policy is any callable ``policy(obs, env) -> actions``: ``obs`` is the (num_envs, obs_dim) batch and
``env`` the vector env (causal policies ignore it; the non-causal oracle reads the episode's channel from it);
it returns powers as fractions of peak, shape (num_envs, 1) or (num_envs,).

eval.json (``schema == "meg-gym-eval/1"``), the keys :func:`validate_eval` checks:

| key | meaning |
|---|---|
| schema | "meg-gym-eval/1" |
| env_id, env_kwargs | the environment and the settings given to it (``split`` is always "test") |
| env_config | every setting of the environment as it ran, defaults included (so a later change of a default cannot make old results ambiguous) |
| cache_sha256 | SHA-256 of the latent cache's tensor file: the prompts and latents the episodes ran on (absent in files written before 2026-11-28) |
| policy | name of the policy or algorithm, e.g. "ppo", "static" |
| run_name | the training run (``{env_id}__{exp_name}__{seed}__{time}``) or the policy name |
| episodes, seeds | number of episodes and the seed of each |
| quality, psnr, ssim, energy_used | each ``{"mean", "std", "per_episode": [...]}``; quality is the reward metric |
| energy_budget | the episode's budget (same for every episode) |
| git_commit, meg_gym_version, created | provenance |
| args | the run's arguments (any JSON) |
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from meg_gym.config import PowerControlConfig

__all__ = [
    "DEFAULT_EVAL_EPISODES",
    "EVAL_SEED",
    "SCHEMA",
    "PolicyRunArgs",
    "evaluate_multi_cell_policy",
    "evaluate_policy",
    "run_policy",
    "git_commit",
    "validate_eval",
    "write_eval",
]

SCHEMA = "meg-gym-eval/1"
EVAL_SEED = 1_000_000
DEFAULT_EVAL_EPISODES = 1024
_METRICS = ("quality", "psnr", "ssim", "energy_used")


def git_commit() -> str:
    """The current commit (with "-dirty" if tracked files outside docs/ have local changes), or "unknown"."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        # outputs written into the checkout (untracked files, and the measured pages under docs/) do not make
        # the code differ from the commit
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)docs"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def evaluate_policy(
    policy: Callable[[np.ndarray, Any], Any],
    env_id: str = "MEG-PowerControl-v0",
    env_kwargs: dict[str, Any] | None = None,
    episodes: int = DEFAULT_EVAL_EPISODES,
    seed: int = EVAL_SEED,
    num_envs: int = 64,
) -> dict[str, Any]:
    """Run ``episodes`` test-split episodes and return the per-episode metrics (the body of eval.json)."""
    import gymnasium as gym

    import meg_gym  # noqa: F401  (registers the environments)
    from meg_gym.cache import cache_fingerprint

    env_kwargs = {k: v for k, v in (env_kwargs or {}).items() if k != "split"}
    num_envs = max(1, min(num_envs, episodes))
    env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", split="test", **env_kwargs)
    per_episode: dict[str, list] = {k: [] for k in _METRICS}
    budget = None
    config = getattr(env.unwrapped, "config", None)
    try:
        for start in range(0, episodes, num_envs):
            obs, _ = env.reset(seed=seed + start)
            done = np.zeros(num_envs, dtype=bool)
            final: dict[str, np.ndarray] = {}
            while not done.all():
                actions = np.asarray(policy(obs, env), dtype=np.float32).reshape(num_envs, 1)
                obs, _, terminated, truncated, info = env.step(actions)
                ended = (terminated | truncated) & ~done
                for key in _METRICS:
                    if key in info:
                        final.setdefault(key, np.zeros(num_envs))[ended] = info[key][ended]
                budget = float(info["energy_budget"][ended][0]) if ended.any() else budget
                done |= ended
            count = min(num_envs, episodes - start)
            for key in _METRICS:
                per_episode[key].extend(final[key][:count].tolist())
    finally:
        env.close()
    summary = {
        key: {"mean": float(np.mean(v)), "std": float(np.std(v)), "per_episode": v} for key, v in per_episode.items()
    }
    return {
        "schema": SCHEMA,
        "env_id": env_id,
        "env_kwargs": {**env_kwargs, "split": "test"},
        "env_config": config.to_dict() if config is not None else None,
        "cache_sha256": cache_fingerprint(getattr(config, "cache_dir", None)),
        "episodes": episodes,
        "seeds": [seed + j for j in range(episodes)],
        **summary,
        "energy_budget": budget,
    }


MULTI_CELL_ID = "MEG-MultiCell-v0"


def config_class(env_id: str) -> type:
    """The settings dataclass of an environment id."""
    if env_id == MULTI_CELL_ID:
        from meg_gym.envs.multi_cell import MultiCellConfig

        return MultiCellConfig
    return PowerControlConfig


def evaluate_multi_cell_policy(
    policy: Callable[[np.ndarray, Any], Any],
    env_kwargs: dict[str, Any] | None = None,
    episodes: int = DEFAULT_EVAL_EPISODES,
    seed: int = EVAL_SEED,
    num_envs: int = 64,
) -> dict[str, Any]:
    """The held-out protocol on MEG-MultiCell-v0: the eval.json body, plus every agent's own figures.

    ``policy(obs, env)`` maps observations (num_envs, N, obs_dim) to powers (num_envs, N). An episode's
    quality, psnr, ssim and energy_used are the means over its N links; ``per_agent`` keeps each link's.
    """
    from meg_gym.cache import cache_fingerprint
    from meg_gym.envs.multi_cell import MultiCellVectorEnv

    env_kwargs = {k: v for k, v in (env_kwargs or {}).items() if k != "split"}
    num_envs = max(1, min(num_envs, episodes))
    env = MultiCellVectorEnv(num_envs=num_envs, split="test", **env_kwargs)
    per_episode: dict[str, list] = {k: [] for k in _METRICS}
    per_agent: dict[str, list] = {k: [] for k in _METRICS}
    for start in range(0, episodes, num_envs):
        obs, _ = env.reset(seed=seed + start)
        info: dict[str, Any] = {}
        while "final_info" not in info:
            actions = np.asarray(policy(obs, env), dtype=np.float64).reshape(num_envs, env.num_agents)
            obs, _, _, _, info = env.step(actions)
        count = min(num_envs, episodes - start)
        for key in _METRICS:
            values = np.asarray(info["final_info"][key][:count], dtype=np.float64)
            per_episode[key].extend(values.mean(axis=1).tolist())
            per_agent[key].append(values)
    budget = float(info["final_info"]["energy_budget"][0, 0])
    summary = {
        k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "per_episode": v} for k, v in per_episode.items()
    }
    agents = {k: np.concatenate(v) for k, v in per_agent.items()}
    return {
        "schema": SCHEMA,
        "env_id": MULTI_CELL_ID,
        "env_kwargs": {**env_kwargs, "split": "test"},
        "env_config": env.config.to_dict(),
        "cache_sha256": cache_fingerprint(env.config.cache_dir),
        "episodes": episodes,
        "seeds": [seed + j for j in range(episodes)],
        **summary,
        "energy_budget": budget,
        "per_agent": {k: {"mean": v.mean(axis=0).tolist(), "std": v.std(axis=0).tolist()} for k, v in agents.items()},
    }


def validate_eval(data: dict[str, Any]) -> None:
    """Raise ValueError naming the first problem if ``data`` is not a valid eval.json body."""
    if data.get("schema") != SCHEMA:
        raise ValueError(f"eval.json schema must be {SCHEMA!r}, got {data.get('schema')!r}")
    required = {
        "env_id": str,
        "env_kwargs": dict,
        "policy": str,
        "run_name": str,
        "episodes": int,
        "seeds": list,
        "energy_budget": float,
        "git_commit": str,
        "created": str,
        "meg_gym_version": str,
        "args": dict,
    }
    for key, kind in required.items():
        if key not in data:
            raise ValueError(f"eval.json is missing {key!r}")
        if not isinstance(data[key], kind):
            raise ValueError(f"eval.json {key!r} must be {kind.__name__}, got {type(data[key]).__name__}")
    if "cache_sha256" in data and not (isinstance(data["cache_sha256"], str) and len(data["cache_sha256"]) == 64):
        raise ValueError("eval.json 'cache_sha256' must be the 64-hex-digit SHA-256 of the cache's tensor file")
    if data["env_kwargs"].get("split") != "test":
        raise ValueError("eval.json must come from the test split (env_kwargs['split'] == 'test')")
    n = data["episodes"]
    if n < 1 or len(data["seeds"]) != n:
        raise ValueError(f"eval.json has {len(data['seeds'])} seeds for {n} episodes")
    for key in _METRICS:
        block = data.get(key)
        if not isinstance(block, dict) or not {"mean", "std", "per_episode"} <= set(block):
            raise ValueError(f"eval.json {key!r} must be a dict with mean, std and per_episode")
        values = np.asarray(block["per_episode"], dtype=np.float64)
        if values.shape != (n,) or not np.all(np.isfinite(values)):
            raise ValueError(f"eval.json {key!r} must hold {n} finite per-episode values")
        if not np.isclose(block["mean"], values.mean(), rtol=1e-9, atol=1e-9):
            raise ValueError(f"eval.json {key!r} mean does not match its per-episode values")


def write_eval(path: Path | str, result: dict[str, Any], policy: str, run_name: str, args: dict[str, Any]) -> Path:
    """Add provenance to an :func:`evaluate_policy` result, validate it and write it as JSON."""
    from meg_gym import __version__

    data = {
        **result,
        "policy": policy,
        "run_name": run_name,
        "git_commit": git_commit(),
        "meg_gym_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "args": json.loads(json.dumps(args, default=str)),
    }
    validate_eval(data)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def _write_gif(frames: list[np.ndarray], path: Path) -> Path:
    """An animated GIF (Pillow), 0.4 s per frame, looping."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=400, loop=0)
    return path


def record_gifs(
    policy: Callable[[np.ndarray, Any], Any],
    env_id: str,
    env_kwargs: dict[str, Any],
    folder: Path | str,
    episodes: int = 3,
    seed: int = EVAL_SEED,
) -> list[Path]:
    """Animated GIFs (Pillow) of test episodes: the env's rgb_array frames, one per block."""
    import gymnasium as gym

    import meg_gym  # noqa: F401

    kwargs = {**{k: v for k, v in env_kwargs.items() if k != "split"}, "split": "test"}
    env = gym.make_vec(env_id, num_envs=1, vectorization_mode="vector_entry_point", render_mode="rgb_array", **kwargs)
    paths = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        frames, done = [env.render()[0]], False
        while not done:
            obs, _, terminated, truncated, _ = env.step(np.asarray(policy(obs, env), dtype=np.float32).reshape(1, 1))
            frames.append(env.render()[0])
            done = bool(terminated[0] or truncated[0])
        paths.append(_write_gif(frames, Path(folder) / f"episode-{e}.gif"))
    env.close()
    return paths


def record_multi_cell_gifs(
    policy: Callable[[np.ndarray, Any], Any],
    env_kwargs: dict[str, Any],
    folder: Path | str,
    episodes: int = 2,
    seed: int = EVAL_SEED,
) -> list[Path]:
    """Animated GIFs of MEG-MultiCell test episodes (every link's frame, one frame per block)."""
    from meg_gym.envs.multi_cell import parallel_env

    kwargs = {**{k: v for k, v in env_kwargs.items() if k != "split"}, "split": "test"}
    env = parallel_env(render_mode="rgb_array", **kwargs)
    paths = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        frames = [env.render()]
        while env.agents:
            batch = np.stack([obs[a] for a in env.agents])[None]
            powers = np.asarray(policy(batch, env), dtype=np.float64).reshape(-1)
            obs, *_ = env.step({a: powers[i : i + 1] for i, a in enumerate(env.agents)})
            frames.append(env.render())
        paths.append(_write_gif(frames, Path(folder) / f"episode-{e}.gif"))
    return paths


def start_tracking(args: Any, run_name: str, project: str, entity: str | None) -> Any:
    """Start a Weights & Biases run that mirrors tensorboard; offline when no API key is set, so it never asks."""
    import os

    try:
        import wandb
    except ImportError as err:
        raise SystemExit('--track needs Weights & Biases: pip install "meg-gym[train]"') from err
    if not os.environ.get("WANDB_API_KEY"):
        os.environ.setdefault("WANDB_MODE", "offline")
    return wandb.init(
        project=project, entity=entity, sync_tensorboard=True, config=asdict(args), name=run_name, save_code=True
    )


def env_kwargs(config: Any) -> dict[str, Any]:
    """The fields of an environment config that differ from its defaults (what ``gym.make`` needs), no split."""
    default = type(config)()
    return {k: v for k, v in config.to_dict().items() if v != getattr(default, k) and k != "split"}


def log_eval(writer: Any, result: dict[str, Any], step: int = 0) -> None:
    """The evaluation's means as tensorboard scalars (eval/psnr, eval/ssim, ...)."""
    for key in _METRICS:
        writer.add_scalar(f"eval/{key}", result[key]["mean"], step)
    writer.add_scalar("charts/episodic_return", result["quality"]["mean"], step)
    writer.add_scalar("charts/image_quality_psnr", result["psnr"]["mean"], step)


@dataclass
class PolicyRunArgs:
    """The flags of the baselines that do not learn (static power, heuristics, oracle); each file extends it."""

    exp_name: str = "policy"
    """name of this experiment"""
    seed: int = 1
    """seed of the run (the policy is deterministic; evaluation seeds are fixed by --eval-seed)"""
    total_timesteps: int = 0
    """unused: nothing to train (kept so every baseline takes the same flags)"""
    track: bool = False
    """log to Weights & Biases (offline unless WANDB_API_KEY is set)"""
    wandb_project_name: str = "meg-gym"
    """the W&B project"""
    wandb_entity: str | None = None
    """the W&B entity (team)"""
    capture_video: bool = False
    """save GIFs of a few test episodes to videos/{run_name}/"""
    save_model: bool = False
    """nothing to save for a fixed policy; accepted for a uniform interface"""
    run_name: str | None = None
    """run name; default {env_id}__{exp_name}__{seed}__{time}"""
    env_id: str = "MEG-PowerControl-v0"
    """the environment id"""
    env: PowerControlConfig = field(default_factory=PowerControlConfig)
    """environment settings (the split is always "test" for evaluation)"""
    eval_episodes: int = DEFAULT_EVAL_EPISODES
    """test-split episodes"""
    eval_seed: int = EVAL_SEED
    """first evaluation seed"""


def run_policy(args: PolicyRunArgs, policy: Callable[[np.ndarray, Any], Any], policy_name: str) -> dict[str, Any]:
    """Evaluate a fixed policy under the protocol: eval.json, tensorboard, optional W&B and GIFs."""
    from torch.utils.tensorboard import SummaryWriter

    run_name = args.run_name or f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = Path("runs") / run_name
    tracking = start_tracking(args, run_name, args.wandb_project_name, args.wandb_entity) if args.track else None
    writer = SummaryWriter(str(run_dir))
    kwargs = env_kwargs(args.env)
    if args.env_id == MULTI_CELL_ID:
        result = evaluate_multi_cell_policy(policy, kwargs, args.eval_episodes, args.eval_seed)
    else:
        result = evaluate_policy(policy, args.env_id, kwargs, args.eval_episodes, args.eval_seed)
    path = write_eval(run_dir / "eval.json", result, policy_name, run_name, asdict(args))
    log_eval(writer, result)
    print(
        f"{policy_name}: test-split PSNR {result['psnr']['mean']:.2f} dB over {result['episodes']} episodes -> {path}"
    )
    if args.capture_video and args.env_id == MULTI_CELL_ID:
        record_multi_cell_gifs(policy, kwargs, Path("videos") / run_name, seed=args.eval_seed)
    elif args.capture_video:
        record_gifs(policy, args.env_id, kwargs, Path("videos") / run_name, seed=args.eval_seed)
    writer.close()
    if tracking is not None:
        tracking.finish()
    return result
