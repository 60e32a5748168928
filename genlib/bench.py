"""``genlib bench modes``: the mode-collapse benchmark of PacGAN (Lin et al. 2018), reproduced.

Trains the vanilla GAN and the remedies of ``genlib.modecollapse`` on ``ring`` and ``grid`` (and
stacked digits with ``--stacked``) over several seeds, and prints a markdown table — mean ±
standard deviation over seeds and the [min–max] range — beside the published rows. Results go to
``results/bench_modes.{json,md}``
(``results/bench_stacked.*``); ``--update-readme`` pastes the table between the README's
``<!-- bench-modes:start -->`` / ``<!-- bench-modes:end -->`` markers. Only the full run writes
there by default: ``--quick`` and partial runs (fewer seeds, other steps, a subset of methods or
datasets) write to ``results/quick/`` (gitignored) unless ``--out`` names a folder, and refuse
``--update-readme``, so the committed 55-minute table is never replaced by accident;
``--overwrite-results`` says that you mean it.

    genlib bench modes --quick          # a few minutes: ring, GAN vs PacGAN2, one seed, short runs
    genlib bench modes --runs 5         # the full table
    genlib bench modes --stacked        # stacked digits, DCGAN vs PacDCGAN2
    genlib bench speed [--quick]        # chapter 09's speed levers (genlib.speed): results/bench_speed.*
"""
from __future__ import annotations

import json
import math
import platform
import re
import time
from dataclasses import replace
from pathlib import Path

import torch

from genlib import modecollapse as mc
from genlib import stats

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
QUICK_RESULTS = RESULTS / "quick"  # quick and partial runs land here (gitignored), never over the committed table

# The architecture and optimiser every 2-D method shares, sized so that five seeds of every method
# fit in an hour on two CPU cores: 3×128 MLPs, 2-d latent, Adam (β1 = 0.5) with its learning rate
# decayed linearly to 0, networks in coordinates scaled by the data's extent
# (modecollapse.build_models). Per dataset: the ring converges sooner; the grid's 25 modes need a
# larger batch, a larger learning rate and more steps to stay balanced. Minibatch std on the grid,
# five seeds: lr 1e-3, 12,000 steps left two seeds with a few nearly empty modes (rKL ≈ 0.3); lr 2e-3,
# 12,000 steps left one (seed 3: 76.8 % HQ, rKL 0.145); lr 2e-3, 16,000 steps left none (rKL ≤ 0.010).
# PacGAN's own setup (4×400 G with batch norm, maxout D, lr 1e-4, batch 100, 400 epochs of 100,000
# points = 400,000 steps) is far beyond a CPU hour.
BASE = mc.GANConfig(lr=1e-3, lr_decay=True, g_hidden=128, g_depth=3, d_hidden=128, d_depth=3)
PER_DATASET = {"ring": {"steps": 10000, "batch": 256},
               "grid": {"steps": 16000, "batch": 512, "lr": 2e-3}}
STEPS = {ds: v["steps"] for ds, v in PER_DATASET.items()}

REMEDIES = {  # name -> changes to BASE
    "GAN": {},
    "PacGAN2": {"pack": 2},
    "PacGAN4": {"pack": 4},
    "WGAN-GP": {"loss": "wgan-gp", "betas": (0.5, 0.9)},
    "SN": {"spectral_norm": True},
    "MB-std": {"mbstd": True},
    "Mode-seeking": {"mode_seeking": 1.0},
}

# The full run's methods; PacGAN4 (packing 4, worse than PacGAN2 here) is left out to keep the run
# under an hour on two cores: add it with --methods.
DEFAULT_METHODS = ["GAN", "PacGAN2", "WGAN-GP", "SN", "MB-std", "Mode-seeking"]

