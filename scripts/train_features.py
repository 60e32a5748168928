"""Train the feature extractor that ships in genlib/weights/digits_cnn.pt.

    .venv/bin/python scripts/train_features.py            # rebuilds the weights (~40 s of CPU time)
    .venv/bin/python scripts/train_features.py --check    # retrains, compares with the shipped file
    .venv/bin/python scripts/train_features.py --shapes   # the shapes CNN (shapes_cnn.pt), ~10 s

Reproducible on one machine: fixed seeds, CPU, one thread, deterministic algorithms, fixed data
order. Training uses only the digits' train split (1,500 images) and every 1-pixel shift of each
image (9 copies, background filled with -1), so the classifier does not care whether a generator
centres its digits exactly. The test split (297 images) is held out; tests/test_features.py
checks ≥ 97 %.

``--check`` (add ``--shapes`` for the shapes CNN) retrains and passes when the retrained model's
held-out accuracy is within 0.02 of the shipped file's: the 297 test digits (0.02 = 6 digits), or
each attribute on 1,000 images of shapes(seed=1). Whether the weights are bit for bit identical is
printed as information only: it holds on the CPU that trained the file, not on one with other
vector instructions (the turn-3 portability review, on an AMD EPYC: every tensor differed, test
accuracy 99.33 % — the shipped file's own). On this session's AMD EPYC (2026-12-07, under the CPU
lock) ``--check`` passed with both files bit for bit identical: digits 99.33 % vs 99.33 %, 74 s;
``--shapes`` 99.3 / 100 / 100 % vs the same, 13 s.
Why 0.02: seed 0 (the shipped file) and retrains with seeds 1, 2, 3 (AMD EPYC, 2 cores, CPU lock,
2026-12-07) gave test accuracy 99.33 / 99.33 / 100.0 / 100.0 % (range 0.0067, 2 digits), and for
the shapes CNN shape 99.3 / 99.8 / 98.9 / 98.9 % (range 0.009), colour and size 100 % every time;
0.02 is 2-3× those ranges, and 99.33 % − 0.02 is still above the 97 % that the tests require.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from genlib.data import digits, shapes  # noqa: E402
from genlib.features import DIGITS_WEIGHTS, SHAPES_WEIGHTS, DigitsCNN, ShapesCNN  # noqa: E402

SEED, EPOCHS, BATCH, LR = 0, 12, 128, 2e-3


def all_shifts(x: torch.Tensor, max_shift: int = 1) -> torch.Tensor:
    """x: (N,1,8,8) in [-1,1] → (S·N,1,8,8), every shift by up to ``max_shift`` pixels (S=9)."""
    p = max_shift
    padded = F.pad(x, (p, p, p, p), value=-1.0)  # -1 is the background (ink-free) level
    h, w = x.shape[2:]
    return torch.cat([padded[:, :, p + dy:p + dy + h, p + dx:p + dx + w]
                      for dy in range(-p, p + 1) for dx in range(-p, p + 1)])


def _fit(model, opt, n: int, loss_of, epochs: int, sched=None, verbose: bool = True):
    """Minibatch training in a fixed shuffled order: ``loss_of(indices)`` → scalar loss."""
    g = torch.Generator().manual_seed(SEED)
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for i in range(0, n - BATCH + 1, BATCH):
            loss = loss_of(perm[i:i + BATCH])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.item()
        if verbose:
            print(f"epoch {epoch + 1:2d}/{epochs}  loss {total / (n // BATCH):.4f}")
    return model.eval()


def train(verbose: bool = True) -> DigitsCNN:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    x, y = digits("train", (-1.0, 1.0))
    xa, ya = all_shifts(x), y.repeat(9)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    steps = EPOCHS * (len(xa) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    _fit(model, opt, len(xa), lambda idx: F.cross_entropy(model(xa[idx]), ya[idx]), EPOCHS,
         sched, verbose)
    with torch.no_grad():  # unit mean square features on the (unshifted) train digits
        model.feature_scale.fill_(model.body(x).pow(2).mean().rsqrt().item())
    return model


@torch.no_grad()
def accuracy(model: DigitsCNN, split: str = "test") -> float:
    x, y = digits(split, (-1.0, 1.0))
    return (model(x).argmax(1) == y).float().mean().item()


def train_shapes(verbose: bool = True, epochs: int = 6) -> ShapesCNN:
    """The shapes CNN: 6,000 images of shapes(seed=0); tests use shapes(seed=1) as held-out data."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    data = shapes(6000, seed=0)
    targets = {"shape": data.shape, "color": data.color, "size": data.size}
    model = ShapesCNN()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    def loss_of(idx):
        out = model(data.images[idx])
        return sum(F.cross_entropy(out[k], targets[k][idx]) for k in out)

    return _fit(model, opt, len(data), loss_of, epochs, None, verbose)


def shapes_accuracy(model: ShapesCNN) -> dict:
    """Held-out accuracy per attribute on 1,000 images of shapes(seed=1)."""
    held = shapes(1000, seed=1)
    with torch.no_grad():
        out = model(held.images)
    return {k: (out[k].argmax(1) == getattr(held, k)).float().mean().item() for k in out}


# --check: |retrained − shipped| held-out accuracy within these (see the module docstring: why)
DIGITS_TOL = 0.02    # 6 of the 297 test digits
SHAPES_TOL = 0.02    # per attribute, 20 of 1,000 held-out shapes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="retrain and compare held-out accuracy with the shipped weights'")
    ap.add_argument("--shapes", action="store_true", help="train the shapes CNN instead")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    args.out = args.out or (SHAPES_WEIGHTS if args.shapes else DIGITS_WEIGHTS)
    t0 = time.time()
    if args.shapes:
        model = train_shapes()
        scores = shapes_accuracy(model)
        print(f"trained in {time.time() - t0:.1f} s; held-out accuracy {scores}")
    else:
        model = train()
        scores = {"held-out test accuracy": accuracy(model, "test")}
        print(f"trained in {time.time() - t0:.1f} s; train acc {accuracy(model, 'train'):.4f}, "
              f"held-out test acc {scores['held-out test accuracy']:.4f}")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if args.check:
        from genlib.reproduce import compare_all, verdict, weight_difference

        shipped_state = torch.load(args.out, map_location="cpu", weights_only=True)
        shipped = (ShapesCNN if args.shapes else DigitsCNN)()
        shipped.load_state_dict(shipped_state)
        shipped.eval()
        old = shapes_accuracy(shipped) if args.shapes else {"held-out test accuracy": accuracy(shipped)}
        tol = {"abs_tol": SHAPES_TOL if args.shapes else DIGITS_TOL}
        ok = verdict(os.path.basename(args.out), compare_all(scores, old, {k: tol for k in scores}),
                     weight_difference(state, shipped_state))
        return 0 if ok else 1
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    torch.save(state, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
