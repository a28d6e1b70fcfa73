"""MEG-SplitControl-v0: the guarantees of v0 (checks, determinism, vector == single, pickling, errors, budgets),
its costs and the Safety-Gymnasium step, the quality table, and its references (the planner's bound above them)."""

from __future__ import annotations

import dataclasses
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import meg_gym  # noqa: F401  (registers the environments)
from meg_gym.config import SPLIT_SCHEMES, SplitControlConfig
from meg_gym.envs.split_control import env as sc
from meg_gym.envs.split_control.live import SCHEME_NAMES
from meg_gym.envs.split_control.quality_table import QualityTable, QualityTableError, effective_snr_db
from meg_gym.wrappers import SafetyGymnasiumStep, SafetyGymnasiumVectorStep

ENV_ID = "MEG-SplitControl-v0"
SHORT = {"num_requests": 6}


def run_session(env, actions, seed):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out.append((obs, reward, info["cost"], info["costs"]["ue_energy"], info["psnr"], terminated))
    return out


def random_actions(space, count, seed):
    space.seed(seed)
    return [space.sample() for _ in range(count)]


@pytest.mark.parametrize("action_space", ["multi-discrete", "box"])
def test_check_env_passes_with_warnings_as_errors(action_space):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(ENV_ID, action_space=action_space).unwrapped)


def test_session_shape_costs_and_final_info():
    env = gym.make(ENV_ID, **SHORT)
    obs, info = env.reset(seed=0)
    assert obs.shape == (len(sc.OBS_NAMES),) and isinstance(info["prompt"], str)
    cfg = env.unwrapped.config
    total_ue = 0.0
    for t in range(6):
        obs, reward, terminated, truncated, info = env.step(np.array([1, 2, 2]))
        assert reward == info["quality"] == info["psnr"]
        assert set(info["costs"]) == set(sc.COST_NAMES)
        expected_ue = cfg.ue_power_w * (info["ue_steps"] * cfg.ue_step_s + cfg.ue_decode_s)
        assert info["costs"]["ue_energy"] == pytest.approx(expected_ue)
        late = info["latency_s"] > info["deadline_s"]
        assert info["costs"]["deadline_miss"] == float(late)
        limits = cfg.cost_limits
        assert info["cost"] == pytest.approx(expected_ue / limits["ue_energy"] + late / limits["deadline_miss"])
        total_ue += info["costs"]["ue_energy"]
        assert terminated == (t == 5) and not truncated
    assert info["session_ue_energy_j"] == pytest.approx(total_ue)
    assert info["session_es_energy_j"] <= info["session_es_budget_j"]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0, 0, 0]))


def test_reset_and_step_are_deterministic_under_seeds():
    actions = random_actions(gym.make(ENV_ID).action_space, 6, seed=1)
    a = run_session(gym.make(ENV_ID, **SHORT), actions, seed=5)
    b = run_session(gym.make(ENV_ID, **SHORT), actions, seed=5)
    c = run_session(gym.make(ENV_ID, **SHORT), actions, seed=6)
    assert np.array_equal(a[0], b[0]) and all(
        x[1:] == y[1:] and np.array_equal(x[0], y[0]) for x, y in zip(a[1:], b[1:], strict=True)
    )
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("autoreset_mode", ["NextStep", "SameStep"])
def test_native_vector_env_reproduces_single_env_trajectories(autoreset_mode):
    n = 3
    venv = gym.make_vec(
        ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", autoreset_mode=autoreset_mode, **SHORT
    )
    assert isinstance(venv.unwrapped, sc.SplitControlVectorEnv)
    actions = [np.stack(random_actions(venv.single_action_space, n, seed=t)) for t in range(6)]
    obs, _ = venv.reset(seed=10)
    rewards, costs = [], []
    for a in actions:
        obs, reward, terminated, _, info = venv.step(a)
        rewards.append(reward)
        step_info = info["final_info"] if "final_info" in info else info  # same-step autoreset's last step
        costs.append(step_info["costs"]["ue_energy"])
    assert terminated.all()
    final = info["final_info"] if autoreset_mode == "SameStep" else info
    for i in range(n):
        single = run_session(gym.make(ENV_ID, **SHORT), [a[i] for a in actions], seed=10 + i)
        np.testing.assert_allclose([s[1] for s in single[1:]], [r[i] for r in rewards], atol=1e-9)
        np.testing.assert_allclose([s[3] for s in single[1:]], [c[i] for c in costs], atol=1e-12)
    assert final["session_mean_quality"] == pytest.approx(np.mean(rewards, axis=0))


