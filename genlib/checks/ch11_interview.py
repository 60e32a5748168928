"""Checks for chapter 11 (interview prep): one check per spot-the-bug snippet, ``bugs.<slug>``.

Each check tests behaviour: it rejects the buggy snippet in ``genlib.spotbugs`` with a message that
names the bug, and accepts the fix.
"""
import math

import torch
import torch.nn.functional as F

from genlib import spotbugs as sb
from genlib.exercises import CheckFailure, expect_close, expect_tensor, probe, register
from genlib.losses import d_loss, g_loss, gaussian_kl
from genlib.probes import ch11 as P


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _isolated(spec):
    """Run every case of ``spec`` with the global RNG saved and restored: the checks seed torch for
    reproducible verdicts, and must not change the random stream of the learner's notebook."""
    original = spec.case

    def case(name):
        def deco(fn):
            def run(arg):
                with torch.random.fork_rng(devices=[]):
                    return fn(arg)
            original(name)(run)
            return fn
        return deco

    spec.case = case
    return spec


def _scalar(out, what="your loss"):
    expect_tensor(out, None, what)
    if out.dim() != 0:
        raise CheckFailure(f"{what} should be a scalar (shape ()), got shape {tuple(out.shape)}: "
                           "reduce it with .mean()")
    return out


# ============================================================================ bugs.reparameterize
def _sampling_cases(spec):
    @spec.case("returns z with the shape of mu")
    def _(fn):
        mu, logvar = torch.zeros(5, 3), torch.zeros(5, 3)
        expect_tensor(fn(mu, logvar), (5, 3), "z")

    @spec.case("z is random: two calls differ")
    def _(fn):
        mu, logvar = torch.zeros(4, 3), torch.zeros(4, 3)
        if torch.equal(fn(mu, logvar), fn(mu, logvar)):
            raise CheckFailure("every call returns the same z for the same (mu, logvar): nothing is "
                               "sampled. Multiply the std by ε = torch.randn_like(mu)")

    @spec.case("mean mu and std exp(logvar/2)")
    def _(fn):
        torch.manual_seed(0)
        mu = torch.full((20000, 1), 1.5)
        logvar = torch.full((20000, 1), math.log(0.25))  # std 0.5
        z = fn(mu, logvar)
        m, s = z.mean().item(), z.std().item()
        if s < 1e-6:
            raise CheckFailure("z does not vary across the batch: one ε is shared by every sample. "
                               "Draw ε with the full shape of mu: torch.randn_like(mu)")
        if abs(s - 0.25) < 0.02:
            raise CheckFailure(f"std of z is {s:.3f}, expected 0.5: you used exp(logvar) (the "
                               "variance) as the std; the std is exp(logvar / 2)")
        if abs(s - 0.5) > 0.02:
            raise CheckFailure(f"std of z is {s:.3f}, expected exp(logvar/2) = 0.5")
        if abs(m - 1.5) > 0.02:
            raise CheckFailure(f"mean of z is {m:.3f}, expected mu = 1.5: add mu, and use zero-mean noise")

    @spec.case("independent noise in every latent dimension")
    def _(fn):
        torch.manual_seed(1)
        mu, logvar = torch.zeros(20000, 4), torch.zeros(20000, 4)
        z = fn(mu, logvar)
        expect_tensor(z, (20000, 4), "z")
        corr = torch.corrcoef(z.T)
        off = (corr - torch.diag(torch.diag(corr))).abs().max().item()
        if off > 0.05:
            raise CheckFailure(f"the latent dimensions of z are correlated (|r| up to {off:.2f}): one "
                               "ε is shared across dimensions (e.g. torch.randn(N, 1)), so every "
                               "dimension moves together. Draw ε with the full shape (N, D): "
                               "torch.randn_like(mu)")
        if (z.std(0) - 1).abs().max() > 0.05:
            raise CheckFailure(f"per-dimension std of z is {z.std(0).tolist()}, expected 1 in every "
                               "dimension for logvar = 0")

    @spec.case("gradients reach mu and logvar")
    def _(fn):
        mu = torch.zeros(8, 2, requires_grad=True)
        logvar = torch.zeros(8, 2, requires_grad=True)
        z = fn(mu, logvar)
        if z.requires_grad:
            z.pow(2).sum().backward()
        if mu.grad is None or logvar.grad is None or logvar.grad.abs().sum() == 0:
            raise CheckFailure("no gradient reaches mu or logvar: draw ε outside the graph and "
                               "compute mu + exp(logvar/2)·ε with differentiable ops (no .detach(), "
                               "no sampling from a distribution object without rsample)")


_sampling_cases(_isolated(register("bugs.reparameterize", sb.fixed_reparameterize,
                                   "sample z = mu + exp(logvar/2)·ε, not mu + σ")))

# ============================================================================ bugs.backend_alias
spec = _isolated(register("bugs.backend_alias", sb.fixed_sampling,
                          "draw ε with torch, not with an undefined backend alias"))


@spec.case("runs: every name it uses is defined")
def _(fn):
    try:
        fn(torch.zeros(3, 2), torch.zeros(3, 2))
    except NameError as e:
        raise CheckFailure(f"{e}: the function calls a module alias (a Keras backend 'K', 'tf', …) "
                           "that was never imported. Use torch itself: ε = torch.randn_like(mu)") from None


_sampling_cases(spec)


# ============================================================================ bugs.gaussian_head
spec = _isolated(register("bugs.gaussian_head", sb.FixedGaussianHead,
                "mean and log-variance heads are unconstrained Linear layers"))


def _head_out(cls, backward=False):
    mu, logvar, grads = probe(cls, P.gaussian_head, backward=backward)
    expect_tensor(mu, (256, 5), "mu")
    expect_tensor(logvar, (256, 5), "logvar")
    return grads, mu, logvar


