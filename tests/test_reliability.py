"""Reliability: properties over configurations, bad files, bit-identical reproducibility, safe loading, soak."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meg_gym  # noqa: F401
from meg_gym import evaluation
from meg_gym.envs.power_control import PowerControlVectorEnv
from meg_gym.weights import WeightsError

ROOT = Path(__file__).resolve().parent.parent
ENV_ID = "MEG-PowerControl-v0"
PROPERTY_EXAMPLES = 150

# symbols per seed: ratio 1/2 -> 64, 1/4 -> 32, 1/8 -> 16, 1/16 -> 8; raw latent 128
configurations = st.fixed_dictionaries(
    {
        "fading": st.sampled_from(["rayleigh", "rician", "nakagami", "gauss-markov", "awgn"]),
        "scheme": st.sampled_from(["seed", "seed", "raw-latent"]),
        "compression_ratio": st.sampled_from([0.5, 0.25, 0.125, 0.0625]),
        "num_blocks": st.sampled_from([1, 2, 4, 8]),
        "peak_snr_db": st.floats(-30, 40),
        "budget_fraction": st.one_of(st.just(0.0), st.floats(0.0, 3.0)),
        "path_loss_db": st.floats(-10, 30),
        "csi_error_var": st.sampled_from([0.0, 0.1, 1.0]),
        "reward": st.sampled_from(["psnr", "ssim", "latent-mse"]),
        "split": st.sampled_from(["train", "test"]),
    }
)
actions = st.lists(
    st.one_of(st.floats(-10, 10, allow_nan=False), st.sampled_from([0.0, 1.0, 1e30, -1e30, 5e-324])),
    min_size=16,
    max_size=16,
)


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(kwargs=configurations, sequence=actions, seed=st.integers(0, 2**31 - 1))
def test_any_configuration_and_action_sequence_is_safe(kwargs, sequence, seed):
    """No crash; energy within budget; observations in their space; rewards finite; clipping counted."""
    env = PowerControlVectorEnv(num_envs=2, **kwargs)
    obs, _ = env.reset(seed=seed)
    assert env.single_observation_space.contains(obs[0]) and env.single_observation_space.contains(obs[1])
    clipped_seen = np.zeros(2, dtype=int)
    blocks = kwargs["num_blocks"]
    for t in range(blocks):
        a = np.array([[sequence[2 * t % 16]], [sequence[(2 * t + 1) % 16]]])
        obs, rewards, terminated, truncated, info = env.step(a)
        assert np.all(np.isfinite(obs)) and all(env.single_observation_space.contains(o) for o in obs)
        assert np.all(np.isfinite(rewards))
        assert np.array_equal(info["action_clipped"], (a[:, 0] < 0) | (a[:, 0] > 1))
        clipped_seen += info["action_clipped"]
        assert np.all(info["applied_power"] <= info["requested_power"] + 1e-12)
    assert terminated.all() and not truncated.any()
    assert np.all(info["energy_used"] <= info["energy_budget"])
    assert np.array_equal(info["actions_clipped"], clipped_seen)
    assert np.all(np.isfinite(info["psnr"])) and np.all(np.isfinite(info["ssim"]))
    np.testing.assert_array_equal(rewards, info["quality"])


# ---------------------------------------------------------------------------------------------------- bad files


def _damaged_copy(source: Path, tmp_path: Path, damage: str) -> Path:
    folder = tmp_path / damage
    shutil.copytree(source, folder)
    weights = next(folder.glob("*.safetensors"))
    data = weights.read_bytes()
    if damage == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "garbage-header":
        weights.write_bytes(b"\xff" * 64 + data[64:])
    elif damage == "missing-weights":
        weights.unlink()
    elif damage == "wrong-architecture":
        config = json.loads((folder / "config.json").read_text())
        key = next(k for k in ("hidden_channels", "decoder_block_out_channels", "width") if k in config)
        config[key] = config[key] * 2 if isinstance(config[key], int) else [c * 2 for c in config[key]]
        (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("damage", ["truncated", "garbage-header", "missing-weights", "wrong-architecture"])
@pytest.mark.parametrize("model", ["codec", "autoencoder", "classifier"])
def test_damaged_weight_files_name_the_folder_and_the_fix(model, damage, tmp_path):
    from meg_gym.codec import codec_folder, load_codec
    from meg_gym.generation.classifier import load_classifier
    from meg_gym.generation.embedded import CLASSIFIER_DIR, EMBEDDED_MODEL_DIR, load_autoencoder

    source = {"codec": codec_folder("1/4"), "autoencoder": EMBEDDED_MODEL_DIR / "vae", "classifier": CLASSIFIER_DIR}
    folder = _damaged_copy(source[model], tmp_path, damage)
    if model == "autoencoder":  # load_autoencoder takes the model folder that holds vae/
        model_dir = tmp_path / "model"
        model_dir.mkdir()
        folder = folder.rename(model_dir / "vae")
    load = {
        "codec": lambda: load_codec("1/4", folder),
        "autoencoder": lambda: load_autoencoder(folder.parent),
        "classifier": lambda: load_classifier(folder),
    }
    expected = FileNotFoundError if damage == "missing-weights" else WeightsError
    with pytest.raises(expected) as err:
        load[model]()
    message = str(err.value)
    assert str(folder) in message and "python scripts/train_" in message


# -------------------------------------------------------------------------------------------- reproducibility


def _trajectory_digest(vector_mode: str, seed: int = 123) -> str:
    """sha256 over observations, rewards and final-info metrics of 3 episodes of 4 envs, fixed actions."""
    if vector_mode == "native":
        env = gym.make_vec(ENV_ID, num_envs=4, vectorization_mode="vector_entry_point")
    else:
        env = gym.vector.AsyncVectorEnv([lambda: gym.make(ENV_ID) for _ in range(4)])
    digest = hashlib.sha256()
    rng = np.random.default_rng(0)
    try:
        obs, _ = env.reset(seed=seed)
        digest.update(obs.tobytes())
        for _ in range(3 * 9):  # 8 blocks per episode, plus the autoreset step
            obs, reward, terminated, _, info = env.step(rng.uniform(-0.2, 1.2, (4, 1)).astype(np.float32))
            digest.update(obs.tobytes() + reward.tobytes())
            if terminated.any():
                digest.update(np.asarray(info["energy_used"], dtype=np.float64).tobytes())
    finally:
        env.close()
    return digest.hexdigest()


def _rewards(vector_mode: str, seed: int = 7) -> np.ndarray:
    if vector_mode == "native":
        env = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="vector_entry_point")
    else:
        env = gym.vector.AsyncVectorEnv([lambda: gym.make(ENV_ID) for _ in range(3)])
    try:
        env.reset(seed=seed)
        for _ in range(8):
            _, reward, _, _, info = env.step(np.full((3, 1), 0.3, dtype=np.float32))
        return np.stack([reward, info["energy_used"]])
    finally:
        env.close()


def test_trajectories_are_bit_identical_in_one_process_and_across_processes():
    here = _trajectory_digest("native")
    assert _trajectory_digest("native") == here
    code = (
        "import sys; sys.path.insert(0, 'tests'); import test_reliability as t; print(t._trajectory_digest('native'))"
    )
    other = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert other.returncode == 0, other.stderr[-2000:]
    assert other.stdout.strip().splitlines()[-1] == here


def test_async_vector_env_is_bit_identical_across_runs_and_matches_the_native_env():
    first, second = _rewards("async"), _rewards("async")
    assert np.array_equal(first, second)
    native = _rewards("native")
    np.testing.assert_array_equal(first[1], native[1])  # energy: exact
    np.testing.assert_allclose(first[0], native[0], rtol=0, atol=1e-3)  # batch-1 vs batch-3 decode: last bits


def test_evaluation_results_are_bit_identical_across_processes():
    def policy(obs, env):
        return np.clip(obs[:, 3] * (1 + 0.1 * obs[:, 0] / 10), 0, 1)[:, None]

    here = evaluation.evaluate_policy(policy, episodes=16, num_envs=8)
    assert evaluation.evaluate_policy(policy, episodes=16, num_envs=8)["psnr"] == here["psnr"]
    code = (
        "import json, numpy as np; from meg_gym import evaluation\n"
        "p = lambda obs, env: np.clip(obs[:, 3] * (1 + 0.1 * obs[:, 0] / 10), 0, 1)[:, None]\n"
        "r = evaluation.evaluate_policy(p, episodes=16, num_envs=8)\n"
        "print(json.dumps([r['psnr']['per_episode'], r['energy_used']['per_episode']]))"
    )
    other = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert other.returncode == 0, other.stderr[-2000:]
    psnr, energy = json.loads(other.stdout.strip().splitlines()[-1])
    assert psnr == here["psnr"]["per_episode"] and energy == here["energy_used"]["per_episode"]


# ------------------------------------------------------------------------------------------------------ safety

UNSAFE = [
    (re.compile(r"torch\.load\((?![^)]*weights_only=True)"), "torch.load without weights_only=True"),
    (re.compile(r"\bpickle\.loads?\("), "pickle.load"),
    (re.compile(r"(?<![\w.])eval\("), "eval()"),
    (re.compile(r"(?<![\w.])exec\("), "exec()"),
    (re.compile(r"\.from_pretrained\("), "from_pretrained without use_safetensors=True"),
]
SAFE_FROM_PRETRAINED = ("AutoTokenizer", "DDIMScheduler", "SplitPipeline", "cls.from_pretrained")


def _call_arguments(text: str, start: int) -> str:
    """The text of a call's arguments, from just after its opening parenthesis to the matching one."""
    depth = 1
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return text[start:]


