"""The UE side of MEG-SplitControl-v0, run live: received symbols in, image quality out, batched.

For a batch of requests, each with its own prompt, split step and scheme, :class:`LiveUE` runs what the UE
does after the seed has crossed the channel: the MMSE-equalised symbols are decoded into a latent (seed codec
or raw latent), the UE runs its ``T - split`` denoising steps on it and decodes the image, which is scored
against the image of the clean latent. Requests are grouped by (split step, scheme) so each group is one
batch through the codec, the UNet and the VAE. Text embeddings are computed once per prompt and kept.

It serves both fidelities of the environment: ``fidelity="live"`` calls it on every request, and
``scripts/build_quality_table.py`` calls it on an SNR grid to make the shipped quality table.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from meg_gym.link.rewards import IMAGE_METRICS, INFO_METRICS

__all__ = ["RAW_LATENT_RECEIVERS", "SCHEME_NAMES", "SCHEME_RATIOS", "LiveUE", "scheme_symbols", "shared_live_ue"]

# what can be sent, most compressed first; the ratio is the seed's complex symbols per latent complex symbol
SCHEME_RATIOS: dict[str, Fraction] = {
    "seed-1/16": Fraction(1, 16),
    "seed-1/8": Fraction(1, 8),
    "seed-1/4": Fraction(1, 4),
    "seed-1/2": Fraction(1, 2),
    "raw-latent": Fraction(1),
}
SCHEME_NAMES = tuple(SCHEME_RATIOS)
RAW_LATENT_RECEIVERS = ("lmmse", "zero-mean")


def scheme_symbols(scheme: str, latent_elements: int) -> int:
    """Complex channel symbols a scheme sends for a latent of ``latent_elements`` real values."""
    return int(SCHEME_RATIOS[scheme] * (latent_elements // 2))


class LiveUE:
    """Decode, denoise and score received payloads of any (split step, scheme), batched per group.

    Args:
        cache_dir: The latent cache (None: the shipped one).
        split: Its prompt split ("train", "test" or "all"); request prompts are indices into it.
        device: Where the UNet and the VAE run ("cpu", "cuda", ...).
        codec_dirs: Optional folder per seed scheme name, for codecs other than the shipped ones.
        raw_latent_receiver: How the raw latent is estimated from the equalised symbols: ``"lmmse"`` (default: the
            linear MMSE estimate with the latent prior at the split step, MEG-PowerControl-v0's ``raw-latent``) or
            ``"zero-mean"`` (as if the latent had zero mean: the receiver of quality tables before version 2).
    """

    def __init__(
        self,
        cache_dir=None,
        split: str = "test",
        device: str = "cpu",
        codec_dirs: dict | None = None,
        raw_latent_receiver: str = "lmmse",
    ):
        import torch

        from meg_gym import codec as codec_lib
        from meg_gym.link.receiver import Receiver

        self.torch = torch
        self.device = torch.device(device)
        # a receiver without UE steps holds the cache rows, the VAE and the memoised reference images
        self.base = Receiver(cache_dir, split, "raw-latent", None, None, 0)
        self.base.vae.to(self.device)
        self.cache = self.base.cache
        self.rows = self.base.rows
        self.prompts = self.base.prompts
        self.total_steps = self.cache.num_inference_steps
        self.split_steps = tuple(int(s) for s in self.cache.split_steps)
        self.latent_elements = int(np.prod(self.cache.latent_shape))
        if raw_latent_receiver not in RAW_LATENT_RECEIVERS:
            raise ValueError(
                f"raw_latent_receiver must be one of {list(RAW_LATENT_RECEIVERS)}, got {raw_latent_receiver!r}"
            )
        self.raw_latent_receiver = raw_latent_receiver
        codec_dirs = codec_dirs or {}
        self.seed_codecs: dict[str, Any] = {
            name: codec_lib.load_codec(ratio, codec_dirs.get(name)).to(self.device).eval()
            for name, ratio in SCHEME_RATIOS.items()
            if ratio != 1
        }
        # the raw latent's receiver depends on the split step (the prior is that of the latent the ES sends)
        self.raw_latent: dict[int, Any] = {}
        for step in self.split_steps:
            prior = None
            if raw_latent_receiver == "lmmse":
                from meg_gym.latent_prior import latent_prior

                prior = tuple(t.to(self.device) for t in latent_prior(cache_dir, step))
            self.raw_latent[step] = codec_lib.RawLatent(self.cache.latent_shape, prior=prior)
        self._payloads: dict[tuple[int, str], tuple[Any, Any]] = {}
        self._cond = None
        self._uncond = None
        self._have_text = np.zeros(len(self.rows), dtype=bool)
        self._pipeline = None

    @property
    def pipeline(self):
        if self._pipeline is None:
            self._pipeline = self.base.split_pipeline
            self._pipeline.pipe.to(self.device)
        return self._pipeline

    def scheme(self, split_step: int, scheme: str):
        """The encoder/decoder of ``scheme`` for latents after ``split_step`` ES steps."""
        return self.raw_latent[int(split_step)] if scheme == "raw-latent" else self.seed_codecs[scheme]

    def num_symbols(self, scheme: str) -> int:
        return scheme_symbols(scheme, self.latent_elements)

    def payload(self, split_step: int, scheme: str):
        """(symbols (P, n) complex64, side information) of every prompt of the split: encoded once, kept."""
        key = (int(split_step), scheme)
        if key not in self._payloads:
            with self.torch.no_grad():
                latents = self.cache.latents_at(int(split_step), self.rows).float().to(self.device)
                symbols, side = self.scheme(split_step, scheme).encode(latents)
            self._payloads[key] = (symbols.to(self.torch.complex64), side)
        return self._payloads[key]

    def text_embeddings(self, idx: np.ndarray):
        """(conditional embeddings of the prompts ``idx``, unconditional ones or None): each prompt encoded once."""
        torch = self.torch
        missing = np.unique(idx[~self._have_text[idx]])
        if len(missing):
            cond, uncond = self.pipeline.encode_prompts([self.prompts[i] for i in missing])
            if self._cond is None:
                self._cond = torch.zeros((len(self.rows), *cond.shape[1:]), dtype=cond.dtype, device=cond.device)
                self._uncond = None if uncond is None else uncond[:1].clone()
            self._cond[torch.as_tensor(missing, device=cond.device)] = cond
            self._have_text[missing] = True
        cond = self._cond[self.torch.as_tensor(idx, device=self._cond.device)]
        uncond = None if self._uncond is None else self._uncond.expand(len(idx), *self._uncond.shape[1:])
        return cond, uncond

    def run(
        self,
        idx: np.ndarray,
        split_steps: np.ndarray,
        schemes: Sequence[str],
        block_snr: np.ndarray,
        generator=None,
        metrics: Sequence[str] = ("psnr",),
        batch_size: int = 1024,
        noise: Sequence[np.ndarray] | None = None,
        return_images: bool = False,
    ) -> dict[str, Any]:
        """Score one batch of requests.

        Args:
            idx: (B,) prompt indices into the split.
            split_steps: (B,) the ES's denoising steps for each request (the UE runs the rest).
            schemes: (B,) scheme names from :data:`SCHEME_NAMES`.
            block_snr: (B, K) linear receive SNR of each fading block; symbol ``i`` of a payload lies in block
                ``i % K`` (the interleaving of :func:`meg_gym.codec.to_blocks`).
            generator: The ``torch.Generator`` of the channel noise (when ``noise`` is None).
            metrics: Names from :data:`meg_gym.link.rewards.INFO_METRICS`.
            batch_size: Most requests per UNet/VAE batch.
            noise: Optional unit complex Gaussian noise per request (each at least its payload's length), drawn by
                the caller, e.g. from each environment's own generator, so results do not depend on the batch.
            return_images: Also return ``"images"`` and ``"references"``, (B, 3, H, W) float tensors in [-1, 1].

        Returns:
            Each metric as a float64 array (B,) (and the images, if asked).
        """
        from meg_gym import quality
        from meg_gym.channel import mmse_with_noise, simulate_mmse_torch

        torch = self.torch
        unknown = set(metrics) - set(INFO_METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {list(INFO_METRICS)}")
        idx = np.asarray(idx)
        split_steps = np.asarray(split_steps)
        schemes = np.asarray(schemes, dtype=object)
        block_snr = np.asarray(block_snr, dtype=np.float64)
        out: dict[str, Any] = {name: np.zeros(len(idx)) for name in metrics}
        kept: dict[str, list] = {"images": [], "references": [], "order": []}
        groups: dict[tuple[int, str], list[int]] = {}
        for j, key in enumerate(zip(split_steps.tolist(), schemes.tolist(), strict=True)):
            groups.setdefault(key, []).append(j)
        scores = {"psnr": quality.psnr, "ssim": quality.ssim, "ms_ssim": quality.ms_ssim}
        with torch.no_grad():
            for (split_step, scheme), members in groups.items():
                members = np.asarray(members)
                symbols_all, side_all = self.payload(split_step, scheme)
                n = symbols_all.shape[1]
                k = block_snr.shape[1]
                for start in range(0, len(members), batch_size):
                    part = members[start : start + batch_size]
                    rows = idx[part]
                    snr = torch.from_numpy(block_snr[part][:, np.arange(n) % k]).float()
                    if noise is None:
                        received, rel = simulate_mmse_torch(symbols_all[rows].cpu(), snr, generator)
                    else:
                        drawn = np.stack([noise[j][:n] for j in part])
                        received, rel = mmse_with_noise(symbols_all[rows].cpu(), snr, torch.from_numpy(drawn))
                    received, rel = received.to(self.device), rel.to(self.device)
                    side = None if side_all is None else side_all[rows]
                    latents = self.scheme(split_step, scheme).decode(received, rel, side)
                    if split_step < self.total_steps:
                        cond, uncond = self.text_embeddings(rows)
                        latents, _ = self.pipeline.denoise(latents, cond, uncond, split_step, self.total_steps)
                    if return_images or IMAGE_METRICS.intersection(metrics):
                        images = self.base.decode_images(latents)
                    if return_images:
                        kept["images"].append(images.float().cpu())
                        kept["references"].append(self.base.references(rows).float().cpu())
                        kept["order"].append(part)
                    if IMAGE_METRICS.intersection(metrics):
                        pred = quality.to_unit(images)
                        target = quality.to_unit(self.base.references(rows).to(images.device))
                        for name in metrics:
                            if name in scores:
                                out[name][part] = scores[name](pred, target).double().cpu().numpy()
                    if "latent_mse" in metrics:
                        clean = self.base.clean[rows].to(latents.device).float()
                        out["latent_mse"][part] = (latents - clean).pow(2).flatten(1).mean(1).double().cpu().numpy()
        if return_images and kept["order"]:
            order = np.argsort(np.concatenate(kept["order"]))
            out["images"] = torch.cat(kept["images"])[torch.from_numpy(order)]
            out["references"] = torch.cat(kept["references"])[torch.from_numpy(order)]
        return out


@functools.lru_cache(maxsize=4)
def _shared(cache_dir: str | None, split: str, device: str, raw_latent_receiver: str) -> LiveUE:
    return LiveUE(cache_dir, split, device, raw_latent_receiver=raw_latent_receiver)


def shared_live_ue(cache_dir, split: str, device: str = "cpu", raw_latent_receiver: str = "lmmse") -> LiveUE:
    """The process-wide :class:`LiveUE` of a cache, split, device and raw-latent receiver (environments share it)."""
    return _shared(None if cache_dir is None else str(Path(cache_dir).resolve()), split, device, raw_latent_receiver)
