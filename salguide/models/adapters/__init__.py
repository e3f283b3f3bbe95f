"""Kept for the import path the README has always shown (``salguide.models.adapters.route``): routing lives in
:mod:`salguide.attention.routing` and is exported by :mod:`salguide.attention`."""

from salguide.attention.routing import SUPPORTED, attach_router, declare_timm_layout, route, unroute

__all__ = ["SUPPORTED", "attach_router", "declare_timm_layout", "route", "unroute"]
