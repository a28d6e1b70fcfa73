"""The held-out evaluation protocol and the eval.json schema every baseline writes.

Protocol: episodes on the TEST prompt split, episode ``j`` seeded with ``seed + j`` (default seed
:data:`EVAL_SEED`), run in the native vector env in batches. An episode is fully determined by its seed and
the policy's actions, so the figures do not depend on the batch size. Learned policies act deterministically
(their mean action).

A policy is any callable ``policy(obs, env) -> actions``: ``obs`` is the (num_envs, obs_dim) batch and
``env`` the vector env (causal policies ignore it; the non-causal references read the episode's channel from it);
it returns powers as fractions of peak, shape (num_envs, 1) or (num_envs,) (on a constrained environment, actions
of its action space, shape (num_envs, 3)). On a multi-agent environment
(``multi_agent`` in :mod:`meg_gym.registry`) observations are (num_envs, num_agents, obs_dim) and powers
(num_envs, num_agents); an episode's figures are the means over its agents, and ``per_agent`` keeps each one's.
The protocol always computes every quality metric (``info_metrics`` is not passed on).

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
| ue_energy, deadline_miss, cost_limits | constrained environments (MEG-SplitControl-v0): each cost's sum per session, like the metrics above, and the limits they are held to; quality, psnr and ssim are then means over a session's requests and energy_used its ES energy |
| git_commit, meg_gym_version, created | provenance |
| args | the run's arguments (any JSON) |
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from meg_gym.config import PowerControlConfig
from meg_gym.registry import environment, load

__all__ = [
    "DEFAULT_EVAL_EPISODES",
    "EVAL_SEED",
    "SCHEMA",
    "SESSION_COSTS",
    "PolicyRunArgs",
    "config_class",
    "evaluate_policy",
    "git_commit",
    "load_saved_run",
    "mean_ci",
    "read_model_json",
    "record_gifs",
    "run_policy",
    "validate_eval",
    "write_eval",
]

SCHEMA = "meg-gym-eval/1"
EVAL_SEED = 1_000_000
DEFAULT_EVAL_EPISODES = 1024
_METRICS = ("quality", "psnr", "ssim", "energy_used")
SESSION_COSTS = ("ue_energy", "deadline_miss")  # constrained envs: each cost's sum per session


def mean_ci(values) -> list[float]:
    """[mean, low, high]: the mean of independent samples (e.g. sessions, or paired differences) and its normal 95%
    interval (NaN bounds for a single sample)."""
    values = np.asarray(values, dtype=np.float64)
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return [float(values.mean()), float(values.mean() - half), float(values.mean() + half)]


@functools.cache
def git_commit() -> str:
    """The commit of the code this process runs (with "-dirty" if tracked files outside docs/ have local changes).

    Read once, when this module is imported, so a long run that outlives a later edit or commit still names the
    code it started with. "unknown" outside a git checkout.
    """
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


git_commit()  # now, before the code on disk can change under a running process


def evaluate_policy(
    policy: Callable[[np.ndarray, Any], Any],
    env_id: str = "MEG-PowerControl-v0",
    env_kwargs: dict[str, Any] | None = None,
    episodes: int = DEFAULT_EVAL_EPISODES,
    seed: int = EVAL_SEED,
    num_envs: int = 64,
    split: str = "test",
) -> dict[str, Any]:
    """Run ``episodes`` test-split episodes and return the per-episode metrics (the body of eval.json).

    ``split="validation"`` scores on the prompts held out of "fit" instead, for tuning (see :func:`write_validation`);
    an eval.json always comes from "test".
    """
    from meg_gym.cache import cache_fingerprint

    spec = environment(env_id)
    env_kwargs = {k: v for k, v in (env_kwargs or {}).items() if k not in ("split", "info_metrics")}
    num_envs = max(1, min(num_envs, episodes))
    run = _run_multi_agent if spec.multi_agent else _run_sessions if spec.constrained else _run_single_agent
    env = spec.vector_type()(num_envs=num_envs, split=split, **env_kwargs)
    try:
        per_episode, budget, extra = run(env, policy, episodes, seed, num_envs)
    finally:
        env.close()
    summary = {
        key: {"mean": float(np.mean(v)), "std": float(np.std(v)), "per_episode": v} for key, v in per_episode.items()
    }
    return {
        "schema": SCHEMA,
        "env_id": env_id,
        "env_kwargs": {**env_kwargs, "split": split},
        "env_config": env.config.to_dict(),
        "cache_sha256": cache_fingerprint(env.config.cache_dir),
        # table-fidelity environments: the quality table the outcomes were read from
        **({"table_sha256": env.quality_table_sha256} if getattr(env, "quality_table_sha256", None) else {}),
        "episodes": episodes,
        "seeds": [seed + j for j in range(episodes)],
        **summary,
        "energy_budget": budget,
        **extra,
    }


def _run_single_agent(env: Any, policy: Callable, episodes: int, seed: int, num_envs: int):
    per_episode: dict[str, list] = {k: [] for k in _METRICS}
    budget = None
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
    return per_episode, budget, {}


def _run_sessions(env: Any, policy: Callable, episodes: int, seed: int, num_envs: int):
    """Constrained sessions: per episode, the mean of each quality metric over its requests and each cost's sum."""
    per_episode: dict[str, list] = {k: [] for k in (*_METRICS, *SESSION_COSTS)}
    budget = None
    shape = (num_envs, *env.single_action_space.shape)
    for start in range(0, episodes, num_envs):
        obs, _ = env.reset(seed=seed + start)
        sums: dict[str, np.ndarray] = {k: np.zeros(num_envs) for k in (*_METRICS, *SESSION_COSTS)}
        requests = 0
        while True:
            obs, _, terminated, _, info = env.step(np.asarray(policy(obs, env)).reshape(shape))
            requests += 1
            for key in ("quality", "psnr", "ssim"):
                sums[key] += info[key]
            for key in SESSION_COSTS:
                sums[key] += info["costs"][key]
            if terminated.all():
                sums["energy_used"] = info["session_es_energy_j"]
                budget = float(info["session_es_budget_j"][0])
                break
        count = min(num_envs, episodes - start)
        for key in per_episode:
            values = sums[key] if key in SESSION_COSTS or key == "energy_used" else sums[key] / requests
            per_episode[key].extend(values[:count].tolist())
    return per_episode, budget, {"cost_limits": dict(env.config.cost_limits)}


