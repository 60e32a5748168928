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


def _sgd_in_place_f32(w0, grads, lr):
    w = w0                                   # an alias, not a copy: w -= … writes into the caller's w0
    for g in grads:
        w -= lr * g.float()
    return w


def _sgd_returns_bf16(w0, grads, lr):
    return sb.fixed_low_precision_sgd(w0, grads, lr).bfloat16()


_fixed_noise = torch.randn(3, 2)


# ----------------------------------------------------------------------------- review holes (ch09-bank §4)
class _FloorSizeEncoder(sb.FixedConvEncoder):
    def __init__(self, image_size=8, latent_dim=4):
        super().__init__(image_size, latent_dim)
        self.head = nn.Linear(16 * (image_size // 4) ** 2, 2 * latent_dim)  # floor: wrong for 7, 30


class _ClampGenerator(sb.FixedMLPGenerator):
    def forward(self, z):
        return self.net[:-1](z).clamp(-1, 1)


class _HardtanhGenerator(sb.FixedMLPGenerator):
    def __init__(self, z_dim=16, out_dim=64, hidden=64):
        super().__init__(z_dim, out_dim, hidden)
        self.net[-1] = nn.Hardtanh()


def _d_step_no_zero_grad(G, D, opt_d, real, z):
    loss = d_loss(D(real), D(G(z).detach()))
    loss.backward()
    opt_d.step()
    return loss


def _train_step_no_zero_grad_d(G, D, opt_g, opt_d, real, z):
    ld = d_loss(D(real), D(G(z).detach()))
    ld.backward()  # BUG: D's .grad still holds the previous G step's gradients
    opt_d.step()
    opt_g.zero_grad()
    lg = g_loss(D(G(z)))
    lg.backward()
    opt_g.step()
    return ld, lg


def _train_step_no_zero_grad_g(G, D, opt_g, opt_d, real, z):
    opt_d.zero_grad()
    ld = d_loss(D(real), D(G(z).detach()))
    ld.backward()
    opt_d.step()
    lg = g_loss(D(G(z)))
    lg.backward()  # BUG: G's gradients accumulate across iterations
    opt_g.step()
    return ld, lg


# ----------------------------------------------------------------------------- new exercises' wrong versions
def _swapped_optimizers(G, D):
    return (torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999)),
            torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999)))


class _DecoderLatent100(sb.FixedConvDecoder):
    def __init__(self, latent_dim=50):
        super().__init__(latent_dim)
        self.fc = nn.Linear(100, 64 * 7 * 7)


class _DecoderViewFirst(sb.FixedConvDecoder):
    def forward(self, z):
        h = self.fc(z.view(z.shape[0], 1, 1, -1))  # a 4-D tensor into the Linear (runs silently)
        return self.deconv(torch.relu(h).view(-1, 64, 7, 7))


class _Decoder32(nn.Module):
    def __init__(self, latent_dim=50):
        super().__init__()
        self.fc = nn.Linear(latent_dim, 64 * 4 * 4)
        self.deconv = nn.Sequential(nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
                                    nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(),
                                    nn.ConvTranspose2d(16, 1, 4, 2, 1), nn.Sigmoid())

    def forward(self, z):
        return self.deconv(torch.relu(self.fc(z)).view(-1, 64, 4, 4))


def _g_step_no_zero_grad(G, D, opt_g, z):
    loss = g_loss(D(G(z)))
    loss.backward()
    opt_g.step()
    return loss


def _batch_real_not_data(data, n, z_dim):
    return torch.randn(n, data.shape[1]), torch.randn(n, z_dim)


