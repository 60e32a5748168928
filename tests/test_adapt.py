"""genlib.adapt: LoRA, ControlNet, SDEdit/inversion, Diffusion-DPO, Tree-Ring watermarks."""
import math

import pytest
import torch
from torch import nn

from genlib import adapt, t2i
from genlib.data import shapes
from genlib.flow import flow_matching_loss, sample_euler


@pytest.fixture(scope="module")
def base():
    return t2i.load("flow")


@pytest.fixture(scope="module")
def batch():
    d = shapes(16, seed=3)
    g = torch.Generator().manual_seed(0)
    return d, t2i.caption_tokens(d.captions), torch.randn(16, 3, 16, 16, generator=g), torch.rand(16, generator=g)


# ----------------------------------------------------------------------------- LoRA
def test_lora_layers_start_as_their_base_and_count_parameters():
    torch.manual_seed(0)
    lin = adapt.LoRALinear(nn.Linear(7, 5), rank=3, alpha=6.0)
    x = torch.randn(4, 7)
    assert torch.equal(lin(x), lin.base(x))
    assert lin.scale == 2.0
    assert sum(p.numel() for p in lin.parameters() if p.requires_grad) == 3 * (7 + 5)
    conv = adapt.LoRAConv2d(nn.Conv2d(4, 6, 3, stride=2, padding=1), rank=2)
    x = torch.randn(2, 4, 9, 9)
    assert torch.equal(conv(x), conv.base(x))
    assert sum(p.numel() for p in conv.parameters() if p.requires_grad) == 2 * (4 * 3 * 3 + 6)
    with pytest.raises(ValueError):
        adapt.LoRALinear(nn.Linear(3, 3), rank=0)


