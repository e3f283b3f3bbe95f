"""Explanation metrics as torchmetrics (deletion / insertion AUC, pointing game, energy in mask) and
top-1 accuracy over a loader."""

from .accuracy import accuracy, predict
from .deletion import DeletionAUC, InsertionAUC, blur, curve_auc, deletion_curve
from .energy import EnergyInMask
from .evaluate import evaluate_explanations, explain
from .pointing import PointingGame, pointing_game_hits

__all__ = [
    "DeletionAUC",
    "accuracy",
    "predict",
    "EnergyInMask",
    "InsertionAUC",
    "PointingGame",
    "blur",
    "curve_auc",
    "deletion_curve",
    "evaluate_explanations",
    "explain",
    "pointing_game_hits",
]
