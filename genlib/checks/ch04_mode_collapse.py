"""Checks for chapter 04 (mode collapse): the mode statistics' pieces, packing, gradient penalty."""
import math

import torch

from genlib.exercises import CheckFailure, expect_close, expect_tensor, probe, register
from genlib.modecollapse import assign_modes, gradient_penalty, pack, reverse_kl
from genlib.probes import ch04 as P

# ----------------------------------------------------------------------------- assign_modes
spec = register("modes.assign_modes", assign_modes,
                "nearest mode of each sample and whether it lies within 3 std of it")

_CENTERS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])


def _call_assign(fn, x, centers=_CENTERS, std=0.1):
    out = fn(x.clone(), centers.clone(), std)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise CheckFailure("return a pair (mode, high_quality): the nearest mode's index (N,) "
                           "and a boolean mask (N,)")
    mode, hq = out
    expect_tensor(mode, (len(x),), "mode")
    expect_tensor(hq, (len(x),), "high_quality")
    if mode.dtype.is_floating_point:
        raise CheckFailure("mode should hold integer indices (int64), e.g. from argmin/min(dim=1)")
    if hq.dtype != torch.bool:
        raise CheckFailure(f"high_quality should be a boolean mask, got dtype {hq.dtype}")
    return mode, hq


@spec.case("returns (mode (N,) int, high_quality (N,) bool)")
def _(fn):
    _call_assign(fn, torch.randn(5, 2))


@spec.case("picks the nearest mode")
def _(fn):
    x = torch.tensor([[0.1, 0.05], [0.9, 0.1], [0.05, 1.2], [0.6, 0.0]])
    mode, _ = _call_assign(fn, x)
    got = mode.tolist()
    if got == torch.cdist(x, _CENTERS).argmax(1).tolist():
        raise CheckFailure("you took the farthest mode: use the minimum distance (argmin), not the maximum")
    if got != [0, 1, 2, 1]:
        raise CheckFailure(f"nearest modes should be [0, 1, 2, 1], got {got}: compare each sample "
                           "with every centre (torch.cdist) and take the closest along dim=1")


@spec.case("high quality means Euclidean distance ≤ 3·std")
def _(fn):
    std = 0.1
    # distances 0.25, 0.29 (inside), 0.31, 0.354 (= 0.25·√2, outside the disk, inside the box)
    x = torch.tensor([[0.25, 0.0], [0.0, 0.29], [0.31, 0.0], [0.25, 0.25]])
    _, hq = _call_assign(fn, x, std=std)
    got = hq.tolist()
    if got == [True, True, False, True]:
        raise CheckFailure("(0.25, 0.25) is 0.354 > 3·std = 0.3 from its mode but you called it high "
                           "quality: test the Euclidean distance, not each coordinate separately")
    if got == [True, True, True, True]:
        # squared distances 0.0625 … 0.125 are all below 0.3; a per-coordinate box keeps 0.31 out
        raise CheckFailure("every point counted as high quality, even 0.31 and 0.354 from their mode with "
                           "3·std = 0.3: you probably compared the squared distance ‖x − c‖² with 3·std — "
                           "take the square root (torch.cdist gives Euclidean distances)")
    if got == [False, False, False, False] or got == [True, False, False, False]:
        raise CheckFailure("points within 0.3 = 3·std of their mode must count as high quality: "
                           "did you use 1·std, 2·std or the squared distance against (3·std)?")
    if got != [True, True, False, False]:
        raise CheckFailure(f"expected [True, True, False, False] for distances 0.25, 0.29, 0.31, 0.354 "
                           f"with std 0.1, got {got}: a sample is high quality when ‖x − c‖ ≤ 3·std")


@spec.case("squared distances are not distances")
def _(fn):
    # at std 0.5, 3·std = 1.5; a point 1.3 away is high quality, but 1.3² = 1.69 > 1.5
    x = torch.tensor([[-3.7, 0.0]])
    centers = torch.tensor([[-5.0, 0.0], [5.0, 0.0]])
    _, hq = _call_assign(fn, x, centers, std=0.5)
    if not hq.item():
        raise CheckFailure("a point 1.3 from its mode with std 0.5 (3·std = 1.5) must be high quality; "
                           "you probably compared the squared distance with 3·std — take the square root")