def test_pickle_mid_session_continues_identically_and_async_works():
    env = gym.make(ENV_ID, **SHORT)
    env.reset(seed=3)
    env.step(np.array([2, 1, 3]))
    clone = pickle.loads(pickle.dumps(env))
    for a in random_actions(env.action_space, 4, seed=2):
        assert env.step(a)[1] == clone.step(a)[1]
    asyncv = gym.vector.AsyncVectorEnv([lambda: gym.make(ENV_ID, **SHORT) for _ in range(2)])
    try:
        asyncv.reset(seed=0)
        _, reward, _, _, info = asyncv.step(np.array([[1, 2, 2], [3, 4, 0]]))
        assert np.all(np.isfinite(reward)) and info["costs"]["ue_energy"].shape == (2,)
    finally:
        asyncv.close()


def test_bad_actions_and_settings_raise_clear_errors():
    with pytest.raises(RuntimeError, match="reset"):
        gym.make(ENV_ID).unwrapped.step(np.array([0, 0, 0]))
    env = gym.make(ENV_ID)
    env.reset(seed=0)
    for bad, match in [
        (np.array([0, 0]), "shape"),
        (np.array([0, 0, np.nan]), "finite"),
        (np.array([9, 0, 0]), "indices below"),
        (np.array([0.5, 0, 0]), "integer"),
        ("split", "3 numbers"),
    ]:
        with pytest.raises(ValueError, match=match):
            env.step(bad)
    with pytest.raises(TypeError, match="did you mean 'num_requests'"):
        gym.make(ENV_ID, num_request=4)
    for kwargs, match in [
        ({"split": "all"}, "split"),
        ({"fidelity": "fast"}, "fidelity"),
        ({"schemes": ("seed-1/3",)}, "schemes"),
        ({"energy_levels": (1.0, -1.0)}, "energy_levels"),
        ({"deadline_s": (2.0, 1.0)}, "deadline_s"),
        ({"split_steps": (7,)}, "split_steps"),
        ({"ue_energy_limit_j": -1.0}, "ue_energy_limit_j"),
    ]:
        with pytest.raises(ValueError, match=match):
            gym.make(ENV_ID, **kwargs)


def test_box_actions_map_onto_the_choices():
    env = gym.make(ENV_ID, action_space="box", **SHORT)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([0.0, 1.0, 0.5], dtype=np.float32))
    assert info["split_step"] == 5 and info["scheme"] == "raw-latent" and info["energy_level"] == 1.0
    assert sc.action_indices(np.array([0.999, 0.2, 0.0]), (4, 5, 5), True, ()).tolist() == [3, 1, 0]


@settings(max_examples=25, deadline=None)
@given(
    actions=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(0, 4)), min_size=8, max_size=8),
    budget_fraction=st.floats(0.0, 3.0),
    seed=st.integers(0, 2**16),
)
def test_es_energy_budget_is_never_exceeded(actions, budget_fraction, seed):
    env = gym.make(
        ENV_ID, num_requests=8, es_budget_fraction=budget_fraction, energy_levels=(0.25, 1.0, 4.0, 16.0, 64.0)
    )
    env.reset(seed=seed)
    spent = 0.0
    for a in actions:
        _, _, _, _, info = env.step(np.array(a))
        assert 0.0 <= info["energy_applied_j"] <= info["energy_requested_j"] + 1e-15
        spent += info["energy_applied_j"]
        assert info["cost"] >= 0.0 and all(v >= 0 for v in info["costs"].values())
    assert spent <= info["session_es_budget_j"] * (1 + 1e-12)
    assert info["session_es_energy_j"] <= info["session_es_budget_j"]


