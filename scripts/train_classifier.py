"""Train the MEG-Shapes domain classifier (per-cell presence, shape, colour, size).

    python scripts/train_classifier.py --output-dir meg_gym/assets/shapes-classifier

It is the judge, not the model under test, so it trains on both splits' attribute combinations. Blur and
noise augmentation make it robust to the softness of decoded images. With --ae-images N, that many renders
are also passed through the embedded autoencoder once and a share of every batch (--ae-share) comes from
those reconstructions, so the judge learns to read what any image decoded from a latent looks like.
Rerunning resumes from --work-dir.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import tyro
from tqdm import tqdm

from meg_gym import quality
from meg_gym.generation import embedded, shapes
from meg_gym.generation.classifier import ShapesClassifier
from meg_gym.generation.imaging import to_tensor, to_uint8


@dataclass
class Args:
    output_dir: Path = embedded.CLASSIFIER_DIR
    """where the trained classifier is saved (diffusers folder format)"""
    work_dir: Path = Path("work/classifier")
    """checkpoints and logs (not shipped)"""
    train_images: int = 30_000
    """renders per split used for training (train and test splits both)"""
    steps: int = 3_000
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    eval_images: int = 2_000
    """fresh test-split renders for the accuracy readout"""
    checkpoint_every: int = 500
    bf16: bool = True
    threads: int = 0
    workers: int = 2
    init_from: Path | None = None
    """start from these weights (a classifier folder) instead of a random initialisation"""
    ae_images: int = 0
    """renders passed through the embedded autoencoder (encode + decode) for training; 0 = none"""
    ae_share: float = 0.5
    """share of each batch drawn from the autoencoder reconstructions (when --ae-images > 0)"""


def targets_tensor(scenes) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in shapes.attribute_targets(scenes).items()}


def loss_fn(logits, target) -> torch.Tensor:
    loss = F.cross_entropy(logits["present"].flatten(0, 1), target["present"].flatten())
    mask = target["present"].flatten().bool()
    for name in ("shape", "colour", "size"):
        loss = loss + F.cross_entropy(logits[name].flatten(0, 1)[mask], target[name].flatten()[mask])
    return loss


def augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random Gaussian blur (sigma up to 1.2 px) and additive noise, per batch half."""
    n = len(x)
    half = n // 2
    sigma = float(rng.uniform(0.3, 1.2))
    radius = 3
    k = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(k**2) / (2 * sigma**2))
    k = k / k.sum()
    blurred = F.conv2d(
        F.pad(x[:half], (radius,) * 4, mode="replicate"), k.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3
    )
    blurred = F.conv2d(blurred, k.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)
    x = torch.cat([blurred, x[half:]])
    noise = torch.randn_like(x) * torch.from_numpy(rng.uniform(0, 0.08, (n, 1, 1, 1))).float()
    return (x + noise).clamp(-1, 1)


def attribute_accuracy(model, images: torch.Tensor, scenes) -> dict[str, float]:
    acc = quality.attribute_accuracy(model.predict(images), scenes)
    return {k: acc[k] for k in ("shape_colour", "shape", "colour", "size", "present", "one_object", "multi_object")}


@torch.no_grad()
def autoencode(images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """[-1, 1] reconstructions of uint8 renders through the embedded autoencoder."""
    vae = embedded.load_autoencoder().eval()
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc="autoencode", leave=False):
        x = to_tensor(images[i : i + batch_size])
        out.append(vae.decode(vae.encode(x).latents).sample.clamp(-1, 1))
    return torch.cat(out)


def main(args: Args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    # training renders: indices >= 2,000,000 of both splits, disjoint from the cache's prompt indices
    start = 2_000_000
    scenes = shapes.sample_scenes("train", args.train_images, args.seed, start) + shapes.sample_scenes(
        "test", args.train_images, args.seed, start
    )
    images = np.concatenate(
        [
            shapes.render_scenes("train", args.train_images, args.seed, start, args.workers, progress=True),
            shapes.render_scenes("test", args.train_images, args.seed, start, args.workers, progress=True),
        ]
    )
    targets = targets_tensor(scenes)
    ae_rows = np.random.default_rng(args.seed).choice(len(images), args.ae_images, replace=False)
    ae_recons = autoencode(images[ae_rows]) if args.ae_images else None
    eval_scenes = shapes.sample_scenes("test", args.eval_images, args.seed, 3_000_000)
    eval_images = to_tensor(shapes.render_scenes("test", args.eval_images, args.seed, 3_000_000, args.workers))
    eval_recons = autoencode(to_uint8(eval_images))

    model = (
        ShapesClassifier.from_pretrained(args.init_from, use_safetensors=True) if args.init_from else ShapesClassifier()
    )
    model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))
    )
    ckpt = args.work_dir / "checkpoint.pt"
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step = int(state["step"])
    rng = np.random.default_rng([args.seed, step])
    log = open(args.work_dir / "log.jsonl", "a")
    t0 = time.time()
    bar = tqdm(total=args.steps, initial=step, desc="classifier")
    model.train()
    while step < args.steps:
        num_ae = int(round(args.batch_size * args.ae_share)) if ae_recons is not None else 0
        idx = rng.integers(0, len(images), args.batch_size - num_ae)
        x = augment(to_tensor(images[idx]), rng)
        if num_ae:
            ae_idx = rng.integers(0, len(ae_rows), num_ae)
            x = torch.cat([x, ae_recons[ae_idx]])
            idx = np.concatenate([idx, ae_rows[ae_idx]])
        x = x.contiguous(memory_format=torch.channels_last)
        target = {k: v[idx] for k, v in targets.items()}
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(x)
        loss = loss_fn({k: v.float() for k, v in logits.items()}, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % args.checkpoint_every == 0 or step == args.steps:
            model.eval()
            acc = attribute_accuracy(model, eval_images, eval_scenes)
            acc_ae = attribute_accuracy(model, eval_recons, eval_scenes)
            model.train()
            record = {
                "step": step,
                "loss": loss.item(),
                **acc,
                **{f"autoencoded_{k}": v for k, v in acc_ae.items()},
                "elapsed_s": time.time() - t0,
            }
            log.write(json.dumps(record) + "\n")
            log.flush()
            tqdm.write(json.dumps(record))
            torch.save(
                {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step}, ckpt
            )
    bar.close()
    model.eval()
    model.to(memory_format=torch.contiguous_format)
    acc = attribute_accuracy(model, eval_images, eval_scenes)
    acc_ae = attribute_accuracy(model, eval_recons, eval_scenes)
    model.save_pretrained(args.output_dir)
    summary = {
        "ground_truth_accuracy": acc,
        "autoencoded_accuracy": acc_ae,
        "eval_images": args.eval_images,
        "args": asdict(args),
    }
    (args.work_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main(tyro.cli(Args))
