"""Gallery for chapter 11's spot-the-bug checks: the fixes pass; each wrong version fails in a named
case with a message that names the mistake."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from genlib import spotbugs as sb
from genlib.losses import d_loss, g_loss, gaussian_kl


def test_fixes_and_other_correct_forms_accepted(accepts):
    for bug in sb.BUGS:
        accepts(f"bugs.{bug.slug}", bug.fixed)
    accepts("bugs.reparameterize",
            lambda mu, lv: torch.distributions.Normal(mu, (0.5 * lv).exp()).rsample())
    accepts("bugs.sigmoid_bce", lambda l, t: (t * F.softplus(-l) + (1 - t) * F.softplus(l)).mean())
    accepts("bugs.target_shape", lambda l, y: F.binary_cross_entropy_with_logits(l.squeeze(-1), y))
    accepts("bugs.pixel_scale", lambda x: (x.float() - 127.5) / 127.5)
    accepts("bugs.noise_shape", lambda n, d: torch.randn(n, d))
    accepts("bugs.logits_as_probs", d_loss)
    accepts("bugs.saturating_g_loss", g_loss)


def _d_step_no_grad(G, D, opt_d, real, z):
    with torch.no_grad():
        fake = G(z)
    loss = d_loss(D(real), D(fake))
    opt_d.zero_grad()
    loss.backward()
    opt_d.step()
    return loss


def test_d_step_under_no_grad_accepted(accepts):
    accepts("bugs.d_step_detach", _d_step_no_grad)


# ----------------------------------------------------------------------------- wrong versions
class _ExpLogvarHead(sb.FixedGaussianHead):
    def forward(self, h):
        return self.mu(h), self.logvar(h).exp()  # "log-variance" made positive


class _SoftplusMuHead(sb.FixedGaussianHead):
    def forward(self, h):
        return F.softplus(self.mu(h)), self.logvar(h)


class _DetachedHead(sb.FixedGaussianHead):
    def forward(self, h):
        return self.mu(h), self.logvar(h).detach()


class _LatentMismatchEncoder(sb.FixedConvEncoder):
    def __init__(self, image_size=8, latent_dim=4):
        super().__init__(image_size, latent_dim)
        side = (image_size + 3) // 4
        self.head = nn.Linear(16 * side * side, latent_dim)  # one head for both → half size


class _SigmoidGenerator(sb.FixedMLPGenerator):
    def __init__(self, z_dim=16, out_dim=64, hidden=64):
        super().__init__(z_dim, out_dim, hidden)
        self.net[-1] = nn.Sigmoid()


def _d_step_no_step(G, D, opt_d, real, z):
    loss = d_loss(D(real), D(G(z).detach()))
    loss.backward()
    return loss


def _train_step_g_only(G, D, opt_g, opt_d, real, z):
    opt_d.zero_grad()
    ld = d_loss(D(real), D(G(z).detach()))
    ld.backward()
    opt_d.step()
    return ld, ld


def _train_step_stale_d(G, D, opt_g, opt_d, real, z):
    """G steps against the D from before D's update (and with a saturating loss sign slip)."""
    fake = G(z)
    lg = g_loss(D(fake))
    opt_g.zero_grad()
    lg.backward()
    opt_d.zero_grad()
    ld = d_loss(D(real), D(fake.detach()))
    ld.backward()
    opt_d.step()
    opt_g.step()
    return ld, lg


def _sgd_in_place(w0, grads, lr):
    for g in grads:
        w0.sub_(lr * g.float())
    return w0


def _sgd_returns_bf16(w0, grads, lr):
    return sb.fixed_low_precision_sgd(w0, grads, lr).bfloat16()


_fixed_noise = torch.randn(3, 2)