def _run_multi_agent(env: Any, policy: Callable, episodes: int, seed: int, num_envs: int):
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
    agents = {k: np.concatenate(v) for k, v in per_agent.items()}
    extra = {
        "per_agent": {k: {"mean": v.mean(axis=0).tolist(), "std": v.std(axis=0).tolist()} for k, v in agents.items()}
    }
    return per_episode, budget, extra


def config_class(env_id: str) -> type:
    """The settings dataclass of an environment id."""
    return environment(env_id).config_type()


def read_model_json(run_dir: Path | str) -> dict[str, Any]:
    """The model.json of a learner run saved with ``--save-model``: the algorithm, its file and its arguments.

    A missing or unreadable file raises SystemExit saying what is wrong and how to re-save the run.
    """
    run_dir = Path(run_dir)
    meta_path = run_dir / "model.json"
    if not meta_path.is_file():
        raise SystemExit(
            f"{run_dir} has no model.json: it is not a learner run saved with --save-model. "
            f"Train with e.g. `python baselines/ppo_continuous_action.py --save-model --run-name {run_dir.name}`."
        )
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta.get("args"), dict) or not isinstance(meta["args"].get("env", {}), dict):
            raise KeyError("args")
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise SystemExit(f"{meta_path} is not a valid model.json ({err}); re-save the run with --save-model") from err
    return meta


