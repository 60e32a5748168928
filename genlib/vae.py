"""Variational autoencoders on 8×8 digits (chapter 05): data, models, training, bounds, diagnostics.

=========================  =========================================================================
``binary_digits``          the digits thresholded to {0, 1} (a fixed, deterministic dataset)
``MLPVAE`` / ``ConvVAE``   Gaussian encoder q(z|x), Bernoulli decoder p(x|z); optional class input
``train_vae``              Adam on the mean −ELBO, with β, KL warm-up and free bits
``evaluate``               test −ELBO per image, its reconstruction and KL parts
``iwae_bound``             log (1/K Σ_k w_k) from log-weights, computed stably
``iwae_log_px``            the IWAE estimate of log p(x) with K samples per image, batched
``kl_per_dim``             average KL per latent dimension; ``active_units`` (Burda et al. 2016)
``independent_bernoulli``  the baseline: one Bernoulli per pixel, fitted to the training set
=========================  =========================================================================

Everything is measured in nats per image; ``bits_per_dim`` converts.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genlib.losses import bernoulli_nll, gaussian_kl, gaussian_nll, negative_elbo, reparameterize
from genlib.train import History, batches, progress

THRESHOLD = 0.5  # a pixel is "on" when its grey level is ≥ 8 of 16


# ----------------------------------------------------------------------------- data
def binarize(x01: torch.Tensor, threshold: float = THRESHOLD) -> torch.Tensor:
    """Deterministic binarisation of images in [0, 1]: 1 where x ≥ threshold, else 0."""
    return (x01 >= threshold).float()


def binary_digits(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The 8×8 digits as 0/1 images ``(N, 1, 8, 8)`` with labels ``(N,)``.

    A fixed threshold (grey level ≥ 8 of 16) rather than a random draw: every learner gets the same
    test set, so nats are comparable across runs and machines without agreeing on a seed.
    """
    from genlib.data import digits

    x, y = digits(split, value_range=(0.0, 1.0))
    return binarize(x), y


def bits_per_dim(nats_per_image, dims: int = 64):
    """Convert nats per image to bits per pixel: divide by D·ln 2."""
    return nats_per_image / (dims * math.log(2.0))


