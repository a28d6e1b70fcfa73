"""MEG-MultiCell: N edge servers send their users' seeds in one band and interfere (PettingZoo parallel env).

The file holds the PettingZoo environment (:class:`MultiCellEnv`, via :func:`parallel_env`) and a natively
batched version for training (:class:`MultiCellVectorEnv`). Both run the same simulation
(:class:`MultiCellBatch`, on the shared link core :mod:`meg_gym.link`), so the batched env reproduces the
parallel env's episodes under the same seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

from meg_gym import channel
from meg_gym.config import PowerControlConfig, config_from_kwargs
from meg_gym.link import (
    SNR_DB_RANGE,
    SeedBlocks,
    check_num_envs,
    check_render_mode,
    decode_episodes,
    power_fractions,
    receiver_for,
    scalar_info,
)

__all__ = ["OBS_NAMES", "MultiCellConfig", "MultiCellEnv", "MultiCellVectorEnv", "parallel_env"]

# observation layout of every agent (all float32); policies index observations with these
OBS_NAMES = ("own_peak_snr_db", "last_interference_db", "energy_left", "blocks_left", "fair_share")
OWN_PEAK_SNR_DB, LAST_INTERFERENCE_DB, ENERGY_LEFT, BLOCKS_LEFT, FAIR_SHARE = range(len(OBS_NAMES))


@dataclass(frozen=True)
class MultiCellConfig(PowerControlConfig):
    """Settings of MEG-MultiCell (and its batched version); the link fields are PowerControlConfig's.

    Attributes:
        num_links: Edge-server-to-UE links N sharing the band, one agent each.
        area_m: Side of the square in which the edge servers are placed uniformly at random, per episode.
        ue_min_distance_m, ue_max_distance_m: Each UE lies at a uniform distance in this range from its own
            edge server, in a uniform direction.
        reference_distance_m: Distance at which ``peak_snr_db`` is the receive SNR at full power; the large-scale
            gain at distance d is ``(d / reference_distance_m) ** -path_loss_exponent``.
        path_loss_exponent: Path-loss exponent (2 in free space, 3 to 4 in urban cells).
        cooperative: If True every agent is rewarded with the mean quality of all links; else its own link's.

    The energy budget is MEG-PowerControl-v0's (``budget_fraction`` 0.05 of every block at peak power, per
    agent), the regime in which where the energy goes matters: an agent at full power spends its whole budget
    within the first block. At a budget of 0.25 the allocation has little left to gain (IPPO and static power
    tied on latent cache 6dfe2dc6a263: the MEG-MultiCell-v0 budget_fraction=0.25 table of docs/results/leaderboard.md).
    """

    num_links: int = 4
    area_m: float = 100.0
    ue_min_distance_m: float = 10.0
    ue_max_distance_m: float = 30.0
    reference_distance_m: float = 20.0
    path_loss_exponent: float = 3.0
    cooperative: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.num_links, bool) or not isinstance(self.num_links, int) or self.num_links < 1:
            raise ValueError(f"MultiCellConfig.num_links must be an integer >= 1, got {self.num_links!r}")
        for name in ("area_m", "ue_min_distance_m", "ue_max_distance_m", "reference_distance_m", "path_loss_exponent"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) or value <= 0:
                raise ValueError(f"MultiCellConfig.{name} must be a finite number > 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.ue_min_distance_m > self.ue_max_distance_m:
            raise ValueError(
                f"MultiCellConfig.ue_min_distance_m ({self.ue_min_distance_m}) must not exceed ue_max_distance_m "
                f"({self.ue_max_distance_m})"
            )
        if not isinstance(self.cooperative, bool):
            raise ValueError(f"MultiCellConfig.cooperative must be True or False, got {self.cooperative!r}")

    @property
    def link_config(self) -> PowerControlConfig:
        """The single-link part (what the shared decoding pipeline depends on)."""
        names = PowerControlConfig.__dataclass_fields__
        return PowerControlConfig(**{n: getattr(self, n) for n in names})


class MultiCellBatch:
    """M independent episodes of N interfering links; episode m draws everything from its own Generator."""

    def __init__(self, config: MultiCellConfig, num_envs: int):
        self.config = config
        self.num_envs, self.num_links, k = num_envs, config.num_links, config.num_blocks
        self._acquire()
        m, n = num_envs, self.num_links
        self.budget = self.blocks.new_budget(m * n)
        self.rows = np.zeros((m, n), dtype=np.int64)
        self.large_scale = np.ones((m, n, n))  # [episode, receiving UE i, transmitting ES j]
        self.h = np.zeros((m, n, n, k), dtype=np.complex128)
        self.block = 0
        self.estimates = np.zeros((m, n, k, self.blocks.symbols_per_block), dtype=np.complex128)
        self.sinr = np.zeros((m, n, k))
        self.interference = np.zeros((m, n, k))
        self.applied = np.zeros((m, n, k))
        self.clipped = np.zeros((m, n), dtype=np.int64)

    def _acquire(self) -> None:
        # the shared receiver comes from the config; it is re-acquired after unpickling
        self.receiver = receiver_for(self.config.link_config)
        self.blocks = SeedBlocks(self.receiver, self.config)
        self.last_latents: list = [None] * (self.num_envs * self.num_links)

    @property
    def peak_power(self) -> float:
        return self.blocks.peak_power

    def reset(self, rngs: list[np.random.Generator]) -> None:
        cfg, n, k = self.config, self.num_links, self.config.num_blocks
        for e, rng in enumerate(rngs):
            self.rows[e] = rng.integers(len(self.receiver.rows), size=n)
            es = rng.uniform(0.0, cfg.area_m, (n, 2))
            angle = rng.uniform(0.0, 2 * np.pi, n)
            dist = rng.uniform(cfg.ue_min_distance_m, cfg.ue_max_distance_m, n)
            ue = es + dist[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
            d = np.maximum(np.linalg.norm(ue[:, None, :] - es[None, :, :], axis=2), 1.0)
            self.large_scale[e] = (d / cfg.reference_distance_m) ** -cfg.path_loss_exponent
            self.h[e] = channel.sample_block_gains(cfg.channel, n * n, k, rng).reshape(n, n, k)
        self.block = 0
        for array in (self.estimates, self.sinr, self.interference, self.applied, self.clipped):
            array[...] = 0
        self.budget.reset()
        self.last_latents = [None] * (self.num_envs * n)

    def observations(self) -> np.ndarray:
        """(M, N, 5) float32: own peak SNR (dB), last block's interference-to-noise (dB), energy, blocks, share."""
        k, n0 = self.config.num_blocks, self.config.noise_power
        current = min(self.block, k - 1)
        own = np.einsum("mii->mi", self.large_scale) * np.abs(np.einsum("miik->mik", self.h)[:, :, current]) ** 2
        own_db = channel.linear_to_db(self.peak_power * own / n0)
        if self.block:
            last_db = channel.linear_to_db(self.interference[:, :, self.block - 1] / n0)
        else:
            last_db = np.full_like(own_db, SNR_DB_RANGE[0])
        left = self.budget.remaining.reshape(self.num_envs, self.num_links)
        budget = self.budget.budget.reshape(self.num_envs, self.num_links)
        blocks_left = k - self.block
        energy = np.divide(left, budget, out=np.zeros_like(left), where=budget > 0)
        share = left / (blocks_left * self.blocks.peak_block_energy) if blocks_left else np.zeros_like(left)
        obs = np.stack(
            [np.clip(own_db, *SNR_DB_RANGE), np.clip(last_db, *SNR_DB_RANGE), energy,
             np.full_like(left, blocks_left / k), share],
            axis=-1,
        )  # fmt: skip
        return obs.astype(np.float32)

    def step(self, fractions: np.ndarray, clipped: np.ndarray, rngs: list[np.random.Generator]) -> dict[str, Any]:
        """Send block ``self.block`` of every link at powers ``fractions`` (M, N) of peak; returns step info."""
        m, n, k = self.num_envs, self.num_links, self.block
        requested = fractions * self.peak_power
        applied = self.budget.spend(requested.reshape(-1)).reshape(m, n)
        # amplitude of ES j's signal at UE i: sqrt(p_j * large-scale gain) * h_ij
        g = np.sqrt(applied[:, None, :] * self.large_scale) * self.h[:, :, :, k]
        n0 = self.config.noise_power
        y = channel.transmit_interfering(self.blocks.symbols[self.rows, k], g, n0, rngs)
        estimates, sinr, interference = channel.mmse_equalise_interfering(y, g, n0)
        self.estimates[:, :, k] = estimates
        self.sinr[:, :, k] = sinr
        self.interference[:, :, k] = interference
        self.applied[:, :, k] = applied
        self.clipped += clipped
        self.block += 1
        sinr_db = channel.linear_to_db(self.sinr[:, :, k])
        return {"requested_power": requested, "applied_power": applied, "sinr_db": sinr_db, "action_clipped": clipped}

    def finish(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Decode every link's seed in one batch; (rewards (M, N), final info arrays (M, N, ...))."""
        m, n, k = self.num_envs, self.num_links, self.config.num_blocks
        end = decode_episodes(
            self.receiver,
            self.config,
            self.rows.reshape(-1),
            self.estimates.reshape(m * n, k, -1),
            self.sinr.reshape(m * n, k),
        )
        quality = end.reward.reshape(m, n)
        rewards = np.repeat(quality.mean(axis=1, keepdims=True), n, axis=1) if self.config.cooperative else quality
        self.last_latents = list(end.latents)
        info = {
            "quality": quality,
            **{name: values.reshape(m, n) for name, values in end.metrics.items()},
            "energy_used": self.budget.spent.reshape(m, n).copy(),
            "energy_budget": self.budget.budget.reshape(m, n).copy(),
            "block_sinr_db": channel.linear_to_db(self.sinr),
            "applied_powers": self.applied.copy(),
            "actions_clipped": self.clipped.copy(),
            "prompt": np.array([[self.receiver.prompts[r] for r in row] for row in self.rows], dtype=object),
        }
        return rewards, info

    def expected_quality(self, envs: np.ndarray, powers: np.ndarray, draws: int, seeds: Any) -> np.ndarray:
        """Mean quality (len(envs), N) of every link of episodes ``envs`` if all blocks were sent at ``powers``
        (len(envs), N, K) watts, over ``draws`` noise draws, episode e's from ``np.random.default_rng(seeds[e])``
        (never the episodes' own noise): interference, MMSE equalisation, decode, VAE and metric as in the episode.
        """
        k, n, n0 = self.config.num_blocks, self.num_links, self.config.noise_power
        powers = np.asarray(powers, dtype=np.float64)
        b = len(envs)
        symbols = self.blocks.symbols[self.rows[envs]]  # (B, N, K, S)
        estimates = np.zeros((draws, b, n, k, symbols.shape[-1]), dtype=np.complex128)
        sinr = np.zeros((draws, b, n, k))
        noise = channel.noise_draws(np.broadcast_to(seeds, (b,)), draws, symbols.shape[1:], n0)
        for block in range(k):
            g = np.sqrt(powers[:, None, :, block] * self.large_scale[envs]) * self.h[envs, :, :, block]  # (B, N, N)
            y = np.einsum("bij,bjs->bis", g, symbols[:, :, block])[None] + noise[:, :, :, block]
            # channel.mmse_equalise_interfering, over the draws axis too
            est, block_sinr, _ = channel.mmse_equalise_interfering(
                y.reshape(draws * b, n, -1), np.broadcast_to(g, (draws, b, n, n)).reshape(draws * b, n, n), n0
            )
            estimates[:, :, :, block] = est.reshape(draws, b, n, -1)
            sinr[:, :, :, block] = block_sinr.reshape(draws, b, n)
        end = decode_episodes(
            self.receiver, self.config, np.tile(self.rows[envs].reshape(-1), draws),
            estimates.reshape(draws * b * n, k, -1), sinr.reshape(draws * b * n, k),
        )  # fmt: skip
        return end.reward.reshape(draws, b, n).mean(axis=0)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("receiver", "blocks", "last_latents")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._acquire()

    def frame(self, e: int = 0) -> np.ndarray:
        """Every link's frame (the single-link drawing), tiled two per row."""
        from meg_gym.envs.rendering import draw_episode

        k, n = self.config.num_blocks, self.num_links
        frames = []
        for i in range(n):
            row = self.rows[e, i]
            sinr_db = channel.linear_to_db(np.maximum(self.sinr[e, i], 1e-12))
            budget = self.budget.budget.reshape(self.num_envs, n)[e, i]
            left = self.budget.remaining.reshape(self.num_envs, n)[e, i]
            latent = self.last_latents[e * n + i]
            frames.append(
                draw_episode(
                    prompt=f"ES {i}: " + self.receiver.prompts[row],
                    reference=self.receiver.references(np.array([row]))[0],
                    received=None if latent is None else self.receiver.decode_images(latent[None])[0],
                    gains_db=sinr_db if self.block else np.zeros(k),
                    power_fractions=self.applied[e, i] / self.peak_power,
                    blocks_done=int(self.block),
                    energy_left=float(left / budget) if budget > 0 else 0.0,
                )
            )
        if len(frames) % 2:
            frames.append(np.full_like(frames[0], 255))
        rows = [np.concatenate(frames[i : i + 2], axis=1) for i in range(0, len(frames), 2)]
        return np.concatenate(rows, axis=0)


def make_spaces(config: MultiCellConfig) -> tuple[spaces.Box, spaces.Box]:
    k = config.num_blocks
    high_share = max(1.0, config.budget_fraction) * k
    low = np.array([SNR_DB_RANGE[0], SNR_DB_RANGE[0], 0.0, 0.0, 0.0], dtype=np.float32)
    high = np.array([SNR_DB_RANGE[1], SNR_DB_RANGE[1], 1.0, 1.0, high_share], dtype=np.float32)
    return spaces.Box(low, high, dtype=np.float32), spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)