def test_safety_gymnasium_six_tuple():
    env = SafetyGymnasiumStep(gym.make(ENV_ID, **SHORT))
    env.reset(seed=0)
    obs, reward, cost, terminated, truncated, info = env.step(np.array([1, 1, 1]))
    assert cost == info["cost"] > 0
    venv = SafetyGymnasiumVectorStep(gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", **SHORT))
    venv.reset(seed=0)
    out = venv.step(np.array([[1, 1, 1], [3, 0, 2]]))
    assert len(out) == 6 and np.array_equal(out[2], out[5]["cost"])
    unconstrained = SafetyGymnasiumStep(gym.make("MEG-PowerControl-v0"))
    unconstrained.reset(seed=0)
    with pytest.raises(KeyError, match="constrained"):
        unconstrained.step(np.array([0.5]))


def test_more_ue_steps_cost_more_and_the_deadline_binds():
    env = gym.make(ENV_ID, deadline_s=(1.0, 1.0), **SHORT)
    env.reset(seed=0)
    infos = [env.step(np.array([s, 2, 2]))[-1] for s in range(4)]
    energy = [i["costs"]["ue_energy"] for i in infos]
    assert energy == sorted(energy, reverse=True)  # split 5 leaves the UE 15 steps
    assert [i["costs"]["deadline_miss"] for i in infos] == [1.0, 1.0, 1.0, 0.0]


def test_the_agent_observes_the_reported_snr_of_its_request():
    env = gym.make(ENV_ID, **SHORT)
    obs, _ = env.reset(seed=2)
    cfg = env.unwrapped.config
    assert cfg.num_blocks == 1
    for a in random_actions(env.action_space, 6, seed=3):
        reported = float(obs[sc.SNR_DB])
        obs, _, _, _, info = env.step(a)
        assert info["reported_snr_db"] == pytest.approx(reported, abs=1e-4)
        if info["energy_applied_j"] > 0:
            power = info["energy_applied_j"] / env.unwrapped.sessions.airtime_s[cfg.schemes.index(info["scheme"])]
            # perfect CSI: the report is the SNR the request meets at the reference power
            expected = info["block_snr_db"][0] - 10 * np.log10(power / cfg.es_reference_power_w)
            assert reported == pytest.approx(expected, abs=1e-3)
    # with a channel-estimation error the report differs from the truth, and the truth is what is served
    noisy = gym.make(ENV_ID, csi_error_var=0.5, **SHORT)
    obs, _ = noisy.reset(seed=2)
    _, _, _, _, info = noisy.step(np.array([3, 4, 2]))
    power = info["energy_applied_j"] / noisy.unwrapped.sessions.airtime_s[4]
    truth = info["block_snr_db"][0] - 10 * np.log10(power / cfg.es_reference_power_w)
    assert abs(float(obs[sc.SNR_DB]) - truth) > 1e-3
    # several blocks per request: the report is the mean SNR (the blocks' fading is not known in advance)
    blocks = gym.make(ENV_ID, num_blocks=4, **SHORT)
    obs, _ = blocks.reset(seed=2)
    _, _, _, _, info = blocks.step(np.array([3, 4, 2]))
    assert float(obs[sc.SNR_DB]) == pytest.approx(info["snr_db"], abs=1e-4) and len(info["block_snr_db"]) == 4


def test_cost_vector_follows_the_order_of_the_limits():
    env = gym.make(ENV_ID, **SHORT)
    env.reset(seed=0)
    limits = env.unwrapped.config.cost_limits
    _, _, _, _, info = env.step(np.array([0, 4, 2]))
    assert list(limits) == list(sc.COST_NAMES)
    np.testing.assert_array_equal(info["cost_vector"], [info["costs"][c] for c in limits])
    assert info["cost"] == pytest.approx(sum(info["cost_vector"] / np.array(list(limits.values()))))
    venv = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", **SHORT)
    venv.reset(seed=0)
    _, _, _, _, info = venv.step(np.array([[0, 4, 2], [3, 0, 2]]))
    assert info["cost_vector"].shape == (2, 2)
    np.testing.assert_array_equal(info["cost_vector"][:, 0], info["costs"]["ue_energy"])


def test_rgb_array_render_shows_the_session():
    env = gym.make(ENV_ID, render_mode="rgb_array", num_requests=3)
    env.reset(seed=0)
    first = env.render()
    assert first.shape == (400, 640, 3) and first.dtype == np.uint8
    env.step(np.array([3, 1, 2]))
    frame = env.render()
    assert frame.shape == first.shape and not np.array_equal(frame, first)
    # the received image panel holds an image now (not the grey placeholder)
    panel = frame[86 + 150 : 86 + 300, 8:158].astype(int)
    assert panel.std() > 1.0
    plain = gym.make(ENV_ID)
    plain.reset(seed=0)
    assert plain.render() is None


def test_stable_baselines3_make_vec_env_trains():
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env(ENV_ID, n_envs=2, seed=0, env_kwargs={"num_requests": 8})  # passes render_mode="rgb_array"
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=64)
    action, _ = model.predict(venv.reset(), deterministic=True)
    assert action.shape == (2, 3)


