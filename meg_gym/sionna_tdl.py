"""3GPP TR 38.901 tapped-delay-line fading drawn with NVIDIA Sionna (optional extra ``meg-gym[sionna]``).

:func:`sample_tdl_gains` is what ``ChannelConfig(fading="sionna-tdl")`` calls (see
:func:`meg_gym.channel.sample_block_gains` for the model). Sionna is imported on first use only, with torch's
global random state saved and restored around the import, and every draw comes from a private
``torch.Generator`` seeded from the caller's numpy Generator.
"""

from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from meg_gym.channel import ChannelConfig

__all__ = ["SIONNA_INSTALL_HINT", "sample_tdl_gains"]

SIONNA_INSTALL_HINT = 'pip install "meg-gym[sionna]"'


def _import_sionna() -> tuple[Any, Any, float]:
    """Import torch and Sionna's TDL lazily; returns (torch, TDL class, speed of light).

    Importing ``sionna.phy`` the first time builds Sionna's global configuration, which reseeds torch's global
    random generators; their state is saved and restored around the import so that importing Sionna does not
    change any other random stream of the program.
    """
    import sys

    if "sionna.phy" not in sys.modules and importlib.util.find_spec("sionna") is None:
        raise ImportError(
            'fading="sionna-tdl" needs NVIDIA Sionna >= 2.0 (package sionna-no-rt), which is not installed. '
            f"Install it with: {SIONNA_INSTALL_HINT}"
        )
    import torch

    cpu_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        import sionna
        import sionna.phy
        from sionna.phy import SPEED_OF_LIGHT
        from sionna.phy.channel.tr38901 import TDL
    except ImportError as exc:
        raise ImportError(
            f'fading="sionna-tdl" needs NVIDIA Sionna >= 2.0 (package sionna-no-rt), which failed to import: {exc}. '
            f"Install it with: {SIONNA_INSTALL_HINT}"
        ) from exc
    finally:
        torch.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
    version = getattr(sionna, "__version__", "0")
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        major = 0
    if major < 2:
        raise ImportError(
            f'fading="sionna-tdl" needs Sionna >= 2.0 (PyTorch backend), found {version}. '
            f"Install it with: {SIONNA_INSTALL_HINT}"
        )
    return torch, TDL, float(SPEED_OF_LIGHT)


@lru_cache(maxsize=1)
def _seeded_tdl_class() -> tuple[Any, type, float]:
    """Sionna's TDL with its random generator replaced by one passed in, so draws follow our seed only."""
    torch, tdl, speed_of_light = _import_sionna()

    class _SeededTDL(tdl):
        # Sionna objects draw from ``self.torch_rng`` (by default the global generator of ``sionna.phy.config``).
        def __init__(self, *args: Any, generator: Any, **kwargs: Any) -> None:
            self._meg_generator = generator
            super().__init__(*args, **kwargs)

        @property
        def torch_rng(self) -> Any:
            return self._meg_generator

    return torch, _SeededTDL, speed_of_light


def sample_tdl_gains(config: ChannelConfig, num_envs: int, num_blocks: int, rng: np.random.Generator) -> np.ndarray:
    torch, seeded_tdl, speed_of_light = _seeded_tdl_class()
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(rng.integers(0, 2**63 - 1)))
    speed = config.doppler_hz * speed_of_light / config.sionna_carrier_hz
    model = seeded_tdl(
        config.sionna_model,
        delay_spread=config.sionna_delay_spread_s,
        carrier_frequency=config.sionna_carrier_hz,
        min_speed=speed,
        max_speed=speed,
        precision="double",
        device="cpu",
        generator=generator,
    )
    with torch.no_grad():
        # a: [batch, num_rx=1, num_rx_ant=1, num_tx=1, num_tx_ant=1, num_paths, num_time_steps]
        a, _ = model(batch_size=num_envs, num_time_steps=num_blocks, sampling_frequency=1.0 / config.block_duration_s)
        dc_response = a.sum(dim=5)[:, 0, 0, 0, 0, :]
        total_power = float(model.mean_powers.sum())
    return dc_response.cpu().numpy().astype(np.complex128) / math.sqrt(total_power)
