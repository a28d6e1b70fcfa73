"""Loading model folders (diffusers' from_pretrained format) safely, with errors that say how to fix them.

Only ``config.json`` and ``*.safetensors`` are read (``use_safetensors=True``): a weight file can never run
code when it is loaded. A missing, truncated, damaged or mismatched folder raises :class:`WeightsError`
(or FileNotFoundError when it is absent) naming the folder and the command that rebuilds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["WeightsError", "load_pretrained"]


class WeightsError(RuntimeError):
    """A model folder exists but cannot be loaded: damaged, truncated, or made for another architecture."""


def load_pretrained(model_class: Any, folder: Path | str, what: str, fix: str) -> Any:
    """``model_class.from_pretrained(folder)`` from safetensors only; ``fix`` says how to rebuild the folder."""
    from safetensors import SafetensorError

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no {what} at {folder} (config.json is missing). {fix}")
    if not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(f"no {what} weights at {folder} (no .safetensors file). {fix}")
    try:
        return model_class.from_pretrained(folder, use_safetensors=True)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, SafetensorError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsError(
            f"the {what} at {folder} cannot be loaded: a file is damaged, truncated, or from an incompatible "
            f"version ({type(err).__name__}: {reason[:300]}). {fix}"
        ) from err
