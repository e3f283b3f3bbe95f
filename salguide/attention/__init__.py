"""Attention as a training signal for ViTs routed through salguide.kernels.

Statistics (``AttentionRecorder``: CLS row, mass on a target map, column sums, lse, entropy; no N x N on
the kernel path), losses (concentration, background suppression, entropy, diversity), attention-guided
masking (AttMask, ACMIL top-K, random) and token policies (EViT, DynamicViT-style masking, ToMe).
Route a model with ``route(model)`` (``routing/``: router, adapters for timm-layout and Hugging Face ViTs) or
build ``salguide.models.VisionTransformer``.
"""

from .dynamic_mask import drop_masked, topk_key_mask
from .evit import evit_reorganize
from .loss_modules import (
    AttentionDiversityLoss,
    AttentionEntropyLoss,
    AttentionLoss,
    BackgroundSuppressionLoss,
    ConcentrationLoss,
)
from .losses import background_mass_loss, concentration_loss, concentration_loss_all, diversity_loss, entropy_loss
from .policies import (
    DynamicMaskPolicy,
    EViTPolicy,
    TokenPolicy,
    ToMePolicy,
    token_counts,
    use_policy,
)
from .recorder import AttentionRecorder
from .routing import Router, TokenState, declare_timm_layout, find_routed, route, router_of, unroute
from .schedules import Schedule, check_keep, keep_schedule
from .stats import AttentionStats, attention_rows, attention_with_entropy, cls_attention
from .targets import gaussian_from_boxes, gaussian_from_points, mask_boxes, token_grid, token_target, with_cls
from .tome import bipartite_merge

__all__ = [
    "AttentionDiversityLoss",
    "AttentionEntropyLoss",
    "AttentionLoss",
    "AttentionRecorder",
    "AttentionStats",
    "BackgroundSuppressionLoss",
    "ConcentrationLoss",
    "DynamicMaskPolicy",
    "EViTPolicy",
    "Router",
    "Schedule",
    "ToMePolicy",
    "TokenPolicy",
    "TokenState",
    "attention_rows",
    "attention_with_entropy",
    "background_mass_loss",
    "bipartite_merge",
    "check_keep",
    "cls_attention",
    "concentration_loss",
    "concentration_loss_all",
    "declare_timm_layout",
    "diversity_loss",
    "drop_masked",
    "entropy_loss",
    "evit_reorganize",
    "find_routed",
    "gaussian_from_boxes",
    "gaussian_from_points",
    "keep_schedule",
    "mask_boxes",
    "route",
    "router_of",
    "token_counts",
    "token_grid",
    "token_target",
    "topk_key_mask",
    "unroute",
    "use_policy",
    "with_cls",
]
