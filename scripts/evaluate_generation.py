"""Measure the embedded generation side and write docs/results/generation.md (+ .json).

    python scripts/evaluate_generation.py                 # full report; live generation (s/image on the page) dominates
    python scripts/evaluate_generation.py --quick         # small subset, prints the table only

Reports: autoencoder reconstruction PSNR on test scenes; the domain classifier's attribute accuracy on
ground-truth renders; prompt faithfulness of generated images (one- and multi-object test prompts) at the
default guidance and any others asked for; the FID-style distance between generated images and renders of
the same prompts; UE decode time per image in batches of 64; asset sizes.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import tyro

from meg_gym import evaluation, quality
from meg_gym.cache import LatentCache, cache_fingerprint
from meg_gym.generation import embedded, shapes
from meg_gym.generation.classifier import load_classifier
from meg_gym.generation.imaging import to_tensor
from meg_gym.generation.measures import decode_speed, error_breakdown, faithfulness, live_images, summary
from meg_gym.generation.split_pipeline import SplitPipeline


@dataclass
class Args:
    num_test: int = 1000
    """test prompts evaluated (scene indices 0..num_test-1 of the test split, as in the default cache)"""
    guidance_scales: tuple[float, ...] = field(default_factory=lambda: (embedded.DEFAULT_GUIDANCE_SCALE,))
    """classifier-free guidance weights to generate with, live"""
    live_prompts: int = 500
    """test prompts generated live per guidance weight"""
    quick: bool = False
    """a small subset, no files written"""
    output: Path = Path("docs/results/generation.md")


def main(args: Args) -> None:
    if args.quick:
        args.num_test, args.live_prompts = 200, 100
    torch.manual_seed(0)
    scenes = shapes.sample_scenes("test", args.num_test)
    renders = to_tensor(shapes.render_scenes("test", args.num_test, workers=2))
    pipe = SplitPipeline.from_pretrained()
    vae = pipe.pipe.vae
    classifier = load_classifier()
    report: dict = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
                    "commit": evaluation.git_commit(), "command": "python " + " ".join(sys.argv),
                    "cache_sha256": cache_fingerprint()}  # fmt: skip

    with torch.no_grad():
        recon = torch.cat([vae.decode(vae.encode(renders[i : i + 256]).latents).sample.clamp(-1, 1)
                           for i in range(0, len(renders), 256)])  # fmt: skip
    report["autoencoder_psnr_db"] = float(quality.psnr(quality.to_unit(recon), quality.to_unit(renders)).mean())
    report["autoencoder_ssim"] = float(quality.ssim(quality.to_unit(recon), quality.to_unit(renders)).mean())
    report["classifier_on_renders"] = faithfulness(renders, scenes, classifier)
    report["classifier_on_reconstructions"] = faithfulness(recon, scenes, classifier)

    cache = LatentCache.load()
    rows = cache.indices("test")[: args.num_test]
    if [cache.prompts[r] for r in rows] != [s.caption for s in scenes[: len(rows)]]:
        raise SystemExit("the default cache's test prompts are not MEG-Shapes test scenes 0..N-1; rebuild it")
    cached_images = pipe.decode(cache.clean_latents(rows))
    with torch.no_grad():
        cached_predictions = classifier.eval().predict(cached_images)
    report["cached_generation"] = {
        "guidance_scale": cache.settings["guidance_scale"],
        "prompts": len(rows),
        **summary(quality.attribute_accuracy(cached_predictions, scenes[: len(rows)])),
        "frechet_distance_to_renders": quality.frechet_distance_from_images(
            cached_images, renders[: len(rows)], classifier.features
        ),
        "errors": error_breakdown(cached_predictions, scenes[: len(rows)]),
    }
    report["frechet_distance_renders_vs_reconstructions"] = quality.frechet_distance_from_images(
        recon, renders, classifier.features
    )

    report["live_generation"] = []
    n = min(args.live_prompts, args.num_test)
    for g in args.guidance_scales:
        start = time.perf_counter()
        images = live_images(SplitPipeline(pipe.pipe, guidance_scale=g), scenes[:n])
        seconds = time.perf_counter() - start
        report["live_generation"].append({
            "guidance_scale": g, "prompts": n, "seconds_per_image": seconds / n,
            **faithfulness(images, scenes[:n], classifier),
            "frechet_distance_to_renders": quality.frechet_distance_from_images(images, renders[:n], classifier.features),
        })  # fmt: skip

    report["ue_decode_ms_per_image_batch64"] = decode_speed(vae)
    sizes = {
        str(p.relative_to(embedded.ASSETS_DIR)): p.stat().st_size
        for p in sorted(embedded.ASSETS_DIR.rglob("*"))
        if p.is_file()
    }
    report["asset_bytes"] = sizes
    report["asset_total_mb"] = sum(sizes.values()) / 1e6
    print(json.dumps(report, indent=2))
    if not args.quick:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_suffix(".json").write_text(json.dumps(report, indent=2))
        args.output.write_text(render_markdown(report))
        print(f"wrote {args.output} and {args.output.with_suffix('.json')}")


def pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}%"


def render_markdown(r: dict) -> str:
    cg = r["cached_generation"]
    lines = [
        "# The embedded generation side: measured",
        "",
        f"Produced by `{r['command']}` at commit `{r['commit']}` on {r['machine']}; the cached generation is latent "
        f"cache `{r['cache_sha256'][:12]}`. Test split of MEG-Shapes "
        "(every test prompt holds at least one (shape, colour, position) combination never seen in training).",
        "",
        "| what | value | bar |",
        "|---|---|---|",
        f"| autoencoder reconstruction PSNR, test scenes | {r['autoencoder_psnr_db']:.2f} dB (SSIM {r['autoencoder_ssim']:.3f}) | >= 28 dB |",
        f"| classifier attribute accuracy on ground-truth renders (shape and colour) | {pct(r['classifier_on_renders']['shape_colour'])} | >= 98% |",
        f"| classifier on autoencoder reconstructions | {pct(r['classifier_on_reconstructions']['shape_colour'])} | |",
        f"| generated images, one-object test prompts (cache, guidance {cg['guidance_scale']}) | {pct(cg['one_object'])} | >= 80% |",
        f"| generated images, multi-object test prompts, per object | {pct(cg['multi_object'])} | >= 60% |",
        f"| FID-style distance (classifier features): generated vs renders | {cg['frechet_distance_to_renders']:.2f} | |",
        f"| FID-style distance: reconstructions vs renders (the autoencoder's floor) | {r['frechet_distance_renders_vs_reconstructions']:.2f} | |",
        f"| UE decode, autoencoder decoder, batches of 64 (`decode_latents`: channels-last, sub-batches of 8 on CPU) | {r['ue_decode_ms_per_image_batch64']:.2f} ms/image | <= 5 ms |",
        f"| shipped assets | {r['asset_total_mb']:.1f} MB | weights <= 25 MB, cache <= 20 MB |",
        "",
        "## Prompt faithfulness by guidance weight (live generation)",
        "",
        "| guidance | prompts | one-object | multi-object (per object) | shape | colour | size | FID-style | s/image |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g in r["live_generation"]:
        lines.append(
            f"| {g['guidance_scale']} | {g['prompts']} | {pct(g['one_object'])} | {pct(g['multi_object'])} | {pct(g['shape'])} "
            f"| {pct(g['colour'])} | {pct(g['size'])} | {g['frechet_distance_to_renders']:.2f} | {g['seconds_per_image']:.3f} |"
        )
    errors = cg.get("errors")
    if errors:
        lines += ["", "## Where the errors are (cached generation)", "",
                  "| objects in the prompt | objects | drawn at the right position | right shape | right colour | both |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for n, e in errors["by_object_count"].items():
            lines.append(f"| {n} | {e['objects']} | {pct(e['present'])} | {pct(e['shape'])} | {pct(e['colour'])} | "
                         f"{pct(e['shape_colour'])} |")  # fmt: skip
        borrowed = errors["wrong_from_another_object"]
        line = (f"In multi-object prompts, {pct(borrowed['colour'])} of the wrong colours and {pct(borrowed['shape'])} "
                "of the wrong shapes are ones the prompt gave another object.")  # fmt: skip
        multi = [e for n, e in errors["by_object_count"].items() if n != "1"]
        if multi and min(e["present"] for e in multi) > 0.9 and min(borrowed.values()) > 0.5:
            line += " Objects are drawn where asked; the errors that remain are mostly attribute binding."
        lines += ["", line]
    lines += ["", "## Asset sizes", "", "| file | bytes |", "|---|---|"]
    lines += [f"| {k} | {v:,} |" for k, v in r["asset_bytes"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(tyro.cli(Args))
