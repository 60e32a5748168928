"""Gradescope: ``results.json`` and the autograder bundle, run in a simulated /autograder layout.

The bundle is built for chapter 00, unpacked as Gradescope would (``/autograder/source``), and its
``run_autograder`` logic (``python -m genlib.grading.gradescope run``, from the unpacked source) is
run three times, as Gradescope runs it once per submission: a solved, an unsolved and a hostile
notebook, each alone in ``<autograder>/submission``. Nothing is installed.
"""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from genlib.grading import gradescope, sandbox

ROOT = Path(__file__).resolve().parent.parent
STUB = "# YOUR CODE HERE\n    raise NotImplementedError"


def _ch00(out: Path, body: str | None, before: str = "") -> Path:
    """Chapter 00's setup cell and its exercise cell, the stub replaced by ``body``."""
    nb = nbformat.read(ROOT / "notebooks" / "00_start_here.ipynb", as_version=4)
    setup = next(c for c in nb.cells if c.cell_type == "code" and "setup_notebook" in c.source)
    ex = next(c for c in nb.cells if c.cell_type == "code" and STUB in c.source
              and 'check("warmup.to_tanh_range"' in c.source)
    if body is not None:
        ex.source = ex.source.replace(STUB, body.replace("\n", "\n    "))
    nb.cells = [setup] + ([nbformat.v4.new_code_cell(before)] if before else []) + [ex]
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(out))
    return out


def _valid(res: dict) -> None:
    assert set(res) >= {"score", "tests"}
    assert isinstance(res["score"], (int, float))
    for t in res["tests"]:
        assert {"name", "score", "max_score", "output"} <= set(t), t
        assert 0 <= t["score"] <= t["max_score"]
    assert res["score"] == sum(t["score"] for t in res["tests"])


def test_results_json_has_one_test_per_exercise_and_clean_text():
    results = [{"notebook": "/x/=evil.ipynb", "status": "ran", "seconds": 1.0, "rows": [
        {"exercise": "a.b", "status": "passed", "detail": "3 checks", "points": 1},
        {"exercise": "a.c", "status": "error", "detail": "line\nscore: 9/9", "points": 0}]}]
    res = gradescope.results_json(results)
    _valid(res)
    assert res["score"] == 1 and [t["name"] for t in res["tests"]] == ["a.b", "a.c"]
    assert all("\n" not in t["output"] for t in res["tests"])


@pytest.mark.skipif(sandbox.unavailable() is not None, reason="needs bubblewrap")
def test_bundle_grades_a_solved_an_unsolved_and_a_hostile_notebook(tmp_path):
    bundle = gradescope.build_bundle("00", tmp_path / "bundle.zip")
    with zipfile.ZipFile(bundle) as z:
        names = z.namelist()
        src = tmp_path / "source"
        z.extractall(src)
        modes = {i.filename: i.external_attr >> 16 for i in z.infolist()}
    assert {"setup.sh", "run_autograder", "notebooks/00_start_here.ipynb",
            "genlib/grading/gradescope.py", "pyproject.toml"} <= set(names)
    assert not any(n.startswith(("solutions/", "tests/", ".git")) for n in names)
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111
    setup = (src / "setup.sh").read_text()
    assert "bubblewrap" in setup and "pip install --quiet /autograder/source" in setup
    assert "genlib.grading.gradescope run" in (src / "run_autograder").read_text()

    forged = {"score": 100, "tests": [{"name": "x", "score": 100, "max_score": 1}]}
    runs = {}
    for kind in ("solved", "unsolved", "hostile"):
        ag = tmp_path / kind
        results = ag / "results" / "results.json"
        hostile = (f"import json, os, subprocess, sys\np = {str(results)!r}\n"
                   "code = 'import json, time\\nfor _ in range(200):\\n    try:\\n"
                   "        open(%r, \"w\").write(%r)\\n    except Exception:\\n        pass\\n"
                   f"    time.sleep(0.1)' % (p, {json.dumps(forged)!r})\n"
                   "subprocess.Popen([sys.executable, '-c', code], start_new_session=True)\n"
                   "try:\n    os.makedirs(os.path.dirname(p), exist_ok=True)\n"
                   f"    open(p, 'w').write({json.dumps(forged)!r})\nexcept Exception:\n    pass")
        body = {"solved": "return 2 * x - 1", "unsolved": None,
                "hostile": "import sys\nif 'ipykernel' in sys.modules:\n    raise NotImplementedError\n"
                           "return 2 * x - 1 if 'passed' in open(%r).read() else x" % str(results)}[kind]
        _ch00(ag / "submission" / "notebook.ipynb", body, hostile if kind == "hostile" else "")
        env = dict(os.environ, GENLIB_AUTOGRADER_DIR=str(ag), PYTHONPATH=str(src))
        p = subprocess.run([sys.executable, "-m", "genlib.grading.gradescope", "run"], cwd=src,
                           env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        import time
        time.sleep(1.5)  # a surviving daemon would rewrite results.json now
        runs[kind] = json.loads(results.read_text())
        _valid(runs[kind])
    assert [t["name"] for t in runs["solved"]["tests"]] == ["warmup.to_tanh_range"]
    assert runs["solved"]["score"] == 1
    assert runs["unsolved"]["score"] == 0
    assert runs["hostile"]["score"] == 0 and runs["hostile"]["tests"], runs["hostile"]


def test_several_notebooks_in_one_submission_are_not_added_up(tmp_path):
    """Red team W8 (session 2): three copies of one solved notebook scored 9 on a 3-point chapter.
    Several notebooks and none named like the chapter: refused, nothing graded, score 0."""
    ag = tmp_path / "ag"
    for n in ("a", "b", "c"):
        _ch00(ag / "submission" / f"{n}.ipynb", "return 2 * x - 1")
    res = gradescope.run(ag, config={"chapter": "00_start_here.ipynb"})
    _valid(res)
    assert res["score"] == 0 and res["tests"] == [] and "submit one notebook" in res["output"]
    assert json.loads((ag / "results" / "results.json").read_text()) == res
