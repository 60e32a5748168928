"""Train the digits models that chapter 07 samples from and write them to genlib/weights/.

    .venv/bin/python scripts/train_diffusion.py                 # all four models (~17 min, 2 cores)
    .venv/bin/python scripts/train_diffusion.py --only flow     # one of: flow ddpm reflow dcgan
    .venv/bin/python scripts/train_diffusion.py --check         # retrain, compare with the shipped files
    .venv/bin/python scripts/train_diffusion.py --check --only dcgan   # the quick subset (~1 min)

What ships (float16 state dicts plus a config, loaded by genlib.diffusion.load_pretrained):

* ``digits_flow.pt``   class-conditional flow matching, TinyUNet (0.29 M parameters), label dropout 0.1
* ``digits_ddpm.pt``   class-conditional DDPM ε-model, same network, cosine schedule with T = 100
* ``digits_reflow.pt`` digits_flow fine-tuned on 12,000 (noise, own sample) pairs: one reflow round
* ``digits_dcgan.pt``  chapter 03's DCGAN generator (EMA weights), trained exactly as chapter 03 does

Everything trains on the 1,500 train digits only; the 297 test digits stay held out for the FID.
Reproducible: fixed seeds, CPU, 2 threads, deterministic algorithms. ``--check`` retrains and
compares the float16 weights bit for bit; a different CPU (other vector instructions) can round
differently, so when the bits differ it also compares the digits-FID of both models' samples
(8-step Euler / 20-step DDIM / 1-step Euler / DCGAN) and accepts a difference within 15 % — it
says which of the two happened. Measured: ``--check --only dcgan`` in a fresh process was NOT bit
for bit (adversarial training amplifies round-off: max |Δw| 0.15) but equivalent (FID 0.369 vs the
shipped 0.389). Training times on 2 cores: flow 382 s, DDPM 353 s, reflow 248 s, DCGAN 52 s.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from genlib import diffusion as D  # noqa: E402
from genlib import flow as FL  # noqa: E402
from genlib.data import digits  # noqa: E402

THREADS = 2
T = 100                       # diffusion steps: DDPM on 1,000 digits takes ~20 s on 2 cores
FLOW_STEPS = 5000             # batch 128, ~50 ms a step on 2 cores
DDPM_STEPS = 5000
REFLOW_PAIRS, REFLOW_HEUN_STEPS, REFLOW_STEPS = 12000, 16, 3000
DCGAN_STEPS, DCGAN_Z = 3000, 8  # as in chapter 03
NAMES = ("flow", "ddpm", "reflow", "dcgan")


def _setup(seed: int = 0):
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)


def _data():
    return digits("train", (-1.0, 1.0))


def train_flow(verbose=True) -> torch.nn.Module:
    _setup(0)
    x, y = _data()
    model, _ = FL.train_flow(D.TinyUNet(time_scale=1000.0), x, FLOW_STEPS, y=y, seed=0,
                             progress=verbose, desc="flow")
    return model


def train_ddpm(verbose=True) -> torch.nn.Module:
    _setup(1)
    x, y = _data()
    sched = D.Schedule.cosine(T)
    model, _ = D.train_diffusion(D.TinyUNet(time_scale=1000.0 / T), x, sched, DDPM_STEPS, y=y,
                                 seed=1, progress=verbose, desc="DDPM")
    return model


def train_reflow(flow_model: torch.nn.Module, verbose=True) -> torch.nn.Module:
    """One reflow round: couple fresh noise with flow_model's own samples (Heun, 16 steps, no
    guidance, balanced labels), then fine-tune a copy of flow_model on those fixed pairs."""
    import copy
    _setup(2)
    g = torch.Generator().manual_seed(2)
    y = torch.arange(REFLOW_PAIRS) % 10
    x0, x1 = FL.reflow_pairs(flow_model, REFLOW_PAIRS, (1, 8, 8), y=y, steps=REFLOW_HEUN_STEPS,
                             generator=g)
    student = copy.deepcopy(flow_model).train()
    for p in student.parameters():
        p.requires_grad_(True)
    model, _ = FL.train_flow(student, x1, REFLOW_STEPS, y=y, x0=x0, lr=5e-4, seed=2,
                             progress=verbose, desc="reflow")
    return model


def train_dcgan(verbose=True) -> torch.nn.Module:
    """Chapter 03's recipe: DCGAN (z 8-d), 3,000 steps of batch 128, Adam lr 1e-3 (β1 0.5),
    linear lr decay, EMA 0.999 of G; the EMA generator ships."""
    from genlib import gan
    from genlib.models import DCGANDiscriminator, DCGANGenerator
    _setup(0)
    x, _ = _data()
    G, Dn = DCGANGenerator(DCGAN_Z), DCGANDiscriminator()
    ema = gan.EMA(G, 0.999)
    os.environ.setdefault("GENLIB_PROGRESS", "1" if verbose else "0")
    gan.train_gan(G, Dn, x, DCGAN_STEPS, DCGAN_Z, batch_size=128, lr_g=1e-3, lr_d=1e-3, ema=ema,
                  lr_decay=True, desc="DCGAN")
    return ema.model.eval()


def _config(name, model):
    if name == "dcgan":
        return {"kind": "dcgan", "z_dim": model.z_dim, "ch": model.ch}
    cfg = {"kind": name, **model.config}
    if name == "ddpm":
        cfg["T"] = T
    return cfg


def _blob(name, model):
    return {"config": _config(name, model),
            "state": {k: v.detach().half().contiguous() if v.is_floating_point() else v
                      for k, v in model.state_dict().items()}}


@torch.no_grad()
def quick_fid(name: str, model) -> float:
    """digits-FID of 1,000 samples (100 per class) against the test digits, fixed seed."""
    g = torch.Generator().manual_seed(123)
    y = torch.arange(1000) % 10
    if name == "dcgan":
        x = model(torch.randn(1000, model.z_dim, generator=g))
    elif name == "ddpm":
        x = D.sample_ddim(model, (1000, 1, 8, 8), D.Schedule.cosine(T), 20, y=y, generator=g)
    else:
        x = FL.sample_euler(model, torch.randn(1000, 1, 8, 8, generator=g),
                            8 if name == "flow" else 1, y=y)
    return D.digits_eval(x)["fid"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="retrain and compare with the shipped weights")
    ap.add_argument("--only", nargs="*", choices=NAMES, default=list(NAMES))
    ap.add_argument("--out", default=D.WEIGHTS_DIR)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    verbose = not args.quiet
    models, ok = {}, True
    t_all = time.time()
    for name in NAMES:
        if name not in args.only:
            continue
        t0 = time.time()
        if name == "reflow":
            # reflow starts from the float16 flow model: just trained, or the one in --out
            base = models.get("flow") or _load(os.path.join(args.out, "digits_flow.pt"))
            model = train_reflow(base, verbose)
        else:
            model = {"flow": train_flow, "ddpm": train_ddpm, "dcgan": train_dcgan}[name](verbose)
        blob = _blob(name, model)
        models[name] = _load_blob(name, blob)  # what ships (float16-rounded): reflow starts from it
        path = os.path.join(args.out, f"digits_{name}.pt")
        print(f"{name}: trained in {time.time() - t0:.0f} s; digits-FID (1,000 samples vs test) "
              f"{quick_fid(name, models[name]):.3f}", flush=True)
        if args.check:
            ok &= _compare(name, blob, path)
        else:
            os.makedirs(args.out, exist_ok=True)
            torch.save(blob, path)
            print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB)")
    print(f"total {time.time() - t_all:.0f} s")
    return 0 if ok else 1


def _load(path):
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = dict(blob["config"])
    cfg.pop("kind"), cfg.pop("T", None)
    m = D.TinyUNet(**cfg)
    m.load_state_dict({k: v.float() for k, v in blob["state"].items()})
    return m.eval()


def _compare(name, blob, path) -> bool:
    shipped = torch.load(path, map_location="cpu", weights_only=True)
    same = blob["config"] == shipped["config"] and all(
        torch.equal(v, shipped["state"][k]) for k, v in blob["state"].items())
    if same:
        print(f"{name}: identical to the shipped weights")
        return True
    diff = max((v.float() - shipped["state"][k].float()).abs().max().item()
               for k, v in blob["state"].items() if v.is_floating_point())
    shipped_model = _load_blob(name, shipped)
    new_model = _load_blob(name, blob)
    f_new, f_old = quick_fid(name, new_model), quick_fid(name, shipped_model)
    close = abs(f_new - f_old) <= 0.15 * f_old
    print(f"{name}: DIFFERS bit-wise from the shipped weights (max |Δw| {diff:.2e}); digits-FID "
          f"retrained {f_new:.3f} vs shipped {f_old:.3f}: "
          + ("equivalent (within 15 %)" if close else "NOT equivalent"))
    return close


def _load_blob(name, blob):
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.pt")
        torch.save(blob, p)
        if name == "dcgan":
            from genlib.models import DCGANGenerator
            cfg = dict(blob["config"])
            cfg.pop("kind")
            m = DCGANGenerator(**cfg)
            m.load_state_dict({k: v.float() for k, v in blob["state"].items()})
            return m.eval()
        return _load(p)


if __name__ == "__main__":
    sys.exit(main())
