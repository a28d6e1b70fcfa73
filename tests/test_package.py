"""Package-level contracts: a light import, and the shipped assets in diffusers' folder format."""

from __future__ import annotations

import subprocess
import sys


def test_import_is_light():
    code = (
        "import sys, meg_gym, meg_gym.cache, meg_gym.generation.shapes;"
        "heavy = [m for m in ('diffusers', 'transformers') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