def _batch_uniform_noise(data, n, z_dim):
    return data[torch.randint(len(data), (n,))], torch.rand(n, z_dim)

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
    ("divide by 128", "pixel_scale", lambda x: x.float() / 128 - 1, "0 → −1 and 255 → 1", "127.5"),
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
    ("in place", "master_weights", _sgd_in_place, "small updates accumulate", "in place"),
    # learners D: a float32 in-place version reached 0.9 and was told "stored in bfloat16" first
    ("float32 but in place on w0", "master_weights", _sgd_in_place_f32, "small updates accumulate", "in place"),
    # learners D: accepted before — inf at logit 20 with label 0
    ("BCE from log σ and log(1 − σ)", "target_shape",
     lambda l, y: -(y * torch.log(torch.sigmoid(l.reshape(-1))) + (1 - y) * torch.log(1 - torch.sigmoid(l.reshape(-1)))).mean(),
     "confident logits (±20, ±100) stay finite", "log 0"),
    ("bf16 result", "master_weights", _sgd_returns_bf16, "returns float32 and leaves w0 alone", "bfloat16"),
    # holes named in the review of the bank (ch09-bank.md §4): each is rejected by name
    ("eps shared across latent dims", "reparameterize",
     lambda mu, lv: mu + (0.5 * lv).exp() * torch.randn(mu.shape[0], 1),
     "independent noise in every latent dimension", "shared across dimensions"),
    ("eps shared across the batch", "reparameterize",
     lambda mu, lv: mu + (0.5 * lv).exp() * torch.randn(1, mu.shape[1]),
     "mean mu and std exp(logvar/2)", "shared by every sample"),
    ("floor-based flatten size", "conv_encoder", _FloorSizeEncoder,
     "7×7 and 30×30 images (sides not divisible by 4)", "image_size // 4"),
    ("-log(sigmoid) at -200", "saturating_g_loss", lambda l: -torch.log(torch.sigmoid(l)).mean(),
     "finite value and gradient at logit −200", "underflows"),
    ("clamp output", "generator_tanh", _ClampGenerator,
     "saturated outputs still pass a gradient (tanh, not a clamp)", "hardtanh"),
    ("hardtanh output", "generator_tanh", _HardtanhGenerator,
     "saturated outputs still pass a gradient (tanh, not a clamp)", "gradient is 0"),
    ("squeeze at batch 1", "target_shape", lambda l, y: F.binary_cross_entropy_with_logits(l.squeeze(), y),
     "a batch of one: (1, 1) logits, (1,) labels", "squeeze"),
    ("D step without zero_grad", "d_step_detach", _d_step_no_zero_grad,
     "stale gradients in D are cleared (zero_grad before backward)", "opt_d.zero_grad()"),
    ("train step without opt_d.zero_grad", "d_never_updated", _train_step_no_zero_grad_d,
     "stale gradients are cleared before each backward", "opt_d.zero_grad()"),
    ("train step without opt_d.zero_grad, two steps", "d_not_frozen", _train_step_no_zero_grad_d,
     "stale gradients are cleared before each backward", "opt_d.zero_grad()"),
    ("train step without opt_g.zero_grad", "d_not_frozen", _train_step_no_zero_grad_g,
     "stale gradients are cleared before each backward", "opt_g.zero_grad()"),
    ("train step without opt_g.zero_grad, two steps", "d_never_updated", _train_step_no_zero_grad_g,
     "stale gradients are cleared before each backward", "opt_g.zero_grad()"),
    ("half squared error", "vae_loss_scale",
     lambda xh, x, mu, lv: (0.5 * (xh - x).pow(2).flatten(1).sum(1) + gaussian_kl(mu, lv)).mean(),
     "reconstruction summed over pixels", "no ½"),
    ("whole loss divided by pixel count", "vae_kl_missing",
     lambda xh, x, mu, lv: F.mse_loss(xh, x) + gaussian_kl(mu, lv).sum() / x.numel(),
     "KL averaged over the batch, like the reconstruction", "pixel count"),
    # the new exercises (every bug pattern of SOURCES.md)
    ("default Adam betas", "adam_betas", sb.buggy_make_optimizers, "β1 ≤ 0.5 for both optimizers",
     "default betas"),
    ("optimizers swapped", "adam_betas", _swapped_optimizers, "two Adam optimizers, one per network",
     "swapped"),
    ("beta1 0.8", "adam_betas",
     lambda G, D: (torch.optim.Adam(G.parameters(), 2e-4, betas=(0.8, 0.999)),
                   torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))),
     "β1 ≤ 0.5 for both optimizers", "β1 = 0.8"),
    ("source decoder (three bugs)", "conv_decoder", sb.BuggyConvDecoder,
     "the first Linear takes latent_dim inputs", "hard-coded"),
    ("source decoder: view before Linear", "conv_decoder", sb.BuggyConvDecoder,
     "the Linear runs before the view to a feature map", "before the Linear"),
    ("decoder for a 100-d latent", "conv_decoder", _DecoderLatent100,
     "the first Linear takes latent_dim inputs", "100 inputs"),
    ("4-D tensor into the Linear", "conv_decoder", _DecoderViewFirst,
     "the Linear runs before the view to a feature map", "4-D"),
    ("32x32 output", "conv_decoder", _Decoder32, "outputs (N, 1, 28, 28) in [0, 1]", "32×32"),
    ("tanh into BCE", "tanh_bce", sb.buggy_bernoulli_recon, "negative decoder outputs are allowed", "tanh"),
    ("(tanh + 1) / 2 into BCE", "tanh_bce",
     lambda o, x: F.binary_cross_entropy((torch.tanh(o) + 1) / 2, x, reduction="sum") / x.shape[0],
     "matches the Bernoulli NLL (sum over pixels, mean over the batch)", "sigmoid(2·out)"),
    ("sigmoid then BCELoss", "tanh_bce",
     lambda o, x: F.binary_cross_entropy(torch.sigmoid(o), x, reduction="sum") / x.shape[0],
     "stable for confident outputs (±40)", "clamps"),
    ("per-pixel mean", "tanh_bce", lambda o, x: F.binary_cross_entropy_with_logits(o, x),
     "matches the Bernoulli NLL (sum over pixels, mean over the batch)", "summed over pixels"),
    ("G.loss attribute", "loss_attribute", sb.buggy_generator_step,
     "runs on plain nn.Module networks and returns the loss", "carries no loss"),
    ("G step without zero_grad", "loss_attribute", _g_step_no_zero_grad,
     "stale gradients in G are cleared", "opt_g.zero_grad()"),
    ("saturating G step", "loss_attribute",
     lambda G, D, opt, z: sb.fixed_generator_step(G, lambda x: -D(x), opt, z),
     "G moves like one SGD step on g_loss(D(G(z)))", "non-saturating"),
    ("noise from the dataset", "noise_from_data", sb.buggy_sample_batch,
     "z is N(0, I) noise, independent of the data", "rows of the dataset"),
    ("noise cut to the data width", "noise_from_data", sb.buggy_sample_batch,
     "z has shape (batch_size, z_dim), even when z_dim exceeds the data width", "not cut from data rows"),
    ("uniform noise in a batch", "noise_from_data", _batch_uniform_noise,
     "z is N(0, I) noise, independent of the data", "torch.randn"),
    ("real batch not from the data", "noise_from_data", _batch_real_not_data,
     "real rows are rows of the data", "not rows of the data"),
    ("resize without channel axis", "resize_channel", sb.buggy_resize_digits,
     "(N, H, W) → (N, 1, size, size)", "only the last axis"),
    ("nearest instead of bilinear", "resize_channel",
     lambda x, n: F.interpolate(x.unsqueeze(1), size=(n, n)), "bilinear values, up and down", "bilinear"),
    ("undefined backend alias", "backend_alias", sb.buggy_sampling, "runs: every name it uses is defined",
     "never imported"),
    ("backend alias fixed, no epsilon", "backend_alias", sb.buggy_reparameterize,
     "z is random: two calls differ", "nothing is sampled"),
]


