"""Run the solution notebooks under other thread counts and other PyTorch builds; tabulate pass/fail.

A claim in a chapter must hold on a learner's machine, not only on the one that executed the committed
outputs. This script executes each solution notebook top to bottom in a fresh kernel — on a *copy*, so
the committed outputs are never touched — once per combination of

* torch thread count (``--threads 1,4``): set before the notebook's first cell by an IPython startup
  file (``torch.set_num_threads`` plus ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``). A chapter that pins its
  own thread count (02, 04, 05, 09 and 10 pin one thread, 08 two) keeps its pin: the row then shows that the
  chapter does not depend on the caller's setting;
* Python environment (``--python``): the repository's ``.venv`` (the pinned torch) and any other
  interpreter, e.g. a venv with the newest torch on the registry. genlib itself is taken from this
  checkout (``PYTHONPATH``), so the other environment needs only genlib's dependencies:

      python3 -m venv /tmp/venv-new
      /tmp/venv-new/bin/pip install torch==2.14.1 numpy scipy scikit-learn matplotlib tqdm \\
          nbformat nbclient ipykernel cloudpickle

It records, per run: pass/fail, wall seconds, the first failing cell and its error line, torch's
version and the thread count the kernel started with. Results go to ``--out`` as JSON and markdown
(rows are merged into an existing file, keyed by chapter, environment and threads, so separate
invocations build one matrix). Runs are sequential; ``--lock FILE`` takes an exclusive ``flock`` on
FILE around each notebook (and releases it in between), for machines shared with other jobs.

    python scripts/portability.py --chapters 02,04 --threads 1,4 \\
        --python .venv/bin/python --python /tmp/venv-new/bin/python --lock /tmp/genlib-cpu.lock

It is not part of ``make test`` (a full matrix takes about an hour on two cores).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STARTUP = """\
import os, json
import torch
torch.set_num_threads({threads})
with open({info!r}, "w") as f:
    json.dump({{"torch": torch.__version__, "threads": torch.get_num_threads()}}, f)
