"""MEG-PowerControl-v0 and its native vector env: API contracts, determinism, energy budget, bad input."""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import meg_gym  # noqa: F401  (registers the environments)
from meg_gym.envs.power_control import PowerControlEnv, PowerControlVectorEnv

ENV_ID = "MEG-PowerControl-v0"


def run_episode(env, actions, seed=None):
    obs, info = env.reset(seed=seed)
    trajectory = [obs]
    total, final = 0.0, None
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(np.array([a], dtype=np.float32))
        trajectory.append(obs)
        total += reward
        if terminated or truncated:
            final = info
            break
    return np.array(trajectory), total, final


def test_check_env_passes_with_warnings_as_errors():
    env = gym.make(ENV_ID)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=False)


def test_episode_shape_reward_and_final_info():
    env = gym.make(ENV_ID, split="test")
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs) and isinstance(info["prompt"], str)
    rewards = []
    for k in range(8):  # equal energy: the default budget is 0.05 of peak power on every block
        obs, reward, terminated, truncated, info = env.step(np.array([0.05], dtype=np.float32))
        assert env.observation_space.contains(obs)
        rewards.append(reward)
        assert terminated == (k == 7) and not truncated
    assert rewards[:-1] == [0.0] * 7
    # the episodic return equals the quality in the final info
    assert sum(rewards) == info["quality"] == info["psnr"]
    for key in ("ssim", "latent_mse", "energy_used", "energy_budget", "symbols_sent", "prompt"):
        assert key in info
    assert info["block_snr_db"].shape == (8,)
    assert info["energy_used"] <= info["energy_budget"]
    assert info["symbols_sent"] == 32  # the 1/4 seed of a 4x8x8 latent, every block sent


def test_reset_and_step_are_deterministic_under_seeds():
    actions = np.random.default_rng(0).uniform(0, 1, 8)
    a = run_episode(gym.make(ENV_ID), actions, seed=11)
    b = run_episode(gym.make(ENV_ID), actions, seed=11)
    c = run_episode(gym.make(ENV_ID), actions, seed=12)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert not np.array_equal(a[0], c[0])


def test_more_power_gives_better_images():
    def mean_psnr(fraction, budget_fraction=1.0, episodes=12):
        env = gym.make(ENV_ID, split="test", budget_fraction=budget_fraction)
        return np.mean([run_episode(env, [fraction] * 8, seed=100 + e)[1] for e in range(episodes)])

    zero, half, full = mean_psnr(0.0), mean_psnr(0.5), mean_psnr(1.0)
    assert zero < half < full


def test_pickle_mid_episode_continues_identically():
    env = PowerControlEnv(split="test")
    env.reset(seed=5)
    env.step(np.array([0.3], dtype=np.float32))
    clone = pickle.loads(pickle.dumps(env))
    for _ in range(7):
        out_a = env.step(np.array([0.6], dtype=np.float32))
        out_b = clone.step(np.array([0.6], dtype=np.float32))
        assert np.array_equal(out_a[0], out_b[0]) and out_a[1] == out_b[1]


def test_native_vector_env_reproduces_single_env_trajectories():
    n, seed = 4, 20
    venv = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", split="test")
    assert isinstance(venv.unwrapped, PowerControlVectorEnv)
    rng = np.random.default_rng(1)
    actions = rng.uniform(-0.2, 1.2, (17, n)).astype(np.float32)  # 2 episodes and an autoreset step
    obs, _ = venv.reset(seed=seed)
    vec_obs, vec_rew = [obs], []
    for t in range(17):
        obs, reward, terminated, _, info = venv.step(actions[t][:, None])
        vec_obs.append(obs)
        vec_rew.append(reward)
        if t == 7:
            assert terminated.all() and info["_psnr"].all()
            np.testing.assert_allclose(info["psnr"], reward)
    vec_obs, vec_rew = np.array(vec_obs), np.array(vec_rew)
    for i in range(n):
        env = PowerControlEnv(split="test")
        obs, _ = env.reset(seed=seed + i)
        single_obs, single_rew = [obs], []
        for t in range(17):
            if t == 8:  # NEXT_STEP autoreset: the vector env resets here, ignoring the action
                obs, _ = env.reset()
                reward = 0.0
            else:
                obs, reward, *_ = env.step(actions[t][i : i + 1])
            single_obs.append(obs)
            single_rew.append(reward)
        assert np.array_equal(np.array(single_obs), vec_obs[:, i])
        # batched and single decodes may differ in the last float bits
        np.testing.assert_allclose(np.array(single_rew), vec_rew[:, i], rtol=0, atol=1e-3)


