"""Image-to-image translation on ``shapes``: pix2pix (paired) and CycleGAN (unpaired), scored.

The task: turn a circle into a square of the same colour, size and position (and back). A
classifier can score it — the shipped shapes CNN reads shape, colour and size
(``genlib.features.classify_shapes``) — and the position is read from the drawn pixels.

=========================  ================================================================
``paired_shapes``          the same scene drawn twice: shape A / shape B (or a grey copy)
``shape_mask``, ``centroid``  which pixels are drawn, and their centre of mass
``UNet``                   a two-level U-Net generator, (N,3,16,16) → (N,3,16,16) in [-1,1]
``PatchD``                 a PatchGAN-style discriminator: one logit per 4×4 patch grid cell
``cycle_loss``             λ·(mean|F(G(x)) − x| + mean|G(F(y)) − y|), the CycleGAN exercise
``train_pix2pix``          conditional GAN + λ·L1 on pairs (Isola et al. 2017, λ = 100)
``train_cyclegan``         two G, two D, least-squares GAN + cycle loss (Zhu et al. 2017, λ = 10)
``translate``              run a generator in eval mode, batched, without gradients
``score_translation``      translation right? colour, size and position kept? IoU with the truth
=========================  ================================================================

Terms: a *conditional* GAN (cGAN; Mirza & Osindero 2014) feeds the condition — here the input
image — to both networks; pix2pix is a cGAN trained on aligned pairs. CycleGAN needs no pairs: two
sets of images, one per domain, and a cycle-consistency loss that ties the two generators together.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genlib.data import _COLOR_RGB, COLOR_NAMES, SHAPE_NAMES, SIZE_NAMES, _draw
from genlib.losses import d_loss, g_loss, lsgan_d_loss, lsgan_g_loss
from genlib.train import History, progress

GREY = "grey"  # the colourless domain of the steganography experiment: (½, ½, ½) for every colour


# ----------------------------------------------------------------------------- data
@dataclass
class Pairs:
    """Output of ``paired_shapes``: two renderings of the same scenes, and what they share."""
    a: torch.Tensor        # (N, 3, S, S) in [-1, 1], domain A
    b: torch.Tensor        # (N, 3, S, S) in [-1, 1], domain B: same colour/size/centre as a
    shape_a: torch.Tensor  # (N,) index into SHAPE_NAMES
    shape_b: torch.Tensor  # (N,)
    color: torch.Tensor    # (N,) index into COLOR_NAMES (of a; b too unless b is grey)
    size: torch.Tensor     # (N,) index into SIZE_NAMES
    center: torch.Tensor   # (N, 2) the (x, y) centre the shapes were drawn around, in pixels

    def __len__(self):
        return len(self.a)


def paired_shapes(n: int = 2000, shape_a: str | None = "circle", shape_b: str | None = "square",
                  color_b: str | None = None, seed: int = 0, size: int = 16) -> Pairs:
    """``n`` scenes, each drawn as ``shape_a`` (domain A) and as ``shape_b`` (domain B).

    Colour, size and position are random (as in ``genlib.data.shapes``) and shared by the two
    images of a pair. ``shape_a=None`` draws a random shape (then ``shape_b=None`` repeats it);
    ``color_b="grey"`` paints B mid-grey whatever A's colour was (a many-to-one translation).
    For unpaired training take ``.a`` of one call and ``.b`` of another call with another seed.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    for s in (shape_a, shape_b):
        if s is not None and s not in SHAPE_NAMES:
            raise ValueError(f"shape must be one of {SHAPE_NAMES} or None, got {s!r}")
    if color_b is not None and color_b != GREY and color_b not in COLOR_NAMES:
        raise ValueError(f"color_b must be None, 'grey' or one of {COLOR_NAMES}, got {color_b!r}")
    rng = np.random.RandomState(seed)
    sh_a = rng.randint(len(SHAPE_NAMES), size=n) if shape_a is None else \
        np.full(n, SHAPE_NAMES.index(shape_a))
    sh_b = sh_a.copy() if shape_b is None else np.full(n, SHAPE_NAMES.index(shape_b))
    co = rng.randint(len(COLOR_NAMES), size=n)
    sz = rng.randint(len(SIZE_NAMES), size=n)
    a = np.zeros((n, 3, size, size), np.float32)
    b = np.zeros_like(a)
    centers = np.zeros((n, 2), np.float32)
    for i in range(n):
        r = size * (0.22 if sz[i] == 0 else 0.38)          # the radii of genlib.data.shapes
        jitter = size * 0.5 - r - 0.5
        cx = size / 2 + rng.uniform(-jitter, jitter) * 0.5
        cy = size / 2 + rng.uniform(-jitter, jitter) * 0.5
        centers[i] = cx, cy
        rgb_a = np.array(_COLOR_RGB[COLOR_NAMES[co[i]]], np.float32)
        rgb_b = (np.full(3, 0.5, np.float32) if color_b == GREY else
                 rgb_a if color_b is None else np.array(_COLOR_RGB[color_b], np.float32))
        a[i] = _draw(SHAPE_NAMES[sh_a[i]], cx, cy, r, size)[None] * rgb_a[:, None, None]
        b[i] = _draw(SHAPE_NAMES[sh_b[i]], cx, cy, r, size)[None] * rgb_b[:, None, None]
    to = lambda v: torch.from_numpy(v)  # noqa: E731
    return Pairs(2 * to(a) - 1, 2 * to(b) - 1, to(sh_a), to(sh_b), to(co), to(sz), to(centers))