# ----------------------------------------------------------------------------- models
class MLPVAE(nn.Module):
    """Encoder 64 → hidden → hidden → (mu, logvar); decoder latent → hidden → hidden → 64 logits.

    ``n_classes > 0`` makes it a conditional VAE: a one-hot label is appended to the encoder's
    input and to the decoder's input, so p(x | z, y) can draw the digit you ask for.
    The log-variance comes out of a plain linear layer: it must be free to be negative (S4.8 ran
    it through a ReLU, which forces σ ≥ 1).
    """

    def __init__(self, latent: int = 16, hidden: int = 256, n_classes: int = 0, pixels: int = 64,
                 out_channels: int = 1):
        super().__init__()
        self.latent, self.n_classes, self.pixels = latent, n_classes, pixels
        self.out_channels = out_channels  # 2: a Gaussian decoder's mean and log-variance per pixel
        self.encoder = nn.Sequential(
            nn.Linear(pixels + n_classes, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(
            nn.Linear(latent + n_classes, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, out_channels * pixels))

    def _with_label(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.n_classes == 0:
            return h
        if y is None:
            raise ValueError("this is a conditional VAE: pass the labels y")
        return torch.cat([h, F.one_hot(y, self.n_classes).to(h.dtype)], dim=1)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """x: (N, 1, 8, 8) in {0, 1} → mu, logvar: (N, latent)."""
        h = self.encoder(self._with_label(x.flatten(1), y))
        return h.chunk(2, dim=1)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z: (N, latent) → Bernoulli logits (N, 1, 8, 8) (or mean, log-variance: (N, 2, 8, 8))."""
        return self.decoder(self._with_label(z, y)).view(-1, self.out_channels, 8, 8)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """Returns (logits, mu, logvar, z) for one z ~ q(z|x) per image."""
        mu, logvar = self.encode(x, y)
        z = reparameterize(mu, logvar)
        return self.decode(z, y), mu, logvar, z


class ConvVAE(MLPVAE):
    """Same interface as ``MLPVAE``, with a small convolutional encoder and decoder.

    Encoder: 3×3 conv, then a strided 4×4 conv (8×8 → 4×4), then linear layers. Decoder: the
    mirror image, with a transposed convolution (4×4 → 8×8). One down-sampling step is enough for
    8×8 images; a second one (to 2×2) trained markedly slower in our runs.
    """

    def __init__(self, latent: int = 16, width: int = 16, hidden: int = 256):
        nn.Module.__init__(self)
        self.latent, self.n_classes, self.pixels, self.out_channels = latent, 0, 64, 1
        w = width
        self.encoder = nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)),
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.ReLU(),        # 8×8 → 4×4
            nn.Flatten(), nn.Linear(2 * w * 16, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * w * 16), nn.ReLU(), nn.Unflatten(1, (2 * w, 4, 4)),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.ReLU(),   # 4×4 → 8×8
            nn.Conv2d(w, 1, 3, padding=1), nn.Flatten())


# ----------------------------------------------------------------------------- training
def reconstruction_nll(model: MLPVAE, out: torch.Tensor, x: torch.Tensor, x_sigma=None) -> torch.Tensor:
    """−log p(x | z) per image for the decoder output ``out``: ``(N,)``.

    Bernoulli from logits by default; a Gaussian with fixed std ``x_sigma`` when given; a Gaussian
    with the decoder's own per-pixel log-variance when the model has ``out_channels = 2`` (floored
    at σ = e^-3 ≈ 0.05 so the density cannot grow without bound on near-constant pixels).
    """
    if model.out_channels == 2:
        return gaussian_nll(x, out[:, :1], out[:, 1:].clamp(min=-6.0))
    if x_sigma is not None:
        return gaussian_nll(x, out, 2 * math.log(x_sigma))
    return bernoulli_nll(out, x)


def vae_loss(model: MLPVAE, x: torch.Tensor, y=None, beta: float = 1.0, free_bits: float = 0.0,
             x_sigma=None):
    """Mean training loss over the batch and its parts (reconstruction, KL), in nats per image.

    ``free_bits`` λ > 0 (Kingma et al. 2016): each latent dimension's batch-averaged KL counts as at
    least λ nats, so the optimiser gains nothing by pushing a dimension's KL to zero — the
    remedy for posterior collapse. λ = 0 gives the ordinary (β-)ELBO.
    """
    out, mu, logvar, _ = model(x, y)
    rec = reconstruction_nll(model, out, x, x_sigma)                     # (N,)
    kl_dims = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)           # (N, D)
    kl = kl_dims.sum(1)
    if free_bits > 0:
        kl_term = kl_dims.mean(0).clamp(min=free_bits).sum()
    else:
        kl_term = kl.mean()
    loss = rec.mean() + beta * kl_term
    return loss, rec.mean(), kl.mean()


def train_vae(model: MLPVAE, x: torch.Tensor, y: torch.Tensor | None = None, steps: int = 3000,
              batch_size: int = 128, lr: float = 2e-3, beta: float = 1.0, warmup: int = 0,
              free_bits: float = 0.0, seed: int = 0, desc: str = "VAE", x_sigma=None,
              dequantize: int = 0) -> History:
    """Adam on the mean −ELBO (β-weighted). ``warmup`` steps ramp β linearly from 0 (KL annealing).

    ``x: (N, 1, 8, 8)`` in {0, 1}; ``y: (N,)`` labels for a conditional VAE. The learning rate
    decays with a cosine so the last steps average out the minibatch noise. ``x_sigma`` /
    ``out_channels = 2``: Gaussian decoders (see ``reconstruction_nll``). ``dequantize = L``: grey
    images with L levels get uniform noise inside their level's bin each step, so that a density
    model cannot pile infinite density on the L discrete values. Returns the history of loss,
    rec and kl per step.
    """
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the ε of reparameterize
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    data = batches(x, batch_size, g, y) if y is not None else batches(x, batch_size, g)
    hist = History()
    model.train()
    for step in progress(range(steps), desc=desc):
        xb, yb = next(data) if y is not None else (next(data), None)
        xb = xb.to(device)
        yb = yb.to(device) if yb is not None else None
        if dequantize:
            xb = (xb * (dequantize - 1) + torch.rand_like(xb)) / dequantize
        b = beta * min(1.0, (step + 1) / warmup) if warmup else beta
        loss, rec, kl = vae_loss(model, xb, yb, b, free_bits, x_sigma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        hist.log(loss=loss, rec=rec, kl=kl)
    model.eval()
    return hist


@torch.no_grad()
def evaluate(model: MLPVAE, x: torch.Tensor, y=None, samples: int = 10, seed: int = 0,
             x_sigma=None) -> dict:
    """Test −ELBO per image (β = 1), averaged over ``samples`` draws of z to cut the noise.

    Returns ``{"neg_elbo", "rec", "kl"}`` as floats in nats per image (means over images).
    ``x_sigma``: as in ``reconstruction_nll`` (Bernoulli when None and one output channel).
    """
    torch.manual_seed(seed)
    model.eval()
    rec = kl = 0.0
    for _ in range(samples):
        out, mu, logvar, _ = model(x, y)
        rec = rec + reconstruction_nll(model, out, x, x_sigma).mean().item() / samples
        kl = kl + gaussian_kl(mu, logvar).mean().item() / samples
    return {"neg_elbo": rec + kl, "rec": rec, "kl": kl}


@torch.no_grad()
def neg_elbo_per_image(model: MLPVAE, x: torch.Tensor, y=None, samples: int = 10, seed: int = 0,
                       x_sigma=None) -> torch.Tensor:
    """Test −ELBO (β = 1) of each image, ``(N,)`` in nats, averaged over ``samples`` draws of z.

    Its mean equals ``evaluate(...)["neg_elbo"]`` up to rounding (same seed, same draws). Per-image values let two
    models be compared on the same test images with a paired bootstrap (``genlib.stats``), which
    gives the evaluation noise of a difference; it says nothing about the spread over training seeds.
    """
    torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    total = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    for _ in range(samples):
        out, mu, logvar, _ = model(x, y)
        total += (reconstruction_nll(model, out, x, x_sigma) + gaussian_kl(mu, logvar)).double() / samples
    model.train(was_training)
    return total.cpu()


# ----------------------------------------------------------------------------- IWAE
def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/K Σ_k exp(log_w[k])) per image, stably: ``(K, N) → (N,)``.

    ``log_w[k] = log p(x, z_k) − log q(z_k | x)`` with z_k ~ q(z|x). K = 1 is an ELBO sample; the
    bound tightens towards log p(x) as K grows (Burda et al. 2016). logsumexp subtracts the max
    before exponentiating, so log-weights of −1000 do not underflow to log 0.
    """
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


def _normal_logpdf(z, mu, logvar):
    """log N(z; mu, e^logvar), summed over the last dimension."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


@torch.no_grad()
def log_weights(model: MLPVAE, x: torch.Tensor, k: int, y=None) -> torch.Tensor:
    """K importance log-weights per image (Bernoulli decoder): ``x: (N, 1, 8, 8) → (K, N)``."""
    mu, logvar = model.encode(x, y)
    n, d = mu.shape
    z = mu + (0.5 * logvar).exp() * torch.randn(k, n, d, device=mu.device)        # (K, N, D)
    yk = y.repeat(k) if y is not None else None
    logits = model.decode(z.reshape(k * n, d), yk)                                  # (K·N, 1, 8, 8)
    log_px_z = -bernoulli_nll(logits, x.repeat(k, 1, 1, 1)).view(k, n)
    log_pz = _normal_logpdf(z, torch.zeros_like(z), torch.zeros_like(z))
    log_qz = _normal_logpdf(z, mu, logvar)
    return log_px_z + log_pz - log_qz


@torch.no_grad()
def iwae_log_px(model: MLPVAE, x: torch.Tensor, k: int, y=None, max_rows: int = 50_000,
                seed: int = 0, bound=iwae_bound) -> torch.Tensor:
    """The IWAE estimate of log p(x) with K samples per image: ``(N,)`` in nats.

    Images are processed in chunks so that K·chunk decoder passes stay under ``max_rows`` (K = 1000
    on 297 images is 297,000 passes: fine in chunks, a memory spike in one go).
    """
    torch.manual_seed(seed)
    model.eval()
    chunk = max(1, max_rows // k)
    out = []
    for i in range(0, len(x), chunk):
        yi = y[i:i + chunk] if y is not None else None
        out.append(bound(log_weights(model, x[i:i + chunk], k, yi)))
    return torch.cat(out)


# ----------------------------------------------------------------------------- diagnostics
@torch.no_grad()
def kl_per_dim(model: MLPVAE, x: torch.Tensor, y=None) -> torch.Tensor:
    """Average KL(q(z_j|x) ‖ N(0,1)) over the images, per latent dimension: ``(D,)`` nats."""
    mu, logvar = model.encode(x, y)
    return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).mean(0)


@torch.no_grad()
def active_units(model: MLPVAE, x: torch.Tensor, y=None, threshold: float = 0.01) -> int:
    """Latent dimensions whose posterior mean varies with x: Var_x(E_q[z_j]) > ``threshold``.

    A collapsed dimension has q(z_j|x) ≈ N(0, 1) for every x, so its mean does not move
    (Burda et al. 2016 use the same 0.01 threshold).
    """
    mu, _ = model.encode(x, y)
    return int((mu.var(0) > threshold).sum())


@torch.no_grad()
def sample(model: MLPVAE, n: int, y: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """Draw z ~ N(0, I) and decode: pixel probabilities ``(n, 1, 8, 8)`` in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    z = torch.randn(n, model.latent, generator=g).to(device)
    return torch.sigmoid(model.decode(z, y))


@torch.no_grad()
def interpolate(model: MLPVAE, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 8) -> torch.Tensor:
    """Decode the straight line between the posterior means of two images: ``(steps, 1, 8, 8)``."""
    mu_a, _ = model.encode(x_a[None])
    mu_b, _ = model.encode(x_b[None])
    t = torch.linspace(0, 1, steps, device=mu_a.device)[:, None]
    return torch.sigmoid(model.decode((1 - t) * mu_a + t * mu_b))


# ----------------------------------------------------------------------------- baseline
def independent_bernoulli(x_train: torch.Tensor) -> torch.Tensor:
    """Per-pixel "on" probabilities fitted to the training set (add-one smoothing): ``(1, 8, 8)``."""
    return (x_train.sum(0) + 1.0) / (len(x_train) + 2.0)


def independent_bernoulli_nll(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """−log p(x) per image under independent pixels with probabilities ``p``: ``(N,)`` nats."""
    return bernoulli_nll(torch.logit(p).expand_as(x), x)


__all__ = ["binarize", "binary_digits", "bits_per_dim", "MLPVAE", "ConvVAE", "reconstruction_nll", "vae_loss",
           "train_vae", "evaluate", "iwae_bound", "log_weights", "iwae_log_px", "kl_per_dim",
           "active_units", "sample", "interpolate", "independent_bernoulli",
           "independent_bernoulli_nll", "negative_elbo"]