def test_add_lora_is_identity_at_init_counts_and_trains_only_A_B(base, batch):
    _, y, x, t = batch
    model, n = adapt.add_lora(base, rank=4, alpha=8.0)
    expected = 0
    for name, m in base.named_modules():
        if isinstance(m, nn.Linear):
            expected += 4 * (m.in_features + m.out_features)
        elif isinstance(m, nn.Conv2d):
            expected += 4 * (m.in_channels * m.kernel_size[0] * m.kernel_size[1] + m.out_channels)
    assert n == expected
    assert torch.equal(model(x, t, y), base(x, t, y))
    assert not any(isinstance(m, adapt.LoRALinear) for m in base.modules())   # original untouched
    trainable = [k for k, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(k.endswith((".A", ".B")) for k in trainable)
    model(x, t, y).pow(2).mean().backward()
    grads = {k: p.grad for k, p in model.named_parameters()}
    assert all(g is None for k, g in grads.items() if not k.endswith((".A", ".B")))
    # B = 0 at init: A's gradient (through B) is exactly zero, B's is not
    assert any(grads[k].abs().sum() > 0 for k in trainable if k.endswith(".B"))
    assert all(torch.count_nonzero(grads[k]) == 0 for k in trainable if k.endswith(".A"))


def test_add_lora_targets(base):
    model, n = adapt.add_lora(base, rank=2, targets=("conv1",))
    wrapped = [k for k, m in model.named_modules() if isinstance(m, adapt.LoRAConv2d)]
    assert wrapped and all(k.endswith("conv1") for k in wrapped)
    assert not any(isinstance(m, adapt.LoRALinear) for m in model.modules())
    with pytest.raises(ValueError):
        adapt.add_lora(base, targets=("no_such_layer",))


def test_add_lora_leaves_multihead_attention_projections_alone():
    """nn.MultiheadAttention reads out_proj.weight directly: wrapping it would break the forward."""
    net = nn.Sequential(nn.Linear(8, 8), nn.MultiheadAttention(8, 2, batch_first=True))
    adapted, n = adapt.add_lora(net, rank=2)
    assert isinstance(adapted[0], adapt.LoRALinear) and not isinstance(adapted[1].out_proj, adapt.LoRALinear)
    assert n == 2 * (8 + 8)
    x = torch.randn(2, 3, 8)
    h = adapted[0](x)
    # frozen vs trainable parameters can take different attention kernels: equal to float rounding
    assert torch.allclose(adapted[1](h, h, h)[0], net[1](net[0](x), net[0](x), net[0](x))[0], atol=1e-6)


def test_merge_lora_gives_the_adapted_outputs(base, batch):
    _, y, x, t = batch
    model, _ = adapt.add_lora(base, rank=4)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (adapt.LoRALinear, adapt.LoRAConv2d)):
                m.B.copy_(0.05 * torch.randn(m.B.shape, generator=g))
    adapted = model(x, t, y)
    merged = adapt.merge_lora(model)
    assert not any(isinstance(m, (adapt.LoRALinear, adapt.LoRAConv2d)) for m in merged.modules())
    out = merged(x, t, y)
    assert (adapted - base(x, t, y)).abs().max() > 1e-2          # the adapter does something
    torch.testing.assert_close(out, adapted, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- ControlNet
def test_zero_conv_is_zero():
    conv = adapt.zero_conv(5, 3)
    assert torch.count_nonzero(conv.weight) == 0 and torch.count_nonzero(conv.bias) == 0
    assert torch.equal(conv(torch.randn(2, 5, 4, 4)), torch.zeros(2, 3, 4, 4))


def test_controlled_flownet_equals_base_at_init_and_moves_after_a_step(base, batch):
    d, y, x, t = batch
    torch.manual_seed(0)
    net = adapt.ControlledFlowNet(base)
    control = (d.images.abs().amax(1, keepdim=True) > 0.5).float()        # where each shape is
    assert torch.equal(net._base_forward(x, t, y), base(x, t, y))         # the re-run forward
    out0 = net(x, t, y, control=control)
    assert torch.equal(out0, base(x, t, y))
    # classifier-free guidance doubles the batch; the control map follows
    bound = adapt.with_control(net, control)
    assert torch.equal(sample_euler(bound, x, 2, y=y, guidance=3.0), sample_euler(base, x, 2, y=y, guidance=3.0))
    before = {k: v.clone() for k, v in base.state_dict().items()}
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    loss = flow_matching_loss(lambda a, b, c: net(a, b, c, control=control), x, d.images, t, y)
    loss.backward()
    assert all(p.grad is None for p in net.base.parameters())
    opt.step()
    assert not torch.equal(net(x, t, y, control=control), out0)
    assert all(torch.equal(v, before[k]) for k, v in base.state_dict().items())


# ----------------------------------------------------------------------------- editing
def test_sdedit_ends(base, batch):
    d, y, _, _ = batch
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    # t = 1 is data in genlib.flow: nothing is noised, the input comes back unchanged
    assert torch.equal(adapt.sdedit(base, d.images, 1.0, y, steps=4, generator=g()), d.images)
    # t = 0 is pure noise: the input is ignored, and it is plain sampling from that noise
    other = shapes(16, seed=9).images
    a = adapt.sdedit(base, d.images, 0.0, y, steps=4, generator=g())
    assert torch.equal(a, adapt.sdedit(base, other, 0.0, y, steps=4, generator=g()))
    noise = torch.randn(d.images.shape, generator=g())
    torch.testing.assert_close(a, sample_euler(base, noise, 4, y=y))
    # in between, the input matters
    mid = adapt.sdedit(base, d.images, 0.5, y, steps=4, generator=g())
    assert (mid - adapt.sdedit(base, other, 0.5, y, steps=4, generator=g())).abs().max() > 0.1
    with pytest.raises(ValueError):
        adapt.sdedit(base, d.images, 1.5, y)


def test_invert_is_exact_for_a_constant_velocity():
    class Constant(nn.Module):
        null_class = 0

        def forward(self, x, t, y=None):
            return torch.ones_like(x) * 0.7

    x = torch.randn(3, 3, 4, 4)
    z = adapt.invert(Constant(), x, steps=5)
    torch.testing.assert_close(z, x - 0.7)
    torch.testing.assert_close(adapt.reconstruct(Constant(), x, steps=5), x)


def test_inversion_round_trip_error_falls_with_steps(base, batch):
    _, y, x, _ = batch
    samples = sample_euler(base, x, 16, y=y)
    err = {s: (adapt.reconstruct(base, samples, s, y) - samples).pow(2).mean().item() for s in (4, 16)}
    assert err[16] < 0.5 * err[4], err


def test_inversion_breaks_at_high_guidance(base, batch):
    # measured on real shapes (3 seeds × 32 images, 16 steps): MSE 0.0013 at guidance 1,
    # 0.062-0.093 at guidance 5; asserted with a wide margin
    d, y, _, _ = batch
    err = {g: (adapt.reconstruct(base, d.images, 16, y, g) - d.images).pow(2).mean().item() for g in (1.0, 5.0)}
    assert err[5.0] > 10 * err[1.0], err


# ----------------------------------------------------------------------------- rewards
def test_dpo_loss_closed_form_and_gradient_sign():
    z = torch.zeros(3)
    assert math.isclose(adapt.dpo_loss_from_errors(z + 1, z + 2, z + 1, z + 2, 5.0).item(), math.log(2), rel_tol=1e-6)
    v = adapt.dpo_loss_from_errors(torch.tensor([1.0]), torch.tensor([0.2]), torch.tensor([0.5]),
                                   torch.tensor([0.4]), 2.0)
    assert math.isclose(v.item(), math.log1p(math.exp(1.4)), rel_tol=1e-6)
    err_w, err_l = torch.tensor([0.3], requires_grad=True), torch.tensor([0.3], requires_grad=True)
    adapt.dpo_loss_from_errors(err_w, err_l, torch.tensor([0.3]), torch.tensor([0.3]), 10.0).backward()
    assert err_w.grad.item() > 0 and err_l.grad.item() < 0      # lower winner error → lower loss


def test_dpo_flow_loss_is_log2_against_itself_and_a_step_prefers_the_winner(base, batch):
    d, y, x, t = batch
    lose = shapes(16, seed=11).images
    model, _ = adapt.add_lora(base, rank=4)
    assert math.isclose(adapt.dpo_flow_loss(model, base, d.images, lose, y, t, x).item(), math.log(2), rel_tol=1e-5)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    for _ in range(2):            # step 1 moves only B (A's gradient is zero while B = 0)
        opt.zero_grad()
        adapt.dpo_flow_loss(model, base, d.images, lose, y, t, x, beta=50.0).backward()
        opt.step()
    with torch.no_grad():
        margin = lambda m: (adapt.per_sample_flow_error(m, d.images, y, t, x)  # noqa: E731
                            - adapt.per_sample_flow_error(m, lose, y, t, x)).mean()
        assert margin(model) < margin(base)


def test_reward_weighted_loss_limits(base, batch):
    d, y, x, t = batch
    err = adapt.per_sample_flow_error(base, d.images, y, t, x)
    flat = adapt.reward_weighted_loss(base, d.images, y, torch.zeros(16), t, x)
    torch.testing.assert_close(flat, err.mean())
    reward = torch.arange(16.0)
    best = adapt.reward_weighted_loss(base, d.images, y, reward, t, x, temperature=1e-3)
    torch.testing.assert_close(best, err[-1])


# ----------------------------------------------------------------------------- watermarks
def test_plant_key_keeps_noise_real_white_and_writes_the_key():
    g = torch.Generator().manual_seed(0)
    for radius in (2, 3):
        key = adapt.make_key(3, radius, g)
        z = torch.randn(256, 3, 16, 16, generator=g)
        zw = adapt.plant_key(z, key, radius)
        spec = torch.fft.fft2(zw, norm="ortho")
        mask = adapt.ring_mask(16, radius)
        # the key survives taking the real part (the planted spectrum was Hermitian) ...
        assert adapt.key_distance(zw, key, radius).max() < 1e-5
        # ... the other frequencies are untouched, and the per-pixel spread is the same
        torch.testing.assert_close(spec[..., ~mask], torch.fft.fft2(z, norm="ortho")[..., ~mask], atol=1e-4, rtol=0)
        assert abs(zw.std().item() - z.std().item()) < 0.05
        assert abs(zw.mean().item()) < 0.1
        assert adapt.key_distance(z, key, radius).min() > 0.3


def test_detection_scores():
    assert adapt.detection_auc(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])) == 1.0
    assert adapt.detection_auc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 0.0
    assert adapt.detection_auc(torch.tensor([1.0]), torch.tensor([1.0])) == 0.5
    clean = torch.arange(100.0)
    assert adapt.tpr_at_fpr(torch.tensor([0.5, 1.5, 50.0]), clean, 0.01) == pytest.approx(1 / 3)
    assert adapt.tpr_at_fpr(torch.tensor([-1.0, 0.5]), clean, 0.0) == 0.5


def test_watermark_survives_sampling_and_inversion(base):
    g = torch.Generator().manual_seed(0)
    radius, n = 3, 32
    key = adapt.make_key(3, radius, g)
    y = t2i.caption_tokens(shapes(2 * n, seed=4).captions)
    z = torch.randn(2 * n, 3, 16, 16, generator=g)
    x_wm = sample_euler(base, adapt.plant_key(z[:n], key, radius), 16, y=y[:n]).clamp(-1, 1)
    x_clean = sample_euler(base, z[n:], 16, y=y[n:]).clamp(-1, 1)
    d_wm = adapt.detect_key(x_wm, base, key, radius, steps=16)      # detector: no caption
    d_clean = adapt.detect_key(x_clean, base, key, radius, steps=16)
    auc = adapt.detection_auc(d_wm, d_clean)
    print(f"watermark AUC {auc:.3f}, distance wm {d_wm.mean():.3f} clean {d_clean.mean():.3f}")
    assert d_wm.mean() < d_clean.mean() and auc > 0.6, auc
