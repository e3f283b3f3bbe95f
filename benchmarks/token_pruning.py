"""Training and inference throughput of a routed ViT with EViT, DynamicViT-style masking and ToMe.

    python benchmarks/token_pruning.py --threads 1                       # digits ViT on CPU (64 tokens + CLS)
    python benchmarks/token_pruning.py --model fashion_mnist --threads 1 # prune_fashion_mnist_* ViT (196 + CLS)
    python benchmarks/token_pruning.py --model vit_s16 --device cuda --dtype bf16 --batch 128 \
        --output experiments/token_pruning/gpu.md                        # ViT-S/16 sizes, random data, GPU

Images/s for a training step (forward + backward + AdamW step, model in train mode: DynamicViT masks keys)
and for inference (eval mode, no grad: DynamicViT drops tokens), at keep 1.0, 0.7, 0.5. Ratios are to the
unpruned model measured in the same run. Goals: >= 1.3x training throughput on CPU, >= 1.4x on GPU, at
keep 0.7. All three policies act at the same blocks with the same keep rate, so they keep the same
number of tokens (EViT: +1 fused token). DynamicViT-style masking skips only masked keys in training (the
torch backend gathers the kept keys, the Triton kernel skips masked key blocks): every query and MLP still
runs, and :func:`flops` gives that analytic bound. Each ratio is the median of ``--repeats`` paired runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from salguide.attention import DynamicMaskPolicy, EViTPolicy, ToMePolicy, router_of, use_policy
from salguide.attention.policies import TokenPolicy, token_counts
from salguide.io import atomic_write_json, atomic_write_text
from salguide.models.vit import VisionTransformer, vit_digits, vit_small_patch16
from salguide.studies import throughput_table

MODELS = {  # model, image shape, blocks where every policy acts
    "digits": (lambda: vit_digits(), (1, 32, 32), [1, 2]),
    "vit_s16": (lambda: vit_small_patch16(), (3, 224, 224), [3, 6, 9]),
    # the prune_fashion_mnist_* presets' ViT: 28 px, patch 2 (196 tokens + CLS), width 64, depth 4
    "fashion_mnist": (lambda: VisionTransformer(img_size=28, patch_size=2, in_chans=1), (1, 28, 28), [1, 2]),
}
POLICIES = {"evit": EViTPolicy, "dynamicvit": DynamicMaskPolicy, "tome": ToMePolicy}


def flops(model: torch.nn.Module, policy: TokenPolicy | None, training: bool) -> int:
    """Forward FLOPs per image (2 per multiply-add; matmuls only: patch embedding, qkv, q.k, p.v, proj,
    MLP, head) under ``policy`` in train or eval mode. A training step costs ~3x this, so ratios carry
    over. Keys are those a key-skipping kernel visits (DynamicViT masking in training: the unmasked ones)."""
    C, depth = model.embed_dim, len(model.blocks)
    hidden = model.blocks[0].mlp.fc1.out_features
    pe = model.patch_embed
    total = 2 * pe.num_patches * pe.proj.weight[0].numel() * C + 2 * C * model.num_classes
    for q, k, m in token_counts(policy, pe.num_patches, depth, training):
        total += 2 * q * C * 3 * C + 2 * 2 * q * k * C + 2 * q * C * C + 2 * 2 * m * C * hidden
    return total


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def throughput(
    model: torch.nn.Module,
    shape: tuple,
    batch: int,
    device: str,
    dtype: torch.dtype,
    train: bool,
    steps: int,
    warmup: int,
    label: str | None = None,
) -> float:
    """Images per second of a training step (train=True) or an inference forward. With ``label``, the
    first warm-up step's time (where torch.compile compiles) is printed as soon as it is known."""
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4) if train else None
    model.train(train)
    auto = torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)

    def step() -> None:
        if train:
            with auto:
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
            loss.backward()
            opt.step()  # type: ignore[union-attr]
            opt.zero_grad(set_to_none=True)  # type: ignore[union-attr]
        else:
            with torch.no_grad(), auto:
                model(x)

    start = time.perf_counter()
    for i in range(warmup):
        step()
        if i == 0 and label is not None:
            _sync(device)
            print(f"{label}: first step {time.perf_counter() - start:.1f} s", flush=True)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch * steps / (time.perf_counter() - start)


