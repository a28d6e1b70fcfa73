"""Measurements of the embedded generation side, as docs/results/generation.md reports them.

``live_images`` generates images live for test scenes from fixed noise seeds (LIVE_SEED + i), so that
scripts/evaluate_generation.py and the evaluation during scripts/train_ldm.py measure the same images;
``faithfulness`` is the domain classifier's prompt faithfulness of images (``summary`` keeps its headline
figures); ``error_breakdown`` splits the errors into missing objects and attributes bound to the wrong
object; ``decode_speed`` times the UE's decode.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from meg_gym import quality
from meg_gym.generation import shapes
from meg_gym.generation.imaging import decode_latents

if TYPE_CHECKING:
    from meg_gym.generation.split_pipeline import SplitPipeline


def decode_speed(vae, batch: int = 64, repeats: int = 20) -> float:
    """ms per image for the UE's decode of a batch of latents, as the environments run it (decode_latents)."""
    latents = torch.randn(batch, 4, 8, 8)
    with torch.inference_mode():
        for _ in range(3):
            decode_latents(vae, latents)
        start = time.perf_counter()
        for _ in range(repeats):
            decode_latents(vae, latents)
    return (time.perf_counter() - start) / repeats / batch * 1000


LIVE_SEED = 10**6
"""live generation of test prompt i starts from the noise of seed LIVE_SEED + i"""


def live_images(sampler: SplitPipeline, scenes) -> torch.Tensor:
    """Images generated live for ``scenes``' captions, 100 prompts at a time."""
    seeds = [LIVE_SEED + i for i in range(len(scenes))]
    return sampler.generate([s.caption for s in scenes], seeds, batch_size=100)


def summary(acc: dict) -> dict:
    """The headline figures of ``quality.prompt_faithfulness`` or ``quality.attribute_accuracy``."""
    return {k: acc[k] for k in ("shape_colour", "shape", "colour", "size", "one_object", "multi_object")}


def faithfulness(images: torch.Tensor, scenes, classifier) -> dict:
    """The classifier's prompt faithfulness of ``images`` to ``scenes``: ``summary``'s figures."""
    return summary(quality.prompt_faithfulness(images, scenes, classifier))


def error_breakdown(predictions: dict, scenes) -> dict:
    """Accuracy by object count, and how often a wrong shape or colour is one the prompt gave another object.

    A model that draws every object of the prompt but binds attributes to the wrong positions shows high
    presence with most wrong attributes borrowed from the other objects (the attribute-binding failure).
    ``predictions`` are ``ShapesClassifier.predict``'s class indices per head and cell.
    """
    pred = {k: np.asarray(v) for k, v in predictions.items()}
    target = shapes.attribute_targets(list(scenes))
    counts = np.array([len(s.objects) for s in scenes])
    found = pred["present"] == 1
    right_shape, right_colour = found & (pred["shape"] == target["shape"]), found & (pred["colour"] == target["colour"])
    by_count = {}
    for n in range(1, shapes.MAX_OBJECTS + 1):
        mask = (target["present"] == 1) & (counts == n)[:, None]
        if mask.any():
            by_count[str(n)] = {"objects": int(mask.sum()), "present": float(found[mask].mean()),
                                "shape": float(right_shape[mask].mean()), "colour": float(right_colour[mask].mean()),
                                "shape_colour": float((right_shape & right_colour)[mask].mean())}  # fmt: skip
    borrowed = {"shape": [0, 0], "colour": [0, 0]}  # [wrong, of which another object's]
    for i, scene in enumerate(scenes):
        if len(scene.objects) < 2:
            continue
        for obj in scene.objects:
            if not found[i, obj.cell]:
                continue
            for head, names, value in (
                ("shape", shapes.SHAPES, obj.shape),
                ("colour", shapes.COLOUR_NAMES, obj.colour),
            ):
                guess = pred[head][i, obj.cell]
                if guess != names.index(value):
                    others = {names.index(getattr(o, head)) for o in scene.objects if o is not obj}
                    borrowed[head][0] += 1
                    borrowed[head][1] += int(guess in others)
    return {"by_object_count": by_count,
            "wrong_from_another_object": {k: (b / w if w else float("nan")) for k, (w, b) in borrowed.items()}}  # fmt: skip
