"""Gallery for chapter 03's checks: the models and the training step, right and wrong."""
import pytest
import torch
from torch import nn

from genlib import gan, models
from genlib.losses import d_loss, g_loss
from genlib.exercises import assert_first_failure

@pytest.fixture
def rejects():
    """Gallery assertion: the named case is the FIRST message the learner reads (one diagnosis per
    mistake), and it contains the fragment."""
    return assert_first_failure


def test_references_accepted(accepts):
    accepts("gan.mlp_generator", models.MLPGenerator)
    accepts("gan.mlp_discriminator", models.MLPDiscriminator)
    accepts("gan.dcgan_generator", models.DCGANGenerator)
    accepts("gan.dcgan_discriminator", models.DCGANDiscriminator)
    accepts("gan.train_step", gan.train_step)


# ----------------------------------------------------------------------------- generators
class SigmoidG(models.MLPGenerator):  # data in [0, 1] thinking
    def forward(self, z):
        return torch.sigmoid(self.net[:-1](z)).view(-1, 1, 8, 8)


class LinearG(models.MLPGenerator):  # the S3.6 bug: no output nonlinearity
    def forward(self, z):
        return self.net[:-1](z).view(-1, 1, 8, 8)


class FixedZG(models.MLPGenerator):  # hard-codes the noise size (S0.5/S4.7 style)
    def __init__(self, z_dim=32):
        super().__init__(z_dim=100)


class HugeG(models.MLPGenerator):
    def __init__(self, z_dim=32):
        super().__init__(z_dim, hidden=2048)


class UnusedLayerG(models.MLPGenerator):
    def __init__(self, z_dim=32):
        super().__init__(z_dim)
        self.extra = nn.Linear(64, 64)


class IgnoresZG(models.MLPGenerator):
    def forward(self, z):
        return self.net(torch.zeros_like(z)).view(-1, 1, 8, 8)


class FlatG(models.MLPGenerator):  # returns (N, 64)
    def forward(self, z):
        return self.net(z)


class NoConvG(models.MLPGenerator):  # an MLP handed in as a DCGAN
    pass


class DenseThenConvG(nn.Module):  # H4: an MLP makes the 8×8 image, one 3×3 conv polishes it
    def __init__(self, z_dim=32, ch=32):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(z_dim, 256), nn.ReLU(), nn.Linear(256, ch * 64), nn.ReLU())
        self.conv, self.ch = nn.Conv2d(ch, 1, 3, padding=1), ch

    def forward(self, z):
        return torch.tanh(self.conv(self.fc(z).view(-1, self.ch, 8, 8)))


class UpsampleConvG(nn.Module):  # a correct DCGAN variant: nn.Upsample + Conv2d instead of ConvTranspose2d
    def __init__(self, z_dim=32, ch=32):
        super().__init__()
        self.ch = ch
        self.project = nn.Sequential(nn.Linear(z_dim, 2 * ch * 16), nn.BatchNorm1d(2 * ch * 16), nn.ReLU())
        self.up = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(2 * ch, ch, 3, padding=1),
                                nn.BatchNorm2d(ch), nn.ReLU(), nn.Conv2d(ch, 1, 3, padding=1), nn.Tanh())

    def forward(self, z):
        return self.up(self.project(z).view(-1, 2 * self.ch, 4, 4))


def test_dcgan_upsample_conv_generator_accepted(accepts):
    accepts("gan.dcgan_generator", UpsampleConvG)


G_GALLERY = [
    ("sigmoid output", "gan.mlp_generator", SigmoidG, "tanh output in [-1, 1], like the data", "S0.4"),
    ("linear output", "gan.mlp_generator", LinearG, "tanh output in [-1, 1], like the data", "unbounded"),
    ("fixed z size", "gan.mlp_generator", FixedZG, "maps (N, z_dim) noise to (N, 1, 8, 8)", "mat1"),
    ("too big", "gan.mlp_generator", HugeG, "parameter count fits 8×8 digits", "CPU"),
    ("unused layer", "gan.mlp_generator", UnusedLayerG, "every parameter gets a gradient", "extra"),
    ("ignores z", "gan.mlp_generator", IgnoresZG, "different noise, different images", "ignores z"),
    ("flat output", "gan.mlp_generator", FlatG, "maps (N, z_dim) noise to (N, 1, 8, 8)", "(5, 1, 8, 8)"),
    ("no convolution", "gan.dcgan_generator", NoConvG, "builds the image with (transposed) convolutions",
     "transposed"),
    ("dense 8×8 then one conv (H4)", "gan.dcgan_generator", DenseThenConvG,
     "builds the image with (transposed) convolutions", "full 8×8"),
]