class MultiCellEnv(ParallelEnv):
    """MEG-MultiCell-v0: N edge servers send seeds to their UEs in one band; each controls its own power.

    PettingZoo's ``ParallelEnv`` API: ``meg_gym.multi_cell_v0.parallel_env(**settings)``.

    ## Description

    Each of the N links (default 4) is one MEG-PowerControl-v0 link: its edge server sends the seed of its
    user's prompt over K fading blocks under its own energy budget, and the UE decodes the image at the
    end. All links share the band, so every UE also receives the other edge servers' signals. Per episode the
    edge servers are placed uniformly in a square (``area_m``) and each UE at 10-30 m from its own server;
    the large-scale gain from server j to UE i is ``(d_ij / reference_distance_m) ** -path_loss_exponent``,
    times independent block fading per pair and block. UE i receives
    ``y_i = sum_j sqrt(p_j G_ij) h_ij s_j + n_i`` (the other links' actual seed symbols) and equalises with
    MMSE, treating the interference as noise; its SINR per block sets the decoder's reliabilities.

    ## Agents, actions and observations

    Agents ``es_0`` .. ``es_{N-1}``. Action: power as a fraction of peak power, ``Box(0, 1, (1,))``;
    finite values outside are clipped (and counted in ``info["action_clipped"]``), NaN or inf raise.
    Observation, what an edge server can know: ``[own peak SNR (dB) of this block, interference-to-noise
    ratio (dB) its UE measured in the previous block (the floor before the first), energy left / budget,
    blocks left / K, fair share]``.

    ## Rewards

    0 until the last block, then the quality (PSNR by default) of the agent's own UE's image, or with
    ``cooperative=True`` the mean over all links. All agents' seeds are decoded in one batch.

    ## Episode end, info

    Every agent terminates after K steps. The final infos carry psnr, ssim, energy_used, energy_budget,
    block_sinr_db, applied_powers, actions_clipped and the prompt of each agent.
    """

    metadata = {"render_modes": ["rgb_array"], "name": "meg_multi_cell_v0", "is_parallelizable": True,
                "render_fps": 4}  # fmt: skip

    def __init__(self, render_mode: str | None = None, **kwargs: Any):
        self.config = config_from_kwargs(MultiCellConfig, kwargs)
        self.render_mode = check_render_mode(render_mode, self.metadata)
        self.possible_agents = [f"es_{i}" for i in range(self.config.num_links)]
        self.agents: list[str] = []
        obs_space, act_space = make_spaces(self.config)
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        self.action_spaces = {a: act_space for a in self.possible_agents}
        self._batch = MultiCellBatch(self.config, 1)
        self._rng, _ = seeding.np_random()

    def observation_space(self, agent: str) -> spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Box:
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng, _ = seeding.np_random(seed)
        self.agents = list(self.possible_agents)
        self._batch.reset([self._rng])
        obs = self._batch.observations()[0]
        infos = {a: {"prompt": self._batch.receiver.prompts[self._batch.rows[0, i]]} for i, a in enumerate(self.agents)}
        return {a: obs[i] for i, a in enumerate(self.agents)}, infos

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError("the episode has ended (or reset() was not called); call reset() to start one")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"step() needs an action for every live agent; missing {missing}")
        per_agent = [power_fractions(actions[a], (), what=f"the action of {a}") for a in self.agents]
        fractions = np.array([f for f, _ in per_agent]).reshape(1, -1)
        clipped = np.array([c for _, c in per_agent]).reshape(1, -1)
        step_info = self._batch.step(fractions, clipped, [self._rng])
        obs = self._batch.observations()[0]
        done = self._batch.block == self.config.num_blocks
        rewards = np.zeros(self.config.num_links)
        arrays = {k: v[0] for k, v in step_info.items()}
        if done:
            final_rewards, final = self._batch.finish()
            rewards = final_rewards[0]
            arrays.update({k: v[0] for k, v in final.items()})
        infos = {a: scalar_info(arrays, i) for i, a in enumerate(self.agents)}
        agents = self.agents
        out = (
            {a: obs[i] for i, a in enumerate(agents)},
            {a: float(rewards[i]) for i, a in enumerate(agents)},
            {a: bool(done) for a in agents},
            {a: False for a in agents},
            infos,
        )
        if done:
            self.agents = []
        return out

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self._batch.frame(0)

    def close(self) -> None:
        pass

    def state(self) -> np.ndarray:
        """The global state: every agent's observation, concatenated."""
        return self._batch.observations()[0].reshape(-1)


