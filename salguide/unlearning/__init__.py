"""Machine unlearning: methods as data (Retrain, FT, GA, RL, l1-sparse, SalUn), random-label mixing, SalUn's
metrics and result tables. Running a method (Lightning Trainers) is orchestration: ``salguide.pipelines.fit.unlearn``."""

from .methods import METHODS, MethodSpec, method_spec
from .metrics import accuracy, avg_gap, mia_efficacy, unlearning_metrics
from .report import aggregate, format_aggregate, format_table, write_results

__all__ = [
    "METHODS",
    "MethodSpec",
    "method_spec",
    "accuracy",
    "mia_efficacy",
    "unlearning_metrics",
    "avg_gap",
    "format_table",
    "write_results",
    "aggregate",
    "format_aggregate",
]