PUBLISHED_SOURCE = "PacGAN (Lin et al., NeurIPS 2018), Table 1: 10 trials, means"
PUBLISHED = {  # dataset -> [(method, modes, high-quality %, reverse KL)]
    "ring": [("GAN", 6.3, 98.2, 0.45), ("PacGAN2", 7.9, 95.6, 0.07)],
    "grid": [("GAN", 17.3, 94.8, 0.70), ("PacGAN2", 23.8, 91.3, 0.13), ("PacGAN4", 24.8, 93.6, 0.04)],
}
PUBLISHED_STACKED_SOURCE = "PacGAN (Lin et al., NeurIPS 2018), Table 2 (Stacked MNIST, 10 trials, means)"
PUBLISHED_STACKED = [("DCGAN", 78.9, 4.50), ("PacDCGAN2", 1000.0, 0.06)]

SETUP = (
    "Setup shared by every method (ours): 3×128 ReLU MLP generator with a 2-d Gaussian latent, 3×128 "
    "LeakyReLU MLP discriminator, Adam (β1 = 0.5) with lr 1e-3 (ring) or 2e-3 (grid) decayed linearly to 0, "
    "batch 256 (ring) or 512 (grid), coordinates divided by the data's extent inside the networks (ring 1, grid 4); a remedy "
    "changes only its own ingredient. PacGAN's setup is larger and much longer (4×400 generator with batch norm, maxout "
    "discriminator, lr 1e-4, 400,000 steps of batch 100).")
RKL_DEFINITION = (
    "Reverse KL, ours: p_k = share of the high-quality samples (within 3 std of their nearest mode) "
    "whose nearest mode is k; rKL = Σ_{k: p_k>0} p_k ln(K p_k) = KL(p ‖ uniform over the K modes), "
    "in nats, from 2,500 samples. PacGAN's code does not state its exact definition, so compare "
    "trends, not third decimals.")


# ----------------------------------------------------------------------------- statistics and tables
def mean_se(values) -> tuple[float, float]:
    """Mean and standard error (sample std / √n; 0 for one value)."""
    v = [float(x) for x in values]
    m = sum(v) / len(v)
    if len(v) < 2 or not math.isfinite(m):
        return m, 0.0
    var = sum((x - m) ** 2 for x in v) / (len(v) - 1)
    return m, math.sqrt(var / len(v))


def _fmt(values, scale=1.0, digits=2) -> str:
    """mean ± standard deviation over the runs (ddof = 1) and their [min–max] range: the spread from
    seed to seed, not the (√n smaller) standard error of the mean. Runs with an infinite value (rKL of
    a run without one high-quality sample) are counted apart: "0.12 ± 0.07 [0.07–0.17] (2 runs: inf)",
    or "inf" when every run is."""
    finite = [x * scale for x in values if math.isfinite(x)]
    n_inf = len(values) - len(finite)
    if not finite:
        return "inf"
    s = stats.spread(finite)
    f = f"{{:.{digits}f}}"
    text = f.format(s.mean) if s.n == 1 else \
        f"{f.format(s.mean)} ± {f.format(s.std)} [{f.format(s.min)}–{f.format(s.max)}]"
    return text + (f" ({n_inf} run{'s' if n_inf > 1 else ''}: inf)" if n_inf else "")


def summarize(runs: list[dict]) -> list[dict]:
    """Group runs by (dataset, method): mean ± s.e. of modes, high quality, reverse KL."""
    rows = {}
    for r in runs:
        rows.setdefault((r["dataset"], r["method"]), []).append(r)
    out = []
    for (ds, method), rs in rows.items():
        out.append({"dataset": ds, "method": method, "n": len(rs),
                    "modes": mean_se([r["modes"] for r in rs]),
                    "modes_all": [r["modes"] for r in rs],
                    "high_quality": mean_se([r["high_quality"] for r in rs]),
                    "reverse_kl": mean_se([r["reverse_kl"] for r in rs]),
                    "seconds": sum(r["seconds"] for r in rs) / len(rs)})
    return out


def _steps_text(steps) -> str:
    if isinstance(steps, dict):
        return ", ".join(f"{ds} {n:,}" for ds, n in steps.items())
    return f"{steps:,}"


