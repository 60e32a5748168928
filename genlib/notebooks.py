"""Notebook tooling: release learner copies, check they are in sync, execute, and grade.

* ``release``  – ``solutions/NN.ipynb`` → ``notebooks/NN.ipynb``: code between ``# BEGIN SOLUTION``
  and ``# END SOLUTION`` becomes ``# YOUR CODE HERE`` + ``raise NotImplementedError`` (same
  indentation); markdown between ``<!-- BEGIN SOLUTION -->`` and ``<!-- END SOLUTION -->`` becomes
  "*Your answer here.*"; outputs are cleared.
* ``grade``    – executes a submission in a fresh kernel under a time limit with fallbacks off. Each
  ``check(...)`` call saves the learner's function (cloudpickle). Then the *judge* — this process,
  where no learner code runs — re-runs genlib's check cases, calling the learner's functions in a
  separate, limited worker process per exercise that exchanges only plain data with it
  (``genlib.grading``). What the notebook or the worker print, exit with, patch or write cannot
  change a verdict; an exercise with no saved function scores zero.
"""
from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
MD_BEGIN, MD_END = "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"
STUB = ["# YOUR CODE HERE", "raise NotImplementedError"]
MD_STUB = "*Your answer here.*"
ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- release
def strip_code(source: str) -> str:
    """Replace every solution block in a code cell's source by the stub, keeping indentation."""
    out, inside, indent = [], False, ""
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise ValueError("nested '# BEGIN SOLUTION'")
            inside, indent = True, line[: len(line) - len(line.lstrip())]
            out.extend(indent + s for s in STUB)
        elif stripped.startswith(END):
            if not inside:
                raise ValueError("'# END SOLUTION' without '# BEGIN SOLUTION'")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("'# BEGIN SOLUTION' without '# END SOLUTION'")
    return "\n".join(out)


def strip_markdown(source: str) -> str:
    pattern = re.compile(re.escape(MD_BEGIN) + r".*?" + re.escape(MD_END), re.S)
    return pattern.sub(MD_STUB, source)


