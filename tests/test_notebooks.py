"""Release/sync of the learner notebooks, and the grader on five kinds of submission."""
from pathlib import Path

import nbformat
import pytest

from genlib import notebooks

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- release and sync
def test_notebooks_are_exactly_the_release_of_solutions():
    differing = notebooks.release(ROOT / "solutions", ROOT / "notebooks", check_only=True)
    assert differing == [], f"run `genlib release` and commit: out of sync {differing}"
    assert sorted(p.name for p in (ROOT / "solutions").glob("*.ipynb")), "no chapters found"


def test_no_solution_code_leaks_into_learner_notebooks():
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        text = path.read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text, path.name
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"


def test_every_exercise_has_a_stub_and_a_check_in_each_learner_notebook():
    from genlib.exercises import registry

    names = set(registry())
    for path in (ROOT / "solutions").glob("*.ipynb"):
        sol = nbformat.read(path, as_version=4)
        n_blocks = sum(c.source.count(notebooks.BEGIN) for c in sol.cells if c.cell_type == "code")
        learner = nbformat.read(ROOT / "notebooks" / path.name, as_version=4)
        n_stubs = sum(c.source.count("raise NotImplementedError  ") + c.source.count(notebooks.STUB[0])
                      for c in learner.cells if c.cell_type == "code")
        assert n_stubs == n_blocks, path.name
        for name in notebooks.expected_exercises(sol):
            assert name in names, f"{path.name} checks {name!r}, which is not registered"


def test_strip_code_keeps_indentation_and_rejects_broken_markers():
    src = "def f(x):\n    # BEGIN SOLUTION\n    return x + 1\n    # END SOLUTION\n\nf = check('a.b', f)"
    out = notebooks.strip_code(src)
    assert out == ("def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError\n\nf = check('a.b', f)")
    with pytest.raises(ValueError, match="without"):
        notebooks.strip_code("x = 1\n# BEGIN SOLUTION\nx = 2")
    with pytest.raises(ValueError, match="without"):
        notebooks.strip_code("# END SOLUTION")
    md = "Answer: <!-- BEGIN SOLUTION -->it is 42<!-- END SOLUTION --> done"
    assert notebooks.strip_markdown(md) == "Answer: *Your answer here.* done"


def test_release_writes_removes_and_reports(tmp_path):
    src, dst = tmp_path / "solutions", tmp_path / "notebooks"
    src.mkdir()
    dst.mkdir()
    nb = notebooks.percent_to_notebook(
        "# %% [markdown]\n# # Title\n\n# %%\ndef f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\n")
    nbformat.write(nb, str(src / "01_x.ipynb"))
    (dst / "99_stale.ipynb").write_text("{}")
    assert notebooks.release(src, dst, check_only=True) == ["01_x.ipynb", "99_stale.ipynb"]
    assert notebooks.release(src, dst) == ["01_x.ipynb", "99_stale.ipynb"]
    assert not (dst / "99_stale.ipynb").exists()
    assert notebooks.release(src, dst, check_only=True) == []
    learner = nbformat.read(dst / "01_x.ipynb", as_version=4)
    assert learner.cells[0].source == "# Title"
    assert "raise NotImplementedError" in learner.cells[1].source and "return 1" not in learner.cells[1].source


# ----------------------------------------------------------------------------- grading
# Each grade starts a kernel, so the submissions are few and each one exercises several rules.
HEADER = "from genlib.exercises import check\nimport torch"
TANH = "warmup.to_tanh_range"
FIT = "basics.fit_gaussian"
LOGP = "basics.gaussian_log_prob"
SAMPLE = "basics.sample_gaussian"


def _exercise(name, body, fname="f"):
    return f"def {fname}(*args, **kwargs):\n    {body}\n\n{fname} = check('{name}', {fname})"


GOOD_TANH = _exercise(TANH, "return 2 * args[0] - 1")
STUB_TANH = _exercise(TANH, "raise NotImplementedError")
WRONG_TANH = _exercise(TANH, "return 2 * args[0]")
GOOD_FIT = ("def f(x):\n    m = x.mean(0)\n    c = x - m\n    return m, c.T @ c / len(x)\n\n"
            f"f = check('{FIT}', f)")
WRONG_FIT = _exercise(FIT, "return args[0].mean(0), torch.cov(args[0].T)")