GALLERY = [
    # name, check, wrong fn, failing case, message fragment
    ("no epsilon", "reparameterize", sb.buggy_reparameterize, "z is random: two calls differ", "nothing is sampled"),
    ("variance as std", "reparameterize", lambda mu, lv: mu + lv.exp() * torch.randn_like(mu),
     "mean mu and std exp(logvar/2)", "exp(logvar) (the variance)"),
    ("uniform noise", "reparameterize", lambda mu, lv: mu + (0.5 * lv).exp() * torch.rand_like(mu),
     "mean mu and std exp(logvar/2)", "std of z"),
    ("detached sample", "reparameterize", lambda mu, lv: sb.fixed_reparameterize(mu, lv).detach(),
     "gradients reach mu and logvar", "no gradient"),
    ("relu heads", "gaussian_head", sb.BuggyGaussianHead, "mu can be negative", "plain Linear"),
    ("exp on logvar", "gaussian_head", _ExpLogvarHead, "logvar can be negative (variance below 1)", "unconstrained"),
    ("softplus on mu", "gaussian_head", _SoftplusMuHead, "mu can be negative", "activation"),
    ("detached logvar", "gaussian_head", _DetachedHead, "gradients reach both heads", "no gradient"),
    ("mse only", "vae_kl_missing", sb.buggy_vae_loss_no_kl, "includes the KL term", "KL term is missing"),
    ("kl mean over dims", "vae_kl_missing",
     lambda xh, x, mu, lv: ((xh - x).pow(2).flatten(1).sum(1) + 0.5 * (mu ** 2 + lv.exp() - 1 - lv).mean(1)).mean(),
     "KL averaged over the batch, like the reconstruction", "averaged over latent dims"),
    ("mean recon + summed kl", "vae_loss_scale", sb.buggy_vae_loss_scale,
     "KL averaged over the batch, like the reconstruction", "summed over the batch"),
    ("mean recon + mean kl", "vae_loss_scale",
     lambda xh, x, mu, lv: F.mse_loss(xh, x) + gaussian_kl(mu, lv).mean(),
     "reconstruction summed over pixels", "averaged over pixels"),
    ("kl sign flipped", "vae_loss_scale",
     lambda xh, x, mu, lv: ((xh - x).pow(2).flatten(1).sum(1) - gaussian_kl(mu, lv)).mean(),
     "KL averaged over the batch, like the reconstruction", "mean KL = 1.0"),
    ("flatten sized for 32x32", "conv_encoder", sb.BuggyConvEncoder, "8×8 images, latent_dim 4",
     "wrong number of features"),
    ("latent half size", "conv_encoder", _LatentMismatchEncoder, "8×8 images, latent_dim 4", "2·latent_dim"),
    ("sigmoid + BCELoss", "sigmoid_bce", sb.buggy_bce_from_logits, "confidently wrong logit: value", "yours is 100"),
    ("clamped probabilities", "sigmoid_bce",
     lambda l, t: F.binary_cross_entropy(torch.sigmoid(l).clamp(1e-7, 1 - 1e-7), t),
     "confidently wrong logit: value", "compute it from logits"),
    ("logits as probabilities", "logits_as_probs", sb.buggy_d_loss_logits, "finite for negative logits",
     "not probabilities"),
    ("hand-written sigmoid BCE", "logits_as_probs",
     lambda r, f: -(torch.log(torch.sigmoid(r)) + torch.log(1 - torch.sigmoid(f))).mean(),
     "stable for logits of ±40", "NaN or inf"),
    ("double sigmoid", "logits_as_probs",
     lambda r, f: F.softplus(-torch.sigmoid(r)).mean() + F.softplus(torch.sigmoid(f)).mean(),
     "matches −E[log σ(real)] − E[log(1 − σ(fake))]", "differs from the reference"),
    ("broadcast (N,1) vs (N,)", "target_shape", sb.buggy_d_loss_labels, "(N, 1) logits, (N,) labels", "broadcast"),
    ("saturating minimax", "saturating_g_loss", sb.buggy_generator_loss,
     "strong gradient when D rejects the fakes", "saturate"),
    ("one minus D", "saturating_g_loss", lambda l: (1 - torch.sigmoid(l)).mean(),
     "strong gradient when D rejects the fakes", "saturate"),
    ("sign flipped", "saturating_g_loss", lambda l: -F.softplus(-l).mean(),
     "minimising it raises D's logits on fakes", "sign"),
    ("per-sample loss", "saturating_g_loss", lambda l: F.softplus(-l), "returns a scalar", "scalar"),
    ("[0, 1] range", "pixel_scale", sb.buggy_to_generator_range, "0 → −1 and 255 → 1", "[0, 1]"),
    ("divide by 128", "pixel_scale", lambda x: x.float() / 128 - 1, "linear in between", "127.5"),
    ("stays uint8", "pixel_scale", lambda x: x, "float32 output of the same shape", "dtype"),
    ("linear output", "generator_tanh", sb.BuggyMLPGenerator, "outputs stay in [−1, 1]", "tanh"),
    ("sigmoid output", "generator_tanh", _SigmoidGenerator, "outputs stay in [−1, 1]", "never negative"),
    ("extra axis", "noise_shape", sb.buggy_sample_noise, "shape (n, z_dim)", "(1, 7, 5)"),
    ("uniform noise", "noise_shape", lambda n, d: torch.rand(n, d), "standard normal, fresh every call",
     "torch.randn, not torch.rand"),
    ("fixed noise", "noise_shape", lambda n, d: torch.ones(n, d) if n > 3 else _fixed_noise,
     "standard normal, fresh every call", "mean"),
    ("no detach", "d_step_detach", sb.buggy_d_step, "G gets no gradient from D's loss", "detach"),
    ("never stepped", "d_step_detach", _d_step_no_step, "D is updated by its own loss", "opt_d.step()"),
    ("D never stepped", "d_never_updated", sb.buggy_train_step_d_frozen_out, "D is updated", "never stepped"),
    ("G never stepped", "d_never_updated", _train_step_g_only, "G is updated", "opt_g.step()"),
    ("stale D for G", "d_never_updated", _train_step_stale_d, "G matches one D step then one G step",
     "update D first"),
    ("D stepped in G step", "d_not_frozen", sb.buggy_train_step_d_not_frozen, "D moves only by its own loss",
     "frozen"),
    ("bf16 weights", "master_weights", sb.buggy_low_precision_sgd, "small updates accumulate", "master weights"),
    ("in place", "master_weights", _sgd_in_place, "returns float32 and leaves w0 alone", "in place"),
    ("bf16 result", "master_weights", _sgd_returns_bf16, "small updates accumulate", "differs"),
]


@pytest.mark.parametrize("label,slug,fn,case,fragment", GALLERY, ids=[g[0] for g in GALLERY])
def test_gallery_rejected(rejects, label, slug, fn, case, fragment):
    rejects(f"bugs.{slug}", fn, case, fragment)


def test_unsolved_class_falls_back_to_reference(capsys):
    from genlib.exercises import check

    class GaussianHead(nn.Module):
        def __init__(self, in_features, latent_dim):
            super().__init__()
            raise NotImplementedError

        def forward(self, h):
            raise NotImplementedError

    assert check("bugs.gaussian_head", GaussianHead) is sb.FixedGaussianHead
    assert "not done yet" in capsys.readouterr().out


def test_crash_in_learner_code_is_reported():
    from genlib.exercises import run_check

    report = run_check("bugs.noise_shape", lambda n, d: torch.randn(n, d).no_such())
    assert not report.passed and "AttributeError" in report.results[0].message


def test_checks_leave_the_learners_random_stream_alone():
    from genlib.exercises import run_check

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for bug in sb.BUGS:
        run_check(f"bugs.{bug.slug}", bug.fixed)
    assert torch.equal(torch.rand(3), expected), "a check changed the global torch RNG state"
