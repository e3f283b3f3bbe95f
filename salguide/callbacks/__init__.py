"""Thin Lightning callbacks over salguide's functional cores (work with ``lightning.pytorch`` and
``pytorch_lightning`` Trainers alike)."""

from .random_labels import RandomLabelCallback
from .weight_saliency import WeightSaliencyCallback

__all__ = ["WeightSaliencyCallback", "RandomLabelCallback"]