@spec.case("returns (mu, logvar) of shape (N, latent_dim)")
def _(cls):
    _head_out(cls)


@spec.case("mu can be negative")
def _(cls):
    _, mu, _ = _head_out(cls)
    if (mu < 0).float().mean() < 0.1:
        raise CheckFailure("mu is (almost) never negative: an activation (ReLU, softplus, exp) on the "
                           "mean clips the latent space; the mean head must be a plain Linear")


@spec.case("logvar can be negative (variance below 1)")
def _(cls):
    _, _, logvar = _head_out(cls)
    if (logvar < 0).float().mean() < 0.1:
        raise CheckFailure("logvar is (almost) never negative, so the variance is never below the "
                           "prior's 1: no activation that keeps it positive (ReLU, softplus, exp) on the log-variance — "
                           "it is unconstrained, a plain Linear")


@spec.case("gradients reach both heads")
def _(cls):
    grads, mu, logvar = _head_out(cls, backward=True)
    if not grads or any(g is None or g.abs().sum() == 0 for g in grads):
        raise CheckFailure("some parameters get no gradient: both mu and logvar must come from "
                           "trainable layers applied to h")


# ============================================================================ VAE loss (two bugs)
def _vae_loss_cases(spec):
    @spec.case("returns a scalar")
    def _(fn):
        x = torch.rand(4, 1, 3, 3)
        _scalar(fn(x, x, torch.zeros(4, 2), torch.zeros(4, 2)))

    @spec.case("includes the KL term")
    def _(fn):
        x = torch.rand(4, 1, 3, 3)
        mu, logvar = torch.ones(4, 2), torch.zeros(4, 2)  # KL = ½·Σ mu² = 1 per sample
        out = _scalar(fn(x, x.clone(), mu, logvar)).item()
        if abs(out) < 1e-6:
            raise CheckFailure("with a perfect reconstruction and mu = 1 your loss is 0: the KL term "
                               "is missing, which makes this a plain autoencoder — add "
                               "KL(N(mu, e^logvar) ‖ N(0, I)) = ½Σ(mu² + e^logvar − 1 − logvar)")

    @spec.case("KL averaged over the batch, like the reconstruction")
    def _(fn):
        x = torch.rand(8, 1, 3, 3)
        mu, logvar = torch.ones(8, 2), torch.zeros(8, 2)
        out = _scalar(fn(x, x.clone(), mu, logvar)).item()
        if abs(out - 8.0) < 1e-4:
            raise CheckFailure("your KL is summed over the batch (8 samples → 8.0, expected 1.0): "
                               "sum over latent dims per sample, then mean over the batch")
        if abs(out - 0.5) < 1e-4:
            raise CheckFailure("your KL is averaged over latent dims (0.5, expected 1.0): sum over "
                               "latent dims per sample")
        if abs(out * x[0].numel() - 1.0) < 1e-4:
            raise CheckFailure("your loss is the per-sample loss divided by the number of pixels "
                               "(1/9 here): the same optimum, but this exercise's convention is "
                               "sums per sample (no division by the pixel count), then the batch mean")
        if abs(out - 1.0) > 1e-4:
            raise CheckFailure(f"with x_hat = x and mu = 1, logvar = 0 (two latent dims) the loss "
                               f"should be the mean KL = 1.0, got {out:.4g}")

    @spec.case("reconstruction summed over pixels")
    def _(fn):
        x = torch.zeros(4, 1, 4, 4)
        x_hat = torch.full_like(x, 0.5)   # squared error 0.25 per pixel, 16 pixels → 4 per sample
        out = _scalar(fn(x_hat, x, torch.zeros(4, 2), torch.zeros(4, 2))).item()
        if abs(out - 0.25) < 1e-5:
            raise CheckFailure("your reconstruction term is averaged over pixels (0.25, expected 4.0): "
                               "it is 16× smaller than the sum the ELBO needs, so the KL dominates; "
                               "sum over pixels per sample, then mean over the batch")
        if abs(out - 2.0) < 1e-4:
            raise CheckFailure("your reconstruction term is ½·Σ(x_hat − x)² (2.0, expected 4.0): that "
                               "is the unit-variance Gaussian NLL, also a valid ELBO, but this "
                               "exercise's convention is the plain squared error, no ½")
        if abs(out - 4.0) > 1e-4:
            raise CheckFailure(f"squared error summed over 16 pixels should be 4.0 per sample, "
                               f"got {out:.4g}")

    @spec.case("matches the reference on random inputs")
    def _(fn):
        g = _gen(3)
        x, x_hat = torch.rand(6, 1, 4, 4, generator=g), torch.rand(6, 1, 4, 4, generator=g)
        mu, logvar = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
        expect_close(_scalar(fn(x_hat, x, mu, logvar)), sb.fixed_vae_loss(x_hat, x, mu, logvar),
                     "loss", "per sample: Σ_pixels (x_hat − x)² + KL; then mean over the batch")


_vae_loss_cases(_isolated(register("bugs.vae_kl_missing", sb.fixed_vae_loss,
                         "VAE loss = reconstruction + KL, not reconstruction alone")))
_vae_loss_cases(_isolated(register("bugs.vae_loss_scale", sb.fixed_vae_loss,
                         "reduce reconstruction and KL the same way (sum per sample, mean over batch)")))


# ============================================================================ bugs.conv_encoder
spec = _isolated(register("bugs.conv_encoder", sb.FixedConvEncoder,
                "size the Linear layer after Flatten from the image size"))


