"""MEG-Shapes: a procedural captioned image dataset for the embedded text-to-image model.

Each 64x64 RGB scene holds one to three objects on a smooth two-colour gradient background. An object
has a shape, a colour, a size and one cell of a 3x3 position grid; its caption comes from a small grammar,
for example "a large red circle at the top left and a small blue triangle in the center".

Scenes are deterministic functions of ``(split, index, seed)``, so any prompt can be regenerated from
its index alone. The ``test`` split holds out attribute combinations: every test scene contains at
least one (shape, colour, position) triple from :data:`HELD_OUT_TRIPLES`, and no train scene contains
any of them. Everything here is numpy only (no torch), so it stays cheap to import.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (30, 165, 60),
    "blue": (35, 85, 225),
    "yellow": (240, 205, 25),
    "purple": (145, 55, 200),
    "orange": (245, 125, 20),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
# Object radius in pixels at 64x64; a grid cell is 64/3 ~ 21.3 px wide.
SIZES: dict[str, float] = {"small": 5.5, "large": 9.0}
SIZE_NAMES: tuple[str, ...] = tuple(SIZES)
# Row-major 3x3 grid; the phrase is what the caption says.
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
POSITION_PHRASES: tuple[str, ...] = (
    "at the top left", "at the top", "at the top right",
    "on the left", "in the center", "on the right",
    "at the bottom left", "at the bottom", "at the bottom right",
)  # fmt: skip
# Muted background colours, so that every object colour stands out on every background.
BACKGROUNDS: tuple[tuple[int, int, int], ...] = (
    (235, 235, 230),
    (200, 200, 200),
    (225, 213, 188),
    (188, 203, 222),
    (62, 66, 80),
    (38, 38, 42),
    (72, 78, 58),
    (120, 112, 104),
)
SPLITS: tuple[str, ...] = ("train", "test")
RESOLUTION = 64
MAX_OBJECTS = 3

# One held-out position per (shape, colour) pair: 24 of the 216 triples never appear in training.
HELD_OUT_TRIPLES: frozenset[tuple[str, str, int]] = frozenset(
    (shape, colour, (2 * si + 5 * ci) % len(POSITIONS))
    for si, shape in enumerate(SHAPES)
    for ci, colour in enumerate(COLOUR_NAMES)
)


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene. ``cell`` indexes :data:`POSITIONS`; ``dx, dy`` jitter it inside its cell."""

    shape: str
    colour: str
    size: str
    cell: int
    dx: float = 0.0
    dy: float = 0.0

    @property
    def triple(self) -> tuple[str, str, int]:
        return (self.shape, self.colour, self.cell)

    def phrase(self) -> str:
        return f"a {self.size} {self.colour} {self.shape} {POSITION_PHRASES[self.cell]}"


@dataclass(frozen=True)
class Scene:
    """A scene: its objects (in caption order) and a linear-gradient background."""

    objects: tuple[ShapeObject, ...]
    background: tuple[tuple[int, int, int], tuple[int, int, int]]
    gradient_angle: float

    @property
    def caption(self) -> str:
        phrases = [obj.phrase() for obj in self.objects]
        if len(phrases) == 1:
            return phrases[0]
        return ", ".join(phrases[:-1]) + " and " + phrases[-1]

    def attributes(self) -> dict[str, np.ndarray]:
        """Per-cell ground truth: presence, shape, colour and size indices (-1 where the cell is empty)."""
        present = np.zeros(len(POSITIONS), dtype=np.int64)
        shape = np.full(len(POSITIONS), -1, dtype=np.int64)
        colour = np.full(len(POSITIONS), -1, dtype=np.int64)
        size = np.full(len(POSITIONS), -1, dtype=np.int64)
        for obj in self.objects:
            present[obj.cell] = 1
            shape[obj.cell] = SHAPES.index(obj.shape)
            colour[obj.cell] = COLOUR_NAMES.index(obj.colour)
            size[obj.cell] = SIZE_NAMES.index(obj.size)
        return {"present": present, "shape": shape, "colour": colour, "size": size}

    def render(self, resolution: int = RESOLUTION, supersample: int = 4) -> np.ndarray:
        """Draw the scene as a uint8 array of shape (resolution, resolution, 3), anti-aliased."""
        return render_scene(self, resolution, supersample)


def _split_id(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    return SPLITS.index(split)


def _random_object(rng: np.random.Generator, cell: int, triple=None) -> ShapeObject:
    if triple is None:
        shape, colour = SHAPES[rng.integers(len(SHAPES))], COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))]
    else:
        shape, colour, cell = triple
    size = SIZE_NAMES[rng.integers(len(SIZE_NAMES))]
    half_cell = RESOLUTION / 6.0
    jitter = max(0.0, half_cell - SIZES[size] - 0.7)
    dx, dy = rng.uniform(-jitter, jitter, size=2)
    return ShapeObject(shape, colour, size, int(cell), float(dx), float(dy))


