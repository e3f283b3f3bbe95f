"""Check one Triton tile config per kernel on the GPU: correctness against the dense reference at a
benchmark shape, and the kernels' forward + backward time. Run each config in its own process
(a CUDA fault is sticky): ``SALGUIDE_TRITON_CONFIG_FORWARD=2 python benchmarks/gpu/tile_check.py``."""

from __future__ import annotations

import os
import sys

import torch
import triton.testing

from salguide.kernels import attention_reference, attention_stats

B, H, N, D = (int(x) for x in (sys.argv[1:] or ["16", "12", "197", "64"]))
torch.manual_seed(0)
q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
w = torch.rand(B, N, device="cuda", requires_grad=True)
index = torch.rand(B, N, device="cuda").argsort(1)[:, : N // 2].sort(1).values
tag = " ".join(f"{k[len('SALGUIDE_TRITON_CONFIG_'):]}={v}" for k, v in os.environ.items()
               if k.startswith("SALGUIDE_TRITON_CONFIG_"))  # fmt: skip
for keys in ({}, {"key_index": index}):
    grads = []
    for fn in (lambda keys=keys: attention_stats(q, k, v, target=w, backend="triton", validate=False, **keys),
               lambda keys=keys: attention_reference(q.float(), k.float(), v.float(), target=w, **keys)):  # fmt: skip
        r = fn()
        g = torch.autograd.grad([r.out.float().sum(), r.mass.sum()], [q, k, v, w])
        grads.append([r.out.float(), r.mass] + [x.float() for x in g])
    err = max(((a - b).abs().max() / (b.abs().max() + 1e-6)).item() for a, b in zip(*grads))

    def step(keys=keys):
        r = attention_stats(q, k, v, target=w, backend="triton", validate=False, **keys)
        torch.autograd.grad([r.out.float().sum(), r.mass.sum()], [q, k, v, w])

    ms = triton.testing.do_bench(step, warmup=5, rep=50, return_mode="median")
    print(f"{tag} {'index' if keys else 'dense'} ({B},{H},{N},{D}) max rel err {err:.2e} ms {ms:.3f}", flush=True)
