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


SESSION_WIDTH, SESSION_HEIGHT = 640, 400  # the left column holds two 150-pixel images and their labels
SCHEME_COLOURS = [(214, 39, 40), (255, 127, 14), (44, 160, 44), (31, 119, 180), (148, 103, 189)]


def draw_session(
    prompt: str,
    reference,
    received,
    received_label: str,
    history: list[dict],
    num_requests: int,
    schemes: tuple[str, ...],
    battery: tuple[float, float],
    misses: tuple[float, float],
    es_energy_left: float,
) -> np.ndarray:
    """One frame of a MEG-SplitControl-v0 session: the last request's images and the session so far.

    Args:
        prompt: The last request's prompt.
        reference, received: (3, H, W) tensors in [-1, 1] of the last request (None before the first).
        received_label: What the received image is (e.g. a live draw at the request's SNR).
        history: One dict per served request with ``reported_snr_db``, ``split_step``, ``scheme``,
            ``energy_level`` and ``quality``.
        num_requests: Requests per session (the time axis).
        schemes: The scheme names, in the order of their colours.
        battery, misses: (used, limit) of the UE energy (J) and of the deadline misses.
        es_energy_left: Fraction of the ES energy budget left.

    Returns:
        uint8 array of shape (SESSION_HEIGHT, SESSION_WIDTH, 3).
    """
    from PIL import Image, ImageDraw

    frame = Image.new("RGB", (SESSION_WIDTH, SESSION_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(frame)
    for i, line in enumerate(textwrap.wrap(prompt or "", 100)[:2]):
        draw.text((8, 6 + 12 * i), line, fill=INK)
    size = 150
    draw.text((8, 32), "reference", fill=INK)
    for i, line in enumerate(textwrap.wrap(received_label, 26)[:3]):
        draw.text((8, 48 + size + 12 * i), line, fill=INK)
    frame.paste(_to_pil(reference, size), (8, 44))
    frame.paste(_to_pil(received, size), (8, 86 + size))

    # the session so far, one column per request: reported SNR, energy level, quality
    left, right = 180, SESSION_WIDTH - 10
    slot = (right - left) / max(num_requests, 1)
    panels = [("reported SNR (dB, -30..40)", -30.0, 40.0, "reported_snr_db"),
              ("energy level (x fair share, 0..4)", 0.0, 4.0, "energy_level"),
              ("quality (PSNR dB, 5..45); colour: scheme, number: split step", 5.0, 45.0, "quality")]  # fmt: skip
    top, height = 40, 82
    for k, (title, low, high, key) in enumerate(panels):
        y0 = top + k * (height + 22)
        draw.text((left, y0 - 14), title, fill=INK)
        draw.rectangle([left, y0, right, y0 + height], outline=(180, 180, 180))
        for r, entry in enumerate(history):
            x = left + r * slot
            v = float(np.clip((float(entry[key]) - low) / (high - low), 0.0, 1.0))
            colour = SCHEME_COLOURS[schemes.index(entry["scheme"]) % len(SCHEME_COLOURS)] if key == "quality" else (
                GAIN_COLOUR if key == "reported_snr_db" else POWER_COLOUR)  # fmt: skip
            draw.rectangle([x + 1, y0 + height - v * height, x + slot - 1, y0 + height], fill=colour)
            if key == "quality" and slot >= 12:
                draw.text((x + 1, y0 + height + 2), str(int(entry["split_step"])), fill=INK)
    y = top + 3 * (height + 22) + 4
    for j, name in enumerate(schemes):
        draw.rectangle([left + j * 90, y, left + j * 90 + 10, y + 10], fill=SCHEME_COLOURS[j % len(SCHEME_COLOURS)])
        draw.text((left + j * 90 + 14, y), name, fill=INK)
    status = (f"request {len(history)}/{num_requests}   battery {battery[0]:.1f}/{battery[1]:g} J   "
              f"deadline misses {misses[0]:g}/{misses[1]:g}   ES energy left {es_energy_left:.0%}")  # fmt: skip
    draw.text((left, y + 18), status, fill=INK)
    return np.asarray(frame)
