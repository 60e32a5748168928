"""Super-resolution on ``shapes`` (chapter 10): bicubic, a regression CNN, a conditional GAN.

The task: see a low-resolution image (the high-resolution one averaged over ``factor``×``factor``
blocks, i.e. area downsampling) and produce the 16×16 original. Three answers:

* ``bicubic``         – interpolation, no learning;
* ``SRNet`` + L2      – a regression CNN; for a pixel loss the optimum is the *mean* of all
  high-resolution images that fit the input, so it hedges and blurs where the input is ambiguous;
* ``SRNet`` + L1 + adversarial – a conditional GAN in the pix2pix style (Isola et al. 2017): the
  discriminator sees (low-res, candidate) pairs, which pushes the output towards *one* plausible
  sharp image instead of the average of many. (SRGAN, Ledig et al. 2017, differs: a VGG-feature
  content loss plus 10⁻³ × an adversarial loss, no pixel loss, and an unconditional discriminator
  that sees only high-resolution images. Like here, its generator starts from the MSE-trained net.)

Blau & Michaeli (2018) proved that distortion (distance to the true image) and perceptual quality
(distance between the output *distribution* and the natural one) cannot both be optimal: this
module measures both (``evaluate``) so the chapter can draw the trade-off.

All images are (N, 3, 16, 16) in [-1, 1]; low-res inputs are (N, 3, 16/f, 16/f).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genlib.data import shapes
from genlib.losses import d_loss, g_loss
from genlib.train import History, batches, progress

HR_SIZE = 16  # the shipped shapes classifier reads 16×16 images; SSIM's 11-tap window fits
FACTOR = 4    # 4×4 → 16×16: ambiguous enough that the pixel-loss optimum visibly blurs
# the recipe of the shipped weights (scripts/train_applications.py): the regression net trains
# REG_STEPS; the cGAN starts there and trains GAN_STEPS more; for a like-for-like comparison the shipped
# regression net also trains GAN_STEPS more (with L2 only, at REG_FINETUNE_LR)
REG_STEPS, GAN_STEPS, GAN_L1_WEIGHT, GAN_NOISE_CHANNELS, REG_FINETUNE_LR = 3000, 1500, 20.0, 1, 5e-4
WEIGHT_FILES = {"regression": "sr_regression.pt", "gan": "sr_gan.pt"}


def downsample(hr: torch.Tensor, factor: int) -> torch.Tensor:
    """Area downsampling: the mean of each factor×factor block. (N,C,H,W) → (N,C,H/f,W/f)."""
    if hr.shape[-1] % factor or hr.shape[-2] % factor:
        raise ValueError(f"size {tuple(hr.shape[-2:])} is not divisible by factor {factor}")
    return F.avg_pool2d(hr, factor)


def sr_data(n: int, factor: int = 4, seed: int = 0):
    """``(lr, hr, labels)``: n shapes at 16×16, their area-downsampled copies, attribute labels.

    lr: (n, 3, 16/f, 16/f), hr: (n, 3, 16, 16), both in [-1, 1]; labels: {"shape", "color",
    "size"} → (n,) int64 (the classifier's targets).
    """
    s = shapes(n, size=HR_SIZE, seed=seed)
    labels = {"shape": s.shape, "color": s.color, "size": s.size}
    return downsample(s.images, factor), s.images, labels


def bicubic(lr: torch.Tensor, factor: int) -> torch.Tensor:
    """Bicubic upsampling (no learning), clamped to the pixel range [-1, 1]."""
    up = F.interpolate(lr, scale_factor=factor, mode="bicubic", align_corners=False)
    return up.clamp(-1, 1)


class SRNet(nn.Module):
    """Bicubic upsampling plus a learned residual: lr (N,3,h,w) → (N,3,h·f,w·f).

    Five 3×3 convolutions at the high resolution (receptive field 11 px); predicting only the
    correction to bicubic makes the untrained net start at the bicubic answer. ``noise_channels`` > 0
    adds that many channels of N(0, 1) noise to the input (a generator that can give different
    answers to the same input; the regression net has none).
    """

    def __init__(self, factor: int = 4, width: int = 32, depth: int = 5, noise_channels: int = 0):
        super().__init__()
        self.factor, self.noise_channels = factor, noise_channels
        layers, c = [], 3 + noise_channels
        for _ in range(depth - 1):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.LeakyReLU(0.2)]
            c = width
        layers.append(nn.Conv2d(c, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, lr: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        up = F.interpolate(lr, scale_factor=self.factor, mode="bicubic", align_corners=False)
        if self.noise_channels:
            if noise is None:
                noise = torch.randn(len(up), self.noise_channels, *up.shape[2:], device=up.device)
            up_in = torch.cat([up, noise], 1)
        else:
            up_in = up
        return up + self.body(up_in)

    def load_regression(self, reg: "SRNet") -> "SRNet":
        """Start from a trained regression net; the weights that read the noise start at zero."""
        state = {k: v.clone() for k, v in reg.state_dict().items()}
        w = state["body.0.weight"]
        if self.noise_channels:
            extra = torch.zeros(w.shape[0], self.noise_channels, *w.shape[2:], dtype=w.dtype)
            state["body.0.weight"] = torch.cat([w, extra], 1)
        self.load_state_dict(state)
        return self


class PairDiscriminator(nn.Module):
    """Conditional D: (lr, hr candidate) → one logit per image. The low-res input is upsampled
    and stacked with the candidate, so D judges 'is this a real high-res image *of this input*'."""

    def __init__(self, factor: int = 4, width: int = 32):
        super().__init__()
        self.factor = factor
        sn = nn.utils.spectral_norm  # keeps D Lipschitz-bounded: steadier GAN training (Miyato et al. 2018)
        self.net = nn.Sequential(
            sn(nn.Conv2d(6, width, 3, padding=1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(width, 2 * width, 4, 2, 1)), nn.LeakyReLU(0.2),        # 16 → 8
            sn(nn.Conv2d(2 * width, 2 * width, 4, 2, 1)), nn.LeakyReLU(0.2),    # 8 → 4
            nn.Flatten(), sn(nn.Linear(2 * width * 16, 1)))

    def forward(self, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(lr, scale_factor=self.factor, mode="nearest")
        return self.net(torch.cat([up, hr], 1)).squeeze(1)


def train_regression(lr: torch.Tensor, hr: torch.Tensor, factor: int = 4, steps: int = 600,
                     batch_size: int = 64, lr_rate: float = 2e-3, seed: int = 0,
                     init: SRNet | None = None, device="cpu") -> tuple[SRNet, History]:
    """Fit an ``SRNet`` with the mean squared error (L2) to the high-res targets.

    ``init``: continue from (a copy of) this net instead of starting at bicubic."""
    torch.manual_seed(seed)
    net = SRNet(factor)
    if init is not None:
        net.load_state_dict(init.state_dict())
    net = net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr_rate)
    hist = History()
    data = batches(lr, batch_size, torch.Generator().manual_seed(seed), hr)
    for _ in progress(range(steps), desc="SR regression (L2)"):
        x, y = next(data)
        x, y = x.to(device), y.to(device)
        loss = F.mse_loss(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hist.log(l2=loss)
    return net.eval(), hist


def train_gan_sr(lr: torch.Tensor, hr: torch.Tensor, factor: int = 4, steps: int = 800,
                 batch_size: int = 64, l1_weight: float = 10.0, lr_rate: float = 2e-4,
                 init: SRNet | None = None, noise_channels: int = 0, seed: int = 0,
                 device="cpu") -> tuple[SRNet, History]:
    """Conditional GAN for SR: G minimises l1_weight·L1 + non-saturating adversarial loss.

    ``init``: start G from a trained regression net (as SRGAN does from its SRResNet); the GAN
    then only has to move the blurry mean towards a sharp, plausible answer.
    """
    torch.manual_seed(seed)
    G = SRNet(factor, noise_channels=noise_channels)
    if init is not None:
        G.load_regression(init)
    G = G.to(device)
    D = PairDiscriminator(factor).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr_rate, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr_rate, betas=(0.5, 0.999))
    hist = History()
    data = batches(lr, batch_size, torch.Generator().manual_seed(seed + 1), hr)
    G.train()
    for _ in progress(range(steps), desc="SR conditional GAN"):
        x, y = next(data)
        x, y = x.to(device), y.to(device)
        fake = G(x)
        ld = d_loss(D(x, y), D(x, fake.detach()))
        opt_d.zero_grad(set_to_none=True)
        ld.backward()
        opt_d.step()
        adv = g_loss(D(x, fake))
        l1 = (fake - y).abs().mean()
        lg = adv + l1_weight * l1
        opt_g.zero_grad(set_to_none=True)
        lg.backward()
        opt_g.step()
        hist.log(d_loss=ld, g_adv=adv, l1=l1)
    return G.eval(), hist


def load_shipped(kind: str, device="cpu") -> SRNet:
    """The shipped ×4 SR net: ``kind`` = "regression" (L2) or "gan" (L1 + adversarial), eval mode."""
    import os

    from genlib.features import WEIGHTS_DIR

    if kind not in WEIGHT_FILES:
        raise ValueError(f"kind must be one of {sorted(WEIGHT_FILES)}, got {kind!r}")
    path = os.path.join(WEIGHTS_DIR, WEIGHT_FILES[kind])
    if not os.path.exists(path):
        raise RuntimeError(f"{path} is missing; rebuild it with `python scripts/train_applications.py --only sr`")
    net = SRNet(FACTOR, noise_channels=GAN_NOISE_CHANNELS if kind == "gan" else 0)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval().to(device)


@torch.no_grad()
def upscale(net: nn.Module, lr: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Run a trained SR net on ``lr`` in batches; output clamped to [-1, 1] on the CPU."""
    dev = next(net.parameters()).device
    out = [net(lr[i:i + batch_size].to(dev)).clamp(-1, 1).cpu() for i in range(0, len(lr), batch_size)]
    return torch.cat(out)


# ============================================================================ measuring
def high_frequency_energy(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels (horizontal + vertical), per image (N,).

    A sharpness statistic: a blurred image has less of it than the truth, a noisy one more.
    """
    dx = (x[..., :, 1:] - x[..., :, :-1]).pow(2).flatten(1).mean(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).pow(2).flatten(1).mean(1)
    return dx + dy


@torch.no_grad()
def evaluate(out: torch.Tensor, hr: torch.Tensor, labels: dict, real_features: torch.Tensor) -> dict:
    """Distortion and perception numbers of SR outputs ``out`` against the truths ``hr``.

    * ``psnr``, ``ssim`` (dB / unitless, means over images) — distortion, compared pixel by pixel
      with each image's own truth. SSIM is the standard one: computed on (x + 1) / 2 with
      data_range = 1 (Wang et al. 2004 assume non-negative intensities; on signed [-1, 1] pixels its
      luminance term is a different statistic). ``ssim_luminance`` and ``ssim_structure`` are the
      means of its two factors, l = (2μxμy + C1)/(μx² + μy² + C1) and
      cs = (2σxy + C2)/(σx² + σy² + C2), over the same windows (their product's mean is ``ssim``);
    * ``psnr_per_image``, ``ssim_per_image`` — (N,) numpy arrays, for paired intervals;
    * ``fid`` — Fréchet distance between the shapes-classifier features of the outputs and of a
      separate set of real 16×16 shapes (``real_features``): how far the output *distribution* is
      from real images, the 'perceptual quality' axis of Blau & Michaeli (2018);
    * ``accuracy`` — fraction of outputs on which the shipped classifier reads all three attributes
      (shape, colour, size) of the true image;
    * ``sharpness`` — mean high-frequency energy of the outputs divided by that of the truths
      (1 = as sharp as real, < 1 blurred).
    """
    from genlib.features import classify_shapes, shapes_features
    from genlib.metrics import fid_from_features, psnr, ssim

    out = out.clamp(-1, 1)
    pred = classify_shapes(out)
    right = torch.ones(len(out), dtype=torch.bool)
    for k in ("shape", "color", "size"):
        right &= pred[k] == labels[k]
    p = psnr(out, hr, data_range=2.0)
    s = ssim((out + 1) / 2, (hr + 1) / 2, data_range=1.0)
    lum, cs = ssim_factors((out + 1) / 2, (hr + 1) / 2, data_range=1.0)
    return {
        "psnr": float(p.mean()),
        "ssim": float(s.mean()),
        "ssim_luminance": lum,
        "ssim_structure": cs,
        "psnr_per_image": p.double().numpy(),
        "ssim_per_image": s.double().numpy(),
        "fid": fid_from_features(shapes_features(out), real_features),
        "accuracy": float(right.float().mean()),
        "sharpness": float(high_frequency_energy(out).mean() / high_frequency_energy(hr).mean()),
    }


def ssim_factors(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = 11,
                 sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> tuple[float, float]:
    """Means of SSIM's two factors over every valid window of every channel and image:
    luminance l = (2μxμy + C1)/(μx² + μy² + C1) and contrast-structure cs = (2σxy + C2)/(σx² + σy² + C2),
    with the window, moments and constants of ``genlib.metrics.ssim`` (whose map is l·cs). Images on
    [0, data_range]. Shows *why* two methods differ on SSIM: a wrong window brightness lowers l,
    wrong edges and texture lower cs. cs does not change when every pixel is shifted by a constant;
    l does."""
    from genlib.metrics import gaussian_window

    c = x.shape[1]
    g = gaussian_window(win_size, sigma).double()
    w = (g[:, None] * g[None, :]).expand(c, 1, win_size, win_size)
    xd, yd = x.double(), y.double()

    def filt(a):
        return F.conv2d(a, w, groups=c)

    mx, my = filt(xd), filt(yd)
    vx, vy, cov = filt(xd * xd) - mx ** 2, filt(yd * yd) - my ** 2, filt(xd * yd) - mx * my
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    lum = (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)
    cs = (2 * cov + c2) / (vx + vy + c2)
    return float(lum.mean()), float(cs.mean())
