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
