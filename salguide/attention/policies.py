"""Token policies: what a routed ViT does to its tokens between attention and MLP at chosen blocks.

``EViTPolicy``, ``DynamicMaskPolicy`` and ``ToMePolicy`` wrap the functional cores in evit.py,
dynamic_mask.py and tome.py. ``keep`` is the share of the current patch tokens that survives each chosen
block; it can be changed between steps (schedules). Attach with :func:`use_policy` (class-token pooled,
timm-layout models only). :func:`token_counts` gives the tokens / keys every block sees under a policy
(for FLOP counts) without running the model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import Tensor

from salguide._checks import as_ints

from .dynamic_mask import drop_masked, topk_key_mask
from .evit import evit_reorganize, fuse_mode
from .routing.router import Router, TokenState, router_of
from .schedules import check_keep
from .tome import bipartite_merge


class TokenPolicy:
    """Base: acts at ``layers`` with keep rate ``keep`` (in (0, 1])."""

    name = "policy"

    def __init__(self, layers: Sequence[int] | int, keep: float = 1.0) -> None:
        self.requested = as_ints(layers, f"{type(self).__name__} layers")
        self.layers: tuple[int, ...] = ()
        self.keep = check_keep(keep)

    def set_keep(self, keep: float) -> None:
        self.keep = check_keep(keep)

    def bind(self, router: Router) -> None:
        self.layers = router.layers(self.requested)

    def wants_cls(self, index: int) -> bool:
        return False

    def wants_keys(self, index: int) -> bool:
        return False

    def after_attention(self, index: int, x: Tensor, state: TokenState, training: bool) -> Tensor:
        return x

    def counts(self, index: int, tokens: int, keys: int, training: bool) -> tuple[int, int]:
        """(tokens, alive keys) after block ``index`` given those before it (both count the class token);
        mirrors :meth:`after_attention` on shapes only."""
        return tokens, keys


class ClsRankedPolicy(TokenPolicy):
    """Base of the policies that rank tokens by the head-mean CLS attention of the chosen blocks;
    subclasses implement ``prune(x, cls_attn, state, training)``."""

    def __init__(self, layers: Sequence[int] | int, keep: float = 0.7, **options: bool | str) -> None:
        super().__init__(layers, keep)
        self.options = options

    def wants_cls(self, index: int) -> bool:
        return index in self.layers and self.keep < 1.0

    def after_attention(self, index: int, x: Tensor, state: TokenState, training: bool) -> Tensor:
        if not self.wants_cls(index):
            return x
        assert state.cls_attn is not None
        return self.prune(x, state.cls_attn, state, training)

    def prune(self, x: Tensor, cls_attn: Tensor, state: TokenState, training: bool) -> Tensor:
        raise NotImplementedError


class EViTPolicy(ClsRankedPolicy):
    """EViT: keep the top tokens by CLS attention, fuse the rest into one token: their CLS-attention-weighted
    sum (``fuse="sum"`` or True, upstream's rule), weighted mean (``"mean"``), or drop them (``"drop"`` or
    False)."""

    name = "evit"

    def __init__(self, layers: Sequence[int] | int, keep: float = 0.7, fuse: bool | str = "sum") -> None:
        super().__init__(layers, keep, fuse=fuse_mode(fuse))

    def prune(self, x: Tensor, cls_attn: Tensor, state: TokenState, training: bool) -> Tensor:
        x, state.positions = evit_reorganize(x, cls_attn, self.keep, state.positions, self.options["fuse"])
        return x

    def counts(self, index: int, tokens: int, keys: int, training: bool) -> tuple[int, int]:
        k = math.ceil(self.keep * (tokens - 1))
        if not self.wants_cls(index) or k >= tokens - 1:
            return tokens, keys
        n = 1 + k + int(self.options["fuse"] != "drop")
        return n, n


class DynamicMaskPolicy(ClsRankedPolicy):
    """DynamicViT-style: in training, mask pruned tokens out of the keys (always-self); in eval, drop them
    (``drop_in_eval=False`` keeps masking in eval too)."""

    name = "dynamicvit"

    def __init__(self, layers: Sequence[int] | int, keep: float = 0.7, drop_in_eval: bool = True) -> None:
        super().__init__(layers, keep, drop_in_eval=drop_in_eval)

    def prune(self, x: Tensor, cls_attn: Tensor, state: TokenState, training: bool) -> Tensor:
        mask = topk_key_mask(cls_attn, self.keep, state.key_mask)
        if training or not self.options["drop_in_eval"]:
            state.key_mask = mask
            return x
        x, state.positions = drop_masked(x, mask, state.positions)
        state.key_mask = None
        return x

    def counts(self, index: int, tokens: int, keys: int, training: bool) -> tuple[int, int]:
        if not self.wants_cls(index):
            return tokens, keys
        k = 1 + math.ceil(self.keep * (keys - 1))
        return (tokens, k) if training or not self.options["drop_in_eval"] else (k, k)


class ToMePolicy(TokenPolicy):
    """ToMe: at each chosen block merge ``N_patch - ceil(keep * N_patch)`` tokens (at most half), with
    proportional attention in the blocks after it."""

    name = "tome"

    def wants_keys(self, index: int) -> bool:
        return index in self.layers and self.keep < 1.0

    def merges(self, tokens: int) -> int:
        """Tokens merged away at a chosen block with ``tokens`` tokens (class token included)."""
        n = tokens - 1
        return min(n - math.ceil(self.keep * n), (tokens + 1) // 2 - 1)

    def after_attention(self, index: int, x: Tensor, state: TokenState, training: bool) -> Tensor:
        if not self.wants_keys(index):
            return x
        assert state.keys is not None
        r = self.merges(x.shape[1])
        x, state.size, state.positions = bipartite_merge(x, state.keys.mean(1), r, state.size, state.positions)
        return x

    def counts(self, index: int, tokens: int, keys: int, training: bool) -> tuple[int, int]:
        if not self.wants_keys(index):
            return tokens, keys
        n = tokens - self.merges(tokens)
        return n, n


def token_counts(
    policy: TokenPolicy | None, num_patches: int, depth: int, training: bool
) -> list[tuple[int, int, int]]:
    """Per block: (queries, keys attended, MLP tokens), class token included, for a model with
    ``num_patches`` patch tokens and ``depth`` blocks. With DynamicViT masking in training, "keys" counts the
    keys left unmasked (a kernel that skips masked keys does only that work; the always-self key of a masked
    query is not counted). Binds ``policy`` to the layer indices of a ``depth``-block model."""
    if num_patches < 1 or depth < 1:
        raise ValueError(f"num_patches and depth must be >= 1, got {num_patches}, {depth}")
    if policy is not None:
        policy.bind(Router(depth))
    tokens = keys = num_patches + 1
    out = []
    for i in range(depth):
        q, k = tokens, keys
        if policy is not None:
            tokens, keys = policy.counts(i, tokens, keys, training)
        out.append((q, k, tokens))
    return out


def use_policy(model: Any, policy: TokenPolicy | None) -> TokenPolicy | None:
    """Attach ``policy`` to a routed model (None detaches); returns the previous policy."""
    router = router_of(model)
    if policy is not None:
        if not isinstance(policy, TokenPolicy):
            raise TypeError(f"policy must be a salguide.attention.TokenPolicy, got {type(policy).__name__}")
        if not router.supports_tokens:
            raise TypeError(
                f"{type(model).__name__}: token policies need timm's block layout (salguide's ViT or a routed timm "
                "ViT); Hugging Face models support attention statistics and losses only"
            )
        prefix = getattr(model, "num_prefix_tokens", 1)
        if prefix != 1:
            raise ValueError(f"token policies protect exactly one class token; the model has {prefix} prefix tokens")
        pool = getattr(model, "global_pool", "token")
        if pool not in ("token", None):
            raise ValueError(f"token policies need class-token pooling, the model pools with {pool!r}")
        policy.bind(router)
    previous, router.policy = router.policy, policy
    return previous
