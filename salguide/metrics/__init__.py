"""Explanation metrics as torchmetrics: deletion / insertion AUC, pointing game, energy in mask."""

from .deletion import DeletionAUC, InsertionAUC, blur, curve_auc, deletion_curve
from .energy import EnergyInMask
from .evaluate import evaluate_explanations, explain
from .pointing import PointingGame, pointing_game_hits

__all__ = [
    "DeletionAUC", "EnergyInMask", "InsertionAUC", "PointingGame", "blur", "curve_auc", "deletion_curve",
    "evaluate_explanations", "explain",
    "pointing_game_hits",
]