@pytest.mark.parametrize("label,name,cls,case,fragment", G_GALLERY, ids=[g[0] for g in G_GALLERY])
def test_generator_gallery(rejects, label, name, cls, case, fragment):
    rejects(name, cls, case, fragment)


# ----------------------------------------------------------------------------- discriminators
class SigmoidD(models.DCGANDiscriminator):  # probabilities instead of logits (S4.7, S0.4)
    def forward(self, x):
        return torch.sigmoid(self.net(x)).view(-1)


class ColumnD(models.DCGANDiscriminator):  # (N, 1) output
    def forward(self, x):
        return self.net(x)


class DetachedD(models.MLPDiscriminator):
    def forward(self, x):
        return self.net(x.detach()).view(-1)


class NoConvD(models.MLPDiscriminator):
    pass


class TanhD(models.DCGANDiscriminator):  # H5: tanh copied from G
    def forward(self, x):
        return torch.tanh(self.net(x)).view(-1)


class LogSigmoidD(models.DCGANDiscriminator):  # H5: log-probabilities, unbounded below only
    def forward(self, x):
        return nn.functional.logsigmoid(self.net(x)).view(-1)


class PoolD(nn.Module):  # H4: stride-1 convolutions and max pooling, what DCGAN replaced
    def __init__(self, ch=32):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, ch, 3, padding=1), nn.LeakyReLU(0.2), nn.MaxPool2d(2),
                                 nn.Conv2d(ch, 2 * ch, 3, padding=1), nn.LeakyReLU(0.2), nn.MaxPool2d(2),
                                 nn.Flatten(), nn.Linear(2 * ch * 4, 1))

    def forward(self, x):
        return self.net(x).view(-1)


class BatchNormD(nn.Module):  # H6: batch norm in D mixes the images of a batch
    def __init__(self, ch=32):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, ch, 4, 2, 1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(ch, 2 * ch, 4, 2, 1), nn.BatchNorm2d(2 * ch), nn.LeakyReLU(0.2),
                                 nn.Flatten(), nn.Linear(2 * ch * 4, 1))

    def forward(self, x):
        return self.net(x).view(-1)


D_GALLERY = [
    ("sigmoid output", "gan.dcgan_discriminator", SigmoidD, "returns logits, not probabilities", "sigmoid"),
    ("(N,1) output", "gan.dcgan_discriminator", ColumnD, "maps (N, 1, 8, 8) to logits of shape (N,)",
     "S0.4"),
    ("detached input", "gan.mlp_discriminator", DetachedD, "gradient reaches the input image", "detach"),
    ("no convolution", "gan.dcgan_discriminator", NoConvD, "downsamples with strided convolutions",
     "Conv2d"),
    ("tanh output (H5)", "gan.dcgan_discriminator", TanhD, "returns logits, not probabilities", "tanh"),
    ("log-sigmoid output (H5)", "gan.dcgan_discriminator", LogSigmoidD, "returns logits, not probabilities",
     "log-sigmoid"),
    ("stride 1 + max pooling (H4)", "gan.dcgan_discriminator", PoolD, "downsamples with strided convolutions",
     "MaxPool2d"),
    ("batch norm in D (H6)", "gan.dcgan_discriminator", BatchNormD,
     "each image's logit depends on that image alone (no batch norm)", "BatchNorm2d"),
]


@pytest.mark.parametrize("label,name,cls,case,fragment", D_GALLERY, ids=[g[0] for g in D_GALLERY])
def test_discriminator_gallery(rejects, label, name, cls, case, fragment):
    rejects(name, cls, case, fragment)


