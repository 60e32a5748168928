"""Gradescope: its ``results.json``, and an autograder bundle for one chapter.

Gradescope unpacks an autograder .zip into ``/autograder/source``, runs ``setup.sh`` once when it
builds the image, then, for each submission, copies the student's files into
``/autograder/submission`` and runs ``/autograder/run_autograder``, which must write
``/autograder/results/results.json``: ``{"score", "output", "tests": [{"name", "score",
"max_score", "status", "output"}, …]}``.

``genlib gradescope 01 --out bundle.zip`` writes such a .zip: the genlib package, the
chapter's pristine learner notebook (the list of exercises) and no solutions; ``setup.sh``
installs bubblewrap and this package; ``run_autograder`` runs :func:`run` (``python -m
genlib.grading.gradescope run``), which grades every ``submission/*.ipynb`` with
``genlib grade`` — a sandbox per notebook — against the bundled pristine notebook.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DIST = "genlib-workbook"  # the distribution's name on the package index (import name: genlib)

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap python3 python3-venv python3-pip
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --quiet --upgrade pip
/autograder/venv/bin/pip install --quiet "{torch}" --index-url https://download.pytorch.org/whl/cpu
/autograder/venv/bin/pip install --quiet /autograder/source
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for each submission; it writes /autograder/results/results.json.
cd /autograder/source
exec /autograder/venv/bin/python -m genlib.grading.gradescope run
"""


def results_json(results: list[dict]) -> dict:
    """Gradescope's results for graded notebooks (one test per exercise, 1 point each)."""
    tests, lines = [], []
    many = len(results) > 1
    for res in results:
        from genlib.notebooks import clean_text

        name = clean_text(Path(res["notebook"]).name)
        lines.append(f"{name}: {clean_text(res['status'])}")
        for r in res["rows"]:
            label = clean_text(r["exercise"])
            tests.append({"name": f"{name}: {label}" if many else label,
                          "score": int(r["points"]), "max_score": 1,
                          "status": "passed" if r["points"] else "failed",
                          "output": clean_text(f"{r['status']}: {r['detail']}")[:2000]})
    return {"score": sum(t["score"] for t in tests), "output": "\n".join(lines),
            "tests": tests}


def write_results(results: list[dict], path: str | Path) -> None:
    """Write ``results.json`` once, atomically (a temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    with os.fdopen(fd, "w") as f:
        json.dump(results_json(results), f, indent=1)
    os.replace(tmp, path)


def _chapter(chapter: str) -> Path:
    names = sorted(p for p in (ROOT / "notebooks").glob("*.ipynb")
                   if p.stem == chapter or p.stem.split("_")[0] == chapter.zfill(2))
    if len(names) != 1:
        raise ValueError(f"no single chapter matches {chapter!r} in notebooks/")
    return names[0]


def _bundle_files() -> list[Path]:
    """The package and what installing it needs — no solutions, no tests."""
    files = [ROOT / n for n in ("pyproject.toml", "README.md", "LICENSE", "LICENSE-CC-BY")]
    for p in sorted((ROOT / "genlib").rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"):
            files.append(p)
    return [f for f in files if f.is_file()]


def build_bundle(chapter: str, out: str | Path, no_sandbox: bool = False,
                 timeout: int = 600) -> Path:
    """Write the autograder .zip for ``chapter`` (e.g. ``"01"``) to ``out``."""
    nb = _chapter(chapter)
    out = Path(out)
    torch = "torch==2.13.0"
    config = {"chapter": nb.name, "no_sandbox": bool(no_sandbox), "timeout": int(timeout)}
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for f in _bundle_files():
            z.write(f, str(f.relative_to(ROOT)))
        z.write(nb, f"notebooks/{nb.name}")
        for name, text in (("setup.sh", SETUP_SH.format(torch=torch)),
                           ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o100755 << 16
            z.writestr(info, text)
        z.writestr("genlib-autograder.json", json.dumps(config, indent=1))
    return out


def run(autograder: str | Path | None = None, config: dict | None = None) -> dict:
    """Grade ``<autograder>/submission/*.ipynb`` into ``<autograder>/results/results.json``.

    ``autograder`` defaults to ``$GENLIB_AUTOGRADER_DIR`` or ``/autograder``; ``config`` to the
    bundle's ``genlib-autograder.json`` (next to the package)."""
    from genlib import notebooks
    from genlib.grading import sandbox

    base = Path(autograder or os.environ.get("GENLIB_AUTOGRADER_DIR", "/autograder"))
    if config is None:
        config = json.loads((ROOT / "genlib-autograder.json").read_text())
    reference = ROOT / "notebooks" / config["chapter"]
    subs = sorted((base / "submission").glob("*.ipynb"))
    out = base / "results" / "results.json"
    # One submission is one student's chapter: grade one notebook, so that several copies of a
    # solved notebook cannot add up to more than the chapter's points.
    named = [p for p in subs if p.name == config["chapter"]]
    why = None
    if not subs:
        why = "no .ipynb file was submitted"
    elif len(subs) > 1 and len(named) != 1:
        why = (f"submit one notebook: found {len(subs)} .ipynb files and none named "
               f"{config['chapter']} (the grader will not guess which one to grade)")
    if why:
        res = {"score": 0, "output": why, "tests": []}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res))
        return res
    subs = named if len(subs) > 1 else subs
    if config.get("no_sandbox"):
        print(sandbox.NOT_PROTECTED, file=sys.stderr)
    try:
        results = notebooks.grade_all(subs, timeout=int(config.get("timeout", 600)),
                                      reference=reference, sandbox=not config.get("no_sandbox"),
                                      hide=[str(out.parent)])
    except notebooks.SandboxUnavailable as e:
        res = {"score": 0, "tests": [], "output": f"The autograder could not grade safely: {e} "
               "(instructors: rebuild the bundle with --no-sandbox to accept that)"}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res))
        return res
    write_results(results, out)
    return results_json(results)


if __name__ == "__main__":
    if sys.argv[1:] == ["run"]:
        run()
    else:
        raise SystemExit("usage: python -m genlib.grading.gradescope run")
