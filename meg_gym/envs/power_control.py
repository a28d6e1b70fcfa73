"""MEG-PowerControl-v0: transmit-power control of a mobile-edge-generation seed over a fading channel.

The file holds the single environment (:class:`PowerControlEnv`) and its natively batched vector environment
(:class:`PowerControlVectorEnv`). Both run the same batched link simulation (:class:`_LinkBatch`), so the vector
env reproduces single-env trajectories under the same seeds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from meg_gym import channel
from meg_gym.config import PowerControlConfig, config_from_kwargs

__all__ = ["PowerControlEnv", "PowerControlVectorEnv"]


# observation layout and bounds (all float32)
OBS_NAMES = ("peak_snr_db", "energy_left", "blocks_left", "fair_share")
SNR_DB_RANGE = (-60.0, 60.0)


# ----------------------------------------------------------------------------------------------------------------
# What every environment in a process shares: the cache, the codec, the decoder, the reference images
# ----------------------------------------------------------------------------------------------------------------


class _Pipeline:
    """Everything behind the channel for one configuration: seeds in, images and quality out (batched)."""

    def __init__(self, cache_dir, split, scheme, ratio, codec_dir, ue_steps):
        import torch

        from meg_gym import codec as codec_lib
        from meg_gym.cache import LatentCache
        from meg_gym.generation import embedded
        from meg_gym.generation.imaging import prepare_vae

        self.torch = torch
        self.cache = LatentCache.load(cache_dir)
        self.rows = self.cache.indices(split)
        self.prompts = [self.cache.prompts[r] for r in self.rows]
        total = self.cache.num_inference_steps
        self.split_step = total - ue_steps
        if self.split_step not in self.cache.split_steps:
            held = [total - s for s in self.cache.split_steps]
            raise ValueError(
                f"ue_steps={ue_steps} needs ES latents after {self.split_step} of {total} steps, which the cache at "
                f"{self.cache.path} does not hold; choose ue_steps from {sorted(held)} or rebuild the cache with "
                f"that split step"
            )
        self.ue_steps = ue_steps
        latent_shape = self.cache.latent_shape
        if scheme == "seed":
            self.scheme = codec_lib.load_codec(ratio, codec_dir)
            cfg = self.scheme.config
            if (cfg.latent_channels, cfg.latent_size, cfg.latent_size) != tuple(latent_shape):
                raise ValueError(
                    f"the seed codec at {codec_dir or codec_lib.codec_folder(ratio)} is for latents of shape "
                    f"({cfg.latent_channels}, {cfg.latent_size}, {cfg.latent_size}) but the cache holds "
                    f"{tuple(latent_shape)}; train one for this cache with "
                    f"`python scripts/train_codec.py --cache-dir {self.cache.path} --extra-scenes 0 "
                    f"--ratios {ratio} --output-dir <folder>` and pass codec_dir=<folder>/ratio-..."
                )
        else:
            self.scheme = codec_lib.RawLatent(latent_shape)
        self.clean = self.cache.clean_latents(self.rows)
        with torch.no_grad():
            symbols, side = self.scheme.encode(self.cache.latents_at(self.split_step, self.rows))
        self.symbols = symbols.numpy().astype(np.complex128)
        self.side = side
        self.num_symbols = self.symbols.shape[1]
        # the cache records the model that built it: "meg-ldm", or a Stable Diffusion folder or hub id
        self.model_name = self.cache.model.get("name") or "meg-ldm"
        if self.model_name == "meg-ldm":
            self.vae = embedded.load_autoencoder()
        else:
            from diffusers import AutoencoderKL

            self.vae = AutoencoderKL.from_pretrained(self.model_name, subfolder="vae", use_safetensors=True)
        prepare_vae(self.vae)
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self._split_pipeline = None
        self._references = torch.zeros((len(self.rows), 3, 0, 0))
        self._have_reference = np.zeros(len(self.rows), dtype=bool)

    @property
    def split_pipeline(self):
        if self._split_pipeline is None:
            from meg_gym.generation.split_pipeline import SplitPipeline

            settings = self.cache.settings
            self._split_pipeline = SplitPipeline.from_pretrained(
                None if self.model_name == "meg-ldm" else self.model_name,
                num_inference_steps=int(settings["num_inference_steps"]),
                guidance_scale=float(settings["guidance_scale"]),
                eta=float(settings.get("eta", 0.0)),
            )
        return self._split_pipeline

    def decode_images(self, latents):
        from meg_gym.generation.imaging import decode_latents

        with self.torch.no_grad():
            return decode_latents(self.vae, latents)

    def references(self, idx: np.ndarray):
        """Reference images (decoded from the clean latents), memoised as float16, returned float32."""
        missing = np.unique(idx[~self._have_reference[idx]])
        if len(missing):
            images = self.decode_images(self.clean[missing])
            if self._references.shape[-1] == 0:
                self._references = self.torch.zeros((len(self.rows), *images.shape[1:]), dtype=self.torch.float16)
            self._references[missing] = images.half()
            self._have_reference[missing] = True
        return self._references[idx].float()

    def decode_all_references(self, batch_size: int = 256) -> None:
        """Decode every reference image now (episodes otherwise decode each on first use), e.g. before timing."""
        for start in range(0, len(self.rows), batch_size):
            self.references(np.arange(start, min(start + batch_size, len(self.rows))))

    def receive(self, idx: np.ndarray, estimates: np.ndarray, reliabilities: np.ndarray, reward: str) -> dict:
        """Decode a batch of received seeds and score the images. ``idx`` are split-local row indices.

        Returns psnr, ssim, latent_mse (and ms_ssim for that reward), the images, and ``quality``: the
        ``reward`` metric (``-latent_mse`` for "latent-mse", so that higher is better).
        """
        from meg_gym import codec as codec_lib
        from meg_gym import quality

        torch = self.torch
        with torch.no_grad():
            received = torch.from_numpy(codec_lib.from_blocks(estimates)).to(torch.complex64)
            rel = torch.from_numpy(codec_lib.from_blocks(reliabilities)).float()
            latents = self.scheme.decode(received, rel, self.side[idx])
            if self.ue_steps:
                prompts = [self.prompts[i] for i in idx]
                latents = self.split_pipeline.ue_complete(latents, prompts, self.split_step)
            images = self.decode_images(latents)
            refs = self.references(idx)
            pred, target = quality.to_unit(images), quality.to_unit(refs)
            out = {
                "psnr": quality.psnr(pred, target).double().numpy(),
                "ssim": quality.ssim(pred, target).double().numpy(),
                "latent_mse": (latents - self.clean[idx]).pow(2).flatten(1).mean(1).double().numpy(),
            }
            if reward == "ms-ssim":
                out["ms_ssim"] = quality.ms_ssim(pred, target).double().numpy()
        out["images"] = images
        out["quality"] = -out["latent_mse"] if reward == "latent-mse" else out[reward.replace("-", "_")]
        return out


@functools.lru_cache(maxsize=8)
def _shared_pipeline(cache_dir, split, scheme, ratio, codec_dir, ue_steps) -> _Pipeline:
    return _Pipeline(cache_dir, split, scheme, ratio, codec_dir, ue_steps)


def _pipeline_for(config: PowerControlConfig) -> _Pipeline:
    cache_dir = None if config.cache_dir is None else str(Path(config.cache_dir).resolve())
    codec_dir = None if config.codec_dir is None else str(Path(config.codec_dir).resolve())
    ratio = str(config.ratio) if config.scheme == "seed" else None
    return _shared_pipeline(cache_dir, config.split, config.scheme, ratio, codec_dir, config.ue_steps)


# ----------------------------------------------------------------------------------------------------------------
# The batched link: episodes of N environments, one numpy Generator each
# ----------------------------------------------------------------------------------------------------------------


def _validate_actions(actions: Any, num_envs: int, single: bool) -> tuple[np.ndarray, np.ndarray]:
    """(power fractions clipped to [0, 1], whether each was clipped); NaN/inf and bad shapes raise ValueError."""
    try:
        a = np.asarray(actions, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"the action must be a number in [0, 1] (power as a fraction of peak), got {actions!r}"
        ) from err
    expected = "(1,)" if single else f"({num_envs}, 1) or ({num_envs},)"
    if single:
        ok = a.size == 1 and a.ndim <= 1
    else:
        ok = a.shape in ((num_envs, 1), (num_envs,))
    if not ok:
        raise ValueError(f"the action must have shape {expected}, got shape {a.shape}")
    a = a.reshape(num_envs)
    if not np.all(np.isfinite(a)):
        raise ValueError(
            f"the action must be finite (power as a fraction of peak in [0, 1]), got {a.tolist()}; "
            "check the policy for NaN or inf outputs"
        )
    clipped = np.clip(a, 0.0, 1.0)
    return clipped, clipped != a


@dataclass
class _Final:
    """Per-environment results of the episodes that ended in one step."""

    envs: np.ndarray
    reward: np.ndarray
    info: dict[str, np.ndarray]
    images: Any


class _LinkBatch:
    """State and dynamics of N independent episodes; every random draw comes from that env's Generator."""

    def __init__(self, config: PowerControlConfig, num_envs: int):
        self.config = config
        self.pipeline = _pipeline_for(config)
        self.channel = config.channel
        self.num_envs = n = num_envs
        k = config.num_blocks
        from meg_gym.codec import _check_blocks, to_blocks

        _check_blocks(self.pipeline.num_symbols, k)
        self.symbols_per_block = self.pipeline.num_symbols // k
        self.block_symbols = to_blocks(self.pipeline.symbols, k)  # (rows, K, symbols per block), a view
        self.peak_power = config.peak_power
        self.peak_block_energy = float(
            channel.block_energy(self.peak_power, self.symbols_per_block, config.symbol_duration_s)
        )
        self.budget_value = config.budget_fraction * k * self.peak_block_energy
        self.budget = channel.EnergyBudget(
            self.budget_value, self.symbols_per_block, config.symbol_duration_s, num_envs=n
        )
        self.rows = np.zeros(n, dtype=np.int64)
        self.h = np.zeros((n, k), dtype=np.complex128)
        self.h_observed = np.zeros((n, k), dtype=np.complex128)
        self.block = np.zeros(n, dtype=np.int64)
        self.requested = np.zeros((n, k))
        self.applied = np.zeros((n, k))
        self.estimates = np.zeros((n, k, self.symbols_per_block), dtype=np.complex128)
        self.block_snr = np.zeros((n, k))
        self.clipped = np.zeros(n, dtype=np.int64)
        self.last_images = [None] * n

    # ---------------------------------------------------------------- episodes
    def reset(self, envs: np.ndarray, rngs: list[np.random.Generator]) -> None:
        for i in envs:
            rng = rngs[i]
            self.rows[i] = rng.integers(len(self.pipeline.rows))
            h = channel.sample_block_gains(self.channel, 1, self.config.num_blocks, rng)
            self.h[i] = h[0]
            self.h_observed[i] = channel.observe_gains(self.channel, h, rng)[0]
            self.last_images[i] = None
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[envs] = True
        self.block[mask] = 0
        self.requested[mask] = 0.0
        self.applied[mask] = 0.0
        self.estimates[mask] = 0.0
        self.block_snr[mask] = 0.0
        self.clipped[mask] = 0
        self.budget.reset(mask)

    def observations(self) -> np.ndarray:
        k = self.config.num_blocks
        current = np.minimum(self.block, k - 1)
        h = self.h_observed[np.arange(self.num_envs), current]
        with np.errstate(divide="ignore"):
            peak_snr_db = channel.snr_db(self.peak_power, h, self.config.noise_power)
        left = self.budget.remaining
        blocks_left = k - self.block
        energy_left = np.divide(left, self.budget.budget, out=np.zeros_like(left), where=self.budget.budget > 0)
        fair_share = np.divide(
            left, blocks_left * self.peak_block_energy, out=np.zeros_like(left), where=blocks_left > 0
        )
        obs = np.stack([np.clip(peak_snr_db, *SNR_DB_RANGE), energy_left, blocks_left / k, fair_share], axis=1)
        return obs.astype(np.float32)

    def step(self, fractions: np.ndarray, clipped: np.ndarray, envs: np.ndarray, rngs) -> dict[str, np.ndarray]:
        """Send the current block of ``envs`` at the given power fractions; returns the per-step info arrays."""
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[envs] = True
        requested = np.where(mask, fractions * self.peak_power, 0.0)
        applied = self.budget.spend(requested, mask=mask)
        n0 = self.config.noise_power
        # y = sqrt(p) h s + n and its MMSE estimate, as channel.transmit / mmse_equalise compute them, batched
        # over envs; each env's noise still comes from its own Generator (real parts, then imaginary parts)
        k = self.block[envs]
        m = self.symbols_per_block
        noise = np.empty((len(envs), m), dtype=np.complex128)
        for j, i in enumerate(envs):
            re = rngs[i].standard_normal(m)
            noise[j] = re + 1j * rngs[i].standard_normal(m)
        h = self.h[envs, k][:, None]
        p = applied[envs][:, None]
        g = np.sqrt(p) * h
        y = g * self.block_symbols[self.rows[envs], k] + np.sqrt(n0 / 2.0) * noise
        den = np.abs(g) ** 2 + n0
        self.estimates[envs, k] = np.divide(np.conj(g) * y, den, out=np.zeros_like(y), where=den > 0)
        snr = np.zeros(self.num_envs)
        snr[envs] = channel.receive_snr(applied[envs], self.h[envs, k], n0)
        self.requested[envs, k] = requested[envs]
        self.applied[envs, k] = applied[envs]
        self.block_snr[envs, k] = snr[envs]
        self.block[envs] += 1
        self.clipped[envs] += clipped[envs].astype(np.int64)
        with np.errstate(divide="ignore"):
            snr_db = channel.linear_to_db(snr)
        return {
            "requested_power": requested,
            "applied_power": applied,
            "snr_db": snr_db,
            "action_clipped": clipped & mask,
        }

    def finish(self, envs: np.ndarray) -> _Final:
        """Decode and score the episodes of ``envs`` (all at their last block), in one batch."""
        from meg_gym.codec import reliability

        k = self.config.num_blocks
        rel = np.repeat(reliability(self.block_snr[envs])[:, :, None], self.symbols_per_block, axis=2)
        result = self.pipeline.receive(self.rows[envs], self.estimates[envs], rel, self.config.reward)
        reward = result["quality"]
        with np.errstate(divide="ignore"):
            block_snr_db = channel.linear_to_db(self.block_snr[envs])
        info = {
            "quality": reward.copy(),
            "psnr": result["psnr"],
            "ssim": result["ssim"],
            "latent_mse": result["latent_mse"],
            **({"ms_ssim": result["ms_ssim"]} if "ms_ssim" in result else {}),
            "energy_used": self.budget.spent[envs].copy(),
            "energy_budget": self.budget.budget[envs].copy(),
            "symbols_sent": (self.applied[envs] > 0).sum(axis=1) * self.symbols_per_block,
            "block_snr_db": block_snr_db,
            "block_gain_db": channel.linear_to_db(np.abs(self.h[envs]) ** 2),
            "requested_powers": self.requested[envs].copy(),
            "applied_powers": self.applied[envs].copy(),
            "actions_clipped": self.clipped[envs].copy(),
            "prompt": np.array([self.pipeline.prompts[r] for r in self.rows[envs]], dtype=object),
            "blocks": np.full(len(envs), k),
        }
        for j, i in enumerate(envs):
            self.last_images[i] = result["images"][j]
        return _Final(envs=envs, reward=reward, info=info, images=result["images"])

    def __getstate__(self) -> dict[str, Any]:
        # the shared pipeline (cache, codec, VAE) is re-acquired from the config, not pickled
        return {k: v for k, v in self.__dict__.items() if k not in ("pipeline", "block_symbols", "last_images")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        from meg_gym.codec import to_blocks

        self.pipeline = _pipeline_for(self.config)
        self.block_symbols = to_blocks(self.pipeline.symbols, self.config.num_blocks)
        self.last_images = [None] * self.num_envs

    def reset_info(self, envs: np.ndarray) -> dict[str, np.ndarray]:
        return {"prompt": np.array([self.pipeline.prompts[r] for r in self.rows[envs]], dtype=object)}

    # ---------------------------------------------------------------- drawing
    def frame(self, i: int) -> np.ndarray:
        from meg_gym.envs.rendering import draw_episode

        pipe = self.pipeline
        reference = pipe.references(np.array([self.rows[i]]))[0]
        with np.errstate(divide="ignore"):
            gains_db = channel.linear_to_db(np.abs(self.h[i]) ** 2)
        return draw_episode(
            prompt=pipe.prompts[self.rows[i]],
            reference=reference,
            received=self.last_images[i],
            gains_db=gains_db,
            power_fractions=self.applied[i] / self.peak_power,
            blocks_done=int(self.block[i]),
            energy_left=float(self.budget.remaining[i] / self.budget.budget[i]) if self.budget.budget[i] > 0 else 0.0,
        )


def _spaces(config: PowerControlConfig) -> tuple[spaces.Box, spaces.Box]:
    k = config.num_blocks
    high_share = max(1.0, config.budget_fraction) * k
    low = np.array([SNR_DB_RANGE[0], 0.0, 0.0, 0.0], dtype=np.float32)
    high = np.array([SNR_DB_RANGE[1], 1.0, 1.0, high_share], dtype=np.float32)
    observation_space = spaces.Box(low, high, dtype=np.float32)
    action_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
    return observation_space, action_space


def _scalar_info(info: dict[str, np.ndarray], j: int) -> dict[str, Any]:
    """Row ``j`` of batched info arrays, with numpy scalars turned into Python numbers."""
    out = {}
    for key, value in info.items():
        v = value[j]
        out[key] = v.item() if isinstance(v, np.generic) else v
    return out


# ----------------------------------------------------------------------------------------------------------------
# The environments
# ----------------------------------------------------------------------------------------------------------------


class PowerControlEnv(gym.Env):
    """
    ## Description

    Mobile-edge generation (Zhong et al., "Enabling Distributed Generative AI in 6G: Mobile-Edge Generation",
    IEEE IoT J. 12(6), 2024). An edge server has run a latent diffusion model for the user's prompt; it sends
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
    `psnr`, `ssim`, `latent_mse` (and `ms_ssim` when it is the reward), `energy_used`, `energy_budget`,
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
        cache_dir=None,           # a cache built with scripts/build_cache.py, e.g. from Stable Diffusion
        render_mode=None,         # "rgb_array"
    )
    ```

    `gym.make_vec("MEG-PowerControl-v0", num_envs=64, vectorization_mode="vector_entry_point")` returns
    :class:`PowerControlVectorEnv`, which runs the same simulation for 64 episodes at once and decodes all the
    seeds that finish together in one batch.

    ## Version History

    * v0: Initial release.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, **kwargs: Any):
        self.config = config_from_kwargs(PowerControlConfig, kwargs)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.observation_space, self.action_space = _spaces(self.config)
        self._link = _LinkBatch(self.config, 1)
        self._started = False
        self._done = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._link.reset(np.array([0]), [self.np_random])
        self._started, self._done = True, False
        return self._link.observations()[0], _scalar_info(self._link.reset_info(np.array([0])), 0)

    def step(self, action: Any):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("the episode has ended (all blocks sent); call reset() to start a new one")
        fractions, clipped = _validate_actions(action, 1, single=True)
        info = _scalar_info(self._link.step(fractions, clipped, np.array([0]), [self.np_random]), 0)
        reward = 0.0
        if self._link.block[0] == self.config.num_blocks:
            final = self._link.finish(np.array([0]))
            reward = float(final.reward[0])
            info.update(_scalar_info(final.info, 0))
            info["quality"] = reward
            self._done = True
        return self._link.observations()[0], reward, self._done, False, info

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
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        modes = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)
        try:
            autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            autoreset_mode = None
        if autoreset_mode not in modes:
            raise ValueError(f"autoreset_mode must be one of {[m.value for m in modes]}, got {autoreset_mode!r}")
        self.metadata = {**self.metadata, "autoreset_mode": autoreset_mode}
        self.config = config_from_kwargs(PowerControlConfig, kwargs)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = _spaces(self.config)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._link = _LinkBatch(self.config, num_envs)
        self._rngs = [seeding.np_random()[0] for _ in range(num_envs)]
        self._autoreset = np.zeros(num_envs, dtype=bool)
        self._started = False
        self.spec = None

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        if seed is None:
            seeds = [None] * self.num_envs
        elif isinstance(seed, int | np.integer):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset got {len(seeds)} seeds for {self.num_envs} environments")
        for i, s in enumerate(seeds):
            if s is not None or not self._started:
                self._rngs[i] = seeding.np_random(s)[0]
        self._link.reset(np.arange(self.num_envs), self._rngs)
        self._autoreset[:] = False
        self._started = True
        return self._link.observations(), _with_masks(
            self._link.reset_info(np.arange(self.num_envs)), None, self.num_envs
        )

    def step(self, actions: Any):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        fractions, clipped = _validate_actions(actions, self.num_envs, single=False)
        restart = np.flatnonzero(self._autoreset)
        active = np.flatnonzero(~self._autoreset)
        rewards = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        if len(active):
            step_info = self._link.step(fractions, clipped, active, self._rngs)
            ended = active[self._link.block[active] == self.config.num_blocks]
            same_step = self.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
            shown = np.setdiff1d(active, ended) if same_step else active
            infos = _with_masks({k: v[shown] for k, v in step_info.items()}, shown, self.num_envs)
            if len(ended):
                final = self._link.finish(ended)
                rewards[ended] = final.reward
                terminated[ended] = True
                final_info = _with_masks(final.info, ended, self.num_envs)
                if same_step:
                    last_obs = self._link.observations()
                    final_obs = np.full(self.num_envs, None, dtype=object)
                    for i in ended:
                        final_obs[i] = last_obs[i]
                    ended_step = _with_masks({k: v[ended] for k, v in step_info.items()}, ended, self.num_envs)
                    mask = np.isin(np.arange(self.num_envs), ended)
                    infos.update(final_obs=final_obs, _final_obs=mask, final_info=_merge(ended_step, final_info))
                    infos["_final_info"] = mask.copy()
                    restart = ended
                else:
                    infos = _merge(infos, final_info)
        if len(restart):
            self._link.reset(restart, self._rngs)
            infos = _merge(infos, _with_masks(self._link.reset_info(restart), restart, self.num_envs))
        if self.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP:
            self._autoreset = terminated.copy()
        truncated = np.zeros(self.num_envs, dtype=bool)
        return self._link.observations(), rewards, terminated, truncated, infos

    def episode_gains(self) -> np.ndarray:
        """True complex gains of every block of the current episodes, (num_envs, num_blocks).

        Non-causal: it reveals future blocks. It exists for upper references such as ``baselines/oracle.py``;
        a policy that uses it is not a valid entry for the causal leaderboard.
        """
        return self._link.h.copy()

    def link_parameters(self) -> dict[str, float]:
        """Peak power, noise power, symbols per block, symbol duration and the energy budget per episode."""
        link = self._link
        return {
            "peak_power": link.peak_power,
            "noise_power": self.config.noise_power,
            "symbols_per_block": link.symbols_per_block,
            "symbol_duration_s": self.config.symbol_duration_s,
            "energy_budget": link.budget_value,
        }

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if not self._started:
            raise RuntimeError("call reset() before render()")
        return tuple(self._link.frame(i) for i in range(self.num_envs))


def _with_masks(info: dict[str, np.ndarray], envs: np.ndarray | None, num_envs: int) -> dict[str, np.ndarray]:
    """Per-env info arrays laid out as Gymnasium's vector envs do: ``info[key]`` (num_envs, ...) and ``info[_key]``."""
    envs = np.arange(num_envs) if envs is None else envs
    out = {}
    for key, value in info.items():
        value = np.asarray(value)
        full = (
            np.full(num_envs, None, dtype=object)
            if value.dtype == object
            else np.zeros((num_envs, *value.shape[1:]), dtype=value.dtype)
        )
        full[envs] = value
        mask = np.zeros(num_envs, dtype=bool)
        mask[envs] = True
        out[key], out[f"_{key}"] = full, mask
    return out


def _merge(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Merge two masked info dicts; where both hold a key, ``b`` wins on its own entries."""
    out = dict(a)
    for key, value in b.items():
        if key.startswith("_") or key not in out:
            out[key] = value if key not in out else (out[key] | value)
            continue
        mask = b[f"_{key}"]
        merged = out[key].copy()
        if merged.dtype != value.dtype and merged.dtype != object:
            merged = merged.astype(np.result_type(merged.dtype, value.dtype))
        merged[mask] = value[mask]
        out[key] = merged
    return out
