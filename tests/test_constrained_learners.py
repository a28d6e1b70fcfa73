"""Every constrained learner of baselines/ reaches the known optimum of a small CMDP, and runs on MEG-SplitControl-v0.

The exact check: each learner trains on meg_gym/TabularCMDP-v0 (4 states, 3 actions, 5 steps, two costs whose
limits both bind at the optimum) and its stochastic policy is evaluated exactly (backward induction) against the
optimum of the linear program over occupancy measures. Tolerance (``meg_gym.constrained``): the return within 5%
of the LP optimum's and each cost at most 5% above its limit. For scale: the unconstrained optimum's return is
28% above the LP optimum (and breaks both limits), the uniformly random policy's 22% below (and breaks cost_a).
The flags are the learners' own settings for this problem (small batches; the defaults are MEG-SplitControl-v0's),
and the seed is fixed; ``scripts/exact_cmdp_check.py`` runs the same checks over three seeds for docs/baselines.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meg_gym import constrained, evaluation

ROOT = Path(__file__).resolve().parent.parent


def test_every_constrained_learner_has_an_exact_check():
    learners = {p.name for p in (ROOT / "baselines").glob("*.py") if "constrained.final_check(" in p.read_text()}
    assert {file for file, _ in constrained.EXACT_CHECKS.values()} == learners
    assert {"ppo-lagrangian", "ppo-pid-lagrangian"} <= set(constrained.EXACT_CHECKS)


def run_learner(script: str, flags: tuple[str, ...] | list[str], cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "baselines" / script), *flags, *extra]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("name", sorted(constrained.EXACT_CHECKS))
def test_learner_reaches_the_lp_optimum_of_a_small_cmdp(name, tmp_path):
    result = run_learner(
        *constrained.EXACT_CHECKS[name], tmp_path, "--env-id", constrained.TABULAR_ENV_ID, "--cost-margin", "0", "--seed", "1",
        "--run-name", "exact",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    check = json.loads((tmp_path / "runs" / "exact" / "exact_check.json").read_text())
    assert check["policy"] == name
    assert check["return"] >= (1 - constrained.RETURN_TOLERANCE) * check["optimum_return"], check
    for cost, limit in check["cost_limits"].items():
        assert check["costs"][cost] <= (1 + constrained.COST_TOLERANCE) * limit, check
    assert constrained.exact_check_passes(check)
    curves = [json.loads(line) for line in (tmp_path / "runs" / "exact" / "curves.jsonl").read_text().splitlines()]
    flags = constrained.EXACT_CHECKS[name][1]
    total = int(flags[flags.index("--total-timesteps") + 1])
    assert curves[-1]["step"] >= 0.9 * total and len(curves[-1]["cumulative_violation"]) == 2


@pytest.mark.parametrize("name", sorted(constrained.EXACT_CHECKS))
def test_learner_runs_on_split_control_and_its_saved_policy_loads(name, tmp_path):
    import importlib

    script, flags = constrained.EXACT_CHECKS[name]
    mode = [f for i, f in enumerate(flags) if "--multiplier-update" in flags[max(0, i - 1) : i + 1]]
    result = run_learner(script, mode, tmp_path, "--total-timesteps", "2048", "--num-envs", "8",
                         "--eval-episodes", "8", "--save-model", "--run-name", "unit")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "unit"
    data = json.loads((run_dir / "eval.json").read_text())
    evaluation.validate_eval(data)
    assert data["policy"] == name and data["episodes"] == 8 and data["env_kwargs"]["split"] == "test"
    meta = json.loads((run_dir / "model.json").read_text())
    assert meta["algorithm"] == name and meta["cost_names"] == ["ue_energy", "deadline_miss"]
    assert (run_dir / "curves.jsonl").read_text().count("\n") >= 1
    module = importlib.import_module(f"meg_gym_baselines.{Path(script).stem}")
    policy = module.load_policy(run_dir)
    import gymnasium as gym

    envs = gym.make_vec("MEG-SplitControl-v0", num_envs=3, vectorization_mode="vector_entry_point")
    obs, _ = envs.reset(seed=0)
    assert envs.action_space.contains(policy(obs, envs))
