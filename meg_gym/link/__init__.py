"""The shared link core every MEG environment builds on.

- :mod:`meg_gym.link.receiver`: the UE side (cache rows, codec, VAE, reference images, scoring), shared per
  process and configuration.
- :mod:`meg_gym.link.transmission`: seeds laid out over fading blocks, the batched single link (gains, energy,
  transmit and equalise, finish) and the decode at an episode's end.
- :mod:`meg_gym.link.rewards`: the info metrics and the table of rewards made from them.
- :mod:`meg_gym.link.vector`: action validation, Gymnasium's masked info layout and its merge, argument checks.

The channel arithmetic is :mod:`meg_gym.channel`'s and the energy accounting :mod:`meg_gym.energy`'s. Nothing
here imports torch until a receiver is built, so ``import meg_gym.link`` stays light.
"""

from meg_gym.link.receiver import Receiver, receiver_for
from meg_gym.link.rewards import DEFAULT_INFO_METRICS, IMAGE_METRICS, INFO_METRICS, REWARDS, Reward, metrics_to_compute
from meg_gym.link.transmission import BatchedLink, EpisodeEnd, SeedBlocks, decode_episodes
from meg_gym.link.vector import (
    SNR_DB_RANGE,
    check_num_envs,
    check_render_mode,
    merge_infos,
    parse_autoreset_mode,
    power_fractions,
    reset_generators,
    scalar_info,
    with_masks,
)

__all__ = [
    "DEFAULT_INFO_METRICS",
    "IMAGE_METRICS",
    "INFO_METRICS",
    "REWARDS",
    "SNR_DB_RANGE",
    "BatchedLink",
    "EpisodeEnd",
    "Receiver",
    "Reward",
    "SeedBlocks",
    "check_num_envs",
    "check_render_mode",
    "decode_episodes",
    "merge_infos",
    "metrics_to_compute",
    "parse_autoreset_mode",
    "power_fractions",
    "receiver_for",
    "reset_generators",
    "scalar_info",
    "with_masks",
]
