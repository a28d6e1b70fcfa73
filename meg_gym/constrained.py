"""What the constrained learners of ``baselines/`` share with the environments: training envs, costs, final checks.

Every constrained learner (``baselines/ppo_lagrangian.py``, ``cpo.py``, ``focops.py``, ``sac_lagrangian.py``,
``cvpo.py``) runs on any environment whose step info carries a ``costs`` dict and whose vector env exposes
``cost_limits``: MEG-SplitControl-v0, and meg_gym/TabularCMDP-v0, the small CMDP whose optimum is known. The
learners read their costs through :func:`step_costs`, divide each by its limit (a session meets a limit when its
normalised cost sums to at most 1), and end with :func:`final_check`, which evaluates the trained policy on the
test prompts (MEG environments, ``eval.json``) or exactly against the LP optimum (the tabular CMDP,
``exact_check.json``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from meg_gym import evaluation

TABULAR_ENV_ID = "meg_gym/TabularCMDP-v0"

__all__ = [
    "COST_TOLERANCE",
    "EXACT_CHECKS",
    "RETURN_TOLERANCE",
    "TABULAR_ENV_ID",
    "EpisodeTracker",
    "TrainingCurves",
    "cost_limits",
    "exact_check_passes",
    "final_check",
    "joint_probabilities",
    "make_training_envs",
    "step_costs",
]


def make_training_envs(env_id: str, num_envs: int, config: Any = None, split: str = "train") -> gym.vector.VectorEnv:
    """``num_envs`` environments with same-step autoreset, natively batched where the id has a vector entry point.

    ``config`` (a learner's ``--env.*`` settings) applies when it is the id's own config class; a config of another
    class must be at its defaults (a learner's Args default to MEG-SplitControl-v0's settings), else this says so.
    MEG environments train on ``split`` (the train prompts).
    """
    spec = gym.spec(env_id)
    kwargs: dict[str, Any] = {}
    if env_id.startswith("MEG-"):
        own = evaluation.config_class(env_id)
        if config is not None and isinstance(config, own):
            kwargs = evaluation.env_kwargs(config)
        elif config is not None and evaluation.env_kwargs(config):
            raise SystemExit(f"--env.* settings are {type(config).__name__}'s; {env_id} takes {own.__name__}")
        kwargs["split"] = split
    elif config is not None and evaluation.env_kwargs(config):
        raise SystemExit(f"--env.* settings are {type(config).__name__}'s; {env_id} takes none from the command line")
    if spec.vector_entry_point is None:
        return gym.make_vec(
            env_id, num_envs=num_envs, vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, **kwargs,
        )  # fmt: skip
    return gym.make_vec(
        env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", autoreset_mode=AutoresetMode.SAME_STEP,
        **kwargs,
    )  # fmt: skip


def cost_limits(envs: gym.vector.VectorEnv) -> dict[str, float]:
    """Each cost's episode limit, by name, in the order the environment lists them."""
    limits = getattr(envs.unwrapped, "cost_limits", None)
    if limits is None:
        try:
            limits = envs.get_attr("cost_limits")[0]
        except AttributeError:
            limits = None
    if not limits:
        raise SystemExit(
            "this environment has no cost_limits: the constrained learners need a constrained environment "
            "(info['costs'] per step and cost_limits), such as MEG-SplitControl-v0"
        )
    return {str(k): float(v) for k, v in dict(limits).items()}


def step_costs(infos: dict[str, Any], names: list[str] | tuple[str, ...], num_envs: int) -> np.ndarray:
    """``(num_envs, costs)``: this step's costs in the order of ``names``, from ``infos`` or, where an episode ended
    with same-step autoreset, from ``infos["final_info"]``. Zero where an environment reported no cost."""
    out = np.zeros((num_envs, len(names)))
    found = False
    for source in (infos, infos.get("final_info")):
        if not source or "costs" not in source:
            continue
        found = True
        mask = np.asarray(source.get("_costs", np.ones(num_envs, dtype=bool)), dtype=bool)
        for k, name in enumerate(names):
            out[mask, k] = np.asarray(source["costs"][name], dtype=np.float64)[mask]
    if not found and infos:
        raise KeyError(f"the step info has no 'costs' (keys: {sorted(infos)}); the learner needs a constrained env")
    return out


def joint_probabilities(head_probs: list[np.ndarray]) -> np.ndarray:
    """The joint distribution ``(batch, prod(nvec))`` of independent heads ``[(batch, n_i)]``, in the row-major
    order of ``np.ravel_multi_index`` over the MultiDiscrete action (a single head is returned as is)."""
    joint = head_probs[0]
    for probs in head_probs[1:]:
        joint = (joint[:, :, None] * probs[:, None, :]).reshape(joint.shape[0], -1)
    return joint


def final_check(
    env_id: str,
    run_dir: Path,
    policy: Callable[[np.ndarray, Any], np.ndarray],
    probabilities: Callable[[np.ndarray], np.ndarray],
    policy_name: str,
    run_name: str,
    args: Any,
    config: Any = None,
) -> dict[str, Any]:
    """Evaluate the trained agent and write what it measured; returns the result.

    MEG environments: the deterministic ``policy(obs, env)`` on the held-out test prompts
    (``evaluation.evaluate_policy``) -> ``run_dir/eval.json``; with ``args.validation_episodes`` (tuning, trained
    on ``--train-split fit``) also on the validation prompts -> ``run_dir/validation.json``. The tabular CMDP: the stochastic policy's exact
    return and costs, from ``probabilities(obs) -> (batch, actions)``, against the LP optimum ->
    ``run_dir/exact_check.json``.
    """
    run_dir = Path(run_dir)
    args_dict = asdict(args) if is_dataclass(args) else dict(vars(args))
    if env_id == TABULAR_ENV_ID:
        env = gym.make(env_id)
        problem = env.unwrapped.problem
        obs = problem.observations()
        table = np.asarray(probabilities(obs.reshape(-1, obs.shape[-1])), dtype=np.float64)
        table = table.reshape(*obs.shape[:2], -1)
        ret, costs = problem.evaluate(table / table.sum(-1, keepdims=True))
        optimum = problem.solve()
        result = {
            "env_id": env_id,
            "policy": policy_name,
            "run_name": run_name,
            "return": ret,
            "costs": dict(zip(problem.cost_limits, costs.tolist(), strict=True)),
            "cost_limits": problem.cost_limits,
            "optimum_return": optimum["return"],
            "optimum_costs": dict(zip(problem.cost_limits, optimum["costs"].tolist(), strict=True)),
            "unconstrained_return": problem.unconstrained()["return"],
            "args": args_dict,
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "exact_check.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(
            f"exact return {ret:.4f} (LP optimum {optimum['return']:.4f}); costs "
            + ", ".join(f"{k} {v:.4f} (limit {problem.cost_limits[k]:.4f})" for k, v in result["costs"].items())
        )
        return result
    kwargs = evaluation.env_kwargs(config) if config is not None else {}
    if getattr(args, "validation_episodes", 0):  # tuning: score on the held-out validation prompts as well
        validation = evaluation.evaluate_policy(
            policy, env_id, kwargs, episodes=args.validation_episodes, seed=args.eval_seed, split="validation"
        )
        evaluation.write_validation(run_dir / "validation.json", validation, policy_name, run_name)
    result = evaluation.evaluate_policy(policy, env_id, kwargs, episodes=args.eval_episodes, seed=args.eval_seed)
    path = evaluation.write_eval(run_dir / "eval.json", result, policy_name, run_name, args_dict)
    limits = result.get("cost_limits", {})
    print(
        f"test-split PSNR {result['psnr']['mean']:.2f} dB; "
        + ", ".join(f"{k} {result[k]['mean']:.2f} (limit {v:g})" for k, v in limits.items() if k in result)
        + f" over {result['episodes']} sessions -> {path}"
    )
    return result


class EpisodeTracker:
    """Sums each environment's reward and normalised costs over its episode; hands over the episodes that end."""

    def __init__(self, num_envs: int, num_costs: int):
        self.returns = np.zeros(num_envs)
        self.costs = np.zeros((num_envs, num_costs))
        self.lengths = np.zeros(num_envs, dtype=np.int64)

    def step(self, rewards: np.ndarray, costs: np.ndarray, ended: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add one step; returns (returns, normalised costs) of the episodes that ended on it."""
        self.returns += rewards
        self.costs += costs
        self.lengths += 1
        done = np.flatnonzero(ended)
        finished = self.returns[done].copy(), self.costs[done].copy()
        self.returns[done], self.costs[done], self.lengths[done] = 0.0, 0.0, 0
        return finished


class TrainingCurves:
    """The learning curves and training-time violations of a run: one JSON line per update in ``curves.jsonl``.

    Each line has the environment steps so far, and over the training episodes that ended since the last line:
    the mean return, each cost's mean over its limit, and the share of episodes above each limit; and, summed
    over every training episode so far, each cost's violation ``max(0, cost / limit - 1)`` and the number of
    episodes that broke any limit (the violations the learner incurred while exploring). The same figures go
    to tensorboard under ``charts/`` and ``costs/``.
    """

    def __init__(self, run_dir: Path | str, writer: Any, cost_names: list[str] | tuple[str, ...], resume: bool = False):
        self.path = Path(run_dir) / "curves.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer, self.cost_names = writer, list(cost_names)
        self.cumulative = np.zeros(len(self.cost_names))
        self.violating_episodes = 0
        if resume and self.path.exists():
            lines = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            if lines:
                self.cumulative = np.asarray(lines[-1]["cumulative_violation"], dtype=np.float64)
                self.violating_episodes = int(lines[-1]["cumulative_violating_episodes"])
        elif self.path.exists():
            self.path.unlink()

    def add(self, global_step: int, returns: list[np.ndarray], costs: list[np.ndarray]) -> dict[str, Any] | None:
        """Record the episodes ``(returns, normalised costs)`` that ended since the last call; None if none did."""
        if not returns or sum(len(r) for r in returns) == 0:
            return None
        returns_all, costs_all = np.concatenate(returns), np.concatenate(costs)
        over = np.maximum(costs_all - 1.0, 0.0)
        self.cumulative += over.sum(0)
        self.violating_episodes += int((costs_all > 1.0 + 1e-9).any(1).sum())
        row = {
            "step": int(global_step),
            "episodes": len(returns_all),
            "return": float(returns_all.mean()),
            "cost_over_limit": costs_all.mean(0).tolist(),
            "violation_share": (costs_all > 1.0 + 1e-9).mean(0).tolist(),
            "cumulative_violation": self.cumulative.tolist(),
            "cumulative_violating_episodes": self.violating_episodes,
        }
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.writer is not None:
            self.writer.add_scalar("charts/episodic_return", row["return"], global_step)
            self.writer.add_scalar("costs/cumulative_violating_episodes", self.violating_episodes, global_step)
            for k, name in enumerate(self.cost_names):
                self.writer.add_scalar(f"costs/{name}_over_limit", row["cost_over_limit"][k], global_step)
                self.writer.add_scalar(f"costs/{name}_violation_share", row["violation_share"][k], global_step)
                self.writer.add_scalar(f"costs/{name}_cumulative_violation", self.cumulative[k], global_step)
        return row


# The exact check (tests/test_constrained_learners.py, scripts/exact_cmdp_check.py): each learner's file and its
# flags on meg_gym/TabularCMDP-v0 (small batches; the defaults are MEG-SplitControl-v0's). The check passes when
# the learned stochastic policy's return is within RETURN_TOLERANCE of the LP optimum's and each cost at most
# COST_TOLERANCE above its limit.
RETURN_TOLERANCE = 0.05
COST_TOLERANCE = 0.05
EXACT_CHECKS: dict[str, tuple[str, list[str]]] = {
    "ppo-lagrangian": (
        "ppo_lagrangian.py",
        "--total-timesteps 100000 --num-envs 32 --num-steps 5 --ent-coef 0.05 --multiplier-lr 0.02".split(),
    ),
    "cpo": ("cpo.py", "--total-timesteps 100000 --num-envs 64 --num-steps 5".split()),
    "cvpo": ("cvpo.py", "--total-timesteps 100000 --num-envs 32 --learning-starts 1000 --tau 0.05".split()),
    "focops": (
        "focops.py",
        "--num-envs 256 --num-steps 5 --num-minibatches 4 --total-timesteps 300000 --learning-rate 1e-3 --ent-coef 0.1 "
        "--nu-lr 0.2".split(),
    ),
    "sac-lagrangian": (
        "sac_lagrangian.py",
        "--total-timesteps 40000 --num-envs 32 --gradient-steps 4 --learning-starts 1000 --multiplier-lr 0.05 "
        "--target-entropy-scale 0.05 --alpha 0.02 --tau 0.02 --q-lr 1e-3 --policy-lr 1e-3".split(),
    ),
    "ppo-pid-lagrangian": (
        "ppo_lagrangian.py",
        "--multiplier-update pid --total-timesteps 100000 --num-envs 32 --num-steps 5 --ent-coef 0.05 --pid-ki 0.02".split(),
    ),
}


def exact_check_passes(check: dict[str, Any]) -> bool:
    """Whether an exact_check.json meets the tolerances above."""
    if check["return"] < (1 - RETURN_TOLERANCE) * check["optimum_return"]:
        return False
    return all(check["costs"][k] <= (1 + COST_TOLERANCE) * limit for k, limit in check["cost_limits"].items())
