"""Train the chapter-10 models that ship in genlib/weights/ (super-resolution and style transfer).

    .venv/bin/python scripts/train_applications.py              # rebuild all (~7 min of 1 CPU core)
    .venv/bin/python scripts/train_applications.py --only sr    # sr_regression.pt + sr_gan.pt (~5 min)
    .venv/bin/python scripts/train_applications.py --only style # style_ff.pt (~2 min)
    .venv/bin/python scripts/train_applications.py --check      # retrain, compare with the shipped files

Reproducible: fixed seeds, CPU, one thread, deterministic algorithms, fixed data order. Data:
``genlib.data.shapes`` with seeds that the chapter never evaluates on (train seed 1; the chapter
tests on seed 2 and compares with real shapes of seed 3).

* ``sr_gan.pt``: ``genlib.restore.SRNet`` (×4, 4×4 → 16×16) plus one noise channel: a regression
  net fitted with L2 for 3,000 steps, then trained 1,500 steps as a conditional GAN (20·L1 +
  non-saturating adversarial loss, spectrally normalised pair discriminator).
* ``sr_regression.pt``: the same 3,000-step regression net trained 1,500 steps more with L2 only, so
  both shipped SR nets had 4,500 steps.
* ``style_ff.pt``: ``genlib.style.TransformNet`` trained for ``genlib.style.style_image()`` with the
  chapter's loss ``genlib.style.default_loss()`` (random multi-scale CNN features; Johnson et al. 2016)
  on 2,000 32×32 shapes, 1,500 steps of 16.

``--check`` retrains into a temporary folder and compares every tensor with the shipped file.
Measured on the 2-core CPU under the CPU lock (2026-11-30): ``--check --only sr`` 317 s, both files
identical; ``--check --only style`` 100 s, identical.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from genlib import restore, style  # noqa: E402
from genlib.data import shapes  # noqa: E402

WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "genlib", "weights")
SR = dict(factor=4, n_train=8000, seed=1, reg_steps=restore.REG_STEPS, gan_steps=restore.GAN_STEPS,
          l1_weight=restore.GAN_L1_WEIGHT, noise_channels=restore.GAN_NOISE_CHANNELS)
STYLE = dict(n_train=2000, seed=6, steps=style.FF_STEPS)


def train_sr(out_dir: str) -> None:
    t0 = time.time()
    lr, hr, _ = restore.sr_data(SR["n_train"], SR["factor"], seed=SR["seed"])
    reg, _ = restore.train_regression(lr, hr, SR["factor"], steps=SR["reg_steps"], seed=0)
    print(f"regression, {SR['reg_steps']} steps: {time.time() - t0:.0f} s", flush=True)
    gan, _ = restore.train_gan_sr(lr, hr, SR["factor"], steps=SR["gan_steps"], init=reg,
                                  l1_weight=SR["l1_weight"], noise_channels=SR["noise_channels"], seed=0)
    torch.save(gan.state_dict(), os.path.join(out_dir, "sr_gan.pt"))
    print(f"sr_gan.pt: {time.time() - t0:.0f} s", flush=True)
    # the same number of steps for the regression net as the cGAN had in all (like for like)
    reg, _ = restore.train_regression(lr, hr, SR["factor"], steps=SR["gan_steps"],
                                      lr_rate=restore.REG_FINETUNE_LR, seed=1, init=reg)
    torch.save(reg.state_dict(), os.path.join(out_dir, "sr_regression.pt"))
    print(f"sr_regression.pt: {time.time() - t0:.0f} s", flush=True)


def train_style(out_dir: str) -> None:
    t0 = time.time()
    contents = shapes(STYLE["n_train"], size=style.STYLE_SIZE, seed=STYLE["seed"]).images
    loss = style.default_loss()
    net, _ = style.train_feedforward(contents, loss, steps=STYLE["steps"], seed=0)
    torch.save(net.state_dict(), os.path.join(out_dir, "style_ff.pt"))
    print(f"style_ff.pt: {time.time() - t0:.0f} s", flush=True)


JOBS = {"sr": (train_sr, ("sr_regression.pt", "sr_gan.pt")), "style": (train_style, ("style_ff.pt",))}


def compare(a_path: str, b_path: str) -> list[str]:
    a = torch.load(a_path, map_location="cpu", weights_only=True)
    b = torch.load(b_path, map_location="cpu", weights_only=True)
    if a.keys() != b.keys():
        return [f"different keys: {sorted(set(a) ^ set(b))}"]
    return [k for k in a if not torch.equal(a[k], b[k])]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=sorted(JOBS), action="append")
    ap.add_argument("--check", action="store_true", help="retrain and compare with the shipped files")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("GENLIB_PROGRESS", "0")
    jobs = args.only or sorted(JOBS)
    out_dir = tempfile.mkdtemp() if args.check else WEIGHTS
    bad = 0
    for name in jobs:
        fn, files = JOBS[name]
        fn(out_dir)
        if args.check:
            for f in files:
                diff = compare(os.path.join(out_dir, f), os.path.join(WEIGHTS, f))
                print(f"{f}: " + ("identical" if not diff else f"DIFFERS in {', '.join(diff)}"))
                bad += bool(diff)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
