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
import stat
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
            check_only: bool = False, chapters=()) -> list[str]:
    """Write learner copies of every ``src/*.ipynb`` into ``dst``.

    With ``check_only`` nothing is written; the names of notebooks that are missing, stale or
    extra in ``dst`` are returned (an empty list means in sync). ``chapters``: only the notebooks
    whose names start with one of these prefixes (e.g. ``["04", "07"]``); others are left alone.
    """
    src, dst = Path(src), Path(dst)
    chapters = tuple(str(c) for c in chapters)
    differing = []
    wanted = {}
    for path in sorted(src.glob("*.ipynb")):
        if chapters and not path.name.startswith(chapters):
            continue
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
        if extra.name not in wanted and not chapters:
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


MAX_NOTEBOOK_BYTES = 64 * 2 ** 20
RUN_STATUS = {0: "ran", 3: "ran with failing cells", 4: "a cell ran past the time limit",
              5: "the kernel died"}


class SandboxUnavailable(RuntimeError):
    """Grading refuses to run untrusted notebooks without a sandbox unless told to."""


def pristine_for(path: Path | str) -> Path | None:
    """The pristine learner notebook with the same file name (``notebooks/NAME``), if any."""
    cand = ROOT / "notebooks" / Path(path).name
    return cand if cand.is_file() else None


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _rows(names, status, detail):
    return [{"exercise": n, "status": status, "detail": detail, "points": 0} for n in names]


def grade(path: Path | str, timeout: int = 600, budget: str = "smoke",
          reference: Path | str | None = None, exercise_timeout: int = 60,
          memory_mb: int = 4096, sandbox: bool = True) -> dict:
    """Grade one submitted notebook (see :func:`grade_all`)."""
    return grade_all([path], timeout=timeout, budget=budget, reference=reference,
                     exercise_timeout=exercise_timeout, memory_mb=memory_mb, sandbox=sandbox)[0]


def grade_all(paths, timeout: int = 600, budget: str = "smoke",
              reference: Path | str | None = None, exercise_timeout: int = 60,
              memory_mb: int = 4096, sandbox: bool = True, hide=()) -> list[dict]:
    """Grade submitted notebooks; one ``{"notebook", "status", "seconds", "rows"}`` per path.

    ``rows``: ``{"exercise", "status", "detail", "points"}`` for every exercise of the pristine
    learner notebook (``reference``, else ``notebooks/<same file name>``) — never of the
    submission. A notebook that cannot be read, has no pristine copy or is malformed gets error
    rows; the others are still graded. Every submission is copied before any notebook runs;
    each runs in its own sandbox (:mod:`genlib.grading.sandbox`) on a private copy, and each
    notebook's learner functions are judged through workers in a sandbox of their own.
    ``sandbox=False`` runs without (only the Python-level blocks: see ``sandbox.NOT_PROTECTED``).
    ``hide``: more host paths the sandboxes must not see (e.g. where the report is written).
    ``timeout`` bounds a notebook's run; ``exercise_timeout`` and ``memory_mb`` bound judging
    one exercise (the worker, and the judge's own computation on what the worker sent).
    """
    from genlib.exercises import registry
    from genlib.grading import sandbox as sb

    if sandbox:
        why = sb.unavailable()
        if why:
            raise SandboxUnavailable(
                f"cannot grade in a sandbox: {why}. Grading runs untrusted code; pass "
                "--no-sandbox (notebooks.grade(..., sandbox=False)) only if you accept what that "
                "leaves unprotected.")
    registry()  # every check is loaded before any learner code runs
    paths = [Path(p).absolute() for p in paths]
    results: list[dict] = []
    tmp = tempfile.mkdtemp(prefix="genlib-grade-")
    try:
        # 1. every submission is copied before any of them runs
        jobs = []
        for i, path in enumerate(paths):
            job = {"path": path, "dir": Path(tmp) / f"n{i}"}
            try:
                with open(path, "rb") as f:
                    job["data"] = f.read(MAX_NOTEBOOK_BYTES + 1)
                if len(job["data"]) > MAX_NOTEBOOK_BYTES:
                    job["error"] = f"the notebook is larger than {MAX_NOTEBOOK_BYTES >> 20} MiB"
            except OSError as e:
                job["error"] = f"the notebook could not be read ({e.strerror or e})"
            jobs.append(job)
        hidden = sorted({str(p.parent) for p in paths} | {str(p) for p in paths}
                        | {tmp} | {str(Path(h).absolute()) for h in hide})
        for job in jobs:
            try:
                results.append(_grade_job(job, reference, timeout, budget, exercise_timeout,
                                          memory_mb, sandbox, hidden))
            except Exception as e:  # noqa: BLE001 - one notebook's failure is its own error row
                results.append(_job_error(job, reference, e))
            finally:
                job.pop("data", None)
                _remove_tree(job["dir"])  # what the notebook left (deep trees, a full disk) goes now
    finally:
        _remove_tree(Path(tmp))
    return results