def _encode(cls, size, latent):
    obs = probe(cls, P.conv_encoder, size, latent)
    if "size_error" in obs:
        e = obs["size_error"]
        hint = (" — the side is not divisible by 4, so image_size // 4 (floor) is too small: each "
                "conv (k=3, s=2, p=1) maps s → ⌈s/2⌉, so the side is (image_size + 3) // 4"
                if size % 4 else "")
        raise CheckFailure(f"on {size}×{size} images the Linear layer after Flatten gets the wrong "
                           f"number of features ({e}): compute in_features from image_size — "
                           f"each stride-2 conv halves the side, rounding up{hint}")
    out = obs["out"]
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise CheckFailure("forward should return (mu, logvar)")
    for name, t in zip(("mu", "logvar"), out):
        expect_tensor(t, None, name)
        if tuple(t.shape) != (3, latent):
            raise CheckFailure(f"{name} has shape {tuple(t.shape)}, expected (3, {latent}): the head "
                               "must output 2·latent_dim numbers (the decoder expects latent_dim)")


@spec.case("8×8 images, latent_dim 4")
def _(cls):
    _encode(cls, 8, 4)


@spec.case("16×16 images, latent_dim 6")
def _(cls):
    _encode(cls, 16, 6)


@spec.case("7×7 and 30×30 images (sides not divisible by 4)")
def _(cls):
    _encode(cls, 7, 3)
    _encode(cls, 30, 2)


# ============================================================================ bugs.sigmoid_bce
spec = _isolated(register("bugs.sigmoid_bce", sb.fixed_bce_from_logits,
                "BCE from logits, stable for confident logits"))


@spec.case("matches BCE for moderate logits")
def _(fn):
    g = _gen(0)
    logits = torch.randn(32, generator=g) * 2
    targets = (torch.rand(32, generator=g) > 0.5).float()
    expect_close(_scalar(fn(logits, targets)),
                 F.binary_cross_entropy_with_logits(logits, targets), "loss",
                 "mean of −[y·log σ(l) + (1 − y)·log(1 − σ(l))]")


@spec.case("confidently wrong logit: value")
def _(fn):
    out = _scalar(fn(torch.tensor([30.0]), torch.tensor([0.0]))).item()
    if abs(out - 100.0) < 1e-3:
        raise CheckFailure("for logit 30 with target 0 the loss should be ≈ 30, yours is 100: "
                           "sigmoid(30) rounds to 1.0 in float32, log(1 − 1) = −inf and BCELoss "
                           "clamps it to −100. Compute from logits (binary_cross_entropy_with_logits)")
    if not math.isfinite(out) or abs(out - 30.0) > 1e-3:
        raise CheckFailure(f"for logit 30 with target 0 the loss should be ≈ 30, got {out:.4g}: "
                           "compute it from logits (binary_cross_entropy_with_logits)")


@spec.case("confidently wrong logit: gradient")
def _(fn):
    logit = torch.tensor([30.0], requires_grad=True)
    _scalar(fn(logit, torch.tensor([0.0]))).backward()
    grad = 0.0 if logit.grad is None else logit.grad.item()
    if abs(grad - 1.0) > 1e-3:
        raise CheckFailure(f"d loss / d logit at logit 30, target 0 should be σ(30) − 0 ≈ 1, yours is "
                           f"{grad:.3g}: the sigmoid saturated, so the most wrong sample teaches "
                           "nothing. Use binary_cross_entropy_with_logits")


# ============================================================================ bugs.logits_as_probs
spec = _isolated(register("bugs.logits_as_probs", sb.fixed_d_loss_logits,
                "D outputs logits: compute its loss with log-sigmoids"))


@spec.case("finite for negative logits")
def _(fn):
    out = _scalar(fn(torch.tensor([-2.0, 0.5]), torch.tensor([1.5, -3.0])))
    if not torch.isfinite(out):
        raise CheckFailure("your loss is NaN/inf for negative logits: D ends in a linear layer, so "
                           "its outputs are logits, not probabilities — log(logit) is undefined. "
                           "Use softplus (−log σ(l) = softplus(−l)) or BCE-with-logits")


@spec.case("matches −E[log σ(real)] − E[log(1 − σ(fake))]")
def _(fn):
    g = _gen(1)
    real, fake = torch.randn(16, generator=g) * 3, torch.randn(16, generator=g) * 3
    expect_close(_scalar(fn(real, fake)), d_loss(real, fake), "loss",
                 "apply the sigmoid inside the loss: softplus(−real).mean() + softplus(fake).mean()")


@spec.case("stable for logits of ±40")
def _(fn):
    real, fake = torch.tensor([-40.0, 40.0]), torch.tensor([40.0, -40.0])
    expect_close(_scalar(fn(real, fake)), d_loss(real, fake), "loss at logits ±40",
                 "sigmoid(40) is exactly 1.0 in float32: compute from logits with softplus")


# ============================================================================ bugs.target_shape
spec = _isolated(register("bugs.target_shape", sb.fixed_d_loss_labels,
                "(N, 1) logits against (N,) labels: flatten before the loss"))


@spec.case("(N, 1) logits, (N,) labels")
def _(fn):
    logits = torch.tensor([[3.0], [-2.0], [0.5], [-1.0]])
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0])
    out = _scalar(fn(logits, labels))
    ref = F.binary_cross_entropy_with_logits(logits.view(-1), labels)
    broadcast = (labels * F.softplus(-logits) + (1 - labels) * F.softplus(logits)).mean()
    if torch.isclose(out, broadcast, atol=1e-5) and not torch.isclose(out, ref, atol=1e-5):
        raise CheckFailure("your (N, 1) logits broadcast against the (N,) labels into an (N, N) "
                           "matrix, scoring every output against every label: flatten the logits "
                           "with .reshape(-1) first")
    expect_close(out, ref, "loss", "mean BCE of each logit against its own label")


