"""Every baseline runs as a script, briefly, and writes an eval.json in the shared schema; the water-filling solvers."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from meg_gym import evaluation

ROOT = Path(__file__).resolve().parent.parent
SHORT_EVAL = ["--eval-episodes", "32"]
RUNS = {
    "ppo_continuous_action.py": ["--total-timesteps", "256", "--num-envs", "16", "--num-steps", "16", "--save-model"],
    "ddpg_continuous_action.py": ["--total-timesteps", "320", "--learning-starts", "160", "--batch-size", "32"],
    "td3_continuous_action.py": ["--total-timesteps", "320", "--learning-starts", "160", "--batch-size", "32"],
    "sac_continuous_action.py": ["--total-timesteps", "320", "--learning-starts", "160", "--batch-size", "32"],
    "static_power.py": [],
    "heuristics.py": ["--policy", "channel-inversion"],
    "non_causal.py": ["--policy", "best-known", "--iterations", "2", "--draws", "2", "--env.budget-fraction", "0.4"],
    "ippo_multi_cell.py": ["--total-timesteps", "256", "--num-envs", "4", "--num-steps", "16", "--save-model"],
    "multi_cell_policies.py": ["--policy", "sinr-threshold", "--env.num-links", "3"],
}


@pytest.mark.parametrize("script", sorted(RUNS))
def test_baseline_runs_and_writes_a_valid_eval_json(script, tmp_path):
    cmd = [sys.executable, str(ROOT / "baselines" / script), "--run-name", "unit", *RUNS[script], *SHORT_EVAL]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "runs" / "unit" / "eval.json").read_text())
    evaluation.validate_eval(data)
    assert data["episodes"] == 32 and data["env_kwargs"]["split"] == "test"
    assert data["seeds"][0] == evaluation.EVAL_SEED
    assert 0 < data["energy_used"]["mean"] <= data["energy_budget"] * (1 + 1e-9)
    assert list((tmp_path / "runs" / "unit").glob("events.out.tfevents.*")), "tensorboard log missing"
    if script == "non_causal.py":
        assert data["env_kwargs"]["budget_fraction"] == 0.4
    if "--save-model" in RUNS[script]:
        assert (tmp_path / "runs" / "unit" / "model.safetensors").exists()


def test_validate_eval_rejects_broken_files():
    good = {
        "schema": evaluation.SCHEMA,
        "env_id": "MEG-PowerControl-v0",
        "env_kwargs": {"split": "test"},
        "policy": "static",
        "run_name": "r",
        "episodes": 2,
        "seeds": [1, 2],
        "energy_budget": 1.0,
        "git_commit": "abc",
        "created": "now",
        "meg_gym_version": "0",
        "args": {},
        **{k: {"mean": 1.5, "std": 0.5, "per_episode": [1.0, 2.0]} for k in ("quality", "psnr", "ssim", "energy_used")},
    }
    evaluation.validate_eval(good)
    for change, message in [
        ({"schema": "other"}, "schema"),
        ({"env_kwargs": {"split": "train"}}, "test split"),
        ({"seeds": [1]}, "seeds"),
        ({"psnr": {"mean": 9.0, "std": 0.5, "per_episode": [1.0, 2.0]}}, "mean does not match"),
        ({"psnr": {"mean": 1.5, "std": 0.5, "per_episode": [1.0, float("nan")]}}, "finite"),
    ]:
        with pytest.raises(ValueError, match=message):
            evaluation.validate_eval({**good, **change})
    bad = dict(good)
    del bad["git_commit"]
    with pytest.raises(ValueError, match="git_commit"):
        evaluation.validate_eval(bad)


@pytest.mark.parametrize("kind", ["mmse", "capacity"])
def test_water_filling_is_optimal_for_its_model(kind):
    from scipy.optimize import minimize

    from meg_gym.policies import capacity_water_filling, mmse_water_filling

    solve, objective = {
        "mmse": (mmse_water_filling, lambda x, a: np.sum(1 / (1 + a * x))),  # the symbols' MSE
        "capacity": (capacity_water_filling, lambda x, a: -np.sum(np.log1p(a * x))),  # minus the capacity
    }[kind]
    rng = np.random.default_rng(0)
    a = rng.exponential(10.0, (20, 8))
    total, peak = np.full(20, 20.0), 5.0
    p = solve(a, total, peak)
    assert np.all(p >= 0) and np.all(p <= peak + 1e-12)
    np.testing.assert_allclose(p.sum(1), total, rtol=1e-9)
    for i in range(5):
        res = minimize(
            objective, np.full(8, 2.5), args=(a[i],), bounds=[(0, peak)] * 8,
            constraints=[{"type": "ineq", "fun": lambda x, t=total[i]: t - x.sum()}], method="SLSQP",
        )  # fmt: skip
        assert objective(p[i], a[i]) <= res.fun + 1e-6
    # a budget that covers every block at peak gives every block the peak
    assert np.all(solve(a[:2], np.full(2, 100.0), peak) == peak)


def test_expected_quality_is_the_real_pipeline_and_leaves_the_episodes_alone():
    from meg_gym.envs.power_control import PowerControlVectorEnv

    def episode(env, probe: bool):
        env.reset(seed=5)
        if probe:
            link = env.link_parameters()
            full = np.full((4, 8), link["peak_power"])
            quiet = np.full((4, 8), link["peak_power"] * 1e-4)
            high, low = env.expected_quality(full, draws=2, seeds=3), env.expected_quality(quiet, draws=2, seeds=3)
            assert np.all(high > low + 3.0), (high, low)  # 40 dB more power: a much better image
            np.testing.assert_array_equal(high, env.expected_quality(full, draws=2, seeds=3))
            assert not np.array_equal(low, env.expected_quality(quiet, draws=2, seeds=4))
            np.testing.assert_allclose(
                env.expected_quality(full[1:2], envs=[1], draws=2, seeds=3), high[1:2], atol=1e-4
            )
        rewards = []
        for _ in range(8):
            _, reward, *_ = env.step(np.full((4, 1), 0.05, dtype=np.float32))
            rewards.append(reward)
        return np.array(rewards)

    env = PowerControlVectorEnv(num_envs=4, split="test")
    np.testing.assert_array_equal(episode(env, probe=False), episode(env, probe=True))


def test_best_known_starts_from_the_water_fillings_and_keeps_the_budget():
    from meg_gym.config import PowerControlConfig
    from meg_gym.policies import best_known, capacity_water_filling_policy, mmse_water_filling_policy, static_power

    config = PowerControlConfig()
    results = {
        name: evaluation.evaluate_policy(make(config), episodes=16, num_envs=16)
        for name, make in [("best", lambda c: best_known(c, draws=2, iterations=3)),
                           ("mmse", mmse_water_filling_policy), ("capacity", capacity_water_filling_policy),
                           ("static", lambda c: static_power)]
    }  # fmt: skip
    for r in results.values():
        assert np.all(np.asarray(r["energy_used"]["per_episode"]) <= r["energy_budget"] * (1 + 1e-9))
    assert np.mean(results["best"]["energy_used"]["per_episode"]) > 0.99 * results["best"]["energy_budget"]
    # the same plans again (seeded by the episode's gains), and not the same as any single starting point
    again = evaluation.evaluate_policy(best_known(config, draws=2, iterations=3), episodes=16, num_envs=8)
    np.testing.assert_allclose(again["psnr"]["per_episode"], results["best"]["psnr"]["per_episode"], atol=1e-3)
    assert results["best"]["psnr"]["per_episode"] != results["mmse"]["psnr"]["per_episode"]


def test_evaluation_does_not_depend_on_the_batch_size():
    def half_share(obs, env):
        return np.clip(obs[:, 3] * 0.5, 0, 1)[:, None]

    a = evaluation.evaluate_policy(half_share, episodes=8, num_envs=8)
    b = evaluation.evaluate_policy(half_share, episodes=8, num_envs=3)
    assert a["seeds"] == b["seeds"] == [evaluation.EVAL_SEED + j for j in range(8)]
    np.testing.assert_allclose(a["psnr"]["per_episode"], b["psnr"]["per_episode"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(a["energy_used"]["per_episode"], b["energy_used"]["per_episode"], rtol=1e-12)


def copied_blocks() -> list[tuple[str, str, str]]:
    """(copy's file, origin file, name) of every top-level definition marked ``# Copied from baselines/X.py``."""
    found = []
    for path in sorted((ROOT / "baselines").glob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.lineno >= 2:
                above = lines[node.lineno - 2].strip()
                if above.startswith("# Copied from baselines/"):
                    found.append((path.name, above.removeprefix("# Copied from baselines/"), node.name))
    return found


def definition_source(file_name: str, name: str) -> str:
    source = (ROOT / "baselines" / file_name).read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name:
            return ast.get_source_segment(source, node)
    raise AssertionError(f"baselines/{file_name} has no top-level {name!r}")


def test_copied_blocks_between_learners_stay_equal():
    blocks = copied_blocks()
    # the learners share these on purpose (one file per algorithm); each copy names its origin
    assert {(c, n) for c, _, n in blocks} >= {
        ("td3_continuous_action.py", "Actor"),
        ("td3_continuous_action.py", "load_policy"),
        ("sac_continuous_action.py", "load_policy"),
        ("sac_continuous_action.py", "ReplayBuffer"),
        ("ippo_multi_cell.py", "Agent"),
        ("ippo_multi_cell.py", "load_policy"),
    }
    for copy, origin, name in blocks:
        assert definition_source(copy, name) == definition_source(origin, name), (
            f"baselines/{copy}: {name} differs from baselines/{origin}; change both, or drop the copy marker"
        )


def test_copy_check_notices_a_changed_copy(tmp_path, monkeypatch):
    import shutil

    shutil.copytree(ROOT / "baselines", tmp_path / "baselines")
    path = tmp_path / "baselines" / "td3_continuous_action.py"
    path.write_text(path.read_text().replace("nn.Linear(256, 1), nn.Tanh()", "nn.Linear(256, 1), nn.Sigmoid()"))
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="Actor differs"):
        test_copied_blocks_between_learners_stay_equal()
