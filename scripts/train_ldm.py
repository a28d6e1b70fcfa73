"""Train the embedded text-to-image UNet on MEG-Shapes latents (needs the trained autoencoder).

    python scripts/train_ldm.py --output-dir meg_gym/assets/meg-ldm

The UNet predicts noise (epsilon) on 4x8x8 latents under Stable Diffusion's noise schedule, cross-attending
to the frozen all-MiniLM-L6-v2 token states produced by ``StableDiffusionPipeline.encode_prompt`` itself,
so training and sampling see identical conditioning. Captions are dropped 10% of the time for
classifier-free guidance. Min-SNR-5 loss weighting (Hang et al., ICCV 2023) speeds convergence; the
shipped weights are an exponential moving average. Rerunning the same command resumes from --work-dir.
"""

from __future__ import annotations

import copy
import json
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import tyro
from tqdm import tqdm

from meg_gym.generation import embedded, measures, shapes
from meg_gym.generation.imaging import to_tensor


@dataclass
class Args:
    output_dir: Path = embedded.EMBEDDED_MODEL_DIR
    """model folder: the UNet goes to unet/, the scheduler config to scheduler/ (vae/ must hold the autoencoder)"""
    work_dir: Path = Path("work/ldm")
    """checkpoints, logs and the encoded training set (not shipped)"""
    train_scenes: int = 60_000
    """train-split scenes used (indices 0..train_scenes-1)"""
    steps: int = 6_000
    batch_size: int = 96
    lr: float = 4e-4
    warmup: int = 200
    ema_decay: float = 0.999
    cfg_dropout: float = 0.1
    """probability of training on the empty prompt (classifier-free guidance)"""
    min_snr_gamma: float = 5.0
    init_unet: Path | None = None
    """warm start: a diffusers UNet folder (e.g. the shipped meg_gym/assets/meg-ldm/unet) to start from
    instead of random weights; ignored when a checkpoint in work_dir is resumed. It may have fewer transformer
    blocks per attention than the embedded architecture: the extra blocks start as identities (see grow_unet)"""
    transformer_layers_per_block: int | None = None
    """override the embedded architecture's transformer blocks per attention (for ablations)"""
    eval_every: int = 0
    """every this many steps, log the EMA model's prompt faithfulness on test prompts (0: never)"""
    eval_prompts: int = 300
    seed: int = 0
    checkpoint_every: int = 500
    threads: int = 0
    workers: int = 2


def build_training_set(args: Args, pipe) -> dict[str, torch.Tensor]:
    """Render, encode to scaled latents, and encode captions; cached under work_dir."""
    path = args.work_dir / f"trainset-{args.train_scenes}.safetensors"
    from safetensors.torch import load_file, save_file

    if path.exists():
        return load_file(str(path))
    scenes = shapes.sample_scenes("train", args.train_scenes, args.seed)
    images = shapes.render_scenes("train", args.train_scenes, args.seed, workers=args.workers, progress=True)
    vae = pipe.vae
    scale = vae.config.scaling_factor
    latents, text = [], []
    with torch.no_grad():
        for i in tqdm(range(0, len(images), 256), desc="encode images"):
            latents.append(vae.encode(to_tensor(images[i : i + 256])).latents * scale)
        captions = [s.caption for s in scenes]
        for i in tqdm(range(0, len(captions), 256), desc="encode captions"):
            cond, _ = pipe.encode_prompt(captions[i : i + 256], "cpu", 1, False)
            text.append(cond.to(torch.float16))
        uncond, _ = pipe.encode_prompt([""], "cpu", 1, False)
    data = {
        "latents": torch.cat(latents).contiguous(),
        "text": torch.cat(text).contiguous(),
        "uncond": uncond.to(torch.float16).contiguous(),
    }
    save_file(data, str(path))
    return data


def grow_unet(init_folder: Path, config: dict):
    """A UNet of architecture ``config`` that computes exactly what the UNet in ``init_folder`` computes.

    The two may differ only in transformer blocks per attention. Blocks the initial UNet lacks get zero
    output projections (self-attention, cross-attention and feed-forward), so each is an identity map on its
    residual stream until training moves it.
    """
    from diffusers import UNet2DConditionModel

    old = UNet2DConditionModel.from_pretrained(init_folder, use_safetensors=True)
    unet = UNet2DConditionModel(**config)
    missing, unexpected = unet.load_state_dict(old.state_dict(), strict=False)
    new_blocks = {m.group(1) for key in missing if (m := re.match(r"(.*\.transformer_blocks\.\d+)\.", key))}
    stray = [key for key in missing if not any(key.startswith(block + ".") for block in new_blocks)]
    if unexpected or stray or any(block.endswith(".transformer_blocks.0") for block in new_blocks):
        raise SystemExit(
            f"--init-unet {init_folder} does not fit the embedded architecture: unexpected keys {unexpected[:3]}, "
            f"missing {stray[:3]}. Only extra transformer blocks can be grown; start from scratch instead."
        )
    modules = dict(unet.named_modules())
    for block in sorted(new_blocks):
        for out in ("attn1.to_out.0", "attn2.to_out.0", "ff.net.2"):
            torch.nn.init.zeros_(modules[f"{block}.{out}"].weight)
            torch.nn.init.zeros_(modules[f"{block}.{out}"].bias)
    if new_blocks:
        print(f"grew {len(new_blocks)} identity-initialised transformer blocks on {init_folder}")
    return unet