class MultiCellVectorEnv:
    """``num_envs`` MEG-MultiCell episodes at once, for training: arrays (num_envs, N, ...) in and out.

    Episode e of ``reset(seed=s)`` is seeded with ``s + e`` and follows exactly the episode of
    ``parallel_env().reset(seed=s + e)``. All episodes last K steps, so they end together; the step that ends
    them returns the next episodes' first observations (same-step autoreset) and the final info in
    ``info["final_info"]``.
    """

    def __init__(self, num_envs: int = 1, **kwargs: Any):
        self.config = config_from_kwargs(MultiCellConfig, kwargs)
        self.num_envs, self.num_agents = check_num_envs(num_envs), self.config.num_links
        self.single_observation_space, self.single_action_space = make_spaces(self.config)
        self._batch = MultiCellBatch(self.config, num_envs)
        self._rngs = [seeding.np_random()[0] for _ in range(num_envs)]
        self._started = False

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self._rngs = [seeding.np_random(seed + e)[0] for e in range(self.num_envs)]
        self._batch.reset(self._rngs)
        self._started = True
        return self._batch.observations(), {}

    def step(self, actions: Any):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        fractions, clipped = power_fractions(actions, (self.num_envs, self.num_agents), what="actions")
        info: dict[str, Any] = self._batch.step(fractions, clipped, self._rngs)
        rewards = np.zeros((self.num_envs, self.num_agents))
        done = self._batch.block == self.config.num_blocks
        if done:
            rewards, final = self._batch.finish()
            info["final_obs"] = self._batch.observations()
            info["final_info"] = final
            self._batch.reset(self._rngs)
        terminated = np.full((self.num_envs, self.num_agents), done)
        return self._batch.observations(), rewards, terminated, np.zeros_like(terminated), info

    def episode_gains(self) -> np.ndarray:
        """Non-causal: every block's gain matrix (num_envs, N, N, K) including large scale, for upper references."""
        return self._batch.large_scale[..., None] * np.abs(self._batch.h) ** 2

    def link_parameters(self) -> dict[str, float]:
        """Peak power, noise power, symbols per block, symbol duration and each link's energy budget per episode."""
        return self._batch.blocks.link_parameters(self.config.noise_power)

    def expected_quality(self, powers: np.ndarray, envs: Any = None, draws: int = 4, seeds: Any = 0) -> np.ndarray:
        """Non-causal planning tool: the mean quality (len(envs), N) of every link of the current episodes of
        ``envs`` (default: all) if sent at per-block ``powers`` (len(envs), N, K) in watts, over ``draws`` noise
        draws, episode e's from ``np.random.default_rng(seeds[e])``. It leaves the episodes' own state and random
        streams alone and does not apply the budgets: keep ``powers`` within them."""
        envs = np.arange(self.num_envs) if envs is None else np.asarray(envs)
        return self._batch.expected_quality(envs, powers, draws, seeds)

    def close(self) -> None:
        pass


def parallel_env(render_mode: str | None = None, **kwargs: Any) -> MultiCellEnv:
    """MEG-MultiCell-v0 as a PettingZoo ParallelEnv; keywords are :class:`MultiCellConfig` fields."""
    return MultiCellEnv(render_mode=render_mode, **kwargs)