@spec.case("as chapter 04 uses it: 2,500 ring samples, then torch.bincount(mode[hq])")
def _(fn):
    from genlib import data

    centers, x = data.ring_centers(), data.ring(2500, seed=1)
    mode, hq = _call_assign(fn, x, centers, 0.01)
    ref_mode, ref_hq = assign_modes(x, centers, 0.01)
    try:
        counts = torch.bincount(mode[hq], minlength=len(centers))
    except Exception as e:  # noqa: BLE001 - the chapter's next line, with the learner's output
        raise CheckFailure(f"the chapter's torch.bincount(mode[hq], minlength=K) fails on your output "
                           f"({type(e).__name__}: {str(e)[:80]}): mode must be int64 indices, hq a bool "
                           "mask of the same length") from None
    if not torch.equal(counts, torch.bincount(ref_mode[ref_hq], minlength=len(centers))):
        raise CheckFailure("on the chapter's ring data (2,500 samples, std 0.01) your per-mode counts "
                           "differ from the reference: nearest centre by Euclidean distance, high "
                           "quality when that distance is ≤ 3·std")


@spec.case("random samples match the reference")
def _(fn):
    g = torch.Generator().manual_seed(4)
    centers = 4 * torch.rand(6, 2, generator=g) - 2
    x = centers[torch.randint(6, (400,), generator=g)] + 0.2 * torch.randn(400, 2, generator=g)
    mode, hq = _call_assign(fn, x, centers, 0.1)
    ref_mode, ref_hq = assign_modes(x, centers, 0.1)
    if not torch.equal(mode.long(), ref_mode):
        raise CheckFailure("some nearest modes differ from the reference on random data")
    if not torch.equal(hq, ref_hq):
        raise CheckFailure("the high-quality mask differs from the reference on random data "
                           "(distance to the *nearest* mode, Euclidean, ≤ 3·std)")


# ----------------------------------------------------------------------------- reverse_kl
spec = register("modes.reverse_kl", reverse_kl,
                "KL(p ‖ uniform) in nats of a histogram of high-quality samples over the modes")


def _kl(fn, counts):
    out = fn(counts.clone() if torch.is_tensor(counts) else torch.tensor(counts))
    try:
        return float(out)
    except Exception:
        raise CheckFailure(f"return a number (a float or 0-d tensor), got {type(out).__name__}") from None


@spec.case("uniform histogram → 0")
def _(fn):
    v = _kl(fn, [5, 5, 5, 5, 5, 5, 5, 5])
    if not math.isclose(v, 0.0, abs_tol=1e-6):
        raise CheckFailure(f"got {v:.4g} for a uniform histogram; KL(uniform ‖ uniform) is 0 — did you "
                           "forget to normalise the counts into probabilities?")


@spec.case("all samples on one mode → ln K")
def _(fn):
    v = _kl(fn, [0, 0, 12, 0, 0, 0, 0, 0])
    if math.isnan(v):
        raise CheckFailure("got NaN: empty modes contribute 0 (0·ln 0 = 0), so sum only over p_k > 0")
    if math.isinf(v):
        raise CheckFailure("got inf: that is the forward KL(uniform ‖ p), which is infinite as soon as "
                           "a mode is missed; the reverse KL is Σ p_k ln(p_k / (1/K)) over p_k > 0")
    if math.isclose(v, 3.0, rel_tol=1e-4):
        raise CheckFailure("got 3 = log₂ 8: use the natural log (nats), as the tables do")
    if not math.isclose(v, math.log(8), rel_tol=1e-4):
        raise CheckFailure(f"got {v:.4g}, expected ln 8 = {math.log(8):.4f} for a histogram on one mode of 8")


@spec.case("random histograms match the reference")
def _(fn):
    g = torch.Generator().manual_seed(0)
    for k in (8, 25):
        counts = torch.randint(0, 50, (k,), generator=g)
        counts[:3] = 0
        v, ref = _kl(fn, counts.tolist()), reverse_kl(counts)
        if not math.isclose(v, ref, rel_tol=1e-4, abs_tol=1e-6):
            raise CheckFailure(f"K={k}: got {v:.5g}, expected {ref:.5g} = Σ_k p_k ln(K·p_k) over p_k > 0")