def test_preview_reveals_exactly_what_the_session_then_does():
    env = gym.make(ENV_ID, **SHORT).unwrapped
    env.reset(seed=4)
    preview = env.preview()
    for r, a in enumerate(random_actions(env.action_space, 6, seed=0)):
        _, _, _, _, info = env.step(a)
        assert info["snr_db"] == preview["snr_db"][r] and info["deadline_s"] == preview["deadline_s"][r]
        power = info["energy_applied_j"] / env.sessions.airtime_s[env.config.schemes.index(info["scheme"])]
        if power > 0:
            block = preview["snr_db"][r] + 10 * np.log10(np.abs(preview["gains"][r]) ** 2 * power)
            np.testing.assert_allclose(info["block_snr_db"], block, atol=1e-9)
        assert info["prompt"] == env.sessions.prompts[preview["prompt"][r]]


# ---------------------------------------------------------------------------------------------- quality table
def test_scheme_names_agree_between_config_and_codec_table():
    assert SPLIT_SCHEMES == SCHEME_NAMES


def test_quality_table_interpolates_clamps_and_rejects_damage(tmp_path):
    values = {"psnr": np.arange(2 * 1 * 1 * 3 * 2, dtype=np.float32).reshape(2, 1, 1, 3, 2)}
    table = QualityTable("test", np.array([4, 9]), (20,), ("raw-latent",), np.array([-10.0, 0.0, 10.0]), values)
    table.save(tmp_path)
    loaded = QualityTable.load("test", tmp_path)
    assert loaded.lookup("psnr", 1, 0, 0, 0.0, 1) == values["psnr"][1, 0, 0, 1, 1]
    assert loaded.lookup("psnr", 0, 0, 0, 5.0, 0) == pytest.approx(0.5 * (2 + 4))
    assert loaded.lookup("psnr", 0, 0, 0, -np.inf, None) == pytest.approx(0.5)
    assert loaded.lookup("psnr", 0, 0, 0, 40.0, None) == pytest.approx(4.5)
    path = tmp_path / "test.safetensors"
    path.write_bytes(path.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(QualityTableError, match="checksum"):
        QualityTable.load("test", tmp_path)
    with pytest.raises(QualityTableError, match="build_quality_table"):
        QualityTable.load("train", tmp_path)


def test_pooled_table_is_the_group_mean_over_prompts_and_draws():
    rng = np.random.default_rng(0)
    psnr = rng.normal(20.0, 3.0, (6, 1, 1, 3, 2)).astype(np.float32)
    table = QualityTable("test", np.arange(6), (20,), ("raw-latent",), np.array([-10.0, 0.0, 10.0]), {"psnr": psnr})
    groups = np.array([1, 2, 1, 3, 2, 1])
    pooled = table.pooled(groups)
    assert pooled.num_draws == 1
    for label in (1, 2, 3):
        members = groups == label
        np.testing.assert_allclose(pooled.values["psnr"][members], psnr[members].mean((0, 4), keepdims=True)[..., :1]
                                   .repeat(members.sum(), 0), rtol=1e-6)  # fmt: skip
    # the lookup of the pooled table is the mean of the lookups over the group's prompts and draws
    members = np.flatnonzero(groups == 1)
    direct = np.mean([table.lookup("psnr", p, 0, 0, 3.7, d) for p in members for d in range(2)])
    assert pooled.lookup("psnr", members[0], 0, 0, 3.7, None) == pytest.approx(direct, rel=1e-6)
    with pytest.raises(ValueError, match="one label per prompt"):
        table.pooled(groups[:3])


def test_references_see_the_object_count_not_the_prompt():
    from meg_gym.envs.split_control.planning import expected_quality

    sessions = sc.Sessions(SplitControlConfig(split="test"), 1)
    objects = sessions.objects
    same = np.flatnonzero(objects == objects[0])[:2]
    other = np.flatnonzero(objects != objects[0])[0]
    energies = np.ones((len(sessions.config.schemes), 1))
    gains = np.ones((3, 1, 1), dtype=complex)
    q = expected_quality(sessions, np.array([same[0], same[1], other]), np.zeros(3), gains, energies)
    np.testing.assert_array_equal(q[0], q[1])  # two prompts of one object count: one expectation
    assert not np.array_equal(q[0], q[2])
    # while the table itself tells those two prompts apart
    assert not np.array_equal(sessions.table.values["psnr"][same[0]], sessions.table.values["psnr"][same[1]])


def test_references_plan_on_the_train_prompts_estimate_and_the_bound_on_the_served_table():
    test = sc.Sessions(SplitControlConfig(split="test"), 1)
    train = sc.Sessions(SplitControlConfig(split="train"), 1)
    first = int(np.flatnonzero(test.objects == 2)[0])
    members = train.objects == 2
    psnr = train.table.values["psnr"]
    # a test prompt with two objects is valued by the train prompts with two objects, over their draws
    np.testing.assert_allclose(test.planning_table.values["psnr"][first, ..., 0], psnr[members].mean((0, -1)),
                               rtol=1e-6)  # fmt: skip
    # which is not the test table's own mean (the two splits share no noise); on train they are the same
    own = test.expected_table.values["psnr"][first, ..., 0]
    assert np.abs(own - test.planning_table.values["psnr"][first, ..., 0]).max() > 0.1
    assert train.planning_table is train.expected_table
    with pytest.raises(ValueError, match="SNR grid differ"):
        test.table.valued_by(dataclasses.replace(train.table, snr_db=train.table.snr_db + 1), test.objects,
                             train.objects)  # fmt: skip


def test_fit_and_validation_partition_the_train_table_as_the_cache_does(tmp_path):
    from meg_gym.cache import LatentCache

    cache = LatentCache.load()
    train = sc.Sessions(SplitControlConfig(split="train"), 1).table
    fit = sc.Sessions(SplitControlConfig(split="fit"), 1)
    validation = sc.Sessions(SplitControlConfig(split="validation"), 1)
    # the train table's prompts, split as the cache splits its train prompts: disjoint, together all of train
    np.testing.assert_array_equal(validation.table.rows, np.intersect1d(train.rows, cache.indices("validation")))
    np.testing.assert_array_equal(fit.table.rows, np.intersect1d(train.rows, cache.indices("fit")))
    assert len(fit.table.rows) + len(validation.table.rows) == len(train.rows) and len(validation.table.rows) > 0
    position = np.searchsorted(train.rows, validation.table.rows)
    np.testing.assert_array_equal(validation.table.values["psnr"], train.values["psnr"][position])
    # validation sessions are planned on the fit prompts' estimate (never on their own or on train's, which holds
    # them); fit sessions on their own
    first = 0
    members = fit.objects == validation.objects[first]
    np.testing.assert_allclose(validation.planning_table.values["psnr"][first, ..., 0],
                               fit.table.values["psnr"][members].mean((0, -1)), rtol=1e-6)  # fmt: skip
    assert fit.planning_table is fit.expected_table
    # a train table too small to hold a validation prompt is refused with the fix
    small = train.restricted_to("train", train.rows[:3])
    small.save(tmp_path)
    with pytest.raises(QualityTableError, match="no 'validation' prompt.*more prompts"):
        sc.Sessions(SplitControlConfig(split="validation", table_dir=str(tmp_path)), 1)


def test_effective_snr_mappings():
    equal = np.full((2, 4), 10.0)
    np.testing.assert_allclose(effective_snr_db(equal), 10.0)
    np.testing.assert_allclose(effective_snr_db(equal, beta=3.0), 10.0)
    mixed = np.array([[0.0, 100.0]])
    mmse = 10 ** (effective_snr_db(mixed) / 10)
    assert mmse == pytest.approx(1 / np.mean(1 / (1 + mixed)) - 1)
    # EESM: a large beta tends to the mean SNR, a small one to the minimum
    assert 10 ** (effective_snr_db(mixed, beta=1e6) / 10) == pytest.approx(50.0, rel=1e-3)
    assert 10 ** (effective_snr_db(mixed + 1, beta=1e-3) / 10) == pytest.approx(1.0, rel=1e-2)


def test_shipped_table_covers_both_splits_and_matches_the_cache():
    from meg_gym.cache import cache_fingerprint

    for split in ("train", "test"):
        table = QualityTable.load(split)
        assert table.meta["cache_sha256"] == cache_fingerprint()
        assert table.schemes == SCHEME_NAMES and table.num_draws >= 2
        assert table.raw_latent_receiver == "lmmse" and table.meta["complete"]
        psnr = table.values["psnr"]
        assert np.all(np.isfinite(psnr))
        mean = psnr.mean(axis=(0, 4))  # (split steps, schemes, SNR points)
        assert np.all(mean[..., -1] > mean[..., 0] + 5.0)  # more SNR, better images
        # the grid reaches down to where every curve has (nearly) floored: at most 0.15 dB per dB between its two
        # lowest points (0.10 measured, seed 1/2 after 10 ES steps; about 0.7 where the curves rise), and up to where
        # the seeds have saturated (their two highest points within 0.2 dB)
        grid = table.snr_db
        assert np.max(np.abs(mean[..., 1] - mean[..., 0]) / (grid[1] - grid[0])) < 0.15
        assert np.max(np.abs(mean[:, :4, -1] - mean[:, :4, -2])) < 0.2


def test_live_fidelity_runs_the_ue_and_agrees_with_itself_batched():
    kwargs = {"fidelity": "live", "num_requests": 2, "fading": "awgn"}
    actions = [np.array([[2, 2, 2], [3, 4, 2]]), np.array([[3, 0, 2], [2, 4, 4]])]
    venv = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", **kwargs)
    venv.reset(seed=0)
    batched = [venv.step(a)[1] for a in actions]
    for i in range(2):
        single = run_session(gym.make(ENV_ID, **kwargs), [a[i] for a in actions], seed=i)
        np.testing.assert_allclose([s[1] for s in single[1:]], [b[i] for b in batched], atol=2e-3)
    assert all(np.all((b > 5) & (b < 80)) for b in batched)
    # both fidelities meet the same sessions under one seed (the ranking under both is paired)
    table = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", **{**kwargs, "fidelity": "table"})
    seen = {}
    for name, env in (("live", venv), ("table", table)):
        env.reset(seed=0)
        infos = [env.step(a)[4] for a in actions]
        seen[name] = [(i["snr_db"], i["deadline_s"], i["block_snr_db"], list(i["prompt"])) for i in infos]
    for live, tab in zip(seen["live"], seen["table"], strict=True):
        for a, b in zip(live, tab, strict=True):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------- references
def test_planner_bound_lies_above_every_reference_it_is_compared_with():
    from meg_gym.envs.split_control.planning import DualPlanner
    from meg_gym.envs.split_control.references import train_sessions

    config = SplitControlConfig(num_requests=8)
    sessions, previews = train_sessions(config, 16)
    planner = DualPlanner(sessions)
    table = planner.session_values(previews)
    assert np.all(table["upper"] >= table["values"] - 1e-9)
    lam = np.array([0.2, 1.0])
    plan = planner.plan(table, lam)
    # the plan's own expected value per request, and its costs
    z, r = np.indices(plan["split"].shape)
    num_m = planner.energies.shape[0]
    a = plan["split"] * num_m + plan["scheme"]
    value = table["values"][z, r, a, plan["energy_index"]].mean()
    costs = table["costs"][z, r, a].sum(1).mean(0)
    spent = plan["energy"].sum(1)
    assert np.all(spent <= planner.budget * (1 + 1e-9))
    bound = planner.bound(table, lam)
    # weak duality: value <= bound + lam . (mean costs - limits) for any lam >= 0
    requests = table["values"].shape[1]
    assert value <= bound + lam @ (costs - planner.limits) / requests + 1e-9
    # the interval bounds only raise it
    assert planner.bound(table, lam) >= planner.bound({**table, "upper": table["values"]}, lam) - 1e-12


@pytest.mark.parametrize("name", ["best-fixed", "time-sharing", "myopic", "planner"])
def test_references_run_and_give_valid_actions(name):
    from meg_gym.policies import SPLIT_CONTROL_POLICIES

    config = SplitControlConfig(num_requests=8)
    policy = SPLIT_CONTROL_POLICIES[name](config)
    venv = gym.make_vec(ENV_ID, num_envs=4, vectorization_mode="vector_entry_point", config=config, split="test")
    obs, _ = venv.reset(seed=0)
    for _ in range(8):
        actions = policy(obs, venv)
        assert actions.shape == (4, 3) and venv.single_action_space.contains(actions[0].astype(np.int64))
        obs, reward, terminated, _, info = venv.step(actions)
    assert terminated.all()


def test_evaluation_and_leaderboard_report_costs_against_limits(tmp_path):
    from meg_gym import evaluation, leaderboard
    from meg_gym.policies import SPLIT_CONTROL_POLICIES

    config = SplitControlConfig(num_requests=8)
    kwargs = evaluation.env_kwargs(config)
    paths = []
    for name in ("best-fixed", "myopic"):
        result = evaluation.evaluate_policy(
            SPLIT_CONTROL_POLICIES[name](config), ENV_ID, kwargs, episodes=6, num_envs=4
        )
        assert len(result["ue_energy"]["per_episode"]) == 6 and result["cost_limits"] == config.cost_limits
        # a session's costs are sums over its requests; its PSNR the mean per request
        assert min(result["ue_energy"]["per_episode"]) >= 8 * config.ue_power_w * config.ue_decode_s - 1e-9
        paths.append(evaluation.write_eval(tmp_path / name / "eval.json", result, name, name, {}))
    tables = leaderboard.build_tables([leaderboard.record_of(p) for p in paths], reps=50, seed=0)
    (table,) = tables
    rows = {row["policy"]: row for row in table["rows"]}
    assert set(rows) == {"best-fixed", "myopic"}
    for row in rows.values():
        assert len(row["psnr_iqm"]) == 3 and len(row["ue_energy"]) == 3 and len(row["deadline_miss"]) == 3
        assert row["ue_energy"][1] <= row["ue_energy"][0] <= row["ue_energy"][2]
    assert rows["best-fixed"]["normalised"] is None  # no planner row to normalise by
    page = "\n".join(leaderboard.constrained_table(table))
    assert "deadline misses" in page and "Fidelity: table" in page
