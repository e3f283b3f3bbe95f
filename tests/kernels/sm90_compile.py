"""Ahead-of-time compilation of the Triton kernels for an H100 (sm_90a) on a machine without a GPU.

Triton's own compiler lowers each kernel to PTX and runs the ``ptxas`` it ships, exactly as a launch
on the GPU would; ``cuobjdump`` (also shipped) reads the registers and local memory of the cubin.
Pointers get the 16-byte divisibility a ``torch.empty`` allocation has, strides are 32-bit ints."""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from itertools import product

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from salguide.kernels import triton_backward as bwd
from salguide.kernels import triton_colsum as col
from salguide.kernels import triton_forward as fwd
from salguide.kernels import triton_own as own
from salguide.kernels.triton_common import dot_precision

SM90 = GPUTarget("cuda", 90, 32)
DTYPES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
HEAD_DIMS = (32, 64, 128)

# Per kernel: pointer arguments -> (element type, the flag that makes the launcher pass a tensor
# instead of None); "io" stands for the input dtype; None as flag means always passed.
_F32, _I32, _I8 = "fp32", "i32", "i8"
POINTERS = {
    "forward": dict(
        Q=("io", None),
        K=("io", None),
        V=("io", None),
        Out=("io", None),
        Lse=(_F32, None),
        Mass=(_F32, "HAS_TARGET"),
        Bias=(_F32, "HAS_BIAS"),
        W=(_F32, "HAS_TARGET"),
        Index=(_I32, "INDEXED"),
        Count=(_I32, "INDEXED"),
    ),
    "own_forward": dict(
        Q=("io", None),
        K=("io", None),
        V=("io", None),
        Out=("io", None),
        Lse=(_F32, None),
        Mass=(_F32, "HAS_TARGET"),
        Colsum=(_F32, "HAS_COLSUM"),
        Bias=(_F32, "HAS_BIAS"),
        W=(_F32, "HAS_TARGET"),
        Own=(_I8, None),
    ),
    "delta": dict(
        Out=("io", None),
        DOut=("io", None),
        Mass=(_F32, "HAS_TARGET"),
        DMass=(_F32, "HAS_TARGET"),
        DLse=(_F32, None),
        Delta=(_F32, None),
    ),
    "dkdv": dict(
        Q=("io", None),
        K=("io", None),
        V=("io", None),
        DO=("io", None),
        DK=("io", None),
        DV=("io", None),
        Lse=(_F32, None),
        Delta=(_F32, None),
        G=(_F32, "HAS_TARGET"),
        Bias=(_F32, "HAS_BIAS"),
        W=(_F32, "HAS_TARGET"),
        DBias=(_F32, "NEED_DBIAS"),
        DW=(_F32, "NEED_DW"),
        Index=(_I32, "INDEXED"),
        Count=(_I32, "INDEXED"),
    ),
    "colsum": dict(
        Q=("io", None),
        K=("io", None),
        Lse=(_F32, None),
        Colsum=(_F32, None),
        Bias=(_F32, "HAS_BIAS"),
        Index=(_I32, "INDEXED"),
        Count=(_I32, "INDEXED"),
    ),
}
POINTERS["dq"] = {n: p for n, p in POINTERS["dkdv"].items() if n not in ("DK", "DV", "DBias", "DW")} | {
    "DQ": ("io", None)
}
POINTERS["own_backward"] = {n: p for n, p in POINTERS["dkdv"].items() if n not in ("Index", "Count")} | {
    "DQ": ("io", None), "Own": (_I8, None)}  # fmt: skip

KERNELS = {
    "forward": fwd._forward_kernel,
    "delta": bwd._delta_kernel,
    "dkdv": bwd._dkdv_kernel,
    "dq": bwd._dq_kernel,
    "colsum": col._colsum_kernel,
    "own_forward": own._own_forward_kernel,
    "own_backward": own._own_backward_kernel,
}

# Boolean options of each kernel and the combinations the launchers can produce.
FLAGS = {
    "forward": ("INDEXED", "HAS_BIAS", "HAS_TARGET"),
    "own_forward": ("HAS_BIAS", "HAS_TARGET", "HAS_COLSUM"),
    "own_backward": ("HAS_BIAS", "HAS_TARGET", "NEED_DBIAS", "NEED_DW"),
    "delta": ("HAS_TARGET",),
    "dkdv": ("INDEXED", "HAS_BIAS", "HAS_TARGET", "NEED_DBIAS", "NEED_DW"),
    "dq": ("INDEXED", "HAS_BIAS", "HAS_TARGET"),
    "colsum": ("INDEXED", "HAS_BIAS"),
}
_IMPLIES = {"NEED_DBIAS": "HAS_BIAS", "NEED_DW": "HAS_TARGET"}


def flag_combinations(kernel: str) -> list[dict[str, bool]]:
    """Every flag setting a launcher can pass (always_self needs a key list, gradients need inputs)."""
    names = FLAGS[kernel]
    out = []
    for values in product((False, True), repeat=len(names)):
        flags = dict(zip(names, values))
        if all(flags.get(need, True) for name, need in _IMPLIES.items() if flags.get(name)):
            out.append(flags)
    return out


CONFIGS = {
    "forward": fwd.FORWARD_CONFIGS,
    "delta": [bwd.DELTA_CONFIG],
    "dkdv": bwd.DKDV_CONFIGS,
    "dq": bwd.DQ_CONFIGS,
    "colsum": col.COLSUM_CONFIGS,
    "own_forward": [(own.BLOCK_M_OWN, 0, own.OWN_WARPS, 3, 128)],
    "own_backward": [(own.BLOCK_M_OWN, 0, own.OWN_WARPS, 3, 128)],
}


