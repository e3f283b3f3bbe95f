"""Thin Lightning callbacks over salguide's functional cores (work with ``lightning.pytorch`` and
``pytorch_lightning`` Trainers alike)."""

from .attention_loss import AttentionLossCallback
from .attention_maps import AttentionMapCallback
from .attention_masking import AttentionMaskingCallback
from .auxiliary_loss import AuxiliaryLossCallback
from .data_samples import DataSamplesCallback
from .diffusion_unlearning import DiffusionUnlearningCallback
from .explanation_metrics import ExplanationMetricsCallback
from .input_saliency import InputSaliencyCallback
from .progress import StageProgressBar
from .random_labels import RandomLabelCallback
from .saliency_overlays import SaliencyOverlayCallback
from .test_metrics import TestMetricsCallback
from .token_pruning import TokenPruningCallback
from .weight_saliency import WeightSaliencyCallback

__all__ = [
    "WeightSaliencyCallback",
    "RandomLabelCallback",
    "StageProgressBar",
    "AuxiliaryLossCallback",
    "InputSaliencyCallback",
    "ExplanationMetricsCallback",
    "SaliencyOverlayCallback",
    "AttentionLossCallback",
    "AttentionMapCallback",
    "AttentionMaskingCallback",
    "TokenPruningCallback",
    "DataSamplesCallback",
    "DiffusionUnlearningCallback",
    "TestMetricsCallback",
]
