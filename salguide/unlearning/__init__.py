"""Machine unlearning: methods (Retrain, FT, GA, RL, l1-sparse, SalUn), a runner, and SalUn's metrics."""

from .methods import METHODS, MethodSpec, method_spec
from .metrics import accuracy, avg_gap, mia_efficacy, unlearning_metrics
from .report import aggregate, format_aggregate, format_table, write_results
from .run import UnlearnResult, train_original, unlearn

__all__ = [
    "METHODS",
    "MethodSpec",
    "method_spec",
    "unlearn",
    "train_original",
    "UnlearnResult",
    "accuracy",
    "mia_efficacy",
    "unlearning_metrics",
    "avg_gap",
    "format_table",
    "write_results",
    "aggregate",
    "format_aggregate",
]