def _nb(tmp_path, name, *cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path = tmp_path / name
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def reference(tmp_path):
    """The pristine notebook: four exercises, all stubs."""
    stubs = [_exercise(n, "raise NotImplementedError") for n in (TANH, FIT, LOGP, SAMPLE)]
    return _nb(tmp_path, "pristine.ipynb", HEADER, *stubs)


def _grade(path, reference, timeout=90):
    result = notebooks.grade(path, timeout=timeout, reference=reference)
    assert [r["exercise"] for r in result["rows"]] == [TANH, FIT, LOGP, SAMPLE]
    return result, {r["exercise"]: r for r in result["rows"]}


def test_grade_correct_and_incomplete_through_the_cli(tmp_path, reference, capsys):
    from genlib.cli import main

    path = _nb(tmp_path, "mixed.ipynb", HEADER, GOOD_TANH, GOOD_FIT, WRONG_FIT.replace(FIT, LOGP))
    out = tmp_path / "grades.csv"
    assert main(["grade", str(path), "--reference", str(reference), "--csv", str(out)]) == 0
    text = capsys.readouterr().out
    assert "score: 2/4" in text, text
    rows = out.read_text().splitlines()
    assert rows[0] == "notebook,exercise,status,points,detail"
    label = f"{path.parent.name}/mixed.ipynb"  # folder/file: submissions of a chapter share a file name
    assert rows[1].startswith(f"{label},{TANH},passed,1")
    assert rows[2].startswith(f"{label},{FIT},passed,1")
    assert rows[3].startswith(f"{label},{LOGP},failed,0")      # wrong answer: no fallback point
    assert rows[4].startswith(f"{label},{SAMPLE},not reached,0")


def test_grade_stub_and_wrong_answers(tmp_path, reference):
    result, rows = _grade(_nb(tmp_path, "stub.ipynb", HEADER, STUB_TANH, WRONG_FIT), reference)
    assert result["status"] == "ran"
    assert rows[TANH]["status"] == "not done" and rows[TANH]["points"] == 0
    assert rows[FIT]["status"] == "failed" and "cov is the MLE" in rows[FIT]["detail"]
    assert "score: 0/4" in notebooks.format_grade(result)


def test_grade_crashing_notebook_keeps_going_without_free_points(tmp_path, reference):
    path = _nb(tmp_path, "crash.ipynb", HEADER, GOOD_TANH, "1 / 0", WRONG_FIT, "raise RuntimeError('boom')")
    result, rows = _grade(path, reference)
    # a fixed phrase: nothing the notebook prints (an exception's text included) reaches the report
    assert result["status"] == "ran with failing cells", result["status"]
    assert rows[TANH]["points"] == 1        # earned before the crash
    assert rows[FIT]["points"] == 0         # graded after the crash, wrong


def test_grade_hanging_notebook_is_stopped(tmp_path, reference):
    path = _nb(tmp_path, "hang.ipynb", HEADER, GOOD_TANH, "while True:\n    pass", GOOD_FIT)
    result, rows = _grade(path, reference, timeout=10)
    assert "10 s" in result["status"], result["status"]
    assert rows[TANH]["points"] == 1
    assert rows[FIT]["status"] == "not reached" and rows[FIT]["points"] == 0
    assert result["seconds"] < 80


def test_grade_tampering_earns_nothing(tmp_path, reference):
    cells = [
        HEADER,
        # 1. submit genlib's own reference
        f"from genlib.data import to_tanh_range\ncheck('{TANH}', to_tanh_range)",
        # 2. empty every check in the kernel's registry, then submit a wrong answer
        "import genlib.exercises as ex\nfor s in ex.registry().values():\n    s.cases.clear()\n" + WRONG_FIT,
        # 3. make run_check report success, then submit a wrong answer
        "ex.run_check = lambda name, fn: ex.Report(name, [])\n" + WRONG_FIT.replace(FIT, LOGP),
        # 4. patch torch's comparisons, and replace check by a no-op for one exercise
        "torch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True\nreal_check = check\n"
        "check = lambda name, fn, **kw: fn\n" + _exercise(SAMPLE, "return torch.zeros(args[2], 2)"),
    ]
    result, rows = _grade(_nb(tmp_path, "tamper.ipynb", *cells), reference)
    assert rows[TANH]["points"] == 0 and "reference" in rows[TANH]["detail"]
    assert rows[FIT]["points"] == 0 and rows[FIT]["status"] == "failed"
    assert rows[LOGP]["points"] == 0 and rows[LOGP]["status"] == "failed"
    assert rows[SAMPLE]["points"] == 0 and rows[SAMPLE]["status"] == "not reached"


def test_cli_release_check_reports_sync(capsys):
    from genlib.cli import main

    assert main(["release", "--check"]) == 0
    assert "in sync" in capsys.readouterr().out
