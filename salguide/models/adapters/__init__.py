"""Route the attention of existing ViTs (timm layout, Hugging Face transformers) through salguide.kernels."""

from .proof import declare_timm_layout
from .route import SUPPORTED, attach_router, route, unroute

__all__ = ["SUPPORTED", "attach_router", "declare_timm_layout", "route", "unroute"]
