"""Hydra configs shipped with salguide (root: train.yaml), the resolvers they use, and their checks.

Resolvers (registered on import; ``salguide.train`` imports this package before Hydra composes):

- ``${salguide.run_tag:}``: ``p<pid>-<4 hex digits>``, fixed for one composed config. With the
  microseconds of ``${now:}`` it makes run folders unique, so two runs started in the same second never
  share one.
- ``${salguide.folder:${name}}``: ``name`` if it is a relative folder name without ``..``, else an error,
  so ``name=../../x`` cannot write outside ``paths.log_dir``.
"""

from __future__ import annotations

import os
import secrets

from omegaconf import OmegaConf

from .checks import check_config, check_name


def _run_tag() -> str:
    return f"p{os.getpid()}-{secrets.token_hex(2)}"


def register_resolvers() -> None:
    """Register salguide's resolvers once (use_cache: a config resolves each to one value, as ``now``)."""
    if not OmegaConf.has_resolver("salguide.run_tag"):
        OmegaConf.register_new_resolver("salguide.run_tag", _run_tag, use_cache=True)
    if not OmegaConf.has_resolver("salguide.folder"):
        OmegaConf.register_new_resolver("salguide.folder", check_name)


register_resolvers()

__all__ = ["check_config", "check_name", "register_resolvers"]
