"""MEG-MultiCell-v0: PettingZoo API and seeding, interference physics, budgets, batched = parallel."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pettingzoo.test import parallel_api_test, parallel_seed_test

import meg_gym
from meg_gym.envs.multi_cell import MultiCellConfig, MultiCellVectorEnv


def test_passes_pettingzoo_parallel_api_and_seed_tests():
    parallel_api_test(meg_gym.multi_cell_v0.parallel_env(), num_cycles=30)
    parallel_seed_test(lambda: meg_gym.multi_cell_v0.parallel_env(num_links=3))


def test_aec_version_runs_an_episode():
    env = meg_gym.multi_cell_v0.env()
    env.reset(seed=0)
    steps = 0
    for _agent in env.agent_iter():
        _, _, terminated, truncated, _ = env.last()
        env.step(None if terminated or truncated else np.array([0.25], dtype=np.float32))
        steps += 1
    assert steps == 4 * 8 + 4  # every agent acts on 8 blocks, then is removed


def run_parallel(env, powers: float, seed: int):
    obs, _ = env.reset(seed=seed)
    while env.agents:
        obs, rewards, terminations, _, infos = env.step({a: np.array([powers]) for a in env.agents})
    return rewards, infos


def test_batched_env_reproduces_parallel_episodes_and_decodes_in_one_batch():
    env = meg_gym.multi_cell_v0.parallel_env()
    vec = MultiCellVectorEnv(num_envs=3)
    vec.reset(seed=10)
    for _ in range(8):
        _, rewards, terminated, _, info = vec.step(np.full((3, 4), 0.4))
    assert terminated.all() and "final_info" in info
    for e in range(3):
        expected, infos = run_parallel(env, 0.4, seed=10 + e)
        np.testing.assert_allclose(rewards[e], [expected[a] for a in env.possible_agents], rtol=0, atol=1e-3)
        np.testing.assert_array_equal(info["final_info"]["energy_used"][e], [infos[a]["energy_used"] for a in infos])


def test_sinr_is_own_signal_over_interference_plus_noise():
    vec = MultiCellVectorEnv(num_envs=2, num_links=3, budget_fraction=1.0)  # no clipping by the budget
    vec.reset(seed=3)
    gains = vec.episode_gains()  # (M, N, N, K): large-scale x |h|^2, receiver i, transmitter j
    powers = np.array([[0.2, 0.0, 0.9], [1.0, 0.5, 0.1]])
    _, _, _, _, info = vec.step(powers)
    p = powers * vec.config.peak_power
    own = np.einsum("mii->mi", gains[..., 0]) * p
    interference = np.einsum("mij,mj->mi", gains[..., 0], p) - own
    with np.errstate(divide="ignore"):  # link 1 of episode 0 sends nothing: -inf dB
        expected = 10 * np.log10(own / (interference + vec.config.noise_power))
    np.testing.assert_allclose(info["sinr_db"], expected, rtol=1e-9)
    # a link alone in the band sees no interference: its SINR is its SNR
    vec.reset(seed=3)
    _, _, _, _, alone = vec.step(np.array([[0.2, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    snr = 10 * np.log10(np.array([gains[0, 0, 0, 0] * 0.2, gains[1, 0, 0, 0]]) * vec.config.peak_power)
    np.testing.assert_allclose(alone["sinr_db"][:, 0], snr, rtol=1e-9)


def test_interference_hurts_and_full_power_is_a_trap():
    def mean_psnr(policy, **kwargs) -> float:
        vec = MultiCellVectorEnv(num_envs=32, split="test", **kwargs)
        obs, _ = vec.reset(seed=0)
        for _ in range(8):
            obs, rewards, _, _, info = vec.step(policy(obs))
        return float(rewards.mean())

    def full_power(obs):
        return np.ones(obs.shape[:2])

    def static(obs):
        return np.clip(obs[..., 4], 0, 1)  # the fair share

    # with budgets that allow full power throughout, neighbours close by cost quality
    assert (
        mean_psnr(full_power, budget_fraction=1.0, area_m=5000.0)
        > mean_psnr(full_power, budget_fraction=1.0, area_m=60.0) + 0.5
    )
    # under the default budget, everyone at full power is far worse than spreading the energy
    assert mean_psnr(full_power) < mean_psnr(static) - 1.0


@settings(max_examples=25, deadline=None, database=None)
@given(
    actions=st.lists(st.floats(-3, 3, allow_nan=False), min_size=32, max_size=32),
    budget_fraction=st.sampled_from([0.0, 0.1, 0.25, 1.0]),
    num_links=st.integers(1, 5),
)
def test_every_agent_stays_within_its_budget(actions, budget_fraction, num_links):
    vec = MultiCellVectorEnv(num_envs=1, num_links=num_links, budget_fraction=budget_fraction)
    obs, _ = vec.reset(seed=0)
    for k in range(8):
        a = np.array(actions[k * 4 : k * 4 + 4] * 2)[:num_links][None]
        obs, rewards, _, _, info = vec.step(a)
        assert np.all(np.isfinite(obs)) and all(vec.single_observation_space.contains(o) for o in obs[0])
        assert np.array_equal(info["action_clipped"], (a < 0) | (a > 1))
    final = info["final_info"]
    assert np.all(final["energy_used"] <= final["energy_budget"])
    assert np.all(np.isfinite(rewards))


def test_bad_input_is_rejected_clearly():
    env = meg_gym.multi_cell_v0.parallel_env(num_links=2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step({"es_0": np.array([0.1]), "es_1": np.array([0.1])})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="missing"):
        env.step({"es_0": np.array([0.1])})
    with pytest.raises(ValueError, match="finite"):
        env.step({"es_0": np.array([np.nan]), "es_1": np.array([0.1])})
    with pytest.raises(ValueError, match="es_1 must have shape"):
        env.step({"es_0": np.array([0.1]), "es_1": np.array([0.1, 0.2])})
    with pytest.raises(TypeError, match="did you mean 'num_links'"):
        meg_gym.multi_cell_v0.parallel_env(num_link=3)
    with pytest.raises(ValueError, match="ue_min_distance_m"):
        MultiCellConfig(ue_min_distance_m=50.0, ue_max_distance_m=20.0)


def test_renders_pickles_and_keeps_import_light():
    env = meg_gym.multi_cell_v0.parallel_env(render_mode="rgb_array")
    run_parallel(env, 0.3, seed=1)
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.std() > 0
    vec = MultiCellVectorEnv(num_envs=2)
    vec.reset(seed=5)
    vec.step(np.full((2, 4), 0.3))
    copy = pickle.loads(pickle.dumps(vec))
    a, b = vec.step(np.full((2, 4), 0.3)), copy.step(np.full((2, 4), 0.3))
    np.testing.assert_array_equal(a[0], b[0])
    code = "import sys, meg_gym; assert 'pettingzoo' not in sys.modules; meg_gym.multi_cell_v0; print('ok')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "ok"
