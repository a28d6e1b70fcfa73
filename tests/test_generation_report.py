"""meg_gym.generation.measures' error breakdown (scripts/evaluate_generation.py): presence vs attribute binding."""

from __future__ import annotations

import numpy as np
import pytest

from meg_gym.generation import measures, shapes


def test_error_breakdown_tells_swapped_attributes_from_missing_objects():
    scenes = [shapes.sample_scene("test", i, num_objects=2) for i in range(6)]
    scenes = [s for s in scenes if s.objects[0].colour != s.objects[1].colour]
    truth = shapes.attribute_targets(scenes)
    swapped = {k: v.copy() for k, v in truth.items()}
    for i, scene in enumerate(scenes):  # every object drawn where asked, in the other object's colour
        a, b = (obj.cell for obj in scene.objects)
        swapped["colour"][i, a], swapped["colour"][i, b] = truth["colour"][i, b], truth["colour"][i, a]
    report = measures.error_breakdown(swapped, scenes)
    two = report["by_object_count"]["2"]
    assert two["objects"] == 2 * len(scenes)
    assert two["present"] == 1.0 and two["shape"] == 1.0 and two["colour"] == 0.0 and two["shape_colour"] == 0.0
    assert report["wrong_from_another_object"]["colour"] == 1.0
    assert np.isnan(report["wrong_from_another_object"]["shape"])  # no wrong shapes at all

    missing = {k: v.copy() for k, v in truth.items()}
    missing["present"][:] = 0
    report = measures.error_breakdown(missing, scenes)
    assert report["by_object_count"]["2"]["present"] == 0.0
    assert report["by_object_count"]["2"]["shape_colour"] == pytest.approx(0.0)