@pytest.mark.parametrize("label,slug,fn,case,fragment", GALLERY, ids=[g[0] for g in GALLERY])
def test_gallery_rejected(rejects, label, slug, fn, case, fragment):
    report = rejects(f"bugs.{slug}", fn, case, fragment)
    if label in _SEVERAL_BUGS:       # a snippet with several bugs: each has its case; only one can lead
        return
    lead = report.lead.name if hasattr(report, "lead") else report.failed_cases[0]   # what the learner reads first
    assert lead == case, f"bugs.{slug}: the first ✗ is {lead!r}, expected {case!r}\n{report.text()}"


_SEVERAL_BUGS = {"source decoder: view before Linear", "noise from the dataset"}


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


def _train_step_module_zero_grad(G, D, opt_g, opt_d, real, z):
    D.zero_grad()
    ld = d_loss(D(real), D(G(z).detach()))
    ld.backward()
    opt_d.step()
    G.zero_grad()
    lg = g_loss(D(G(z)))
    lg.backward()
    opt_g.step()
    return ld, lg


class _LazyEncoder(sb.FixedConvEncoder):
    def __init__(self, image_size=8, latent_dim=4):
        super().__init__(image_size, latent_dim)
        self.head = nn.LazyLinear(2 * latent_dim)  # sized by the first forward: also a correct fix