# ----------------------------------------------------------------------------- training step
VALUES = "returned values match the reference step on a copy of the same state"


def _logged(rl, fl, ld, lg):
    return {"d_loss": ld.item(), "g_loss": lg.item(), "d_real": torch.sigmoid(rl).mean().item(),
            "d_fake": torch.sigmoid(fl).mean().item()}


def step_no_detach(G, D, opt_g, opt_d, real, z):
    G.train(), D.train()
    fake = G(z)
    opt_d.zero_grad()
    rl, fl = D(real), D(fake)  # gradients leak into G
    ld = d_loss(rl, fl)
    ld.backward()
    opt_d.step()
    lg = g_loss(D(G(z)))  # recomputed, so no graph error, but...
    lg.backward()  # no opt_g.zero_grad(): G's grad still holds the D step's
    opt_g.step()
    return _logged(rl, fl, ld, lg)


def step_no_detach_but_zeroed(G, D, opt_g, opt_d, real, z):
    G.train(), D.train()
    fake = G(z)
    opt_d.zero_grad()
    rl, fl = D(real), D(fake)
    ld = d_loss(rl, fl)
    ld.backward()
    opt_d.step()
    opt_g.zero_grad()
    lg = g_loss(D(G(z)))
    lg.backward()
    opt_g.step()
    return _logged(rl, fl, ld, lg)


def step_no_detach_crash(G, D, opt_g, opt_d, real, z):
    G.train(), D.train()
    fake = G(z)
    opt_d.zero_grad()
    rl, fl = D(real), D(fake)  # backward frees G's graph ...
    ld = d_loss(rl, fl)
    ld.backward()
    opt_d.step()
    opt_g.zero_grad()
    lg = g_loss(D(fake))  # ... so this backward raises
    lg.backward()
    opt_g.step()
    return _logged(rl, fl, ld, lg)


def step_wrong_optimizer(G, D, opt_g, opt_d, real, z):
    G.train(), D.train()
    fake = G(z)
    opt_d.zero_grad()
    rl, fl = D(real), D(fake.detach())
    ld = d_loss(rl, fl)
    ld.backward()
    opt_d.step()
    opt_g.zero_grad()
    lg = g_loss(D(fake))
    lg.backward()
    opt_d.step()  # wrong optimiser: D takes the generator's step
    return _logged(rl, fl, ld, lg)


def step_zero_after_backward(G, D, opt_g, opt_d, real, z):
    G.train(), D.train()
    fake = G(z)
    rl, fl = D(real), D(fake.detach())
    ld = d_loss(rl, fl)
    ld.backward()
    opt_d.zero_grad()  # wipes the gradient just computed
    opt_d.step()
    opt_g.zero_grad()
    lg = g_loss(D(fake))
    lg.backward()
    opt_g.step()
    return _logged(rl, fl, ld, lg)


def step_no_d_zero_grad(G, D, opt_g, opt_d, real, z):
    G.train(), D.train()
    fake = G(z)
    rl, fl = D(real), D(fake.detach())
    ld = d_loss(rl, fl)
    ld.backward()  # accumulates on top of the previous G step's gradient in D
    opt_d.step()
    opt_g.zero_grad()
    lg = g_loss(D(fake))
    lg.backward()
    opt_g.step()
    return _logged(rl, fl, ld, lg)


def step_no_train_mode(G, D, opt_g, opt_d, real, z):
    fake = G(z)
    opt_d.zero_grad()
    rl, fl = D(real), D(fake.detach())
    ld = d_loss(rl, fl)
    ld.backward()
    opt_d.step()
    opt_g.zero_grad()
    lg = g_loss(D(fake))
    lg.backward()
    opt_g.step()
    return _logged(rl, fl, ld, lg)


def step_g_detached(G, D, opt_g, opt_d, real, z):
    G.train(), D.train()
    fake = G(z).detach()  # detached once for both steps: G never learns
    opt_d.zero_grad()
    rl, fl = D(real), D(fake)
    ld = d_loss(rl, fl)
    ld.backward()
    opt_d.step()
    opt_g.zero_grad()
    lg = g_loss(D(fake))
    lg.backward()
    opt_g.step()
    return _logged(rl, fl, ld, lg)


