"""Weight saliency: which weights may change (SalUn, Fan et al. ICLR 2024; ANT).

Functional core: ``saliency_scores`` -> ``WeightMask`` -> masked update. The Lightning side lives in
``salguide.callbacks.WeightSaliencyCallback``.
"""

from .ant import ant_mask, ant_scores
from .mask import WeightMask
from .masked_update import MaskedUpdate, mask_gradients_, mask_optimizer_state_, restore_frozen_, snapshot_frozen
from .scores import saliency_scores
from .select import topk_mask

__all__ = [
    "saliency_scores",
    "WeightMask",
    "topk_mask",
    "ant_scores",
    "ant_mask",
    "MaskedUpdate",
    "snapshot_frozen",
    "mask_gradients_",
    "restore_frozen_",
    "mask_optimizer_state_",
]