def test_sync_and_async_vector_envs_work():
    sync = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="sync")
    obs, _ = sync.reset(seed=0)
    assert obs.shape == (2, 4)
    asyncv = gym.vector.AsyncVectorEnv([lambda: gym.make(ENV_ID) for _ in range(2)])
    try:
        obs_async, _ = asyncv.reset(seed=0)
        assert np.array_equal(obs, obs_async)
        for _ in range(8):
            _, rewards, terminated, _, info = asyncv.step(np.full((2, 1), 0.5, dtype=np.float32))
        assert terminated.all() and np.all(rewards == info["quality"])
    finally:
        asyncv.close()


@settings(max_examples=40, deadline=None, database=None)
@given(
    actions=st.lists(
        st.one_of(st.floats(-5, 5, allow_nan=False), st.sampled_from([0.0, 1.0, 1e30, -1e30])), min_size=8, max_size=8
    ),
    budget_fraction=st.sampled_from([0.0, 0.05, 0.5, 1.0, 3.0]),
)
def test_energy_budget_is_never_exceeded(actions, budget_fraction):
    env = _budget_env(budget_fraction)
    env.reset(seed=0)
    spent = 0.0
    for a in actions:
        _, _, terminated, _, info = env.step(np.array([a]))
        assert 0.0 <= info["applied_power"] <= info["requested_power"] + 1e-12
        assert info["action_clipped"] == (not 0.0 <= a <= 1.0)
        spent += info["applied_power"] * env._link.blocks.symbols_per_block * env.config.symbol_duration_s
    assert terminated
    assert info["energy_used"] <= info["energy_budget"]
    assert spent <= info["energy_budget"] * (1 + 1e-12)


_BUDGET_ENVS: dict[float, PowerControlEnv] = {}


def _budget_env(budget_fraction):
    if budget_fraction not in _BUDGET_ENVS:
        _BUDGET_ENVS[budget_fraction] = PowerControlEnv(budget_fraction=budget_fraction)
    return _BUDGET_ENVS[budget_fraction]


def test_bad_actions_and_misuse_raise_clear_errors():
    env = PowerControlEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0.5]))
    env.reset(seed=0)
    for bad in (np.array([np.nan]), np.array([np.inf]), np.array([-np.inf])):
        with pytest.raises(ValueError, match="finite"):
            env.step(bad)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="number"):
        env.step("loud")
    for _ in range(8):
        env.step(np.array([0.5]))
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.array([0.5]))
    venv = PowerControlVectorEnv(num_envs=3)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(3, 1\)"):
        venv.step(np.zeros((2, 1)))


def test_unknown_and_invalid_settings_are_rejected():
    with pytest.raises(TypeError, match="did you mean 'num_blocks'"):
        gym.make(ENV_ID, num_block=4)
    with pytest.raises(ValueError, match="compression_ratio"):
        gym.make(ENV_ID, compression_ratio=0.3)
    with pytest.raises(ValueError, match="choose num_blocks from"):
        gym.make(ENV_ID, num_blocks=5)
    with pytest.raises(ValueError, match="choose ue_steps from"):
        gym.make(ENV_ID, ue_steps=3)
    with pytest.raises(ValueError, match="reward"):
        gym.make(ENV_ID, reward="fid")


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"reward": "ssim"}, "ssim"),
        ({"reward": "ms-ssim"}, "ms_ssim"),
        ({"reward": "latent-mse"}, "latent_mse"),
        ({"scheme": "raw-latent"}, "psnr"),
        ({"compression_ratio": 1 / 16, "fading": "rician"}, "psnr"),
        ({"ue_steps": 5, "split": "test"}, "psnr"),
    ],
)
def test_variants_return_their_quality(kwargs, key):
    env = gym.make(ENV_ID, **kwargs)
    _, total, final = run_episode(env, [1.0] * 8, seed=2)
    expected = -final[key] if key == "latent_mse" else final[key]
    assert total == final["quality"] == expected
    if kwargs.get("scheme") == "raw-latent":
        # 128 symbols over 8 blocks; full power exhausts the default budget in the first block
        assert final["symbols_sent"] == 16 * np.count_nonzero(final["applied_powers"]) == 16