def step_logits_logged(G, D, opt_g, opt_d, real, z):
    out = gan.train_step(G, D, opt_g, opt_d, real, z)
    out["d_real"] = D(real).mean().item() - 5  # logits, not probabilities
    return out


def step_saturating(G, D, opt_g, opt_d, real, z):
    from genlib.losses import saturating_g_loss
    return gan.train_step(G, D, opt_g, opt_d, real, z, g_loss_fn=saturating_g_loss)


def step_swapped_probs(G, D, opt_g, opt_d, real, z):  # H3
    out = gan.train_step(G, D, opt_g, opt_d, real, z)
    out["d_real"], out["d_fake"] = out["d_fake"], out["d_real"]
    return out


def step_constants(G, D, opt_g, opt_d, real, z):  # H3: right updates, made-up log
    gan.train_step(G, D, opt_g, opt_d, real, z)
    return {"d_loss": 0.0, "g_loss": 0.0, "d_real": 0.5, "d_fake": 0.5}


def step_post_update_probs(G, D, opt_g, opt_d, real, z):  # H3: probabilities from the updated D
    out = gan.train_step(G, D, opt_g, opt_d, real, z)
    with torch.no_grad():
        out["d_real"] = torch.sigmoid(D(real)).mean().item()
        out["d_fake"] = torch.sigmoid(D(G(z))).mean().item()
    return out


def step_raw_logit_means(G, D, opt_g, opt_d, real, z):  # H3: mean logits (may fall in [0, 1])
    G.train(), D.train()
    fake = G(z)
    opt_d.zero_grad()
    rl, fl = D(real), D(fake.detach())
    ld = d_loss(rl, fl)
    ld.backward()
    opt_d.step()
    opt_g.zero_grad()
    lg = g_loss(D(fake))
    lg.backward()
    opt_g.step()
    return {"d_loss": ld.item(), "g_loss": lg.item(), "d_real": rl.mean().item(), "d_fake": fl.mean().item()}


def step_sigmoid_of_mean(G, D, opt_g, opt_d, real, z):
    G.train(), D.train()
    fake = G(z)
    opt_d.zero_grad()
    rl, fl = D(real), D(fake.detach())
    ld = d_loss(rl, fl)
    ld.backward()
    opt_d.step()
    opt_g.zero_grad()
    lg = g_loss(D(fake))
    lg.backward()
    opt_g.step()
    return {"d_loss": ld.item(), "g_loss": lg.item(), "d_real": torch.sigmoid(rl.mean()).item(),
            "d_fake": torch.sigmoid(fl.mean()).item()}


def step_losses_swapped(G, D, opt_g, opt_d, real, z):
    out = gan.train_step(G, D, opt_g, opt_d, real, z)
    out["d_loss"], out["g_loss"] = out["g_loss"], out["d_loss"]
    return out


# second entries on an implementation already in the gallery: their case's own message, read after the
# first one is fixed (the first message is asserted by the first entry)
ALSO = {"missing detach, G grads polluted", "mean raw logits, values (H3)"}

