"""The MEG-Shapes domain classifier: the judge of prompt faithfulness and the feature space of the FID-style
distance.

For each of the nine grid cells it predicts whether an object is there, and the object's shape, colour
and size. Its 256-d penultimate activations are the features for the Frechet distance. It is a diffusers
``ModelMixin``, so ``save_pretrained`` / ``from_pretrained`` use safetensors and a JSON config.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from meg_gym.generation import shapes

HEADS = {"present": 2, "shape": len(shapes.SHAPES), "colour": len(shapes.COLOUR_NAMES), "size": len(shapes.SIZE_NAMES)}


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ShapesClassifier(ModelMixin, ConfigMixin):
    """Per-cell attribute classifier for 64x64 MEG-Shapes images in [-1, 1] (NCHW)."""

    @register_to_config
    def __init__(self, width: int = 32, feature_dim: int = 256, num_cells: int = len(shapes.POSITIONS)):
        super().__init__()
        w = width
        self.backbone = nn.Sequential(
            _conv(3, w), _conv(w, w, 2),  # 32x32
            _conv(w, 2 * w), _conv(2 * w, 2 * w, 2),  # 16x16
            _conv(2 * w, 4 * w), _conv(4 * w, 4 * w, 2),  # 8x8
            nn.Conv2d(4 * w, 32, 1),
            nn.Flatten(),
            nn.Linear(32 * 8 * 8, feature_dim),
            nn.ReLU(inplace=True),
        )  # fmt: skip
        self.num_cells = num_cells
        self.head = nn.Linear(feature_dim, num_cells * sum(HEADS.values()))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate activations, (N, feature_dim): the space of the FID-style distance."""
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per head, each of shape (N, num_cells, classes)."""
        out = self.head(self.features(images)).view(len(images), self.num_cells, -1)
        logits, start = {}, 0
        for name, classes in HEADS.items():
            logits[name] = out[..., start : start + classes]
            start += classes
        return logits

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Predicted class index per head and cell, each (N, num_cells)."""
        parts = [self(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        return {name: torch.cat([p[name] for p in parts]).argmax(-1) for name in HEADS}


def load_classifier(path: Path | str | None = None, device="cpu") -> ShapesClassifier:
    """The shipped classifier (or one saved at ``path``), in eval mode."""
    from meg_gym.generation.embedded import CLASSIFIER_DIR
    from meg_gym.weights import load_pretrained

    folder = Path(path) if path is not None else CLASSIFIER_DIR
    fix = "Reinstall meg-gym, or rebuild it with `python scripts/train_classifier.py`."
    return load_pretrained(ShapesClassifier, folder, "domain classifier", fix).to(device).eval()
