"""Per-episode results of fixed seeds and actions, recorded once and compared on every test run.

    python tests/episode_fixture.py      # rewrite tests/fixtures/episode_results.json (only on purpose)

The fixture was first recorded before the link-core restructure (issue 15), so the test that reads it
(tests/test_episode_fixture.py) shows that the restructure, and any later change meant to preserve behaviour,
leaves every episode's reward and final info as they were. Only public API is used here, so the same file
runs against the code before and after such a change.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "episode_results.json"
METRICS = ("quality", "psnr", "ssim", "latent_mse", "energy_used")

# (name, gym.make kwargs, num_envs, rollouts of num_envs episodes)
POWER_CONTROL_CASES = (
    ("rayleigh", {}, 64, 2),
    ("rician", {"fading": "rician", "rician_k": 5.0}, 64, 1),
    ("gauss-markov-csi-ssim", {"fading": "gauss-markov", "csi_error_var": 0.1, "reward": "ssim"}, 16, 1),
    # recorded before the raw latent got its LMMSE receiver (2026-11-29): the receiver of then is raw-latent-zero-mean
    ("raw-latent-awgn-ue-steps", {"scheme": "raw-latent-zero-mean", "fading": "awgn", "ue_steps": 5}, 8, 1),
    ("latent-mse-1-16", {"reward": "latent-mse", "compression_ratio": 1 / 16, "num_blocks": 4}, 16, 1),
)
MULTI_CELL_CASES = (
    ("multi-cell", {}, 16, 2),
    ("multi-cell-cooperative-rician", {"cooperative": True, "fading": "rician", "num_links": 3}, 8, 1),
)


def actions_for(rng: np.random.Generator, obs: np.ndarray, fair_share_index: int) -> np.ndarray:
    """Half the envs at random powers, half at 1.5x their fair share: a mix that exercises clipping."""
    random = rng.uniform(-0.1, 0.6, obs.shape[:-1])
    share = 1.5 * obs[..., fair_share_index]
    first_half = (np.arange(obs.shape[0]) < obs.shape[0] // 2).reshape(-1, *([1] * (obs.ndim - 2)))
    return np.where(first_half, random, share)


def power_control_results(kwargs: dict, num_envs: int, rollouts: int) -> dict[str, list[float]]:
    import gymnasium as gym

    import meg_gym  # noqa: F401

    env = gym.make_vec(
        "MEG-PowerControl-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", split="test", **kwargs
    )
    rng = np.random.default_rng(7)
    out: dict[str, list[float]] = {"reward": [], **{k: [] for k in METRICS}}
    for r in range(rollouts):
        obs, _ = env.reset(seed=500 + 1000 * r)
        done = np.zeros(num_envs, dtype=bool)
        while not done.all():
            obs, reward, terminated, _, info = env.step(actions_for(rng, obs, 3)[:, None])
            for i in np.flatnonzero(terminated & ~done):
                out["reward"].append(float(reward[i]))
                for key in METRICS:
                    out[key].append(float(info[key][i]))
            done |= terminated
    env.close()
    return out


def multi_cell_results(kwargs: dict, num_envs: int, rollouts: int) -> dict[str, list[float]]:
    import meg_gym

    module = meg_gym.multi_cell_v0
    env = module.MultiCellVectorEnv(num_envs=num_envs, split="test", **kwargs)
    rng = np.random.default_rng(7)
    out: dict[str, list[float]] = {"reward": [], **{k: [] for k in ("quality", "psnr", "ssim", "energy_used")}}
    for r in range(rollouts):
        obs, _ = env.reset(seed=500 + 1000 * r)
        info: dict = {}
        while "final_info" not in info:
            obs, reward, _, _, info = env.step(actions_for(rng, obs, 4))
        out["reward"].extend(np.asarray(reward, dtype=np.float64).reshape(-1).tolist())
        for key in ("quality", "psnr", "ssim", "energy_used"):
            out[key].extend(np.asarray(info["final_info"][key], dtype=np.float64).reshape(-1).tolist())
    # the PettingZoo env, one episode
    par = module.parallel_env(split="test", **kwargs)
    obs, _ = par.reset(seed=77)
    rewards: dict[str, float] = {}
    while par.agents:
        batch = np.stack([obs[a] for a in par.agents])[None]
        powers = actions_for(rng, batch, 4)[0]
        obs, rew, *_ = par.step({a: powers[i : i + 1] for i, a in enumerate(par.agents)})
        rewards = rew
    out["parallel_reward"] = [float(v) for v in rewards.values()]
    return out


def record() -> dict[str, dict[str, list[float]]]:
    results = {name: power_control_results(kw, n, r) for name, kw, n, r in POWER_CONTROL_CASES}
    results.update({name: multi_cell_results(kw, n, r) for name, kw, n, r in MULTI_CELL_CASES})
    return results


if __name__ == "__main__":
    from meg_gym.evaluation import git_commit

    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    data = {"recorded_at_commit": git_commit(), "results": record()}
    FIXTURE.write_text(json.dumps(data, indent=0))
    print(f"wrote {FIXTURE}")
