"""Spot-the-bug: short PyTorch snippets that carry the source articles' bug patterns.

Every entry of ``BUGS`` pairs a *buggy* snippet with its *fixed* reference and the source item
(S-id, see SOURCES.md) whose mistake it reproduces. Chapter 11 shows the buggy code; the learner
writes the fix and ``check("bugs.<slug>", fix)`` runs the behavioural tests in
``genlib/checks/ch11_interview.py``, which reject every buggy version here and accept every fix.

All snippets are ours, written in plain PyTorch; none is copied from the articles.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlib.losses import d_loss, g_loss, gaussian_kl


@dataclass(frozen=True)
class Bug:
    slug: str            # the check is "bugs.<slug>"
    task: str            # what the code is for (neutral: the notebook heading, no spoiler)
    title: str           # the bug's name (shown with the explanation)
    source_ids: tuple    # S-ids whose mistake this reproduces
    buggy: Any           # function or nn.Module class
    fixed: Any           # the reference fix (same signature)
    whats_wrong: str     # one or two sentences: the bug and the fix


# ============================================================================ VAE bugs
def buggy_reparameterize(mu, logvar):
    """mu, logvar: (N, D) → z: (N, D)."""
    return mu + torch.exp(0.5 * logvar)  # BUG: no ε, so nothing is sampled


def fixed_reparameterize(mu, logvar):
    """mu, logvar: (N, D) → z: (N, D), a sample of N(mu, diag(e^logvar))."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


class BuggyGaussianHead(nn.Module):
    """h: (N, in_features) → (mu, logvar), each (N, latent_dim)."""

    def __init__(self, in_features, latent_dim):
        super().__init__()
        self.mu = nn.Linear(in_features, latent_dim)
        self.logvar = nn.Linear(in_features, latent_dim)

    def forward(self, h):
        # BUG: ReLU forces mu ≥ 0 and logvar ≥ 0 (variance ≥ 1)
        return torch.relu(self.mu(h)), torch.relu(self.logvar(h))


class FixedGaussianHead(nn.Module):
    """h: (N, in_features) → (mu, logvar), each (N, latent_dim), both unconstrained."""

    def __init__(self, in_features, latent_dim):
        super().__init__()
        self.mu = nn.Linear(in_features, latent_dim)
        self.logvar = nn.Linear(in_features, latent_dim)

    def forward(self, h):
        return self.mu(h), self.logvar(h)


def buggy_vae_loss_no_kl(x_hat, x, mu, logvar):
    """VAE loss, mean over the batch. Scalar. Per sample: the squared error summed over pixels (no ½)
    plus KL(q(z|x) ‖ N(0, I)) summed over latent dims."""
    return F.mse_loss(x_hat, x)  # BUG: no KL term — this trains a plain autoencoder


def buggy_vae_loss_scale(x_hat, x, mu, logvar):
    """VAE loss, mean over the batch. Scalar. Per sample: the squared error summed over pixels (no ½)
    plus KL(q(z|x) ‖ N(0, I)) summed over latent dims."""
    recon = F.mse_loss(x_hat, x)  # BUG: mean over N·D pixels, while the KL below is summed over N
    return recon + gaussian_kl(mu, logvar).sum()


def fixed_vae_loss(x_hat, x, mu, logvar):
    """Negative ELBO up to a constant, for a Gaussian decoder of variance ½ (so the reconstruction term
    is the plain squared error), mean over the batch. Scalar.

    x_hat, x: (N, ...) · mu, logvar: (N, D). Per sample: squared error summed over pixels plus
    KL(q(z|x) ‖ N(0, I)) summed over latent dims; then the mean over the N samples.
    """
    recon = (x_hat - x).pow(2).flatten(1).sum(1)
    return (recon + gaussian_kl(mu, logvar)).mean()


class BuggyConvEncoder(nn.Module):
    """x: (N, 1, S, S) → (mu, logvar), each (N, latent_dim)."""

    def __init__(self, image_size=8, latent_dim=4):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(),
                                  nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(16 * 8 * 8, 2 * latent_dim)  # BUG: sized for 32×32 inputs

    def forward(self, x):
        return self.head(self.conv(x)).chunk(2, dim=1)