@spec.case("a batch of one: (1, 1) logits, (1,) labels")
def _(fn):
    logits, labels = torch.tensor([[2.0]]), torch.tensor([0.0])
    try:
        out = _scalar(fn(logits, labels))
    except (ValueError, RuntimeError) as e:
        raise CheckFailure(f"with a batch of one your loss fails ({e}): .squeeze() also removes the "
                           "batch axis when N = 1, leaving a 0-d tensor. Use .reshape(-1) or "
                           ".squeeze(1)") from None
    expect_close(out, F.binary_cross_entropy_with_logits(logits.view(-1), labels), "loss",
                 "BCE of the single logit against its label")


@spec.case("confident logits (±20, ±100) stay finite")
def _(fn):
    # D's logits reach ±20 early in training; a BCE written as log σ / log(1 − σ) gives log 0 there
    logits = torch.tensor([[20.0], [-20.0], [100.0], [-100.0]])
    labels = torch.tensor([0.0, 1.0, 1.0, 0.0])
    out = _scalar(fn(logits, labels))
    if not torch.isfinite(out).all():
        raise CheckFailure(f"at logits ±20 and ±100 your loss is {out.item()}: log(σ(l)) and log(1 − σ(l)) "
                           "round to log 0 in float32. Compute from the logits: "
                           "F.binary_cross_entropy_with_logits (a softplus inside), after flattening")
    expect_close(out, F.binary_cross_entropy_with_logits(logits.view(-1), labels), "loss at confident logits",
                 "use F.binary_cross_entropy_with_logits on the flattened logits")


# ============================================================================ bugs.saturating_g_loss
spec = _isolated(register("bugs.saturating_g_loss", sb.fixed_generator_loss,
                "non-saturating generator loss −E[log D(G(z))]"))


@spec.case("returns a scalar")
def _(fn):
    _scalar(fn(torch.randn(8)))


@spec.case("minimising it raises D's logits on fakes")
def _(fn):
    logits = torch.zeros(4, requires_grad=True)
    _scalar(fn(logits)).backward()
    if logits.grad is None or (logits.grad >= 0).any():
        raise CheckFailure("the gradient w.r.t. the fake logits should be negative (G minimises its "
                           "loss by making D call fakes real); check the sign of your loss")


@spec.case("strong gradient when D rejects the fakes")
def _(fn):
    logits = torch.full((4,), -10.0, requires_grad=True)  # D is sure these are fake
    _scalar(fn(logits)).backward()
    g = logits.grad.abs().mean().item() * 4 if logits.grad is not None else 0.0
    if g < 0.5:
        raise CheckFailure(f"at logit −10 (D confidently rejects the fakes) your gradient is "
                           f"{g:.2g}, the non-saturating loss gives ≈ 1: log(1 − D(G(z))) and "
                           "1 − D(G(z)) saturate there. Minimise −log D(G(z)) = softplus(−logit)")


@spec.case("finite value and gradient at logit −200")
def _(fn):
    logits = torch.tensor([-200.0, 0.0], requires_grad=True)
    out = _scalar(fn(logits))
    if not torch.isfinite(out):
        raise CheckFailure("your loss is inf at logit −200: σ(−200) underflows to 0 in float32, so "
                           "−log(sigmoid(l)) is −log 0. Compute it from the logit: "
                           "softplus(−l) (= −logsigmoid(l)), which is exactly 200 there")
    out.backward()
    grad = logits.grad
    if grad is None or not torch.isfinite(grad).all() or abs(grad[0].item() + 0.5) > 1e-3:
        raise CheckFailure(f"at logit −200 the gradient of the mean loss should be −1/2 (−1 per "
                           f"sample, averaged over 2), got {None if grad is None else grad[0].item()}: "
                           "compute the loss from logits with softplus(−l)")
    expect_close(out, torch.tensor(100.0 + math.log(2) / 2), "loss at logits (−200, 0)",
                 "softplus(−l) averaged over the batch")


@spec.case("matches −E[log σ(fake_logits)]")
def _(fn):
    logits = torch.randn(16, generator=_gen(2)) * 3
    expect_close(_scalar(fn(logits)), g_loss(logits), "loss", "softplus(−logits).mean()")


# ============================================================================ bugs.pixel_scale
spec = _isolated(register("bugs.pixel_scale", sb.fixed_to_generator_range,
                "map uint8 pixels [0, 255] to [-1, 1] for a tanh generator"))


@spec.case("float32 output of the same shape")
def _(fn):
    x = torch.randint(0, 256, (2, 4, 4), dtype=torch.uint8)
    expect_tensor(fn(x), (2, 4, 4), "output", dtype=torch.float32)


@spec.case("0 → −1 and 255 → 1")
def _(fn):
    out = fn(torch.tensor([0, 255], dtype=torch.uint8))
    lo, hi = out.tolist()
    if abs(lo) < 1e-6 and abs(hi - 1) < 1e-5:
        raise CheckFailure("your pixels land in [0, 1] but a tanh generator outputs [−1, 1]; D can "
                           "then tell real from fake by the sign alone. Use x / 127.5 − 1")
    expect_close(out, torch.tensor([-1.0, 1.0]), "f([0, 255])", "the map is x / 127.5 − 1")


@spec.case("linear in between")
def _(fn):
    x = torch.arange(0, 256, 15, dtype=torch.uint8)
    expect_close(fn(x), x.float() / 127.5 - 1, "f(x)", "the map is x / 127.5 − 1")


# ============================================================================ bugs.generator_tanh
spec = _isolated(register("bugs.generator_tanh", sb.FixedMLPGenerator,
                "generator output bounded to [-1, 1] like the data"))


@spec.case("z (N, 16) → (N, 64)")
def _(cls):
    expect_tensor(probe(cls, P.generator, 5, 1.0)[0], (5, 64), "G(z)")