def autotune_configs(kernel: str) -> list[tuple[dict, int, int, int]]:
    """(meta, num_warps, num_stages, max head dim) of every autotune config (the launcher's fixed one
    for the row-wise kernels), whether or not this process runs Triton's interpreter."""
    out = []
    for m, n, w, s, max_d in CONFIGS[kernel]:
        meta = {"BLOCK_M": m, "BLOCK_N": n} if n else {"BLOCK_M": m}
        out.append((meta, w, s, max_d))
    return out


SHARED_LIMIT = 232448  # bytes of shared memory one block may use on an H100 (227 KB opt-in)


@dataclass
class Compiled:
    registers: int
    local_bytes: int  # spills and stack frames live in local memory
    shared_bytes: int = 0


def compile_sm90(kernel: str, dtype: torch.dtype, head_dim: int, flags: dict[str, bool], meta: dict,
                 num_warps: int, num_stages: int, *_) -> Compiled:  # fmt: skip
    """Compile one kernel variant for sm_90a and return its register and local-memory use."""
    fn = KERNELS[kernel]
    fn = fn.fn if isinstance(fn, triton.runtime.Autotuner) else fn
    constexprs = dict(flags, **meta, HEAD_DIM=head_dim, BLOCK_D=max(16, triton.next_power_of_2(head_dim)))
    if "PRECISION" in fn.arg_names:
        constexprs["PRECISION"] = dot_precision(dtype)
    signature, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in POINTERS[kernel]:
            elem, gate = POINTERS[kernel][name]
            if gate is None or flags[gate]:
                signature[name] = "*" + (DTYPES[dtype] if elem == "io" else elem)
                attrs[(i,)] = [["tt.divisibility", 16]]
                continue
            constexprs[name] = None
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.startswith("scale"):
            signature[name] = "fp32"
        else:
            signature[name] = "i32"
    missing = set(constexprs) - set(fn.arg_names)
    assert not missing, f"{kernel}: unknown arguments {missing}"
    src = ASTSource(fn, signature, {k: v for k, v in constexprs.items()}, attrs)
    compiled = triton.compile(src, target=SM90, options=dict(num_warps=num_warps, num_stages=num_stages))
    usage = resource_usage(compiled.asm["cubin"])
    usage.shared_bytes = int(compiled.metadata.shared)
    return usage


def resource_usage(cubin: bytes) -> Compiled:
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        report = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    fields = dict(kv.split(":", 1) for line in report.splitlines() if "REG:" in line for kv in line.split())
    return Compiled(int(fields["REG"]), int(fields["LOCAL"]) + int(fields["STACK"]))


_PLAIN_FLOAT = 1.4426950408889634


def compile_plain_global() -> None:
    """Compile a kernel that reads a plain Python float global: Triton's GPU compiler must refuse it."""
    import triton.language as tl

    @triton.jit
    def reads_global(X):
        tl.store(X, tl.load(X) * _PLAIN_FLOAT)

    triton.compile(ASTSource(reads_global, {"X": "*fp32"}), target=SM90)


CANDIDATES = [(m, n, w, s) for m in (16, 32, 64, 128) for n in (32, 64, 128) for w in (4, 8) for s in (3,)
              if m * n <= 128 * 128 and (m, n) != (16, 32)]  # fmt: skip


def _sweep_one(job: tuple) -> str:
    kernel, d, (m, n, w, s) = job
    combos = flag_combinations(kernel)
    target = {f: f in ("HAS_TARGET", "NEED_DW") for f in FLAGS[kernel]}
    cells = []
    for name, flags in (("off", combos[0]), ("mass", target), ("all", combos[-1])):
        try:
            r = compile_sm90(kernel, torch.float16, d, flags, {"BLOCK_M": m, "BLOCK_N": n}, w, s)
            cells.append(f"{name} {r.registers}/{r.local_bytes}")
        except Exception as e:
            cells.append(f"{name} error {type(e).__name__}")
    return f"| {kernel} | {d} | {m},{n},{w},{s} | " + " | ".join(cells) + " |"


def sweep(kernels: list[str]) -> None:
    """Registers / local bytes of every candidate tile config (fp16; options off, mass only, all on):
    the data behind each kernel's config list and its max head dims. Uses every core."""
    from multiprocessing import get_context

    jobs = [(k, d, c) for k in kernels or ["forward", "dkdv", "dq", "colsum"] for d in HEAD_DIMS for c in CANDIDATES]
    print("| kernel | D | M,N,warps,stages | options off | mass | all options |\n|---|---|---|---|---|---|", flush=True)
    with get_context("spawn").Pool() as pool:
        for line in pool.imap(_sweep_one, jobs):
            print(line, flush=True)


def main() -> None:
    """Worker: read a JSON list of cases [kernel, dtype, head_dim, {flag: bool}, meta, warps, stages]
    on stdin, print [[registers, local_bytes, shared_bytes] or error text, ...] as JSON. Run with TRITON_INTERPRET=0:
    the interpreter replaces @triton.jit functions by Python ones that cannot be compiled."""
    import json
    import sys

    if sys.argv[1:] == ["--plain-global"]:
        compile_plain_global()
        return
    if sys.argv[1:2] == ["--sweep"]:
        sweep(sys.argv[2:])
        return
    dtypes = {v: k for k, v in DTYPES.items()}
    out = []
    for kernel, dtype, d, flags, meta, warps, stages in json.load(sys.stdin):
        try:
            r = compile_sm90(kernel, dtypes[dtype], d, flags, meta, warps, stages)
            out.append([r.registers, r.local_bytes, r.shared_bytes])
        except Exception as e:  # reported per case by the test
            out.append(f"{type(e).__name__}: {e}"[:2000])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