def markdown_modes(result: dict) -> str:
    """The README table: our rows (mean ± std over seeds, [min–max]) beside PacGAN's published rows."""
    runs = result["runs"]
    lines = [f"Produced by `{result['command']}` ({result['device']}, "
             f"{result['wall_seconds'] / 60:.1f} min, steps per run: {_steps_text(result['steps'])}).", "",
             "| data | method | source | runs | modes captured | high quality (%) | reverse KL |",
             "|---|---|---|---|---|---|---|"]
    for ds in result["datasets"]:
        k = len(mc.DATASETS[ds][0])
        for method in result["methods"]:
            rs = [r for r in runs if r["dataset"] == ds and r["method"] == method]
            if not rs:
                continue
            lines.append(f"| {ds} ({k}) | {method} | genlib | {len(rs)} | "
                         f"{_fmt([r['modes'] for r in rs], digits=1)} | "
                         f"{_fmt([r['high_quality'] for r in rs], 100, 1)} | "
                         f"{_fmt([r['reverse_kl'] for r in rs], digits=3)} |")
        for method, modes, hq, rkl in PUBLISHED.get(ds, []):
            lines.append(f"| {ds} ({k}) | {method} | PacGAN T1 | 10 | {modes} | {hq} | {rkl:.2f} |")
    lines += ["", f"Published rows: {PUBLISHED_SOURCE}. Ours: mean ± standard deviation over the seeds (ddof = 1) "
              "and [min–max] over the runs, n = the runs column: the seed-to-seed spread, which is what another "
              "machine's draws vary by. Read a difference between two rows as real only when their ranges do not "
              "overlap.",
              "", SETUP, "", RKL_DEFINITION]
    return "\n".join(lines) + "\n"


def markdown_stacked(result: dict) -> str:
    runs = result["runs"]
    lines = [f"Produced by `{result['command']}` ({result['device']}, "
             f"{result['wall_seconds'] / 60:.1f} min, steps per run: {result['steps']}).", "",
             "| method | source | runs | modes (of 1,000) | KL(p ‖ uniform) |", "|---|---|---|---|---|"]
    for method in result["methods"]:
        rs = [r for r in runs if r["method"] == method]
        lines.append(f"| {method} | genlib | {len(rs)} | {_fmt([r['modes'] for r in rs], digits=1)} | "
                     f"{_fmt([r['kl'] for r in rs], digits=2)} |")
    for method, modes, kl in PUBLISHED_STACKED:
        lines.append(f"| {method} | PacGAN T2 | 10 | {modes:g} | {kl:.2f} |")
    lines += ["", f"Published rows: {PUBLISHED_STACKED_SOURCE}. Ours: three 8×8 digits (scikit-learn's) as "
              "RGB channels, each channel labelled by genlib's shipped digits classifier; modes = distinct "
              f"triples among {result['n_eval']:,} samples; KL in nats against the uniform over 1,000."]
    fewest = min((sum(r["method"] == m for r in runs) for m in result["methods"]), default=0)
    if fewest < 3:
        lines[-1] += (f" With {fewest} run(s) per method — fewer than the three seeds a comparison needs — "
                      f"and {result['steps']} steps against the paper's much longer training, this table "
                      "illustrates; it ranks nothing.")
    return "\n".join(lines) + "\n"


def update_readme(text: str, key: str, readme: Path = ROOT / "README.md") -> bool:
    """Replace what lies between ``<!-- {key}:start -->`` and ``<!-- {key}:end -->``."""
    if not readme.exists():
        return False
    src = readme.read_text(encoding="utf-8")
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    pat = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pat.search(src):
        return False
    readme.write_text(pat.sub(lambda _: f"{start}\n{text}{end}", src, count=1), encoding="utf-8")
    return True


# ----------------------------------------------------------------------------- running
def _device_name(jobs: int = 1) -> str:
    import os

    how = (f"{jobs} processes of 1 thread" if jobs > 1 else f"{torch.get_num_threads()} threads") + \
        ", the seeds of a method trained together"
    return f"CPU ({os.cpu_count()} cores, {how}, {platform.machine()})"