def _remove_tree(path: Path) -> None:
    """Remove a folder a notebook wrote into, whatever it holds: ``shutil.rmtree`` recurses once per
    level (a RecursionError on a deep tree), so fall back to ``rm -rf``; never raise."""
    import shutil

    if not os.path.lexists(path):
        return
    try:
        shutil.rmtree(path)
        return
    except (OSError, RecursionError):
        pass
    try:
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], timeout=600,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError):
        pass


def _job_error(job, reference, exc) -> dict:
    """Error rows for a notebook whose grading failed in the grader itself (not in its kernel)."""
    ref = Path(reference) if reference else pristine_for(job["path"])
    try:
        names = expected_exercises(nbformat.read(ref, as_version=4)) if ref else []
    except Exception:  # noqa: BLE001
        names = []
    detail = f"the grader could not grade this notebook ({type(exc).__name__})"
    return {"notebook": str(job["path"]), "status": "error", "seconds": 0.0,
            "rows": _rows(names or ["-"], "error", detail)}


def _grade_job(job, reference, timeout, budget, exercise_timeout, memory_mb, sandbox,
               hidden) -> dict:
    from genlib.exercises import registry
    from genlib.grading import judge

    path, start = job["path"], time.time()

    def result(status, rows):
        return {"notebook": str(path), "status": status, "seconds": round(time.time() - start, 1),
                "rows": rows}

    ref = Path(reference) if reference else pristine_for(path)
    if ref is None or not ref.is_file():
        return result("error", [{"exercise": "-", "status": "error", "points": 0,
                                 "detail": f"no pristine notebook named {path.name[:80]} in "
                                           "notebooks/ (pass --reference)"}])
    expected = expected_exercises(nbformat.read(ref, as_version=4))
    if "error" in job:
        return result("error", _rows(expected, "error", job["error"]))
    try:
        nb = nbformat.reads(job["data"].decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # noqa: BLE001 - whatever makes it unreadable
        return result("error", _rows(expected, "error",
                                     f"the notebook is malformed ({type(e).__name__})"))
    known = registry()
    work = job["dir"]
    subs = work / "submissions"
    subs.mkdir(parents=True)
    # the submitted bytes as they came (re-encoding can fail, e.g. on a lone surrogate)
    (work / "submission.ipynb").write_bytes(job["data"])
    status = _run_submission(work, timeout, budget, sandbox, hidden)
    # The notebook's sandbox (and everything it started) is gone; now the judge.
    verdicts, zygote = {}, None
    judge.set_dumpable(False)
    try:
        for name in expected:
            if name not in known:
                verdicts[name] = {"status": "error", "detail": "genlib has no check of this name"}
                continue
            data = _saved(subs, name)
            if isinstance(data, dict):
                verdicts[name] = data
                continue
            if zygote is None or not zygote.alive():
                if zygote is not None:
                    zygote.close()
                zygote = None
                try:
                    zygote = judge.Zygote([str(ROOT / "solutions"), str(ROOT / "notebooks"),
                                           str(ROOT / "tests"), str(work)], memory_mb * 2 ** 20,
                                          sandbox=sandbox, hide=hidden)
                except RuntimeError:
                    verdicts[name] = {"status": "error",
                                      "detail": "the grading worker could not start"}
                    continue
            try:
                verdicts[name] = judge.judge_bounded(name, data, zygote, exercise_timeout,
                                                     memory_mb * 2 ** 20)
            except RuntimeError:  # the zygote could not be restarted
                zygote = None
                verdicts[name] = {"status": "error", "detail": "the grading worker could not start"}
    finally:
        if zygote is not None:
            zygote.close()
        judge.set_dumpable(True)
    rows = [{"exercise": n, "status": verdicts[n]["status"], "detail": verdicts[n]["detail"],
             "points": 1 if verdicts[n]["status"] == "passed" else 0} for n in expected]
    return result(status, rows)


def _saved(subs: Path, name: str):
    """The learner's pickled function for ``name`` (bytes), or a verdict when there is none.
    Files are opened without following links and must be regular files of bounded size."""
    from genlib.grading.submission import MAX_BYTES

    def read(p: Path, cap: int):
        try:  # the folder and the file both without following links (the notebook made them)
            dfd = os.open(p.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            fd = os.open(p.name, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0),
                         dir_fd=dfd)
        except OSError:
            return None
        finally:
            os.close(dfd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            if st.st_size > cap:
                return b""
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read(cap + 1)
        finally:
            os.close(fd)

    if name != Path(name).name or name.startswith("."):
        return {"status": "error", "detail": "not an exercise name"}
    data = read(subs / f"{name}.pkl", MAX_BYTES)
    if data == b"":
        return {"status": "error", "detail": "the saved function is too large"}
    if data is not None:
        return data
    err = read(subs / f"{name}.err", 4096)
    if err is not None:
        return {"status": "error", "detail": err.decode("utf-8", "replace")[:300]}
    return {"status": "not reached", "detail": "no submission was recorded for this exercise"}


def _run_submission(work: Path, timeout: int, budget: str, sandbox: bool, hidden) -> str:
    """Execute the private copy ``work/submission.ipynb`` with fallbacks off: in a sandbox whose
    only writable folder is ``work`` (seen there as /grading). Returns a fixed status phrase:
    nothing the notebook prints reaches the report."""
    from genlib.grading import sandbox as sb

    inner = "/grading" if sandbox else str(work)
    argv = [sys.executable, "-m", "genlib.notebooks", "_run", f"{inner}/submission.ipynb",
            f"{inner}/executed.ipynb", str(timeout)]
    genlib_env = {"GENLIB_GRADING": "1", "GENLIB_SUBMISSION_DIR": f"{inner}/submissions",
                  "GENLIB_BUDGET": budget, "GENLIB_PROGRESS": "0", "MPLBACKEND": "Agg"}
    if sandbox:
        sb.own(str(work))
        env = dict(sb.base_env(), HOME="/grading", **genlib_env)
        cmd = sb.command(argv, env=env, writable={str(work): "/grading"}, hide=hidden,
                         cwd="/grading")
        cwd = None
    else:
        env, cmd, cwd = dict(os.environ, **genlib_env), argv, str(work)
    run = subprocess.Popen(cmd, env=env, cwd=cwd, start_new_session=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        code = run.wait(timeout=timeout + 60)
        status = RUN_STATUS.get(code, f"the notebook's run ended with code {code}")
        if code == 4:
            status = f"a cell ran past the {timeout} s time limit"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout} s"
    _kill_group(run)  # without a sandbox: what the notebook left running in its group
    run.wait()
    return status


_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def clean_text(text) -> str:
    """One line of text: control characters, line breaks and lone surrogates become spaces."""
    return _CONTROL.sub(" ", str(text))


def csv_cell(text) -> str:
    """A CSV text field that a spreadsheet shows as text, never evaluates as a formula."""
    text = clean_text(text)
    return "'" + text if text.startswith(_FORMULA) else text


def notebook_label(path) -> str:
    """How a report names a submission: its folder and file name (``alice/01_x.ipynb``), since
    every submission of a chapter carries the same file name."""
    p = Path(path)
    return clean_text(f"{p.parent.name}/{p.name}" if p.parent.name else p.name)


def format_grade(result: dict, as_csv: bool = False) -> str:
    rows = result["rows"]
    name = notebook_label(result["notebook"])
    if as_csv:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["notebook", "exercise", "status", "points", "detail"])
        w.writeheader()
        for r in rows:
            w.writerow({"notebook": csv_cell(name), "exercise": csv_cell(r["exercise"]),
                        "status": csv_cell(r["status"]), "points": int(r["points"]),
                        "detail": csv_cell(r["detail"])})
        return buf.getvalue()
    width = max([len("exercise")] + [len(r["exercise"]) for r in rows])
    lines = [f"{name}: {clean_text(result['status'])} in {result['seconds']} s",
             f"| {'exercise'.ljust(width)} | status      | points | detail",
             f"|{'-' * (width + 2)}|-------------|--------|-------"]
    for r in rows:
        lines.append(f"| {clean_text(r['exercise']).ljust(width)} | {clean_text(r['status']):<11} | "
                     f"{int(r['points']):>6} | {clean_text(r['detail']).replace('|', '¦')}")
    total = sum(int(r["points"]) for r in rows)
    lines.append(f"score: {total}/{len(rows)}")
    return "\n".join(lines)


def write_csv(results: list[dict], path: Path | str) -> None:
    """All results in one CSV, written once and atomically (a temporary file, then rename)."""
    path = Path(path)
    parts = [format_grade(r, as_csv=True) for r in results]
    text = parts[0] + "".join(p.split("\n", 1)[1] for p in parts[1:]) if parts else ""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _run_for_grading(src: str, out: str, timeout: str) -> int:
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    try:
        execute(src, out, timeout=int(timeout), allow_errors=True)
    except CellTimeoutError:
        return 4
    except DeadKernelError:
        return 5
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    return 3 if errors else 0


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "_run":
        sys.exit(_run_for_grading(*sys.argv[2:5]))
    else:
        raise SystemExit(f"unknown command {cmd}")