class FixedConvEncoder(nn.Module):
    """x: (N, 1, S, S) → (mu, logvar), each (N, latent_dim); two stride-2 convs: S → S/4."""

    def __init__(self, image_size=8, latent_dim=4):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(),
                                  nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(), nn.Flatten())
        side = (image_size + 3) // 4  # each conv (k=3, s=2, p=1) maps s → ceil(s/2)
        self.head = nn.Linear(16 * side * side, 2 * latent_dim)

    def forward(self, x):
        return self.head(self.conv(x)).chunk(2, dim=1)


# ============================================================================ GAN loss bugs
def buggy_bce_from_logits(logits, targets):
    """Mean BCE. logits, targets: (N,). Scalar."""
    return F.binary_cross_entropy(torch.sigmoid(logits), targets)  # BUG: saturates in float32


def fixed_bce_from_logits(logits, targets):
    """Mean BCE computed from logits (log-sum-exp inside, never saturates). Scalar."""
    return F.binary_cross_entropy_with_logits(logits, targets)


def buggy_d_loss_logits(real_out, fake_out):
    """D ends in a plain Linear layer. real_out, fake_out: (N,). Scalar."""
    # BUG: treats logits as probabilities (hand-written log: NaN for negative values)
    return -(torch.log(real_out) + torch.log(1 - fake_out)).mean()


def fixed_d_loss_logits(real_out, fake_out):
    """−E[log σ(real)] − E[log(1 − σ(fake))] from logits. Scalar."""
    return F.softplus(-real_out).mean() + F.softplus(fake_out).mean()


def buggy_d_loss_labels(logits, labels):
    """Mean BCE of D's logits (N, 1) against labels (N,). Scalar."""
    # BUG: (N, 1) against (N,) broadcasts to an (N, N) matrix of every pair
    return (labels * F.softplus(-logits) + (1 - labels) * F.softplus(logits)).mean()


def fixed_d_loss_labels(logits, labels):
    """Mean BCE of D's logits (N, 1) or (N,) against labels (N,). Scalar."""
    return F.binary_cross_entropy_with_logits(logits.reshape(-1), labels.reshape(-1).float())


def buggy_generator_loss(fake_logits):
    """Generator loss from D's logits on fakes (N,). Scalar."""
    return torch.log(1 - torch.sigmoid(fake_logits)).mean()  # BUG: saturating minimax form


def fixed_generator_loss(fake_logits):
    """Non-saturating −E[log σ(fake_logits)]. Scalar."""
    return F.softplus(-fake_logits).mean()


# ============================================================================ data and shapes
def buggy_to_generator_range(x):
    """x: uint8 pixels in [0, 255] → float32 for a tanh generator."""
    return x.float() / 255  # BUG: [0, 1], but a tanh generator produces [-1, 1]


def fixed_to_generator_range(x):
    """x: uint8 pixels in [0, 255] → float32 in [-1, 1] (0 → -1, 255 → 1)."""
    return x.float() / 127.5 - 1


class BuggyMLPGenerator(nn.Module):
    """z: (N, z_dim) → (N, out_dim) for data scaled to [-1, 1]."""

    def __init__(self, z_dim=16, out_dim=64, hidden=64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, out_dim))  # BUG: unbounded linear output

    def forward(self, z):
        return self.net(z)


class FixedMLPGenerator(nn.Module):
    """z: (N, z_dim) → (N, out_dim) in [-1, 1] (tanh output matches data scaled to [-1, 1])."""

    def __init__(self, z_dim=16, out_dim=64, hidden=64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, out_dim), nn.Tanh())

    def forward(self, z):
        return self.net(z)


def buggy_sample_noise(n, z_dim):
    """Latent noise for a generator that takes (N, z_dim)."""
    return torch.randn(n, z_dim).unsqueeze(0)  # BUG: (1, n, z_dim), one axis too many


def fixed_sample_noise(n, z_dim):
    """(n, z_dim) standard normal noise, fresh on every call."""
    return torch.randn(n, z_dim)


# ============================================================================ training-loop bugs
def buggy_d_step(G, D, opt_d, real, z):
    """One discriminator step. Returns the loss (scalar tensor)."""
    fake = G(z)  # BUG: not detached — backward runs through G too
    loss = d_loss(D(real), D(fake))
    opt_d.zero_grad()
    loss.backward()
    opt_d.step()
    return loss


def fixed_d_step(G, D, opt_d, real, z):
    """One discriminator step on real (N, ...) and G(z); G gets no gradient. Returns the loss."""
    fake = G(z).detach()  # D's loss must not reach G's parameters
    loss = d_loss(D(real), D(fake))
    opt_d.zero_grad()
    loss.backward()
    opt_d.step()
    return loss


