"""Train the three small CycleGANs that chapter 10 loads, and write genlib/weights/translate_cyclegan.pt.

    .venv/bin/python scripts/train_translate.py                     # all three (~7 min on 2 cores)
    .venv/bin/python scripts/train_translate.py --only shape        # one or more of: shape no_identity grey
    .venv/bin/python scripts/train_translate.py --check             # retrain, compare with the shipped file
    .venv/bin/python scripts/train_translate.py --check --only grey

What ships (float16 state dicts of both generators G: A → B and F: B → A, and the width):

* ``shape``        circle ↔ square, same colour, size and position; λ_cyc = 10, identity loss λ_id = 5
* ``no_identity``  the same without the identity loss: cycle-consistent, yet it can permute colours
* ``grey``         coloured shapes ↔ the same shapes in mid-grey (many-to-one): steganography

Each is genlib.translate.fit_cyclegan(name): CYCLEGAN_STEPS steps of Adam on two unpaired sets of
2,000 images (genlib.translate.cyclegan_data). Chapter 10 trains pix2pix itself; CycleGAN trains
four networks per step and needs more steps, which do not fit the chapter's CPU budget.
Reproducible: CPU, 2 threads, every model starts from torch.manual_seed(seed) and draws its
batches from its own seeded generator. ``--check`` retrains and compares every float16 tensor bit for
bit; when bits differ (another CPU can round differently) it compares the chapter's numbers
(genlib.translate.cyclegan_scores) and accepts differences within 0.05 on every fraction.

Measured when the shipped file was written (2 cores, under the shared CPU lock, other light jobs
running): shape 221 s (ab right 0.780 kept 1.000, ba right 0.928 kept 1.000, cycle L1 0.009);
no_identity 113 s (ab right 0.904, colour kept 0.000 — a permutation, ba right 0.960, cycle L1
0.009); grey 109 s (G(a) within 0.056 of the true grey image, colour recovered from G(a) 0.976,
from the true grey image 0.160). ``--check --only grey`` (fresh process, 145 s): bit for bit
identical, 48 of 48 tensors.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genlib import translate as T  # noqa: E402

NAMES = tuple(T.CYCLEGAN_CONFIGS)


def train_one(name: str, steps: int) -> dict:
    G, F_net, _ = T.fit_cyclegan(name, steps=steps)
    width = G.inc[0].out_channels
    return {"G": {k: v.half() for k, v in G.state_dict().items()},
            "F": {k: v.half() for k, v in F_net.state_dict().items()},
            "width": width, "steps": steps}


def scores_of(name: str, entry: dict) -> dict:
    nets = []
    for key in ("G", "F"):
        net = T.UNet(int(entry["width"]))
        net.load_state_dict({k: v.float() for k, v in entry[key].items()})
        nets.append(net.eval())
    return T.cyclegan_scores(name, *nets)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="retrain and compare with the shipped file")
    ap.add_argument("--only", nargs="*", choices=NAMES, default=list(NAMES))
    ap.add_argument("--steps", type=int, default=T.CYCLEGAN_STEPS)
    ap.add_argument("--out", default=T.CYCLEGAN_WEIGHTS)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    shipped = torch.load(args.out, weights_only=True) if os.path.exists(args.out) else {}
    ok = True
    for name in args.only:
        t0 = time.time()
        entry = train_one(name, args.steps)
        took = time.time() - t0
        new_scores = scores_of(name, entry)
        print(f"{name}: trained {args.steps} steps in {took:.0f} s; "
              + ", ".join(f"{k}={v:.3f}" for k, v in new_scores.items()), flush=True)
        if not args.check:
            shipped[name] = entry
            continue
        if name not in shipped:
            print(f"  ✗ {name} is not in {args.out}")
            ok = False
            continue
        old = shipped[name]
        differ = [f"{key}.{k}" for key in ("G", "F") for k in entry[key]
                  if not torch.equal(entry[key][k], old[key][k])]
        if not differ and old["width"] == entry["width"]:
            print(f"  ✓ {name}: bit for bit identical ({sum(len(entry[k]) for k in ('G', 'F'))} tensors)")
            continue
        old_scores = scores_of(name, old)
        worst = max(abs(new_scores[k] - old_scores[k]) for k in new_scores if k != "cycle_l1")
        print(f"  {len(differ)} tensors differ (e.g. {differ[:3]}); shipped: "
              + ", ".join(f"{k}={v:.3f}" for k, v in old_scores.items()))
        if worst <= 0.05:
            print(f"  ✓ {name}: the chapter's numbers agree within {worst:.3f} (≤ 0.05)")
        else:
            print(f"  ✗ {name}: the chapter's numbers differ by {worst:.3f} (> 0.05)")
            ok = False
    if not args.check:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        torch.save(shipped, args.out)
        print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