def sample_scene(split: str, index: int, seed: int = 0, num_objects: int | None = None) -> Scene:
    """The scene number ``index`` of ``split``: a pure function of its arguments.

    ``num_objects`` fixes the object count (1 to 3); by default it is uniform over 1..3.
    """
    split_id = _split_id(split)
    if index < 0:
        raise ValueError(f"scene index must be >= 0, got {index}")
    rng = np.random.default_rng([seed, split_id, index])
    n = int(rng.integers(1, MAX_OBJECTS + 1)) if num_objects is None else int(num_objects)
    if not 1 <= n <= MAX_OBJECTS:
        raise ValueError(f"num_objects must be in 1..{MAX_OBJECTS}, got {num_objects}")
    held_out = sorted(HELD_OUT_TRIPLES)
    while True:
        cells = rng.permutation(len(POSITIONS))[:n]
        objects = []
        if split == "test":  # the first object carries a held-out combination; order is shuffled below
            triple = held_out[rng.integers(len(held_out))]
            cells[cells == triple[2]] = cells[0]
            cells[0] = triple[2]
            objects.append(_random_object(rng, cells[0], triple))
        objects += [_random_object(rng, cell) for cell in cells[len(objects) :]]
        if split == "train" and any(obj.triple in HELD_OUT_TRIPLES for obj in objects):
            continue
        break
    order = rng.permutation(n)
    objects = tuple(objects[i] for i in order)
    bg = rng.choice(len(BACKGROUNDS), size=2, replace=False)
    angle = float(rng.uniform(0, 2 * np.pi))
    return Scene(objects, (BACKGROUNDS[bg[0]], BACKGROUNDS[bg[1]]), angle)


def sample_scenes(split: str, count: int, seed: int = 0, start: int = 0) -> list[Scene]:
    """Scenes ``start .. start+count-1`` of ``split``."""
    return [sample_scene(split, i, seed) for i in range(start, start + count)]


def _shape_mask(shape: str, x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of a shape of radius ``r`` centred at the origin of the coordinates (x, y)."""
    if shape == "circle":
        return x * x + y * y <= r * r
    if shape == "square":
        half = 0.85 * r
        return (np.abs(x) <= half) & (np.abs(y) <= half)
    if shape == "triangle":  # apex up; y grows downwards
        bottom = 0.75 * r
        # the slanted edges pass through (0, -r) and (+-0.95 r, bottom)
        slope = 0.95 * r / (bottom + r)
        return (y <= bottom) & (np.abs(x) <= (y + r) * slope)
    if shape == "cross":
        arm = r / 3.0
        return ((np.abs(x) <= arm) & (np.abs(y) <= r)) | ((np.abs(y) <= arm) & (np.abs(x) <= r))
    raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")


def render_scene(scene: Scene, resolution: int = RESOLUTION, supersample: int = 4) -> np.ndarray:
    """Rasterise ``scene`` with ``supersample``^2 samples per pixel; returns uint8 (H, W, 3)."""
    n = resolution * supersample
    scale = resolution / RESOLUTION
    coords = (np.arange(n, dtype=np.float32) + 0.5) / supersample  # pixel units at `resolution`
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    # Background: linear blend of two colours along the gradient direction.
    c0, c1 = (np.asarray(c, dtype=np.float32) for c in scene.background)
    ux, uy = np.cos(scene.gradient_angle), np.sin(scene.gradient_angle)
    t = ((xx / resolution - 0.5) * ux + (yy / resolution - 0.5) * uy) / np.sqrt(0.5) + 0.5
    t = np.clip(t, 0.0, 1.0)[..., None]
    canvas = c0 * (1 - t) + c1 * t
    cell_size = resolution / 3.0
    for obj in scene.objects:
        row, col = divmod(obj.cell, 3)
        cx = (col + 0.5) * cell_size + obj.dx * scale
        cy = (row + 0.5) * cell_size + obj.dy * scale
        mask = _shape_mask(obj.shape, xx - cx, yy - cy, SIZES[obj.size] * scale)
        canvas[mask] = np.asarray(COLOURS[obj.colour], dtype=np.float32)
    image = canvas.reshape(resolution, supersample, resolution, supersample, 3).mean(axis=(1, 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def render_batch(scenes: list[Scene], resolution: int = RESOLUTION) -> np.ndarray:
    """Render several scenes; returns uint8 (N, H, W, 3)."""
    return np.stack([render_scene(s, resolution) for s in scenes])


def attribute_targets(scenes: list[Scene]) -> dict[str, np.ndarray]:
    """Stacked per-cell ground truth of :meth:`Scene.attributes`, each of shape (N, 9)."""
    per_scene = [s.attributes() for s in scenes]
    return {key: np.stack([a[key] for a in per_scene]) for key in per_scene[0]}


def _render_job(job: tuple[str, int, int, int]) -> np.ndarray:
    split, start, count, seed = job
    return render_batch(sample_scenes(split, count, seed, start))


def render_scenes(split: str, count: int, seed: int = 0, start: int = 0, workers: int = 1, progress: bool = False):
    """Render scenes ``start .. start+count-1`` of ``split``, across ``workers`` processes; uint8 (N, H, W, 3)."""
    chunk = 500
    jobs = [(split, s, min(chunk, start + count - s), seed) for s in range(start, start + count, chunk)]

    def collect(parts):
        if progress:
            from tqdm import tqdm

            parts = tqdm(parts, total=len(jobs), desc=f"render {split}")
        return np.concatenate(list(parts))

    if workers <= 1:
        return collect(map(_render_job, jobs))
    from multiprocessing import get_context

    with get_context("spawn").Pool(workers) as pool:
        return collect(pool.imap(_render_job, jobs))