def test_render_draws_a_frame():
    env = gym.make(ENV_ID, render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    run_episode(env, [0.5] * 8)
    last = env.render()
    assert first.shape == last.shape == (320, 448, 3) and first.dtype == np.uint8
    assert not np.array_equal(first, last)  # the received image and the bars appeared


def test_env_runs_on_a_stable_diffusion_cache(tiny_sd_dir, tmp_path):
    """The real-LDM path: a cache built from a diffusers SD folder drives the same environment."""
    from meg_gym.cache import build_cache
    from meg_gym.codec import SeedCodec
    from meg_gym.generation.split_pipeline import SplitPipeline

    pipe = SplitPipeline.from_pretrained(tiny_sd_dir, num_inference_steps=4, guidance_scale=1.0)
    prompts = ["a red circle", "a blue square", "a green cross", "a small cat"]
    cache_dir = tmp_path / "cache"
    build_cache(pipe, prompts, ["train", "train", "test", "test"], cache_dir, split_steps=[2], batch_size=2,
                progress=False, model_info={"name": str(tiny_sd_dir)})  # fmt: skip
    raw = gym.make(ENV_ID, cache_dir=cache_dir, scheme="raw-latent", split="test", budget_fraction=1.0)
    _, total, final = run_episode(raw, [1.0] * 8, seed=0)
    assert np.isfinite(total) and final["symbols_sent"] == 4 * 16 * 16 // 2
    assert final["prompt"] in prompts[2:]
    with pytest.raises(ValueError, match="train one for this cache"):
        gym.make(ENV_ID, cache_dir=cache_dir)  # the shipped codec is for 4x8x8 latents
    SeedCodec(latent_channels=4, latent_size=16, seed_channels=4, hidden_channels=16).save_pretrained(
        tmp_path / "codec"
    )
    seeded = gym.make(
        ENV_ID, cache_dir=cache_dir, codec_dir=tmp_path / "codec", ue_steps=2, reward="ssim", budget_fraction=1.0
    )
    _, total, final = run_episode(seeded, [0.7] * 8, seed=1)
    assert total == final["ssim"] and final["symbols_sent"] == 128


def test_env_card_is_generated_from_the_docstring():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "scripts/make_env_cards.py", "--check"], cwd=root, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def test_same_step_autoreset_reports_final_info_and_starts_the_next_episode():
    from gymnasium.vector import AutoresetMode

    venv = PowerControlVectorEnv(num_envs=3, autoreset_mode=AutoresetMode.SAME_STEP, split="test")
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    venv.reset(seed=7)
    for _ in range(8):
        obs, reward, terminated, _, info = venv.step(np.full((3, 1), 0.5, dtype=np.float32))
    assert terminated.all() and info["_final_info"].all() and info["_final_obs"].all()
    np.testing.assert_array_equal(info["final_info"]["psnr"], reward)
    assert np.all(obs[:, 2] == 1.0)  # the new episodes start with all blocks left
    assert np.all(np.stack(info["final_obs"])[:, 2] == 0.0)
    # the next episode is the one a single env draws after its first
    env = PowerControlEnv(split="test")
    env.reset(seed=8)
    for _ in range(8):
        env.step(np.array([0.5], dtype=np.float32))
    first_obs, _ = env.reset()
    assert np.array_equal(first_obs, obs[1])
    with pytest.raises(ValueError, match="autoreset_mode"):
        PowerControlVectorEnv(num_envs=2, autoreset_mode="sometimes")


def test_info_metrics_compute_only_what_is_asked(monkeypatch):
    import meg_gym.generation.imaging as imaging

    actions = np.full((4, 1), 0.05, dtype=np.float32)

    def final_info(**kwargs):
        env = gym.make_vec(ENV_ID, num_envs=4, vectorization_mode="vector_entry_point", split="test", **kwargs)
        env.reset(seed=5)
        for _ in range(8):
            _, reward, _, _, info = env.step(actions)
        return reward, info

    default_reward, default = final_info(reward="latent-mse")
    decodes = []
    real_decode = imaging.decode_latents
    monkeypatch.setattr(imaging, "decode_latents", lambda *a, **k: decodes.append(1) or real_decode(*a, **k))
    reward, lean = final_info(reward="latent-mse", info_metrics=())
    assert not decodes, "the VAE decoded images no metric asked for"
    assert "psnr" not in lean and "ssim" not in lean
    np.testing.assert_array_equal(reward, default_reward)  # the same episodes, the same reward
    np.testing.assert_array_equal(lean["latent_mse"], default["latent_mse"])
    _, psnr_only = final_info(info_metrics=["psnr"])
    assert decodes and "psnr" in psnr_only and "ssim" not in psnr_only and "latent_mse" not in psnr_only
    with pytest.raises(ValueError, match="info_metrics"):
        gym.make(ENV_ID, info_metrics=["psnr", "fid"])
    with pytest.raises(ValueError, match="info_metrics"):
        gym.make(ENV_ID, info_metrics="psnr")
