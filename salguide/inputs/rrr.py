"""Right for the Right Reasons (RRR) input-gradient penalty.

Ross, Hughes & Doshi-Velez, "Right for the Right Reasons: Training Differentiable Models by
Constraining their Explanations", IJCAI 2017:
    L = CE + lambda * sum_n || A_n * d/dx_n sum_k log p(k | x_n) ||^2,
with A the annotation mask of the inputs that must not matter. Here the sum over samples is a mean,
matching a mean cross-entropy, so lambda keeps the paper's ratio to the task loss.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ._common import Model, check_logits, grad_of, target_index
from ._loss import InputLoss
from .masks import feature_mask


def rrr_penalty(logits: Tensor, x: Tensor, mask: Tensor, target: Tensor | None = None) -> Tensor:
    """Mean over the batch of ``||mask * d/dx sum log p||^2`` (unweighted), differentiable.

    ``logits`` must come from ``x`` (which requires grad). ``target=None`` sums the log-probabilities of
    all classes (the paper's choice); a [B] tensor uses only log p(target | x).
    """
    where = "rrr_penalty"
    check_logits(logits, x.shape[0], where)
    if not x.requires_grad:
        raise RuntimeError(f"{where}: x must require grad and be the input the logits were computed from")
    m = feature_mask(mask, x, where)
    logp = F.log_softmax(logits, dim=-1)
    score = logp.sum(-1) if target is None else logp.gather(1, target_index(logits, target, where)[:, None])
    g = grad_of(score, x, True, where)
    return (m * g).square().flatten(1).sum(1).mean()


class RRRLoss(InputLoss):
    """``weight * rrr_penalty``; the mask marks the **irrelevant** inputs (Ross et al., IJCAI 2017).

    ``per_class="all"`` uses the sum of all log-probabilities (paper), ``"label"`` only the true class.
    """

    mask_semantics = "irrelevant"
    name = "rrr"

    def __init__(self, weight: float = 10.0, per_class: str = "all") -> None:
        super().__init__(weight)
        if per_class not in ("all", "label"):
            raise ValueError(f"RRRLoss: per_class must be 'all' or 'label', got {per_class!r}")
        self.per_class = per_class

    def _penalty(self, model: Model, x: Tensor, y: Tensor, mask: Tensor | None, logits: Tensor) -> Tensor:
        assert mask is not None
        return rrr_penalty(logits, x, mask, None if self.per_class == "all" else y)
