"""The two flow-matching field models: one interface at any size, gradients everywhere, padding that changes
nothing, step sizes that ignore the sequence length, and a quick check that they learn."""

from __future__ import annotations

import math

import pytest
import torch

from ssmseg.models.field_flow import FieldFlow
from ssmseg.models.field_unet import FieldUNet
from ssmseg.ssm.order import grid_coords


def tiny_flow(**kw) -> FieldFlow:
    args = {"d_model": 16, "n_layers": 2, "d_state": 4, "n_fourier": 8, "fourier_scale": 3.0, "n_heads": 2}
    return FieldFlow(**{**args, **kw})


def tiny_unet(**kw) -> FieldUNet:
    return FieldUNet(**{"width": 8, "depth": 2, "d_state": 4, "time_dim": 16, **kw})


def unit_output(model):
    """The output layer re-drawn at unit scale: its small initialisation would hide differences under 1e-5."""
    layer = model.out if isinstance(model, FieldFlow) else model.head
    torch.nn.init.normal_(layer.weight)
    return model


MODELS = {
    "flow_mamba": tiny_flow,
    "flow_mamba_both": lambda **kw: tiny_flow(directions="both", **kw),
    "flow_attention": lambda **kw: tiny_flow(backbone="attention", **kw),
    "unet": tiny_unet,
}


def inputs(b: int, c: int, h: int, w: int, frac: float | list[float] = 0.1, seed: int = 0):
    """x_t, t, observed (0 where unobserved) and mask for b random fields; frac: observed fraction per field."""
    g = torch.Generator().manual_seed(seed)
    fracs = torch.tensor([frac] * b if isinstance(frac, float) else frac)
    mask = (torch.rand(b, 1, h, w, generator=g) < fracs[:, None, None, None]).float()
    observed = torch.randn(b, c, h, w, generator=g) * mask
    return torch.randn(b, c, h, w, generator=g), torch.rand(b, generator=g), observed, mask


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize(("c", "h", "w"), [(1, 32, 32), (1, 48, 48), (1, 37, 45), (2, 16, 16), (1, 5, 3)])
def test_any_size_gives_a_velocity_of_the_same_shape(name, c, h, w):
    model = MODELS[name](in_channels=c).eval()
    with torch.no_grad():
        out = model(*inputs(2, c, h, w))
    assert out.shape == (2, c, h, w) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(MODELS))