STEP_GALLERY = [
    ("missing detach", step_no_detach, "D step: no gradient leaks into G", "detach"),
    ("missing detach, G grads polluted", step_no_detach, "G step: gradient of g_loss through D", "detach"),
    ("missing detach but zeroed", step_no_detach_but_zeroed, "D step: no gradient leaks into G", "not detached"),
    ("missing detach, graph freed", step_no_detach_crash, "returns d_loss, g_loss, d_real, d_fake", "fake.detach()"),
    ("wrong optimiser", step_wrong_optimizer, "steps opt_d, then opt_g, once each", "wrong optimiser"),
    ("zero_grad after backward", step_zero_after_backward,
     "D step: gradient of d_loss on detached fakes, freshly zeroed", "before loss.backward()"),
    ("no D zero_grad", step_no_d_zero_grad, "D step: gradient of d_loss on detached fakes, freshly zeroed",
     "opt_d.zero_grad()"),
    ("eval mode", step_no_train_mode, "both models in train mode during the step", "G.train()"),
    ("G detached", step_g_detached, "G step: gradient of g_loss through D", "without .detach()"),
    ("logits logged", step_logits_logged, "returns d_loss, g_loss, d_real, d_fake", "probability"),
    ("saturating G loss", step_saturating, "G step: gradient of g_loss through D", "g_loss"),
    ("d_real/d_fake swapped (H3)", step_swapped_probs, VALUES, "swapped"),
    ("constants logged (H3)", step_constants, VALUES, "reference step"),
    ("probabilities after D's update (H3)", step_post_update_probs, VALUES, "after its update"),
    ("mean raw logits (H3)", step_raw_logit_means, "returns d_loss, g_loss, d_real, d_fake", "sigmoid(logits)"),
    ("mean raw logits, values (H3)", step_raw_logit_means, VALUES, "raw logits"),
    ("sigmoid of the mean logit", step_sigmoid_of_mean, VALUES, "mean of the probabilities"),
    ("d_loss and g_loss swapped", step_losses_swapped, VALUES, "d_loss"),
]


@pytest.mark.parametrize("label,fn,case,fragment", STEP_GALLERY, ids=[g[0] for g in STEP_GALLERY])
def test_train_step_gallery(rejects, label, fn, case, fragment):
    rejects("gan.train_step", fn, case, fragment, first=label not in ALSO)


def test_train_step_recomputing_fakes_accepted(accepts):
    """Recomputing G(z) for the G step is as correct as reusing the non-detached fakes."""
    def step(G, D, opt_g, opt_d, real, z):
        G.train(), D.train()
        opt_d.zero_grad()
        with torch.no_grad():
            fake = G(z)
        rl, fl = D(real), D(fake)
        ld = d_loss(rl, fl)
        ld.backward()
        opt_d.step()
        opt_g.zero_grad()
        lg = g_loss(D(G(z)))
        lg.backward()
        opt_g.step()
        return {"d_loss": ld.item(), "g_loss": lg.item(), "d_real": torch.sigmoid(rl).mean().item(),
                "d_fake": torch.sigmoid(fl).mean().item()}
    accepts("gan.train_step", step)


def test_train_step_fresh_noise_for_g_accepted(accepts):
    """H9: drawing fresh z for the G step (Goodfellow et al. 2014, Algorithm 1) is a valid variant."""
    def step(G, D, opt_g, opt_d, real, z):
        G.train(), D.train()
        opt_d.zero_grad()
        rl, fl = D(real), D(G(z).detach())
        ld = d_loss(rl, fl)
        ld.backward()
        opt_d.step()
        opt_g.zero_grad()
        lg = g_loss(D(G(torch.randn_like(z))))
        lg.backward()
        opt_g.step()
        return {"d_loss": ld.item(), "g_loss": lg.item(), "d_real": torch.sigmoid(rl).mean().item(),
                "d_fake": torch.sigmoid(fl).mean().item()}
    accepts("gan.train_step", step)


# ------------------------------------------------------------------ turn-3 reviews (issue 23): first messages
@pytest.mark.parametrize("fn,case,frag", [
    (step_no_detach, "D step: no gradient leaks into G", "detach"),
    (step_zero_after_backward, "D step: gradient of d_loss on detached fakes, freshly zeroed", "zero_grad"),
], ids=["missing detach: one message, not seven (learner B)", "zero_grad after step: no g_loss advice (learner B)"])
def test_train_step_one_diagnosis(rejects, fn, case, frag):
    """Learner B: a missing detach printed the same sentence on 7 lines; zero_grad after backward also got
    "return loss_g.item() … through the updated D", for code that did that. Now one full message, and the
    returned values are listed as a consequence of the step's mistake."""
    report = rejects("gan.train_step", fn, case, frag)
    text = report.text()
    assert sum(" — " in line for line in text.splitlines()) == 1, text
    assert "return loss_g.item()" not in text, text
