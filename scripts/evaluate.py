"""Evaluate any power-control policy under the held-out protocol and write eval.json.

    python scripts/evaluate.py --policy static                        # a fixed baseline: static, threshold,
    python scripts/evaluate.py --policy oracle --env.budget-fraction 0.1   # channel-inversion, oracle
    python scripts/evaluate.py --policy runs/NAME                     # a learner run saved with --save-model
    python scripts/evaluate.py --policy my_package.policies:greedy    # your callable policy(obs, env)
    python scripts/evaluate.py --policy path/to/file.py:greedy --name greedy --seed 2
    python scripts/evaluate.py --env-id MEG-MultiCell-v0 --policy sinr-threshold --multi-cell.num-links 6
    python scripts/evaluate.py --env-id MEG-MultiCell-v0 --policy runs/IPPO_RUN   # an ippo_multi_cell.py run

The protocol is :mod:`meg_gym.evaluation`'s: TEST prompts, episode j seeded with --eval-seed + j, run in the
native vector env. A callable gets the (num_envs, obs_dim) observation batch and the vector env and returns
powers in [0, 1], shape (num_envs, 1) or (num_envs,). A name ``module:attr`` may also point at a factory: if
``attr`` takes no arguments it is called once and what it returns is the policy.

On MEG-MultiCell-v0 the fixed policies are static, full-power and sinr-threshold, learner runs are IPPO runs,
settings come from --multi-cell.*, and a callable maps observations (num_envs, N, obs_dim) to powers
(num_envs, N).

A learner run folder holds model.json (the algorithm and its arguments) and model.safetensors (PPO) or
actor.safetensors (DDPG, TD3, SAC); only these two files are read, so loading runs no stored code. The
environment settings default to the run's training settings; --env.* flags that differ from them are used
instead, with a note. The result goes to --output (default runs/eval__{name}__{seed}/eval.json), with
``policy`` set to --name and the training seed in ``args``, ready for scripts/leaderboard.py.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from meg_gym import evaluation
from meg_gym.config import PowerControlConfig, config_from_kwargs
from meg_gym.envs.multi_cell import MultiCellConfig

ROOT = Path(__file__).resolve().parent.parent
FIXED_POLICIES = ("static", "channel-inversion", "threshold", "oracle")
MULTI_CELL_FIXED = ("static", "full-power", "sinr-threshold")
LEARNER_FILES = {
    "ippo": "ippo_multi_cell.py",
    "ppo": "ppo_continuous_action.py",
    "ddpg": "ddpg_continuous_action.py",
    "td3": "td3_continuous_action.py",
    "sac": "sac_continuous_action.py",
}
WEIGHT_FILES = {"ppo": "model.safetensors", "ippo": "model.safetensors", "ddpg": "actor.safetensors", "td3": "actor.safetensors",
                "sac": "actor.safetensors"}  # fmt: skip


@dataclass
class Args:
    policy: str
    """a fixed baseline (static, channel-inversion, threshold, oracle), a learner run folder saved with
    --save-model, or a callable as module:attr or file.py:attr"""
    name: str | None = None
    """the policy's name in eval.json and on the leaderboard (default: derived from --policy)"""
    seed: int = 1
    """the training seed this policy came from (leaderboard statistics are across training seeds)"""
    env_id: str = "MEG-PowerControl-v0"
    """the environment id"""
    env: PowerControlConfig = field(default_factory=PowerControlConfig)
    """environment settings (the split is always "test"); a learner run's own settings when left at defaults"""
    multi_cell: MultiCellConfig = field(default_factory=MultiCellConfig)
    """the settings instead, when --env-id is MEG-MultiCell-v0"""
    eval_episodes: int = evaluation.DEFAULT_EVAL_EPISODES
    """test-split episodes"""
    eval_seed: int = evaluation.EVAL_SEED
    """first evaluation seed"""
    num_envs: int = 64
    """episodes run side by side (results do not depend on it)"""
    output: Path | None = None
    """where eval.json goes (default runs/eval__{name}__{seed}/eval.json)"""


