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
from salguide.kernels.triton_common import dot_precision

SM90 = GPUTarget("cuda", 90, 32)
DTYPES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
HEAD_DIMS = (32, 64, 128)

# Per kernel: pointer arguments -> (element type, the flag that makes the launcher pass a tensor
# instead of None); "io" stands for the input dtype; None as flag means always passed.
_F32, _I32, _I8 = "fp32", "i32", "i8"
POINTERS = {
    "forward": dict(Q=("io", None), K=("io", None), V=("io", None), Out=("io", None), Lse=(_F32, None),
                    Mass=(_F32, "HAS_TARGET"), Colsum=(_F32, "OWN_COLSUM"), Bias=(_F32, "HAS_BIAS"),
                    W=(_F32, "HAS_TARGET"), Index=(_I32, "INDEXED"), Count=(_I32, "INDEXED"), Own=(_I8, "HAS_OWN")),
    "delta": dict(Out=("io", None), DOut=("io", None), Mass=(_F32, "HAS_TARGET"), DMass=(_F32, "HAS_TARGET"),
                  DLse=(_F32, None), Delta=(_F32, None)),
    "dkdv": dict(Q=("io", None), K=("io", None), V=("io", None), DO=("io", None), DK=("io", None),
                 DV=("io", None), Lse=(_F32, None), Delta=(_F32, None), G=(_F32, "HAS_TARGET"),
                 Bias=(_F32, "HAS_BIAS"), W=(_F32, "HAS_TARGET"), DBias=(_F32, "NEED_DBIAS"),
                 DW=(_F32, "NEED_DW"), Index=(_I32, "INDEXED"), Count=(_I32, "INDEXED")),
    "colsum": dict(Q=("io", None), K=("io", None), Lse=(_F32, None), Colsum=(_F32, None),
                   Bias=(_F32, "HAS_BIAS"), Index=(_I32, "INDEXED"), Count=(_I32, "INDEXED")),
}
POINTERS["dq"] = dict(POINTERS["dkdv"], DQ=("io", None), Own=(_I8, "HAS_OWN"))

KERNELS = {
    "forward": fwd._forward_kernel,
    "delta": bwd._delta_kernel,
    "dkdv": bwd._dkdv_kernel,
    "dq": bwd._dq_kernel,
    "colsum": col._colsum_kernel,
}

# Boolean options of each kernel and the combinations the launchers can produce.
FLAGS = {
    "forward": ("INDEXED", "HAS_BIAS", "HAS_TARGET", "HAS_OWN", "OWN_COLSUM"),
    "delta": ("HAS_TARGET",),
    "dkdv": ("INDEXED", "HAS_BIAS", "HAS_TARGET", "NEED_DBIAS", "NEED_DW"),
    "dq": ("INDEXED", "HAS_BIAS", "HAS_TARGET", "HAS_OWN", "NEED_DBIAS", "NEED_DW"),
    "colsum": ("INDEXED", "HAS_BIAS"),
}
_IMPLIES = {"HAS_OWN": "INDEXED", "OWN_COLSUM": "HAS_OWN", "NEED_DBIAS": "HAS_BIAS", "NEED_DW": "HAS_TARGET"}


def flag_combinations(kernel: str) -> list[dict[str, bool]]:
    """Every flag setting a launcher can pass (always_self needs a key list, gradients need inputs)."""
    names = FLAGS[kernel]
    out = []
    for values in product((False, True), repeat=len(names)):
        flags = dict(zip(names, values))
        if all(flags.get(need, True) for name, need in _IMPLIES.items() if flags.get(name)):
            out.append(flags)
    return out


def autotune_configs(kernel: str) -> list[tuple[dict, int, int]]:
    """(meta, num_warps, num_stages) of every autotune config, or the launcher's fixed one."""
    k = KERNELS[kernel]
    if isinstance(k, triton.runtime.Autotuner):
        return [(dict(c.kwargs), c.num_warps, c.num_stages) for c in k.configs]
    return [({"BLOCK_M": 64}, 4, 3)]  # _delta_kernel: the launcher's BLOCK_M=64, Triton's default warps/stages


@dataclass
class Compiled:
    registers: int
    local_bytes: int  # spills and stack frames live in local memory


def compile_sm90(kernel: str, dtype: torch.dtype, head_dim: int, flags: dict[str, bool], meta: dict,
                 num_warps: int, num_stages: int) -> Compiled:  # fmt: skip
    """Compile one kernel variant for sm_90a and return its register and local-memory use."""
    fn = KERNELS[kernel]
    fn = getattr(fn, "fn", fn)
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
    return resource_usage(compiled.asm["cubin"])


def resource_usage(cubin: bytes) -> Compiled:
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        report = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    fields = dict(kv.split(":", 1) for line in report.splitlines() if "REG:" in line for kv in line.split())
    return Compiled(int(fields["REG"]), int(fields["LOCAL"]) + int(fields["STACK"]))