@spec.case("as chapter 04 uses it: bincount counts in, a Python number out")
def _(fn):
    # mode_stats passes torch.bincount(mode[hq], minlength=K) (int64), the tables print
    # round(reverse_kl, 3) and the chapter compares with math.log(8) at rel_tol 1e-6
    for k in (8, 25):
        counts = torch.bincount(torch.zeros(50, dtype=torch.long), minlength=k)
        out = fn(counts.clone())
        try:
            round(out, 3)
        except TypeError:
            raise CheckFailure(f"you returned a {type(out).__name__}; chapter 04 prints round(value, 3), "
                               "which a tensor does not support: return a Python float, float(kl) or "
                               "kl.item()") from None
        v = _kl(fn, counts)
        if not math.isclose(v, math.log(k), rel_tol=1e-6):
            raise CheckFailure(f"got {v:.6g} for torch.bincount counts with every sample on one mode of {k}; "
                               f"expected ln {k} = {math.log(k):.6f}", generic=True)
    g = torch.Generator().manual_seed(5)
    counts = torch.bincount(torch.randint(0, 6, (300,), generator=g), minlength=8)  # 2 empty modes
    v, ref = _kl(fn, counts), reverse_kl(counts)
    if not math.isclose(v, ref, rel_tol=1e-6, abs_tol=1e-9):
        raise CheckFailure(f"got {v:.8f}, the reference {ref:.8f} for a bincount histogram with two empty modes")


@spec.case("does not change the counts", inputs=True)
def _(fn):
    counts = torch.tensor([3, 0, 1, 4])
    before = counts.clone()
    fn(counts)
    if not torch.equal(counts, before):
        raise CheckFailure("your function modified the histogram in place; work on a copy")


# ----------------------------------------------------------------------------- pack
spec = register("modes.pack", pack, "PacGAN: (N, C, ...) → (N/m, m·C, ...), consecutive samples together")


