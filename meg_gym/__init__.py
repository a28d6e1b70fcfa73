"""meg-gym: reinforcement-learning benchmark environments for mobile-edge generation (MEG).

``import meg_gym`` stays light: it imports neither torch's model libraries (diffusers, transformers) nor
the assets. Environments register here with string entry points as they land.
"""

from __future__ import annotations

__version__ = "0.1.0"

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent / "assets"

__all__ = ["ASSETS_DIR", "__version__"]