@spec.case("outputs stay in [−1, 1]")
def _(cls):
    out, _ = probe(cls, P.generator, 64, 50.0)
    if out.abs().max() > 1 + 1e-6:
        raise CheckFailure(f"outputs reach {out.abs().max():.3g}: a linear last layer is unbounded, "
                           "but the data live in [−1, 1]; end the generator with tanh")
    if out.min() >= 0:
        raise CheckFailure("outputs are never negative (sigmoid gives [0, 1]) but the data live in "
                           "[−1, 1]; end the generator with tanh")


@spec.case("saturated outputs still pass a gradient (tanh, not a clamp)")
def _(cls):
    out, grads = probe(cls, P.generator, 256, 4.0, saturated_grads=True)
    exact = (out.detach().abs() >= 1.0).float().mean().item()
    if exact > 0.01:
        # tanh reaches ±1 exactly in float32 only beyond |x| ≈ 9; a clamp does at |x| = 1
        if all(g is None or g.abs().sum() == 0 for g in grads):
            raise CheckFailure(f"{exact:.0%} of the outputs sit exactly at ±1 and pass no gradient: "
                               "clamp(-1, 1) / hardtanh bound the range but their gradient is 0 "
                               "outside it, so those outputs can never be pulled back. Use tanh")


# ============================================================================ bugs.noise_shape
spec = _isolated(register("bugs.noise_shape", sb.fixed_sample_noise,
                          "(n, z_dim) standard normal noise"))


@spec.case("shape (n, z_dim)")
def _(fn):
    z = fn(7, 5)
    expect_tensor(z, None, "noise")
    if tuple(z.shape) != (7, 5):
        raise CheckFailure(f"noise has shape {tuple(z.shape)}, the generator takes (n, z_dim) = "
                           "(7, 5): no extra batch axis, and n rows")


@spec.case("standard normal, fresh every call")
def _(fn):
    torch.manual_seed(0)
    z = fn(4000, 8)
    if abs(z.mean().item()) > 0.05 or abs(z.std().item() - 1) > 0.05:
        raise CheckFailure(f"noise has mean {z.mean():.3f} and std {z.std():.3f}; expected N(0, 1) "
                           "(torch.randn, not torch.rand, not data)")
    if torch.equal(fn(3, 2), fn(3, 2)):
        raise CheckFailure("two calls return the same noise: draw fresh noise each time")


# ============================================================================ GAN steps
# The learner's step runs in a probe (genlib.probes.ch11) on the seeded tiny GAN; the reference
# fix runs here on the same GAN, built with the same seed.
_tiny_gan, _params, _junk_grads = P.tiny_gan, P.params, P.junk_grads


def _same(a, b, tol=1e-6):
    return all(torch.allclose(x, y, atol=tol) for x, y in zip(a, b))


spec = _isolated(register("bugs.d_step_detach", sb.fixed_d_step,
                          "D step with G(z).detach()"))


@spec.case("D is updated by its own loss")
def _(fn):
    obs = probe(fn, P.d_step)
    G2, D2, real, z = _tiny_gan()
    sb.fixed_d_step(G2, D2, torch.optim.SGD(D2.parameters(), lr=0.1), real, z)
    if not _same(obs["D"], _params(D2), 1e-5):
        raise CheckFailure("after one step D's parameters differ from a plain SGD step on "
                           "d_loss(D(real), D(fake)): zero grads, backward, opt_d.step()")


@spec.case("stale gradients in D are cleared (zero_grad before backward)")
def _(fn):
    obs = probe(fn, P.d_step, junk=True)
    G2, D2, real, z = _tiny_gan()
    _junk_grads(D2)
    sb.fixed_d_step(G2, D2, torch.optim.SGD(D2.parameters(), lr=0.1), real, z)
    if not _same(obs["D"], _params(D2), 1e-5):
        raise CheckFailure("when D's .grad already holds gradients (in a loop, the G step's backward "
                           "leaves them there) your D step adds them to its own: call "
                           "opt_d.zero_grad() before loss.backward()")


@spec.case("G gets no gradient from D's loss")
def _(fn):
    obs = probe(fn, P.d_step)
    if any(g is not None and g.abs().sum() > 0 for g in obs["G_grads"]):
        raise CheckFailure("after your D step G's parameters hold gradients: the fake batch was not "
                           "detached, so backward ran through G (wasted compute, and stale "
                           "gradients in G's .grad). Use G(z).detach()")


spec_a = _isolated(register("bugs.d_never_updated", sb.fixed_train_step,
                  "alternating updates: step D, then step G"))
spec_b = _isolated(register("bugs.d_not_frozen", sb.fixed_train_step,
                  "only G's optimizer steps in the generator step"))


def _run_step(fn, junk=False, steps=1):
    """The learner's steps (a probe) and the reference's on the same GAN, as parameter lists."""
    obs = probe(fn, P.train_steps, junk=junk, steps=steps)
    if not all(obs["pairs"]):
        raise CheckFailure("return (d_loss, g_loss)")
    G2, D2, real, z = _tiny_gan()
    G0, D0 = _params(G2), _params(D2)
    if junk:
        _junk_grads(G2, D2)
    opts2 = (torch.optim.SGD(G2.parameters(), lr=0.1), torch.optim.SGD(D2.parameters(), lr=0.1))
    for _ in range(steps):
        sb.fixed_train_step(G2, D2, *opts2, real, z)
    return obs["G"], obs["D"], G0, D0, _params(G2), _params(D2)


