"""Where the time of an attention call (or of a pruned ViT training step) goes on a GPU: host time to
enqueue one step (no sync), device time of one step, and the torch profiler's top operators.

    python benchmarks/attention_profile.py --what attention   # public call vs kernels only, N = 197
    python benchmarks/attention_profile.py --what vit         # ViT-S/16 train step, no policy vs EViT 0.7

The attention benchmark (benchmarks/attention.py) says how far the public call is from the kernels;
this says which host or device operations make up the difference.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from attention import Inputs, kernels_only, make_inputs, ours  # noqa: E402  (benchmarks/ is the script dir)
from torch.profiler import ProfilerActivity, profile


def backward_step(fn: Callable[[], list[torch.Tensor]], x: Inputs) -> Callable[[], None]:
    def step() -> None:
        for t in x.leaves:
            t.grad = None
        outs = fn()
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])

    return step


def timings(step: Callable[[], None], n: int = 50) -> tuple[float, float]:
    """(host ms to enqueue one step, wall ms of one step with the device) as medians over ``n``."""
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    host, wall = [], []
    for _ in range(n):
        torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        host.append(time.perf_counter() - start)
        torch.cuda.synchronize()
        wall.append(time.perf_counter() - start)
    host.sort(), wall.sort()
    return 1e3 * host[n // 2], 1e3 * wall[n // 2]


def report(name: str, step: Callable[[], None], rows: int) -> None:
    host, wall = timings(step)
    print(f"\n### {name}: host enqueue {host:.3f} ms, wall {wall:.3f} ms per step", flush=True)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            step()
        torch.cuda.synchronize()
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=rows), flush=True)
    print(averages.table(sort_by="self_device_time_total", row_limit=rows), flush=True)


def attention_steps(shape: tuple[int, int, int, int]) -> dict[str, Callable[[], None]]:
    x = make_inputs(shape, 1.0, torch.bfloat16, "cuda")
    return {
        "public triton + mass": backward_step(lambda: ours(x, target=x.w, backend="triton"), x),
        "public triton, no mass": backward_step(lambda: ours(x, backend="triton"), x),
        "kernels only + mass": kernels_only(x),
        "SDPA flash": backward_step(lambda: [torch.nn.functional.scaled_dot_product_attention(x.q, x.k, x.v)], x),
    }


def vit_steps(batch: int) -> dict[str, Callable[[], None]]:
    from token_pruning import MODELS

    from salguide.attention import EViTPolicy, router_of, use_policy

    make, shape, layers = MODELS["vit_s16"]
    model = make().cuda()
    router_of(model).validate = False
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, *shape, device="cuda")
    y = torch.randint(0, 10, (batch,), device="cuda")

    def train(policy) -> Callable[[], None]:
        def step() -> None:
            use_policy(model, policy)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    return {"ViT-S/16 train, no policy": train(None), "ViT-S/16 train, EViT 0.7": train(EViTPolicy(layers, 0.7))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", choices=["attention", "vit"], default="attention")
    ap.add_argument("--shape", default="128,12,197,64", help="B,H,N,D for --what attention")
    ap.add_argument("--batch", type=int, default=128, help="images per step for --what vit")
    ap.add_argument("--rows", type=int, default=18, help="profiler rows per table")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        ap.error("needs a CUDA device")
    print(f"Device: {torch.cuda.get_device_name()}; torch {torch.__version__}")
    shape = tuple(int(s) for s in args.shape.split(","))
    steps = attention_steps(shape) if args.what == "attention" else vit_steps(args.batch)  # type: ignore[arg-type]
    for name, step in steps.items():
        report(name, step, args.rows)


if __name__ == "__main__":
    main()
