"""Train the MEG-Shapes domain classifier (per-cell presence, shape, colour, size).

    python scripts/train_classifier.py --output-dir meg_gym/assets/shapes-classifier

It is the judge, not the model under test, so it trains on both splits' attribute combinations. Blur and
noise augmentation make it robust to the softness of decoded images. Rerunning resumes from --work-dir.
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
from meg_gym.generation.imaging import to_tensor


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
    eval_scenes = shapes.sample_scenes("test", args.eval_images, args.seed, 3_000_000)
    eval_images = to_tensor(shapes.render_scenes("test", args.eval_images, args.seed, 3_000_000, args.workers))

    model = ShapesClassifier()
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
        idx = rng.integers(0, len(images), args.batch_size)
        x = augment(to_tensor(images[idx]), rng).contiguous(memory_format=torch.channels_last)
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
            model.train()
            record = {"step": step, "loss": loss.item(), **acc, "elapsed_s": time.time() - t0}
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
    model.save_pretrained(args.output_dir)
    summary = {"ground_truth_accuracy": acc, "eval_images": args.eval_images, "args": asdict(args)}
    (args.work_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main(tyro.cli(Args))