def load_baseline_module(file_name: str) -> types.ModuleType:
    """Import a baselines/ file as a module (its training code sits under ``if __name__ == "__main__"``)."""
    path = ROOT / "baselines" / file_name
    spec = importlib.util.spec_from_file_location(f"meg_gym_baseline_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def fixed_policy(name: str, config: PowerControlConfig):
    if name == "static":
        return load_baseline_module("static_power.py").static_policy
    if name == "oracle":
        module = load_baseline_module("oracle.py")
        return module.make_policy(config.num_blocks, module.Args().bisection_steps)
    module = load_baseline_module("heuristics.py")
    return module.make_policy(module.Args(policy=name, env=config))


def env_config(values: dict[str, Any], config_class: type = PowerControlConfig) -> PowerControlConfig:
    """Settings from a stored dict (model.json's args["env"]); unknown names raise."""
    return config_from_kwargs(config_class, {k: v for k, v in values.items() if k != "split"})


def read_run(run_dir: Path) -> tuple[dict[str, Any], str, PowerControlConfig]:
    """A learner run's model.json: (its contents, the algorithm, the environment settings it trained on)."""
    meta_path = run_dir / "model.json"
    if not meta_path.is_file():
        raise SystemExit(
            f"{run_dir} has no model.json: it is not a learner run saved with --save-model. "
            f"Train with e.g. `python baselines/ppo_continuous_action.py --save-model --run-name {run_dir.name}`."
        )
    try:
        meta = json.loads(meta_path.read_text())
        run_args = meta["args"]
        exp_name = str(run_args.get("exp_name", ""))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise SystemExit(f"{meta_path} is not a valid model.json ({err}); re-save the run with --save-model") from err
    algorithm = meta.get("algorithm") or next((a for a in LEARNER_FILES if exp_name.startswith(a)), None)
    if algorithm not in LEARNER_FILES:
        raise SystemExit(f"{meta_path}: unknown algorithm {algorithm!r}; expected one of {list(LEARNER_FILES)}")
    config_class = MultiCellConfig if algorithm == "ippo" else PowerControlConfig
    return meta, algorithm, env_config(run_args.get("env", {}), config_class)


def learner_policy(run_dir: Path, meta: dict[str, Any], algorithm: str, env_id: str, config: PowerControlConfig):
    """The deterministic policy (the mean action) of a saved learner run."""
    import gymnasium as gym
    import torch
    from safetensors.torch import load_file

    weights = run_dir / WEIGHT_FILES[algorithm]
    if not weights.is_file():
        raise SystemExit(f"{run_dir} has no {weights.name}; re-run the {algorithm} baseline with --save-model")
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise SystemExit(
            f"{weights} could not be read ({err}); re-run the {algorithm} baseline with --save-model"
        ) from err
    module = load_baseline_module(LEARNER_FILES[algorithm])
    settings = types.SimpleNamespace(**{**dataclasses.asdict(module.Args()), **meta["args"]})
    if algorithm in ("ppo", "ippo"):
        net = module.Agent(int(meta.get("obs_dim", 4)), float(settings.init_log_std))
    else:
        probe = gym.make(env_id, **evaluation.env_kwargs(config))
        net = module.Actor(probe.observation_space)
        probe.close()
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise SystemExit(f"{weights} does not fit the {algorithm} network of this version: {err}") from err
    net.eval()

    def policy(obs: np.ndarray, env: Any) -> np.ndarray:
        if algorithm == "ippo":  # one shared policy over every agent's own observation
            flat = obs.reshape(-1, obs.shape[-1])
            with torch.no_grad():
                u = net.act(torch.as_tensor(flat, dtype=torch.float32)).numpy()
            return module.to_power(u, flat, settings.relative_action).reshape(obs.shape[:-1])
        with torch.no_grad():
            x = torch.as_tensor(obs, dtype=torch.float32)
            if algorithm == "ppo":
                return module.to_power(net.act(x).numpy(), obs, settings.relative_action)
            return module.to_power(net(x).numpy(), obs, settings)

    return policy


def callable_policy(spec: str):
    """``module:attr`` or ``path/to/file.py:attr``; an attribute that takes no arguments is a factory."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise SystemExit(f"--policy {spec!r} is not a fixed baseline, a run folder, or module:attr")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise SystemExit(f"--policy {spec!r}: no file {path}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module
        module_spec.loader.exec_module(module)
    else:
        sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise SystemExit(f"--policy {spec!r}: cannot import {target!r} ({err})") from err
    if not hasattr(module, attr):
        raise SystemExit(f"--policy {spec!r}: {target} has no attribute {attr!r}")
    policy = getattr(module, attr)
    if not callable(policy):
        raise SystemExit(f"--policy {spec!r}: {attr} is not callable")
    try:
        takes_nothing = not inspect.signature(policy).parameters
    except (TypeError, ValueError):
        takes_nothing = False
    return policy() if takes_nothing else policy


def resolve(args: Args) -> tuple[Any, str, PowerControlConfig, dict[str, Any]]:
    """(policy, name, environment config, provenance) for --policy."""
    multi_cell = args.env_id == evaluation.MULTI_CELL_ID
    config = args.multi_cell if multi_cell else args.env
    if multi_cell and args.policy in MULTI_CELL_FIXED:
        module = load_baseline_module("multi_cell_policies.py")
        policy = module.make_policy(module.Args(policy=args.policy, env=config))
        return policy, args.name or args.policy, config, {"kind": "fixed"}
    if not multi_cell and args.policy in FIXED_POLICIES:
        return fixed_policy(args.policy, config), args.name or args.policy, config, {"kind": "fixed"}
    run_dir = Path(args.policy)
    if run_dir.is_dir():
        meta, algorithm, train_config = read_run(run_dir)
        if (algorithm == "ippo") != multi_cell:
            raise SystemExit(f"{run_dir} is a {algorithm} run, not one for {args.env_id}; pass the matching --env-id")
        if config == type(config)():
            config = train_config
        elif config != train_config:
            changed = {k: v for k, v in config.to_dict().items() if v != getattr(train_config, k) and k != "split"}
            print(f"note: evaluating under settings that differ from training: {changed}")
        policy = learner_policy(run_dir, meta, algorithm, args.env_id, config)
        return policy, args.name or algorithm, config, {"kind": "learner", "run": str(run_dir)}
    return callable_policy(args.policy), args.name or args.policy.rpartition(":")[2], config, {"kind": "callable"}


def main(args: Args) -> dict[str, Any]:
    import meg_gym  # noqa: F401

    policy, name, config, source = resolve(args)
    kwargs = evaluation.env_kwargs(config)
    if args.env_id == evaluation.MULTI_CELL_ID:
        result = evaluation.evaluate_multi_cell_policy(
            policy, kwargs, args.eval_episodes, args.eval_seed, args.num_envs
        )
    else:
        result = evaluation.evaluate_policy(
            policy, args.env_id, kwargs, args.eval_episodes, args.eval_seed, args.num_envs
        )
    run_name = f"eval__{name}__{args.seed}"
    output = args.output or Path("runs") / run_name / "eval.json"
    stored_args = {**dataclasses.asdict(args), "env": config.to_dict(), "source": source}
    stored_args.pop("multi_cell")
    path = evaluation.write_eval(output, result, name, run_name, stored_args)
    print(f"{name}: test-split PSNR {result['psnr']['mean']:.2f} dB over {result['episodes']} episodes -> {path}")
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
