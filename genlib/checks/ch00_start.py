"""Checks for chapter 00 (start here): the warm-up exercise."""
import torch

from genlib.data import to_tanh_range
from genlib.exercises import CheckFailure, expect_close, expect_tensor, register

spec = register("warmup.to_tanh_range", to_tanh_range,
                "map images from [0, 1] to [-1, 1] for a tanh generator")


@spec.case("returns a tensor of the same shape")
def _(fn):
    x = torch.rand(4, 1, 8, 8)
    expect_tensor(fn(x.clone()), x.shape)


@spec.case("endpoints: 0 → -1, ½ → 0, 1 → 1")
def _(fn):
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3)
    out = fn(x.clone())
    expect_tensor(out, x.shape)
    got = [round(v, 3) for v in out.flatten().tolist()]
    if got == [0.0, 1.0, 2.0]:
        raise CheckFailure("you scaled by 2 but forgot to subtract 1: 0 must map to -1")
    if got == [-0.5, 0.0, 0.5]:
        raise CheckFailure("you subtracted ½ but forgot to scale by 2: 1 must map to 1")
    if got == [-1.0, -0.5, 0.0]:
        raise CheckFailure("you subtracted 1 but forgot to scale by 2: 1 must map to 1")
    if got == [-2.0, -1.0, 0.0]:
        raise CheckFailure("you computed 2·(x − 1): scale first, then shift — 2·x − 1")
    expect_close(out, torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 1, 3), "f([0, ½, 1])",
                 "the map must be linear with 0 → -1 and 1 → 1, i.e. 2·x − 1")


@spec.case("random images match 2·x − 1")
def _(fn):
    x = torch.rand(16, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    expect_close(fn(x.clone()), x * 2 - 1, "f(x)", "the map is 2·x − 1")


@spec.case("a faint image keeps its values (the map does not depend on the data)")
def _(fn):
    # pixels only in [0.2, 0.6]: a fixed map gives [-0.6, 0.2]; min–max rescaling stretches to [-1, 1]
    x = 0.2 + 0.4 * torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    out = fn(x.clone())
    expect_tensor(out, x.shape)
    lo, hi = float(out.min()), float(out.max())
    if abs(lo + 1) < 1e-4 and abs(hi - 1) < 1e-4:
        raise CheckFailure("you rescaled by the data's own min and max: a faint image is stretched to "
                           "the full [-1, 1], so its values change. The map is fixed: 2·x − 1, "
                           "whatever the image contains")
    expect_close(out, x * 2 - 1, "f(x)", "the map is 2·x − 1 for every image, faint or not")


@spec.case("does not modify its input")
def _(fn):
    x = torch.rand(2, 1, 4, 4)
    before = x.clone()
    fn(x)
    if not torch.equal(x, before):
        raise CheckFailure("your function changed its input in place (e.g. x.mul_(2)); "
                           "return a new tensor so the caller's data stays in [0, 1]")


@spec.case("keeps the dtype (float32 stays float32)")
def _(fn):
    x = torch.rand(2, 1, 4, 4)
    out = fn(x.clone())
    expect_tensor(out, x.shape, dtype=torch.float32)


@spec.case("as chapter 00 uses it: the digits in [0, 1] give exactly digits(value_range=(-1, 1))")
def _(fn):
    from genlib import data

    x01, _ = data.digits("train", value_range=(0, 1))
    x_pm1, _ = data.digits("train", value_range=(-1, 1))
    out = fn(x01.clone())
    expect_tensor(out, x01.shape, "to_tanh_range(digits)", dtype=x01.dtype)
    if not torch.allclose(out, x_pm1):
        err = (out - x_pm1).abs().max().item()
        raise CheckFailure(f"on the chapter's training digits your map differs from digits(value_range=(-1, 1)) "
                           f"by up to {err:.3g} (the chapter asserts they agree): the map is 2·x − 1", generic=True)
