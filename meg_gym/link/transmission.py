"""The batched link: seeds laid out over fading blocks, sent under an energy budget, decoded at the end.

- :class:`SeedBlocks`: the seed symbols of every prompt interleaved over K blocks, and what a block costs.
- :class:`BatchedLink`: N independent single-link episodes (gains, energy, transmit and MMSE-equalise one
  block per step, decode and score at the end), every random draw from that episode's own Generator.
- :func:`decode_episodes`: the end of an episode for any link: reliabilities from the per-block SINR, the
  receiver's decode, the reward from the reward table.

The channel arithmetic itself is :mod:`meg_gym.channel`'s and the accounting :mod:`meg_gym.energy`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from meg_gym import channel
from meg_gym.energy import EnergyBudget, block_energy
from meg_gym.link.receiver import Receiver, receiver_for
from meg_gym.link.rewards import REWARDS, metrics_to_compute

if TYPE_CHECKING:
    from meg_gym.config import PowerControlConfig

__all__ = ["BatchedLink", "EpisodeEnd", "SeedBlocks", "decode_episodes"]


class SeedBlocks:
    """The seed symbols of every prompt of a receiver laid out over ``config.num_blocks`` fading blocks.

    Attributes:
        symbols: (prompts, K, symbols per block); symbol ``i`` of a seed goes to block ``i % K``.
        peak_block_energy: Energy of one block sent at peak power.
        episode_budget: The energy budget of an episode, ``budget_fraction`` of every block at peak power.
    """

    def __init__(self, receiver: Receiver, config: PowerControlConfig):
        from meg_gym.codec import check_blocks, to_blocks

        k = config.num_blocks
        check_blocks(receiver.num_symbols, k)
        self.num_blocks = k
        self.symbols_per_block = receiver.num_symbols // k
        self.symbols = to_blocks(receiver.symbols, k)  # a view
        self.peak_power = config.peak_power
        self.symbol_duration_s = config.symbol_duration_s
        self.peak_block_energy = float(block_energy(self.peak_power, self.symbols_per_block, config.symbol_duration_s))
        self.episode_budget = config.budget_fraction * k * self.peak_block_energy

    def link_parameters(self, noise_power: float) -> dict[str, float]:
        """Peak power, noise power, symbols per block, symbol duration and the energy budget per episode (per
        transmitter): what the non-causal references plan with."""
        return {
            "peak_power": self.peak_power,
            "noise_power": noise_power,
            "symbols_per_block": self.symbols_per_block,
            "symbol_duration_s": self.symbol_duration_s,
            "energy_budget": self.episode_budget,
        }

    def new_budget(self, accounts: int) -> EnergyBudget:
        """A full episode budget for each of ``accounts`` transmitters."""
        return EnergyBudget(self.episode_budget, self.symbols_per_block, self.symbol_duration_s, num_envs=accounts)


@dataclass
class EpisodeEnd:
    """Results of episodes decoded together: the reward, each computed metric, the UE's final latents."""

    reward: np.ndarray
    metrics: dict[str, np.ndarray]
    latents: Any


def decode_episodes(
    receiver: Receiver, config: PowerControlConfig, rows: np.ndarray, estimates: np.ndarray, block_sinr: np.ndarray
) -> EpisodeEnd:
    """Decode and score seeds whose every block has arrived: estimates (B, K, symbols per block), SINR (B, K)."""
    from meg_gym.codec import reliability

    rel = np.repeat(reliability(block_sinr)[..., None], estimates.shape[-1], axis=-1)
    result = receiver.receive(rows, estimates, rel, metrics_to_compute(config.reward, config.info_metrics))
    latents = result.pop("latents")
    return EpisodeEnd(reward=REWARDS[config.reward](result), metrics=result, latents=latents)