def run(
    model_name: str,
    device: str,
    dtype: torch.dtype,
    batch: int,
    steps: int,
    warmup: int,
    keeps: tuple[float, ...] = (1.0, 0.7, 0.5),
    repeats: int = 3,
    policies: tuple[str, ...] = tuple(POLICIES),
    compile: bool | str = False,
    modes: tuple[str, ...] = ("train", "infer"),
) -> list[dict]:
    """One row per (policy, keep). Each pruned measurement is paired with a measurement of the unpruned
    model taken just before it, ``repeats`` times; the ratio is the median of the paired ratios (robust
    to a shared machine's drift), the images/s the median of the pruned runs. ``compile``: False, True
    (torch.compile's default mode) or a mode name such as ``"reduce-overhead"`` (CUDA graphs). ``modes``:
    which of training ("train") and inference ("infer") to time; each row is printed as it is measured."""
    make, shape, layers = MODELS[model_name]
    torch.manual_seed(0)
    model = make().to(device)
    router_of(model).validate = False  # no per-layer NaN check (a device sync) in a timing loop
    if compile:  # one graph per (policy, mode), compiled in the warm-up steps; the router stays reachable
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        model = torch.compile(model, mode=None if compile is True else compile)
    rows = []
    base_flops = flops(model, None, True)

    compiled: set[tuple[str, bool]] = set()

    def measure(policy: TokenPolicy | None, train: bool) -> float:
        use_policy(model, policy)
        key = ("unpruned" if policy is None else f"{type(policy).__name__}(keep={policy.keep})", train)
        label = f"compile {key[0]} {'train' if train else 'infer'}" if compile and key not in compiled else None
        compiled.add(key)
        return throughput(model, shape, batch, device, dtype, train, steps, warmup, label)

    trains = [m == "train" for m in modes]
    base = {train: measure(None, train) for train in trains}
    for name in policies:
        cls = POLICIES[name]
        for keep in keeps:
            policy = cls(layers, keep)
            use_policy(model, policy)
            row = {
                "policy": name,
                "keep": keep,
                "tokens": [
                    m for _, _, m in token_counts(policy, model.patch_embed.num_patches, len(model.blocks), False)
                ],
            }
            for train in trains:
                key = "train" if train else "infer"
                if keep == 1.0:
                    ips, ratio = base[train], 1.0
                else:
                    pairs = [(measure(None, train), measure(policy, train)) for _ in range(repeats)]
                    ips = statistics.median(p for _, p in pairs)
                    ratio = statistics.median(p / b for b, p in pairs)
                row[f"{key}_img_s"], row[f"{key}_ratio"] = ips, ratio
                row[f"{key}_flop_ratio"] = base_flops / flops(model, policy, train)
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
            rows.append(row)
    use_policy(model, None)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description="token pruning throughput")
    ap.add_argument("--model", choices=sorted(MODELS), default="digits")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="paired (unpruned, pruned) measurements per row")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--policies", nargs="+", choices=sorted(POLICIES), default=list(POLICIES))
    ap.add_argument("--keeps", nargs="+", type=float, default=[1.0, 0.7, 0.5])
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (baseline and pruned alike)")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. reduce-overhead (implies --compile)")
    ap.add_argument("--modes", nargs="+", choices=["train", "infer"], default=["train", "infer"])
    ap.add_argument("--output", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows (and the run's settings) as JSON")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[a.dtype]
    for keep in a.keeps:
        if not 0 < keep <= 1:
            ap.error(f"--keeps: each keep rate must be in (0, 1], got {keep}")
    rows = run(
        a.model,
        a.device,
        dtype,
        a.batch,
        a.steps,
        a.warmup,
        tuple(a.keeps),
        a.repeats,
        tuple(a.policies),
        a.compile_mode or a.compile,
        tuple(a.modes),
    )
    dev = torch.cuda.get_device_name() if a.device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    compiled = f", torch.compile {a.compile_mode or 'default'}" if a.compile or a.compile_mode else ""
    text = throughput_table(
        rows,
        f"Token pruning throughput: {a.model}{compiled}, batch {a.batch}, {a.dtype}, {dev}, torch {torch.__version__}",
    )
    print(text)
    if a.output:
        atomic_write_text(a.output, text)
    if a.json:
        settings = {
            k: getattr(a, k) for k in ("model", "device", "dtype", "batch", "steps", "warmup", "repeats", "compile")
        }
        atomic_write_json(a.json, {**settings, "device_name": dev, "torch": torch.__version__, "rows": rows})


if __name__ == "__main__":
    main()
