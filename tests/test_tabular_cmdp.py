"""meg_gym/TabularCMDP-v0, the small CMDP with a known optimum, and the helpers the constrained learners share."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import meg_gym  # noqa: F401
from meg_gym import constrained
from meg_gym.envs.tabular_cmdp import TabularCMDPConfig, TabularProblem

ENV_ID = constrained.TABULAR_ENV_ID


def test_env_passes_the_checker_and_reports_costs():
    env = gym.make(ENV_ID)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0)
    _, _, _, _, info = env.step(0)
    assert set(info["costs"]) == set(env.unwrapped.cost_limits) == {"cost_a", "cost_b"}
    limits = np.array(list(env.unwrapped.cost_limits.values()))
    assert info["cost"] == pytest.approx((info["cost_vector"] / limits).sum())


def test_the_lp_optimum_is_feasible_binding_and_beats_every_cheaper_policy():
    problem = TabularProblem(TabularCMDPConfig())
    optimum, free = problem.solve(), problem.unconstrained()
    # both limits bind at the optimum and the unconstrained optimum breaks them: the check is not trivial
    np.testing.assert_allclose(optimum["costs"], problem.limits, rtol=1e-6)
    assert np.all(free["costs"] > problem.limits * 1.1) and free["return"] > optimum["return"] + 0.5
    # no randomly drawn feasible policy beats the LP (a weak but independent check of the LP's arithmetic)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        policy = rng.dirichlet(np.full(3, 0.3), size=(5, 4))
        ret, costs = problem.evaluate(policy)
        if np.all(costs <= problem.limits):
            assert ret <= optimum["return"] + 1e-9
    # tightening a limit lowers the optimum (the constraint is active)
    assert problem.solve(problem.limits * [0.9, 1.0])["return"] < optimum["return"] - 1e-3


def test_exact_evaluation_matches_monte_carlo_on_the_vector_env():
    problem = TabularProblem(TabularCMDPConfig())
    policy = problem.solve()["policy"]
    ret, costs = problem.evaluate(policy)
    envs = gym.make_vec(ENV_ID, num_envs=20_000, vectorization_mode="vector_entry_point",
                        autoreset_mode=AutoresetMode.SAME_STEP)  # fmt: skip
    obs, _ = envs.reset(seed=3)
    rng = np.random.default_rng(3)
    total, total_costs = np.zeros(20_000), np.zeros((20_000, 2))
    names = list(envs.unwrapped.cost_limits)
    s, h = problem.config.num_states, problem.config.horizon
    for _ in range(h):
        probs = policy[obs[:, s:].argmax(1), obs[:, :s].argmax(1)]
        actions = (rng.random(len(obs))[:, None] > probs.cumsum(1)).sum(1)
        obs, reward, terminated, _, infos = envs.step(actions)
        total += reward
        total_costs += constrained.step_costs(infos, names, 20_000)
    assert terminated.all() and "final_info" in infos
    assert abs(total.mean() - ret) < 4 * total.std() / np.sqrt(20_000)
    for k in range(2):
        assert abs(total_costs[:, k].mean() - costs[k]) < 4 * total_costs[:, k].std() / np.sqrt(20_000)


def test_vector_env_follows_the_single_env_and_is_seeded():
    def run(seed):
        envs = gym.make_vec(ENV_ID, num_envs=4, vectorization_mode="vector_entry_point")
        obs, _ = envs.reset(seed=seed)
        trace = [obs]
        for t in range(12):
            obs, reward, terminated, _, _ = envs.step(np.full(4, t % 3))
            trace.append(obs)
        return np.stack(trace)

    np.testing.assert_array_equal(run(5), run(5))
    assert not np.array_equal(run(5), run(6))


def test_step_costs_reads_final_info_and_refuses_an_unconstrained_env():
    infos = {"final_info": {"costs": {"a": np.array([1.0, 2.0]), "_a": np.ones(2, bool)}, "_costs": np.ones(2, bool)}}
    np.testing.assert_array_equal(constrained.step_costs(infos, ["a"], 2), [[1.0], [2.0]])
    with pytest.raises(KeyError, match="costs"):
        constrained.step_costs({"psnr": np.zeros(2)}, ["a"], 2)
    envs = gym.make_vec("MEG-PowerControl-v0", num_envs=2, vectorization_mode="vector_entry_point")
    with pytest.raises(SystemExit, match="constrained environment"):
        constrained.cost_limits(envs)


def test_joint_probabilities_follow_ravel_multi_index():
    a, b = np.array([[0.2, 0.8]]), np.array([[0.1, 0.3, 0.6]])
    joint = constrained.joint_probabilities([a, b])
    assert joint[0, np.ravel_multi_index((1, 2), (2, 3))] == pytest.approx(0.8 * 0.6)
    assert joint.sum() == pytest.approx(1.0)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="limit_fractions"):
        TabularCMDPConfig(limit_fractions=(0.5,))
    with pytest.raises(TypeError, match="did you mean 'horizon'"):
        gym.make(ENV_ID, horizn=3)
    with pytest.raises(ValueError, match="shape"):
        TabularProblem(TabularCMDPConfig()).evaluate(np.ones((2, 2, 2)))


def test_training_curves_and_their_summary_over_seeds(tmp_path):
    import json

    from meg_gym.learning_curves import collect_runs, curve_summary, plot_curves

    for seed, level in ((1, 1.0), (2, 3.0)):
        run = tmp_path / f"algo__{seed}"
        curves = constrained.TrainingCurves(run, None, ["a", "b"])
        for step in range(1, 21):
            returns = [np.full(4, level)]
            costs = [np.array([[0.5, 2.0], [0.5, 0.5], [1.5, 0.5], [0.5, 0.5]])]  # 2 of 4 episodes break a limit
            curves.add(step * 100, returns, costs)
        (run / "model.json").write_text(json.dumps({"algorithm": "algo", "cost_names": ["a", "b"],
                                                    "args": {"env_id": "x", "seed": seed}}))  # fmt: skip
    last = [json.loads(line) for line in (tmp_path / "algo__1" / "curves.jsonl").read_text().splitlines()][-1]
    assert last["violation_share"] == [0.25, 0.25] and last["cumulative_violating_episodes"] == 40
    assert last["cumulative_violation"] == pytest.approx([10.0, 20.0])
    summary = curve_summary(collect_runs([tmp_path]))["algo"]
    assert summary["return_per_step"]["mean"][-1] == pytest.approx(2.0)  # the mean of the two seeds
    assert summary["return_per_step"]["low"][-1] < 2.0 < summary["return_per_step"]["high"][-1]
    assert summary["violating_episode_share"]["mean"][-1] == pytest.approx(0.5)
    plot_curves({"algo": summary}, tmp_path / "c.png", tmp_path / "v.png", "return")
    assert (tmp_path / "c.png").stat().st_size > 1000 and (tmp_path / "v.png").stat().st_size > 1000
