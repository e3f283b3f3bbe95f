"""Every Triton kernel compiles for an H100 (sm_90a) on this CPU-only machine, with no register spills
for fp16 / bf16 (local memory 0) in every autotune config that the launcher can select at that head dim,
and within the H100's shared memory (with a 3% margin: Triton 3.6 allocated 2% more than 3.9 for the
same fp32 tile) in every config that ``SALGUIDE_TRITON_AUTOTUNE=0`` picks. Autotuning itself skips a
config that runs out of shared memory, so the other fp32 configs may exceed it.

Triton's interpreter runs kernels as Python, so it cannot catch what only the GPU compiler rejects
(a non-constexpr global read inside @triton.jit code, say) or register spills. Triton's own
compiler and the ptxas it ships can, without a GPU.

CI runs a covering matrix: every kernel with all options off and all on, for each dtype (fp16, bf16,
fp32) and head dim (32, 64, 128) in the config that ``SALGUIDE_TRITON_AUTOTUNE=0`` picks, plus (fp16) every config selectable at
each head dim with all options on. ``SALGUIDE_SM90_FULL=1`` runs the whole product (every valid option
combination x dtype x head dim x selectable config, a few thousand compiles: run it with pytest-xdist
on a machine with many cores; ``benchmarks/gpu_session.sh compile_full``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

triton = pytest.importorskip("triton")
sm90 = pytest.importorskip("sm90_compile")

FULL = os.environ.get("SALGUIDE_SM90_FULL") == "1"
DTYPE_NAMES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
WORKER = Path(sm90.__file__)
ROOT = WORKER.parents[2]
PTXAS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
# one xdist worker runs the whole matrix (its fixture spreads the compiles over every core itself)
pytestmark = [
    pytest.mark.skipif(not PTXAS.exists(), reason="this triton build ships no ptxas"),
    pytest.mark.xdist_group("sm90_compile"),
]


def _compiler(args: list[str], stdin: str = "") -> subprocess.CompletedProcess:
    """Run sm90_compile.py outside the interpreter (tests/conftest.py sets TRITON_INTERPRET=1 on CPU)."""
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_DEFAULT_FP_FUSION="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))  # fmt: skip
    return subprocess.run([sys.executable, str(WORKER), *args], input=stdin, capture_output=True, text=True, env=env,
                          timeout=3000)  # fmt: skip


def _selectable(kernel: str, head_dim: int) -> list[tuple]:
    """The autotune configs the pruner keeps at this head dim (what a launch can pick)."""
    return [c for c in sm90.autotune_configs(kernel) if head_dim <= c[3]]


def _single(kernel: str, dtype: str, head_dim: int) -> int:
    """The config number ``SALGUIDE_TRITON_AUTOTUNE=0`` keeps (salguide.kernels.triton_common's rule)."""
    configs = _selectable(kernel, head_dim)
    if dtype != "fp32":
        return 0
    size = [stages * (meta["BLOCK_M"] + meta.get("BLOCK_N", 0)) for meta, _, stages, _ in configs]
    return size.index(min(size))


def _cases() -> list[tuple[str, str, int, tuple[bool, ...], int]]:
    """(kernel, dtype name, head dim, flag values, config number)."""
    cases = set()
    for kernel in sm90.KERNELS:
        combos = sm90.flag_combinations(kernel)
        for dtype in DTYPE_NAMES:
            for d in sm90.HEAD_DIMS:
                configs = _selectable(kernel, d)
                for flags in combos if FULL else (combos[0], combos[-1]):
                    for i in range(len(configs)) if FULL else (_single(kernel, dtype, d),):
                        cases.add((kernel, dtype, d, tuple(flags.values()), i))
                if not FULL and dtype == "fp16":  # every selectable config at its heaviest option set
                    cases.update((kernel, dtype, d, tuple(combos[-1].values()), i) for i in range(len(configs)))
    return sorted(cases)


CASES = _cases()


def _spec(case: tuple) -> list:
    kernel, dtype, d, values, i = case
    meta, warps, stages, _ = _selectable(kernel, d)[i]
    return [kernel, dtype, d, dict(zip(sm90.FLAGS[kernel], values)), meta, warps, stages]


@pytest.fixture(scope="module")
def compiled(request) -> dict:
    """Compile every selected case once, split over one worker process per core (Triton compiles
    single-threaded)."""
    items = request.session.items
    mine = [i for i in items if getattr(i, "originalname", "") == "test_kernel_compiles_for_sm90_without_spills"]
    cases = [i.callspec.params["case"] for i in mine]
    workers = max(1, min(os.cpu_count() or 1, len(cases)))
    chunks = [cases[i::workers] for i in range(workers)]

    def run(chunk: list) -> list:
        done = _compiler([], json.dumps([_spec(c) for c in chunk]))
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(run, chunks)
    return {case: r for chunk, rs in zip(chunks, results) for case, r in zip(chunk, rs)}


def _id(case: tuple) -> str:
    kernel, dtype, d, values, i = case
    on = [f for f, v in zip(sm90.FLAGS[kernel], values) if v]
    return f"{kernel}-{dtype}-D{d}-cfg{i}-{'+'.join(on) or 'plain'}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_kernel_compiles_for_sm90_without_spills(case, compiled):
    result = compiled[case]
    assert not isinstance(result, str), f"{_id(case)} does not compile for sm_90a: {result}"
    registers, local_bytes, shared = result
    assert 0 < registers <= 255
    kernel, dtype, d, _, i = case
    if i == _single(kernel, dtype, d):
        limit = int(sm90.SHARED_LIMIT * 0.97)
        assert shared <= limit, f"{_id(case)} needs {shared} bytes of shared memory (limit with margin {limit})"
    if case[1] != "fp32":  # fp32 inputs take the exact (non-tensor-core) path: slow by design, spills allowed
        assert local_bytes == 0, f"{_id(case)} spills {local_bytes} bytes to local memory ({registers} registers)"


def test_matrix_covers_every_kernel_option_dtype_and_head_dim():
    """The CI matrix reaches every kernel, both sides of every option, every dtype and head dim, and
    every config a launch can select at each head dim."""
    seen = {(k, f, v) for k, _, _, values, _ in CASES for f, v in zip(sm90.FLAGS[k], values)}
    assert seen == {(k, f, v) for k in sm90.KERNELS for f in sm90.FLAGS[k] for v in (False, True)}
    assert {(k, t, d) for k, t, d, _, _ in CASES} == {
        (k, t, d) for k in sm90.KERNELS for t in DTYPE_NAMES for d in sm90.HEAD_DIMS
    }
    for kernel in sm90.KERNELS:
        for d in sm90.HEAD_DIMS:
            assert {i for k, t, hd, _, i in CASES if (k, hd, t) == (kernel, d, "fp16")} == set(
                range(len(_selectable(kernel, d)))
            )


def test_compiler_rejects_what_the_interpreter_accepts():
    """The check can fail: a kernel reading a plain Python float global (the bug this file guards
    against; the interpreter runs it) is refused by the GPU compiler."""
    done = _compiler(["--plain-global"])
    assert done.returncode != 0 and "_PLAIN_FLOAT" in done.stderr