def _step_cases(spec):
    @spec.case("D is updated")
    def _(fn):
        _, D, _, D0, _, _ = _run_step(fn)
        if _same(D, D0, 0):
            raise CheckFailure("D's parameters did not change: its loss is computed but never "
                               "stepped. Zero D's grads, backward its loss, opt_d.step()")

    @spec.case("G is updated")
    def _(fn):
        G, _, G0, _, _, _ = _run_step(fn)
        if _same(G, G0, 0):
            raise CheckFailure("G's parameters did not change: backward g_loss and call opt_g.step()")

    @spec.case("D moves only by its own loss")
    def _(fn):
        _, D, _, _, _, D2 = _run_step(fn)
        if not _same(D, D2, 1e-5):
            raise CheckFailure("D's parameters differ from one step on its own loss: D must stay "
                               "frozen in the generator step — step only opt_g there (and zero "
                               "D's grads before its own step)")

    @spec.case("G matches one D step then one G step")
    def _(fn):
        G, _, _, _, G2, _ = _run_step(fn)
        if not _same(G, G2, 1e-5):
            raise CheckFailure("G's parameters differ from the reference: update D first, then G "
                               "against the updated D with g_loss(D(G(z)))")

    @spec.case("stale gradients are cleared before each backward")
    def _(fn):
        G, D, _, _, G2, D2 = _run_step(fn, junk=True)
        if not _same(D, D2, 1e-5):
            raise CheckFailure("when D's .grad already holds gradients — the previous G step's "
                               "backward leaves them there — your D step adds them to D's own: call "
                               "opt_d.zero_grad() before D's backward")
        if not _same(G, G2, 1e-5):
            raise CheckFailure("when G's .grad already holds gradients (from the previous iteration) "
                               "your G step adds them: call opt_g.zero_grad() before G's backward")

    @spec.case("two consecutive steps match the reference")
    def _(fn):
        G, D, _, _, G2, D2 = _run_step(fn, steps=2)
        if not _same(D, D2, 1e-5):
            raise CheckFailure("after two training steps D differs from the reference although one "
                               "step matched: the G step's backward left gradients in D's .grad and "
                               "your next D step used them. Call opt_d.zero_grad() before D's backward")
        if not _same(G, G2, 1e-5):
            raise CheckFailure("after two training steps G differs from the reference: G's gradients "
                               "accumulate across iterations. Call opt_g.zero_grad() before G's backward")


_step_cases(spec_a)
_step_cases(spec_b)


# ============================================================================ bugs.master_weights
spec = _isolated(register("bugs.master_weights", sb.fixed_low_precision_sgd,
                "keep float32 master weights when gradients are low precision"))


@spec.case("small updates accumulate")
def _(fn):
    w0 = torch.ones(4)
    grads = torch.ones(1000, 4, dtype=torch.bfloat16)
    w = fn(w0, grads, 1e-4)
    if not torch.equal(w0, torch.ones(4)):
        raise CheckFailure("your function changed w0 in place (w -= … on the caller's tensor): the caller's "
                           "initial weights are overwritten. Work on a float32 copy, w = w0.float().clone()")
    expect_tensor(w, (4,), "weights")
    if torch.allclose(w.float(), w0, atol=1e-6):
        raise CheckFailure("1000 updates of 1e-4 should move 1.0 to 0.9, yours stayed at 1.0: the "
                           "weights are stored in bfloat16, whose spacing near 1 is 2⁻⁷ ≈ 0.0078, so "
                           "each update rounds away. Keep float32 master weights")
    expect_close(w.float(), torch.full((4,), 0.9), "weights after 1000 steps",
                 "w − lr·g in float32 for each g", rtol=1e-4, atol=1e-4)


@spec.case("returns float32 and leaves w0 alone")
def _(fn):
    w0 = torch.ones(3)
    w = fn(w0, torch.ones(2, 3, dtype=torch.bfloat16), 0.5)
    expect_tensor(w, (3,), "weights", dtype=torch.float32)
    if not torch.equal(w0, torch.ones(3)):
        raise CheckFailure("your function changed w0 in place; work on a copy")


# ============================================================================ bugs.adam_betas
spec = _isolated(register("bugs.adam_betas", sb.fixed_make_optimizers,
                          "Adam with β1 = 0.5 (not the default 0.9) for both GAN players"))


def _optimizers(fn):
    """What the learner's optimisers are (a probe): type, parameters held, lr, betas."""
    obs = probe(fn, P.optimizers)
    if not obs["pair"]:
        raise CheckFailure("return (opt_g, opt_d)")
    for f in obs["opts"]:
        if not f["groups"]:
            raise AttributeError(f"'{f['type']}' object has no attribute 'param_groups'")
    return obs["n"], obs["opts"]


@spec.case("two Adam optimizers, one per network")
def _(fn):
    n, (opt_g, opt_d) = _optimizers(fn)
    for name, opt, net, other in (("opt_g", opt_g, "G", "D"), ("opt_d", opt_d, "D", "G")):
        if not opt["adam"]:
            raise CheckFailure(f"{name} is a {opt['type']}, expected torch.optim.Adam")
        held = {tuple(h) for h in opt["held"]}
        if held != {(net, i) for i in range(n[net])}:
            swapped = held == {(other, i) for i in range(n[other])}
            raise CheckFailure(f"{name} does not hold exactly its own network's parameters"
                               + (": opt_g and opt_d are swapped" if swapped else ""))


@spec.case("learning rate 2e-4")
def _(fn):
    _, opts = _optimizers(fn)
    for name, opt in zip(("opt_g", "opt_d"), opts):
        lr = opt["lr"]
        if abs(lr - 2e-4) > 1e-12:
            raise CheckFailure(f"{name} has lr {lr:g}, the exercise asks for 2e-4")