def buggy_train_step_d_frozen_out(G, D, opt_g, opt_d, real, z):
    """One D step then one G step. Returns (d_loss, g_loss)."""
    ld = d_loss(D(real), D(G(z).detach()))  # BUG: computed but D is never stepped
    opt_g.zero_grad()
    lg = g_loss(D(G(z)))
    lg.backward()
    opt_g.step()
    return ld, lg


def buggy_train_step_d_not_frozen(G, D, opt_g, opt_d, real, z):
    """One D step then one G step. Returns (d_loss, g_loss)."""
    opt_d.zero_grad()
    ld = d_loss(D(real), D(G(z).detach()))
    ld.backward()
    opt_d.step()
    opt_g.zero_grad()
    opt_d.zero_grad()
    lg = g_loss(D(G(z)))
    lg.backward()
    opt_g.step()
    opt_d.step()  # BUG: D also learns from G's loss (it should be frozen here)
    return ld, lg


def fixed_train_step(G, D, opt_g, opt_d, real, z):
    """Alternating updates: D on its own loss (fakes detached), then G with only opt_g stepping."""
    opt_d.zero_grad()
    ld = d_loss(D(real), D(G(z).detach()))
    ld.backward()
    opt_d.step()
    opt_g.zero_grad()
    lg = g_loss(D(G(z)))
    lg.backward()  # also fills D's .grad, which the next D step zeroes; D is not stepped here
    opt_g.step()
    return ld, lg


# ============================================================================ precision
def buggy_low_precision_sgd(w0, grads, lr):
    """w0: (P,) float32 · grads: (T, P) bfloat16 · returns the final weights (P,) float32."""
    w = w0.to(torch.bfloat16)  # BUG: weights stored in bf16 — small updates round away
    for g in grads:
        w = w - lr * g
    return w.float()


def fixed_low_precision_sgd(w0, grads, lr):
    """Low-precision gradients, float32 *master* weights: every small update is kept."""
    w = w0.float().clone()
    for g in grads:
        w = w - lr * g.float()
    return w



# ============================================================================ more source bugs
def buggy_make_optimizers(G, D):
    """Adam optimizers for a GAN's generator and discriminator with DCGAN's settings: lr 2e-4,
    β1 = 0.5, β2 = 0.999. Returns (opt_g, opt_d)."""
    # BUG: Adam's default betas (0.9, 0.999): too much momentum for a two-player game
    return torch.optim.Adam(G.parameters(), lr=2e-4), torch.optim.Adam(D.parameters(), lr=2e-4)


def fixed_make_optimizers(G, D):
    """Adam for G and for D, lr 2e-4, betas (0.5, 0.999) as in DCGAN: a short momentum memory,
    because each network's target moves with the other network's updates."""
    return (torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999)),
            torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999)))


class BuggyConvDecoder(nn.Module):
    """z: (N, latent_dim) → images (N, 1, 28, 28) in [0, 1]."""

    def __init__(self, latent_dim=50):
        super().__init__()
        self.fc = nn.Linear(100, 64 * 4 * 4)  # BUG: hard-coded for a 100-d latent
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(16, 1, 4, 2, 1), nn.Sigmoid())  # BUG: 4 → 8 → 16 → 32, not 28

    def forward(self, z):
        h = z.view(-1, 64, 4, 4)  # BUG: reshaped to a feature map before the Linear layer
        return self.deconv(torch.relu(self.fc(h)))


class FixedConvDecoder(nn.Module):
    """z: (N, latent_dim) → images (N, 1, 28, 28) in [0, 1]: Linear to 64·7·7, view to a feature
    map, then two stride-2 transposed convs (k=4, s=2, p=1 doubles the side): 7 → 14 → 28."""

    def __init__(self, latent_dim=50):
        super().__init__()
        self.fc = nn.Linear(latent_dim, 64 * 7 * 7)
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Sigmoid())

    def forward(self, z):
        h = torch.relu(self.fc(z)).view(-1, 64, 7, 7)
        return self.deconv(h)


def buggy_bernoulli_recon(out, x):
    """VAE reconstruction term for pixels in [0, 1]. out: the decoder's last layer (N, D), before any
    activation · x: (N, D). BCE summed over the D pixels, mean over the N samples. Scalar."""
    p = torch.tanh(out)  # BUG: tanh gives [−1, 1]; BCE needs probabilities in [0, 1]
    return F.binary_cross_entropy(p, x, reduction="sum") / x.shape[0]


