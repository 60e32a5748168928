"""Train the chapter-08 models that ship in genlib/weights/t2i_*.pt.

    .venv/bin/python scripts/train_text_to_image.py             # all models (~10 min of CPU)
    .venv/bin/python scripts/train_text_to_image.py --only vq clip
    .venv/bin/python scripts/train_text_to_image.py --check     # retrain, compare with shipped files

Models (fixed seeds, CPU, two threads, deterministic algorithms, fixed data order; weights are
stored in float16):
  vq            VQ tokenizer, 16×16 shapes → 8×8 codes from a 64-entry codebook
  clip          ShapeCLIP dual encoder (image CNN + text transformer, InfoNCE)
  gpt           decoder-only transformer over [caption tokens; 64 image tokens] (needs vq)
  maskgit       masked bidirectional transformer on the same tokens (needs vq)
  bind_bow      two-object caption → image: bag-of-words encoder + per-slot decoder, pixel loss
  bind_transformer  the same with the transformer encoder
  flow          text-conditioned flow-matching U-Net on 16×16 shapes (caption dropout 10%)
Measured (2 threads, shared CPU): flow 254 s, 86.3% all three on 300 held-out captions at guidance 1
(Euler 16; 95% at guidance 2 in the chapter); bind_transformer 38 s, binding 99.7%; bind_bow 30 s,
binding 0.0% (a mean-squared-error decoder draws the blend of the four bindings a bag allows).
--check retrains and passes when the retrained weights (rounded to float16, as they would ship)
score like the shipped file on held-out data (genlib.t2i.evaluate; seed 1): vq codebook usage
within 0.1 and reconstruction MSE within 25 %; clip zero-shot accuracy within 0.03 per attribute
(2,000 images); bind_* binding and slot accuracy within 0.05; gpt, maskgit and flow attribute
accuracy (shape, colour, size, all three) within 0.05 on 900 held-out captions. Bit identity is
printed as information only: it holds on the CPU that trained the files (here: --check --only
bind_transformer bind_bow bit for bit, 54 s; --only flow bit for bit, 233 s — both measured before
the check became functional), not on CPUs with other vector instructions.
Why these sizes: the sampled models' accuracy moves with the sampling seed alone — chapter 08 prints,
for one fixed model and 300 captions, 0.863–0.896 (flow, guidance 1) and 0.904–0.946 (token
transformer) over 3 seeds (standard deviations 0.017 and 0.023), so one 300-caption score has a
spread of about 0.02; with 900 captions about 0.012, and the difference of two models' scores about
0.017: 0.05 is 3 such spreads. The chapter's threshold claims have margins of 5–8 points (token
transformer ≥ 85 % all three, seen 93.1 %; flow at guidance 2 ≥ 90 %, seen 95.8 %) or more (CLIP
≥ 95 %, seen 100 %; VQ usage ≥ 90 %, seen 100 %), so a retrain inside the tolerance keeps them
except at the very edge. The MSE tolerance is not measured; 25 %
is far from anything the chapter asserts about the tokenizer. No model here was retrained across
seeds to measure the training spread itself.
Training data: shapes(seed=0) / two_shapes(seed=0). Held-out evaluation: seed=1. (The two-object
caption-reading probes of the chapter train inside the notebook in seconds and ship no weights.)
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from genlib import t2i  # noqa: E402
from genlib.data import shapes  # noqa: E402
from genlib.text import ShapeCLIP, train_shapeclip  # noqa: E402
from genlib.tokens import VQTokenizer  # noqa: E402

SEED = 0
STEPS = {"vq": 1500, "clip": 600, "gpt": 2500, "maskgit": 1500, "bind_bow": 1200,
         "bind_transformer": 1200, "flow": 1200}


def _setup():
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)


def _loop(model, steps, loss_of, lr, name, verbose):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    g = torch.Generator().manual_seed(SEED)
    model.train()
    for step in range(steps):
        loss = loss_of(g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if verbose and (step + 1) % max(1, steps // 5) == 0:
            print(f"  {name} step {step + 1}/{steps} loss {loss.item():.4f}", flush=True)
    return model.eval()


def train_vq(steps=None, verbose=True):
    _setup()
    data = shapes(8000, seed=0).images
    model = VQTokenizer()

    def loss_of(g):
        x = data[torch.randint(len(data), (128,), generator=g)]
        recon, vq, _ = model(x)
        return F.mse_loss(recon, x) + vq
    return _loop(model, steps or STEPS["vq"], loss_of, 3e-3, "vq", verbose)


def train_clip(steps=None, verbose=True):
    _setup()
    model, _ = train_shapeclip(ShapeCLIP(), shapes(8000, seed=0), steps or STEPS["clip"])
    return model


def _token_data(vq):
    data = shapes(8000, seed=0)
    with torch.no_grad():
        tokens = torch.cat([vq.encode(data.images[i:i + 1000]) for i in range(0, 8000, 1000)])
    return t2i.caption_tokens(data.captions), tokens.view(len(tokens), -1)


def train_tokens(kind, vq, steps=None, verbose=True):
    _setup()
    cond, tokens = _token_data(vq)
    model = t2i.new_token_model(kind)

    def loss_of(g):
        idx = torch.randint(len(tokens), (64,), generator=g)
        return model.loss(cond[idx], tokens[idx], generator=g)
    return _loop(model, steps or STEPS[kind], loss_of, 2e-3, kind, verbose)


def train_bind(kind, steps=None, verbose=True):
    from genlib.conditioning import CaptionToImage, train_caption_to_image, two_shapes

    _setup()
    model = CaptionToImage(kind)
    train_caption_to_image(model, two_shapes(4000, seed=0), steps or STEPS[f"bind_{kind}"], seed=SEED)
    return model


def train_caption_flow(steps=None, verbose=True):
    from genlib.flow import train_flow

    _setup()
    data = shapes(8000, seed=0)
    model, _ = train_flow(t2i.CaptionFlowNet(), data.images, steps or STEPS["flow"],
                          y=t2i.caption_tokens(data.captions), p_uncond=0.1, seed=SEED, progress=False)
    return model.eval()


def build(name, vq=None, steps=None, verbose=True):
    if name.startswith("bind_"):
        return train_bind(name[len("bind_"):], steps, verbose)
    if name == "flow":
        return train_caption_flow(steps, verbose)
    if name == "vq":
        return train_vq(steps, verbose)
    if name == "clip":
        return train_clip(steps, verbose)
    if name in ("gpt", "maskgit"):
        return train_tokens(name, vq, steps, verbose)
    raise ValueError(f"unknown model {name!r}")


# --check: |retrained − shipped| of t2i.evaluate's numbers within these (module docstring: why)
_ACC = {"abs_tol": 0.05}
CHECK_TOL = {"vq": {"usage": {"abs_tol": 0.1}, "mse": {"rel_tol": 0.25}},
             "clip": {k: {"abs_tol": 0.03} for k in ("shape", "color", "size")},
             "bind_bow": {"binding": _ACC, "slot": _ACC},
             "bind_transformer": {"binding": _ACC, "slot": _ACC},
             **{k: {a: _ACC for a in ("shape", "color", "size", "all")} for k in ("gpt", "maskgit", "flow")}}
CHECK_N = 900  # held-out captions for the sampled models (the chapter's default is 300)


def check(name: str, state: dict, vq) -> bool:
    """Score the retrained weights (float16-rounded, as they would ship) and the shipped file with
    t2i.evaluate on the same held-out data (and, for gpt/maskgit, the same tokenizer)."""
    from genlib.reproduce import compare_all, verdict, weight_difference

    shipped_state = torch.load(t2i.weight_path(name), map_location="cpu", weights_only=True)
    models = []
    for st in (state, shipped_state):
        m = t2i.new_model(name)
        m.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in st.items()})
        models.append(m.eval())
    new, old = (t2i.evaluate(name, m, vq, n=CHECK_N) for m in models)
    return verdict(os.path.basename(t2i.weight_path(name)), compare_all(new, old, CHECK_TOL[name]),
                   weight_difference(state, shipped_state))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="retrain and compare what the models do with the shipped weights")
    ap.add_argument("--only", nargs="*", default=list(STEPS))
    ap.add_argument("--steps", type=int, default=None, help="override the step count (tests)")
    args = ap.parse_args()
    status = 0
    vq = None
    for name in args.only:
        if name in ("gpt", "maskgit") and vq is None:
            vq = t2i.load("vq")  # the shipped tokenizer, unless it was trained earlier in this run
        t0 = time.time()
        model = build(name, vq, args.steps)
        if name == "vq":
            vq = model
        print(f"{name}: trained in {time.time() - t0:.0f} s; {t2i.evaluate(name, model, vq)}",
              flush=True)
        # stored in float16 (half the size; the models are evaluated after loading them back)
        state = {k: (v.half() if v.is_floating_point() else v).contiguous()
                 for k, v in model.state_dict().items()}
        path = t2i.weight_path(name)
        if args.check:
            status |= 0 if check(name, state, vq) else 1
        else:
            torch.save(state, path)
            print(f"  wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB)")
    return status


if __name__ == "__main__":
    sys.exit(main())
