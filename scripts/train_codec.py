"""Train the seed codec (JSCC) through the noisy channel, one model per compression ratio.

    python scripts/train_codec.py                      # all four ratios into meg_gym/assets/seed-codec
    python scripts/train_codec.py --ratios 1/4 --cache-dir path/to/cache --output-dir my-codecs

Training data: the cache's train-split ES latents at every cached split step (so the codec also carries the
partly denoised latents sent when the UE runs denoising steps), plus the autoencoder latents of
``--extra-scenes`` fresh training-split MEG-Shapes renders (embedded model only). Test-split prompts are
never seen. Each batch sees the channel in one of three ways, chosen per latent: AWGN at one SNR; Rayleigh
block fading around a mean SNR; independent per-block SNRs with some blocks sent at zero power (as a power
controller may do). Mean SNRs are uniform in dB over [--snr-min-db, --snr-max-db]. The loss is the latent
mean squared error, as in the paper. Rerunning resumes each ratio from --work-dir.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import tyro
from tqdm import tqdm

from meg_gym import codec as codec_lib
from meg_gym.cache import LatentCache
from meg_gym.channel import simulate_mmse_torch
from meg_gym.generation import embedded, shapes
from meg_gym.generation.imaging import to_tensor


@dataclass
class Args:
    ratios: list[str] = field(default_factory=lambda: ["1/2", "1/4", "1/8", "1/16"])
    """compression ratios to train, each a separate model"""
    cache_dir: Path | None = None
    """latent cache to train on (default: the shipped embedded cache)"""
    output_dir: Path = codec_lib.CODEC_DIR
    """each ratio is saved to {output_dir}/ratio-{a}-{b} in diffusers' folder format"""
    work_dir: Path = Path("work/codec")
    """checkpoints, extra latents and logs (not shipped)"""
    extra_scenes: int = 20_000
    """fresh training-split renders encoded with the embedded autoencoder (0 to use the cache only)"""
    num_blocks: int = 8
    """fading blocks per seed during training (the environment's default)"""
    snr_min_db: float = -15.0
    snr_max_db: float = 25.0
    zero_block_prob: float = 0.1
    """chance that a block is sent at zero power in the per-block mode"""
    steps: int = 4_000
    batch_size: int = 256
    lr: float = 2e-3
    hidden_channels: int = 64
    num_res_blocks: int = 2
    seed: int = 0
    threads: int = 0
    checkpoint_every: int = 1_000


@torch.no_grad()
def extra_latents(args: Args, scaling_factor: float) -> torch.Tensor:
    """Autoencoder latents of fresh training-split renders (indices from 4,000,000, disjoint from the cache)."""
    path = args.work_dir / f"extra-latents-{args.extra_scenes}-seed{args.seed}.safetensors"
    from safetensors.torch import load_file, save_file

    if path.exists():
        return load_file(path)["latents"]
    vae = embedded.load_autoencoder()
    out = []
    for start in tqdm(range(0, args.extra_scenes, 500), desc="encode renders"):
        count = min(500, args.extra_scenes - start)
        images = shapes.render_scenes("train", count, args.seed, 4_000_000 + start)
        out.append(vae.encode(to_tensor(images)).latents * scaling_factor)
    latents = torch.cat(out).contiguous()
    save_file({"latents": latents}, path)
    return latents