def _progress(total, desc):
    from genlib.train import progress
    return progress(total=total, desc=desc)


def _one_job(job) -> list[dict]:
    """Train every seed of one (dataset, method) at once (``train_2d_seeds``); one record per seed."""
    ds, method, seeds, steps, base, threads = job
    if threads:
        torch.set_num_threads(threads)
    cfg = replace(base, dataset=ds, **PER_DATASET[ds], **REMEDIES[method])
    if steps:
        cfg = replace(cfg, steps=steps)
    _, results = mc.train_2d_seeds(cfg, seeds)
    return [{"dataset": ds, "method": method, "seed": s, **r.final, "seconds": round(r.seconds, 2)}
            for s, r in zip(seeds, results)]


def run_modes(runs: int, steps: int | None, methods, datasets, command: str, out: Path = RESULTS,
              base: mc.GANConfig = BASE, jobs: int = 1) -> dict:
    """Train every (dataset, method, seed); save JSON + markdown; return the result dict.

    ``steps`` None: the per-dataset defaults of ``STEPS``. The seeds of one (dataset, method) train
    together as one seed-stacked model (``mc.train_2d_seeds``: 1.4–2.3× the throughput of one
    seed at a time on one CPU thread, measured). ``jobs`` > 1 trains that many (dataset, method) pairs at once in worker
    processes of one thread each (two one-thread processes on two cores beat one two-thread one).
    """
    t0 = time.perf_counter()
    # the slowest pairs first, so that the two workers finish together
    todo = sorted([(ds, m, list(range(runs)), steps, base, 1 if jobs > 1 else None)
                   for ds in datasets for m in methods], key=lambda j: -(j[3] or STEPS[j[0]]) * PER_DATASET[j[0]]["batch"])
    bar = _progress(len(todo) * runs, "bench modes")
    records = []

    def done(recs):
        records.extend(recs)
        r = recs[0]
        bar.set_postfix_str(f"{r['dataset']} {r['method']}: {[x['modes'] for x in recs]} modes")
        bar.update(len(recs))

    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor, as_completed
        import multiprocessing as mp

        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            for fut in as_completed([pool.submit(_one_job, job) for job in todo]):
                done(fut.result())
    else:
        for job in todo:
            done(_one_job(job))
    bar.close()
    order = {(ds, m): i for i, (ds, m) in enumerate((ds, m) for ds in datasets for m in methods)}
    records.sort(key=lambda r: (order[r["dataset"], r["method"]], r["seed"]))
    steps_used = {ds: steps or STEPS[ds] for ds in datasets}
    result = {"command": command, "device": _device_name(jobs), "steps": steps_used, "datasets": list(datasets),
              "methods": list(methods), "base_config": {k: v for k, v in vars(base).items()
                                                        if k not in ("dataset", "seed", "steps", "batch")},
              "per_dataset": {ds: PER_DATASET[ds] for ds in datasets},
              "remedies": {m: REMEDIES[m] for m in methods}, "wall_seconds": time.perf_counter() - t0,
              "runs": records, "summary": summarize(records), "reverse_kl_definition": RKL_DEFINITION,
              "published": {"source": PUBLISHED_SOURCE, "rows": PUBLISHED}}
    _save(result, markdown_modes(result), out / "bench_modes")
    return result


def run_stacked(runs: int, steps: int, command: str, out: Path = RESULTS, n_eval: int = 26000) -> dict:
    t0 = time.perf_counter()
    records, methods = [], ["DCGAN", "PacDCGAN2"]
    bar = _progress(runs * len(methods), "bench stacked")
    for method in methods:
        for seed in range(runs):
            cfg = mc.StackedConfig(pack=2 if method == "PacDCGAN2" else 1, steps=steps, seed=seed,
                                   n_eval=n_eval)
            _, res = mc.train_stacked(cfg)
            records.append({"method": method, "seed": seed, **res.final, "seconds": round(res.seconds, 2)})
            bar.set_postfix_str(f"{method} s{seed}: {res.final['modes']} modes")
            bar.update(1)
    bar.close()
    result = {"command": command, "device": _device_name(), "steps": steps, "methods": methods,
              "n_eval": n_eval, "wall_seconds": time.perf_counter() - t0, "runs": records,
              "published": {"source": PUBLISHED_STACKED_SOURCE, "rows": PUBLISHED_STACKED}}
    _save(result, markdown_stacked(result), out / "bench_stacked")
    return result


