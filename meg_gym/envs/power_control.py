"""MEG-PowerControl-v0: transmit-power control of a mobile-edge-generation seed over a fading channel.

The file holds the single environment (:class:`PowerControlEnv`) and its natively batched vector environment
(:class:`PowerControlVectorEnv`). Both run the same batched link of the shared core
(:class:`meg_gym.link.BatchedLink`), so the vector env reproduces single-env trajectories under the same seeds;
this module adds the observation, the spaces and the Gymnasium API.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from meg_gym import channel
from meg_gym.config import PowerControlConfig, config_from_kwargs
from meg_gym.link import (
    SNR_DB_RANGE,
    BatchedLink,
    check_num_envs,
    check_render_mode,
    merge_infos,
    parse_autoreset_mode,
    power_fractions,
    reset_generators,
    scalar_info,
    with_masks,
)

__all__ = ["OBS_NAMES", "PowerControlEnv", "PowerControlVectorEnv"]

# observation layout (all float32); policies index observations with these
OBS_NAMES = ("peak_snr_db", "energy_left", "blocks_left", "fair_share")
PEAK_SNR_DB, ENERGY_LEFT, BLOCKS_LEFT, FAIR_SHARE = range(len(OBS_NAMES))


def observations(link: BatchedLink) -> np.ndarray:
    """(num_envs, 4) float32: peak SNR of the current block (dB, agent's estimate), energy, blocks, fair share."""
    k = link.config.num_blocks
    current = np.minimum(link.block, k - 1)
    h = link.h_observed[np.arange(link.num_envs), current]
    peak_snr_db = channel.snr_db(link.peak_power, h, link.config.noise_power)
    left = link.budget.remaining
    blocks_left = k - link.block
    energy_left = np.divide(left, link.budget.budget, out=np.zeros_like(left), where=link.budget.budget > 0)
    fair_share = np.divide(
        left, blocks_left * link.blocks.peak_block_energy, out=np.zeros_like(left), where=blocks_left > 0
    )
    obs = np.stack([np.clip(peak_snr_db, *SNR_DB_RANGE), energy_left, blocks_left / k, fair_share], axis=1)
    return obs.astype(np.float32)


def make_spaces(config: PowerControlConfig) -> tuple[spaces.Box, spaces.Box]:
    k = config.num_blocks
    high_share = max(1.0, config.budget_fraction) * k
    low = np.array([SNR_DB_RANGE[0], 0.0, 0.0, 0.0], dtype=np.float32)
    high = np.array([SNR_DB_RANGE[1], 1.0, 1.0, high_share], dtype=np.float32)
    observation_space = spaces.Box(low, high, dtype=np.float32)
    action_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
    return observation_space, action_space


class PowerControlEnv(gym.Env):
    """
    ## Description

    Mobile-edge generation (Zhong et al., "Enabling Distributed Generative Artificial Intelligence in 6G:
    Mobile-Edge Generation", IEEE IoT J. 12(6), 2025). An edge server has run a latent diffusion model for the user's prompt; it sends
    the user's phone a *seed*, the latent compressed by a learned joint source-channel codec into a few complex
    symbols, over a block-fading wireless channel. The seed is interleaved over `num_blocks` fading blocks
    (default 8). At each block the agent sees the channel and chooses the transmit power; the energy spent over
    the episode cannot exceed a budget. After the last block the phone equalises what it received (MMSE),
    decodes the seed into a latent, optionally runs `ue_steps` more denoising steps, and decodes the image.
    The reward is that image's quality against the reference image (the one the clean latent gives).

    The latents come from a cached set of prompts (`cache_dir`; the shipped default holds 3,000 train and 1,000
    held-out test prompts of the embedded MEG-Shapes model), so one episode costs one seed decode and one
    image decode. Evaluate on `split="test"`.

    ## Action Space

    `Box(0, 1, (1,), float32)`: the transmit power of the current block as a fraction of the peak power.
    Finite values outside [0, 1] are clipped (counted in `info["action_clipped"]` and, per episode, in the final
    `info["actions_clipped"]`); NaN, inf and wrongly shaped actions raise `ValueError`. The power actually
    applied is further cut so that the episode's energy never exceeds the budget: `info["requested_power"]`
    and `info["applied_power"]` report both.

    ## Observation Space

    `Box(4,)` of float32:

    | index | observation | range |
    |---|---|---|
    | 0 | receive SNR of the current block at peak power, in dB, from the agent's channel estimate (imperfect when `csi_error_var > 0`) | [-60, 60] (clipped) |
    | 1 | energy left, as a fraction of the budget | [0, 1] |
    | 2 | blocks left including the current one, as a fraction of `num_blocks` | [0, 1] |
    | 3 | fair share: the energy left divided by the energy of sending every remaining block at peak power | [0, max(1, budget_fraction) * num_blocks] |

    After the last block, entry 0 repeats the last block's value and entries 2 and 3 are 0.

    ## Rewards

    0 at every block but the last. At the last block, the image quality selected by `reward`: PSNR in dB
    against the reference image (default), `"ssim"`, `"ms-ssim"`, or `"latent-mse"` (the negative mean squared
    error of the final latent against the clean latent). The episodic return therefore equals
    `info["quality"]` at the episode's end.

    ## Starting State

    A prompt drawn uniformly from the chosen split, and the gains of all `num_blocks` blocks drawn from the
    fading model (Rayleigh by default); the energy budget is full.

    ## Episode End

    The episode terminates after `num_blocks` steps; there is no truncation. The final `info` holds `quality`,
    the metrics named by `info_metrics` (by default `psnr`, `ssim`, `latent_mse`; always the reward's own, e.g.
    `ms_ssim`), `energy_used`, `energy_budget`,
    `symbols_sent`, per-block `block_snr_db`, `block_gain_db`, `requested_powers`, `applied_powers`,
    `actions_clipped` and the `prompt`. Stepping after the end without `reset()` raises `RuntimeError`.

    ## Arguments

    Every field of `meg_gym.config.PowerControlConfig` is a keyword of `gym.make`; unknown names raise
    `TypeError` listing the valid ones. The main ones:

    ```python
    import gymnasium as gym
    import meg_gym

    env = gym.make(
        "MEG-PowerControl-v0",
        split="train",            # "train", "test" (held-out prompts) or "all"
        num_blocks=8,             # fading blocks per episode
        compression_ratio=0.25,   # seed size: 1/2, 1/4, 1/8 or 1/16 of the latent's complex symbols
        scheme="seed",            # or "raw-latent", the uncompressed reference
        peak_snr_db=10.0,         # receive SNR at full power on a unit-gain channel
        budget_fraction=0.05,     # energy budget / energy of every block at peak power
        fading="rayleigh",        # "rician", "nakagami", "gauss-markov", "awgn", "sionna-tdl"
        csi_error_var=0.0,        # channel-estimation error of the agent's observation
        ue_steps=0,               # denoising steps left to the phone (0, 5, 10 or 15 with the default cache)
        reward="psnr",            # "ssim", "ms-ssim", "latent-mse"
        info_metrics=None,        # metrics in the final info; None: psnr, ssim, latent_mse (+ the reward's)
        cache_dir=None,           # a cache built with scripts/build_cache.py, e.g. from Stable Diffusion
        render_mode=None,         # "rgb_array"
    )
    ```

    `gym.make_vec("MEG-PowerControl-v0", num_envs=64, vectorization_mode="vector_entry_point")` returns
    :class:`PowerControlVectorEnv`, which runs the same simulation for 64 episodes at once and decodes all the
    seeds that finish together in one batch.

    ## Version History

    * v0: Initial release.
    * v0, 2026-11-29: `scheme="raw-latent"` decodes with the linear MMSE receiver that knows the latent prior
      (its results differ from before; the earlier receiver is `scheme="raw-latent-zero-mean"`); the splits
      `"fit"` and `"validation"` (a partition of `"train"`, for tuning) are added. The default (`scheme="seed"`)
      is unchanged.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, **kwargs: Any):
        self.config = config_from_kwargs(PowerControlConfig, kwargs)
        self.render_mode = check_render_mode(render_mode, self.metadata)
        self.observation_space, self.action_space = make_spaces(self.config)
        self._link = BatchedLink(self.config, 1)
        self._started = False
        self._done = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._link.reset(np.array([0]), [self.np_random])
        self._started, self._done = True, False
        return observations(self._link)[0], scalar_info(self._link.reset_info(np.array([0])), 0)

    def step(self, action: Any):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("the episode has ended (all blocks sent); call reset() to start a new one")
        fraction, clipped = power_fractions(action, ())
        info = scalar_info(self._link.step(fraction.reshape(1), clipped.reshape(1), np.array([0]), [self.np_random]), 0)
        reward = 0.0
        if self._link.block[0] == self.config.num_blocks:
            end = self._link.finish(np.array([0]))
            reward = float(end.reward[0])
            info.update(scalar_info(end.metrics, 0))
            info["quality"] = reward
            self._done = True
        return observations(self._link)[0], reward, self._done, False, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if not self._started:
            raise RuntimeError("call reset() before render()")
        return self._link.frame(0)


class PowerControlVectorEnv(VectorEnv):
    """MEG-PowerControl-v0 for ``num_envs`` episodes at once, natively batched (see :class:`PowerControlEnv`).

    Channel sampling and energy accounting run in numpy; the seeds of all episodes that end on the same step
    are decoded, turned into images and scored in one torch batch. Sub-environment ``i`` of
    ``reset(seed=s)`` is seeded with ``s + i``, as in ``SyncVectorEnv``, and then follows exactly the
    trajectory of ``PowerControlEnv`` reset with that seed.

    Autoreset follows ``autoreset_mode`` (recorded in ``metadata["autoreset_mode"]``), with the info layout of
    Gymnasium's ``SyncVectorEnv``:

    - ``AutoresetMode.NEXT_STEP`` (default, as in Gymnasium): the step after an episode ends resets that
      sub-environment, ignores its action and returns reward 0 and the reset info.
    - ``AutoresetMode.SAME_STEP``: the step that ends an episode returns the new episode's first observation;
      the last observation and the final info (quality, psnr, energy_used, ...) are in ``info["final_obs"]``
      and ``info["final_info"]``. No step is spent on resets, which suits on-policy training.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        **kwargs: Any,
    ):
        self.num_envs = check_num_envs(num_envs)
        self.metadata = {**self.metadata, "autoreset_mode": parse_autoreset_mode(autoreset_mode)}
        self.config = config_from_kwargs(PowerControlConfig, kwargs)
        self.render_mode = check_render_mode(render_mode, self.metadata)
        self.single_observation_space, self.single_action_space = make_spaces(self.config)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._link = BatchedLink(self.config, num_envs)
        self._rngs = [seeding.np_random()[0] for _ in range(num_envs)]
        self._autoreset = np.zeros(num_envs, dtype=bool)
        self._started = False
        self.spec = None

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        self._rngs = reset_generators(self._rngs, seed, self._started)
        everyone = np.arange(self.num_envs)
        self._link.reset(everyone, self._rngs)
        self._autoreset[:] = False
        self._started = True
        return observations(self._link), with_masks(self._link.reset_info(everyone), None, self.num_envs)

    def step(self, actions: Any):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        fractions, clipped = power_fractions(actions, (self.num_envs,))
        n = self.num_envs
        restart = np.flatnonzero(self._autoreset)
        active = np.flatnonzero(~self._autoreset)
        rewards = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        infos: dict[str, Any] = {}
        if len(active):
            step_info = self._link.step(fractions, clipped, active, self._rngs)
            ended = active[self._link.block[active] == self.config.num_blocks]
            same_step = self.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
            shown = np.setdiff1d(active, ended) if same_step else active
            infos = with_masks({k: v[shown] for k, v in step_info.items()}, shown, n)
            if len(ended):
                end = self._link.finish(ended)
                rewards[ended] = end.reward
                terminated[ended] = True
                final_info = with_masks(end.metrics, ended, n)
                if same_step:
                    last_obs = observations(self._link)
                    final_obs = np.full(n, None, dtype=object)
                    for i in ended:
                        final_obs[i] = last_obs[i]
                    ended_step = with_masks({k: v[ended] for k, v in step_info.items()}, ended, n)
                    mask = np.isin(np.arange(n), ended)
                    infos.update(final_obs=final_obs, _final_obs=mask, final_info=merge_infos(ended_step, final_info))
                    infos["_final_info"] = mask.copy()
                    restart = ended
                else:
                    infos = merge_infos(infos, final_info)
        if len(restart):
            self._link.reset(restart, self._rngs)
            infos = merge_infos(infos, with_masks(self._link.reset_info(restart), restart, n))
        if self.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP:
            self._autoreset = terminated.copy()
        truncated = np.zeros(n, dtype=bool)
        return observations(self._link), rewards, terminated, truncated, infos

    def episode_gains(self) -> np.ndarray:
        """True complex gains of every block of the current episodes, (num_envs, num_blocks).

        Non-causal: it reveals future blocks. It exists for the non-causal references of :mod:`meg_gym.policies`
        (water-filling, best-known); a policy that uses it is not a valid entry for the causal leaderboard.
        """
        return self._link.h.copy()

    def expected_quality(self, powers: np.ndarray, envs: np.ndarray | None = None, draws: int = 4, seeds: Any = 0):
        """Mean reward the current episodes of ``envs`` (default: all) would get if sent at per-block ``powers``
        (len(envs), num_blocks) in watts, over ``draws`` noise draws, episode e's from
        ``np.random.default_rng(seeds[e])`` (an int: the same seed for every episode).

        Non-causal (it knows every block's gain and the prompt) and does not touch the episodes' own state or
        random streams; the energy budget is not applied, so keep ``powers`` within it. For planners such as
        the best-known reference of :mod:`meg_gym.policies`.
        """
        envs = np.arange(self.num_envs) if envs is None else np.asarray(envs)
        return self._link.expected_quality(envs, powers, draws, seeds)

    def link_parameters(self) -> dict[str, float]:
        """Peak power, noise power, symbols per block, symbol duration and the energy budget per episode."""
        return self._link.blocks.link_parameters(self.config.noise_power)

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if not self._started:
            raise RuntimeError("call reset() before render()")
        return tuple(self._link.frame(i) for i in range(self.num_envs))