def test_loading_never_unpickles_or_executes_stored_data():
    problems = []
    for path in [*ROOT.glob("meg_gym/**/*.py"), *ROOT.glob("scripts/*.py"), *ROOT.glob("baselines/*.py")]:
        text = path.read_text()
        for pattern, what in UNSAFE:
            for match in pattern.finditer(text):
                line_start = text.rfind("\n", 0, match.start()) + 1
                line = text[line_start : text.find("\n", match.start())]
                if line.lstrip().startswith("#") or "``" in line or any(n in line for n in SAFE_FROM_PRETRAINED):
                    continue  # comments, docstrings, and loaders of JSON/text files only
                if "from_pretrained" in what and "use_safetensors=True" in _call_arguments(text, match.end()):
                    continue
                problems.append(f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}: {what}: {line}")
    assert not problems, "\n".join(problems)


def test_cache_files_stay_inside_the_cache_folder(tmp_path):
    """File names come from constants, never from the cache's JSON; a JSON naming other files is ignored."""
    from meg_gym.cache import JSON_NAME, TENSOR_NAME, LatentCache

    source = LatentCache.load().path
    folder = tmp_path / "cache"
    shutil.copytree(source, folder)
    meta = json.loads((folder / JSON_NAME).read_text())
    meta["files"] = {"../../outside.safetensors": meta["files"][TENSOR_NAME], **meta["files"]}
    (folder / JSON_NAME).write_text(json.dumps(meta))
    cache = LatentCache.load(folder)
    assert cache.path.resolve() == folder.resolve()
    assert not (tmp_path / "outside.safetensors").exists()