def _save(result: dict, md: str, stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(md, encoding="utf-8")


# ----------------------------------------------------------------------------- CLI
def _add_arguments(p):
    p.add_argument("what", choices=["modes", "speed"],
                   help="which benchmark: modes (mode collapse) or speed (chapter 09, genlib.speed)")
    p.add_argument("--device", default="cpu", help="speed: cpu or cuda (default cpu)")
    p.add_argument("--no-compile", action="store_true", help="speed: skip the torch.compile lever")
    p.add_argument("--runs", type=int, default=None, help="seeds per method (default 5; --quick: 1)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"generator steps per run (default ring {STEPS['ring']}, grid {STEPS['grid']}; --quick: 1000)")
    p.add_argument("--budget", choices=["quick", "full"], default=None,
                   help="quick = --quick; full = the defaults")
    p.add_argument("--quick", action="store_true", help="ring only, GAN vs PacGAN2, one seed, short runs")
    p.add_argument("--methods", default=None, help=f"comma list from {', '.join(REMEDIES)}")
    p.add_argument("--datasets", default=None, help="comma list from ring, grid")
    p.add_argument("--stacked", action="store_true", help="also (only, with --only-stacked) stacked digits")
    p.add_argument("--only-stacked", action="store_true", help="run the stacked benchmark alone")
    p.add_argument("--stacked-steps", type=int, default=None, help="steps per stacked run (default 3000)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once, one process each (default 1)")
    p.add_argument("--out", default=None,
                   help=f"folder for the JSON and markdown results (default: {RESULTS.name}/ for the full run, "
                        f"{RESULTS.name}/{QUICK_RESULTS.name}/ for --quick or partial runs)")
    p.add_argument("--update-readme", action="store_true", help="paste the tables into README.md")
    p.add_argument("--overwrite-results", action="store_true",
                   help="let a quick or partial run write to results/ and the README (replacing the committed tables)")
    p.add_argument("--render-only", action="store_true",
                   help="do not train: rebuild the markdown (and README) from the saved JSON")


def output_folder(args) -> tuple[Path, bool]:
    """``(folder, partial)``: where this invocation writes, and whether it is a quick/partial run.

    Only the full run (default seeds, steps, methods and datasets) writes to ``results/`` unless
    ``--out`` or ``--overwrite-results`` says otherwise; every other run goes to ``results/quick/``.
    """
    quick = args.quick or args.budget == "quick"
    partial = quick or (args.runs not in (None, 5)) or args.steps is not None or args.stacked_steps is not None \
        or (args.methods is not None and args.methods.split(",") != DEFAULT_METHODS) \
        or (args.datasets is not None and args.datasets.split(",") != ["ring", "grid"])
    if args.out is not None:
        return Path(args.out), partial
    if args.render_only or not partial or args.overwrite_results:
        return RESULTS, partial
    return QUICK_RESULTS, partial


def _run_speed(args) -> int:
    """``genlib bench speed``: see ``genlib.speed.run_speed``. Only the full run writes to results/
    (and the README) unless ``--overwrite-results``; ``--quick`` goes to results/quick/."""
    import sys

    from genlib import speed

    quick = args.quick or args.budget == "quick"
    if args.out is not None:
        out = Path(args.out)
    elif args.render_only or not quick or args.overwrite_results:
        out = RESULTS
    else:
        out = QUICK_RESULTS
    if quick and args.update_readme and not args.overwrite_results:
        print("refusing --update-readme for a quick run: the README's table is the full run's "
              "(add --overwrite-results if you mean to replace it)", file=sys.stderr)
        return 2
    if args.render_only:
        f = out / "bench_speed.json"
        if not f.exists():
            print(f"no {f} to render", file=sys.stderr)
            return 2
        res = json.loads(f.read_text())
        speed.validate_result(res)
        res["published"] = speed.published_rows(res)  # the claims table follows the current wording
        speed.save(res, out)
    else:
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            print("--device cuda: CUDA is not available here", file=sys.stderr)
            return 2
        command = "genlib bench " + " ".join(sys.argv[2:] if len(sys.argv) > 2 else [args.what])
        res = speed.run_speed(quick=quick, device=args.device, command=command, compile=not args.no_compile,
                              threads=args.threads)
        speed.save(res, out)
    md = speed.markdown_speed(res)
    print(md)
    print(f"saved {out / 'bench_speed.json'}, .md and .png")
    if args.update_readme:
        print("README:", "updated" if update_readme(md + "\n![digits-FID vs ms per image](results/bench_speed.png)\n",
                                                   "bench-speed") else "markers not found")
    return 0


def _run(args) -> int:
    import sys

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.what == "speed":
        return _run_speed(args)
    quick = args.quick or args.budget == "quick"
    out, partial = output_folder(args)
    if partial and not args.render_only and args.update_readme and not args.overwrite_results:
        print("refusing --update-readme for a quick or partial run: the README's table is the full run's "
              "(add --overwrite-results if you mean to replace it)", file=sys.stderr)
        return 2
    command = "genlib bench " + " ".join(sys.argv[2:] if len(sys.argv) > 2 else [args.what])
    if args.render_only:
        if args.update_readme and out.resolve() != RESULTS.resolve() and not args.overwrite_results:
            print(f"refusing --update-readme from {out}: the README shows {RESULTS}'s tables "
                  "(add --overwrite-results if you mean to replace them)", file=sys.stderr)
            return 2
        texts = {}
        for stem, key, fn in (("bench_modes", "bench-modes", markdown_modes),
                              ("bench_stacked", "bench-stacked", markdown_stacked)):
            f = out / f"{stem}.json"
            if f.exists():
                texts[key] = fn(json.loads(f.read_text()))
                (out / f"{stem}.md").write_text(texts[key])
                print(texts[key])
        if args.update_readme:
            for key, text in texts.items():
                print(f"README {key}: {'updated' if update_readme(text, key) else 'markers not found'}")
        return 0
    runs = args.runs or (1 if quick else 5)
    if not args.only_stacked:
        steps = args.steps or (1000 if quick else None)
        methods = args.methods.split(",") if args.methods else (["GAN", "PacGAN2"] if quick else DEFAULT_METHODS)
        datasets = args.datasets.split(",") if args.datasets else (["ring"] if quick else ["ring", "grid"])
        bad = [m for m in methods if m not in REMEDIES] + [d for d in datasets if d not in mc.DATASETS]
        if bad:
            print(f"unknown method/dataset: {', '.join(bad)}", file=sys.stderr)
            return 2
        res = run_modes(runs, steps, methods, datasets, command, out, jobs=args.jobs)
        md = markdown_modes(res)
        print(md)
        print(f"saved {out / 'bench_modes.json'} and .md")
        if args.update_readme:
            print("README:", "updated" if update_readme(md, "bench-modes") else "markers not found")
    if args.stacked or args.only_stacked:
        steps = args.stacked_steps or (300 if quick else 3000)
        res = run_stacked(runs, steps, command, out, n_eval=2600 if quick else 26000)
        md = markdown_stacked(res)
        print(md)
        if args.update_readme:
            print("README:", "updated" if update_readme(md, "bench-stacked") else "markers not found")
    return 0


CLI_COMMANDS = {"bench": ("benchmarks: mode collapse beside PacGAN's tables (modes); speed levers measured (speed)",
                           _add_arguments, _run)}
