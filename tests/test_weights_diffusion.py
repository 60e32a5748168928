"""The shipped chapter-07 digits models load and sample sensibly (fast: ~10 s of CPU).

Margins are loose against the values measured when the weights were trained (1,000 samples vs
the 297 test digits, real-vs-real 0.255): flow Euler 8 NFE FID 0.22, accuracy 0.995; DDIM 20 steps
0.20; flow 1 NFE 3.0 before reflow, 0.31 after; DCGAN 0.37 (retrained with EMA-averaged batch-norm statistics)."""
import pytest
import torch

from genlib import diffusion as D
from genlib import flow as FL

N = 1000
Y = torch.arange(N) % 10


def _noise(seed=5):
    return torch.randn(N, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def flow_model():
    return D.load_pretrained("digits_flow")


def test_every_shipped_model_loads_frozen_in_eval_mode():
    for name in D.PRETRAINED:
        m = D.load_pretrained(name)
        assert not m.training and not any(p.requires_grad for p in m.parameters())
        assert all(p.dtype == torch.float32 for p in m.parameters())
    assert D.load_pretrained("digits_ddpm").schedule.T == 100


def test_flow_8_nfe_is_good_and_follows_the_label(flow_model):
    r = D.digits_eval(FL.sample_euler(flow_model, _noise(), 8, y=Y), Y)
    assert r["accuracy"] >= 0.9
    assert r["fid"] < 2 * r["real_fid"]


def test_ddim_10_steps_is_good_and_follows_the_label():
    m = D.load_pretrained("digits_ddpm")
    x = D.sample_ddim(m, (N, 1, 8, 8), m.schedule, 10, y=Y, generator=torch.Generator().manual_seed(5))
    r = D.digits_eval(x, Y)
    assert r["accuracy"] >= 0.9
    assert r["fid"] < 3 * r["real_fid"]


def test_reflow_makes_one_step_sampling_much_better(flow_model):
    before = D.digits_eval(FL.sample_euler(flow_model, _noise(), 1, y=Y), Y)["fid"]
    after = D.digits_eval(FL.sample_euler(D.load_pretrained("digits_reflow"), _noise(), 1, y=Y), Y)
    assert after["fid"] * 2 < before and after["accuracy"] >= 0.9


def test_dcgan_samples_are_digits():
    G = D.load_pretrained("digits_dcgan")
    with torch.no_grad():
        x = G(torch.randn(N, G.z_dim, generator=torch.Generator().manual_seed(5)))
    assert x.shape == (N, 1, 8, 8)
    assert D.digits_eval(x)["fid"] < 1.5


def test_shipped_vae_is_the_bench_recipe_and_draws_the_requested_digit():
    """digits_vae = speed.train_digits_vae() with its defaults, float16-rounded (measured when shipped:
    FID 1.36, accuracy 1.00 on 1,000 samples); the speed table's "VAE decoder (ch05)" row samples it."""
    from genlib import speed
    from genlib.vae import MLPVAE
    vae = D.load_pretrained("digits_vae")
    assert isinstance(vae, MLPVAE) and vae.latent == 16 and vae.n_classes == 10
    assert speed.load_digits_models(vae=True)["vae"].state_dict().keys() == vae.state_dict().keys()
    with torch.no_grad():
        x = 2 * torch.sigmoid(vae.decode(torch.randn(N, vae.latent, generator=torch.Generator().manual_seed(5)), Y)) - 1
    r = D.digits_eval(x, Y)
    assert r["accuracy"] >= 0.95
    assert r["real_fid"] < r["fid"] < 2.5  # clearly worse than the flow's 0.22, clearly a digit model