# -------------------------------------------------------------------------------------------- resume training


@pytest.mark.parametrize(
    "script, flags",
    [
        ("ppo_continuous_action.py", ["--num-envs", "16", "--num-steps", "16"]),
        ("ddpg_continuous_action.py", ["--learning-starts", "160", "--batch-size", "32"]),
        ("td3_continuous_action.py", ["--learning-starts", "160", "--batch-size", "32"]),
        ("sac_continuous_action.py", ["--learning-starts", "160", "--batch-size", "32"]),
        ("ippo_multi_cell.py", ["--num-envs", "4", "--num-steps", "16"]),
        ("ppo_lagrangian.py", ["--num-envs", "4", "--num-steps", "32"]),
        ("cpo.py", ["--num-envs", "4", "--num-steps", "32"]),
        ("focops.py", ["--num-envs", "4", "--num-steps", "32"]),
        ("sac_lagrangian.py", ["--num-envs", "4", "--learning-starts", "128", "--batch-size", "32"]),
        ("cvpo.py", ["--num-envs", "4", "--learning-starts", "128", "--batch-size", "32"]),
    ],
)
def test_interrupted_training_resumes_from_its_checkpoint(script, flags, tmp_path):
    base = [sys.executable, str(ROOT / "baselines" / script), "--run-name", "r", "--save-model", "--eval-episodes", "8"]
    first = subprocess.run([*base, *flags, "--total-timesteps", "256"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    assert (tmp_path / "runs" / "r" / "checkpoint.pt").exists()
    resumed = subprocess.run([*base, *flags, "--total-timesteps", "512", "--resume"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed r at" in resumed.stdout
    evaluation.validate_eval(json.loads((tmp_path / "runs" / "r" / "eval.json").read_text()))
    (tmp_path / "runs" / "r" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    broken = subprocess.run([*base, *flags, "--total-timesteps", "512", "--resume"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert broken.returncode != 0
    assert "checkpoint.pt" in broken.stderr and "cannot be read" in broken.stderr


# ----------------------------------------------------------------------------------------------------- soak


@pytest.mark.slow
def test_soak_a_million_steps_without_memory_growth_or_slowdown():
    """Opt in: python -m pytest -m slow -k soak (about 15 minutes on 2 cores)."""
    import resource

    page = resource.getpagesize()
    env = gym.make_vec(ENV_ID, num_envs=64, vectorization_mode="vector_entry_point")
    env.reset(seed=0)
    action = np.full((64, 1), 0.05, dtype=np.float32)

    def rss() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page / 2**20

    def run(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps // 64):
            env.step(action)
        return steps / (time.perf_counter() - start)

    first_rate = run(25_600)  # 1,024,000 steps in all
    warm = rss()
    for _ in range(19):
        run(51_200)
    last_rate = run(25_600)
    grown = (rss() - warm) / warm
    env.close()
    print(
        f"soak: rss {warm:.0f} MB -> {rss():.0f} MB ({grown:+.1%}); speed {first_rate:.0f} -> {last_rate:.0f} steps/s"
    )
    assert grown < 0.05
    assert last_rate > 0.7 * first_rate
