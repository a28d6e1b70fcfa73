"""Reproduce the three claims of the MEG paper and write docs/results/reproduction.md with its figures and data.

    python scripts/reproduce_paper.py                  # all three figures ((c) trains every learner: the long part)
    python scripts/reproduce_paper.py --figures a b    # the channel figures only (no training)
    python scripts/reproduce_paper.py --quick          # a smoke run: few prompts, one budget, short training

The paper: Zhong, Mu, Jaber, Liu, "Enabling Distributed Generative Artificial Intelligence in 6G: Mobile-Edge
Generation", IEEE IoT Journal 12(6), 2025 (arXiv 2409.05870). Its claims, checked here on the embedded model and cache:

(a) MEG sends far fewer channel symbols than generating centrally and downloading the image;
(b) the learned seed codec gives better images than the raw latent at low SNR (PSNR and the FID-style
    Frechet distance on the domain classifier's features, SNR -20..20 dB, AWGN and Rayleigh block fading);
(c) DRL power control beats static power under the energy budget (PSNR vs budget: PPO, DDPG, static,
    the heuristics and non-causal MMSE water-filling, several training seeds).

Figure (c) trains through scripts/baseline_sweep.py into runs/budget-{fraction}__{policy}[__{seed}]; runs
already there are reused, so an interrupted reproduction continues where it stopped.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro

from meg_gym import baseline_runs, evaluation, leaderboard, quality
from meg_gym import codec as codec_lib
from meg_gym.cache import LEGACY_DEFAULT_CACHE, cache_fingerprint
from meg_gym.channel import ChannelConfig, db_to_linear, sample_block_gains, simulate_mmse_torch
from meg_gym.config import PowerControlConfig
from meg_gym.generation.classifier import load_classifier
from meg_gym.link import receiver_for  # noqa: E402

DESIGN_SNR_DB = 10.0  # the digital scheme's rate is the capacity at this SNR (the default peak SNR)


@dataclass
class Args:
    figures: list[Literal["a", "b", "c"]] = field(default_factory=lambda: ["a", "b", "c"])
    """which figures to make (the page keeps the others from the last run's data)"""
    snrs_db: tuple[float, ...] = (-20.0, -15.0, -10.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0)
    """average receive SNRs of figure (b)"""
    prompts: int = 500
    """test prompts per point of figure (b) (the shipped cache holds 500)"""
    num_blocks: int = 8
    """fading blocks per image in figure (b) (the environment's default)"""
    budgets: tuple[float, ...] = (0.02, 0.05, 0.1, 0.25)
    """energy budgets of figure (c), as fractions of sending every block at peak power"""
    seeds: tuple[int, ...] = (1, 2, 3)
    """training seeds of each learner in figure (c)"""
    ppo_steps: int = 100_000
    """PPO training steps per run"""
    ddpg_steps: int = 30_000
    """DDPG training steps per run"""
    eval_episodes: int = 1024
    """test episodes per evaluation in figure (c)"""
    seed: int = 0
    """seed of the channel draws in figure (b)"""
    output: Path = Path("docs/results/reproduction.md")
    quick: bool = False
    """smoke run: 64 prompts, 3 SNRs, one budget, one seed, 2k training steps, output under /tmp"""
    render_only: bool = False
    """only rewrite the page from the stored reproduction.json (after a change to the text)"""


# ----------------------------------------------------------------------------------------------------------------
# (a) channel symbols per image
# ----------------------------------------------------------------------------------------------------------------


def figure_a(prompts: int) -> dict:
    from meg_gym.generation.imaging import to_uint8

    pipe = receiver_for(PowerControlConfig(split="test"))
    refs = pipe.references(np.arange(min(prompts, len(pipe.rows))))
    rate = math.log2(1 + db_to_linear(DESIGN_SNR_DB))
    reals = int(np.prod(refs.shape[1:]))
    rows = {
        "centralised, analogue": reals // 2,
        f"centralised, digital 8-bit at {rate:.2f} bit/symbol": int(codec_lib.digital_symbols(reals * 8, rate)),
        f"centralised, digital PNG at {rate:.2f} bit/symbol": float(
            np.mean(codec_lib.digital_symbols(codec_lib.image_bits(to_uint8(refs), compress=True), rate))
        ),
        "MEG, raw latent": codec_lib.RawLatent(pipe.cache.latent_shape).num_symbols,
    }
    for ratio in codec_lib.COMPRESSION_RATIOS:
        rows[f"MEG, seed {ratio}"] = codec_lib.load_codec(ratio).num_symbols
    return {"symbols": rows, "rate_bits_per_symbol": rate, "image_shape": list(refs.shape[1:])}


def plot_a(data: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    names, counts = list(data["symbols"]), list(data["symbols"].values())
    fig, ax = plt.subplots(figsize=(7, 3.6))
    colors = ["tab:red" if n.startswith("centralised") else "tab:blue" for n in names]
    ax.barh(names[::-1], counts[::-1], color=colors[::-1])
    ax.set_xscale("log")
    ax.set_xlabel("complex channel symbols per 64x64 image (log scale)")
    for y, c in enumerate(counts[::-1]):
        ax.text(c * 1.1, y, f"{c:,.0f}", va="center", fontsize=8)
    ax.set_xlim(1, max(counts) * 8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# (b) image quality vs SNR
# ----------------------------------------------------------------------------------------------------------------


ZERO_MEAN = "raw latent (zero-mean)"


def block_snrs(fading: str, snr_db: float, count: int, num_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """(count, K) linear receive SNR per block: constant on AWGN, mean snr times |h|^2 on Rayleigh."""
    h = sample_block_gains(ChannelConfig(fading=fading), count, num_blocks, rng)
    return db_to_linear(snr_db) * np.abs(h) ** 2


def send_scheme(pipe, idx: np.ndarray, snr: np.ndarray, generator: torch.Generator) -> torch.Tensor:
    """Images the UE decodes from the seed (or raw latent) sent at per-block SNR ``snr`` (B, K)."""
    symbols = torch.from_numpy(pipe.symbols[idx]).to(torch.complex64)
    per_symbol = codec_lib.symbol_snr(snr, symbols.shape[1])
    with torch.no_grad():
        received, rel = simulate_mmse_torch(symbols, per_symbol, generator)
        latents = pipe.scheme.decode(received, rel, pipe.side[idx])
    return pipe.decode_images(latents)


def figure_b(args: Args) -> dict:
    classifier = load_classifier()
    schemes = {
        "raw latent": PowerControlConfig(split="test", scheme="raw-latent"),  # the LMMSE receiver: the fair reference
        ZERO_MEAN: PowerControlConfig(split="test", scheme="raw-latent-zero-mean"),  # the reference before 2026-11-29
    }
    for ratio in codec_lib.COMPRESSION_RATIOS:
        schemes[f"seed {ratio}"] = PowerControlConfig(split="test", compression_ratio=float(ratio))
    pipes = {name: receiver_for(config) for name, config in schemes.items()}
    reference_pipe = next(iter(pipes.values()))
    idx = np.arange(min(args.prompts, len(reference_pipe.rows)))
    refs = reference_pipe.references(idx)
    ref_features = quality.extract_features(refs, classifier.features, 256)
    rate = math.log2(1 + db_to_linear(DESIGN_SNR_DB))
    out: dict = {}
    for fading in ("awgn", "rayleigh"):
        rng = np.random.default_rng(args.seed)
        generator = torch.Generator().manual_seed(args.seed)
        for snr_db in args.snrs_db:
            snr = block_snrs(fading, snr_db, len(idx), args.num_blocks, rng)
            images = {name: send_scheme(pipe, idx, snr, generator) for name, pipe in pipes.items()}
            images["centralised analogue"] = codec_lib.centralised_analogue(refs, snr, generator)
            images["centralised digital"], outage = codec_lib.centralised_digital(refs, snr, rate)
            for name, img in images.items():
                psnr = quality.psnr(quality.to_unit(img), quality.to_unit(refs)).double().numpy()
                point = out.setdefault(fading, {}).setdefault(name, {"snr_db": [], "psnr": [], "psnr_per_image": [],
                                                                      "frechet": []})  # fmt: skip
                point["snr_db"].append(snr_db)
                point["psnr"].append(float(psnr.mean()))
                point["psnr_per_image"].append(psnr.round(4).tolist())
                features = quality.extract_features(img, classifier.features, 256)
                point["frechet"].append(quality.frechet_distance(features, ref_features))
            out[fading]["centralised digital"].setdefault("outage", []).append(float(outage.mean()))
            print(
                f"(b) {fading} {snr_db:+.0f} dB: " + ", ".join(f"{n} {out[fading][n]['psnr'][-1]:.2f}" for n in images)
            )
    return {"curves": out, "prompts": len(idx), "num_blocks": args.num_blocks, "digital_rate": rate}


def crossover(curves: dict, better: str, worse: str) -> dict:
    """Per SNR the paired per-image PSNR difference ``better - worse``: mean and 95% normal interval."""
    a, b = curves[better], curves[worse]
    rows = []
    for snr, pa, pb in zip(a["snr_db"], a["psnr_per_image"], b["psnr_per_image"], strict=True):
        d = np.asarray(pa) - np.asarray(pb)
        half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
        rows.append({"snr_db": snr, "diff": float(d.mean()), "ci": [float(d.mean() - half), float(d.mean() + half)]})
    return {"rows": rows}


def verdict(rows: list[dict]) -> str:
    """Where the difference is significantly positive, negative, or neither, as SNR ranges."""

    def ranges(snrs: list[float]) -> str:
        if not snrs:
            return ""
        all_snrs = [r["snr_db"] for r in rows]
        groups, current = [], [snrs[0]]
        for snr in snrs[1:]:
            if all_snrs.index(snr) == all_snrs.index(current[-1]) + 1:
                current.append(snr)
            else:
                groups.append(current)
                current = [snr]
        groups.append(current)
        return ", ".join(f"{g[0]:+g} dB" if len(g) == 1 else f"{g[0]:+g} to {g[-1]:+g} dB" for g in groups)

    better = [r["snr_db"] for r in rows if r["ci"][0] > 0]
    worse = [r["snr_db"] for r in rows if r["ci"][1] < 0]
    neither = [r["snr_db"] for r in rows if r["ci"][0] <= 0 <= r["ci"][1]]
    parts = [f"better at {ranges(better)}" if better else "never significantly better"]
    if worse:
        parts.append(f"worse at {ranges(worse)}")
    if neither:
        parts.append(f"no significant difference at {ranges(neither)}")
    return "; ".join(parts)


def plot_b(data: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for col, fading in enumerate(("awgn", "rayleigh")):
        for name, c in data["curves"][fading].items():
            style = "--" if name.startswith("centralised") else "-"
            axes[0, col].plot(c["snr_db"], c["psnr"], style, marker="o", ms=3, label=name)
            axes[1, col].plot(c["snr_db"], c["frechet"], style, marker="o", ms=3, label=name)
        digital = max(data["curves"][fading]["centralised digital"]["psnr"])
        others = max(max(c["psnr"]) for n, c in data["curves"][fading].items() if n != "centralised digital")
        if digital > others + 5:  # error-free 8-bit downloads reach ~59 dB and would flatten every other curve
            axes[0, col].set_ylim(top=others + 3)
            axes[0, col].annotate(f"digital, decoded: {digital:.0f} dB", xy=(0.98, 0.97), xycoords="axes fraction",
                                  ha="right", va="top", fontsize=7)  # fmt: skip
        title = "AWGN" if fading == "awgn" else f"Rayleigh block fading, {data['num_blocks']} blocks"
        axes[0, col].set_title(title, fontsize=10)
        axes[0, col].set_ylabel("PSNR (dB)")
        axes[1, col].set_ylabel("Frechet distance (classifier features)")
        axes[1, col].set_yscale("log")
        axes[1, col].set_xlabel("average receive SNR (dB)")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# (c) PSNR vs energy budget
# ----------------------------------------------------------------------------------------------------------------


def figure_c(args: Args) -> dict:
    out: dict = {"budgets": list(args.budgets), "policies": {}, "timesteps": {"ppo": args.ppo_steps,
                 "ddpg": args.ddpg_steps}}  # fmt: skip
    for budget in args.budgets:
        sweep = baseline_runs.Args(
            seeds=list(args.seeds),
            learners=["ppo", "ddpg"],
            timesteps={"ppo": args.ppo_steps, "ddpg": args.ddpg_steps},
            eval_episodes=args.eval_episodes,
            env={"budget-fraction": str(budget)},
            prefix=f"budget-{budget:g}" + ("-quick" if args.quick else ""),
            write=False,
        )
        results, _ = baseline_runs.collect(sweep)
        static = np.asarray(results["static"][0]["psnr"]["per_episode"])
        scores = {name: np.array([[d["psnr"]["mean"]] for d in runs]) for name, runs in results.items()}
        estimates = leaderboard.interval_estimates(scores, reps=2000, seed=0)
        for name, runs in results.items():
            diffs = [float((np.asarray(d["psnr"]["per_episode"]) - static).mean()) for d in runs]
            vs_static = leaderboard.interval_estimates({name: np.array(diffs)[:, None]}, reps=2000, seed=0)[name]
            entry = out["policies"].setdefault(name, {"mean": [], "ci": [], "per_seed": [], "vs_static": []})
            entry["mean"].append(estimates[name]["mean"][0])
            entry["ci"].append(estimates[name]["mean"][1:])
            entry["per_seed"].append([d["psnr"]["mean"] for d in runs])
            entry["vs_static"].append(vs_static["mean"])
    return out


def plot_c(data: dict, path: Path) -> None:
    import matplotlib
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    x = np.asarray(data["budgets"])
    for name, entry in data["policies"].items():
        mean, ci = np.asarray(entry["mean"]), np.asarray(entry["ci"])
        style = ":" if name in ("oracle", "mmse-water-filling") else "-"
        line = ax.plot(x, mean, style, marker="o", ms=4, label=name)[0]
        ax.fill_between(x, ci[:, 0], ci[:, 1], color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    ax.set_xticks(x, [f"{b:g}" for b in x])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("energy budget (fraction of every block at peak power)")
    ax.set_ylabel("test-split PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# the page
# ----------------------------------------------------------------------------------------------------------------


def provenance(figure: dict, key: str) -> list[str]:
    """Who measured a figure, on which cache; a figure from another cache than the shipped one says so."""
    made = figure.get("made")
    if not made:
        return []
    line = f"Measured by `{made['command']}` at commit `{made['commit'][:12]}` on latent cache `{made['cache_sha256'][:12]}`"
    shipped = cache_fingerprint()
    if made["cache_sha256"] != shipped:
        line += (f", **not the shipped cache** `{shipped[:12]}`: the embedded model and its cache changed "
                 f"since. Refresh it with `python scripts/reproduce_paper.py --figures {key}`")  # fmt: skip
    return [line + ".", ""]


def render(data: dict, args: Args) -> str:
    meta = data["meta"]
    lines = [
        "# Reproducing the MEG paper's claims",
        "",
        'Paper: Zhong, Mu, Jaber, Liu, "Enabling Distributed Generative Artificial Intelligence in 6G: Mobile-Edge '
        'Generation", IEEE IoT Journal 12(6), 2025 (arXiv 2409.05870). '
        "Everything below runs on meg-gym's embedded model "
        "(a small LDM on 64x64 MEG-Shapes scenes, latent 4x8x8) and its shipped latent cache, not on the "
        "paper's Stable Diffusion setting, so the numbers are ours; the claims are what carries over.",
        "",
        f"Made by `{meta['command']}` at commit `{meta['commit']}` on {meta['machine']} (torch {meta['torch']}). "
        "Data: [reproduction.json](reproduction.json).",
        "",
    ]
    if "redrawn" in meta:
        lines[-1:-1] = [
            f"Text and figures redrawn from that data by `{meta['redrawn']['command']}` at commit "
            f"`{meta['redrawn']['commit']}` (no measurement repeated).",
            "",
        ]
    if "a" in data:
        a = data["a"]
        seed = a["symbols"]["MEG, seed 1/4"]
        lines += [
            "## (a) Channel symbols per image",
            "",
            *provenance(data["a"], "a"),
            f"![symbols]({meta['figures']['a']})",
            "",
            "| scheme | complex symbols | vs MEG seed 1/4 (the default) |",
            "|---|---|---|",
        ]
        for name, count in a["symbols"].items():
            lines.append(f"| {name} | {count:,.0f} | {count / seed:,.1f}x |")
        analogue = a["symbols"]["centralised, analogue"]
        digital = min(v for k, v in a["symbols"].items() if k.startswith("centralised, digital"))
        lines += [
            "",
            f"**Claim 1 holds.** The default seed (32 symbols) is {analogue / seed:,.0f}x fewer symbols than "
            f"analogue downloading and {digital / seed:,.0f}x fewer than the cheapest digital download "
            f"(lossless PNG at the capacity of {DESIGN_SNR_DB:g} dB, {a['rate_bits_per_symbol']:.2f} bit/symbol); "
            f"even the raw latent is {analogue / a['symbols']['MEG, raw latent']:,.0f}x fewer than analogue. The "
            "count is exact (it does not depend on the channel). The paper's factor differs because its images "
            "and latents are larger (512x512 Stable Diffusion); the ratio image size / latent size drives it.",
            "",
        ]
    if "b" in data:
        b = data["b"]
        lines += [
            "## (b) Image quality vs SNR",
            "",
            *provenance(data["b"], "b"),
            f"![quality vs snr]({meta['figures']['b']})",
            "",
            f"{b['prompts']} test prompts per point, one channel draw each (the same draws for every scheme). "
            f"Rayleigh: {b['num_blocks']} independent blocks per image, symbols interleaved over them, every block "
            "at the same transmit power, MMSE equalisation with perfect receiver CSI. Centralised digital sends "
            f"the 8-bit image at a fixed {b['digital_rate']:.2f} bit/symbol (capacity at {DESIGN_SNR_DB:g} dB) "
            "and shows mid-grey on outage. The centralised schemes use 192x (analogue) to 888x (digital) more "
            "symbols than the seed at the same SNR, so they spend that much more energy: the comparison at equal "
            "SNR is the paper's, not one at equal energy. PSNR is against the image decoded from the clean "
            "latent (for MEG) or the generated image itself (centralised).",
            "",
        ]
        for fading in ("awgn", "rayleigh"):
            curves = b["curves"][fading]
            names = list(curves)
            lines += [f"### PSNR (dB), {fading.upper() if fading == 'awgn' else 'Rayleigh'}", ""]
            lines += ["| SNR (dB) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
            for i, snr in enumerate(curves[names[0]]["snr_db"]):
                lines.append(f"| {snr:+g} | " + " | ".join(f"{curves[n]['psnr'][i]:.2f}" for n in names) + " |")
            lines += ["", f"Frechet distance to the reference images ({fading}):", ""]
            lines += ["| SNR (dB) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
            for i, snr in enumerate(curves[names[0]]["snr_db"]):
                lines.append(f"| {snr:+g} | " + " | ".join(f"{curves[n]['frechet'][i]:.3g}" for n in names) + " |")
            lines.append("")
        lines += ["### Claim 2: seed codec vs raw latent (paired per image, PSNR difference, 95% CI)", ""]
        references = [
            (
                "crossover",
                "the raw latent with the LMMSE receiver that knows the latent prior's "
                "per-element mean and variance (train prompts; the fair reference)",
            )
        ]
        if "crossover_zero_mean" in b:
            references.append(("crossover_zero_mean", "the raw latent equalised as if zero-mean (the reference "
                               "before 2026-11-29)"))  # fmt: skip
        for key, what in references:
            lines += [f"Against {what}:", ""]
            for fading in ("awgn", "rayleigh"):
                for ratio in codec_lib.COMPRESSION_RATIOS:
                    c = b[key][fading][f"seed {ratio}"]
                    cells = ", ".join(
                        f"{r['snr_db']:+g} dB: {r['diff']:+.2f} [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}]"
                        for r in c["rows"]
                    )
                    lines.append(f"- {fading}, seed {ratio}: **{verdict(c['rows'])}**. {cells}")
            lines.append("")
    if "c" in data:
        c = data["c"]
        lines += [
            "## (c) PSNR vs energy budget",
            "",
            *provenance(data["c"], "c"),
            f"![psnr vs budget]({meta['figures']['c']})",
            "",
            f"Default environment (Rayleigh, 8 blocks, seed 1/4, peak SNR 10 dB) at each budget; PPO trained "
            f"{c['timesteps']['ppo']:,} steps and DDPG {c['timesteps']['ddpg']:,} steps per seed, seeds "
            f"{list(meta['args']['seeds'])}; every policy evaluated on the same {meta['args']['eval_episodes']} "
            "test episodes. Shaded "
            "and in brackets: 95% stratified-bootstrap intervals across training seeds (rliable); the fixed "
            "policies are deterministic (one run).",
            "",
            "| policy | " + " | ".join(f"budget {x:g}" for x in c["budgets"]) + " |",
            "|---" * (len(c["budgets"]) + 1) + "|",
        ]
        for name, entry in c["policies"].items():
            cells = [f"{m:.2f} [{lo:.2f}, {hi:.2f}]" for m, (lo, hi) in zip(entry["mean"], entry["ci"], strict=True)]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "### Claim 3: PPO and DDPG vs static power, and MMSE water-filling's lead (dB, 95% CI across "
                  "seeds)", ""]  # fmt: skip
        oracle = (c["policies"].get("mmse-water-filling") or c["policies"]["oracle"])["mean"]
        static = c["policies"]["static"]["mean"]
        for name in ("ppo", "ddpg", "threshold"):
            if name not in c["policies"]:
                continue
            for i, budget in enumerate(c["budgets"]):
                point, low, high = c["policies"][name]["vs_static"][i]
                share = point / (oracle[i] - static[i]) if oracle[i] > static[i] else float("nan")
                lines.append(
                    f"- {name}, budget {budget:g}: {point:+.2f} [{low:+.2f}, {high:+.2f}] vs static; "
                    f"MMSE water-filling {oracle[i] - static[i]:+.2f} vs static; {name} closes {share:.0%} of that gap."
                )
        lines.append("")
    lines += ["## Where we differ from the paper", "", *data.get("differences", []), ""]
    return "\n".join(lines)


def crossover_shift(before: list[dict], after: list[dict]) -> str:
    """Where the seed's significant lead ends, against the old and the new reference."""

    def last_better(rows: list[dict]) -> float | None:
        better = [r["snr_db"] for r in rows if r["ci"][0] > 0]
        return max(better) if better else None

    old, new = last_better(before), last_better(after)
    if old == new:
        return f"The seed's significant lead still ends at {new:+g} dB." if new is not None else ""
    if new is None:
        return "Against the fair reference the seed is never significantly better."
    return f"The seed's significant lead now ends at {new:+g} dB (was {old:+g} dB)."


def differences(data: dict) -> list[str]:
    """Plain statements of where our measurements disagree with or qualify the paper's claims."""
    out = []
    if "b" in data:
        for fading in ("awgn", "rayleigh"):
            rows = data["b"]["crossover"][fading]["seed 1/4"]["rows"]
            worse = [r for r in rows if r["ci"][1] < 0]
            if worse:
                name = "AWGN" if fading == "awgn" else "Rayleigh fading"
                out.append(
                    f"- {name}: compared with the raw latent, the default seed (ratio 1/4) is {verdict(rows)}. The "
                    f"paper's claim is about low SNR and holds there. Above it the raw latent wins, by "
                    f"{-worse[-1]['diff']:.2f} dB at {worse[-1]['snr_db']:+g} dB: a seed 4x smaller than the latent "
                    "cannot carry its fine detail once the channel is good. At the very lowest SNR every scheme "
                    "decodes to little more than the decoder's prior, so the differences shrink."
                )
            if "crossover_zero_mean" in data["b"]:
                before = data["b"]["crossover_zero_mean"][fading]["seed 1/4"]["rows"]
                at = {r["snr_db"]: (r, b) for r, b in zip(rows, before, strict=True)}
                cells = ", ".join(f"{snr:+g} dB {b['diff']:+.2f} -> {r['diff']:+.2f}" for snr, (r, b) in at.items()
                                  if snr in (-10, 0, 5, 10, 20))  # fmt: skip
                curves = data["b"]["curves"][fading]
                high = [s for s, lmmse, zero in zip(curves["raw latent"]["snr_db"], curves["raw latent"]["psnr"],
                                                    curves[ZERO_MEAN]["psnr"], strict=True) if lmmse < zero]  # fmt: skip
                out.append(
                    f"- {'AWGN' if fading == 'awgn' else 'Rayleigh fading'}, against the fair raw-latent reference "
                    f"(LMMSE with the latent prior) instead of the zero-mean receiver, seed 1/4 minus raw latent: "
                    f"{cells}. Zero-mean: {verdict(before)}; fair: {verdict(rows)}. {crossover_shift(before, rows)}"
                    + (
                        f" The LMMSE receiver is the linear receiver of least latent MSE, yet its images score "
                        f"slightly lower PSNR than the zero-mean receiver's at {', '.join(f'{x:+g}' for x in high)} "
                        "dB: the VAE decoder is nonlinear, so the MSE-optimal latent is not the PSNR-optimal one."
                        if high
                        else ""
                    )
                )
    if "c" in data:
        c = data["c"]
        pol, budgets = c["policies"], c["budgets"]
        water_filling = pol.get("mmse-water-filling") or pol["oracle"]  # its name before 2026-11-29
        gap = [o - st for o, st in zip(water_filling["mean"], pol["static"]["mean"], strict=True)]
        for name in ("ppo", "ddpg"):
            if name not in pol:
                continue
            gains = pol[name]["vs_static"]
            wins = [f"{b:g}" for b, v in zip(budgets, gains, strict=True) if v[1] > 0]
            losses = [f"{b:g}" for b, v in zip(budgets, gains, strict=True) if v[2] < 0]
            shares = [v[0] / g for v, g in zip(gains, gap, strict=True) if g > 0]
            text = f"- {name.upper()}: significantly above static power at budget(s) {', '.join(wins) or 'none'}"
            text += f", significantly below at {', '.join(losses)}" if losses else ""
            if wins:
                text += (
                    f"; it closes {min(shares):.0%} to {max(shares):.0%} of the gap between static power and "
                    "non-causal MMSE water-filling, more when the budget is tight"
                )
            out.append(text + ".")
        out.append(
            f"- The paper reports DRL above static power without intervals. Here the whole room for allocation "
            f"is small: non-causal MMSE water-filling (called the oracle before 2026-11-29; not a bound) leads "
            f"static power by {min(gap):.2f} to {max(gap):.2f} dB, so on "
            "this channel the size of the budget, not its allocation, sets most of the quality."
        )
    return out or ["- None measured in this run."]


def main(args: Args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    if args.quick:
        args.prompts, args.snrs_db, args.budgets, args.seeds = 64, (-10.0, 0.0, 10.0), (0.05,), (1,)
        args.ppo_steps, args.ddpg_steps, args.eval_episodes = 2048, 512, 64
        if args.output == Path("docs/results/reproduction.md"):
            args.output = Path("/tmp/meg-gym-reproduction/reproduction.md")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    data_path = args.output.with_suffix(".json")
    data = json.loads(data_path.read_text()) if data_path.exists() else {}
    command = "python scripts/reproduce_paper.py" + (" --quick" if args.quick else "")
    if sorted(args.figures) != ["a", "b", "c"]:
        command += " --figures " + " ".join(args.figures)
    # figures kept from an earlier run keep its provenance; data from before figures carried it (2026-11-28)
    # was measured on the one default cache of that time
    for key in "abc":
        if key in data and "made" not in data[key] and "meta" in data:
            data[key]["made"] = {"command": data["meta"]["command"], "commit": data["meta"]["commit"],
                                 "cache_sha256": LEGACY_DEFAULT_CACHE}  # fmt: skip
    made = {"command": command, "commit": evaluation.git_commit(), "cache_sha256": cache_fingerprint()}
    start = time.time()
    figures = {k: f"reproduction-{k}.png" for k in "abc"}
    if args.render_only:  # rewrite the page, its verdicts and figures from the stored data, measuring nothing
        for key, plot in (("a", plot_a), ("b", plot_b), ("c", plot_c)):
            if key in data:
                plot(data[key], args.output.with_name(figures[key]))
        data["differences"] = differences(data)
        data["meta"]["redrawn"] = {"command": "python scripts/reproduce_paper.py --render-only",
                                   "commit": evaluation.git_commit()}  # fmt: skip
        data_path.write_text(json.dumps(data))
        args.output.write_text(render(data, args))
        return
    if "a" in args.figures:
        data["a"] = figure_a(args.prompts)
        plot_a(data["a"], args.output.with_name(figures["a"]))
    if "b" in args.figures:
        data["b"] = figure_b(args)
        for key, reference in (("crossover", "raw latent"), ("crossover_zero_mean", ZERO_MEAN)):
            data["b"][key] = {
                fading: {name: crossover(data["b"]["curves"][fading], name, reference)
                         for name in data["b"]["curves"][fading] if name.startswith("seed")}
                for fading in ("awgn", "rayleigh")
            }  # fmt: skip
        for curves in data["b"]["curves"].values():  # per-image values only feed the paired intervals
            for curve in curves.values():
                curve.pop("psnr_per_image")
        plot_b(data["b"], args.output.with_name(figures["b"]))
    if "c" in args.figures:
        data["c"] = figure_c(args)
        plot_c(data["c"], args.output.with_name(figures["c"]))
    for key in args.figures:
        data[key]["made"] = made
    data["meta"] = {
        "command": command,
        "commit": evaluation.git_commit(),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "wall_s": time.time() - start,
        "figures": figures,
        "args": json.loads(json.dumps(asdict(args), default=str)),
    }
    data["differences"] = differences(data)
    data_path.write_text(json.dumps(data))
    args.output.write_text(render(data, args))
    print(f"wrote {args.output} in {(time.time() - start) / 60:.1f} min")


if __name__ == "__main__":
    main(tyro.cli(Args))
