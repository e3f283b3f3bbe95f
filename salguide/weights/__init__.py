"""Weight saliency: which weights may change (SalUn, Fan et al. ICLR 2024; ANT).

Functional core: ``saliency_scores`` -> ``WeightMask`` -> masked update; ``salun_mask`` and ``ant_mask`` build a
mask in one call (``factory(model, forget_loader, ratio, ...)``: the ``saliency`` config group). The Lightning side
lives in ``salguide.callbacks.WeightSaliencyCallback``.
"""

from .ant import ant_mask, ant_scores, gaussian_noise
from .mask import WeightMask
from .masked_update import MaskedUpdate, mask_gradients_, mask_optimizer_state_, restore_frozen_, snapshot_frozen
from .salun import salun_mask
from .scores import saliency_scores
from .select import topk_mask

__all__ = [
    "saliency_scores",
    "salun_mask",
    "WeightMask",
    "topk_mask",
    "ant_scores",
    "ant_mask",
    "gaussian_noise",
    "MaskedUpdate",
    "snapshot_frozen",
    "mask_gradients_",
    "restore_frozen_",
    "mask_optimizer_state_",
]
