"""rgb_array frames of the MEG environments, drawn with Pillow (no display needed)."""

from __future__ import annotations

import textwrap

import numpy as np

WIDTH, HEIGHT = 448, 320
IMAGE_SIZE = 160
BACKGROUND = (250, 250, 250)
INK = (30, 30, 30)
GAIN_COLOUR = (70, 130, 180)
POWER_COLOUR = (220, 120, 40)


def _to_pil(image, size: int):
    from PIL import Image

    if image is None:
        return Image.new("RGB", (size, size), (200, 200, 200))
    arr = np.asarray(image.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0))
    return Image.fromarray(arr).resize((size, size), Image.NEAREST)


def draw_episode(
    prompt: str,
    reference,
    received,
    gains_db: np.ndarray,
    power_fractions: np.ndarray,
    blocks_done: int,
    energy_left: float,
) -> np.ndarray:
    """One frame: the prompt, the reference and received images, and per-block channel gain and power.

    Args:
        reference, received: (3, H, W) tensors in [-1, 1]; ``received`` is None until the last block is sent.
        gains_db: Channel power gain of each block in dB (drawn for the blocks sent so far and the current one).
        power_fractions: Applied power of each block as a fraction of peak power.
        blocks_done: Blocks already sent.
        energy_left: Fraction of the energy budget left.

    Returns:
        uint8 array of shape (HEIGHT, WIDTH, 3).
    """
    from PIL import Image, ImageDraw

    frame = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(frame)
    for i, line in enumerate(textwrap.wrap(prompt, 70)[:2]):
        draw.text((8, 6 + 12 * i), line, fill=INK)
    frame.paste(_to_pil(reference, IMAGE_SIZE), (8, 44))
    frame.paste(_to_pil(received, IMAGE_SIZE), (16 + IMAGE_SIZE, 44))
    draw.text((8, 32), "reference", fill=INK)
    draw.text((16 + IMAGE_SIZE, 32), "received" if received is not None else "received (after last block)", fill=INK)

    # per-block bars: gain in dB (blue, -20..+10 dB) and applied power fraction (orange)
    k = len(gains_db)
    left, top, bottom = 8, 220, 300
    slot = (WIDTH - 16) / max(k, 1)
    for b in range(k):
        x = left + b * slot
        if b <= min(blocks_done, k - 1):
            g = float(np.clip((gains_db[b] + 20.0) / 30.0, 0.0, 1.0))
            draw.rectangle([x + 2, bottom - g * (bottom - top), x + slot / 2 - 1, bottom], fill=GAIN_COLOUR)
        if b < blocks_done:
            p = float(np.clip(power_fractions[b], 0.0, 1.0))
            draw.rectangle([x + slot / 2, bottom - p * (bottom - top), x + slot - 2, bottom], fill=POWER_COLOUR)
        draw.text((x + 2, bottom + 4), str(b + 1), fill=INK)
    draw.text(
        (8, 206), f"gain (blue, -20..10 dB) and power (orange) per block; energy left {energy_left:.0%}", fill=INK
    )
    x0 = 24 + 2 * IMAGE_SIZE
    draw.text((x0, 60), f"block {min(blocks_done + 1, k)}/{k}", fill=INK)
    return np.asarray(frame)
