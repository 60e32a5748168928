"""Latent vs pixel (chapter 09, section 4): labels, the VQ latent round trip, the two U-Nets."""
import torch

from genlib import latent, t2i
from genlib.data import shapes


def test_class_labels_round_trip():
    d = shapes(300, seed=3)
    y = latent.class_labels(d.shape, d.color, d.size)
    assert int(y.min()) >= 0 and int(y.max()) < latent.N_CLASSES
    s, c, z = latent.attributes(y)
    assert torch.equal(s, d.shape) and torch.equal(c, d.color) and torch.equal(z, d.size)


def test_vq_latent_is_standardised_and_decodes_back_to_the_images():
    d = shapes(400, seed=2)
    space = latent.VQLatent(reference=d.images)
    z = space.encode(d.images)
    assert z.shape == (400, 16, 8, 8)
    assert abs(z.mean().item()) < 1e-3 and abs(z.std().item() - 1) < 1e-3
    acc = t2i.attribute_accuracy(space.decode(z), d.shape, d.color, d.size)
    assert acc["all"] > 0.9, acc
    # decoding snaps to the codebook: a small perturbation decodes to the same image
    assert torch.allclose(space.decode(z + 0.01 * torch.randn_like(z)), space.decode(z), atol=1e-5)


def test_the_same_unet_body_for_pixels_and_latents():
    pix, lat = latent.unet(3), latent.unet(16)
    t, y = torch.rand(4), torch.arange(4)
    assert pix(torch.randn(4, 3, 16, 16), t, y).shape == (4, 3, 16, 16)
    assert lat(torch.randn(4, 16, 8, 8), t, y).shape == (4, 16, 8, 8)
    body = lambda m: {k: v.shape for k, v in m.state_dict().items() if not k.startswith(("inp", "out.2"))}
    assert body(pix) == body(lat)
    assert torch.equal(latent.unet(3).inp.weight, latent.unet(3).inp.weight)   # seeded
