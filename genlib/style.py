"""Neural style transfer (chapter 10): Gatys et al. optimisation and a Johnson et al. feed-forward net.

Gatys, Ecker & Bethge (2016) describe an image by the activations of a fixed CNN: *content* = the
feature maps themselves (where things are), *style* = the Gram matrices of the feature maps (which
features occur together, wherever they are). Style transfer then optimises the pixels of an image so
that its content features match a content image and its Gram matrices match a style image — a few
hundred gradient steps *per image*. Johnson, Alahi & Fei-Fei (2016) train a network once, for one
style, with the same loss; afterwards one forward pass styles any image.

The papers use VGG-19 trained on ImageNet. Offline, genlib has only small nets trained on 16×16
shapes and 8×8 digits, so the feature extractors here are

* ``FeatureNet.from_shapes_cnn()`` — the two conv layers of the shipped shapes classifier
  (16 and 32 channels, receptive fields 3 and 8 px; the conv layers run on any image size);
* ``FeatureNet.random(seed)`` — a multi-scale CNN with *random* weights: random filters already
  give usable texture statistics (Ustyuzhaninov, Brendel, Gatys & Bethge 2017).

Convention used throughout (and in the chapter's exercise): ``gram_matrix(F) = F Fᵀ / (C·H·W)`` per
image, with F the (C, H·W) matrix of one image's features — the normalisation of Johnson et al.
(2016), which keeps style losses of different layers on comparable scales.

Images are (N, 3, H, W) in [-1, 1].
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from genlib.train import History, batches, progress

STYLE_SIZE = 32  # content images: shapes drawn at 32×32
# the recipe of the chapter and of the shipped feed-forward net (scripts/train_applications.py)
STYLE_WEIGHT, TV_WEIGHT, RANDOM_SEED, FF_STEPS = 1e4, 0.02, 0, 1500
FF_WEIGHTS = "style_ff.pt"


# ============================================================================ the Gram matrix
def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """features: (N, C, H, W) → (N, C, C), G[n] = F_n F_nᵀ / (C·H·W) with F_n = features[n] as (C, H·W).

    Entry (i, j) is the product of channels i and j averaged over all positions and divided by C
    (a map of ones gives 1/C): which features fire together, with *where* thrown away. Each image
    gets its own Gram matrix.
    """
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


# ============================================================================ feature extractors
class FeatureNet(nn.Module):
    """A frozen stack of conv blocks; ``forward`` returns the list of feature maps after each block."""

    def __init__(self, blocks: list[nn.Module], name: str):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.name = name
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for b in self.blocks:
            x = b(x)
            feats.append(x)
        return feats

    @classmethod
    def from_shapes_cnn(cls) -> "FeatureNet":
        """The conv layers of the shipped shapes classifier: relu1 (16 ch, full size), relu2
        (32 ch, ½ size). Copies of the layers, so the classifier itself is untouched."""
        import copy

        from genlib.features import shapes_classifier

        body = copy.deepcopy(shapes_classifier("cpu").body)
        # body: conv, relu, pool, conv, relu, pool, flatten, linear, relu
        return cls([nn.Sequential(body[0], body[1]), nn.Sequential(body[2], body[3], body[4])],
                   "shapes CNN")

    @classmethod
    def random(cls, seed: int = 0, widths=(32, 64, 64)) -> "FeatureNet":
        """A multi-scale CNN with random (He-initialised) weights: one 3×3 conv + ReLU per scale,
        2×2 average pooling between scales."""
        g = torch.Generator().manual_seed(seed)
        blocks, c = [], 3
        for i, w in enumerate(widths):
            conv = nn.Conv2d(c, w, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * math.sqrt(2 / (c * 9)))
                conv.bias.zero_()
            blocks.append(nn.Sequential(*([nn.AvgPool2d(2)] if i else []), conv, nn.ReLU()))
            c = w
        return cls(blocks, f"random CNN (seed {seed})")


# ============================================================================ the loss
class StyleLoss:
    """Content loss on one layer, style loss on the Gram matrices of all layers (Gatys et al. 2016).

    ``content_layer``: index into the feature list; ``style_weight`` multiplies the summed style term
    (content weight 1); ``tv_weight`` a total-variation term that discourages pixel noise. Style
    targets come from one style image and are shared by the whole batch. ``gram`` computes the Gram
    matrices (the chapter passes the learner's own).
    """

    def __init__(self, net: FeatureNet, style_image: torch.Tensor, content_layer: int = -1,
                 style_weight: float = 1e3, tv_weight: float = 0.0, gram=None):
        self.net, self.content_layer = net, content_layer
        self.style_weight, self.tv_weight = style_weight, tv_weight
        self.gram = gram or gram_matrix
        with torch.no_grad():
            self.style_grams = [self.gram(f) for f in net(style_image)]

    def content_targets(self, content: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net(content)[self.content_layer]

    def __call__(self, x: torch.Tensor, content_feats: torch.Tensor) -> tuple[torch.Tensor, dict]:
        feats = self.net(x)
        content = F.mse_loss(feats[self.content_layer], content_feats)
        style = sum(F.mse_loss(self.gram(f), g.expand(len(x), -1, -1))
                    for f, g in zip(feats, self.style_grams))
        tv = (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., 1:] - x[..., :-1]).abs().mean()
        total = content + self.style_weight * style + self.tv_weight * tv
        return total, {"content": float(content.detach()), "style": float(style.detach()),
                       "total": float(total.detach())}


def gatys_transfer(content: torch.Tensor, loss: StyleLoss, steps: int = 300, lr: float = 0.03,
                   show_progress: bool = True) -> tuple[torch.Tensor, History]:
    """Optimise the pixels (started at the content image) with Adam: content: (N,3,H,W) → same.

    Every image costs ``steps`` forward and backward passes through the feature net.
    """
    targets = loss.content_targets(content)
    x = content.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    hist = History()
    it = range(steps)
    for _ in (progress(it, desc="Gatys optimisation") if show_progress else it):
        total, parts = loss(x, targets)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(-1, 1)
        hist.log(**parts)
    return x.detach(), hist


# ============================================================================ feed-forward (Johnson)
class TransformNet(nn.Module):
    """Image → styled image in one pass: (N,3,H,W) → (N,3,H,W) (any H, W).

    A small fully convolutional residual net at full resolution (Johnson et al. use down/upsampling
    and residual blocks with instance norm at 256 px; at 32 px plain convolutions are enough).
    The last layer starts at zero, so the untrained net returns its input.
    """

    def __init__(self, width: int = 32, depth: int = 5):
        super().__init__()
        layers, c = [], 3
        for _ in range(depth - 1):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU()]
            c = width
        layers.append(nn.Conv2d(c, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.body(x)).clamp(-1, 1)


def train_feedforward(contents: torch.Tensor, loss: StyleLoss, steps: int = 600, batch_size: int = 16,
                      lr: float = 2e-3, seed: int = 0) -> tuple[TransformNet, History]:
    """Train a ``TransformNet`` for the style inside ``loss`` on a set of content images."""
    torch.manual_seed(seed)
    net = TransformNet()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    hist = History()
    data = batches(contents, batch_size, torch.Generator().manual_seed(seed))
    for _ in progress(range(steps), desc="feed-forward style net"):
        c = next(data)
        total, parts = loss(net(c), loss.content_targets(c))
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        hist.log(**parts)
    return net.eval(), hist


def default_loss(net: FeatureNet | None = None, gram=None) -> StyleLoss:
    """The chapter's loss: the random multi-scale CNN (seed ``RANDOM_SEED``), the striped
    ``style_image()``, style weight ``STYLE_WEIGHT``, total-variation weight ``TV_WEIGHT``."""
    return StyleLoss(net or FeatureNet.random(RANDOM_SEED), style_image(),
                     style_weight=STYLE_WEIGHT, tv_weight=TV_WEIGHT, gram=gram)


def load_feedforward(device="cpu") -> TransformNet:
    """The shipped ``TransformNet`` trained for ``default_loss()`` (eval mode, frozen)."""
    import os

    from genlib.features import WEIGHTS_DIR

    path = os.path.join(WEIGHTS_DIR, FF_WEIGHTS)
    if not os.path.exists(path):
        raise RuntimeError(f"{path} is missing; rebuild it with "
                           "`python scripts/train_applications.py --only style`")
    net = TransformNet()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval().to(device)


# ============================================================================ data and measures
def style_image(size: int = STYLE_SIZE, period: int = 6, colors=((1.0, 0.6, 0.0), (0.2, 0.0, 0.8))) -> torch.Tensor:
    """A procedural style: diagonal stripes ('\\' direction) of two colours, (1, 3, size, size) in [-1, 1]."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    band = (((xx - yy) % period) < period / 2).float()                     # stripes along the main diagonal
    a, b = (torch.tensor(c).view(3, 1, 1) for c in colors)
    img = band * a + (1 - band) * b
    return (img * 2 - 1).unsqueeze(0)


def diagonal_anisotropy(x: torch.Tensor) -> torch.Tensor:
    """Orientation statistic per image (N,): log of (energy of differences along the anti-diagonal '/')
    over (energy along the main diagonal '\\'). Stripes running along '\\' change little along '\\'
    and a lot across it: strongly positive; shapes without a preferred diagonal: near 0."""
    main = (x[..., 1:, 1:] - x[..., :-1, :-1]).pow(2).flatten(1).mean(1)
    anti = (x[..., 1:, :-1] - x[..., :-1, 1:]).pow(2).flatten(1).mean(1)
    return torch.log((anti + 1e-6) / (main + 1e-6))


def time_per_image(fn, x: torch.Tensor, repeats: int = 5) -> float:
    """Median wall time (s) of ``fn(x)`` divided by len(x): seconds per image."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] / len(x)
