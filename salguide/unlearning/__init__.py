"""Machine unlearning: methods as data (Retrain, FT, GA, RL, l1-sparse, SalUn; the ``unlearning`` config group), random-label mixing, SalUn's
metrics and result tables. Running a method (Lightning Trainers) is orchestration: ``salguide.pipelines.fit.unlearn``."""

from .methods import MethodSpec, method_names, method_spec
from .metrics import accuracy, avg_gap, mia_efficacy, unlearning_metrics
from .report import aggregate, format_aggregate, format_table, write_results

__all__ = [
    "MethodSpec",
    "method_spec",
    "method_names",
    "accuracy",
    "mia_efficacy",
    "unlearning_metrics",
    "avg_gap",
    "format_table",
    "write_results",
    "aggregate",
    "format_aggregate",
]
