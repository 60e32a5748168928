"""Why image generation gets faster, measured: chapter 09 and ``genlib bench speed``.

Every number here is a measurement on a shipped model (chapters 03, 05, 07, 08), taken in one
process on one machine, with quality measured on the same samples that were timed.

Cost model: time per image ≈ sequential network evaluations × cost of one evaluation ÷ what runs
in parallel (the batch, the cores). Methods differ in the first factor (NFE), engineering levers
in the second and third.

=========================  ========================================================================
``time_fn``                median / quartiles / min / max of repeated calls, in ms (inference mode,
                           CUDA synchronised), warm-up calls excluded
``ms_per_image``           a timing (or ms) ÷ images per call
``images_per_second``      the throughput of a timing
``cost_model``             sequential NFE × ms per evaluation ÷ parallelism
``count_nfe``              network evaluations per sample and sequential calls for a sampler
``machine_card``           platform, CPU, threads, torch/python versions, device
``train_digits_vae``       a small class-conditional VAE on grey digits (chapter 05's MLPVAE), seeded
``DIGITS_ROWS``            one-pass vs iterative samplers on digits: name → (family, NFE, sampler)
``digits_rows``            digits-FID, class accuracy and ms/image for each row, timed on the very
                           chunks that are scored
``token_models``           shipped TokenGPT / MaskGIT / VQ (64 tokens) and same-architecture
                           random-weight GPTs at 16 and 256 tokens (timing only)
``kv_cache_rows``          autoregressive decoding without / with a KV cache: time, identical tokens
``cache_impl_rows``        the naive cache (torch.cat, mask every step) vs the preallocated one
``decode_step_sweep``      cached decoding: ms per step and µs per token against the batch size
``profile_decoding``       one decoding run under torch.profiler: matmul share, operator calls/step
``kv_cache_memory``        the cache's bytes measured on real buffers vs the formula (and MQA/GQA)
``quantization_rows``      int8 on the token GPT: weight-only (accuracy cost) and dynamic (CPU speed)
``decoding_rows``          AR (cache or not) vs MaskGIT 4/8/16 steps at batch 1/16/64/256
``crossover``              the smallest batch at which the cached AR model beats a MaskGIT row
``token_quality``          attribute accuracy of the 64-token rows (the shipped classifier)
``lever_rows``             batching, inference_mode / no_grad / grad, threads, bf16 autocast,
                           torch.compile, channels_last, guidance as two calls vs one batch
``PUBLISHED``              published speed claims beside ours (``published_rows``)
``run_speed``              everything above → the bench's result dict (``validate_result``)
``markdown_speed``         the README table; ``plot_pareto``: digits-FID vs ms/image (log x)
=========================  ========================================================================
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

SCHEMA = "genlib-bench-speed/2"
ROOT = Path(__file__).resolve().parent.parent


# ============================================================================ timing primitives
def _sync(device) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _quantile(sorted_values, q: float) -> float:
    """Linear-interpolation quantile of an already sorted list (q in [0, 1])."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (pos - lo) * (sorted_values[hi] - sorted_values[lo])


def summarize_ms(runs_ms) -> dict:
    """Median, quartiles (q1, q3: the IQR), min and max of a list of milliseconds.

    With fewer than 5 runs, q1 and q3 are the min and the max: interpolated quartiles of 2–4 numbers
    would show a spread narrower than the runs' own, and every decision built on q1/q3 (ratio ranges,
    crossovers, "resolved") would be too confident."""
    runs = [float(r) for r in runs_ms]
    if not runs:
        raise ValueError("no timings to summarise")
    s = sorted(runs)
    q1, q3 = (_quantile(s, 0.25), _quantile(s, 0.75)) if len(s) >= 5 else (s[0], s[-1])
    return {"median_ms": statistics.median(s), "q1_ms": q1, "q3_ms": q3,
            "min_ms": s[0], "max_ms": s[-1], "runs_ms": [round(r, 4) for r in runs], "repeats": len(runs)}


