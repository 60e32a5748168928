"""genlib.inpaint: masks, samplers that keep the known pixels, token infill, metrics on the hole."""
import torch

from genlib import inpaint
from genlib.diffusion import Schedule, TinyUNet


def _tiny_models():
    torch.manual_seed(0)
    ddpm = TinyUNet(ch=8, emb=16).eval()
    ddpm.schedule = Schedule.cosine(10)
    flow = TinyUNet(ch=8, emb=16).eval()
    return ddpm, flow


def test_masks():
    m = inpaint.half_masks(40, generator=torch.Generator().manual_seed(0))
    assert m.shape == (40, 1, 8, 8) and set(m.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(m.sum(dim=(1, 2, 3)), torch.full((40,), 32.0))
    assert len({tuple(x.flatten().tolist()) for x in m}) == 4          # all four halves occur
    c = inpaint.centre_masks(3, 8, 4)
    assert c.sum().item() == 3 * 16 and c[0, 0, 2:6, 2:6].eq(1).all()


def test_samplers_return_the_known_pixels_exactly_and_fill_the_hole():
    ddpm, flow = _tiny_models()
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    m = inpaint.half_masks(6, generator=torch.Generator().manual_seed(1))
    for out in (inpaint.ddpm_inpaint(ddpm, x, m, generator=torch.Generator().manual_seed(0)),
                inpaint.ddpm_inpaint(ddpm, x, m, resample=2, generator=torch.Generator().manual_seed(0)),
                inpaint.flow_inpaint(flow, x, m, steps=4, generator=torch.Generator().manual_seed(0)),
                inpaint.flow_inpaint(flow, x, m, steps=4, guidance=2.0, generator=torch.Generator().manual_seed(0))):
        assert out.shape == x.shape and torch.isfinite(out).all()
        assert torch.allclose(out[m == 0], x[m == 0], atol=1e-5)
        assert not torch.allclose(out[m == 1], x[m == 1], atol=1e-2)


def test_ddpm_inpaint_uses_the_step_it_is_given():
    ddpm, _ = _tiny_models()
    x = torch.zeros(2, 1, 8, 8)
    m = inpaint.centre_masks(2)
    calls = []

    def step(*args):
        calls.append(1)
        return inpaint.repaint_step(*args)
    inpaint.ddpm_inpaint(ddpm, x, m, step=step)
    assert len(calls) == ddpm.schedule.T


def test_ae_inpaint_is_a_projection_that_keeps_the_known_pixels():
    x = torch.rand(4, 1, 8, 8)
    m = inpaint.centre_masks(4)
    out = inpaint.ae_inpaint(lambda z: torch.full_like(z, 0.25), x, m, fill=0.0, iters=3)
    assert torch.equal(out[m == 0], x[m == 0]) and torch.allclose(out[m == 1], torch.tensor(0.25))


def test_infill_tokens_keeps_known_tokens_and_fills_every_hole():
    from genlib.transformer import MaskGIT

    torch.manual_seed(0)
    model = MaskGIT(k=16, n_img=16, cond_vocab=5, n_cond=2, dim=32, layers=1, heads=2).eval()
    tokens = torch.randint(0, 16, (3, 16))
    hole = torch.zeros(3, 16, dtype=torch.bool)
    hole[0, :4], hole[1, 8:], hole[2, ::3] = True, True, True          # different hole sizes per row
    out = inpaint.infill_tokens(model, torch.zeros(3, 2, dtype=torch.long), tokens, hole, steps=4,
                                generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[~hole], tokens[~hole])
    assert (out >= 0).all() and (out < 16).all()                       # no mask token left


def test_masked_scores_and_diversity():
    y = torch.rand(3, 1, 8, 8) * 2 - 1
    m = inpaint.centre_masks(3)
    x = y.clone()
    x[m.expand_as(x).bool()] += 0.1                                    # error 0.1 in the hole only
    x[:, :, 0, 0] += 1.0                                               # outside the hole: ignored
    p, s = inpaint.masked_psnr_ssim(x, y, m, 2.0)
    assert torch.allclose(p, torch.full((3,), 10 * torch.log10(torch.tensor(4 / 0.01)).item(), dtype=p.dtype),
                          atol=1e-4)
    assert (s < 1).all() and (s > 0).all()
    same = torch.stack([y, y, y])
    assert inpaint.hole_diversity(same, m) == 0.0
    two = torch.stack([y, y + m * 0.5])
    assert abs(inpaint.hole_diversity(two, m) - 0.5) < 1e-9