"""
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def solution(chapter: str) -> Path:
    hits = sorted((ROOT / "solutions").glob(f"{chapter}_*.ipynb"))
    if len(hits) != 1:
        raise SystemExit(f"chapter {chapter!r}: expected one solutions/{chapter}_*.ipynb, found {len(hits)}")
    return hits[0]


@contextmanager
def locked(path: str | None):
    if not path:
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def first_error(nb_path: Path) -> tuple[int | None, str]:
    """Index and one-line message of the first cell with an error output (``genlib execute`` keeps
    going after a failing cell only when told to; otherwise the notebook is saved up to it)."""
    import nbformat

    try:
        nb = nbformat.read(nb_path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - a notebook that cannot be read is itself the finding
        return None, f"unreadable result: {exc}"
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return i, f"{out.get('ename')}: {ANSI.sub('', str(out.get('evalue')))[:300]}"
    return None, ""


def run_one(nb: Path, python: str, threads: int, budget: str, timeout: int, lock: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="genlib-port-") as tmp:
        tmp = Path(tmp)
        work = tmp / nb.name
        ipydir = tmp / "ipython"
        startup = ipydir / "profile_default" / "startup"
        startup.mkdir(parents=True)
        info = tmp / "kernel.json"
        (startup / "00-threads.py").write_text(STARTUP.format(threads=threads, info=str(info)))
        env = dict(os.environ, GENLIB_BUDGET=budget, IPYTHONDIR=str(ipydir), OMP_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cmd = [python, "-m", "genlib", "execute", "--timeout", str(timeout), str(work)]
        with locked(lock):
            shutil.copy(nb, work)  # copied when its turn comes, not while waiting: the newest version runs
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
            seconds = time.perf_counter() - t0
        cell, err = first_error(work)
        kernel = json.loads(info.read_text()) if info.exists() else {}
        if proc.returncode != 0 and not err:
            tail = ANSI.sub("", (proc.stderr or proc.stdout).strip().splitlines()[-1] if (proc.stderr or proc.stdout).strip() else "")
            err = tail[:300]
        return {"ok": proc.returncode == 0 and not err, "seconds": round(seconds, 1), "failed_cell": cell,
                "error": err, "torch": kernel.get("torch", "?"), "threads_at_start": kernel.get("threads")}


def markdown(rows: list[dict], meta: dict) -> str:
    envs = sorted({(r["python"], r["torch"]) for r in rows}, key=lambda e: e[1])
    threads = sorted({r["threads"] for r in rows})
    cols = [(p, t, n) for p, t in envs for n in threads
            if any(r["python"] == p and r["torch"] == t and r["threads"] == n for r in rows)]  # only columns that ran
    commands = "; ".join(f"`{c}`" for c in meta["commands"])
    lines = [f"Produced by {commands} on {meta['machine']} (budget {meta['budget']}).", "",
             "| chapter | " + " | ".join(f"torch {t}, {n} thread{'s' if n > 1 else ''}" for _, t, n in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for ch in sorted({r["chapter"] for r in rows}):
        cells = []
        for p, t, n in cols:
            hit = [r for r in rows if r["chapter"] == ch and r["python"] == p and r["torch"] == t and r["threads"] == n]
            if not hit:
                cells.append("–")
            else:
                r = hit[-1]
                cells.append(f"pass ({r['seconds']:.0f} s)" if r["ok"] else
                             f"**fail** ({r['seconds']:.0f} s; cell {r['failed_cell']})")
        lines.append(f"| {ch} | " + " | ".join(cells) + " |")
    fails = [r for r in rows if not r["ok"]]
    if fails:
        lines += ["", "Failures:"]
        lines += [f"- {r['chapter']}, torch {r['torch']}, {r['threads']} thread(s): cell {r['failed_cell']}: {r['error']}"
                  for r in fails]
    lines += ["", "Times are wall seconds of `genlib execute` on a shared machine: compare within a row, not across "
              "machines. Chapters 02, 04, 05, 09 and 10 pin one torch thread themselves and chapter 08 pins two, "
              "so for them the thread columns show that the caller's setting does not change the result; 03, 06 "
              "and 07 run at the caller's setting. The 4-thread runs had 2 cores: oversubscribed, hence slower."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chapters", default="02,03,04,05,06,07,08,09,10",
                   help="comma list of chapter numbers (default: 02–10)")
    p.add_argument("--threads", default="1,4", help="comma list of torch thread counts (default 1,4)")
    p.add_argument("--python", action="append", default=None,
                   help="interpreter to run with (repeatable; default: this checkout's .venv)")
    p.add_argument("--budget", default="default", choices=["smoke", "default", "gpu"])
    p.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    p.add_argument("--lock", default=None, help="flock this file around each notebook (shared machines)")
    p.add_argument("--out", default=str(ROOT / "results" / "portability"),
                   help="output stem: STEM.json and STEM.md (default results/portability)")
    args = p.parse_args(argv)
    pythons = args.python or [str(ROOT / ".venv" / "bin" / "python")]
    for py in pythons:
        if not Path(py).exists():
            print(f"no interpreter at {py}", file=sys.stderr)
            return 2
    try:
        threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        print(f"--threads: expected a comma list of integers, got {args.threads!r}", file=sys.stderr)
        return 2
    if any(t < 1 for t in threads):
        print("--threads: thread counts must be at least 1", file=sys.stderr)
        return 2
    chapters = [c.strip().zfill(2) for c in args.chapters.split(",") if c.strip()]
    notebooks = {c: solution(c) for c in chapters}
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    store = stem.with_suffix(".json")
    saved = json.loads(store.read_text()) if store.exists() else {}
    rows = saved.get("rows", [])
    command = "python scripts/portability.py " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {"commands": [c for c in saved.get("commands", []) if c != command] + [command],
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "budget": args.budget}
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                   if l.startswith("model name"))
        meta["machine"] = f"{cpu}, {os.cpu_count()} CPUs"
    except (OSError, StopIteration):
        pass
    failed = 0
    for py in pythons:
        for n in threads:
            for ch, nb in notebooks.items():
                print(f"chapter {ch}, {py}, {n} thread(s) …", flush=True)
                r = run_one(nb, py, n, args.budget, args.timeout, args.lock)
                r.update(chapter=ch, python=py, threads=n, machine=meta["machine"], budget=args.budget)
                print(f"  {'pass' if r['ok'] else 'FAIL'} in {r['seconds']:.0f} s (torch {r['torch']}, "
                      f"{r['threads_at_start']} threads at start){'; cell ' + str(r['failed_cell']) + ': ' + r['error'] if not r['ok'] else ''}",
                      flush=True)
                failed += not r["ok"]
                rows = [x for x in rows if not (x["chapter"] == ch and x["python"] == py and x["threads"] == n
                                                and x.get("budget") == args.budget and x.get("machine") == meta["machine"])]
                rows.append(r)
                store.write_text(json.dumps({"commands": meta["commands"], "rows": rows}, indent=1))
                stem.with_suffix(".md").write_text(markdown(rows, meta))
    print(stem.with_suffix(".md").read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