def fixed_bernoulli_recon(out, x):
    """Bernoulli negative log-likelihood from logits: sigmoid inside the loss, stable. Scalar."""
    return F.binary_cross_entropy_with_logits(out, x, reduction="sum") / x.shape[0]


def buggy_generator_step(G, D, opt_g, z):
    """One generator step with the non-saturating loss on D's logits. Returns the loss."""
    opt_g.zero_grad()
    loss = G.loss(D(G(z)))  # BUG: a model has no .loss attribute (the source called one that does not exist)
    loss.backward()
    opt_g.step()
    return loss


def fixed_generator_step(G, D, opt_g, z):
    """One generator step: the loss is a function of D's logits, not an attribute of a model."""
    opt_g.zero_grad()
    loss = g_loss(D(G(z)))
    loss.backward()
    opt_g.step()
    return loss


def buggy_sample_batch(data, batch_size, z_dim):
    """A training batch: real rows of data (batch_size, D) and generator noise (batch_size, z_dim)."""
    real = data[torch.randint(len(data), (batch_size,))]
    z = data[torch.randint(len(data), (batch_size,))][:, :z_dim]  # BUG: "noise" taken from the dataset
    return real, z


def fixed_sample_batch(data, batch_size, z_dim):
    """Real rows drawn from data; noise drawn fresh from N(0, I), independent of the data."""
    real = data[torch.randint(len(data), (batch_size,))]
    z = torch.randn(batch_size, z_dim)
    return real, z


def buggy_resize_digits(x, size):
    """x: (N, H, W) grayscale images → (N, 1, size, size): bilinear resampling of both spatial axes
    with F.interpolate's defaults otherwise (align_corners=False, no antialiasing)."""
    # BUG: (N, H, W) is read as N signals with H channels: only the last axis is resized
    return F.interpolate(x, size=size).unsqueeze(1)


def fixed_resize_digits(x, size):
    """Add the channel axis first, then resize both spatial axes bilinearly: (N, 1, size, size)."""
    return F.interpolate(x.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)


def buggy_sampling(mu, logvar):
    """z ~ N(mu, diag(e^logvar)) by reparameterisation. mu, logvar: (N, D) → z: (N, D)."""
    eps = K.random_normal(mu.shape)  # BUG: K, a backend alias, is never defined  # noqa: F821
    return mu + torch.exp(0.5 * logvar) * eps


