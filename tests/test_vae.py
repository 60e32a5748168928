"""genlib.vae: data, models, training, the IWAE bound and the collapse diagnostics."""
import math

import pytest
import torch

from genlib import vae
from genlib.losses import gaussian_kl


def test_binary_digits_is_a_fixed_threshold():
    x, y = vae.binary_digits("test")
    assert x.shape == (297, 1, 8, 8) and y.shape == (297,)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(x, vae.binary_digits("test")[0])            # deterministic
    levels = torch.arange(17).float() / 16
    assert vae.binarize(levels).tolist() == [0.0] * 8 + [1.0] * 9  # on from grey level 8


def test_bits_per_dim():
    assert vae.bits_per_dim(64 * math.log(2)) == pytest.approx(1.0)


def test_models_shapes_and_conditioning():
    x = torch.zeros(5, 1, 8, 8)
    for model in (vae.MLPVAE(latent=4, hidden=32), vae.ConvVAE(latent=4, width=4, hidden=16)):
        logits, mu, logvar, z = model(x)
        assert logits.shape == (5, 1, 8, 8) and mu.shape == logvar.shape == z.shape == (5, 4)
    cvae = vae.MLPVAE(latent=3, hidden=16, n_classes=10)
    with pytest.raises(ValueError, match="labels"):
        cvae(x)
    assert cvae(x, torch.arange(5))[0].shape == (5, 1, 8, 8)


def test_iwae_bound_reference():
    log_w = torch.tensor([[-1000.0, 0.0], [-1000.0, math.log(3.0)]])
    out = vae.iwae_bound(log_w)
    assert torch.allclose(out, torch.tensor([-1000.0, math.log(2.0)]))


@pytest.fixture
def one_thread():
    """Tiny models: one thread avoids oversubscription when the machine is busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_training_lowers_the_loss_and_iwae_tightens(one_thread):
    torch.manual_seed(0)
    x, _ = vae.binary_digits("train")
    model = vae.MLPVAE(latent=4, hidden=64)
    hist = vae.train_vae(model, x, steps=150, batch_size=64, lr=3e-3)
    assert sum(hist["loss"][-20:]) / 20 < sum(hist["loss"][:20]) / 20 - 5
    xt = vae.binary_digits("test")[0][:64]
    ev = vae.evaluate(model, xt, samples=20)
    iw1 = vae.iwae_log_px(model, xt, 1).mean().item()
    iw50 = vae.iwae_log_px(model, xt, 50, max_rows=500).mean().item()   # forces chunks of 10 images
    assert iw1 == pytest.approx(-ev["neg_elbo"], abs=1.0)   # k = 1 is a one-sample ELBO estimate
    assert iw50 > iw1 and iw50 > -ev["neg_elbo"]
    assert vae.iwae_log_px(model, xt, 5).shape == (64,)


def test_log_weights_are_log_joint_minus_log_q(one_thread):
    torch.manual_seed(1)
    model = vae.MLPVAE(latent=3, hidden=16)
    x = vae.binary_digits("test")[0][:8]
    lw = vae.log_weights(model, x, 4000)
    assert lw.shape == (4000, 8)
    ev = vae.evaluate(model, x, samples=200)
    assert lw.mean().item() == pytest.approx(-ev["neg_elbo"], abs=0.3)   # E_q[log w] = ELBO


def test_kl_per_dim_and_active_units():
    torch.manual_seed(2)
    model = vae.MLPVAE(latent=6, hidden=16)
    x = vae.binary_digits("test")[0][:50]
    mu, logvar = model.encode(x)
    assert vae.kl_per_dim(model, x).sum().item() == pytest.approx(gaussian_kl(mu, logvar).mean().item(), rel=1e-5)
    head = model.encoder[-1]
    with torch.no_grad():
        head.weight.zero_()            # the posterior no longer depends on x: total collapse
        head.bias[:6] = torch.arange(6.0)
    assert vae.active_units(model, x) == 0
    with torch.no_grad():
        head.weight[0].normal_()       # one mean moves with x again
    assert vae.active_units(model, x) == 1


def test_free_bits_raise_the_loss_of_a_collapsed_model():
    torch.manual_seed(3)
    model = vae.MLPVAE(latent=4, hidden=16)
    x = vae.binary_digits("test")[0][:32]
    with torch.no_grad():
        model.encoder[-1].weight.zero_()
        model.encoder[-1].bias.zero_()  # q = prior: KL = 0 in every dimension
    torch.manual_seed(0)
    plain, rec, kl = vae.vae_loss(model, x)
    torch.manual_seed(0)
    fb, _, _ = vae.vae_loss(model, x, free_bits=0.5)
    assert kl.item() == pytest.approx(0.0, abs=1e-6)
    assert fb.item() == pytest.approx(plain.item() + 4 * 0.5, abs=1e-4)


def test_independent_bernoulli_baseline():
    x = torch.zeros(10, 1, 8, 8)
    x[:5] = 1.0
    p = vae.independent_bernoulli(x)
    assert torch.allclose(p, torch.full((1, 8, 8), 0.5))
    assert torch.allclose(vae.independent_bernoulli_nll(p, x), torch.full((10,), 64 * math.log(2)), atol=1e-4)


def test_samples_and_interpolation_are_probabilities():
    model = vae.MLPVAE(latent=3, hidden=16)
    s = vae.sample(model, 7, seed=0)
    assert s.shape == (7, 1, 8, 8) and s.min() >= 0 and s.max() <= 1
    assert torch.equal(s, vae.sample(model, 7, seed=0))
    x = vae.binary_digits("test")[0][:2]
    assert vae.interpolate(model, x[0], x[1], steps=5).shape == (5, 1, 8, 8)


def test_gaussian_decoders_in_the_loss():
    from genlib.losses import gaussian_nll

    torch.manual_seed(4)
    x = torch.rand(6, 1, 8, 8)
    fixed = vae.MLPVAE(latent=3, hidden=16)
    out = fixed.decode(torch.zeros(6, 3))
    assert torch.allclose(vae.reconstruction_nll(fixed, out, x, x_sigma=0.1), gaussian_nll(x, out, 2 * math.log(0.1)))
    learned = vae.MLPVAE(latent=3, hidden=16, out_channels=2)
    out2 = learned.decode(torch.zeros(6, 3))
    assert out2.shape == (6, 2, 8, 8)
    assert torch.allclose(vae.reconstruction_nll(learned, out2, x),
                          gaussian_nll(x, out2[:, :1], out2[:, 1:].clamp(min=-6.0)))


def test_neg_elbo_per_image_averages_to_evaluate():
    torch.manual_seed(3)
    model = vae.MLPVAE(latent=4, hidden=16)
    x = vae.binary_digits("test")[0][:40]
    per = vae.neg_elbo_per_image(model, x, samples=5, seed=7)
    assert per.shape == (40,) and per.dtype == torch.float64
    assert per.mean().item() == pytest.approx(vae.evaluate(model, x, samples=5, seed=7)["neg_elbo"], rel=1e-5)
    assert per.std().item() > 0                                          # images differ
    model.train()
    vae.neg_elbo_per_image(model, x, samples=1)
    assert model.training                                                # mode restored