def time_fn(fn, repeats: int = 5, warmup: int = 1, device=None, mode: str = "inference",
            clock: str = "wall") -> dict:
    """Call ``fn()`` ``warmup`` times untimed, then ``repeats`` times, each timed with
    ``time.perf_counter`` (wall clock; CUDA is synchronised before and after each call).

    ``clock="process"``: this process's CPU time instead (``time.process_time``, CPU only). On a
    shared machine it does not count the time other programs held the cores, so with one intra-op
    thread (``torch.set_num_threads(1)``) it is steadier than wall time — the tests use it. It is not
    immune: a shared cache, memory bandwidth, SMT siblings and frequency scaling still move it. With
    several threads it *sums* their CPU time (parallel speed-ups become invisible and spin-waiting
    counts), so use the wall clock there.

    ``mode``: "inference" (``torch.inference_mode``, the default), "no_grad", or "grad" (autograd on).
    Returns ``summarize_ms`` of the runs plus ``warmup`` and ``mode``: median_ms, q1_ms, q3_ms,
    min_ms, max_ms, runs_ms (every run, in order), repeats.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be ≥ 1 and warmup ≥ 0")
    ctx = {"inference": torch.inference_mode, "no_grad": torch.no_grad,
           "grad": contextlib.nullcontext}[mode]
    timer = {"wall": time.perf_counter, "process": time.process_time}[clock]
    runs = []
    with ctx():
        for _ in range(warmup):
            fn()
        _sync(device)
        for _ in range(repeats):
            t0 = timer()
            fn()
            _sync(device)
            runs.append(1000 * (timer() - t0))
    out = summarize_ms(runs)
    out.update(warmup=warmup, mode=mode, clock=clock)
    return out


def time_interleaved(fns: dict, repeats: int = 5, warmup: int = 1, device=None, mode: str = "inference",
                     clock: str = "wall") -> dict:
    """Time several functions in alternation (A B C A B C …) instead of in blocks, so that a slow
    spell of the machine hits every method alike: ``warmup`` untimed rounds, then ``repeats`` timed
    rounds. → {name: ``summarize_ms`` dict (+ warmup, mode, clock)}. Compare them as ratios."""
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be ≥ 1 and warmup ≥ 0")
    ctx = {"inference": torch.inference_mode, "no_grad": torch.no_grad,
           "grad": contextlib.nullcontext}[mode]
    timer = {"wall": time.perf_counter, "process": time.process_time}[clock]
    runs = {k: [] for k in fns}
    with ctx():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        _sync(device)
        for _ in range(repeats):
            for k, fn in fns.items():
                t0 = timer()
                fn()
                _sync(device)
                runs[k].append(1000 * (timer() - t0))
    out = {}
    for k, r in runs.items():
        out[k] = summarize_ms(r)
        out[k].update(warmup=warmup, mode=mode, clock=clock)
    return out


def ratio_summary(slow: dict, fast: dict) -> dict:
    """Ratio of two timings' medians, with the ratio of the opposite quartiles as a conservative
    range (q1_slow / q3_fast … q3_slow / q1_fast): ``resolved`` when that whole range is on one side of 1."""
    r = slow["median_ms"] / fast["median_ms"]
    lo, hi = slow["q1_ms"] / fast["q3_ms"], slow["q3_ms"] / fast["q1_ms"]
    return {"ratio": r, "low": lo, "high": hi, "resolved": lo > 1 or hi < 1}


def ms_per_image(timing, n: int) -> float:
    """Median milliseconds per image of a ``time_fn`` result (or a plain ms value) for n images a call."""
    ms = timing["median_ms"] if isinstance(timing, dict) else float(timing)
    return ms / n


def images_per_second(timing, n: int) -> float:
    """Throughput: n images per call ÷ the median call time."""
    return 1000.0 / ms_per_image(timing, n)


def cost_model(nfe: float, ms_per_eval: float, parallel: float = 1.0) -> float:
    """Predicted milliseconds: sequential network evaluations × cost of one ÷ parallelism.

    ``ms_per_eval`` is the time of one network call on one unit of work (one image, one batch …);
    ``parallel`` how many such units one call handles at the same cost (1 when ms_per_eval is already
    per image at the batch you run)."""
    if nfe < 0 or ms_per_eval < 0 or parallel <= 0:
        raise ValueError("nfe and ms_per_eval must be ≥ 0, parallel > 0")
    return nfe * ms_per_eval / parallel


def count_nfe(method: str, steps: int = 1, guidance: bool = False, batched_guidance: bool = True,
              last_step_euler: bool = False) -> dict:
    """Network evaluations per sample (``nfe``) and sequential network calls (``sequential``).

    method: "gan" / "vae" (one pass), "ddpm", "ddim", "euler" (one evaluation per step), "heun"
    (two per step; ``last_step_euler`` skips the final correction as EDM does: 2·steps − 1),
    "ar" (steps = tokens, one call per token), "maskgit" (one call per step).
    ``guidance``: classifier-free guidance doubles the evaluations; batched (cond and uncond as one
    call of 2N rows, as genlib's samplers do) keeps the sequential calls, two calls double them too.
    """
    per_step = {"gan": 0, "vae": 0, "ddpm": 1, "ddim": 1, "euler": 1, "heun": 2, "ar": 1, "maskgit": 1}
    if method not in per_step:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(per_step)}")
    if steps < 1:
        raise ValueError("steps must be ≥ 1")
    if method in ("gan", "vae"):
        nfe = 1
    else:
        nfe = per_step[method] * steps - (1 if method == "heun" and last_step_euler else 0)
    sequential = nfe
    if guidance:
        nfe *= 2
        if not batched_guidance:
            sequential *= 2
    return {"nfe": nfe, "sequential": sequential}


def machine_card(device="cpu") -> dict:
    """What the timings were measured on."""
    card = {"platform": platform.platform(), "machine": platform.machine(), "python": sys.version.split()[0],
            "torch": torch.__version__, "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "device": str(device), "cpu_model": None}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    card["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        card["cpu_model"] = platform.processor() or None
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        card["gpu"] = torch.cuda.get_device_name()
        card["cuda"] = torch.version.cuda
    return card


def _progress(iterable=None, total=None, desc=None):
    from genlib.train import progress
    return progress(iterable, total=total, desc=desc)


# ============================================================================ one pass vs iterative (digits)
def train_digits_vae(steps: int = 2000, seed: int = 0, latent: int = 16, device="cpu"):
    """Chapter 05's ``MLPVAE``, class-conditional, trained on the grey training digits in [0, 1] with
    a Bernoulli (cross-entropy) likelihood, seeded: 2,000 steps take ~15 s on two cores. Sampling
    decodes z ~ N(0, I) to the decoder's mean (sigmoid of the logits), mapped to [-1, 1]. The model
    trained with the defaults ships as ``digits_vae`` (scripts/train_diffusion.py --only vae), and
    ``load_digits_models`` loads it."""
    from genlib.data import digits
    from genlib.vae import MLPVAE, train_vae

    x, y = digits("train", value_range=(0.0, 1.0))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = MLPVAE(latent=latent, hidden=256, n_classes=10)
        train_vae(model, x, y, steps=steps, seed=seed, desc="digits VAE")
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval().to(device)


def _vae_sampler(vae):
    def sample(z_img, y, g):
        z = torch.randn(len(y), vae.latent, generator=g).to(y.device)
        return 2 * torch.sigmoid(vae.decode(z, y)) - 1
    return sample


def _rows_spec(models: dict) -> dict:
    """name → (family, nfe, sampler(z, y, generator) → images in [-1, 1])."""
    from genlib import diffusion, flow

    ddpm, fl, re, gan = models["ddpm"], models["flow"], models["reflow"], models["dcgan"]
    sched = ddpm.schedule
    rows = {
        "DCGAN (ch03)": ("one pass", 1, lambda z, y, g: gan(torch.randn(len(z), gan.z_dim, generator=g).to(z.device))),
    }
    if models.get("vae") is not None:
        rows["VAE decoder (ch05)"] = ("one pass", 1, _vae_sampler(models["vae"]))
    rows[f"DDPM {sched.T} steps"] = ("diffusion", sched.T, lambda z, y, g: diffusion.sample_ddpm(
        ddpm, z.shape, sched, y=y, generator=g, device=z.device))
    for k in (50, 20, 10, 5):
        rows[f"DDIM {k}"] = ("diffusion", k, lambda z, y, g, k=k: diffusion.sample_ddim(
            ddpm, z.shape, sched, k, y=y, generator=g, device=z.device))
    for k in (1, 2, 4, 8, 16, 32, 64):
        rows[f"flow Euler {k}"] = ("flow", k, lambda z, y, g, k=k: flow.sample_euler(fl, z, k, y))
    for k in (1, 2, 4):
        rows[f"reflow Euler {k}"] = ("reflow", k, lambda z, y, g, k=k: flow.sample_euler(re, z, k, y))
    for k in (1, 2, 4):   # progressive distillation: a separate student per step count
        if models.get(f"pd{k}") is not None:
            rows[f"PD {k}"] = ("distilled", k, lambda z, y, g, m=models[f"pd{k}"], k=k: flow.sample_euler(m, z, k, y))
    if models.get("cd") is not None:
        from genlib import distill
        for k in (1, 2, 4):
            rows[f"CD {k}"] = ("distilled", k, lambda z, y, g, k=k: distill.sample_consistency(
                models["cd"], z, k, y, generator=g))
    return rows


DIGITS_ROWS = ("DCGAN (ch03)", "VAE decoder (ch05)", "DDPM 100 steps", "DDIM 50", "DDIM 20", "DDIM 10",
               "DDIM 5", "flow Euler 1", "flow Euler 2", "flow Euler 4", "flow Euler 8", "flow Euler 16",
               "flow Euler 32", "flow Euler 64", "reflow Euler 1", "reflow Euler 2", "reflow Euler 4",
               "PD 1", "PD 2", "PD 4", "CD 1", "CD 2", "CD 4")
QUICK_DIGITS_ROWS = ("DCGAN (ch03)", "VAE decoder (ch05)", "DDPM 100 steps", "DDIM 20",
                     "flow Euler 1", "flow Euler 2", "flow Euler 4", "flow Euler 8", "flow Euler 32",
                     "reflow Euler 1", "reflow Euler 2", "reflow Euler 4",
                     "PD 1", "PD 2", "PD 4", "CD 1", "CD 2", "CD 4")


@torch.no_grad()
def sample_row(models: dict, name: str, z: torch.Tensor, y: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Samples of one ``digits_rows`` row from the noise images z (N, 1, 8, 8) and labels y (N,)."""
    spec = _rows_spec(models)
    if name not in spec:
        raise ValueError(f"unknown row {name!r}; available: {list(spec)}")
    return spec[name][2](z, y, torch.Generator().manual_seed(seed))


def load_digits_models(device="cpu", vae: bool = True, vae_steps: int | None = None) -> dict:
    """The shipped digits models (``diffusion.load_pretrained``): {"dcgan", "ddpm", "flow",
    "reflow", "pd1", "pd2", "pd4", "cd", "vae"} (pd<k>: the progressive-distillation students, cd:
    the consistency-distilled one). With ``vae`` the shipped ``digits_vae`` (``train_digits_vae``
    with its defaults), or with ``vae_steps`` one trained here for that many steps; without, None."""
    from genlib.diffusion import load_pretrained

    out = {k: load_pretrained(f"digits_{k}", device)
           for k in ("dcgan", "ddpm", "flow", "reflow", "pd1", "pd2", "pd4", "cd")}
    if not vae:
        out["vae"] = None
    elif vae_steps is None:
        out["vae"] = load_pretrained("digits_vae", device)
    else:
        out["vae"] = train_digits_vae(vae_steps, device=device)
    return out


def digits_rows(models: dict, rows=DIGITS_ROWS, n: int = 1000, batch: int = 250, device="cpu",
                seed: int = 0, progress: bool = True, warmup: bool = True, clock: str = "wall",
                seeds=(0, 1, 2)) -> list[dict]:
    """For each row and each sampling seed: sample n digits (labels 0…9 in turn; the same starting
    noise for every row at a given seed, so rows are paired by seed) in chunks of ``batch``, time
    every chunk (with ``warmup``, one extra untimed chunk first), and score each seed's n samples
    with ``genlib.quality.digits_quality`` (unbiased KID×10³ and FID vs the 297 held-out test
    digits, requested-class accuracy where the model takes labels).

    Returns dicts: name, family, nfe, n (per seed), seeds, batch, ms_per_image (median chunk ÷ batch
    over every chunk of every seed), q1/q3/min/max per image, chunk_ms; ``kid``, ``fid``, ``accuracy``
    (means over seeds) with ``*_std`` and ``*_seeds`` (one value per seed; accuracy None for the
    unconditional DCGAN); ``real_kid`` / ``real_fid`` (+ ``_std``): sets of n real train digits
    scored the same way (a reference level, not a floor) — with the samples' class counts for the
    conditional rows (``real_matched`` True), random sets for the DCGAN; ``table_reference`` picks
    the table's. ``seeds=(s,)`` gives one draw
    (no spread): use at least three to compare rows.
    """
    from genlib import quality

    timer = {"wall": time.perf_counter, "process": time.process_time}[clock]
    spec = _rows_spec(models)
    unknown = [r for r in rows if r not in spec]
    if unknown:
        raise ValueError(f"unknown rows {unknown}; available: {list(spec)}")
    if n % batch:
        raise ValueError("n must be a multiple of batch")
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("digits_rows needs at least one seed")
    y_all = (torch.arange(n) % 10).to(device)
    # every input is drawn before any timing starts: no host-to-device copy inside a timed chunk
    z_by_seed = {s: torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed + 5 + 1000 * s)).to(device)
                 for s in seeds}
    out = []
    it = _progress(rows, desc="digits rows") if progress else rows
    for name in it:
        family, nfe, sampler = spec[name]
        sets, runs = [], []
        with torch.inference_mode():
            if warmup:  # one untimed chunk from its own noise (allocations, first-call overheads)
                sampler(z_by_seed[seeds[0]][:batch], y_all[:batch], torch.Generator().manual_seed(seed + 99))
            for s in seeds:
                g = torch.Generator().manual_seed(seed + 8 + 1000 * s)
                z_all, chunks = z_by_seed[s], []
                for i in range(0, n, batch):
                    _sync(device)
                    t0 = timer()
                    x = sampler(z_all[i:i + batch], y_all[i:i + batch], g)
                    _sync(device)
                    runs.append(1000 * (timer() - t0))
                    chunks.append(x)
                sets.append(torch.cat(chunks).float().cpu())
        conditional = name != "DCGAN (ch03)"
        q = quality.digits_quality(sets, y_all.cpu() if conditional else None, fid_inf=False,
                                   real_draws=10 if n <= 1500 else 0, label=name)
        t = summarize_ms(runs)
        row = {"name": name, "family": family, "nfe": nfe, "n": n, "seeds": len(seeds), "batch": batch,
               "ms_per_image": t["median_ms"] / batch,
               "ms_per_image_q1": t["q1_ms"] / batch, "ms_per_image_q3": t["q3_ms"] / batch,
               "ms_per_image_min": t["min_ms"] / batch, "ms_per_image_max": t["max_ms"] / batch,
               "chunk_ms": t["runs_ms"]}
        for k in ("kid", "fid", "accuracy"):
            sp = q.get(k)
            row[k] = sp.mean if sp is not None else None
            row[k + "_std"] = sp.std if sp is not None else None
            row[k + "_seeds"] = [float(v) for v in sp.values] if sp is not None else None
        for k in ("kid", "fid"):
            ref = q.get(f"real_{k}")
            row[f"real_{k}"] = ref.mean if ref is not None else None
            row[f"real_{k}_std"] = ref.std if ref is not None else None
        row["real_matched"] = bool(q.get("real_matched", False))
        out.append(row)
    return out


def table_reference(rows: list[dict]) -> dict:
    """The real-digit reference level of a ``digits_rows`` table: the one of its first conditional
    row (real train digits with the samples' class counts: n/10 of each digit), else the first
    row's (random real sets, as for the unconditional DCGAN). → {"kid", "kid_std", "fid", "fid_std",
    "matched"}."""
    r = next((r for r in rows if r.get("real_matched")), rows[0])
    return {"kid": r["real_kid"], "kid_std": r["real_kid_std"], "fid": r["real_fid"],
            "fid_std": r["real_fid_std"], "matched": bool(r.get("real_matched"))}


def row_quality(row: dict) -> dict:
    """A ``digits_rows`` row's per-seed numbers as ``genlib.stats.Spread`` (for ``quality.compare`` /
    ``claim_better``): {"kid", "fid", "accuracy"} where present."""
    from genlib.stats import spread
    return {k: spread(row[k + "_seeds"], label=f"{row['name']} {k}") for k in ("kid", "fid", "accuracy")
            if row.get(k + "_seeds")}


def digits_noise(rows: list[dict], metric: str = "kid") -> float:
    """The table's typical noise level: the median over its rows of the seed-to-seed std of ``metric``
    (the median, because a poor row such as a 1-step flow has a far larger spread than the rest).
    Compare two particular rows with their own spreads (``matched``)."""
    stds = sorted(r[metric + "_std"] for r in rows if r.get(metric + "_std") is not None and r.get("seeds", 1) > 1)
    return float(statistics.median(stds)) if stds else float("nan")


def matched(a: dict, b: dict, metric: str = "kid", k: float = 2.0) -> tuple[str, str]:
    """Compare two ``digits_rows`` rows drawn with the same seeds, seed by seed: "better" / "worse"
    when every seed's difference a − b is beyond k × the larger of the two rows' seed std in one
    direction (lower is better), else "within noise". → (verdict, text with the per-seed differences)."""
    da, db = a[metric + "_seeds"], b[metric + "_seeds"]
    if len(da) != len(db):
        raise ValueError("compare rows drawn with the same seeds")
    tol = k * max(a.get(metric + "_std") or 0.0, b.get(metric + "_std") or 0.0)
    diffs = [x - y for x, y in zip(da, db)]
    verdict = "better" if all(d < -tol for d in diffs) else ("worse" if all(d > tol for d in diffs) else "within noise")
    text = (f"{a['name']} {a[metric]:.2f} ± {a[metric + '_std']:.2f} vs {b['name']} {b[metric]:.2f} ± "
            f"{b[metric + '_std']:.2f} ({metric}, n={len(da)} seeds); per-seed differences "
            + ", ".join(f"{d:+.2f}" for d in diffs) + f"; tolerance {tol:.2f}")
    return verdict, text


