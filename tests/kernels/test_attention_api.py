"""Public API: argument checks, return types, backend dispatch and validation defaults, torch.compile and
custom-op registration."""

from __future__ import annotations

import pytest
import torch
from attention_cases import make_case

from salguide.kernels import (
    BACKEND_ENV_VAR,
    VALIDATE_ENV_VAR,
    AttentionResult,
    attention,
    attention_reference,
    attention_stats,
)
from salguide.kernels.dispatch import AUTO, LONG_MASS_KEYS, resolve_backend, resolve_validate

B, H, N, D = 2, 2, 5, 4


def _qkv(**kw):
    return [torch.randn(B, H, N, D, **kw) for _ in range(3)]


def _bad(q, k, v):
    """(arguments changed, error type, message fragment) for each malformed call."""
    nan_q = q.clone()
    nan_q[0, 0, 0, 0] = float("nan")
    return [
        (dict(q=q[0]), ValueError, "must have shape \\[B, H, N, D\\]"),
        (dict(k=k[:, :, :3]), ValueError, "same shape"),
        (dict(v=v.double()), TypeError, "share one dtype"),
        (dict(q=q.long(), k=k.long(), v=v.long()), TypeError, "share one dtype"),
        (dict(q=q[:, :, :0], k=k[:, :, :0], v=v[:, :, :0]), ValueError, "empty"),
        (dict(key_mask=torch.ones(B, N + 1, dtype=torch.bool)), ValueError, "key_mask must have shape"),
        (dict(key_mask=torch.ones(B, N)), TypeError, "key_mask must be a bool"),
        (
            dict(key_index=torch.zeros(B, 2, dtype=torch.long), key_mask=torch.ones(B, N, dtype=torch.bool)),
            ValueError,
            "mutually exclusive",
        ),  # fmt: skip
        (dict(key_index=torch.zeros(B, 2)), TypeError, "int32 or int64"),
        (dict(key_index=torch.zeros(B, 0, dtype=torch.long)), ValueError, "1 <= Nk"),
        (dict(key_index=torch.tensor([[0, N], [0, 1]])), ValueError, "lie in \\[0, N"),
        (dict(key_index=torch.tensor([[0, -1], [0, 1]])), ValueError, "lie in \\[0, N"),
        (dict(key_index=torch.tensor([[2, 2], [0, 1]])), ValueError, "repeats a key"),
        (dict(target=torch.rand(B, H + 1, N)), ValueError, "target must have shape"),
        (dict(target=torch.full((B, N), 1.5)), ValueError, "\\[0, 1\\]"),
        (dict(target=torch.full((B, N), float("nan"))), ValueError, "target contains NaN"),
        (dict(target=torch.ones(B, N, dtype=torch.long)), TypeError, "target must be a floating"),
        (dict(key_bias=torch.full((B, N), float("inf"))), ValueError, "key_bias contains NaN or inf"),
        (dict(q=nan_q), ValueError, "q contains NaN or inf"),
        (dict(scale=float("nan")), ValueError, "scale must be a positive finite"),
        (dict(scale=0.0, key_bias=torch.zeros(B, N)), ValueError, "scale must be a positive finite"),
        (dict(scale=-0.5), ValueError, "scale must be a positive finite"),
        (dict(always_self=1), TypeError, "always_self must be a bool"),
        (dict(backend="cuda"), ValueError, "backend must be one of"),
        (dict(validate=None, target=torch.full((B, N), -0.5)), ValueError, "\\[0, 1\\]"),  # CPU: on by default
    ]


@pytest.mark.parametrize("case", range(len(_bad(*_qkv()))))
def test_bad_input_raises_clear_error(case):
    q, k, v = _qkv()
    changes, error, message = _bad(q, k, v)[case]
    args = {"q": q, "k": k, "v": v, "backend": "reference", **changes}
    with pytest.raises(error, match=message):
        attention_stats(args.pop("q"), args.pop("k"), args.pop("v"), **args)


def test_validate_false_skips_value_checks_only():
    q, k, v = _qkv()
    out = attention_stats(q, k, v, target=torch.full((B, N), 1.5), validate=False, backend="reference").out
    assert out.shape == q.shape
    with pytest.raises(ValueError, match="same shape"):
        attention(q, k[:, :, :3], v, validate=False)


def test_validation_default_is_on_for_cpu_off_for_cuda_with_an_environment_switch(monkeypatch):
    cpu, fake_cuda = torch.empty(1), type("T", (), {"device": torch.device("cuda")})()
    monkeypatch.delenv(VALIDATE_ENV_VAR, raising=False)
    assert resolve_validate(None, cpu) is True and resolve_validate(False, cpu) is False
    assert resolve_validate(None, fake_cuda) is False and resolve_validate(True, fake_cuda) is True
    monkeypatch.setenv(VALIDATE_ENV_VAR, "1")
    assert resolve_validate(None, fake_cuda) is True
    monkeypatch.setenv(VALIDATE_ENV_VAR, "0")
    assert resolve_validate(None, cpu) is False
    monkeypatch.setenv(VALIDATE_ENV_VAR, "yes")
    with pytest.raises(ValueError, match=VALIDATE_ENV_VAR):
        resolve_validate(None, cpu)


