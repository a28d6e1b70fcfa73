"""MEG-Shapes: determinism, held-out combinations and captions."""

from __future__ import annotations

import numpy as np
import pytest

from meg_gym.generation import shapes


def test_scenes_are_deterministic_and_distinct():
    a = shapes.sample_scene("train", 17, seed=3)
    b = shapes.sample_scene("train", 17, seed=3)
    assert a == b
    np.testing.assert_array_equal(a.render(), b.render())
    assert shapes.sample_scene("train", 18, seed=3) != a
    assert shapes.sample_scene("train", 17, seed=4) != a


def test_render_is_uint8_with_objects_drawn():
    scene = shapes.sample_scene("train", 0, num_objects=1)
    image = scene.render()
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    obj = scene.objects[0]
    row, col = divmod(obj.cell, 3)
    cy, cx = int((row + 0.5) * 64 / 3 + obj.dy), int((col + 0.5) * 64 / 3 + obj.dx)
    np.testing.assert_allclose(image[cy, cx], shapes.COLOURS[obj.colour], atol=2)


def test_held_out_triples_split_train_from_test():
    train = shapes.sample_scenes("train", 400)
    test = shapes.sample_scenes("test", 400)
    assert not any(o.triple in shapes.HELD_OUT_TRIPLES for s in train for o in s.objects)
    assert all(any(o.triple in shapes.HELD_OUT_TRIPLES for o in s.objects) for s in test)
    assert len(shapes.HELD_OUT_TRIPLES) == len(shapes.SHAPES) * len(shapes.COLOUR_NAMES)


def test_objects_occupy_distinct_cells_and_caption_names_them():
    for scene in shapes.sample_scenes("test", 100):
        cells = [o.cell for o in scene.objects]
        assert len(set(cells)) == len(cells)
        for obj in scene.objects:
            assert f"{obj.size} {obj.colour} {obj.shape} {shapes.POSITION_PHRASES[obj.cell]}" in scene.caption


def test_object_counts_cover_one_to_three():
    counts = {len(s.objects) for s in shapes.sample_scenes("train", 60)}
    assert counts == {1, 2, 3}


def test_attributes_mark_each_object():
    scene = shapes.sample_scene("test", 5, num_objects=3)
    attrs = scene.attributes()
    assert attrs["present"].sum() == 3
    for obj in scene.objects:
        assert attrs["shape"][obj.cell] == shapes.SHAPES.index(obj.shape)
        assert attrs["colour"][obj.cell] == shapes.COLOUR_NAMES.index(obj.colour)


def test_parallel_render_matches_serial():
    serial = shapes.render_scenes("train", 20, start=5)
    parallel = shapes.render_scenes("train", 20, start=5, workers=2)
    np.testing.assert_array_equal(serial, parallel)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown split"):
        shapes.sample_scene("validation", 0)
    with pytest.raises(ValueError, match="num_objects"):
        shapes.sample_scene("train", 0, num_objects=4)