def sample_snr(batch: int, num_symbols: int, args: Args, rng: np.random.Generator) -> torch.Tensor:
    """Linear per-symbol SNR, (batch, num_symbols), in the block layout of :func:`codec.to_blocks`."""
    k = args.num_blocks
    mean_db = rng.uniform(args.snr_min_db, args.snr_max_db, (batch, 1))
    mode = rng.integers(0, 3, (batch, 1))
    awgn = np.repeat(mean_db, k, axis=1)
    rayleigh = mean_db + 10 * np.log10(np.maximum(rng.exponential(1.0, (batch, k)), 1e-6))
    per_block = rng.uniform(args.snr_min_db, args.snr_max_db, (batch, k))
    block_db = np.where(mode == 0, awgn, np.where(mode == 1, rayleigh, per_block))
    block_snr = 10 ** (block_db / 10)
    zero = (mode == 2) & (rng.random((batch, k)) < args.zero_block_prob)
    block_snr = np.where(zero, 0.0, block_snr)
    per_symbol = np.repeat(block_snr[:, :, None], num_symbols // k, axis=2)
    return codec_lib.from_blocks(torch.from_numpy(per_symbol).float())


@torch.no_grad()
def latent_mse_at(model, latents: torch.Tensor, snr_db: float, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    symbols, side = model.encode(latents)
    received, rel = simulate_mmse_torch(symbols, torch.tensor(10 ** (snr_db / 10)), gen)
    return F.mse_loss(model.decode(received, rel, side), latents).item()


def train_ratio(ratio, args: Args, train: torch.Tensor, test: torch.Tensor) -> dict:
    r = codec_lib.parse_ratio(ratio)
    c, size = train.shape[1], train.shape[2]
    model = codec_lib.SeedCodec(
        latent_channels=c,
        latent_size=size,
        seed_channels=int(r * 4 * c),
        hidden_channels=args.hidden_channels,
        num_res_blocks=args.num_res_blocks,
    )
    if model.compression_ratio != r:
        raise ValueError(f"ratio {r} needs a whole number of seed channels for {c} latent channels")
    codec_lib.check_blocks(model.num_symbols, args.num_blocks)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))
    )
    work = args.work_dir / f"ratio-{r.numerator}-{r.denominator}"
    work.mkdir(parents=True, exist_ok=True)
    ckpt, step = work / "checkpoint.pt", 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step = int(state["step"])
    rng = np.random.default_rng([args.seed, r.denominator, step])
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    log = open(work / "log.jsonl", "a")
    t0 = time.time()
    bar = tqdm(total=args.steps, initial=step, desc=f"codec {r}")
    model.train()
    while step < args.steps:
        x = train[torch.from_numpy(rng.integers(0, len(train), args.batch_size))]
        loss = F.mse_loss(model(x, sample_snr(len(x), model.num_symbols, args, rng), gen), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        if step % 100 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % args.checkpoint_every == 0 or step == args.steps:
            model.eval()
            record = {"step": step, "loss": loss.item(), "elapsed_s": time.time() - t0}
            record.update({f"test_mse_{db:+g}dB": latent_mse_at(model, test, db, 0) for db in (-10, 0, 10)})
            model.train()
            log.write(json.dumps(record) + "\n")
            log.flush()
            tqdm.write(json.dumps(record))
            torch.save(
                {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step}, ckpt
            )
    bar.close()
    model.eval()
    # stored in float16 (half the bytes; the decoded latents change at rounding level), run in float32 by load_codec
    model.half().save_pretrained(codec_lib.codec_folder(r, args.output_dir))
    model.float()
    raw = codec_lib.RawLatent(test.shape[1:])
    return {
        "ratio": str(r),
        "num_symbols": model.num_symbols,
        "parameters": sum(p.numel() for p in model.parameters()),
        "test_latent_mse": {f"{db:+g}dB": latent_mse_at(model, test, db, 0) for db in (-10, 0, 10)},
        "raw_latent_test_mse": {f"{db:+g}dB": latent_mse_at(raw, test, db, 0) for db in (-10, 0, 10)},
    }


def main(args: Args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    cache = LatentCache.load(args.cache_dir)
    train_rows = cache.indices("train")
    pool = [cache.latents_at(s, train_rows) for s in cache.split_steps]
    if args.extra_scenes:
        if cache.model.get("name") != "meg-ldm":
            raise SystemExit("--extra-scenes encodes MEG-Shapes renders for the embedded model; pass --extra-scenes 0")
        scaling = float(embedded.load_autoencoder().config.scaling_factor)
        pool.append(extra_latents(args, scaling))
    train = torch.cat(pool)
    test = cache.clean_latents(cache.indices("test"))
    print(f"training on {len(train)} latents of shape {tuple(train.shape[1:])}; {len(test)} test latents")
    results = [train_ratio(r, args, train, test) for r in args.ratios]
    summary = {"results": results, "args": asdict(args), "cache": str(cache.path)}
    (args.work_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(tyro.cli(Args))