_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def paired(a: dict, b: dict, metric: str = "kid") -> tuple[str, str]:
    """Compare two ``digits_rows`` rows drawn with the same seeds through their per-seed differences
    a − b (the rows share each seed's starting noise, so the differences vary far less than either
    row): a 95 % t-interval over the m seeds, m − 1 degrees of freedom. "better" (lower) / "worse"
    when the interval excludes 0, else "within noise". More powerful than ``matched``, which
    compares the differences with the rows' own spreads. → (verdict, text)."""
    da, db = a[metric + "_seeds"], b[metric + "_seeds"]
    if len(da) != len(db) or len(da) < 2:
        raise ValueError("compare rows drawn with the same seeds, at least two")
    diffs = [x - y for x, y in zip(da, db)]
    m = len(diffs)
    mean = statistics.mean(diffs)
    half = _T975.get(m - 1, 1.96) * statistics.stdev(diffs) / math.sqrt(m)
    low, high = mean - half, mean + half
    verdict = "better" if high < 0 else ("worse" if low > 0 else "within noise")
    text = (f"{a['name']} − {b['name']} ({metric}): {mean:+.3g} [{low:+.3g}, {high:+.3g}] (95% t-interval over "
            f"{m} paired seeds; per seed " + ", ".join(f"{d:+.3g}" for d in diffs) + ")")
    return verdict, text


def plot_pareto(rows: list[dict], ax=None, title: str | None = None, annotate: bool = True,
                metric: str = "kid"):
    """Quality (``metric``: unbiased KID×10³ by default, or "fid") against median ms per image (log x),
    one marker per family, every point labelled; vertical bars = ± one std over the sampling seeds,
    horizontal bars = the timing's IQR; the grey band is n real train digits scored the same way
    (mean ± std over draws): a reference level, not a floor."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    families = list(dict.fromkeys(r["family"] for r in rows))
    markers = dict(zip(families, "osD^v<>"))
    for fam in families:
        rs = sorted((r for r in rows if r["family"] == fam), key=lambda r: r["ms_per_image"])
        xs, ys = [r["ms_per_image"] for r in rs], [r[metric] for r in rs]
        yerr = [r.get(metric + "_std") or 0.0 for r in rs]
        xerr = [[r["ms_per_image"] - r["ms_per_image_q1"] for r in rs], [r["ms_per_image_q3"] - r["ms_per_image"] for r in rs]]
        ax.errorbar(xs, ys, yerr=yerr, xerr=xerr, marker=markers[fam], capsize=2,
                    ls="-" if len(rs) > 1 and fam != "one pass" else "", label=fam)
        if annotate:
            for r in rs:
                ax.annotate(r["name"].replace(" (ch03)", "").replace(" (ch05)", "").replace(" steps", ""),
                            (r["ms_per_image"], r[metric]), textcoords="offset points", xytext=(4, 3),
                            fontsize=7)
    base = next((r for r in rows if r.get("real_matched")), rows[0])  # as table_reference picks it
    ref, ref_sd = base.get(f"real_{metric}"), base.get(f"real_{metric}_std") or 0.0
    if ref is not None:
        ax.axhspan(ref - ref_sd, ref + ref_sd, color="0.85", zorder=0)
        ax.axhline(ref, color="k", ls="--", lw=1,
                   label=f"real train digits (n = {base['n']}{', n/10 per digit' if base.get('real_matched') else ''}), ± std")
    ax.set_xscale("log")
    if metric == "fid":
        ax.set_yscale("log")
    else:
        ax.set_yscale("symlog", linthresh=10)
    name = {"kid": "KID×10³ vs test digits (unbiased; lower is better)", "fid": "digits-FID (lower is better)"}
    ax.set(xlabel="milliseconds per image (log scale)", ylabel=name.get(metric, metric),
           title=title or f"quality vs time per image on 8×8 digits ({rows[0].get('seeds', 1)} seeds)")
    ax.legend(fontsize="small")
    return ax


# ============================================================================ LLM-style decoding of image tokens
def token_models(device="cpu", lengths=(16, 64, 256)) -> dict:
    """{"gpt": shipped 64-token TokenGPT, "maskgit": shipped MaskGIT, "vq": the VQ tokenizer,
    "gpt_by_length": {L: model}}. For L ≠ 64 the model is a same-architecture TokenGPT (dim 96,
    3 layers, 4 heads) with fresh random weights (seed 0): good for timing, not for pictures."""
    from genlib import t2i
    from genlib.text import Tokenizer
    from genlib.transformer import TokenGPT

    gpt, mg, vq = (t2i.load(k) for k in ("gpt", "maskgit", "vq"))
    by_len = {}
    for L in lengths:
        if L == 64:
            by_len[L] = gpt
            continue
        with torch.random.fork_rng():
            torch.manual_seed(0)
            by_len[L] = TokenGPT(k=64, n_img=L, cond_vocab=len(Tokenizer()), n_cond=t2i.N_COND,
                                 dim=96, layers=3, heads=4).eval()
    return {"gpt": gpt.to(device), "maskgit": mg.to(device), "vq": vq.to(device),
            "gpt_by_length": {L: m.to(device) for L, m in by_len.items()}}


def captions_cond(batch: int, seed: int = 1, device="cpu") -> torch.Tensor:
    """(batch, 4) condition tokens for held-out shapes captions (seed 1, as chapter 08 evaluates)."""
    from genlib import t2i
    from genlib.data import shapes

    return t2i.caption_tokens(shapes(batch, seed=seed).captions).to(device)


def ar_uniforms(model, batch: int, seed: int = 0, device="cpu") -> torch.Tensor:
    """The (n_img, batch) uniforms of ``ar_generate``, drawn once (outside any timed call)."""
    return torch.rand(model.n_img, batch, generator=torch.Generator().manual_seed(seed)).to(device)


def ar_generate(model, cond, use_cache: bool, seed: int = 0, uniforms: torch.Tensor | None = None):
    """TokenGPT sampling with uniforms drawn from ``seed``: the same random stream for the cached and
    the uncached run. Pass ``uniforms`` (``ar_uniforms``) when timing, so that no host-to-device copy
    happens inside the timed call."""
    u = uniforms if uniforms is not None else ar_uniforms(model, len(cond), seed, cond.device)
    return model.generate(cond, use_cache=use_cache, uniforms=u)


def kv_cache_rows(models: dict, lengths=(16, 64, 256), batch: int = 16, repeats: int = 3,
                  device="cpu", progress: bool = True, clock: str = "wall") -> list[dict]:
    """Autoregressive decoding of L tokens without and with the KV cache at one batch size.

    Each row: tokens, batch, trained (True for the shipped 64-token model), identical (both runs
    produced exactly the same tokens from the same uniforms), no_cache / cache timings (``time_fn``
    dicts), speedup (median ratio)."""
    out = []
    it = _progress(lengths, desc="KV cache") if progress else lengths
    for L in it:
        m = models["gpt_by_length"][L]
        cond = captions_cond(batch, device=device)
        u = ar_uniforms(m, batch, 0, device)
        got = {}

        def run(use_cache):
            got[use_cache] = ar_generate(m, cond, use_cache, uniforms=u)

        # the uncached runs are the slow ones (cubic attention work): no warm-up, and one run only at
        # L ≥ 256; the tokens compared are those of the timed runs
        t_no = time_fn(lambda: run(False), repeats=1 if L >= 256 else repeats, warmup=0, device=device,
                       clock=clock)
        t_kv = time_fn(lambda: run(True), repeats=repeats, warmup=1, device=device, clock=clock)
        a, b = got[False], got[True]
        out.append({"tokens": L, "batch": batch, "trained": L == 64,
                    "identical": bool(torch.equal(a, b)), "no_cache": t_no, "cache": t_kv,
                    "speedup": t_no["median_ms"] / t_kv["median_ms"]})
    return out


def cache_impl_rows(models: dict, lengths=(64, 256), batch: int = 16, repeats: int = 3, device="cpu",
                    progress: bool = True, clock: str = "wall") -> list[dict]:
    """The naive KV cache (grown with ``torch.cat``, causal mask rebuilt every step) against the
    preallocated one (``transformer.KVCache``), timed in alternation on the same uniforms.

    Each row: tokens, batch, identical (same tokens), concat / preallocated timings, and
    ``ratio_summary(concat, preallocated)`` as speedup (> 1: the preallocated cache is faster)."""
    out = []
    it = _progress(lengths, desc="cache implementations") if progress else lengths
    for L in it:
        m = models["gpt_by_length"][L]
        cond = captions_cond(batch, device=device)
        u = ar_uniforms(m, batch, 0, device)
        got = {}
        fns = {impl: (lambda impl=impl: got.__setitem__(
            impl, m.generate(cond, use_cache=True, uniforms=u, cache_impl=impl)))
            for impl in ("concat", "preallocated")}
        t = time_interleaved(fns, repeats=repeats, warmup=1, device=device, clock=clock)
        out.append({"tokens": L, "batch": batch, "identical": bool(torch.equal(got["concat"],
                                                                                got["preallocated"])),
                    "concat": t["concat"], "preallocated": t["preallocated"],
                    "speedup": ratio_summary(t["concat"], t["preallocated"])})
    return out


def decode_step_sweep(model, batches=(1, 4, 16, 64, 256), repeats: int = 3, device="cpu",
                      progress: bool = True, clock: str = "wall") -> list[dict]:
    """Cached decoding at several batch sizes: time per decoding step (one ``generate`` ÷ n_img) and
    per token of one sequence (step ÷ batch).

    Where the step time hardly moves with the batch, the loop is overhead-bound: each step launches
    the same few hundred small operators whatever the batch, and their fixed cost dominates. Where it
    grows in proportion to the batch, the arithmetic (or the memory traffic) has taken over and
    batching no longer buys throughput. Each row: batch, step_ms, us_per_token, timing."""
    out = []
    it = _progress(batches, desc="step time vs batch") if progress else batches
    for b in it:
        cond = captions_cond(b, device=device)
        u = ar_uniforms(model, b, 0, device)
        t = time_fn(lambda: model.generate(cond, use_cache=True, uniforms=u), repeats=repeats, warmup=1,
                    device=device, clock=clock)
        step = t["median_ms"] / model.n_img
        out.append({"batch": b, "step_ms": step, "us_per_token": 1000 * step / b, "timing": t})
    return out


@contextlib.contextmanager
def _quiet_c_stderr():
    """Silence what C++ code writes to file descriptor 2 (the profiler's start/stop log lines) during
    the block. Python's stderr is flushed before and the descriptor restored after; in a terminal
    (where ``sys.stderr`` is descriptor 2) a Python warning raised *inside* the block is lost too, so
    keep the block to the profiled call (in Jupyter, ``sys.stderr`` is not descriptor 2)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):      # no real descriptor 2 (some embedded consoles)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _op_self_times(prof) -> tuple[dict, int | None]:
    """({operator name: [calls, self time in µs]}, top-level calls) of a finished ``torch.profiler.profile``.

    Self time = the operator's duration minus that of the operators it called (nested on the same
    thread). Computed directly from the raw events, which takes a fraction of a second where
    ``prof.key_averages()`` takes seconds for the ~30,000 events of an uncached decode; the result is
    the same (``tests/test_speed.py`` compares them). Top-level calls are the operators not nested in
    another (what the model's code calls; ``linear`` counts once, not with its ``t`` and ``addmm``).
    Falls back to ``key_averages`` (top-level calls then None) when the raw events are not reachable
    (they are a private attribute of the profiler)."""
    try:
        events = prof.profiler.kineto_results.events()
        rows = sorted(((e.start_thread_id(), e.start_ns(), e.duration_ns(), e.name()) for e in events),
                      key=lambda r: (r[0], r[1], -r[2]))
    except AttributeError:
        return {e.key: [e.count, e.self_cpu_time_total] for e in prof.key_averages()}, None
    out: dict = {}
    top = 0
    stack: list = []                                   # (thread, end, name) of the enclosing operators
    for tid, start, dur, name in rows:
        while stack and (stack[-1][0] != tid or stack[-1][1] <= start):
            stack.pop()
        if stack:
            out.setdefault(stack[-1][2], [0, 0])[1] -= dur
        elif name.startswith("aten::"):
            top += 1
        row = out.setdefault(name, [0, 0])
        row[0] += 1
        row[1] += dur
        stack.append((tid, start + dur, name))
    return {k: [c, t / 1000] for k, (c, t) in out.items()}, top