@spec.case("β1 ≤ 0.5 for both optimizers")
def _(fn):
    _, opts = _optimizers(fn)
    for name, opt in zip(("opt_g", "opt_d"), opts):
        b1, b2 = opt["betas"]
        if (b1, b2) == (0.9, 0.999):
            raise CheckFailure(f"{name} uses Adam's default betas (0.9, 0.999): with β1 = 0.9 the "
                               "update averages ~10 steps of gradients of a target that the other "
                               "player keeps moving, and training oscillates. Use betas=(0.5, 0.999) "
                               "(DCGAN)")
        if not 0.0 <= b1 <= 0.5:
            raise CheckFailure(f"{name} has β1 = {b1}: GANs use β1 = 0.5 (DCGAN) or 0 (SAGAN, "
                               "BigGAN, WGAN-GP), not more")


# ============================================================================ bugs.conv_decoder
spec = _isolated(register("bugs.conv_decoder", sb.FixedConvDecoder,
                          "Linear(latent_dim) → view → transposed convs to 28×28"))


def _decode(cls, latent_dim, n=3):
    """Run the decoder (a probe), recording the shape every Linear layer receives."""
    out, err, seen = probe(cls, P.decoder_run, latent_dim, n)
    return None, out, err, [tuple(s) for s in seen]


@spec.case("the first Linear takes latent_dim inputs")
def _(cls):
    for latent in (50, 7):
        linears = probe(cls, P.decoder_linears, latent)
        if linears and linears[0] not in (0, latent):  # 0: a LazyLinear, sized on use
            raise CheckFailure(f"with latent_dim = {latent} your first Linear expects "
                               f"{linears[0]} inputs: the decoder must take the encoder's "
                               "latent size, nn.Linear(latent_dim, …), not a hard-coded number")


@spec.case("the Linear runs before the view to a feature map")
def _(cls):
    for latent in (50, 7):
        _, _, err, seen = _decode(cls, latent)
        if any(len(shape) != 2 for shape in seen):
            raise CheckFailure(f"a Linear layer received a {len(next(s for s in seen if len(s) != 2))}-D "
                               "tensor: z was viewed as a feature map before the Linear. Apply the "
                               "Linear to the (N, latent_dim) code, then .view(N, C, H, W)")
        if err is not None and not seen and ("view" in str(err) or "invalid for input" in str(err)):
            raise CheckFailure(f"z cannot be viewed as a feature map before the Linear ({err}): a "
                               "(N, latent_dim) code is not (N, C, H, W). Apply the Linear first, "
                               "then .view(N, C, H, W)")


@spec.case("outputs (N, 1, 28, 28) in [0, 1]")
def _(cls):
    _, out, err, _ = _decode(cls, 50)
    if err is not None:
        raise CheckFailure(f"the decoder fails on z of shape (3, 50): {err}")
    expect_tensor(out, None, "decoded images")
    if tuple(out.shape) == (3, 1, 32, 32):
        raise CheckFailure("the decoder outputs 32×32 images for 28×28 targets: three stride-2 "
                           "transposed convs double 4 → 8 → 16 → 32. Start from 7×7 and double "
                           "twice (7 → 14 → 28)")
    if tuple(out.shape) != (3, 1, 28, 28):
        raise CheckFailure(f"decoded images have shape {tuple(out.shape)}, expected (3, 1, 28, 28)")
    if out.min() < 0 or out.max() > 1:
        raise CheckFailure("decoded pixels leave [0, 1]: end with a sigmoid for [0, 1] targets")


# ============================================================================ bugs.tanh_bce
spec = _isolated(register("bugs.tanh_bce", sb.fixed_bernoulli_recon,
                          "Bernoulli reconstruction loss from logits, not from a tanh"))


@spec.case("negative decoder outputs are allowed")
def _(fn):
    out, x = torch.tensor([[-1.0, 0.5], [2.0, -3.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.2]])
    try:
        val = _scalar(fn(out, x))
    except (RuntimeError, ValueError) as e:
        raise CheckFailure(f"your loss fails on negative decoder outputs ({e}): tanh gives [−1, 1], "
                           "but BCE takes probabilities in [0, 1]. Treat the last layer as logits: "
                           "binary_cross_entropy_with_logits") from None
    if not torch.isfinite(val):
        raise CheckFailure("your loss is NaN/inf for negative decoder outputs: log of a tanh output "
                           "below 0 is undefined. Use binary_cross_entropy_with_logits")


@spec.case("matches the Bernoulli NLL (sum over pixels, mean over the batch)")
def _(fn):
    g = _gen(4)
    out, x = torch.randn(5, 6, generator=g) * 2, torch.rand(5, 6, generator=g)
    val = _scalar(fn(out, x))
    ref = sb.fixed_bernoulli_recon(out, x)
    shifted = F.binary_cross_entropy((torch.tanh(out) + 1) / 2, x, reduction="sum") / 5
    if torch.isclose(val, shifted, atol=1e-4):
        raise CheckFailure("(tanh(out) + 1) / 2 is sigmoid(2·out), not sigmoid(out): the decoder's "
                           "last layer is a logit, use binary_cross_entropy_with_logits(out, x)")
    expect_close(val, ref, "loss", "BCE-with-logits summed over pixels, divided by the batch size")


@spec.case("stable for confident outputs (±40)")
def _(fn):
    out, x = torch.tensor([[40.0, -40.0]]), torch.tensor([[0.0, 1.0]])
    expect_close(_scalar(fn(out, x)), sb.fixed_bernoulli_recon(out, x), "loss at logits ±40",
                 "sigmoid(40) is exactly 1.0 in float32 and BCELoss clamps log 0 at −100: compute "
                 "from logits")


# ============================================================================ bugs.loss_attribute
spec = _isolated(register("bugs.loss_attribute", sb.fixed_generator_step,
                          "compute G's loss from D's logits with a loss function"))