def shape_mask(x: torch.Tensor) -> torch.Tensor:
    """x: (N, 3, H, W) in [-1, 1] → (N, H, W) bool: pixels whose brightest channel is above −½.

    The background is black (−1 in every channel); every drawn colour has a channel at 1, and the
    grey of ``color_b="grey"`` is 0 in every channel, so the threshold halfway between black and
    grey recovers the drawn shape of real and of well-translated images.
    """
    return x.amax(dim=1) > -0.5


def centroid(mask: torch.Tensor) -> torch.Tensor:
    """mask: (N, H, W) bool → (N, 2) centre of mass (x, y) in pixel units (pixel centres at +½);
    NaN for an empty mask."""
    m = mask.float()
    h, w = m.shape[-2:]
    ys = torch.arange(h, dtype=torch.float32, device=m.device) + 0.5
    xs = torch.arange(w, dtype=torch.float32, device=m.device) + 0.5
    total = m.sum(dim=(1, 2))
    cx = (m.sum(dim=1) * xs).sum(dim=1) / total
    cy = (m.sum(dim=2) * ys).sum(dim=1) / total
    return torch.stack([cx, cy], dim=1)


def mask_iou(m1: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool × 2 → (N,) intersection over union (1 when both are empty)."""
    inter = (m1 & m2).sum(dim=(1, 2)).float()
    union = (m1 | m2).sum(dim=(1, 2)).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


# ----------------------------------------------------------------------------- networks
def _norm(ch: int) -> nn.Module:
    # instance norm, as in CycleGAN and pix2pix's batch-size-1 setting: each image normalised alone
    return nn.InstanceNorm2d(ch, affine=True)


class UNet(nn.Module):
    """x: (N, 3, 16, 16) in [-1, 1] → (N, 3, 16, 16) in [-1, 1] (tanh).

    Two stride-2 convolutions down (16 → 8 → 4) and two transposed convolutions up, with skip
    connections that concatenate each encoder map with the decoder map of the same size — the
    pix2pix generator (Isola et al. 2017) scaled down from 256×256 and eight levels. The skips carry
    the position of every edge straight to the output, so the decoder only has to change what the
    translation changes.
    """

    def __init__(self, width: int = 16, in_ch: int = 3, out_ch: int = 3):
        super().__init__()
        w = width
        self.inc = nn.Sequential(nn.Conv2d(in_ch, w, 3, padding=1), nn.LeakyReLU(0.2))        # 16
        self.down1 = nn.Sequential(nn.Conv2d(w, 2 * w, 4, 2, 1), _norm(2 * w), nn.LeakyReLU(0.2))  # 8
        self.down2 = nn.Sequential(nn.Conv2d(2 * w, 4 * w, 4, 2, 1), _norm(4 * w), nn.LeakyReLU(0.2))  # 4
        self.mid = nn.Sequential(nn.Conv2d(4 * w, 4 * w, 3, padding=1), _norm(4 * w), nn.ReLU())
        self.up2 = nn.Sequential(nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), _norm(2 * w), nn.ReLU())  # 8
        self.up1 = nn.Sequential(nn.ConvTranspose2d(4 * w, w, 4, 2, 1), _norm(w), nn.ReLU())  # 16
        self.out = nn.Sequential(nn.Conv2d(2 * w, out_ch, 3, padding=1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = self.inc(x)
        h1 = self.down1(h0)
        h2 = self.mid(self.down2(h1))
        u2 = self.up2(h2)
        u1 = self.up1(torch.cat([u2, h1], dim=1))
        return self.out(torch.cat([u1, h0], dim=1))


class PatchD(nn.Module):
    """x: (N, C, 16, 16) → (N, 4, 4) raw scores, one per overlapping patch (PatchGAN, scaled down).

    pix2pix's discriminator judges N×N patches instead of the whole image (70×70 on 256×256); here
    two stride-2 convolutions and a 3×3 one give a 4×4 map of scores whose convolutional receptive
    fields are 18×18 pixels (so on 16×16 images each score sees most of the image). "Patch" refers to
    the convolutions only: the InstanceNorm after the second convolution uses statistics of the whole
    feature map, so every score depends on every input pixel (as pix2pix's BatchNorm at batch size 1
    does). For pix2pix, C = 6: the
    input image and the (real or translated) output stacked, so D judges whether the output fits
    *this* input — the conditional part of the cGAN.
    """

    def __init__(self, in_ch: int = 3, width: int = 16):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, w, 4, 2, 1), nn.LeakyReLU(0.2),                    # 16 → 8
            nn.Conv2d(w, 2 * w, 4, 2, 1), _norm(2 * w), nn.LeakyReLU(0.2),      # 8 → 4
            nn.Conv2d(2 * w, 1, 3, padding=1),                                  # 4×4 scores
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


# ----------------------------------------------------------------------------- the exercise
def cycle_loss(x: torch.Tensor, x_rec: torch.Tensor, y: torch.Tensor, y_rec: torch.Tensor,
               lam: float = 10.0) -> torch.Tensor:
    """CycleGAN's cycle-consistency loss (Zhu et al. 2017), a scalar.

    ``x``: images of domain X, ``x_rec = F(G(x))`` their round trip X → Y → X; ``y`` and
    ``y_rec = G(F(y))`` the same for domain Y. Any shapes, as long as each pair matches.
    Both directions, L1 (the norm the paper uses), averaged over pixels (the official code's ``L1Loss``, so λ = 10 means what the
    paper means), multiplied by λ once. Gradients flow into x_rec and y_rec, i.e. into both
    generators.
    """
    return lam * ((x_rec - x).abs().mean() + (y_rec - y).abs().mean())


# ----------------------------------------------------------------------------- training
def _pick(*tensors, idx):
    return [t[idx] for t in tensors]


def train_pix2pix(a: torch.Tensor, b: torch.Tensor, steps: int, batch_size: int = 32,
                  lam: float = 100.0, lr: float = 2e-4, width: int = 16, seed: int = 0,
                  device: str | torch.device = "cpu", desc: str = "pix2pix"):
    """pix2pix on aligned pairs ``a[i] → b[i]`` (each (N, 3, 16, 16) in [-1, 1]).

    G minimises the non-saturating cGAN loss on D(a, G(a)) plus λ·mean|G(a) − b| (λ = 100 in the
    paper); D(a, ·) scores pairs, with its loss halved as in the paper. Adam(2e-4, β = (0.5, 0.999)).
    Returns ``(G, history)`` with G in eval mode; history keys d_loss, g_gan, g_l1.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    device = torch.device(device)
    G, D = UNet(width).to(device), PatchD(6, width).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    hist = History()
    for _ in progress(range(steps), desc=desc):
        idx = torch.randint(len(a), (batch_size,), generator=gen)
        xa, xb = (t.to(device) for t in _pick(a, b, idx=idx))
        fake = G(xa)
        opt_d.zero_grad(set_to_none=True)
        loss_d = 0.5 * d_loss(D(torch.cat([xa, xb], 1)), D(torch.cat([xa, fake.detach()], 1)))
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        gan = g_loss(D(torch.cat([xa, fake], 1)))
        l1 = (fake - xb).abs().mean()
        (gan + lam * l1).backward()
        opt_g.step()
        hist.log(d_loss=loss_d, g_gan=gan, g_l1=l1)
    return G.eval(), hist


def train_cyclegan(a: torch.Tensor, b: torch.Tensor, steps: int, batch_size: int = 32,
                   lam: float = 10.0, lam_identity: float = 0.0, lr: float = 2e-4,
                   width: int = 16, seed: int = 0,
                   device: str | torch.device = "cpu", loss_fn=cycle_loss, desc: str = "CycleGAN"):
    """CycleGAN on two *unpaired* sets: ``a`` (domain A) and ``b`` (domain B), (N, 3, 16, 16).

    G: A → B judged by D_B, F: B → A judged by D_A, least-squares GAN losses (as in the paper),
    plus ``loss_fn(a, F(G(a)), b, G(F(b)), lam)`` (λ = 10). ``lam_identity`` > 0 adds the paper's
    identity loss λ_id·(mean|G(b) − b| + mean|F(a) − a|) (they use λ_id = 0.5·λ where colours must
    be kept): a generator shown an image already in its target domain should leave it alone. The
    buffer of 50 past fakes for D is left out.
    Returns ``(G, F, history)`` with both generators in eval mode; history keys d_a, d_b, g_gan,
    cycle.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    device = torch.device(device)
    G, Fn = UNet(width).to(device), UNet(width).to(device)
    D_a, D_b = PatchD(3, width).to(device), PatchD(3, width).to(device)
    opt_g = torch.optim.Adam(list(G.parameters()) + list(Fn.parameters()), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(list(D_a.parameters()) + list(D_b.parameters()), lr=lr,
                             betas=(0.5, 0.999))
    hist = History()
    for _ in progress(range(steps), desc=desc):
        xa = a[torch.randint(len(a), (batch_size,), generator=gen)].to(device)
        xb = b[torch.randint(len(b), (batch_size,), generator=gen)].to(device)
        fake_b, fake_a = G(xa), Fn(xb)
        # generators: fool both discriminators and come back round the cycle
        opt_g.zero_grad(set_to_none=True)
        gan = lsgan_g_loss(D_b(fake_b)) + lsgan_g_loss(D_a(fake_a))
        cyc = loss_fn(xa, Fn(fake_b), xb, G(fake_a), lam)
        idt = (lam_identity * ((G(xb) - xb).abs().mean() + (Fn(xa) - xa).abs().mean())
               if lam_identity else torch.zeros((), device=device))
        (gan + cyc + idt).backward()
        opt_g.step()
        # discriminators, on detached fakes
        opt_d.zero_grad(set_to_none=True)
        loss_da = lsgan_d_loss(D_a(xa), D_a(fake_a.detach()))
        loss_db = lsgan_d_loss(D_b(xb), D_b(fake_b.detach()))
        (loss_da + loss_db).backward()
        opt_d.step()
        hist.log(d_a=loss_da, d_b=loss_db, g_gan=gan, cycle=cyc, identity=idt)
    return G.eval(), Fn.eval(), hist


@torch.no_grad()
def translate(G: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """G's translation of x: (N, 3, H, W), in eval mode, batched, on G's device; returned on CPU."""
    was = G.training
    G.eval()
    device = next(G.parameters()).device
    out = torch.cat([G(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])
    G.train(was)
    return out


# ----------------------------------------------------------------------------- scoring
def score_translation(out: torch.Tensor, target_shape: int | torch.Tensor, color: torch.Tensor,
                      size: torch.Tensor, center_src: torch.Tensor, truth: torch.Tensor | None = None,
                      max_shift: float = 1.0) -> dict:
    """Score translated images ``out: (N, 3, 16, 16)`` with the shipped shapes classifier.

    * ``right``: the classifier reads ``target_shape`` (an index into SHAPE_NAMES, or one per image);
    * ``color`` / ``size``: it reads the source's colour / size (kept attributes);
    * ``position``: the drawn pixels' centroid is within ``max_shift`` pixels of ``center_src``
      (N, 2) — the centroid of the source's drawn pixels, which for the symmetric shapes here is
      the centre they were drawn around;
    * ``kept``: colour, size and position all kept; ``both``: right and kept;
    * ``iou``: mean mask IoU with the true translation ``truth`` when it is given.
    Returns floats (fractions of the N images) and the per-image boolean tensors under ``per_image``.
    """
    from genlib.features import classify_shapes

    pred = classify_shapes(out.clamp(-1, 1))
    target = torch.as_tensor(target_shape).expand(len(out))
    mask = shape_mask(out)
    shift = (centroid(mask) - center_src).norm(dim=1)
    per = {"right": pred["shape"] == target, "color": pred["color"] == color,
           "size": pred["size"] == size, "position": shift <= max_shift}  # NaN (empty) → False
    per["kept"] = per["color"] & per["size"] & per["position"]
    per["both"] = per["right"] & per["kept"]
    res = {k: v.float().mean().item() for k, v in per.items()}
    if truth is not None:
        res["iou"] = mask_iou(mask, shape_mask(truth)).mean().item()
    res["per_image"] = per
    return res


# ----------------------------------------------------------------------------- shipped CycleGANs

CYCLEGAN_WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights",
                                "translate_cyclegan.pt")
# name → how scripts/train_translate.py trains it (data seeds 2 and 3 are two disjoint draws, so the
# two domains are unpaired; test sets use seeds ≥ 100)
CYCLEGAN_CONFIGS = {
    "shape": dict(shape_a="circle", shape_b="square", color_b=None, lam_identity=5.0),
    "no_identity": dict(shape_a="circle", shape_b="square", color_b=None, lam_identity=0.0),
    "grey": dict(shape_a=None, shape_b=None, color_b=GREY, lam_identity=0.0),
}
CYCLEGAN_STEPS = 1500
CYCLEGAN_TRAIN_SIZE = 2000


def cyclegan_data(name: str, n: int = CYCLEGAN_TRAIN_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """The two unpaired training sets of the shipped CycleGAN ``name``: A from one draw, B from another."""
    c = CYCLEGAN_CONFIGS[name]
    kw = dict(shape_a=c["shape_a"], shape_b=c["shape_b"], color_b=c["color_b"])
    return paired_shapes(n, seed=2, **kw).a, paired_shapes(n, seed=3, **kw).b


def fit_cyclegan(name: str, steps: int = CYCLEGAN_STEPS, seed: int = 0, **kw):
    """Train the CycleGAN ``name`` of CYCLEGAN_CONFIGS as it was trained for the shipped weights."""
    a, b = cyclegan_data(name)
    return train_cyclegan(a, b, steps, lam_identity=CYCLEGAN_CONFIGS[name]["lam_identity"], seed=seed,
                          desc=f"CycleGAN {name}", **kw)


def load_cyclegan(name: str, device: str | torch.device = "cpu") -> tuple[UNet, UNet]:
    """The shipped generators (G: A → B, F: B → A) of CycleGAN ``name``, float32, eval mode, frozen.

    Stored in float16 (``scripts/train_translate.py`` trains and writes them; ``--check`` retrains).
    """
    if name not in CYCLEGAN_CONFIGS:
        raise ValueError(f"name must be one of {tuple(CYCLEGAN_CONFIGS)}, got {name!r}")
    if not os.path.exists(CYCLEGAN_WEIGHTS):
        raise RuntimeError(f"{CYCLEGAN_WEIGHTS} is missing; rebuild it with "
                           "`python scripts/train_translate.py`")
    state = torch.load(CYCLEGAN_WEIGHTS, map_location="cpu", weights_only=True)[name]
    nets = []
    for key in ("G", "F"):
        net = UNet(int(state["width"]))
        net.load_state_dict({k: v.float() for k, v in state[key].items()})
        for p in net.parameters():
            p.requires_grad_(False)
        nets.append(net.eval().to(device))
    return nets[0], nets[1]


def test_pairs(name: str, n: int = 500, seed: int = 100) -> Pairs:
    """Held-out pairs (truth for both directions) for the CycleGAN ``name``; never used in training."""
    c = CYCLEGAN_CONFIGS[name]
    return paired_shapes(n, c["shape_a"], c["shape_b"], c["color_b"], seed=seed)


@torch.no_grad()
def color_recovered(F_net: nn.Module, grey: torch.Tensor, color: torch.Tensor) -> float:
    """Fraction of ``grey`` images (N, 3, 16, 16) that F turns back into their original ``color``
    (as the shapes classifier reads F's output). Chance is 1/6."""
    from genlib.features import classify_shapes

    return (classify_shapes(translate(F_net, grey).clamp(-1, 1))["color"] == color).float().mean().item()


def cyclegan_scores(name: str, G: nn.Module, F_net: nn.Module, n: int = 500) -> dict:
    """The numbers chapter 10 reports for a shipped CycleGAN, on ``test_pairs(name, n)``.

    Shape models: ``ab_*`` / ``ba_*`` are score_translation's right / kept / both for A → B and
    B → A, ``cycle_l1`` the mean |F(G(a)) − a|. Grey model: ``grey_l1`` = mean |G(a) − true grey
    image|, ``from_cycle`` = colour recovered from G(a), ``from_real_grey`` = from the true grey image.
    """
    t = test_pairs(name, n)
    fake_b = translate(G, t.a)
    out = {"cycle_l1": (translate(F_net, fake_b) - t.a).abs().mean().item()}
    if CYCLEGAN_CONFIGS[name]["color_b"] == GREY:
        out.update(grey_l1=(fake_b - t.b).abs().mean().item(),
                   from_cycle=color_recovered(F_net, fake_b, t.color),
                   from_real_grey=color_recovered(F_net, t.b, t.color))
        return out
    ca, cb = centroid(shape_mask(t.a)), centroid(shape_mask(t.b))
    for tag, res in (("ab", score_translation(fake_b, t.shape_b, t.color, t.size, ca, truth=t.b)),
                     ("ba", score_translation(translate(F_net, t.b), t.shape_a, t.color, t.size, cb,
                                              truth=t.a))):
        out.update({f"{tag}_{k}": res[k] for k in ("right", "kept", "both", "color")})
    return out