MATMUL_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::_addmm_activation")


def profile_decoding(model, batch: int = 16, use_cache: bool = True, device="cpu", top: int = 8,
                     cache_impl: str = "preallocated") -> dict:
    """One ``generate`` call under ``torch.profiler`` (CPU activity), summarised.

    → wall_ms (the profiled call, profiler included), total_ms (sum of every operator's self time),
    outside_ms (wall − operator time: Python, module calls and the profiler's own bookkeeping — time no
    operator accounts for), matmul_ms and matmul_share (the matrix multiplications, the part the work
    ratio counts, as a share of operator time) and matmul_wall_share (of the wall time), op_calls
    (dispatcher calls, nested ones included) and op_calls_per_step, top_calls_per_step (operators the
    model's code calls, not nested in another; None if unavailable), us_per_op_call (operator time ÷
    calls), and ``ops``: the ``top`` operators by self time, each {name, calls, self_ms, share}. The
    profiler adds its own cost to every operator (about as much as the cached decode's matmuls), so
    read shares and counts, not absolute times; one run — repeat it to see the spread. CPU activity
    only: on a GPU the operators' CPU time is launch time, so the bench profiles on the CPU only."""
    from torch.profiler import ProfilerActivity, profile

    cond = captions_cond(batch, device=device)
    u = ar_uniforms(model, batch, 0, device)
    with torch.inference_mode():
        model.generate(cond, use_cache=use_cache, uniforms=u, cache_impl=cache_impl)   # warm-up
        _sync(device)
        with _quiet_c_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            model.generate(cond, use_cache=use_cache, uniforms=u, cache_impl=cache_impl)
            _sync(device)
            wall = 1000 * (time.perf_counter() - t0)
    times, top_calls = _op_self_times(prof)
    ev = {k: v for k, v in times.items() if k.startswith("aten::")}
    total = sum(t for _, t in ev.values()) / 1000
    mm = sum(t for k, (_, t) in ev.items() if k in MATMUL_OPS) / 1000
    calls = sum(c for c, _ in ev.values())
    ops = sorted(ev.items(), key=lambda kv: -kv[1][1])[:top]
    return {"batch": batch, "use_cache": use_cache, "wall_ms": wall, "total_ms": total,
            "outside_ms": max(wall - total, 0.0), "matmul_ms": mm,
            "matmul_share": mm / total if total else float("nan"), "matmul_wall_share": mm / wall,
            "op_calls": calls, "op_calls_per_step": calls / model.n_img,
            "top_calls_per_step": None if top_calls is None else top_calls / model.n_img,
            "us_per_op_call": 1000 * total / calls,
            "ops": [{"name": k, "calls": c, "self_ms": t / 1000, "share": t / 1000 / total} for k, (c, t) in ops]}


def kv_cache_memory(model, batch: int = 1, kv_heads=(None, 2, 1)) -> dict:
    """The KV cache's memory for one full sequence of ``model`` (a TokenGPT): measured on the
    buffers a real prefill allocates, against ``transformer.kv_cache_bytes``, plus the formula for
    fewer key/value heads (grouped-query, multi-query attention; ``None`` = all heads).

    → {tokens, layers, dim, heads, measured_bytes, formula_bytes, per_sample_bytes,
       variants: [{kv_heads, bytes_per_sample, saving}]}."""
    from genlib.transformer import KVCache, kv_cache_bytes

    blk = model.blocks[0].attn
    layers, heads, dim = len(model.blocks), blk.heads, blk.proj.in_features
    cap = model.n_cond + model.n_img - 1          # positions ever fed: the last token is never fed
    dev, dt = model.head.weight.device, model.head.weight.dtype
    caches = [KVCache(cap) for _ in model.blocks]
    with torch.inference_mode():
        model._run(model._embed(model.null_cond(batch, dev), None), True, caches)
    measured = sum(c.nbytes for c in caches)
    nb = torch.tensor([], dtype=dt).element_size()
    formula = kv_cache_bytes(layers, cap, dim, heads, bytes_per_number=nb, batch=batch)
    variants = []
    for kh in kv_heads:
        b = kv_cache_bytes(layers, cap, dim, heads, kh, bytes_per_number=nb)
        variants.append({"kv_heads": heads if kh is None else kh, "bytes_per_sample": b,
                         "saving": formula / batch / b})
    return {"tokens": cap, "layers": layers, "dim": dim, "heads": heads, "batch": batch,
            "measured_bytes": measured, "formula_bytes": formula, "per_sample_bytes": measured / batch,
            "variants": variants}


def int8_weight_only(model):
    """A copy of ``model`` whose ``nn.Linear`` weights are rounded to int8, one scale per output row
    (symmetric: scale = max|w| / 127, w ≈ scale · round(w / scale)), and stored back as float32.

    This isolates the *accuracy* cost of int8 weights; it buys no speed here (the products still run
    in float32). Weight-only int8 pays on memory-bandwidth-bound decoding (large models on GPUs, where
    reading the weights dominates each step) with kernels that dequantise on the fly."""
    from torch import nn

    q = copy.deepcopy(model)
    with torch.no_grad():
        for mod in q.modules():
            if isinstance(mod, nn.Linear):
                w = mod.weight
                scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
                mod.weight.copy_((w / scale).round().clamp(-127, 127) * scale)
    return q


def dynamic_int8(model):
    """(model with int8 ``nn.Linear`` layers via ``torch.ao.quantization.quantize_dynamic``, None) — int8
    weights, activations quantised on the fly per call, int8 matrix products (fbgemm/onednn on x86) —
    or (None, reason) where unavailable. CPU only; PyTorch marks this API deprecated in favour of the
    separate torchao package, so it may disappear in a later release."""
    import warnings

    from torch import nn
    try:
        from torch.ao.quantization import quantize_dynamic
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return quantize_dynamic(copy.deepcopy(model).cpu(), {nn.Linear}, dtype=torch.qint8), None
    except Exception as e:  # noqa: BLE001 — any failure means "not available here"
        return None, f"{type(e).__name__}: {e}"


def _linear_weight_bytes(model, int8: bool) -> int:
    from torch import nn

    total = 0
    for mod in model.modules():
        if isinstance(mod, nn.Linear):
            rows, cols = mod.weight.shape
            total += rows * cols * (1 if int8 else 4) + (rows * 4 if int8 else 0)
    return total


def _interval_dict(iv) -> dict:
    return {"estimate": iv.estimate, "low": iv.low, "high": iv.high, "n": iv.n, "level": iv.level}


def quantization_rows(models: dict, batch: int = 16, n: int = 300, repeats: int = 3, device="cpu",
                      clock: str = "wall") -> dict:
    """int8 on the shipped 64-token TokenGPT: float32, int8 weights only (``int8_weight_only``) and
    dynamic int8 (``dynamic_int8``, CPU only).

    Quality: n held-out captions (``shapes(n, seed=1)``) decoded from the same uniforms by each model;
    share of images whose 64 tokens are identical to float32's, and "all three attributes right" per
    image with a paired interval of (variant − float32) over the images. Speed: cached decoding at
    ``batch``, every variant timed in alternation. Linear-weight bytes (int8: one byte per weight plus
    a float32 scale per row).
    → {"batch", "n", "rows": [{name, accuracy, identical_tokens, diff ({estimate, low, high, n, level}: the
       paired 95 % interval, None for float32), weight_bytes,
       timing, speedup}], "skipped": {name: reason}}"""
    from genlib import stats, t2i
    from genlib.data import shapes
    from genlib.features import classify_shapes

    if torch.device(device).type != "cpu":
        raise ValueError("quantization_rows measures CPU int8 kernels; run it with device='cpu'")
    gpt, vq = models["gpt"], models["vq"]
    variants = {"float32": (gpt, False), "int8 weights only": (int8_weight_only(gpt), True)}
    dyn, why = dynamic_int8(gpt)
    skipped = {}
    if dyn is None:
        skipped["dynamic int8"] = why
    else:
        variants["dynamic int8"] = (dyn, True)
    d = shapes(n, seed=1)
    cond = t2i.caption_tokens(d.captions)
    u = ar_uniforms(gpt, n, 0)
    toks, right = {}, {}
    with torch.inference_mode():
        for name, (m, _) in variants.items():
            toks[name] = m.generate(cond, use_cache=True, uniforms=u)
            pred = classify_shapes(vq.decode(toks[name].view(-1, 8, 8)).clamp(-1, 1))
            right[name] = ((pred["shape"] == d.shape) & (pred["color"] == d.color)
                           & (pred["size"] == d.size)).double().numpy()
    cb = captions_cond(batch)
    ub = ar_uniforms(gpt, batch, 0)
    t = time_interleaved({name: (lambda m=m: m.generate(cb, use_cache=True, uniforms=ub))
                          for name, (m, _) in variants.items()}, repeats=repeats, warmup=1, clock=clock)
    rows = []
    for name, (m, int8) in variants.items():
        rows.append({"name": name, "accuracy": float(right[name].mean()),
                     "identical_tokens": float((toks[name] == toks["float32"]).all(1).double().mean()),
                     "diff": None if name == "float32" else _interval_dict(stats.paired_bootstrap(right[name],
                                                                                                  right["float32"])),
                     "weight_bytes": _linear_weight_bytes(gpt, int8), "timing": t[name],
                     "speedup": ratio_summary(t["float32"], t[name])})
    return {"batch": batch, "n": n, "rows": rows, "skipped": skipped}