def _g_step(fn, junk=False):
    """The learner's G step (a probe) and the reference's on the same GAN, as parameter lists."""
    obs = probe(fn, P.generator_step, junk=junk)
    G2, D2, _, z = _tiny_gan()
    D0 = _params(D2)
    if junk:
        _junk_grads(G2)
    sb.fixed_generator_step(G2, D2, torch.optim.SGD(G2.parameters(), lr=0.1), z)
    return obs["G"], obs["D"], _params(G2), D0, obs["out"]


@spec.case("runs on plain nn.Module networks and returns the loss")
def _(fn):
    *_, out = _g_step(fn)
    _scalar(out, "the returned loss")


@spec.case("G moves like one SGD step on g_loss(D(G(z)))")
def _(fn):
    G, D, G2, D0, _ = _g_step(fn)
    if not _same(G, G2, 1e-5):
        raise CheckFailure("G's parameters differ from one step on g_loss(D(G(z))) (the "
                           "non-saturating loss): zero_grad, backward, opt_g.step()")
    if not _same(D, D0, 0):
        raise CheckFailure("D's parameters changed during the generator step: only opt_g steps here")


@spec.case("stale gradients in G are cleared")
def _(fn):
    G, _, G2, _, _ = _g_step(fn, junk=True)
    if not _same(G, G2, 1e-5):
        raise CheckFailure("when G's .grad already holds gradients your step adds them: call "
                           "opt_g.zero_grad() before backward")


# ============================================================================ bugs.noise_from_data
spec = _isolated(register("bugs.noise_from_data", sb.fixed_sample_batch,
                          "real rows from the data, noise from N(0, I)"))


def _row_gap(rows, data):
    """For each row, the max-abs distance to the nearest row of data (exact, unlike cdist)."""
    return (rows[:, None, :] - data[None, :, :]).abs().amax(-1).min(1).values


def _data(n=3000, width=16, seed=5):
    return 5.0 + 0.1 * torch.randn(n, width, generator=_gen(seed))


@spec.case("real rows are rows of the data")
def _(fn):
    torch.manual_seed(0)
    data = _data(200)
    real, _ = fn(data, 32, 8)
    expect_tensor(real, (32, 16), "real")
    if _row_gap(real, data).max() > 1e-6:
        raise CheckFailure("some 'real' rows are not rows of the data: index the dataset with "
                           "random row indices")


@spec.case("z has shape (batch_size, z_dim), even when z_dim exceeds the data width")
def _(fn):
    torch.manual_seed(0)
    _, z = fn(_data(200, width=4), 16, 10)
    expect_tensor(z, None, "z")
    if tuple(z.shape) != (16, 10):
        raise CheckFailure(f"z has shape {tuple(z.shape)}, expected (16, 10): noise is drawn with "
                           "the generator's z_dim, not cut from data rows (which here have 4 columns)")


@spec.case("z is N(0, I) noise, independent of the data")
def _(fn):
    torch.manual_seed(0)
    data = _data()
    _, z = fn(data, 4000, 8)
    if _row_gap(z[:200], data[:, :8]).median() < 1e-6:
        raise CheckFailure("your noise rows are rows of the dataset: the generator's input must be "
                           "fresh noise z ~ N(0, I), not data. Use torch.randn(batch_size, z_dim)")
    if abs(z.mean().item()) > 0.05 or abs(z.std().item() - 1) > 0.05:
        raise CheckFailure(f"noise has mean {z.mean():.3f} and std {z.std():.3f} on data centred at 5: "
                           "expected N(0, 1) whatever the data — torch.randn(batch_size, z_dim)")


# ============================================================================ bugs.resize_channel
spec = _isolated(register("bugs.resize_channel", sb.fixed_resize_digits,
                          "add the channel axis, then resize both spatial axes"))


@spec.case("(N, H, W) → (N, 1, size, size)")
def _(fn):
    x = torch.rand(5, 28, 28, generator=_gen(6))
    out = fn(x, 32)
    expect_tensor(out, None, "resized images")
    if tuple(out.shape) == (5, 1, 28, 32):
        raise CheckFailure("only the last axis was resized: F.interpolate read (N, 28, 28) as N "
                           "one-dimensional signals with 28 channels. Add the channel axis first, "
                           "x.unsqueeze(1), then resize (N, 1, H, W) to (size, size)")
    if tuple(out.shape) != (5, 1, 32, 32):
        raise CheckFailure(f"resized images have shape {tuple(out.shape)}, expected (5, 1, 32, 32)")


@spec.case("bilinear values, up and down")
def _(fn):
    # "bilinear" does not pin align_corners or antialias down: any of the four bilinear resizes passes
    for h, size in ((28, 32), (8, 6)):
        x = torch.rand(3, h, h, generator=_gen(h))
        out = fn(x, size)
        expect_tensor(out, (3, 1, size, size), f"resize {h} → {size}")
        if not torch.isfinite(out).all():
            raise CheckFailure(f"resize {h} → {size} contains NaN or inf")
        variants = [F.interpolate(x.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=ac,
                                  antialias=aa) for ac in (False, True) for aa in (False, True)]
        if any(torch.allclose(out.double(), v.double(), rtol=1e-4, atol=1e-5) for v in variants):
            continue
        nearest = F.interpolate(x.unsqueeze(1), size=(size, size), mode="nearest")
        if torch.allclose(out.double(), nearest.double(), atol=1e-5):
            raise CheckFailure(f"resize {h} → {size}: that is nearest-neighbour resizing, F.interpolate's "
                               "default mode; the docstring asks for bilinear resampling: pass mode='bilinear'")
        raise CheckFailure(f"resize {h} → {size}: the values differ from a bilinear resize of each image "
                           "(any align_corners / antialias setting is accepted): use mode='bilinear', as the "
                           "docstring asks, and resize the two spatial axes of (N, 1, H, W) together")
