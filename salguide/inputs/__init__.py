"""Input saliency as a training signal: differentiable saliency maps and losses on them.

Maps (graph kept, batched, model mode and parameter ``.grad`` untouched): ``input_gradient``,
``gradient_x_input``, ``smoothgrad``, ``integrated_gradients``, ``grad_cam``. Losses (loss modules
returning ``InputLossOutput``; their ``penalty`` can be added to any loss): ``RRRLoss`` (Ross et al.
2017), ``SGTLoss`` (Ismail et al. 2021), ``EnergyLoss`` (share of saliency outside the object).
"""

from ._common import check_grad_mode, preserve_buffers
from ._loss import InputLoss, InputLossOutput
from .energy import EnergyLoss, energy_in_mask
from .gradcam import grad_cam, layer_names, tokens_to_grid
from .gradients import gradient_from_logits, gradient_x_input, input_gradient
from .integrated_gradients import integrated_gradients, trapezoid_weights
from .masks import feature_mask, invert, pixel_mask, to_pixel_map
from .methods import SALIENCY_METHODS, saliency_map
from .rrr import RRRLoss, rrr_penalty
from .sgt import SGTLoss, mask_lowest, sgt_kl
from .smoothgrad import smoothgrad

__all__ = [
    "SALIENCY_METHODS",
    "EnergyLoss",
    "InputLoss",
    "InputLossOutput",
    "RRRLoss",
    "SGTLoss",
    "check_grad_mode",
    "energy_in_mask",
    "feature_mask",
    "grad_cam",
    "gradient_from_logits",
    "gradient_x_input",
    "input_gradient",
    "integrated_gradients",
    "invert",
    "layer_names",
    "mask_lowest",
    "pixel_mask",
    "preserve_buffers",
    "rrr_penalty",
    "saliency_map",
    "sgt_kl",
    "smoothgrad",
    "to_pixel_map",
    "tokens_to_grid",
    "trapezoid_weights",
]
