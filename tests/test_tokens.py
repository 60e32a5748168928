"""genlib.tokens: nearest-code lookup, straight-through gradient, VQ losses, dead-code restarts."""
import torch
import torch.nn.functional as F

from genlib.tokens import VQTokenizer, codebook_usage, lookup, quantize, vq_losses


def test_quantize_matches_brute_force_nearest_code():
    g = torch.Generator().manual_seed(0)
    z, cb = torch.randn(2, 3, 4, 5, generator=g), torch.randn(11, 3, generator=g)
    z_q, idx = quantize(z, cb)
    assert idx.shape == (2, 4, 5) and idx.dtype == torch.long
    for n in range(2):
        for h in range(4):
            for w in range(5):
                d = ((cb - z[n, :, h, w]) ** 2).sum(1)
                assert idx[n, h, w] == d.argmin()
                assert torch.allclose(z_q[n, :, h, w], cb[d.argmin()])


def test_quantize_straight_through_gradient_is_identity():
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    cb = torch.randn(8, 4, requires_grad=True)
    z_q, _ = quantize(z, cb)
    w = torch.randn_like(z)
    (z_q * w).sum().backward()
    assert torch.allclose(z.grad, w)
    assert cb.grad is None or cb.grad.abs().max() == 0


def test_code_already_in_codebook_maps_to_itself():
    cb = torch.randn(6, 5)
    z = cb[[3, 1, 4, 0]].view(1, 2, 2, 5).permute(0, 3, 1, 2)
    z_q, idx = quantize(z, cb)
    assert idx.view(-1).tolist() == [3, 1, 4, 0]
    assert torch.allclose(lookup(idx, cb), z)


def test_vq_losses_move_codes_and_encoder_separately():
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    cb = torch.randn(8, 4, requires_grad=True)
    _, idx = quantize(z, cb)
    cb_loss, commit = vq_losses(z, idx, cb, beta=0.25)
    cb_loss.backward(retain_graph=True)
    assert z.grad is None and cb.grad.abs().sum() > 0            # codebook loss: only the codes
    cb.grad = None
    commit.backward()
    assert cb.grad is None and z.grad.abs().sum() > 0            # commitment: only the encoder
    assert torch.allclose(commit, 0.25 * cb_loss)                 # same distance, weighted by β


def test_codebook_usage():
    assert abs(codebook_usage(torch.tensor([0, 1, 1, 3]), 4) - 0.75) < 1e-6
    assert abs(codebook_usage(torch.zeros(10, dtype=torch.long), 5) - 0.2) < 1e-6


def test_dead_codes_are_restarted_onto_encoder_outputs():
    torch.manual_seed(0)
    vq = VQTokenizer(k=16, d=4, ch=8).train()
    vq.codebook.data[8:] = 1e3                                     # half the codebook never wins
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    restarted = sum(vq._track(vq.encoder(x), vq.encode(x)) for _ in range(120))  # share decays
    assert restarted >= 8
    assert vq.codebook.data.abs().max() < 1e3                      # the far codes were moved
    _, _, idx = vq(x)
    assert codebook_usage(idx, 16) > 0.5


def test_tokenizer_shapes_and_training_reduces_loss():
    torch.manual_seed(0)
    vq = VQTokenizer(k=16, d=4, ch=8)
    from genlib.data import shapes

    x = shapes(16, seed=0).images
    recon, loss, idx = vq(x)
    assert recon.shape == x.shape and idx.shape == (16, 8, 8) and loss.ndim == 0
    assert vq.encode(x).shape == (16, 8, 8) and vq.decode(idx).shape == x.shape
    opt = torch.optim.Adam(vq.parameters(), 3e-3)
    first = None
    for _ in range(60):
        recon, loss, _ = vq(x)
        total = F.mse_loss(recon, x) + loss
        first = first if first is not None else total.item()
        opt.zero_grad(); total.backward(); opt.step()  # noqa: E702
    assert total.item() < 0.5 * first