def learner_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The learner version of a solution notebook (a new object; ``nb`` is untouched)."""
    meta = {k: v for k, v in nb.metadata.items() if k != "widgets"}  # no stale widget state
    out = nbformat.v4.new_notebook(metadata=meta)
    for cell in nb.cells:
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(strip_code(cell.source))
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(strip_markdown(cell.source))
        else:
            new = nbformat.v4.new_raw_cell(cell.source)
        tags = cell.get("metadata", {}).get("tags")
        if tags:
            new.metadata["tags"] = list(tags)
        if "id" in cell:  # keep the solution's id so the learner copy is deterministic
            new["id"] = cell["id"]
        out.cells.append(new)
    return out


def _dumps(nb) -> str:
    return nbformat.writes(nb, version=4) + "\n"


def release(src: Path | str = ROOT / "solutions", dst: Path | str = ROOT / "notebooks",
            check_only: bool = False) -> list[str]:
    """Write learner copies of every ``src/*.ipynb`` into ``dst``.

    With ``check_only`` nothing is written; the names of notebooks that are missing, stale or
    extra in ``dst`` are returned (an empty list means in sync).
    """
    src, dst = Path(src), Path(dst)
    differing = []
    wanted = {}
    for path in sorted(src.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        wanted[path.name] = _dumps(learner_copy(nb))
    for name, text in wanted.items():
        target = dst / name
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current != text:
            differing.append(name)
            if not check_only:
                dst.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
    for extra in sorted(dst.glob("*.ipynb")):
        if extra.name not in wanted:
            differing.append(extra.name)
            if not check_only:
                extra.unlink()
    return differing


def percent_to_notebook(text: str) -> nbformat.NotebookNode:
    """Build a notebook from a py:percent script (``# %%`` code, ``# %% [markdown]`` text)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    kind, lines = None, []

    def flush():
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in body.split("\n"))
            nb.cells.append(nbformat.v4.new_markdown_cell(body))
        elif body:
            nb.cells.append(nbformat.v4.new_code_cell(body))

    for line in text.split("\n"):
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind is not None:
            lines.append(line)
    flush()
    for i, c in enumerate(nb.cells):  # stable ids: the same script gives the same notebook
        c["id"] = f"cell-{i:03d}"
    return nb


# ----------------------------------------------------------------------------- execute
def execute(path: Path | str, out: Path | str | None = None, timeout: int = 600,
            allow_errors: bool = False) -> nbformat.NotebookNode:
    """Run a notebook top to bottom in a fresh kernel (cwd = its folder) and return it executed.

    The outputs are written only when ``out`` is given (pass ``out=path`` to execute in place);
    with ``out=None`` the file on disk is left as it was.
    """
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    os.environ.setdefault("GENLIB_PROGRESS", "0")  # stored outputs need no progress bars
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    try:
        client.execute()
    finally:
        nb.metadata.pop("widgets", None)
        if out is not None:
            nbformat.write(nb, str(out))
    return nb


# ----------------------------------------------------------------------------- grading
def expected_exercises(nb: nbformat.NotebookNode) -> list[str]:
    """Exercise names in the order of the ``check("name", ...)`` calls in a notebook."""
    names = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            for m in re.finditer(r"""\bcheck\(\s*["']([\w.]+)["']""", cell.source):
                if m.group(1) not in names:
                    names.append(m.group(1))
    return names


def _pristine_for(path: Path) -> Path | None:
    for folder in (ROOT / "notebooks", ROOT / "solutions"):
        if (folder / path.name).exists():
            return folder / path.name
    return None


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def grade(path: Path | str, timeout: int = 600, budget: str = "smoke",
          reference: Path | str | None = None, exercise_timeout: int = 60,
          memory_mb: int = 4096) -> dict:
    """Grade one submitted notebook. Returns ``{"notebook", "status", "seconds", "rows"}``.

    ``rows`` is a list of ``{"exercise", "status", "detail", "points"}`` for every exercise of
    the pristine notebook (``reference``, else ``notebooks/<same name>``, else the submission).
    ``timeout`` bounds the notebook's run; ``exercise_timeout`` (seconds) and ``memory_mb`` bound
    the worker that runs the learner's code for one exercise while it is judged.
    """
    from genlib.exercises import registry
    from genlib.grading import judge

    path = Path(path).resolve()
    ref = Path(reference) if reference else _pristine_for(path)
    expected = expected_exercises(nbformat.read(ref or path, as_version=4))
    registry()  # every check is loaded before any learner code runs
    start = time.time()
    judge.set_dumpable(False)
    zygote = None
    try:
        with tempfile.TemporaryDirectory(prefix="genlib-grade-") as tmp:
            deny = [str(ROOT / "solutions"), str(ROOT / "notebooks"), str(ROOT / "tests"), tmp]
            try:  # started now, so it imports genlib before the notebook could touch any file
                zygote = judge.Zygote(deny, memory_mb * 2 ** 20)
            except RuntimeError:
                zygote = None
            subs = Path(tmp) / "submissions"
            subs.mkdir()
            status = _run_submission(path, tmp, subs, timeout, budget)
            verdicts = {}
            for name in expected:
                if zygote is not None and not zygote.alive():  # a worker may have killed it
                    zygote.close()
                    zygote = None
                if zygote is None and (subs / f"{name}.pkl").is_file():
                    try:
                        zygote = judge.Zygote(deny, memory_mb * 2 ** 20)
                    except RuntimeError:
                        pass
                verdicts[name] = _judge_one(name, subs, zygote, exercise_timeout)
    finally:
        if zygote is not None:
            zygote.close()
        judge.set_dumpable(True)
    rows = []
    for name in expected:
        r = verdicts[name]
        rows.append({"exercise": name, "status": r["status"], "detail": r["detail"],
                     "points": 1 if r["status"] == "passed" else 0})
    return {"notebook": str(path), "status": status, "seconds": round(time.time() - start, 1),
            "rows": rows}


def _run_submission(path: Path, tmp: str, subs: Path, timeout: int, budget: str) -> str:
    """Execute the submission (learner code runs here, in its kernel) with fallbacks off."""
    env = dict(os.environ, GENLIB_GRADING="1", GENLIB_SUBMISSION_DIR=str(subs),
               GENLIB_BUDGET=budget, GENLIB_PROGRESS="0", MPLBACKEND="Agg")
    run = subprocess.Popen([sys.executable, "-m", "genlib.notebooks", "_run", str(path),
                            str(Path(tmp) / "executed.ipynb"), str(timeout)],
                           env=env, cwd=str(path.parent), start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        log, _ = run.communicate(timeout=timeout + 30)
        status = "ran" if run.returncode == 0 else (log.strip().splitlines() or ["crashed"])[-1]
    except subprocess.TimeoutExpired:
        _kill_group(run)
        run.communicate()
        status = f"timed out after {timeout} s"
    _kill_group(run)  # anything the notebook left running goes before the judging starts
    return status[:300]


def _judge_one(name: str, subs: Path, zygote, exercise_timeout: int) -> dict:
    from genlib.grading import judge
    from genlib.grading.submission import MAX_BYTES

    pkl, err = subs / f"{name}.pkl", subs / f"{name}.err"
    if pkl.is_file() and not pkl.is_symlink():
        if pkl.stat().st_size > MAX_BYTES:
            return {"status": "error", "detail": "the saved function is too large"}
        if zygote is None or not zygote.alive():
            return {"status": "error", "detail": "the grading worker could not start"}
        return judge.judge_exercise(name, pkl.read_bytes(), zygote, exercise_timeout)
    if err.is_file() and not err.is_symlink():
        return {"status": "error", "detail": err.read_text(errors="replace")[:300]}
    return {"status": "not reached", "detail": "no submission was recorded for this exercise"}


def format_grade(result: dict, as_csv: bool = False) -> str:
    rows = result["rows"]
    if as_csv:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["notebook", "exercise", "status", "points", "detail"])
        w.writeheader()
        for r in rows:
            w.writerow({"notebook": Path(result["notebook"]).name, **r})
        return buf.getvalue()
    width = max([len("exercise")] + [len(r["exercise"]) for r in rows])
    lines = [f"{Path(result['notebook']).name}: {result['status']} in {result['seconds']} s",
             f"| {'exercise'.ljust(width)} | status      | points | detail",
             f"|{'-' * (width + 2)}|-------------|--------|-------"]
    for r in rows:
        lines.append(f"| {r['exercise'].ljust(width)} | {r['status']:<11} | {r['points']:>6} | "
                     f"{r['detail']}")
    total = sum(r["points"] for r in rows)
    lines.append(f"score: {total}/{len(rows)}")
    return "\n".join(lines)


def _run_for_grading(src: str, out: str, timeout: str) -> int:
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    try:
        execute(src, out, timeout=int(timeout), allow_errors=True)
    except CellTimeoutError:
        print(f"a cell ran past the {timeout} s limit")
        return 1
    except DeadKernelError:
        print("the kernel died")
        return 1
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    if errors:
        print(f"ran with {len(errors)} failing cell(s), first: {errors[0].get('ename')}")
        return 1
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "_run":
        sys.exit(_run_for_grading(*sys.argv[2:5]))
    else:
        raise SystemExit(f"unknown command {cmd}")
