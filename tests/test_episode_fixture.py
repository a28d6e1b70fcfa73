"""Behaviour preservation: fixed seeds and actions give the per-episode results recorded in the fixture.

The fixture (tests/fixtures/episode_results.json, written by tests/episode_fixture.py) was recorded at the
commit it names, before the link-core restructure; a change meant to keep the simulation as it is must pass
this unchanged. Tolerance 1e-5 (dB for PSNR), far below any effect a policy comparison could see.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from episode_fixture import FIXTURE, MULTI_CELL_CASES, POWER_CONTROL_CASES, multi_cell_results, power_control_results

RECORDED = json.loads(FIXTURE.read_text())["results"]


@pytest.mark.parametrize("name,kwargs,num_envs,rollouts", POWER_CONTROL_CASES, ids=[c[0] for c in POWER_CONTROL_CASES])
def test_power_control_episodes_match_the_fixture(name, kwargs, num_envs, rollouts):
    now = power_control_results(kwargs, num_envs, rollouts)
    for key, values in RECORDED[name].items():
        np.testing.assert_allclose(now[key], values, rtol=0, atol=1e-5, err_msg=f"{name}: {key}")


@pytest.mark.parametrize("name,kwargs,num_envs,rollouts", MULTI_CELL_CASES, ids=[c[0] for c in MULTI_CELL_CASES])
def test_multi_cell_episodes_match_the_fixture(name, kwargs, num_envs, rollouts):
    now = multi_cell_results(kwargs, num_envs, rollouts)
    for key, values in RECORDED[name].items():
        np.testing.assert_allclose(now[key], values, rtol=0, atol=1e-5, err_msg=f"{name}: {key}")
