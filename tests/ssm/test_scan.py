"""Every fast backend against the sequential reference: forward, last state and every gradient."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch

from ssmseg.errors import BackendUnavailableError
from ssmseg.ssm import scan as scan_mod
from ssmseg.ssm.cpu_kernel import CHUNK, load_kernel
from ssmseg.ssm.reference import selective_scan_reference
from ssmseg.ssm.scan import choose_backend, selective_scan

needs_kernel = pytest.mark.skipif(load_kernel()[0] is None, reason=f"no fused kernel: {load_kernel()[1]}")
BACKENDS = [pytest.param("cpu", marks=needs_kernel), "torch"]


def make_inputs(batch=2, dim=6, N=8, L=20, bc="grouped", z=True, D=True, bias=True, dtype=torch.float32, softplus=True):
    """Random inputs in the ranges a Mamba block produces (dt > 0 without softplus); all require grad."""
    g = torch.Generator().manual_seed(batch * 1000 + L * 10 + N)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    shapes = {"grouped": (batch, 2, N, L), "ungrouped": (batch, N, L), "fixed": (dim, N)}[bc]
    t = {
        "u": r(batch, dim, L),
        "delta": r(batch, dim, L) * 0.5 - 1.0 if softplus else torch.rand(batch, dim, L, generator=g) + 0.01,
        "A": -torch.rand(dim, N, generator=g) * 3 - 0.05,
        "B": r(*shapes),
        "C": r(*shapes),
        "D": r(dim) if D else None,
        "z": r(batch, dim, L) if z else None,
        "delta_bias": r(dim) * 0.3 if bias else None,
    }
    return {k: None if v is None else v.to(dtype).requires_grad_() for k, v in t.items()}


def run(fn, inputs, softplus, grad_out):
    out, last = fn(**inputs, delta_softplus=softplus, return_last_state=True)
    tensors = [v for v in inputs.values() if v is not None]
    grads = torch.autograd.grad((out.float() * grad_out).sum(), tensors)
    return out, last, dict(zip([k for k, v in inputs.items() if v is not None], grads, strict=True))


def assert_close_rel(actual, expected, rel, what):
    scale = expected.float().abs().max().clamp_min(1e-6)
    err = (actual.float() - expected.float()).abs().max()
    assert err <= rel * scale, f"{what}: max error {err:.3g} > {rel} x {scale:.3g}"


def check(backend, inputs, softplus=True, rel=1e-4):
    grad_out = torch.randn(inputs["u"].shape, generator=torch.Generator().manual_seed(7))
    ref = run(selective_scan_reference, inputs, softplus, grad_out)
    got = run(lambda **kw: selective_scan(**kw, backend=backend), inputs, softplus, grad_out)
    assert got[0].dtype == inputs["u"].dtype and got[0].shape == inputs["u"].shape
    assert got[1].dtype == torch.float32
    assert_close_rel(got[0], ref[0], rel, "output")
    assert_close_rel(got[1], ref[1], rel, "last state")
    for name, g in ref[2].items():
        assert got[2][name].shape == g.shape, name
        assert_close_rel(got[2][name], g, rel, f"d{name}")


LENGTHS = [1, 7, CHUNK - 1, CHUNK, CHUNK + 1, 600]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("L", LENGTHS)
@pytest.mark.parametrize("bc", ["grouped", "ungrouped", "fixed"])
def test_matches_reference_over_lengths_and_layouts(backend, L, bc):
    check(backend, make_inputs(L=L, bc=bc))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("z", "D", "bias", "softplus"), list(itertools.product([False, True], repeat=4)))
def test_matches_reference_with_and_without_options(backend, z, D, bias, softplus):
    inputs = make_inputs(batch=1, L=CHUNK + 5, z=z, D=D, bias=bias and softplus, softplus=softplus)
    check(backend, inputs, softplus=softplus)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("N", [1, 4, 16, 17])
def test_state_sizes(backend, N):
    check(backend, make_inputs(batch=3, dim=4, N=N, L=70))


@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_inputs_keep_float32_state(backend):
    """bf16 in, bf16 out; the state is float32, so only the final rounding differs (stated: 2e-2)."""
    inputs = make_inputs(L=300, dtype=torch.bfloat16)
    check(backend, inputs, rel=2e-2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_dt_stays_finite(backend):
    """|A| * sum(dt) far above 170 over a chunk: no overflow (the factored-exp trap)."""
    inputs = make_inputs(L=256, bias=False)
    with torch.no_grad():
        inputs["delta"].fill_(20.0)
        inputs["A"].fill_(-10.0)
    check(backend, inputs)


def test_auto_picks_fused_kernel_on_cpu():
    name, why = choose_backend(torch.device("cpu"))
    expected = "cpu" if load_kernel()[0] is not None else "torch"
    assert name == expected and why


def test_forcing_cuda_without_mamba_ssm_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(scan_mod, "mamba_ssm_kernel", lambda: (None, "mamba-ssm not importable"))
    with pytest.raises(BackendUnavailableError, match=r"pip install 'ssmseg\[cuda\]'"):
        selective_scan(**{k: v for k, v in make_inputs().items()}, backend="cuda")


def test_without_compiler_auto_falls_back_with_one_warning_line(monkeypatch, capsys):
    monkeypatch.setattr(scan_mod, "load_kernel", lambda: (None, "no C compiler found"))
    monkeypatch.setitem(scan_mod._default, "warned", False)
    assert choose_backend(torch.device("cpu"))[0] == "torch"
    inputs = make_inputs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        selective_scan(**inputs)
        selective_scan(**inputs)
    assert not [w for w in caught if "pure-PyTorch" in str(w.message)]  # no raw Python warning (two lines)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: using the slower pure-PyTorch scan"), lines
    with pytest.raises(BackendUnavailableError, match="install a C compiler"):
        choose_backend(torch.device("cpu"), "cpu")


def test_a_cc_that_is_not_found_is_named_in_one_line(monkeypatch, capsys):
    import ssmseg.ssm.cpu_kernel as kernel

    monkeypatch.setenv("CC", "/nonexistent/cc")
    found = kernel._compiler()
    err = capsys.readouterr().err
    if found is None:
        pytest.skip("no compiler on this machine")
    assert err.count("\n") == 1 and "CC=/nonexistent/cc" in err and found in err
    monkeypatch.setenv("CC", found)
    assert kernel._compiler() == found and capsys.readouterr().err == ""


def test_failed_build_reports_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "false")
    monkeypatch.setenv("SSMSEG_CACHE_DIR", str(tmp_path))
    lib, why = load_kernel.__wrapped__()
    assert lib is None and "could not build" in why
    assert not list(tmp_path.rglob("*.so"))  # nothing partial left in the cache


def test_kernel_is_cached_per_machine(monkeypatch, tmp_path):
    if load_kernel()[0] is None:
        pytest.skip("no compiler")
    monkeypatch.setenv("SSMSEG_CACHE_DIR", str(tmp_path))
    first = load_kernel.__wrapped__()
    again = load_kernel.__wrapped__()
    assert first[0] is not None and first[0]._name == again[0]._name
    assert len(list(tmp_path.rglob("*.so"))) == 1


def test_bad_shapes_are_named():
    inputs = make_inputs()
    inputs["B"] = torch.randn(2, 4, 8, 20)  # 4 groups do not divide 6 channels
    with pytest.raises(ValueError, match="B must be"):
        selective_scan(**inputs)