def fixed_sampling(mu, logvar):
    """z = mu + exp(logvar/2)·ε with ε ~ N(0, I) from torch itself."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

BUGS = [
    Bug("reparameterize", "sampling the latent code", "reparameterization without noise", ("S0.5",),
        buggy_reparameterize, fixed_reparameterize,
        "z = mu + σ has no ε: the encoder's output is deterministic and the variance head gets no "
        "meaningful signal. Sample: z = mu + exp(logvar/2)·ε with ε ~ N(0, I)."),
    Bug("gaussian_head", "the encoder's Gaussian head", "ReLU on the mean and log-variance", ("S4.8",),
        BuggyGaussianHead, FixedGaussianHead,
        "ReLU clips mu to ≥ 0 and logvar to ≥ 0 (variance ≥ 1, never narrower than the prior). "
        "Both heads are plain Linear layers; logvar is unconstrained and exponentiated later."),
    Bug("vae_kl_missing", "the VAE loss", "VAE trained on reconstruction alone", ("S4.8", "S3.5"),
        buggy_vae_loss_no_kl, fixed_vae_loss,
        "Without KL(q(z|x) ‖ p(z)) the model is a plain autoencoder: its codes do not follow the "
        "prior, so sampling z ~ N(0, I) decodes to garbage. Loss = reconstruction + KL; this "
        "exercise's convention: squared error with no ½, summed over pixels, plus the KL summed over "
        "latent dims, then the mean over the batch."),
    Bug("vae_loss_scale", "the VAE loss, again", "mean-reduced reconstruction, summed KL", ("S0.5",),
        buggy_vae_loss_scale, fixed_vae_loss,
        "The reconstruction is averaged over N·D pixels while the KL is summed over N samples: "
        "the KL is weighted ~N·D times too much (posterior collapse). Reduce both the same way: "
        "sum over pixels / latent dims per sample, then mean over the batch. This exercise's "
        "convention: squared error with no ½, summed over pixels, plus the KL, mean over the batch "
        "(½‖x − x̂‖² is the unit-variance Gaussian NLL, also valid, but not the convention here)."),
    Bug("conv_encoder", "a convolutional encoder", "flatten size computed for another image size", ("S0.5",),
        BuggyConvEncoder, FixedConvEncoder,
        "The Linear layer after Flatten was sized for 32×32 inputs; on 8×8 images the shapes do not "
        "match. Compute the size from image_size (each stride-2 conv halves the side)."),
    Bug("sigmoid_bce", "binary cross-entropy", "sigmoid then BCELoss", ("S0.4",),
        buggy_bce_from_logits, fixed_bce_from_logits,
        "sigmoid(30) rounds to exactly 1.0 in float32, so log(1 − p) = log 0; BCELoss clamps it to "
        "−100 and the gradient vanishes. Use binary_cross_entropy_with_logits on the logits."),
    Bug("logits_as_probs", "a discriminator loss", "logits fed to a probability loss", ("S4.7",),
        buggy_d_loss_logits, fixed_d_loss_logits,
        "D ends in a linear layer, so it outputs logits in (−∞, ∞), not probabilities. A probability "
        "loss fails on them in a framework-specific way: a hand-written log gives NaN for negative "
        "values, PyTorch's BCELoss raises, Keras clips to [ε, 1 − ε] and silently zeroes the gradient. "
        "Compute the loss from logits (softplus or BCE-with-logits); a sigmoid before BCELoss is "
        "exact on paper but saturates in float32, so the check asks for the from-logits form."),
    Bug("target_shape", "a loss with labels", "(N, 1) outputs against (N,) targets", ("S0.4",),
        buggy_d_loss_labels, fixed_d_loss_labels,
        "(N, 1) times (N,) broadcasts to (N, N): every output is scored against every label, so the "
        "loss is nonsense but runs. Flatten the logits with .reshape(-1) (or make targets (N, 1))."),
    Bug("saturating_g_loss", "the generator loss", "saturating generator loss", ("S1.7", "S2.2"),
        buggy_generator_loss, fixed_generator_loss,
        "Minimising log(1 − D(G(z))) gives almost no gradient when D confidently rejects the fakes "
        "(early training). Minimise −log D(G(z)) instead (non-saturating loss, Goodfellow 2014)."),
    Bug("pixel_scale", "preparing pixels", "[0, 1] data for a tanh generator", ("S0.4",),
        buggy_to_generator_range, fixed_to_generator_range,
        "A tanh generator outputs [−1, 1]; data in [0, 1] let D separate real from fake by the "
        "sign alone. Map pixels to [−1, 1]: x / 127.5 − 1."),
    Bug("generator_tanh", "an MLP generator", "linear generator output for [−1, 1] data", ("S3.6",),
        BuggyMLPGenerator, FixedMLPGenerator,
        "An unbounded linear output can leave the data range; end the generator with tanh to match "
        "data scaled to [−1, 1]."),
    Bug("noise_shape", "sampling noise", "noise with an extra axis", ("S4.7", "S1.7"),
        buggy_sample_noise, fixed_sample_noise,
        "The generator takes (N, z_dim); the noise had shape (1, N, z_dim). Draw torch.randn(n, "
        "z_dim) — fresh noise, not data, and exactly two axes."),
    Bug("d_step_detach", "a discriminator step", "D step without detach", ("S4.3",),
        buggy_d_step, fixed_d_step,
        "Without .detach() the D loss back-propagates through G: wasted compute, and gradients "
        "land in G's .grad. Use G(z).detach() (or generate under torch.no_grad())."),
    Bug("d_never_updated", "a training step", "the discriminator is never updated", ("S3.6",),
        buggy_train_step_d_frozen_out, fixed_train_step,
        "A GAN needs alternating updates; here D's loss is computed but opt_d.step() never runs, "
        "so G chases a fixed critic. Zero, backward and step D on its own loss first."),
    Bug("d_not_frozen", "a training step, again", "D updated during the generator step", ("S3.6",),
        buggy_train_step_d_not_frozen, fixed_train_step,
        "In the G step only G's optimizer may step; stepping D there moves D towards calling fakes "
        "real (Keras: freeze D inside the combined model)."),
    Bug("master_weights", "low-precision updates", "weights stored in bfloat16", ("S1.6",),
        buggy_low_precision_sgd, fixed_low_precision_sgd,
        "bf16 keeps 8 significant bits: near 1.0 its spacing is 2⁻⁷ ≈ 0.0078, so an update of 1e-4 "
        "rounds away. Mixed precision keeps float32 master weights and computes in bf16/fp16."),
    Bug("adam_betas", "optimizers for a GAN", "Adam's default betas for a GAN", ("S0.4",),
        buggy_make_optimizers, fixed_make_optimizers,
        "Adam's default β1 = 0.9 averages gradients over ~10 steps; in a GAN each network chases a "
        "target that moves with the other's updates, and that much momentum makes training "
        "oscillate. DCGAN uses β1 = 0.5 (SAGAN and BigGAN use 0): pass betas=(0.5, 0.999)."),
    Bug("conv_decoder", "a convolutional decoder", "latent size, view order and output size", ("S0.5",),
        BuggyConvDecoder, FixedConvDecoder,
        "Three shape bugs: the first Linear is hard-coded for a 100-d latent while the encoder gives "
        "latent_dim; z is viewed as a feature map before the Linear instead of after it; and three "
        "stride-2 transposed convs from 4×4 give 32×32 outputs for 28×28 targets. Take latent_dim in "
        "the Linear, view after it, and start from 7×7 with two doubling convs (7 → 14 → 28)."),
    Bug("tanh_bce", "a Bernoulli reconstruction loss", "tanh output fed to BCE", ("S0.5", "S4.8"),
        buggy_bernoulli_recon, fixed_bernoulli_recon,
        "tanh outputs [−1, 1] but BCE is the likelihood of probabilities in [0, 1]: PyTorch's BCELoss "
        "raises on negative inputs (Keras would clip them and zero their gradient). Treat the "
        "decoder's last layer as logits: binary_cross_entropy_with_logits, summed over pixels."),
    Bug("loss_attribute", "a generator step", "a loss read from a model attribute that does not exist", ("S1.7",),
        buggy_generator_step, fixed_generator_step,
        "An nn.Module has no .loss (the source's Keras model had none either, since it was never "
        "compiled): the call fails with AttributeError. The loss is a function of D's logits: "
        "g_loss(D(G(z))), then backward and opt_g.step()."),
    Bug("noise_from_data", "drawing a training batch", "noise drawn from the dataset", ("S1.7",),
        buggy_sample_batch, fixed_sample_batch,
        "The generator's input must be fresh noise z ~ N(0, I), independent of the data; rows of "
        "the dataset are not noise (and have the wrong size when z_dim differs from the data "
        "width). Draw torch.randn(batch_size, z_dim)."),
    Bug("resize_channel", "resizing images", "resize without a channel axis", ("S3.6",),
        buggy_resize_digits, fixed_resize_digits,
        "F.interpolate reads (N, H, W) as N one-dimensional signals with H channels, so only the "
        "last axis is resized and no error is raised (TensorFlow's resize reads the same tensor as "
        "one H×W×C image). Add the channel axis first — x.unsqueeze(1) — then resize (N, 1, H, W) "
        "with mode='bilinear'."),
    Bug("backend_alias", "sampling with a backend function", "an undefined backend alias", ("S4.8",),
        buggy_sampling, fixed_sampling,
        "K (the source's Keras backend alias) is never imported, so the first call raises NameError. "
        "In PyTorch draw ε with torch.randn_like(mu): z = mu + exp(logvar/2)·ε."),
]

BY_SLUG = {b.slug: b for b in BUGS}


def display_name(bug: Bug) -> str:
    """The name the learner gives the fix: the reference's name without ``fixed_`` / ``Fixed``."""
    name = bug.fixed.__name__
    return name[len("fixed_"):] if name.startswith("fixed_") else name[len("Fixed"):]


def buggy_source(slug: str) -> str:
    """The buggy snippet as the learner sees it: neutral name, no ``# BUG`` comments."""
    import inspect
    import re

    bug = BY_SLUG[slug]
    src = inspect.getsource(bug.buggy).rstrip()
    src = re.sub(r"^[ \t]*# BUG:.*\n", "", src, flags=re.M)   # whole-line comments
    src = re.sub(r"[ \t]*# BUG:.*$", "", src, flags=re.M)      # trailing comments
    return src.replace(bug.buggy.__name__, display_name(bug), 1)


def show(slug: str) -> None:
    """Print a buggy snippet with its title and source ids (the notebook's 'spot the bug' cell)."""
    bug = BY_SLUG[slug]
    print(f"# {bug.task}  ({', '.join(bug.source_ids)})")
    print(buggy_source(slug))