def load_saved_run(run_dir: Path | str, weights_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model.json's contents, the weights) of a learner run saved with ``--save-model``.

    Only model.json and the safetensors file are read, so loading a run executes no stored code. A missing or
    damaged file raises SystemExit saying what is wrong and how to re-save the run.
    """
    from safetensors.torch import load_file

    meta = read_model_json(run_dir)
    weights = Path(run_dir) / weights_name
    if not weights.is_file():
        raise SystemExit(f"{run_dir} has no {weights_name}; re-run the baseline with --save-model")
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise SystemExit(f"{weights} could not be read ({err}); re-run the baseline with --save-model") from err
    return meta, state


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


def check_tuning_splits(train_split: str, validation_episodes: int) -> None:
    """A learner may score on "validation" only if it did not train on it (train on "fit", not "train")."""
    if train_split not in ("train", "fit"):
        raise SystemExit(
            f"--train-split must be 'train' or 'fit' (train minus the validation prompts), got {train_split!r}"
        )
    if validation_episodes < 0:
        raise SystemExit(f"--validation-episodes must be >= 0, got {validation_episodes}")
    if validation_episodes and train_split != "fit":
        raise SystemExit(
            "--validation-episodes scores on the validation prompts, which --train-split train includes; "
            "train with --train-split fit to keep them held out"
        )


def write_validation(path: Path | str, result: dict[str, Any], policy: str, run_name: str) -> Path:
    """Write an :func:`evaluate_policy` result on the validation split (validation.json: for tuning, never a score)."""
    if result["env_kwargs"].get("split") != "validation":
        raise ValueError("validation.json must come from the validation split")
    data = {**result, "policy": policy, "run_name": run_name, "git_commit": git_commit()}
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
    """Animated GIFs (Pillow) of test episodes: the env's rgb_array frames, one per block (every agent's on one)."""
    spec = environment(env_id)
    kwargs = {**{k: v for k, v in env_kwargs.items() if k != "split"}, "split": "test"}
    if spec.multi_agent:  # the PettingZoo env draws every agent's link in one frame
        env = load(spec.env_class)(render_mode="rgb_array", **kwargs)
    else:
        env = spec.vector_type()(num_envs=1, render_mode="rgb_array", **kwargs)
    paths = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        frames, done = [_frame(env, spec.multi_agent)], False
        while not done:
            if spec.multi_agent:  # one batch of every agent's observation, as the vector env gives it
                batch = np.stack([obs[a] for a in env.agents])[None]
                powers = np.asarray(policy(batch, env), dtype=np.float64).reshape(-1)
                obs, *_ = env.step({a: powers[i : i + 1] for i, a in enumerate(env.agents)})
                done = not env.agents
            else:
                obs, _, terminated, truncated, _ = env.step(np.asarray(policy(obs, env), np.float32).reshape(1, 1))
                done = bool(terminated[0] or truncated[0])
            frames.append(_frame(env, spec.multi_agent))
        paths.append(_write_gif(frames, Path(folder) / f"episode-{e}.gif"))
    env.close()
    return paths


def _frame(env: Any, multi_agent: bool) -> np.ndarray:
    return env.render() if multi_agent else env.render()[0]


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
    """The flags of the baselines that do not learn (static power, heuristics, non-causal references); each file extends it."""

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
    """environment settings (the split is always "test" for evaluation); a multi-agent file narrows the type"""
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
    result = evaluate_policy(policy, args.env_id, kwargs, args.eval_episodes, args.eval_seed)
    path = write_eval(run_dir / "eval.json", result, policy_name, run_name, asdict(args))
    log_eval(writer, result)
    print(
        f"{policy_name}: test-split PSNR {result['psnr']['mean']:.2f} dB over {result['episodes']} episodes -> {path}"
    )
    if args.capture_video:
        record_gifs(policy, args.env_id, kwargs, Path("videos") / run_name, seed=args.eval_seed)
    writer.close()
    if tracking is not None:
        tracking.finish()
    return result