@spec.case("shape (N, d) → (N/m, m·d)")
def _(fn):
    x = torch.randn(12, 2)
    for m in (1, 2, 4):
        expect_tensor(fn(x.clone(), m), (12 // m, 2 * m), f"pack(x of shape (12, 2), m={m})")


@spec.case("each row holds m consecutive whole samples")
def _(fn):
    x = torch.arange(12.0).view(6, 2)  # sample i = (2i, 2i+1)
    out = expect_tensor(fn(x.clone(), 2), (3, 4), "pack(x, 2)")
    want = torch.tensor([[0.0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]])
    if torch.equal(out, torch.tensor([[0.0, 1, 6, 7], [2, 3, 8, 9], [4, 5, 10, 11]])):
        raise CheckFailure("you paired sample i with sample i + N/m (torch.cat of chunks); genlib's "
                           "convention is consecutive samples: reshape(N // m, m * d)")
    if not torch.equal(out, want):
        raise CheckFailure("rows must be whole samples side by side, [x_0, x_1], [x_2, x_3], …; you "
                           "mixed coordinates of different samples (a transpose before reshape?)")


@spec.case("images are packed along channels")
def _(fn):
    x = torch.randn(6, 3, 4, 4)
    out = fn(x.clone(), 3)
    if torch.is_tensor(out) and tuple(out.shape) == (2, 144):
        raise CheckFailure("pack(images (6, 3, 4, 4), m=3) has shape (2, 144): you flattened each group. Keep "
                           "the image axes and stack the m images along channels: "
                           "reshape(N // m, m·C, H, W) → (2, 9, 4, 4)")
    out = expect_tensor(out, (2, 9, 4, 4), "pack(images (6, 3, 4, 4), m=3)")
    expect_close(out, x.reshape(2, 9, 4, 4), "packed images",
                 "stack the m images' channels: sample j·m+i fills channels i·C … i·C+C−1")


@spec.case("a batch that is not a multiple of m is refused, not truncated")
def _(fn):
    # sizes that reshape alone may or may not refuse: reshape(N // m, -1) turns (6, 2), m=4 into (1, 12)
    other = None
    for shape, m in (((7, 2), 2), ((6, 2), 4), ((6, 3, 4, 4), 4)):
        try:
            out = fn(torch.randn(*shape), m)
        except ValueError:
            continue
        except Exception as e:
            other = other or (shape, m, e)
            continue
        got = tuple(out.shape) if torch.is_tensor(out) else repr(out)
        raise CheckFailure(f"pack(x of shape {shape}, m={m}) returned {got}: you dropped (or invented) "
                           "samples; raise a ValueError when N is not a multiple of m, so a wrong batch "
                           "size is caught instead of silently changing what D sees")
    if other:
        shape, m, e = other
        raise CheckFailure(f"pack(x of shape {shape}, m={m}) raised {type(e).__name__} ({str(e)[:60]}…): "
                           "refusing is right, but check N % m yourself and raise a ValueError that "
                           "names N and m, rather than rely on reshape's error (which some shapes "
                           "do not trigger)")


@spec.case("works on a non-contiguous batch (transposed, channels_last)")
def _(fn):
    # built inside a probe: tensors reach the grading worker contiguous
    for x, m, layout, what in ((torch.randn(12, 2), 2, "t", "a transposed x of shape (12, 2)"),
                               (torch.randn(6, 3, 4, 4), 3, "channels_last",
                                "channels_last images of shape (6, 3, 4, 4)")):
        try:
            obs = probe(fn, P.pack_strided, x, m, layout)
        except RuntimeError as e:
            if "view size is not compatible" in str(e) or "contiguous" in str(e):
                raise CheckFailure(f"pack({what}, m={m}) raised RuntimeError (view size is not compatible with "
                                   "input tensor's size and stride): .view needs a tensor whose memory is laid "
                                   "out contiguously, and a transposed, sliced or channels_last batch is not. "
                                   "Use x.reshape(...) (it copies only when it must) or x.contiguous().view(...)"
                                   ) from None
            raise
        if obs["contiguous"]:
            raise RuntimeError(f"the probe's {layout} batch is contiguous: this case tests nothing")
        expect_close(obs["out"], x.reshape(x.shape[0] // m, m * x.shape[1], *x.shape[2:]), f"pack({what}, m={m})",
                     "row j holds samples j·m … j·m+m−1 side by side along the channel axis")


@spec.case("keeps gradients")
def _(fn):
    x = torch.randn(4, 2, requires_grad=True)
    out = fn(x, 2)
    if not (torch.is_tensor(out) and out.requires_grad):
        raise CheckFailure("the packed batch lost its gradient (detach/numpy?): the generator learns "
                           "through the packed fakes")


# ----------------------------------------------------------------------------- gradient_penalty
spec = register("modes.gradient_penalty", gradient_penalty,
                "WGAN-GP: mean (‖∇D(x̂)‖ − 1)² at random interpolates of real and fake")


_Recorder, _Linear = P.Recorder, P.Linear  # the critics live in genlib.probes.ch04


def _penalty(fn, critic, real, fake, backward=False):
    """Run the learner's penalty on a critic built from ``critic`` (see genlib.probes.ch04), where
    the learner's function lives; its observations as plain data."""
    return probe(fn, P.penalty, critic, real, fake, backward=backward)


def _segments(real, fake, seen):
    """Per-sample t such that seen = t·real + (1−t)·fake, or a CheckFailure."""
    if not seen:
        raise CheckFailure("your penalty never called the critic")
    pts = seen[-1] if len(seen) == 1 else None
    if pts is None:
        pts = next((s for s in seen if s.shape == real.shape), None)
    if pts is None or pts.shape != real.shape:
        raise CheckFailure(f"call the critic once on the interpolates x̂ of shape {tuple(real.shape)}")
    diff = (real - fake).flatten(1)
    rel = (pts - fake).flatten(1)
    if torch.allclose(pts, real):
        raise CheckFailure("you evaluated the critic at the real samples; the penalty belongs at "
                           "random points x̂ = ε·real + (1−ε)·fake on the lines between them")
    if torch.allclose(pts, fake):
        raise CheckFailure("you evaluated the critic at the fake samples; the penalty belongs at "
                           "random points x̂ = ε·real + (1−ε)·fake on the lines between them")
    t = rel / diff  # (N, D): one value per coordinate
    if not torch.allclose(t, t[:, :1].expand_as(t), atol=1e-4):
        raise CheckFailure("x̂ is not on the segment between each real and fake sample: draw ONE ε per "
                           "sample, shape (N, 1, …), not one per pixel/coordinate (shape of real)")
    t = t[:, 0]
    if (t < -1e-5).any() or (t > 1 + 1e-5).any():
        raise CheckFailure("x̂ lies outside the segment between real and fake: ε must be in [0, 1]")
    return t


@spec.case("evaluates the critic at random interpolates of real and fake")
def _(fn):
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(64, 2, generator=g) + 3, torch.randn(64, 2, generator=g) - 3
    obs = _penalty(fn, ("recorder", (2,), 0), real, fake)
    t = _segments(real, fake, obs["seen"])
    if t.std() < 1e-3:
        raise CheckFailure("every sample got the same ε: draw one ε ~ U(0, 1) per sample")


@spec.case("ε ~ U(0, 1), drawn afresh at each call")
def _(fn):
    g = torch.Generator().manual_seed(4)
    real, fake = torch.randn(4096, 2, generator=g) + 3, torch.randn(4096, 2, generator=g) - 3
    ts = []
    for _ in range(2):
        ts.append(_segments(real, fake, _penalty(fn, ("recorder", (2,), 0), real, fake)["seen"]))
    if torch.allclose(ts[0], ts[1]):
        raise CheckFailure("two calls used the same ε: draw it at random each call, torch.rand(N, 1, …) "
                           "(a fixed grid such as linspace is not a random interpolate)")
    t = ts[0].sort().values.double()
    ks = float((t - (torch.arange(1, len(t) + 1, dtype=torch.float64) - 0.5) / len(t)).abs().max())
    if ks > 0.05:  # Kolmogorov–Smirnov distance; 0.05 is ≈ 3× the 1e-6 critical value at N = 4096
        raise CheckFailure(f"your ε do not look uniform on [0, 1] (KS distance {ks:.2f}; mean {t.mean():.2f}, "
                           f"range {t.min():.2f}–{t.max():.2f}): use ε = torch.rand(N, 1, …), uniform on "
                           "the whole segment (not randn, not rand / 2)")


@spec.case("runs on the device and dtype of its inputs")
def _(fn):
    # the meta device stands in for a GPU: a tensor made without device=real.device lands on the CPU
    for device, dtype in (("meta", torch.float32), ("cpu", torch.bfloat16)):
        obs = probe(fn, P.penalty_on_device, torch.tensor([0.6, 0.8]), 8, device, dtype)
        if "device_error" in obs:
            raise CheckFailure("your penalty fails when the batch is on another device (a GPU): "
                               "create ε on the inputs' device and dtype, torch.rand(N, 1, …, "
                               "device=real.device, dtype=real.dtype)")
        if not obs["tensor"] or obs["device"] != device or obs["dtype"] != dtype:
            got = obs["where"] if obs["tensor"] else obs["type"]
            raise CheckFailure(f"for {dtype} inputs on {device} your penalty is {got}: ε was made with the "
                               "default dtype/device and promoted the interpolates; use torch.rand(N, 1, …, "
                               "device=real.device, dtype=real.dtype)")


@spec.case("closed form for a linear critic (2-D points)")
def _(fn):
    for norm in (2.0, 0.5):  # (‖w‖ − 1)² = 1 and 0.25: the one-sided max(0, ·)² gives 0 for 0.5
        w = torch.tensor([0.6, 0.8]) * norm
        out = _penalty(fn, ("linear", w), torch.randn(32, 2), torch.randn(32, 2))["out"]
        expect_tensor(out, (), "the penalty")
        expect_close(out, torch.tensor((norm - 1) ** 2), f"the penalty for a critic with ‖∇D‖ = {norm}",
                     "it is the mean over samples of (‖∇D(x̂)‖₂ − 1)², without λ (and two-sided)")


@spec.case("gradient norm over all non-batch axes (images)",
           depends_on="closed form for a linear critic (2-D points)")
def _(fn):
    g = torch.Generator().manual_seed(2)
    w = torch.randn(3, 4, 4, generator=g)
    w = 2.0 * w / w.norm()  # ‖∇D‖ over (C, H, W) = 2 → penalty exactly 1
    try:
        out = _penalty(fn, ("linear", w), torch.randn(8, 3, 4, 4, generator=g),
                       torch.randn(8, 3, 4, 4, generator=g))["out"]
    except RuntimeError as e:
        if "must match the size of tensor" not in str(e):
            raise
        raise CheckFailure("on images (N, C, H, W) = (8, 3, 4, 4) your penalty raised a broadcasting error "
                           f"(torch: \"{str(e).splitlines()[0][:110]}\"): ε must hold one value per sample and "
                           "broadcast over all the other axes, shape (N, 1, 1, 1) for images — an (N, 1) ε lines "
                           "up with the last two axes (H, W) instead. Draw torch.rand(N, *[1] * (real.dim() - 1), "
                           "device=real.device, dtype=real.dtype), which is (N, 1) for points") from None
    # (N, 1) ε on images whose H equals N broadcasts without an error, one ε per row of pixels
    real, fake = torch.randn(4, 1, 4, 3, generator=g), torch.randn(4, 1, 4, 3, generator=g)
    seen = _penalty(fn, ("recorder", (1, 4, 3), 0), real, fake)["seen"]
    pts = seen[-1] if seen else None
    if pts is not None and pts.shape == real.shape:
        d, r = (real - fake).flatten(1).double(), (pts - fake).flatten(1).double()
        e = (r * d).sum(1, keepdim=True) / (d * d).sum(1, keepdim=True)   # the best single ε per sample
        if not torch.allclose(r, e * d, atol=1e-4):
            raise CheckFailure("on images (N, C, H, W) = (4, 1, 4, 3) your interpolates mix ε values within "
                               "an image: ε must hold one value per sample and broadcast over all the other "
                               "axes, shape (N, 1, 1, 1) for images — an (N, 1) ε lines up with the last two "
                               "axes (H, W), here one ε per row of pixels. Draw torch.rand(N, *[1] * "
                               "(real.dim() - 1), device=real.device, dtype=real.dtype)")
    expect_tensor(out, (), "the penalty")
    v = float(out.detach())
    if not math.isclose(v, 1.0, rel_tol=1e-3):
        raise CheckFailure(f"for a linear critic with ‖w‖ = 2 over (C, H, W) the penalty is 1, got {v:.4g}: "
                           "take the norm of each sample's whole gradient, grad.flatten(1).norm(dim=1) — "
                           "not over one axis (dim=1) nor over the whole batch")


@spec.case("the penalty trains the critic (create_graph=True)")
def _(fn):
    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(16, 2, generator=g), torch.randn(16, 2, generator=g) + 1
    obs = _penalty(fn, ("recorder", (2,), 5), real, fake, backward=True)
    out, a_grad = obs["out"], obs["grads"]["a"]
    if not (obs["tensor"] and obs["requires_grad"]):
        raise CheckFailure("the penalty has no gradient w.r.t. the critic's weights: pass "
                           "create_graph=True to torch.autograd.grad so the gradient can itself be differentiated")
    if a_grad is None or a_grad.abs().sum() == 0:
        raise CheckFailure("the critic's weights got no gradient from the penalty: use "
                           "torch.autograd.grad(..., create_graph=True) and keep the result in the graph")
    # same interpolates through the reference formula
    x_hat = obs["seen"][-1].clone().requires_grad_(True)
    ref_critic = _Recorder((2,), seed=5)
    (gr,) = torch.autograd.grad(ref_critic(x_hat).sum(), x_hat, create_graph=True)
    ref = ((gr.norm(dim=1) - 1) ** 2).mean()
    expect_close(out.detach(), ref.detach(), "the penalty at your interpolates",
                 "average (‖∇D(x̂)‖₂ − 1)² over the batch (mean, not sum)")
    ref.backward()
    expect_close(a_grad, ref_critic.a.grad, "the critic's weight gradient",
                 "the gradient of the penalty w.r.t. D's weights differs: is create_graph=True set?")


@spec.case("does not leave gradients on real or fake")
def _(fn):
    real, fake = torch.randn(8, 2), torch.randn(8, 2, requires_grad=True)
    obs = _penalty(fn, ("recorder", (2,), 7), real, fake, backward=True)
    if not obs["requires_grad"]:
        return  # nothing to backpropagate: the create_graph case reports it
    if obs["fake_grad"] is not None and obs["fake_grad"].abs().sum() > 0:
        raise CheckFailure("the penalty sent gradients into the fake samples (the generator): the "
                           "penalty is a loss of D alone, and a caller may pass fake = G(z) undetached, so detach inside "
                           "your function — build x̂ from real.detach() and fake.detach(); the penalty "
                           "trains only D")