class BatchedLink:
    """State and dynamics of N independent single-link episodes; every random draw comes from that env's Generator."""

    def __init__(self, config: PowerControlConfig, num_envs: int):
        self.config = config
        self.channel = config.channel
        self.num_envs = n = num_envs
        self._acquire()
        k = config.num_blocks
        self.budget = self.blocks.new_budget(n)
        self.rows = np.zeros(n, dtype=np.int64)
        self.h = np.zeros((n, k), dtype=np.complex128)
        self.h_observed = np.zeros((n, k), dtype=np.complex128)
        self.block = np.zeros(n, dtype=np.int64)
        self.requested = np.zeros((n, k))
        self.applied = np.zeros((n, k))
        self.estimates = np.zeros((n, k, self.blocks.symbols_per_block), dtype=np.complex128)
        self.block_snr = np.zeros((n, k))
        self.clipped = np.zeros(n, dtype=np.int64)

    def _acquire(self) -> None:
        # the shared receiver (cache, codec, VAE) comes from the config; it is re-acquired after unpickling
        self.receiver = receiver_for(self.config)
        self.blocks = SeedBlocks(self.receiver, self.config)
        self.last_latents: list[Any] = [None] * self.num_envs

    @property
    def peak_power(self) -> float:
        return self.blocks.peak_power

    # ---------------------------------------------------------------- episodes
    def reset(self, envs: np.ndarray, rngs: list[np.random.Generator]) -> None:
        for i in envs:
            rng = rngs[i]
            self.rows[i] = rng.integers(len(self.receiver.rows))
            h = channel.sample_block_gains(self.channel, 1, self.config.num_blocks, rng)
            self.h[i] = h[0]
            self.h_observed[i] = channel.observe_gains(self.channel, h, rng)[0]
            self.last_latents[i] = None
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[envs] = True
        self.block[mask] = 0
        self.requested[mask] = 0.0
        self.applied[mask] = 0.0
        self.estimates[mask] = 0.0
        self.block_snr[mask] = 0.0
        self.clipped[mask] = 0
        self.budget.reset(mask)

    def step(self, fractions: np.ndarray, clipped: np.ndarray, envs: np.ndarray, rngs) -> dict[str, np.ndarray]:
        """Send the current block of ``envs`` at the given power fractions; returns the per-step info arrays."""
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[envs] = True
        requested = np.where(mask, fractions * self.peak_power, 0.0)
        applied = self.budget.spend(requested, mask=mask)
        n0 = self.config.noise_power
        k = self.block[envs]
        h = self.h[envs, k]
        symbols = self.blocks.symbols[self.rows[envs], k]
        y = channel.transmit_each(symbols, h, applied[envs], n0, [rngs[i] for i in envs])
        self.estimates[envs, k] = channel.mmse_equalise(y, h, applied[envs], n0)
        snr = np.zeros(self.num_envs)
        snr[envs] = channel.receive_snr(applied[envs], h, n0)
        self.requested[envs, k] = requested[envs]
        self.applied[envs, k] = applied[envs]
        self.block_snr[envs, k] = snr[envs]
        self.block[envs] += 1
        self.clipped[envs] += clipped[envs].astype(np.int64)
        return {
            "requested_power": requested,
            "applied_power": applied,
            "snr_db": channel.linear_to_db(snr),
            "action_clipped": clipped & mask,
        }

    def finish(self, envs: np.ndarray) -> EpisodeEnd:
        """Decode and score the episodes of ``envs`` (all at their last block), in one batch; adds the final info."""
        end = decode_episodes(self.receiver, self.config, self.rows[envs], self.estimates[envs], self.block_snr[envs])
        spb = self.blocks.symbols_per_block
        end.metrics = {
            "quality": end.reward.copy(),
            **end.metrics,
            "energy_used": self.budget.spent[envs].copy(),
            "energy_budget": self.budget.budget[envs].copy(),
            "symbols_sent": (self.applied[envs] > 0).sum(axis=1) * spb,
            "block_snr_db": channel.linear_to_db(self.block_snr[envs]),
            "block_gain_db": channel.linear_to_db(np.abs(self.h[envs]) ** 2),
            "requested_powers": self.requested[envs].copy(),
            "applied_powers": self.applied[envs].copy(),
            "actions_clipped": self.clipped[envs].copy(),
            "prompt": np.array([self.receiver.prompts[r] for r in self.rows[envs]], dtype=object),
            "blocks": np.full(len(envs), self.config.num_blocks),
        }
        for j, i in enumerate(envs):
            self.last_latents[i] = end.latents[j]
        return end

    def expected_quality(self, envs: np.ndarray, powers: np.ndarray, draws: int, seeds: Any) -> np.ndarray:
        """Mean reward of sending the current episodes of ``envs`` whole at per-block ``powers`` (B, K), over
        ``draws`` noise draws, episode e's from ``np.random.default_rng(seeds[e])`` (never the episodes' own
        noise): the real decode, VAE and metric, for non-causal planning. Equal seeds give equal draws, so
        candidates compared under one seed differ by their powers alone."""
        powers = np.asarray(powers, dtype=np.float64)
        rows, h, n0 = self.rows[envs], self.h[envs], self.config.noise_power
        symbols = self.blocks.symbols[rows]  # (B, K, S)
        noise = channel.noise_draws(np.broadcast_to(seeds, (len(envs),)), draws, symbols.shape[1:], n0)
        gain = (np.sqrt(powers) * h)[..., None]  # (B, K, 1)
        # the MMSE estimate of channel.mmse_equalise, written out for the extra draws axis
        estimates = np.conj(gain) * (gain * symbols + noise) / (np.abs(gain) ** 2 + n0)
        snr = np.broadcast_to(channel.receive_snr(powers, h, n0), (draws, *powers.shape))
        end = decode_episodes(
            self.receiver, self.config, np.tile(rows, draws), estimates.reshape(-1, *symbols.shape[1:]),
            snr.reshape(-1, powers.shape[1]),
        )  # fmt: skip
        return end.reward.reshape(draws, len(envs)).mean(axis=0)

    def reset_info(self, envs: np.ndarray) -> dict[str, np.ndarray]:
        return {"prompt": np.array([self.receiver.prompts[r] for r in self.rows[envs]], dtype=object)}

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("receiver", "blocks", "last_latents")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._acquire()

    # ---------------------------------------------------------------- drawing
    def frame(self, i: int) -> np.ndarray:
        from meg_gym.envs.rendering import draw_episode

        receiver = self.receiver
        latent = self.last_latents[i]
        return draw_episode(
            prompt=receiver.prompts[self.rows[i]],
            reference=receiver.references(np.array([self.rows[i]]))[0],
            received=None if latent is None else receiver.decode_images(latent[None])[0],
            gains_db=channel.linear_to_db(np.abs(self.h[i]) ** 2),
            power_fractions=self.applied[i] / self.peak_power,
            blocks_done=int(self.block[i]),
            energy_left=float(self.budget.remaining[i] / self.budget.budget[i]) if self.budget.budget[i] > 0 else 0.0,
        )