def test_every_parameter_gets_a_gradient(name):
    model = MODELS[name](n_layers=4) if name.startswith("flow") else MODELS[name]()
    x_t, t, observed, mask = inputs(3, 1, 12, 10, frac=[0.1, 0.3, 0.0])
    out = model(x_t, t, observed, mask)
    (out - torch.randn_like(out)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero, f"parameters without gradient signal: {zero}"


@pytest.mark.parametrize("name", list(MODELS))
def test_a_field_alone_equals_the_same_field_in_a_batch_with_more_observations(name):
    """Observation counts differ across a batch: padding the shorter field must not change its output."""
    model = MODELS[name](n_layers=4) if name.startswith("flow") else MODELS[name]()
    unit_output(model).eval()
    x_t, t, observed, mask = inputs(2, 1, 16, 16, frac=[0.08, 0.4])
    assert mask[0].sum() < mask[1].sum()
    with torch.no_grad():
        alone = model(x_t[:1], t[:1], observed[:1], mask[:1])
        batched = model(x_t, t, observed, mask)[:1]
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_a_field_without_observations_is_defined():
    model = tiny_flow().eval()
    x_t, t, observed, mask = inputs(2, 1, 8, 8, frac=0.0)
    with torch.no_grad():
        out = model(x_t, t, observed, mask)
        assert out.shape == x_t.shape and torch.isfinite(out).all()
        # no pixel is observed, so the values behind the (all-zero) mask must not matter
        torch.testing.assert_close(model(x_t, t, observed + 5.0, mask), out)
        assert not torch.allclose(model(x_t + 1.0, t, observed, mask), out)  # but the state x_t does


def test_step_sizes_do_not_depend_on_the_number_of_observations():
    """The first observation block reads 102 or 1075 observation tokens; the first 102 are the same tokens
    (the 1075 extend the 102 along the scan order), so their dt and their forward-scan outputs agree."""
    model = unit_output(tiny_flow(n_layers=4)).eval()
    h = w = 64
    perm, _ = model.grid_order(h, w, torch.device("cpu"))
    seen = {}
    scan = model.obs_blocks[0].mixer.scans[0]
    assert model.obs_blocks[0].mixer.directions == ("forward",)
    scan.register_forward_hook(lambda mod, args, out: seen.setdefault("runs", []).append((args[0], out)))
    x_t, t, observed, _ = inputs(1, 1, h, w)
    # Observed values in sequence order: the last 973 have the first 102's mean and std exactly, so the field's
    # units (location and scale of all its observations) are the same for 102 and 1075 observations.
    g = torch.Generator().manual_seed(5)
    first, rest = torch.randn(102, generator=g), torch.randn(973, generator=g)
    rest = (rest - rest.mean()) / rest.std(unbiased=False) * first.std(unbiased=False) + first.mean()
    observed = torch.zeros(1, 1, h * w)
    observed[..., perm[:1075]] = torch.cat([first, rest])
    observed = observed.view(1, 1, h, w)
    for n in (102, 1075):
        mask = torch.zeros(1, 1, h * w)
        mask[..., perm[:n]] = 1.0
        with torch.no_grad():
            model(x_t, t, observed * mask.view(1, 1, h, w), mask.view(1, 1, h, w))
    (short_in, short_out), (long_in, long_out) = seen["runs"]
    assert short_in.shape[1] == 128 and long_in.shape[1] == 1088  # padded up to a multiple of 32
    torch.testing.assert_close(long_in[:, :102], short_in[:, :102])
    with torch.no_grad():
        torch.testing.assert_close(scan.step_sizes(long_in)[..., :102], scan.step_sizes(short_in)[..., :102])
    torch.testing.assert_close(long_out[:, :102], short_out[:, :102], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backbone", ["mamba", "attention"])
def test_query_block_step_sizes_ignore_the_length(backbone):
    """Block level, as in tests/ssm/test_mamba.py, for every Mamba scan inside FieldFlow."""
    model = tiny_flow(backbone=backbone, directions="both")
    scans = [m for m in model.modules() if hasattr(m, "step_sizes")]
    assert (len(scans) > 0) == (backbone == "mamba")
    tokens = torch.randn(2, 1075, 16)
    with torch.no_grad():
        for scan in scans:
            torch.testing.assert_close(scan.step_sizes(tokens)[..., :102], scan.step_sizes(tokens[:, :102]))


def test_attention_and_mamba_backbones_differ_only_in_the_mixer():
    mamba, attention = tiny_flow(), tiny_flow(backbone="attention")

    def rest(model):
        return {k: v.shape for k, v in model.state_dict().items() if ".mixer." not in k}

    assert rest(mamba) == rest(attention)
    args = inputs(2, 1, 9, 11)
    with torch.no_grad():
        assert mamba(*args).shape == attention(*args).shape == (2, 1, 9, 11)


@pytest.mark.parametrize("order", ["hilbert", "rows", "random"])
def test_orders_are_deterministic(order):
    model = tiny_flow(order=order).eval()
    args = inputs(1, 1, 10, 12)
    with torch.no_grad():
        torch.testing.assert_close(model(*args), model(*args))


def test_bad_arguments_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid backbones"):
        tiny_flow(backbone="lstm")
    with pytest.raises(ValueError, match="valid orders"):
        tiny_flow(order="spiral")
    with pytest.raises(ValueError, match="valid: interleave"):
        tiny_flow(directions="sideways")


def test_an_untrained_flow_is_the_middle_interpolant():
    """FieldFlow starts at its interpolant, as FieldUNet does (tests/models/test_field_inputs.py)."""
    from ssmseg.models.field_inputs import field_frame, normalized_convolution

    x_t, t, observed, mask = inputs(2, 1, 16, 16, frac=0.15)
    model = tiny_flow().eval()
    torch.nn.init.zeros_(model.out.weight)
    with torch.no_grad():
        clean = model(x_t, t, observed, mask, return_clean=True)
    loc, scale = field_frame(observed, mask)
    nc, _ = normalized_convolution((observed - loc) / scale * mask, mask, (1.0,))
    torch.testing.assert_close(clean, loc + scale * nc, atol=1e-4, rtol=1e-4)


def smooth_fields(n: int, size: int, seed: int) -> torch.Tensor:
    """n unit-variance fields that are sums of three random plane waves of 1 to 3 cycles per side."""
    g = torch.Generator().manual_seed(seed)
    xy = grid_coords(size, size).T.reshape(2, size, size)
    out = torch.zeros(n, 1, size, size)
    for _ in range(3):
        k = (torch.rand(n, 2, generator=g) * 4 - 2) * math.pi * 1.5
        phase = torch.rand(n, generator=g) * 2 * math.pi
        out += torch.sin(torch.einsum("nc,chw->nhw", k, xy) + phase[:, None, None])[:, None]
    return out / math.sqrt(1.5)


def clean_loss(model, x1, gen):
    """The one-step (t = 0) clean estimate's MSE on the unobserved pixels of 15%-observed fields."""
    mask = (torch.rand(x1.shape[0], 1, *x1.shape[-2:], generator=gen) < 0.15).float()
    x0 = torch.randn(x1.shape, generator=gen)
    err = (model(x0, torch.zeros(len(x1)), x1 * mask, mask, return_clean=True) - x1).square() * (1 - mask)
    return err.sum() / (1 - mask).sum().clamp(min=1)


@pytest.mark.parametrize("name", ["flow_mamba", "unet"])
def test_it_learns(name):
    """A few dozen Adam steps on 16 x 16 smooth fields lower the clean estimate's error on held-out fields."""
    torch.manual_seed(0)
    model = MODELS[name]()
    fields = smooth_fields(8, 16, seed=1)
    held = smooth_fields(8, 16, seed=2)

    def held_loss():
        with torch.no_grad():
            return float(clean_loss(model.eval(), held, torch.Generator().manual_seed(3)))

    before = held_loss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(4)
    model.train()
    for _ in range(40):
        opt.zero_grad()
        clean_loss(model, fields, gen).backward()
        opt.step()
    after = held_loss()
    # Both models start at the interpolant, already far better than the field mean, and must improve on it.
    assert after < 0.9 * before, (before, after)


def test_distance_bias_is_a_gaussian_kernel_of_learned_width():
    """With the content scores zeroed, cross-attention weights are exp(-d^2 / 2 sigma^2), normalised; the null
    entry counts as a key at distance 1; padded keys get nothing."""
    from ssmseg.models.field_flow import CrossAttention

    d, h = 4, 2
    attn = CrossAttention(d, h, 0.0)
    with torch.no_grad():
        attn.q.weight.zero_()
        attn.q.bias.zero_()
        attn.kv.weight.copy_(torch.cat([torch.zeros(d, d), torch.eye(d)]))  # v = memory
        attn.kv.bias.zero_()
        attn.out.weight.copy_(torch.eye(d))
        attn.out.bias.zero_()
    q_pos = torch.rand(7, 2)
    mem_pos = torch.rand(1, 5, 2)
    mem = torch.randn(1, 5, d)
    valid = torch.tensor([[True, True, True, True, False]])
    null = torch.tensor([[True, False, False, False, False]])
    out = attn(torch.randn(1, 7, d), mem, valid, q_pos, mem_pos, null)
    sigma = attn.log_sigma.exp().detach()
    for head in range(h):
        d2 = (q_pos[:, None] - mem_pos[0][None]).square().sum(-1)
        d2[:, 0] = 1.0  # the null entry
        w = (-d2 / (2 * sigma[head] ** 2)).masked_fill(~valid[0], float("-inf")).softmax(1)
        expected = w @ mem[0]
        cols = slice(head * d // h, (head + 1) * d // h)
        torch.testing.assert_close(out[0, :, cols], expected[:, cols], atol=1e-5, rtol=1e-4)
    # bfloat16 autocast leaves the kernel in float32.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_bf16 = attn(torch.randn(1, 7, d), mem, valid, q_pos, mem_pos, null)
    torch.testing.assert_close(out_bf16.float(), out, atol=2e-2, rtol=2e-2)


def test_observation_tokens_read_the_observations_of_every_channel_and_not_the_state():
    """The memory is built from the observed values (field units) only: x_t never reaches it, every channel does."""
    model = tiny_flow(in_channels=2).eval()
    seen = []
    model.obs_in.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    x_t, t, observed, mask = inputs(1, 2, 12, 12, frac=0.3)
    with torch.no_grad():
        model(x_t, t, observed, mask)
        model(x_t + 3.0, t, observed, mask)
        moved = observed.clone()
        moved[:, 1] = observed[:, 1] * -2.0 * mask[:, 0]
        model(x_t, t, moved, mask)
    torch.testing.assert_close(seen[0], seen[1])
    assert not torch.allclose(seen[0][..., 1], seen[2][..., 1]) and torch.allclose(seen[0][..., 0], seen[2][..., 0])