class _LazyDecoder(sb.FixedConvDecoder):
    def __init__(self, latent_dim=50):
        super().__init__(latent_dim)
        self.fc = nn.LazyLinear(64 * 7 * 7)


class _CroppedDecoder(_Decoder32):
    def forward(self, z):
        return super().forward(z)[:, :, 2:-2, 2:-2]  # 32 → 28 by cropping: also a correct fix


def test_other_correct_fixes_accepted(accepts):
    """Correct fixes the review found rejected, and other honest variants."""
    # the buggy snippet's contract is (N, 1) logits and (N,) labels: reshaping the labels is a fix
    accepts("bugs.target_shape", lambda l, y: F.binary_cross_entropy_with_logits(l, y.unsqueeze(1)))
    accepts("bugs.target_shape", lambda l, y: F.binary_cross_entropy_with_logits(l.squeeze(1), y))
    accepts("bugs.d_never_updated", _train_step_module_zero_grad)
    accepts("bugs.d_not_frozen", _train_step_module_zero_grad)
    accepts("bugs.reparameterize", lambda mu, lv: mu + (0.5 * lv).exp() * torch.randn(mu.shape))
    accepts("bugs.backend_alias", lambda mu, lv: torch.distributions.Normal(mu, (0.5 * lv).exp()).rsample())
    accepts("bugs.conv_encoder", _LazyEncoder)
    accepts("bugs.conv_decoder", _LazyDecoder)
    accepts("bugs.conv_decoder", _CroppedDecoder)
    accepts("bugs.saturating_g_loss", lambda l: -F.logsigmoid(l).mean())
    accepts("bugs.generator_tanh", sb.FixedMLPGenerator)
    accepts("bugs.adam_betas", lambda G, D: (torch.optim.Adam(G.parameters(), 2e-4, betas=(0.0, 0.9)),
                                             torch.optim.Adam(D.parameters(), 2e-4, betas=(0.0, 0.9))))
    accepts("bugs.tanh_bce", lambda o, x: (F.softplus(o) - x * o).sum() / x.shape[0])
    accepts("bugs.resize_channel", lambda x, n: F.interpolate(x[:, None], size=n, mode="bilinear"))
    # learners D: "bilinear" does not fix these two settings; both were rejected
    accepts("bugs.resize_channel", lambda x, n: F.interpolate(x[:, None], size=(n, n), mode="bilinear",
                                                              antialias=True))
    accepts("bugs.resize_channel", lambda x, n: F.interpolate(x[:, None], size=(n, n), mode="bilinear",
                                                              align_corners=True))
    accepts("bugs.noise_from_data", lambda data, n, d: (data[torch.randperm(len(data))[:n]], torch.randn(n, d)))
