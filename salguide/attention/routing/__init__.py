"""Routing: the attention of a ViT runs through salguide.kernels, so recorders, losses and token policies
can act on it.

- ``router.py``: the per-model :class:`Router` (layer indices, active recorder and token policy, per-forward
  token state), ``attach_router`` / ``unroute`` / ``router_of`` / ``find_routed``;
- ``routed.py``: ``routed_attention``, the one attention computation every routed layer runs;
- ``adapters.py``: ``route(model)`` for existing models, over ``timm_layout.py`` (timm's block layout, also
  salguide's own ViT) and ``hf.py`` (Hugging Face ViTs, imported only when needed: it imports transformers);
- ``proof.py``: the allow-lists and the numeric check that decide what ``route()`` accepts.
"""

from .adapters import SUPPORTED, route
from .proof import declare_timm_layout
from .routed import layer_target, routed_attention
from .router import Router, TokenState, attach_router, find_routed, router_of, unroute

__all__ = [
    "SUPPORTED",
    "Router",
    "TokenState",
    "attach_router",
    "declare_timm_layout",
    "find_routed",
    "layer_target",
    "route",
    "routed_attention",
    "router_of",
    "unroute",
]
