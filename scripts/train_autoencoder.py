"""Train the embedded autoencoder (AutoencoderTiny, 64x64 RGB <-> 4x8x8 latent) on MEG-Shapes renders.

    python scripts/train_autoencoder.py --output-dir meg_gym/assets/meg-ldm/vae

Checkpoints go to ``--work-dir`` every ``--checkpoint-every`` steps; rerunning the same command resumes.
At the end the model is saved in diffusers' folder format with ``scaling_factor`` set to 1 / std of the
training latents (Stable Diffusion's convention), so the UNet sees unit-variance latents.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import tyro
from tqdm import tqdm

from meg_gym import quality
from meg_gym.generation import embedded, shapes
from meg_gym.generation.imaging import to_tensor


@dataclass
class Args:
    output_dir: Path = embedded.EMBEDDED_MODEL_DIR / "vae"
    """where the trained autoencoder is saved (diffusers folder format)"""
    work_dir: Path = Path("work/autoencoder")
    """checkpoints and logs (not shipped)"""
    train_images: int = 40_000
    """number of distinct training renders (train split)"""
    steps: int = 5_000
    """optimiser steps"""
    batch_size: int = 64
    lr: float = 1e-3
    """peak learning rate (cosine decay to 1% of it)"""
    seed: int = 0
    checkpoint_every: int = 500
    eval_images: int = 512
    """test-split renders used for the PSNR readout"""
    bf16: bool = True
    """bfloat16 autocast (fast on CPUs with AMX/AVX512-BF16; evaluation stays float32)"""
    threads: int = 0
    """torch threads (0: torch's default)"""


@torch.no_grad()
def psnr_db(ae, images: torch.Tensor, batch: int = 256) -> float:
    """Mean per-image PSNR of the autoencoder's reconstructions."""
    scores = []
    for i in range(0, len(images), batch):
        x = images[i : i + batch]
        recon = ae.decode(ae.encode(x).latents).sample
        scores.append(quality.psnr(quality.to_unit(recon), quality.to_unit(x)))
    return float(torch.cat(scores).mean())


def main(args: Args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    train = shapes.render_scenes("train", args.train_images, args.seed, workers=2, progress=True)
    # evaluation scenes come from a disjoint index range of the test split
    test = to_tensor(shapes.render_scenes("test", args.eval_images, args.seed, start=1_000_000, workers=2))

    ae = embedded.new_autoencoder().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(ae.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))
    )
    ckpt = args.work_dir / "checkpoint.pt"
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        ae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step = int(state["step"])
        print(f"resumed from step {step}")
    rng = np.random.default_rng([args.seed, step])
    log = open(args.work_dir / "log.jsonl", "a")
    bar = tqdm(total=args.steps, initial=step, desc="autoencoder")
    t0 = time.time()
    while step < args.steps:
        idx = rng.integers(0, len(train), args.batch_size)
        x = to_tensor(train[idx])
        flip = torch.from_numpy(rng.random(args.batch_size) < 0.5)
        x[flip] = x[flip].flip(-1)  # horizontal flips: free augmentation for reconstruction
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            recon = ae.decode(ae.encode(x).latents).sample
        loss = (recon.float() - x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.5f}")
        if step % args.checkpoint_every == 0 or step == args.steps:
            ae.eval()
            psnr = psnr_db(ae, test)
            ae.train()
            record = {"step": step, "loss": loss.item(), "test_psnr_db": psnr, "elapsed_s": time.time() - t0}
            log.write(json.dumps(record) + "\n")
            log.flush()
            tqdm.write(json.dumps(record))
            torch.save(
                {"model": ae.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step}, ckpt
            )
    bar.close()

    ae.eval()
    with torch.no_grad():
        sample = to_tensor(train[: min(len(train), 4096)])
        latents = torch.cat([ae.encode(sample[i : i + 256]).latents for i in range(0, len(sample), 256)])
    std = float(latents.std())
    ae.register_to_config(scaling_factor=1.0 / std)
    final_psnr = psnr_db(ae, test)
    ae.to(memory_format=torch.contiguous_format)
    ae.save_pretrained(args.output_dir)
    summary = {
        "test_psnr_db": final_psnr,
        "latent_std": std,
        "latent_mean": float(latents.mean()),
        "args": asdict(args),
    }
    (args.work_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main(tyro.cli(Args))