def test_attention_returns_a_tensor_and_attention_stats_the_result_object():
    q, k, v = _qkv()
    out = attention(q, k, v)
    assert type(out) is torch.Tensor and out.shape == q.shape
    r = attention_stats(q, k, v)
    assert isinstance(r, AttentionResult) and r.mass is None and r.colsum is None and r.lse is None
    torch.testing.assert_close(r.out, out)
    r = attention_stats(q, k, v, target=torch.rand(B, N))
    assert r.mass.shape == (B, H, N) and r.colsum is None and r.lse is None
    r = attention_stats(q, k, v, return_colsum=True, return_lse=True)
    assert r.mass is None and r.colsum.shape == (B, H, N) and not r.colsum.requires_grad and r.lse.shape == (B, H, N)
    torch.testing.assert_close(r.colsum.sum(-1), torch.full((B, H), float(N)))  # each query spreads mass 1


def test_backend_precedence_argument_then_environment(monkeypatch):
    q = torch.randn(1, 1, 2, 4)
    monkeypatch.delenv(BACKEND_ENV_VAR, raising=False)
    assert resolve_backend(None, q) == "sdpa"  # auto on CPU
    monkeypatch.setenv(BACKEND_ENV_VAR, "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend(None, q) == "triton"
    assert resolve_backend("reference", q) == "reference"
    assert resolve_backend("auto", q) == "sdpa"  # explicit auto ignores the environment
    monkeypatch.setenv(BACKEND_ENV_VAR, "fast")
    with pytest.raises(ValueError, match=BACKEND_ENV_VAR):
        resolve_backend(None, q)


def test_auto_table_cuda_triton_for_mass_and_stats_vendor_elsewhere_with_fallback(monkeypatch):
    """The per-case table (measured on an H200); a Triton choice that cannot run (here fp64) falls back
    to SDPA."""
    fake = type("T", (), {"device": torch.device("cuda"), "dtype": torch.float16, "shape": (1, 1, 2, 64)})()
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert {case: resolve_backend("auto", fake, case) for case in AUTO["cuda"]} == AUTO["cuda"]
    assert {case for case, path in AUTO["cuda"].items() if path == "triton"} == {"mass", "stats"}
    long = type(
        "T", (), {"device": torch.device("cuda"), "dtype": torch.float16, "shape": (1, 1, LONG_MASS_KEYS, 64)}
    )()
    assert resolve_backend("auto", long, "mass") == "sdpa"  # long sequences: the mass rides on SDPA
    assert resolve_backend("auto", long, "stats") == "triton"
    fake.dtype = torch.float64
    assert resolve_backend("auto", fake, "mass") == "sdpa"
    assert resolve_backend("auto", torch.randn(1, 1, 2, 4), "mass") == "sdpa"  # CPU


def test_forcing_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        attention(*_qkv(), backend="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(RuntimeError, match="bfloat16"):
        attention(*_qkv(dtype=torch.bfloat16), backend="triton")
    with pytest.raises(RuntimeError, match="float64"):
        attention(*_qkv(dtype=torch.float64), backend="triton")


def test_torch_compile_fullgraph_forward_and_backward():
    leaves, kwargs = make_case(2, 2, 7, 4, keys="mask", always_self=True, bias=True, target="shared", seed=9)

    def loss(q, k, v, key_bias, target, attend):
        r = attend(q, k, v, key_bias=key_bias, target=target, **kwargs)
        return (r.out**2).sum() + (r.mass * torch.arange(7.0)).sum()

    grads = []
    for fn in (torch.compile(loss, fullgraph=True, backend="aot_eager"), loss):
        tensors = [t.detach().clone().requires_grad_() for t in leaves.values()]
        attend = attention_stats if not grads else attention_reference
        value = fn(*tensors, attend)
        value.backward()
        grads.append([value.detach()] + [t.grad for t in tensors])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want)


def test_custom_op_registration_passes_opcheck():
    leaves, kwargs = make_case(1, 2, 6, 4, keys="index", always_self=True, bias=True, target="per_head", seed=4)
    args = (leaves["q"], leaves["k"], leaves["v"], None, kwargs["key_index"], leaves["key_bias"], leaves["target"],
            True, True, 0.5, "reference", True)  # fmt: skip
    torch.library.opcheck(torch.ops.salguide.attention.default, args)