def decoding_rows(models: dict, batches=(1, 16, 64, 256), maskgit_steps=(4, 8, 16), repeats: int = 3,
                  device="cpu", no_cache_max_batch: int = 256, progress: bool = True,
                  clock: str = "wall") -> list[dict]:
    """64 tokens per image: AR without cache, AR with cache, MaskGIT at each step count, at each batch.

    Each row: method, batch, sequential (network calls in sequence), timing (``time_fn``),
    ms_per_image. The uncached AR model is skipped above ``no_cache_max_batch``."""
    gpt, mg = models["gpt"], models["maskgit"]
    jobs = []
    for b in batches:
        u = ar_uniforms(gpt, b, 0, device)
        if b <= no_cache_max_batch:
            jobs.append(("AR, no cache", b, 64, lambda c, u=u: ar_generate(gpt, c, False, uniforms=u)))
        jobs.append(("AR, KV cache", b, 64, lambda c, u=u: ar_generate(gpt, c, True, uniforms=u)))
        for s in maskgit_steps:
            jobs.append((f"MaskGIT {s} steps", b, s, lambda c, s=s: mg.generate(
                c, steps=s, generator=torch.Generator().manual_seed(0))))
    out = []
    it = _progress(jobs, desc="decoding") if progress else jobs
    for method, b, seq, fn in it:
        cond = captions_cond(b, device=device)
        heavy = b >= 64 and method == "AR, no cache"
        t = time_fn(lambda: fn(cond), repeats=max(2, repeats - 2) if heavy else repeats + (2 if b == 1 else 0),
                    warmup=0 if heavy else 1, device=device, clock=clock)
        out.append({"method": method, "batch": b, "sequential": seq, "timing": t,
                    "ms_per_image": t["median_ms"] / b})
    return out


def crossover(rows: list[dict], fast: str = "AR, KV cache", other: str = "MaskGIT 8 steps",
              margin: float = 0.10):
    """Where ``fast`` starts to take less time than ``other``, stated only where the timings resolve it.

    Per measured batch: the ratio other/fast of the medians, and a conservative range from the
    quartiles (``ratio_summary``). ``first_batch_faster`` is the smallest batch at which the ratio
    exceeds 1 + ``margin`` *and* the quartile range lies above 1 (None if no measured batch does);
    ``unresolved`` lists batches whose ratio is within the margin or whose ranges overlap 1;
    ``text`` says it in words, including the case where no measured batch reaches a crossover."""
    ratio, ranges = {}, {}
    for b in sorted({r["batch"] for r in rows}):
        a = [r for r in rows if r["batch"] == b and r["method"] == fast]
        o = [r for r in rows if r["batch"] == b and r["method"] == other]
        if a and o:
            rs = ratio_summary(o[0]["timing"], a[0]["timing"])
            ratio[b], ranges[b] = rs["ratio"], [rs["low"], rs["high"]]
    faster = [b for b in ratio if ratio[b] > 1 + margin and ranges[b][0] > 1]
    slower = [b for b in ratio if ratio[b] < 1 / (1 + margin) and ranges[b][1] < 1]
    unresolved = [b for b in ratio if b not in faster and b not in slower]
    first = faster[0] if faster else None
    if not ratio:
        text = "not measured"
    elif first is not None:
        before = [b for b in ratio if b < first]
        text = (f"{fast} is faster from batch {first} on (ratio {ratio[first]:.2f}, beyond a {margin:.0%} margin)"
                + (f"; below that it is slower or within noise (batches {before})" if before else ""))
    else:
        text = (f"no crossover resolved at the measured batches (up to {max(ratio)}): {other} is faster at "
                f"{slower or 'none'}, within noise at {unresolved or 'none'}")
    return {"fast": fast, "other": other, "first_batch_faster": first, "ratio_other_over_fast": ratio,
            "ratio_range": ranges, "margin": margin, "unresolved": unresolved, "text": text}


def token_quality(models: dict, n: int = 300, maskgit_steps=(4, 8, 16), device="cpu") -> dict:
    """Attribute accuracy (shape, colour, size, all three) of n images per 64-token row, captions of
    ``shapes(n, seed=1)``, scored by the shipped shapes classifier as chapter 08 does. The cached and
    uncached AR models draw identical tokens, so they share one score."""
    from genlib import t2i
    from genlib.data import shapes

    d = shapes(n, seed=1)
    cond = t2i.caption_tokens(d.captions).to(device)
    out = {}
    with torch.inference_mode():
        tok = ar_generate(models["gpt"], cond, True)
        out["AR (cache or not)"] = t2i.attribute_accuracy(models["vq"].decode(tok.view(-1, 8, 8)).cpu(),
                                                          d.shape, d.color, d.size)
        for s in maskgit_steps:
            tok = models["maskgit"].generate(cond, steps=s, generator=torch.Generator().manual_seed(0))
            out[f"MaskGIT {s} steps"] = t2i.attribute_accuracy(
                models["vq"].decode(tok.view(-1, 8, 8)).cpu(), d.shape, d.color, d.size)
    return out