def faithfulness(pipe, unet, prompts: int) -> dict:
    """Prompt faithfulness of images generated live with ``unet`` for the first test prompts, as
    scripts/evaluate_generation.py measures it (same noise seeds, default sampler)."""
    from meg_gym.generation.classifier import load_classifier
    from meg_gym.generation.split_pipeline import SplitPipeline

    scenes = shapes.sample_scenes("test", prompts)
    previous, pipe.unet = pipe.unet, unet.eval()
    try:
        images = measures.live_images(SplitPipeline(pipe), scenes)
    finally:
        pipe.unet = previous
    acc = measures.faithfulness(images, scenes, load_classifier())
    return {k: acc[k] for k in ("one_object", "multi_object", "shape_colour")}


def main(args: Args) -> None:
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    vae = embedded.load_autoencoder(args.output_dir)
    tokenizer, text_encoder = embedded.load_text_encoder()
    config = dict(embedded.UNET_CONFIG)
    if args.transformer_layers_per_block is not None:
        config["transformer_layers_per_block"] = args.transformer_layers_per_block
    unet = embedded.new_unet(**config) if args.init_unet is None else grow_unet(args.init_unet, config)
    scheduler = embedded.new_scheduler()
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)  # fmt: skip
    data = build_training_set(args, pipe)
    latents, text, uncond = data["latents"], data["text"], data["uncond"]
    print(f"training set: latents {tuple(latents.shape)} std {latents.std():.3f}, text {tuple(text.shape)}")

    noise_sched = DDPMScheduler(**{k: v for k, v in embedded.SCHEDULER_CONFIG.items() if k != "set_alpha_to_one"})
    alphas_cumprod = noise_sched.alphas_cumprod
    snr = alphas_cumprod / (1 - alphas_cumprod)
    loss_weight = torch.clamp(snr, max=args.min_snr_gamma) / snr  # min-SNR for epsilon prediction

    ema = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / args.warmup)
            * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
        ),
    )
    ckpt = args.work_dir / "checkpoint.pt"
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        unet.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step = int(state["step"])
        print(f"resumed from step {step}")
    gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
    log = open(args.work_dir / "log.jsonl", "a")
    t0 = time.time()
    unet.train()
    bar = tqdm(total=args.steps, initial=step, desc="unet")
    running = 0.0
    while step < args.steps:
        idx = torch.randint(0, len(latents), (args.batch_size,), generator=gen)
        z0 = latents[idx]
        cond = text[idx].float()
        drop = torch.rand(args.batch_size, generator=gen) < args.cfg_dropout
        cond[drop] = uncond.float()
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (args.batch_size,), generator=gen)
        zt = noise_sched.add_noise(z0, noise, t)
        pred = unet(zt, t, encoder_hidden_states=cond).sample
        loss = ((pred - noise).pow(2).mean(dim=(1, 2, 3)) * loss_weight[t]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        with torch.no_grad():
            decay = min(args.ema_decay, (1 + step) / (10 + step))
            for pe, p in zip(ema.parameters(), unet.parameters(), strict=True):
                pe.lerp_(p, 1 - decay)
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        bar.update(1)
        if step % 25 == 0:
            bar.set_postfix(loss=f"{running:.4f}")
        evaluate = args.eval_every and (step % args.eval_every == 0 or step == args.steps)
        if evaluate or step % args.checkpoint_every == 0 or step == args.steps:
            record = {"step": step, "loss_ema": running, "lr": sched.get_last_lr()[0], "elapsed_s": time.time() - t0}
            if evaluate:
                with torch.no_grad():
                    record["faithfulness"] = faithfulness(pipe, ema, args.eval_prompts)
                unet.train()
            log.write(json.dumps(record) + "\n")
            log.flush()
            tqdm.write(json.dumps(record))
            torch.save({"model": unet.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "sched": sched.state_dict(), "step": step}, ckpt)  # fmt: skip
            ema.save_pretrained(args.output_dir / "unet")
            embedded.new_scheduler().save_pretrained(args.output_dir / "scheduler")
    bar.close()
    summary = {"final_loss_ema": running, "steps": step, "args": asdict(args)}
    (args.work_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main(tyro.cli(Args))