# ============================================================================ engineering levers
def lever_rows(model, device="cpu", batch: int = 256, repeats: int = 7, compile: bool = True,
               batches=(1, 4, 16, 64, 256, 1024), progress: bool = True, clock: str = "wall") -> dict:
    """The engineering levers, measured on one network evaluation of ``model(x, t, y)`` (chapter
    07's TinyUNet) on (batch, 1, 8, 8) inputs:

    * ``batching``: ms per call and per image at each batch size;
    * ``modes``: torch.inference_mode vs no_grad vs autograd on (a copy whose parameters require
      grad, so that a graph is really recorded);
    * ``threads``: 1 vs 2 intra-op threads (CPU only; always wall clock, so it is sensitive to other
      programs on the machine: a second thread that has to wait for a busy core can make it slower);
    * ``bf16``: autocast time vs float32, the largest relative output difference, and precision facts;
    * ``channels_last``: the same model and input in channels-last memory format;
    * ``guidance``: classifier-free guidance as two calls vs one batched call of 2N rows, at batch 1
      and ``batch``;
    * ``compile``: torch.compile's first call (compile time) and steady-state time vs eager (timed
      before compiling), or the reason it was skipped. Measured last, see below.
    """
    from genlib.diffusion import guided

    dev = torch.device(device)
    if clock == "process" and dev.type != "cpu":
        raise ValueError("clock='process' only measures CPU work")
    g = torch.Generator().manual_seed(0)

    def inputs(b):
        x = torch.randn(b, 1, 8, 8, generator=g).to(dev)
        return x, torch.rand(b, generator=g).to(dev), (torch.arange(b) % 10).to(dev)

    x, t, y = inputs(batch)
    out: dict = {"model": type(model).__name__, "params": sum(p.numel() for p in model.parameters()),
                 "batch": batch, "clock": clock}
    steps = ["batching", "modes", "threads", "bf16", "channels_last", "guidance", "compile"]
    bar = _progress(total=len(steps), desc="levers") if progress else None

    def tick():
        if bar is not None:
            bar.update(1)

    rows = []
    for b in batches:
        xb, tb, yb = inputs(b)
        tm = time_fn(lambda: model(xb, tb, yb), repeats=repeats, warmup=2, device=dev, clock=clock)
        rows.append({"batch": b, "timing": tm, "ms_per_image": tm["median_ms"] / b})
    out["batching"] = rows
    tick()

    grad_model = copy.deepcopy(model)
    for p in grad_model.parameters():
        p.requires_grad_(True)
    out["modes"] = {"inference_mode": time_fn(lambda: model(x, t, y), repeats, 2, dev, "inference", clock),
                    "no_grad": time_fn(lambda: model(x, t, y), repeats, 2, dev, "no_grad", clock),
                    "grad (graph recorded)": time_fn(lambda: grad_model(x, t, y), repeats, 2, dev, "grad", clock)}
    tick()

    if dev.type == "cpu":
        before = torch.get_num_threads()
        res = {}
        try:
            for n_thr in sorted({1, min(2, os.cpu_count() or 1)}):
                torch.set_num_threads(n_thr)
                res[n_thr] = time_fn(lambda: model(x, t, y), repeats, 2, dev, clock="wall")
        finally:
            torch.set_num_threads(before)
        out["threads"] = res
    else:
        out["threads"] = "not measured on an accelerator"
    tick()

    if dev.type == "cuda":
        # disclosed, not changed: on Ampere and later cuDNN convolutions may use TF32 in "float32"
        out["tf32"] = {"cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
                       "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32)}
    if dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise_bf16 = "this GPU has no bf16 support (autocast would silently run float32)"
    else:
        raise_bf16 = None
    ref = time_fn(lambda: model(x, t, y), repeats, 2, dev, clock=clock)
    if raise_bf16:
        out["bf16"] = {"skipped": raise_bf16, "float32": ref}
    else:
        ac = lambda: torch.autocast(dev.type, dtype=torch.bfloat16)  # noqa: E731
        with ac():
            # one warm-up and one timed call first: where bf16 runs > 5× slower than float32 (CPUs without
            # bf16 instructions) more runs cannot change the direction, and each costs seconds
            tb16 = time_fn(lambda: model(x, t, y), 1, 1, dev, clock=clock)
            if tb16["median_ms"] <= 5 * ref["median_ms"]:
                tb16 = time_fn(lambda: model(x, t, y), repeats, 1, dev, clock=clock)
        with torch.inference_mode():
            y32 = model(x, t, y).float()
            with ac():
                y16 = model(x, t, y)
                lin_dtype = torch.nn.functional.linear(x.flatten(1), torch.ones(3, 64, device=dev)).dtype
        eps = torch.finfo(torch.bfloat16).eps
        one_plus = (torch.tensor(1.0) + 2 ** -9).to(torch.bfloat16).item()
        out["bf16"] = {"float32": ref, "bf16_autocast": tb16, "speedup": ref["median_ms"] / tb16["median_ms"],
                       "output_dtype": str(y16.dtype), "linear_dtype_under_autocast": str(lin_dtype),
                       "max_rel_diff": float((y16.float() - y32).abs().max() / y32.abs().max()),
                       "bf16_eps": eps, "one_plus_2^-9_in_bf16": one_plus}
    tick()

    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    out["channels_last"] = {"contiguous": time_fn(lambda: model(x, t, y), repeats, 2, dev, clock=clock),
                            "channels_last": time_fn(lambda: cl(xc, t, y), repeats, 2, dev, clock=clock)}
    out["channels_last"]["speedup"] = (out["channels_last"]["contiguous"]["median_ms"]
                                       / out["channels_last"]["channels_last"]["median_ms"])
    with torch.inference_mode():
        out["channels_last"]["max_abs_diff"] = float((cl(xc, t, y) - model(x, t, y)).abs().max())
    tick()

    gres = {}
    for b in (1, batch):
        xb, tb, yb = inputs(b)
        null = torch.full_like(yb, model.null_class)

        def two_calls():
            return guided(model(xb, tb, yb), model(xb, tb, null), 3.0)

        def one_call():
            c, u = model(torch.cat([xb, xb]), torch.cat([tb, tb]), torch.cat([yb, null])).chunk(2)
            return guided(c, u, 3.0)

        with torch.inference_mode():
            diff = float((two_calls() - one_call()).abs().max())
        t2, t1 = time_fn(two_calls, repeats, 2, dev, clock=clock), time_fn(one_call, repeats, 2, dev, clock=clock)
        gres[b] = {"two_calls": t2, "one_batched_call": t1, "speedup": t2["median_ms"] / t1["median_ms"],
                   "max_abs_diff": diff}
    out["guidance"] = gres
    tick()

    # torch.compile goes last: on CPU its generated kernels bring their own OpenMP threads, which
    # then compete with eager PyTorch's in this process (eager calls measured 10× slower after it)
    if compile:
        eager_before = time_fn(lambda: model(x, t, y), repeats, 2, dev, clock=clock)
        try:
            cm = torch.compile(copy.deepcopy(model))
            with torch.inference_mode():
                t0 = time.perf_counter()
                cm(x, t, y)
                _sync(dev)
                first = 1000 * (time.perf_counter() - t0)
                same = float((cm(x, t, y) - model(x, t, y)).abs().max())
            out["compile"] = {"compile_and_first_call_ms": first, "eager": eager_before,
                              "steady": time_fn(lambda: cm(x, t, y), repeats, 2, dev, clock=clock),
                              "max_abs_diff_vs_eager": same}
            out["compile"]["speedup"] = out["compile"]["eager"]["median_ms"] / out["compile"]["steady"]["median_ms"]
            saved = out["compile"]["eager"]["median_ms"] - out["compile"]["steady"]["median_ms"]
            # calls after which the compile time has paid for itself (None: it never does)
            out["compile"]["break_even_calls"] = first / saved if saved > 0 else None
        except Exception as e:  # noqa: BLE001 - a missing compiler must not stop the bench
            out["compile"] = {"skipped": f"torch.compile failed here: {type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    else:
        out["compile"] = {"skipped": "not requested (--no-compile)"}
    tick()

    if bar is not None:
        bar.close()
    return out


# ============================================================================ published claims
PUBLISHED = [
    {"lever": "DDIM", "paper": "Song, Meng & Ermon, Denoising Diffusion Implicit Models (ICLR 2021)",
     "claim": "10× to 50× faster sampling than DDPM (wall clock) at comparable quality",
     "ours_key": "ddim"},
    {"lever": "Rectified flow / reflow",
     "paper": "Liu, Gong & Liu, Flow Straight and Fast (ICLR 2023)",
     "claim": "reflow straightens trajectories so that one Euler step gives reasonable samples (exact figures: see paper)",
     "ours_key": "reflow"},
    {"lever": "Progressive / consistency distillation",
     "paper": "Salimans & Ho, Progressive Distillation (ICLR 2022); Song et al., Consistency Models (ICML 2023)",
     "claim": "CIFAR-10 (unconditional): progressive distillation FID 9.12 / 4.51 / 3.00 at 1 / 2 / 4 steps "
              "(Salimans & Ho); consistency distillation 3.55 at 1 step (Song et al., LPIPS loss)",
     "ours_key": "distill"},
    {"lever": "MaskGIT parallel decoding", "paper": "Chang et al., MaskGIT (CVPR 2022)",
     "claim": "8 to 16 parallel steps instead of 256 sequential ones for a 16×16 token grid (they report up to 64× faster decoding; see paper)",
     "ours_key": "maskgit"},
    {"lever": "KV cache", "paper": "standard in transformer decoding; cost analysis in Pope et al., Efficiently Scaling Transformer Inference (MLSys 2023)",
     "claim": "removes recomputation of the prefix: attention work O(T²d) instead of O(T³d), projections O(Td²) instead of O(T²d²)",
     "ours_key": "kv"},
    {"lever": "Latent diffusion", "paper": "Rombach et al., High-Resolution Image Synthesis with Latent Diffusion Models (CVPR 2022)",
     "claim": "downsampling factors f = 4 to 16 strike a good balance between efficiency and fidelity (see paper); f = 8 maps 256² pixels to 32² latent positions, 64× fewer",
     "ours_key": "latent"},
    {"lever": "Mixed precision", "paper": "Micikevicius et al., Mixed Precision Training (ICLR 2018)",
     "claim": "fp16 compute with fp32 master weights and loss scaling matches fp32 accuracy with about half the memory; the speed-up comes from tensor cores (see paper)",
     "ours_key": "bf16"},
]


def published_rows(result: dict) -> list[dict]:
    """``PUBLISHED`` with our figure (or the reason the laptop cannot show it) from a bench result."""
    d = {r["name"]: r for r in result.get("digits", {}).get("rows", [])}
    ours = {}
    ddpm = next((r for r in d.values() if r["name"].startswith("DDPM")), None)
    ddims = [r for r in d.values() if r["name"].startswith("DDIM")]
    if ddpm and ddims and ddpm.get("kid_seeds"):
        # matched quality: not "worse" (``matched``: every seed beyond 2 × the larger std) than DDPM, nor than
        # the DDIM row with the most steps — DDPM's own KID is noisy (it draws fresh noise every step), so
        # "not worse than DDPM" alone would let a row through that is resolved worse than DDIM's plateau
        top = max(ddims, key=lambda r: r["nfe"])
        ok = [r for r in ddims if matched(r, ddpm)[0] != "worse" and matched(r, top)[0] != "worse"]
        best = min(ok, key=lambda r: r["nfe"]) if ok else None
        ours["ddim"] = (f"DDIM {best['nfe']} steps: {ddpm['nfe'] / best['nfe']:.0f}× fewer NFE, "
                        f"{ddpm['ms_per_image'] / best['ms_per_image']:.0f}× less time, KID×10³ "
                        f"{best['kid']:.2f} ± {best['kid_std']:.2f} vs DDPM's {ddpm['kid']:.2f} ± {ddpm['kid_std']:.2f} "
                        f"({matched(best, ddpm)[0]} at n = {best['n']} per seed, where KID separates only gross "
                        f"gaps: 'comparable quality' is not contradicted here, but not shown either; the fewest "
                        f"DDIM steps not worse, seed by seed, than DDPM or than DDIM {top['nfe']})"
                        ) if best else "no DDIM row matches DDPM's KID within the noise"
    f1, r1 = d.get("flow Euler 1"), d.get("reflow Euler 1")
    if f1 and r1:
        ours["reflow"] = (f"1 Euler step: KID×10³ {f1['kid']:.1f} ± {f1.get('kid_std') or 0:.1f} before reflow, "
                          f"{r1['kid']:.1f} ± {r1.get('kid_std') or 0:.1f} after (FID {f1['fid']:.2f} → {r1['fid']:.2f})")
    f32 = d.get("flow Euler 32")
    pd = {k: d.get(f"PD {k}") for k in (1, 2, 4)}
    cd1 = d.get("CD 1")
    if f32 and pd[1] and cd1:
        ours["distill"] = ("digits-FID (KID×10³) of students distilled from the flow: PD "
                           + " / ".join(f"{pd[k]['fid']:.2f} ({pd[k]['kid']:.1f})" for k in (1, 2, 4) if pd[k])
                           + f" at {' / '.join(str(k) for k in (1, 2, 4) if pd[k])} steps, CD {cd1['fid']:.2f} "
                           f"({cd1['kid']:.1f}) at 1; teacher at 32 steps {f32['fid']:.2f} ({f32['kid']:.1f}); "
                           f"PD 1 {f32['ms_per_image'] / pd[1]['ms_per_image']:.0f}× faster than the teacher. Paired over "
                           f"the seeds (KID×10³): " + "; ".join(
                               f"{x} vs {y} {paired(d[x], d[y])[0]}" for x, y in (
                                   ("PD 1", "reflow Euler 1"), ("CD 1", "reflow Euler 1"), ("PD 1", "flow Euler 32"),
                                   ("PD 4", "flow Euler 32")) if x in d and y in d))
    elif r1 and f32:
        ours["distill"] = (f"no distilled student in this run; reflow 1 NFE vs flow 32 NFE: "
                           f"{f32['ms_per_image'] / r1['ms_per_image']:.0f}× faster, KID×10³ {r1['kid']:.1f} vs "
                           f"{f32['kid']:.1f} (FID {r1['fid']:.2f} vs {f32['fid']:.2f}): faster, not as good")
    tok = result.get("tokens", {})
    b1 = {r["method"]: r for r in tok.get("decoding", []) if r["batch"] == 1}
    if b1.get("AR, KV cache") and b1.get("MaskGIT 8 steps"):
        q = tok.get("quality", {})
        qtxt = (f", at lower quality (all three attributes {100 * q['MaskGIT 8 steps']['all']:.0f}% vs "
                f"{100 * q['AR (cache or not)']['all']:.0f}%)") if "MaskGIT 8 steps" in q and "AR (cache or not)" in q else ""
        ours["maskgit"] = (f"64 tokens, batch 1: 8 steps vs 64 sequential; MaskGIT 8 "
                           f"{b1['AR, KV cache']['timing']['median_ms'] / b1['MaskGIT 8 steps']['timing']['median_ms']:.1f}× "
                           f"faster than cached AR{qtxt}; larger batches: {tok.get('crossover', {}).get('text', 'not measured')}")
    kv = {r["tokens"]: r for r in tok.get("kv_cache", [])}
    if kv:
        ours["kv"] = ", ".join(f"{L} tokens: {r['speedup']:.1f}×" for L, r in sorted(kv.items())) + \
            f" at batch {next(iter(kv.values()))['batch']}, tokens identical in every run; far below the work " \
            "ratio (the projections' (T+1)/2 and attention's ≈ 2T/3): a 3-layer, d = 96 model's cached steps are " \
            "dominated by per-call overhead, not arithmetic"
        pf = tok.get("profile")
        if pf:
            a, b = pf["no_cache"], pf["cache"]
            ours["kv"] += (f" (profiled at 64 tokens: matmul time only {a['matmul_ms'] / b['matmul_ms']:.0f}× less, and "
                           f"{100 * (1 - b['matmul_wall_share']):.0f}% of the cached decode outside the matmuls)")
    ours["latent"] = ("not shown on 8×8 digits: no autoencoder is worth it at 64 pixels; chapter 09's "
                      "latent-vs-pixel section measures it on shapes")
    bf = result.get("levers", {}).get("bf16")
    if bf and "skipped" in bf:
        ours["bf16"] = f"not measured: {bf['skipped']}"
    elif bf:
        ours["bf16"] = (f"inference only, on a CPU: bf16 autocast ran at {bf['speedup']:.2f}× the float32 speed "
                        f"(relative output error {bf['max_rel_diff']:.1e}); whether a CPU gains depends on its bf16 "
                        "instructions; the paper's speed-ups are about GPU tensor cores, and training is not measured here")
    return [{**p, "ours": ours.get(p["ours_key"], "not measured in this run")} for p in PUBLISHED]


# ============================================================================ the bench
def run_speed(quick: bool = False, device="cpu", command: str = "genlib bench speed", compile: bool = True,
              progress: bool = True, threads: int | None = None, clock: str | None = None) -> dict:
    """Every measurement of ``genlib bench speed``: digits rows, token decoding, levers, published
    claims. ``quick``: fewer rows, fewer samples and repeats (a few minutes on two cores).

    On a CPU the default is one intra-op thread and this process's CPU time (``clock="process"``):
    on a shared machine, wall time with two threads measured other programs as much as ours (a
    contended run showed 2 threads 14× slower than 1, and no-cache faster than cached decoding). A user's
    PyTorch uses every core, and results that depend on parallelism (the MaskGIT/AR crossover, the
    batching gain) move with the thread count: ``threads=k > 1`` measures wall time with k threads.
    On CUDA: wall time, synchronised. The threads lever always uses the wall clock.
    """
    dev = torch.device(device)
    one_thread = threads in (None, 1)
    clock = clock or ("process" if dev.type == "cpu" and one_thread else "wall")
    if clock == "process" and not one_thread:
        raise ValueError("clock='process' sums the CPU time of every thread: use it with one thread only")
    before = torch.get_num_threads()
    if threads or dev.type == "cpu":
        torch.set_num_threads(threads or 1)
    try:
        return _run_speed(quick, dev, command, compile, progress, clock)
    finally:
        torch.set_num_threads(before)


def _run_speed(quick, dev, command, compile, progress, clock) -> dict:
    t0 = time.perf_counter()
    res: dict = {"schema": SCHEMA, "command": command, "quick": quick, "device": str(dev),
                 "machine": machine_card(dev), "clock": clock}
    # --- one pass vs iterative on digits
    n, batch = (200, 100) if quick else (500, 250)
    seeds = (0, 1, 2)
    models = load_digits_models(dev, vae=True)
    rows = digits_rows(models, QUICK_DIGITS_ROWS if quick else DIGITS_ROWS, n=n, batch=batch, device=dev,
                       progress=progress, clock=clock, seeds=seeds)
    ref = table_reference(rows)
    res["digits"] = {"n": n, "batch": batch, "seeds": len(seeds), "real_fid": ref["fid"],
                     "real_kid": ref["kid"], "real_kid_std": ref["kid_std"], "real_matched": ref["matched"],
                     "noise_kid": digits_noise(rows, "kid"), "noise_fid": digits_noise(rows, "fid"), "rows": rows,
                     "vae": "chapter 05's MLPVAE (class-conditional, 16-d latent, Bernoulli likelihood on grey "
                            "digits), the shipped digits_vae: 2,000 steps, seed 0; samples are the decoder's mean"}
    # per-evaluation cost of the TinyUNet at this batch, from the flow rows: the cost model's check
    fl = [r for r in rows if r["family"] == "flow"]
    if len(fl) >= 2:
        a, b = fl[0], fl[-1]
        per_eval = (b["ms_per_image"] - a["ms_per_image"]) / (b["nfe"] - a["nfe"])
        res["digits"]["cost_model"] = {"ms_per_eval_per_image": per_eval,
                                       "fixed_ms_per_image": a["ms_per_image"] - per_eval * a["nfe"],
                                       "fitted_on": [a["name"], b["name"]],
                                       "predicted_vs_measured": {r["name"]: [cost_model(r["nfe"], per_eval),
                                                                             r["ms_per_image"]] for r in rows
                                                                 if r["family"] in ("flow", "reflow", "diffusion")}}
    # --- tokens
    tm = token_models(dev)
    res["tokens"] = {
        "kv_cache": kv_cache_rows(tm, (16, 64, 256), batch=16, repeats=3 if quick else 5, device=dev,
                                  progress=progress, clock=clock),
        "decoding": decoding_rows(tm, (1, 16, 256) if quick else (1, 16, 64, 256), repeats=3 if quick else 5,
                                  device=dev, no_cache_max_batch=16 if quick else 256, progress=progress,
                                  clock=clock),
        "quality": token_quality(tm, n=100 if quick else 300, device=dev),
        "note": "16- and 256-token GPTs have the 64-token model's architecture with random weights "
                "(timing only); quality is measured for the shipped 64-token models",
    }
    res["tokens"]["cache_impl"] = cache_impl_rows(tm, (64, 256), batch=16, repeats=3 if quick else 5, device=dev,
                                                  progress=progress, clock=clock)
    res["tokens"]["step_sweep"] = decode_step_sweep(tm["gpt"], (1, 16, 256) if quick else (1, 4, 16, 64, 256),
                                                    repeats=3, device=dev, progress=progress, clock=clock)
    if dev.type == "cpu":     # CPU activity only: on a GPU the operators' CPU time would be launch time
        res["tokens"]["profile"] = {k: profile_decoding(tm["gpt"], 16, use_cache=k == "cache", device=dev)
                                    for k in ("no_cache", "cache")}
    res["tokens"]["cache_memory"] = kv_cache_memory(tm["gpt"])
    if dev.type == "cpu":     # CPU int8 kernels; GPU int8 needs other kernels (and is not measured here)
        res["tokens"]["quantization"] = quantization_rows(tm, batch=16, n=100 if quick else 300,
                                                          repeats=3 if quick else 5, clock=clock)
    res["tokens"]["crossover"] = crossover(res["tokens"]["decoding"])
    res["tokens"]["crossover_maskgit4"] = crossover(res["tokens"]["decoding"], other="MaskGIT 4 steps")
    # --- levers
    res["levers"] = lever_rows(models["flow"], dev, batch=256, repeats=5 if quick else 9, compile=compile,
                               batches=(1, 16, 256) if quick else (1, 4, 16, 64, 256, 1024), progress=progress,
                               clock=clock)
    res["published"] = published_rows(res)
    res["wall_seconds"] = time.perf_counter() - t0
    validate_result(res)
    return res


RESULT_KEYS = {
    "": ("schema", "command", "quick", "device", "machine", "clock", "digits", "tokens", "levers", "published",
         "wall_seconds"),
    "digits": ("n", "batch", "seeds", "real_fid", "real_kid", "noise_kid", "rows", "vae"),
    "digits.row": ("name", "family", "nfe", "n", "seeds", "batch", "ms_per_image", "ms_per_image_q1",
                   "ms_per_image_q3", "chunk_ms", "kid", "kid_std", "kid_seeds", "fid", "fid_std", "fid_seeds",
                   "real_fid", "real_kid", "accuracy"),
    "tokens": ("kv_cache", "decoding", "quality", "crossover", "note"),
    "tokens.kv": ("tokens", "batch", "trained", "identical", "no_cache", "cache", "speedup"),
    "tokens.decoding": ("method", "batch", "sequential", "timing", "ms_per_image"),
    "timing": ("median_ms", "q1_ms", "q3_ms", "min_ms", "max_ms", "runs_ms", "repeats"),
    "levers": ("batching", "modes", "threads", "bf16", "compile", "channels_last", "guidance"),
}


def validate_result(res: dict) -> None:
    """Raise AssertionError unless ``res`` has the keys the current code writes (``RESULT_KEYS``)."""
    def has(d, key, where):
        missing = [k for k in RESULT_KEYS[key] if k not in d]
        assert not missing, f"bench_speed result: {where} lacks {missing} (schema {SCHEMA})"

    assert res.get("schema") == SCHEMA, f"schema {res.get('schema')!r} is not {SCHEMA!r}"
    has(res, "", "the top level")
    has(res["digits"], "digits", "digits")
    for r in res["digits"]["rows"]:
        has(r, "digits.row", f"digits row {r.get('name')}")
    has(res["tokens"], "tokens", "tokens")
    for r in res["tokens"]["kv_cache"]:
        has(r, "tokens.kv", "a KV-cache row")
        has(r["cache"], "timing", "a KV-cache timing")
    for r in res["tokens"]["decoding"]:
        has(r, "tokens.decoding", "a decoding row")
        has(r["timing"], "timing", "a decoding timing")
    has(res["levers"], "levers", "levers")


# ============================================================================ markdown
def _ms(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:,.0f}"


def _iqr(t: dict) -> str:
    n = t.get("repeats", len(t.get("runs_ms", [])) or 5)
    if n >= 5:
        return f"{_ms(t['median_ms'])} ({_ms(t['q1_ms'])}–{_ms(t['q3_ms'])})"
    if n >= 2:
        return f"{_ms(t['median_ms'])} (range of {n} runs {_ms(t['min_ms'])}–{_ms(t['max_ms'])})"
    return f"{_ms(t['median_ms'])} (one run)"


def _decoding_loop_md(tok: dict) -> list[str]:
    """The decoding-loop rows (results from before they existed simply lack them)."""
    lines = []
    if tok.get("cache_impl"):
        lines += ["", "Cache implementation (batch 16, timed in alternation): the naive cache grows with torch.cat "
                  "and rebuilds the causal mask every step; the preallocated one writes into buffers allocated once:",
                  "", "| tokens | torch.cat cache (ms) | preallocated (ms) | speed-up (range) | tokens identical |",
                  "|---|---|---|---|---|"]
        for r in tok["cache_impl"]:
            sp = r["speedup"]
            lines.append(f"| {r['tokens']} | {_iqr(r['concat'])} | {_iqr(r['preallocated'])} | {sp['ratio']:.2f}× "
                         f"({sp['low']:.2f}–{sp['high']:.2f}{'' if sp['resolved'] else ', not resolved'}) | "
                         f"{'yes' if r['identical'] else 'NO'} |")
    sw = tok.get("step_sweep")
    if sw:
        s0 = sw[0]
        flat = [r["batch"] for r in sw if r["batch"] > s0["batch"] and r["step_ms"] < 1.5 * s0["step_ms"]]
        lines += ["", "Cached decoding step against the batch (64 tokens): "
                  + ", ".join(f"batch {r['batch']}: {r['step_ms']:.2f} ms/step, {r['us_per_token']:.1f} µs/token"
                              for r in sw)
                  + (f". Up to batch {max(flat)} the step costs less than 1.5× the batch-{s0['batch']} step: "
                     "fixed per-step cost dominates there (overhead-bound), and batching is nearly free."
                     if flat else ". The step time grows with the batch from the start: not overhead-bound here.")]
    pf = tok.get("profile")
    if pf:
        a, b = pf["no_cache"], pf["cache"]
        top = (f"; top-level operators per step {a['top_calls_per_step']:.0f} vs {b['top_calls_per_step']:.0f}"
               if a.get("top_calls_per_step") is not None else "")
        lines += ["", f"torch.profiler, one 64-token decode at batch {b['batch']} (one run; the profiler adds its own "
                  f"cost): the cache divides the matmul time by {a['matmul_ms'] / b['matmul_ms']:.1f} where the "
                  f"projections' work falls 32×, so its small products run far below the uncached ones' efficiency; "
                  f"and with the cache the matmuls are only {100 * b['matmul_wall_share']:.0f}% of the decode's wall "
                  f"time, the rest being other operators and time outside any operator (Python, module calls){top}."]
    qz = tok.get("quantization")
    if qz:
        lines += ["", f"int8 on the 64-token GPT (cached decoding at batch {qz['batch']}, timed in alternation; quality on "
                  f"{qz['n']} held-out captions from the same random numbers):", "",
                  "| variant | Linear weights | ms per batch | speed vs float32 | images with identical tokens | "
                  "all three attributes right | − float32 (paired, 95%) |", "|---|---|---|---|---|---|---|"]
        for r in qz["rows"]:
            sp = r["speedup"]
            diff = "—" if r["diff"] is None else f"{100 * r['diff']['estimate']:+.1f} [{100 * r['diff']['low']:+.1f}, {100 * r['diff']['high']:+.1f}] pts"
            lines.append(f"| {r['name']} | {r['weight_bytes'] / 1024:.0f} KiB | {_iqr(r['timing'])} | {sp['ratio']:.2f}× "
                         f"({sp['low']:.2f}–{sp['high']:.2f}) | {100 * r['identical_tokens']:.0f}% | {100 * r['accuracy']:.1f}% | {diff} |")
        for k, why in qz.get("skipped", {}).items():
            lines.append(f"| {k} | skipped: {why} | | | | | |")
        lines += ["", "Weight-only int8 simulates the rounding (its products still run in float32): it shows the accuracy "
                  "cost, not a speed. Dynamic int8 runs int8 products on the CPU; on a model this small, quantising the "
                  "activations at every call can cost more than it saves. What transfers to GPUs is the memory (4× less "
                  "weight traffic, which is what bounds large-model decoding), not these CPU timings."]
    mem = tok.get("cache_memory")
    if mem:
        lines += ["", f"KV-cache memory per sample ({mem['tokens']} positions, {mem['layers']} layers, dim {mem['dim']}, "
                  f"{mem['heads']} heads, float32): measured {mem['per_sample_bytes'] / 1024:.1f} KiB on the buffers, "
                  f"formula {mem['formula_bytes'] / mem['batch'] / 1024:.1f} KiB; "
                  + ", ".join(f"{v['kv_heads']} key/value head{'s' if v['kv_heads'] > 1 else ''}: "
                              f"{v['bytes_per_sample'] / 1024:.1f} KiB" for v in mem["variants"])
                  + " (grouped-/multi-query attention, formula only; 'measured' checks the buffers' allocation)."]
    return lines


def markdown_speed(res: dict) -> str:
    """The README section: digits rows, token decoding, levers, published claims."""
    m = res["machine"]
    lines = [f"Produced by `{res['command']}` on {m.get('cpu_model') or m['machine']} ({m['cpu_count']} cores, "
             f"{m['threads']} thread{'s' if m['threads'] != 1 else ''}, torch {m['torch']}, device {res['device']}), "
             f"{res['wall_seconds'] / 60:.1f} min. Times are medians of repeated runs in one process "
             "(interquartile range in brackets; with fewer than 5 runs, their range), "
             + (f"this process's CPU time on {m['threads']} thread{'s' if m['threads'] != 1 else ''} (steady on a "
                "shared machine; the threads lever alone is wall time)" if res.get("clock") == "process"
                else "wall-clock time")
             + "; compare rows as ratios, not as absolute times — ratios between methods moved by up to 3× "
               "between an Intel and an AMD CPU, directions did not — except bf16 autocast's, which depends on the "
               "CPU's bf16 support (slower than float32 on our AMD EPYC without AVX-512 BF16, faster on an Intel "
               "Xeon), and ratios near 1, which are ties.", ""]
    d = res["digits"]
    seeds = d.get("seeds", 1)
    lines += [f"**One pass vs iterative on 8×8 digits** ({seeds} sampling seeds × n = {d['n']} samples per row, "
              f"timed in chunks of {d['batch']}; quality with `genlib.quality` against the 297 held-out test "
              f"digits: unbiased KID×10³ and FID at this n, mean ± std over the seeds). Noise level: the typical "
              f"seed-to-seed std (median over rows) is {d.get('noise_kid', float('nan')):.2f} for KID×10³ and "
              f"{d.get('noise_fid', float('nan')):.3f} for FID; read differences below about twice a row's std as ties. "
              f"Reference level (not a floor): {d['n']} real train digits"
              f"{' with the samples’ class counts (n/10 of each digit)' if d.get('real_matched') else ''} score KID×10³ "
              f"{d.get('real_kid', float('nan')):.2f} ± {d.get('real_kid_std') or 0:.2f} and FID {d['real_fid']:.3f}.", "",
              "| sampler | NFE | ms / image | KID×10³ | FID | class accuracy |", "|---|---|---|---|---|---|"]
    for r in d["rows"]:
        acc = (f"{100 * r['accuracy']:.1f} ± {100 * (r.get('accuracy_std') or 0):.1f}%" if r["accuracy"] is not None
               else "— (unconditional)")
        lines.append(f"| {r['name']} | {r['nfe']} | {_ms(r['ms_per_image'])} "
                     f"({_ms(r['ms_per_image_q1'])}–{_ms(r['ms_per_image_q3'])}) | "
                     f"{r['kid']:.2f} ± {r.get('kid_std') or 0:.2f} | {r['fid']:.3f} ± {r.get('fid_std') or 0:.3f} | {acc} |")
    lines += ["", f"VAE: {d['vae']}."]
    if "cost_model" in d:
        c = d["cost_model"]
        lines += [f"Cost model fitted on {c['fitted_on'][0]} and {c['fitted_on'][1]}: "
                  f"{c['ms_per_eval_per_image']:.3f} ms per network evaluation per image + "
                  f"{c['fixed_ms_per_image']:.3f} ms fixed."]
    tok = res["tokens"]
    lines += ["", "**Decoding 64 image tokens** (chapter 08's shipped models; ms per batch, median and IQR):", "",
              "| method | sequential calls | " + " | ".join(f"batch {b}" for b in sorted({r['batch'] for r in tok['decoding']})) + " |",
              "|---|---|" + "---|" * len({r['batch'] for r in tok['decoding']})]
    bs = sorted({r["batch"] for r in tok["decoding"]})
    for meth in dict.fromkeys(r["method"] for r in tok["decoding"]):
        cells = []
        for b in bs:
            r = [x for x in tok["decoding"] if x["method"] == meth and x["batch"] == b]
            cells.append(_iqr(r[0]["timing"]) if r else "not run")
        seq = next(x["sequential"] for x in tok["decoding"] if x["method"] == meth)
        lines.append(f"| {meth} | {seq} | " + " | ".join(cells) + " |")
    cx = tok["crossover"]
    rng = cx.get("ratio_range", {})
    lines += ["", "MaskGIT 8 steps ÷ cached AR, time per batch (median ratio; quartile-based range): "
              + ", ".join(f"batch {b}: {r:.2f}" + (f" ({rng[b][0]:.2f}–{rng[b][1]:.2f})" if b in rng else "")
                          for b, r in cx["ratio_other_over_fast"].items())
              + ". " + cx.get("text", f"first batch faster: {cx['first_batch_faster']}")
              + (". The crossover moves with the thread count (MaskGIT's larger operations gain more from extra "
                 "threads): these are one-thread figures; chapter 09 measures it with the machine's threads"
                 if res.get("clock") == "process" else "") + "."]
    q = tok["quality"]
    cx4 = tok.get("crossover_maskgit4")
    if cx4:
        first = cx4["first_batch_faster"]
        lines += ["Against MaskGIT 4 steps: " + cx4.get("text", (f"faster from batch {first} on" if first
                                                                else "faster at no measured batch")) + "."]
    lines += ["Attribute accuracy (all three right, shipped classifier): "
              + ", ".join(f"{k} {100 * v['all']:.1f}%" for k, v in q.items())
              + ": no MaskGIT row reaches the AR model's quality, so the latency comparison is not at matched quality."]
    lines += ["", "KV cache by sequence length (batch 16; 16 and 256 tokens: same architecture, random weights):", "",
              "| tokens | no cache (ms) | KV cache (ms) | speed-up | tokens identical |", "|---|---|---|---|---|"]
    for r in tok["kv_cache"]:
        lines.append(f"| {r['tokens']}{'' if r['trained'] else ' (random weights)'} | {_iqr(r['no_cache'])} | "
                     f"{_iqr(r['cache'])} | {r['speedup']:.1f}× | {'yes' if r['identical'] else 'NO'} |")
    lines += _decoding_loop_md(tok)
    lv = res["levers"]
    lines += ["", f"**Engineering levers** on one evaluation of the TinyUNet ({lv['params']:,} parameters, "
              f"batch {lv['batch']}):", "", "| lever | result |", "|---|---|"]
    bt = lv["batching"]
    lines.append("| batching (ms / image) | " + ", ".join(f"batch {r['batch']}: {r['ms_per_image']:.4f}" for r in bt) + " |")
    md = lv["modes"]
    lines.append("| inference_mode / no_grad / grad on (ms) | " + " / ".join(_ms(v["median_ms"]) for v in md.values()) + " |")
    if isinstance(lv["threads"], dict):
        lines.append("| threads (ms) | " + ", ".join(f"{k}: {_ms(v['median_ms'])}" for k, v in lv["threads"].items()) + " |")
    bf = lv["bf16"]
    if "skipped" in bf:
        lines.append(f"| bf16 autocast vs float32 | skipped: {bf['skipped']} |")
    else:
        lines.append(f"| bf16 autocast vs float32 | {bf['speedup']:.2f}× speed (float32 {_ms(bf['float32']['median_ms'])} ms, "
                     f"bf16 {_ms(bf['bf16_autocast']['median_ms'])} ms); max relative output difference "
                     f"{bf['max_rel_diff']:.1e}; bf16 eps {bf['bf16_eps']:g} |")
    if "tf32" in lv:
        lines.append(f"| TF32 (not changed by the bench) | cuDNN convolutions allow TF32: {lv['tf32']['cudnn_allow_tf32']}; "
                     f"matmuls: {lv['tf32']['matmul_allow_tf32']} — on Ampere and later, 'float32' rows may partly run in TF32 |")
    cp = lv["compile"]
    if "skipped" in cp:
        lines.append(f"| torch.compile | skipped: {cp['skipped']} |")
    else:
        be = cp.get("break_even_calls")
        lines.append(f"| torch.compile | {cp['speedup']:.2f}× steady state ({_ms(cp['steady']['median_ms'])} vs "
                     f"{_ms(cp['eager']['median_ms'])} ms); compile + first call {cp['compile_and_first_call_ms'] / 1000:.1f} s"
                     + (f", paid back after about {be:,.0f} calls" if be else ", never paid back here") + " |")
    cl = lv["channels_last"]
    lines.append(f"| channels_last | {cl['speedup']:.2f}× ({_ms(cl['channels_last']['median_ms'])} vs "
                 f"{_ms(cl['contiguous']['median_ms'])} ms)"
                 + (f"; largest output difference {cl['max_abs_diff']:.1e}" if "max_abs_diff" in cl else "") + " |")
    gd = lv["guidance"]
    lines.append("| guidance: two calls vs one batched call | " + ", ".join(
        f"batch {b}: {v['speedup']:.2f}×" for b, v in gd.items()) + " |")
    lines += ["", "**Published claims beside ours:**", "", "| lever | paper | published claim | ours |", "|---|---|---|---|"]
    for p in res["published"]:
        lines.append(f"| {p['lever']} | {p['paper']} | {p['claim']} | {p['ours']} |")
    return "\n".join(lines) + "\n"


def save(res: dict, folder: Path, plot: bool = True) -> Path:
    """Write ``bench_speed.json``, ``.md`` and (with ``plot``) ``.png`` into ``folder``."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / "bench_speed"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(markdown_speed(res), encoding="utf-8")
    if plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ax = plot_pareto(res["digits"]["rows"])
        ax.figure.tight_layout()
        ax.figure.savefig(stem.with_suffix(".png"), dpi=110)
        plt.close(ax.figure)
    return stem
