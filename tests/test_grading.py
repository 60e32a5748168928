"""The grader's trust boundary: attacks that must earn nothing, and the sanity cases.

Two levels:

* the judge on its own (fast): learner functions pickled here and judged through a worker —
  containment (time, memory, crashes, environment, files), reference blocking, gradients;
* whole notebooks through one sandboxed ``notebooks.grade_all`` run: every attack of the
  red-team review (shared/reviews/turn3/grading-redteam.md) and of the earlier gallery, written
  into chapter 01's learner notebook as a learner would, scores 0 — each by name — and harms no
  classmate, beside the controls (solved: full marks, unsolved: 0, half-solved: exactly its
  solved exercises, and a correct classmate graded after the attacks);
* a private repository and a private TMPDIR (mode 700) give no false zero.
"""
import importlib
import inspect
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import cloudpickle
import nbformat
import pytest
import torch

from genlib import notebooks
from genlib.exercises import registry
from genlib.grading import judge

ROOT = Path(__file__).resolve().parent.parent
TANH = "warmup.to_tanh_range"


# ============================================================================ the judge on its own
@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    registry()
    secret_dir = tmp_path_factory.mktemp("judge-files")
    z = judge.Zygote([str(judge.PKG_DIR), str(secret_dir)], 2 * 2 ** 30)
    z.secret_dir = secret_dir
    yield z
    z.close()


def _judge(zygote, name, fn, timeout=20):
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # as a notebook's functions are
    if not zygote.alive():  # an attack may have killed it: grade() restarts it the same way
        z = judge.Zygote(zygote.deny_read, zygote.memory_bytes)
        zygote.__dict__.update(z.__dict__)
    return judge.judge_exercise(name, cloudpickle.dumps(fn), zygote, timeout)


def good_tanh(x):
    return 2 * x - 1


def test_judge_scores_a_correct_function_and_fails_a_wrong_one(zygote):
    assert _judge(zygote, TANH, good_tanh)["status"] == "passed"
    r = _judge(zygote, TANH, lambda x: 2 * x)
    assert r["status"] == "failed" and "endpoints" in r["detail"]
    r = _judge(zygote, TANH, lambda x: x.mul_(2).sub_(1))  # right values, written into x
    assert r["status"] == "failed" and "does not modify its input" in r["detail"], r


def test_a_function_that_rewrites_its_input_earns_nothing(zygote):
    """Red-team a02a: fit_gaussian overwrites the caller's x with data whose mean and covariance
    it returns. The judge hands the function copies: the case's x is unchanged, and the call
    itself fails for writing into its input."""
    def rewrite(x):
        x.copy_(torch.zeros_like(x))
        x[0] = 1.0
        mean = x.mean(0)
        d = x - mean
        return mean, d.T @ d / x.shape[0]

    r = _judge(zygote, "basics.fit_gaussian", rewrite)
    assert r["status"] == "failed", r

    def correct(x):
        mean = x.mean(0)
        d = x - mean
        return mean, d.T @ d / x.shape[0]

    assert _judge(zygote, "basics.fit_gaussian", correct)["status"] == "passed"


def test_a_flooding_callback_costs_only_its_exercise_and_returns_quickly(zygote):
    """Red-team a08: flow.euler_sample calls the check's velocity with x (1, 15000) and t
    (15000,), which the judge would broadcast to 15000 × 15000; and a worker that floods the wire
    or stops reading. The judge refuses sizes before computing, and a stall ends at the limit."""
    def flood(v_fn, x0, steps):
        v_fn(torch.zeros(1, 15000), torch.zeros(15000))
        return x0

    t0 = time.time()
    r = judge.judge_bounded("flow.euler_sample", cloudpickle.dumps(flood), zygote, 20, 2 ** 31)
    assert r["status"] in ("failed", "error") and time.time() - t0 < 30, r

    def huge(v_fn, x0, steps):
        return torch.zeros(60_000_000)  # 240 MB back over the wire, then compared by the case

    r = judge.judge_bounded("flow.euler_sample", cloudpickle.dumps(huge), zygote, 20, 2 ** 31)
    assert r["status"] in ("failed", "error"), r

    def stall(v_fn, x0, steps):
        import time as t
        t.sleep(600)

    t0 = time.time()
    r = judge.judge_bounded("flow.euler_sample", cloudpickle.dumps(stall), zygote, 4, 2 ** 31)
    assert r["status"] == "timed out" and time.time() - t0 < 40, r
    r = judge.judge_bounded(TANH, cloudpickle.dumps(good_tanh), zygote, 20, 2 ** 31)
    assert r["status"] == "passed", r  # the next exercise is graded as usual


def test_unknown_exercise_name_is_an_error_not_a_crash(zygote):
    r = judge.judge_exercise("basics.no_such_exercise", cloudpickle.dumps(len), zygote, 10)
    assert r["status"] == "error" and "no check" in r["detail"], r


PRIVATE_SCRIPT = """
import sys, cloudpickle, torch
import genlib
assert genlib.__file__.startswith(sys.argv[1]), genlib.__file__
from genlib.exercises import registry
from genlib.grading import judge
registry()

def alpha_bar(betas):
    return torch.cumprod(1 - betas, dim=0)

def tanh(x):
    return 2 * x - 1

out = []
for sandbox in (False, True):
    z = judge.Zygote([], 2 * 2 ** 30, sandbox=sandbox)
    try:
        for name, fn in (("diffusion.alpha_bar", alpha_bar), ("warmup.to_tanh_range", tanh)):
            r = judge.judge_bounded(name, cloudpickle.dumps(fn), z, 60, 2 * 2 ** 30)
            out.append(f"{sandbox} {name} {r['status']} {r['detail']}")
    finally:
        z.close()
print(chr(10).join(out))
"""


def test_private_repository_and_private_tmpdir_give_no_false_zero(tmp_path):
    """Red-team controls: a correct function scored 0 when TMPDIR was a mode-700 folder, and
    chapter 07's first exercise crashed ("No module named 'genlib.checks.ch07_diffusion'") on a
    clone inside a mode-700 folder. Here genlib is copied into a private folder and TMPDIR is
    private too; with and without the sandbox, both exercises pass."""
    import shutil
    import subprocess

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    repo, tmpdir = private / "repo", private / "tmp"
    tmpdir.mkdir(mode=0o700)
    shutil.copytree(ROOT / "genlib", repo / "genlib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = dict(os.environ, PYTHONPATH=str(repo), TMPDIR=str(tmpdir))
    p = subprocess.run([sys.executable, "-c", PRIVATE_SCRIPT, str(repo)], env=env, cwd=str(repo),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 4 and all(" passed " in line for line in lines), p.stdout


def test_gradients_and_generators_cross_the_boundary(zygote):
    import torch.nn.functional as F

    assert _judge(zygote, "gan.g_loss", lambda f: F.softplus(-f).mean())["status"] == "passed"
    r = _judge(zygote, "gan.g_loss", lambda f: F.softplus(-f).mean().detach())
    assert r["status"] == "failed" and "gradient matches the reference" in r["detail"]

    def sample(mean, cov, n, generator=None):
        eps = torch.randn(n, len(mean), generator=generator, dtype=mean.dtype)
        return mean + eps @ torch.linalg.cholesky(cov).T

    assert _judge(zygote, "basics.sample_gaussian", sample)["status"] == "passed"
    r = _judge(zygote, "basics.sample_gaussian",
               lambda m, c, n, generator=None: m + torch.randn(n, len(m), dtype=m.dtype) @ c)
    assert r["status"] == "failed" and "uses the generator" in r["detail"]


def test_a_module_argument_or_a_class_called_directly_fails_closed(zygote):
    """A case that hands the learner's code a live object, or builds the learner's class itself,
    instead of going through a probe, is not scored (0 points, "manual review")."""
    from genlib.data import to_tanh_range
    from genlib.exercises import _REGISTRY, register
    from genlib.models import MLPGenerator

    spec = register("grading_test.module_arg", to_tanh_range, "a case that passes a module")
    spec.case("hands over a module")(lambda fn: fn(torch.nn.Linear(2, 2), torch.zeros(2)))
    cls_spec = register("grading_test.class_direct", MLPGenerator, "a case that builds the class")
    cls_spec.case("builds the class itself")(lambda cls: cls(z_dim=4))
    try:
        r = _judge(zygote, "grading_test.module_arg", lambda m, x: m(x))
        assert r["status"] == judge.MANUAL and "Linear" in r["detail"], r
        r = _judge(zygote, "grading_test.class_direct", torch.nn.Linear)
        assert r["status"] == judge.MANUAL and "probe" in r["detail"], r
    finally:
        _REGISTRY.pop("grading_test.module_arg")
        _REGISTRY.pop("grading_test.class_direct")
    r = judge.judge_exercise("gan.mlp_generator", b"not even a pickle", zygote, 10)
    assert r["status"] == "error" and r["detail"].startswith("could not load"), r


def test_the_reference_is_unusable_in_the_worker_but_other_helpers_work(zygote):
    def wrapper(x):
        from genlib.data import to_tanh_range
        return to_tanh_range(x)

    def reload_it(x):
        import importlib

        import genlib.data
        return importlib.reload(genlib.data).to_tanh_range(x)

    def copy_source(x):
        import inspect

        import genlib.data
        ns = {}
        exec(inspect.getsource(genlib.data.to_tanh_range), ns)
        return ns["to_tanh_range"](x)

    def fresh_interpreter(x):
        import subprocess
        import sys
        out = subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True)
        return 2 * x - int(out.stdout)

    for fn in (wrapper, reload_it, copy_source, fresh_interpreter):
        r = _judge(zygote, TANH, fn)
        assert r["status"] == "failed" and r["detail"].startswith("returns a tensor"), (fn, r)
    from genlib.data import to_tanh_range
    assert _judge(zygote, TANH, to_tanh_range)["detail"].startswith("submitted genlib's reference")

    def uses_another_helper(x):  # genlib's other functions stay usable
        from genlib.losses import g_loss
        return 2 * x - 1 + 0 * g_loss(torch.zeros(1))

    assert _judge(zygote, TANH, uses_another_helper)["status"] == "passed"


def test_containment_time_memory_crash_environment_files(zygote):
    def hang(x):
        while True:
            pass

    r = _judge(zygote, TANH, hang, timeout=3)
    assert r["status"] == "timed out"
    assert _judge(zygote, TANH, good_tanh)["status"] == "passed"  # the next exercise is graded

    def memory(x):
        return torch.ones(2 ** 31, dtype=torch.float64)  # 16 GiB

    assert _judge(zygote, TANH, memory)["status"] == "failed"

    def crash(x):
        os.abort()

    assert _judge(zygote, TANH, crash)["status"] == "crashed"

    def kill_the_zygote(x):
        os.kill(os.getppid(), 9)

    assert _judge(zygote, TANH, kill_the_zygote)["status"] == "failed"  # os.kill is refused

    secret = zygote.secret_dir / "judge.txt"
    secret.write_text("judge")

    def environment_and_files(x):
        leaks = [k for k in os.environ if k.startswith("GENLIB_") and k != "GENLIB_PROGRESS"]
        for attempt in (lambda: open(secret).read(), lambda: open(secret, "w").write("x"),
                        lambda: open(ROOT / "genlib" / "data.py").read()):
            try:
                attempt()
                leaks.append("file")
            except OSError:
                pass
        return 2 * x - 1 if not leaks else x

    assert _judge(zygote, TANH, environment_and_files)["status"] == "passed"
    assert secret.read_text() == "judge"


# ============================================================================ whole notebooks
# One sandboxed grading run (``grade_all``) over every attack of the red-team review
# (shared/reviews/turn3/grading-redteam.md) by name, beside the controls: a solved, an unsolved, a
# half-solved copy, the full solution notebook of chapter 00, and a correct "victim" graded
# after the attacks. The attack notebooks are chapter 01's setup cell and its three exercise cells
# (the chapter's training cells add time, not attack surface).
STUB = "# YOUR CODE HERE\n    raise NotImplementedError"
CH01 = ["basics.fit_gaussian", "basics.gaussian_log_prob", "basics.sample_gaussian"]
CH01_CELLS = (1, 6, 8, 12)  # setup, fit_gaussian, gaussian_log_prob, sample_gaussian
SOLVED = {
    "basics.fit_gaussian": "mean = x.mean(0)\nd = x - mean\nreturn mean, d.T @ d / x.shape[0]",
    "basics.gaussian_log_prob": "d = x - mean\nL = torch.linalg.cholesky(cov)\n"
                                "z = torch.linalg.solve_triangular(L, d.T, upper=False).T\n"
                                "return (-0.5 * (z ** 2).sum(1) - torch.log(torch.diagonal(L)).sum()"
                                " - 0.5 * x.shape[1] * math.log(2 * math.pi))",
    "basics.sample_gaussian": "eps = torch.randn(n, len(mean), generator=generator, dtype=mean.dtype)"
                              "\nreturn mean + eps @ torch.linalg.cholesky(cov).T",
}


def _with_bodies(src: Path, out: Path, body: str | dict, before: str = "", minimal=True,
                 after: str = "") -> Path:
    """``src`` with every exercise stub replaced by ``body`` (per exercise when a dict)."""
    nb = nbformat.read(src, as_version=4)
    if minimal:
        nb.cells = [nb.cells[i] for i in CH01_CELLS]
    for cell in nb.cells:
        m = re.search(r"""check\(\s*["']([\w.]+)["']""", cell.source)
        if cell.cell_type == "code" and STUB in cell.source and m:
            new = body.get(m.group(1)) if isinstance(body, dict) else body
            if new is not None:
                cell.source = cell.source.replace(STUB, new.replace("\n", "\n    "))
    if before:
        nb.cells.insert(1, nbformat.v4.new_code_cell(before))
    if after:
        nb.cells.append(nbformat.v4.new_code_cell(after))
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(out))
    return out


# The first two act only outside the learner's kernel, i.e. where the old grader verified.
FORGE = """import json, os, sys
if "ipykernel" in sys.modules:
    raise NotImplementedError
claim = {n: {"status": "passed", "detail": "ok"} for n in %r}
line = json.dumps(claim)
print(line); sys.stdout.flush(); os.write(1, (line + "\\n").encode()); os.write(2, line.encode())
os._exit(0)""" % (CH01,)

PATCH = """import builtins, sys, torch, genlib.exercises as ex
if "ipykernel" in sys.modules:
    raise NotImplementedError
ex.Report.passed = property(lambda self: True)
ex.run_check = lambda name, fn: ex.Report(name, [])
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
builtins.all = lambda *a: True
return torch.zeros(1)"""

WRAP = {  # every route to genlib's own answer, then the route's result
    "basics.fit_gaussian": "from genlib.density import fit_gaussian as ref\nreturn ref(x)",
    "basics.gaussian_log_prob": "import genlib.exercises as ex\n"
                                "return ex.get_spec('basics.gaussian_log_prob').reference(x, mean, cov)",
    "basics.sample_gaussian": "import importlib, genlib.density as d\n"
                              "return importlib.reload(d).sample_gaussian(mean, cov, n, generator)",
}

DETECT = """import os, sys
graded = (os.environ.get("GENLIB_GRADING") == "1" or "ipykernel" not in sys.modules
          or "genlib.grading" in sys.modules)
if graded:
    import genlib.density as d
    return CALL
raise NotImplementedError"""

PLANT = """import os, cloudpickle, json, pathlib
import genlib.density as d
folder = pathlib.Path(os.environ.get("GENLIB_SUBMISSION_DIR", "."))
(folder / "basics.fit_gaussian.pkl").write_bytes(cloudpickle.dumps(d.fit_gaussian))
(folder / "basics.gaussian_log_prob.pkl").write_bytes(
    cloudpickle.dumps(lambda x, mean, cov: d.gaussian_log_prob(x, mean, cov)))
(folder / "basics.sample_gaussian.err").write_text("passed")
(folder / "verdicts.json").write_text(json.dumps({n: "passed" for n in %r}))
for n in %r:
    (folder / (n + ".json")).write_text('{"status": "passed"}')""" % (CH01, CH01)

PICKLE_BOMB = '''import os, pathlib, pickle
SRC = """
import genlib.exercises as ex, json, os, sys
ex.Report.passed = property(lambda s: True)
for r in sys.path + [os.path.expanduser("~")]:
    try:
        open(os.path.join(r or ".", "pwned"), "w").write("x")
    except Exception:
        pass
print(json.dumps({"basics.fit_gaussian": {"status": "passed"}}))
os._exit(0)
"""
class Boom:
    def __reduce__(self):
        return (exec, (SRC,))
folder = pathlib.Path(os.environ.get("GENLIB_SUBMISSION_DIR", "."))
for n in %r:
    (folder / (n + ".pkl")).write_bytes(pickle.dumps(Boom()))''' % (CH01,)

# a02a: the answer is computed from data the function wrote into the caller's x
A02A = ("x.copy_(torch.zeros_like(x))\nx[0] = 1.0\nmean = x.mean(0)\nd = x - mean\n"
        "return mean, d.T @ d / x.shape[0]")
# a03: from the worker, write outside its folder / read the solutions; earn the right answer
# only if the breach worked (so a breach shows as points)
A03_WRITE = ("torch.save(x, {leak!r})\nmean = x.mean(0)\nd = x - mean\n"
             "return mean, d.T @ d / x.shape[0]")
A03_READ = ("t = torch.from_file({sol!r}, size=100, dtype=torch.uint8)\n"
            "assert t.numel() == 100\nmean = x.mean(0)\nd = x - mean\nreturn mean, d.T @ d / x.shape[0]")
# a03b: silence the audit hook's Python-level caller, then start a daemon that kills every process
# it may signal (later workers, later notebooks) for a minute
A03B = """import sys, subprocess
if "ipykernel" in sys.modules:  # only in the grading worker
    raise NotImplementedError
sys.audit = lambda *a: None
code = "import os, time\\nfor _ in range(600):\\n    try:\\n        os.kill(-1, 9)\\n    except Exception:\\n        pass\\n    time.sleep(0.1)"
for exe in (sys.executable, "/usr/bin/python3"):
    try:
        subprocess.Popen([exe, "-c", code], start_new_session=True)
    except Exception:
        pass
raise NotImplementedError"""
# a04: a daemon of the kernel that outlives it and writes where the report goes
A04 = """import os, subprocess, sys
code = '''import os, time
for _ in range(120):
    for p in {targets!r}:
        try:
            with open(p, "a") as f:
                f.write("=HYPERLINK(1),basics.fit_gaussian,passed,1\\\\n")
        except Exception:
            pass
    time.sleep(0.25)'''
subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)"""
# a05 / a06: change a classmate's submission before it is graded
A05 = """import os, shutil
for p in {victims!r}:
    for attempt in (lambda: shutil.copyfile({unsolved!r}, p), lambda: open(p, "w").write("{{}}")):
        try:
            attempt()
        except Exception:
            pass
for name in os.listdir("."):
    if name.endswith(".ipynb"):
        try:
            open(name, "w").write("{{}}")
        except Exception:
            pass"""
A06 = """import os
for p in {victims!r}:
    try:
        os.remove(p)
    except Exception:
        pass"""
# a07: a planted error file whose text is a formula and forged report lines
A07 = """import os, pathlib
folder = pathlib.Path(os.environ.get("GENLIB_SUBMISSION_DIR", "."))
(folder / "basics.sample_gaussian.err").write_text(
    '=HYPERLINK("http://x","y")\\n| basics.sample_gaussian | passed      |      1 | ok\\nscore: 3/3')"""
# a10: two unsolved exercises checked through an alias (the old exercise list missed them)
A10_ALIAS = {"basics.fit_gaussian": SOLVED["basics.fit_gaussian"]}
A10_AFTER = """c = check
k = "basics."
c(k + "gaussian_log_prob", gaussian_log_prob)
c(k + "sample_gaussian", sample_gaussian)"""

# name → (file name, body, before, after, expected points per exercise)
COPY_REF = """import types, genlib.density as _d
def _copy(f):
    return types.FunctionType(f.__code__, f.__globals__, f.__name__, f.__defaults__, f.__closure__)
_fit, _lp, _sg = _copy(_d.fit_gaussian), _copy(_d.gaussian_log_prob), _copy(_d.sample_gaussian)"""

BY_VALUE = """import cloudpickle, genlib.density
cloudpickle.register_pickle_by_value(genlib.density)
from genlib.density import fit_gaussian as _fit, gaussian_log_prob as _lp, sample_gaussian as _sg"""

DEEP = """import os
base = os.getcwd()
for i in range(1500):
    os.mkdir("d"); os.chdir("d")
os.chdir(base)"""

SURROGATE_ERROR = """class Boom:
    def __reduce__(self):
        return (exec, ("raise ValueError(chr(0xd800))",))
check("basics.fit_gaussian", Boom())"""

GALLERY = {
    "forged output and early exit in the verifier": dict(body=FORGE),
    "patching genlib's checks, torch and builtins": dict(body=PATCH),
    "wrappers around genlib's references": dict(body=WRAP),
    "right answer only when it detects grading": dict(body={
        "basics.fit_gaussian": DETECT.replace("CALL", "d.fit_gaussian(x)"),
        "basics.gaussian_log_prob": DETECT.replace("CALL", "d.gaussian_log_prob(x, mean, cov)"),
        "basics.sample_gaussian": DETECT.replace("CALL", "d.sample_gaussian(mean, cov, n, generator)")}),
    "files planted where submissions are collected": dict(body={}, before=PLANT),
    "pickled objects that run code when loaded": dict(body={}, before=PICKLE_BOMB),
    "a02a function overwrites its input": dict(body={"basics.fit_gaussian": A02A}),
    "a03 worker writes outside its folder": dict(body={"basics.fit_gaussian": A03_WRITE}),
    "a03 worker reads the solutions": dict(body={"basics.fit_gaussian": A03_READ}),
    "a03b worker daemon kills later workers": dict(body={"basics.fit_gaussian": A03B}),
    "a04 kernel daemon rewrites the report": dict(body={}, before=A04),
    "a05 kernel overwrites a classmate": dict(body={}, before=A05),
    "a06 kernel deletes a classmate": dict(body={}, before=A06),
    "a07 planted error text with formula and forged lines": dict(body={}, before=A07),
    "a09 no pristine copy and an unknown exercise": dict(file="alice.ipynb", body={}, before=(
        "import os, cloudpickle, pathlib\n# check(\"basics.no_such_exercise\", f)\n"
        "folder = pathlib.Path(os.environ.get('GENLIB_SUBMISSION_DIR', '.'))\n"
        "(folder / 'basics.no_such_exercise.pkl').write_bytes(cloudpickle.dumps(len))")),
    "a10 formula file name": dict(file="=cmd|' -C calc'!A0.ipynb", body={}),
    "a10 check through an alias": dict(body=A10_ALIAS, after=A10_AFTER, points=[1, 0, 0]),
    # red team, session 2
    "W1 copies of genlib's references (new function objects, same code)": dict(before=COPY_REF, body={
        "basics.fit_gaussian": "return _fit(x)",
        "basics.gaussian_log_prob": "return _lp(x, mean, cov)",
        "basics.sample_gaussian": "return _sg(mean, cov, n, generator)"}),
    "W1b genlib pickled by value": dict(before=BY_VALUE, body={
        "basics.fit_gaussian": "return _fit(x)",
        "basics.gaussian_log_prob": "return _lp(x, mean, cov)",
        "basics.sample_gaussian": "return _sg(mean, cov, n, generator)"}),
    "W2 1,500 nested folders (the cleanup recursed)": dict(body={}, before=DEEP),
    "W4 a lone surrogate in a markdown cell": dict(body={}, surrogate=True),
    "W5 a lone surrogate in a load error": dict(body={}, before=SURROGATE_ERROR),
}


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    """Every notebook graded in one sandboxed ``grade_all`` run; the victim after the attacks."""
    base = tmp_path_factory.mktemp("gallery")
    os.chmod(base, 0o700)  # submissions in a private folder
    learner = ROOT / "notebooks" / "01_generative_models.ipynb"
    out = base / "report"
    out.mkdir()
    csv_path = out / "grades.csv"
    daemon_marker = base / "a04-daemon-was-here"
    victim = base / "victim" / "01_generative_models.ipynb"
    fmt = dict(leak=str(base / "a03-leak.pt"), sol=str(ROOT / "solutions" / learner.name),
               victims=[str(victim)], unsolved=str(learner),
               targets=[str(csv_path), str(daemon_marker)])
    paths, names = {}, {}
    for i, (attack, spec) in enumerate(GALLERY.items()):
        body = spec["body"]
        body = {k: v.format(**fmt) for k, v in body.items()} if isinstance(body, dict) else body
        before = spec.get("before", "")
        if attack.startswith(("a04", "a05", "a06")):
            before = before.format(**fmt)
        p = base / f"a{i:02d}" / spec.get("file", learner.name)
        paths[attack] = _with_bodies(learner, p, body, before, after=spec.get("after", ""))
        if spec.get("surrogate"):  # valid JSON, valid nbformat, not encodable as UTF-8
            nb = nbformat.read(p, as_version=4)
            nb.cells.insert(1, nbformat.v4.new_markdown_cell("SURROGATE-HERE"))
            nbformat.write(nb, str(p))
            p.write_text(p.read_text().replace("SURROGATE-HERE", "\\ud800"))
    controls = {
        "solution (minimal)": _with_bodies(learner, base / "solved" / learner.name, SOLVED),
        "unsolved": _with_bodies(learner, base / "unsolved" / learner.name, {}),
        "half-solved": _with_bodies(learner, base / "half" / learner.name, {
            "basics.fit_gaussian": SOLVED["basics.fit_gaussian"],
            "basics.sample_gaussian": SOLVED["basics.sample_gaussian"]}),
    }
    full = {f"solution {c}": ROOT / "solutions" / f"{c}.ipynb"
            for c in ("00_start_here",)}
    _with_bodies(learner, victim, SOLVED)
    victim_bytes = victim.read_bytes()
    order = list(controls.items()) + list(full.items()) + list(paths.items()) + [("victim", victim)]
    t0 = time.time()
    results = notebooks.grade_all([p for _, p in order], timeout=180, hide=[str(out)])
    seconds = time.time() - t0
    notebooks.write_csv(results, csv_path)
    time.sleep(2)  # a surviving daemon would write again now
    by_name = {name: res for (name, _), res in zip(order, results)}
    return dict(results=by_name, csv=csv_path, marker=daemon_marker, base=base, victim=victim,
                victim_bytes=victim_bytes, seconds=seconds, printed="\n".join(
                    notebooks.format_grade(r) for r in results))


def _points(res):
    return [r["points"] for r in res["rows"]]


def test_gallery_controls_score_as_solved(gallery):
    res = gallery["results"]
    assert _points(res["solution (minimal)"]) == [1, 1, 1], res["solution (minimal)"]
    assert _points(res["unsolved"]) == [0, 0, 0], res["unsolved"]
    assert _points(res["half-solved"]) == [1, 0, 1], res["half-solved"]
    assert res["half-solved"]["rows"][1]["status"] == "not done"
    for c in ("00_start_here",):
        rows = res[f"solution {c}"]["rows"]
        assert rows and all(r["points"] == 1 for r in rows), rows
    print(f"gallery: {len(res)} notebooks graded in {gallery['seconds']:.0f} s")


@pytest.mark.parametrize("attack", list(GALLERY))
def test_gallery_attack_scores_zero(gallery, attack):
    res = gallery["results"][attack]
    want = GALLERY[attack].get("points")
    if attack.startswith(("a09", "a10 formula")):  # no pristine copy: one error row, 0 points
        assert [(r["status"], r["points"]) for r in res["rows"]] == [("error", 0)], res
        return
    assert [r["exercise"] for r in res["rows"]] == CH01, res
    assert _points(res) == (want or [0, 0, 0]), res
    rows = {r["exercise"]: r for r in res["rows"]}
    if attack.startswith("files planted"):
        assert rows["basics.fit_gaussian"]["detail"].startswith("submitted genlib's reference")
    if attack.startswith("a07"):
        assert rows["basics.sample_gaussian"]["status"] == "error"
    if attack.startswith("W1"):
        assert all(r["detail"].startswith("submitted genlib's reference") for r in res["rows"]), res


def test_gallery_harms_no_classmate_and_leaves_nothing_behind(gallery):
    res = gallery["results"]
    assert _points(res["victim"]) == [1, 1, 1], res["victim"]  # after a03b, a05, a06
    assert gallery["victim"].read_bytes() == gallery["victim_bytes"]  # a05 / a06
    assert not (gallery["base"] / "a03-leak.pt").exists()  # a03
    assert not gallery["marker"].exists()  # a04: the daemon died with its sandbox
    assert not (ROOT / "pwned").exists() and not list(gallery["base"].rglob("pwned"))
    text = gallery["csv"].read_text()
    assert "HYPERLINK(1)" not in text  # a04 wrote nothing into the report


def test_gallery_report_has_no_forged_lines_and_no_formulas(gallery):
    import csv as csvmod

    printed = gallery["printed"]
    n_notebooks = len(gallery["results"])
    assert sum(line.startswith("score: ") for line in printed.splitlines()) == n_notebooks  # a07
    # a forged table row inside a detail can't start a line, and its "|" are neutralised
    assert not any(line.startswith("| ") and "| ok" in line for line in printed.splitlines())
    assert "passed      |      1 | ok" not in printed
    rows = list(csvmod.DictReader(gallery["csv"].open()))
    assert len(rows) == sum(len(r["rows"]) for r in gallery["results"].values())
    for row in rows:
        for v in row.values():
            assert not v.startswith(("=", "+", "-", "@", "\t", "\r")), row
            assert "\n" not in v
    assert any("=cmd|" in r["notebook"] for r in rows)  # a10's name, shown after its folder
    assert any(r["detail"].startswith("'=HYPERLINK") for r in rows)  # a07's text, neutralised


def test_a_plain_callable_from_a_check_is_called_back_in_the_judge(zygote):
    """A check may hand the learner's function a callable of its own (a velocity field that
    records where it is evaluated): it runs in the judge, so what it records cannot be forged."""
    from genlib.data import to_tanh_range
    from genlib.exercises import _REGISTRY, CheckFailure, register

    spec = register("grading_test.calls_back", to_tanh_range, "apply f three times")

    @spec.case("f is called three times, on the previous result")
    def _(fn):
        seen = []

        def f(x):
            seen.append(x.clone())
            return x + 1

        out = fn(f, torch.zeros(2))
        if [s.tolist() for s in seen] != [[0, 0], [1, 1], [2, 2]] or out.tolist() != [3, 3]:
            raise CheckFailure(f"f saw {[s.tolist() for s in seen]}")

    try:
        assert _judge(zygote, "grading_test.calls_back", lambda f, x: f(f(f(x))))["status"] == "passed"
        assert _judge(zygote, "grading_test.calls_back", lambda f, x: x + 3)["status"] == "failed"
        assert _judge(zygote, "grading_test.calls_back", lambda f, x: f(x + 2))["status"] == "failed"
    finally:
        _REGISTRY.pop("grading_test.calls_back")


def test_no_import_cycle_between_the_exercise_mechanism_and_the_notebook_tooling():
    import ast

    def imports(module_file):
        tree = ast.parse((ROOT / "genlib" / module_file).read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        return names

    assert not any(n.startswith("genlib.notebooks") or n == "genlib.grading.judge"
                   for n in imports("exercises.py") | imports("grading/submission.py"))


# ============================================================================ probed exercises
# The exercises whose checks hand the learner's code a network or an optimiser, or whose answer is
# a class: their cases reach the learner's object through probes (genlib.probes) that run in the
# worker; the verdicts stay in the judge.
PROBED = {
    "03_gan_practice": ["gan.mlp_generator", "gan.mlp_discriminator", "gan.dcgan_generator",
                        "gan.dcgan_discriminator", "gan.train_step"],
    "04_mode_collapse": ["modes.gradient_penalty"],
    "07_diffusion": ["diffusion.loss", "flow.loss"],
    # chapter 09: progressive_target takes a network, cache_write writes in place and returns views
    "09_speed": ["distill.progressive_target", "speed.cache_write"],
    "11_interview_prep": ["bugs.gaussian_head", "bugs.conv_encoder", "bugs.generator_tanh",
                          "bugs.d_step_detach", "bugs.d_never_updated", "bugs.d_not_frozen",
                          "bugs.adam_betas", "bugs.conv_decoder", "bugs.loss_attribute"],
}


def _submissions(nb_path: Path, folder: Path) -> None:
    """Save the learner objects of ``nb_path`` exactly as a graded run does — ``check`` in grading
    mode pickles the first submission of each exercise into ``folder`` — without running the
    notebook's training cells: only its setup cell and its exercise cells run, in a fresh
    ``__main__``-like namespace (so functions and classes are pickled by value, as a kernel's)."""
    nb = nbformat.read(nb_path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    ns = {"__name__": "__main__"}
    env = {k: os.environ.get(k) for k in ("GENLIB_GRADING", "GENLIB_SUBMISSION_DIR", "GENLIB_BUDGET")}
    os.environ.update(GENLIB_GRADING="1", GENLIB_SUBMISSION_DIR=str(folder), GENLIB_BUDGET="smoke")
    # Exercise cells may install the learner's version into genlib (chapter 04:
    # ``mc.gradient_penalty = gradient_penalty``); in grading mode that is the unsolved stub, which
    # would leak into every later test of this process. Restore genlib's modules afterwards.
    saved = {name: dict(vars(mod)) for name, mod in list(sys.modules.items())
             if name == "genlib" or name.startswith("genlib.")}
    try:
        exec(compile(code[0], f"{nb_path.name}:setup", "exec"), ns)
        for src in code[1:]:
            if re.search(r"""\bcheck\(\s*["']""", src) and ("# BEGIN SOLUTION" in src
                                                          or "raise NotImplementedError" in src):
                try:
                    exec(compile(src, f"{nb_path.name}:exercise", "exec"), ns)
                except NotImplementedError:  # an unsolved exercise's demonstration line
                    pass
    finally:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for name, attrs in saved.items():
            vars(sys.modules[name]).update(attrs)


def _judge_notebook_exercises(zygote, nb_path: Path) -> dict:
    from genlib.grading.submission import MAX_BYTES  # noqa: F401 - the grader's own loader below

    names = notebooks.expected_exercises(nbformat.read(nb_path, as_version=4))
    with tempfile.TemporaryDirectory() as d:
        _submissions(nb_path, Path(d))
        if not zygote.alive():
            z = judge.Zygote(zygote.deny_read, zygote.memory_bytes)
            zygote.__dict__.update(z.__dict__)
        out = {}
        for n in names:  # as grade_all does: the saved bytes, judged in a bounded fork
            data = notebooks._saved(Path(d), n)
            out[n] = data if isinstance(data, dict) else judge.judge_bounded(
                n, data, zygote, 60, zygote.memory_bytes)
        return out


@pytest.mark.parametrize("chapter", list(PROBED))
def test_solution_exercises_of_probed_chapters_score_full_marks(zygote, chapter, capsys):
    """Every exercise of chapters 03, 04, 07, 09 and 11, as the solution notebook defines it, passes in
    the judge — none is left to "manual review"."""
    rows = _judge_notebook_exercises(zygote, ROOT / "solutions" / f"{chapter}.ipynb")
    assert set(PROBED[chapter]) <= set(rows)
    assert all(r["status"] == "passed" for r in rows.values()), rows


@pytest.mark.parametrize("chapter", list(PROBED))
def test_unsolved_probed_exercises_score_zero(zygote, chapter, capsys):
    rows = _judge_notebook_exercises(zygote, ROOT / "notebooks" / f"{chapter}.ipynb")
    assert {n: rows[n]["status"] for n in PROBED[chapter]} == {n: "not done" for n in PROBED[chapter]}


def _probed_gallery():
    """(label, exercise, wrong object, expected failing case) from the check galleries."""
    shapes = {"test_checks_ch03": {"G_GALLERY": None, "D_GALLERY": None, "STEP_GALLERY": "gan.train_step"},
              "test_checks_ch04": {"GALLERY": None},
              "test_checks_ch07": {"DL_GALLERY": "diffusion.loss", "FM_GALLERY": "flow.loss"},
              "test_checks_ch09": {"PT_GALLERY": "distill.progressive_target", "CW_GALLERY": "speed.cache_write"},
              "test_checks_ch11": {"GALLERY": "bugs."}}
    probed = {n for names in PROBED.values() for n in names}
    out = []
    for mod_name, lists in shapes.items():
        mod = importlib.import_module(mod_name)
        cloudpickle.register_pickle_by_value(mod)
        for attr, name in lists.items():
            for entry in getattr(mod, attr):
                if name is None:
                    label, ex, obj, case = entry[:4]
                elif name == "bugs.":
                    label, ex, obj, case = entry[0], "bugs." + entry[1], entry[2], entry[3]
                else:
                    label, ex, obj, case = entry[0], name, entry[1], entry[2]
                if ex in probed:
                    out.append((label, ex, obj, case))
    return out


def _uses_reference(obj, ref) -> bool:
    """Whether ``obj`` builds on genlib's reference (a subclass, or code that names it): such a
    gallery entry fails more cases in the worker, where the reference is blocked."""
    if inspect.isclass(obj) and inspect.isclass(ref) and issubclass(obj, ref):
        return True
    codes = [getattr(obj, "__code__", None)]
    if inspect.isclass(obj):
        codes = [getattr(f, "__code__", None) for f in vars(obj).values()]
    names = set()
    while codes:
        c = codes.pop()
        if c is not None:
            names.update(c.co_names)
            codes.extend(k for k in c.co_consts if inspect.iscode(k))
    return ref.__name__ in names


def test_wrong_implementations_of_probed_exercises_score_zero_in_the_same_case(zygote):
    """Every wrong implementation of the galleries of the probed exercises scores 0 in the judge,
    failing the case the interactive check names (the same set of cases, unless it builds on
    genlib's own reference class, which is blocked in the worker)."""
    from genlib.exercises import get_spec, run_check

    gallery = _probed_gallery()
    assert len({ex for _, ex, _, _ in gallery}) >= 14, "the galleries cover the probed exercises"
    for label, ex, obj, case in gallery:
        r = _judge(zygote, ex, obj, timeout=60)
        assert r["status"] == "failed", (label, r)
        if _uses_reference(obj, get_spec(ex).reference):
            continue
        local = run_check(ex, obj).failed_cases
        judged = r["detail"].split("; ")
        # The first failed case (the diagnosis the learner reads) is the same; a later case that
        # draws its own random interpolates may land either side of its tolerance on another RNG state.
        assert judged[0] == local[0] and case in judged and case in local, (label, r, local)


def test_tampering_inside_the_worker_earns_nothing_on_probed_exercises(zygote):
    """A class that replaces genlib's probes (and the wire encoder) inside the worker, or that
    builds on genlib's reference class, earns nothing; a probe the worker does not know is refused."""

    class Forger(torch.nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()
            import genlib.grading.wire as w
            import genlib.probes.ch03 as p3

            for name in dir(p3):
                if callable(getattr(p3, name)) and not name.startswith("_"):
                    setattr(p3, name, lambda *a, **k: {"passed": True})
            w.encode = lambda *a, **k: {"v": "passed"}
            raise NotImplementedError

    from genlib.models import DCGANDiscriminator, MLPGenerator

    class Subclass(MLPGenerator):
        pass

    class Wrapper(torch.nn.Module):
        def __init__(self, z_dim=32):
            super().__init__()
            self.g = MLPGenerator(z_dim=z_dim)

        def forward(self, z):
            return self.g(z)

    for ex, obj in (("gan.mlp_generator", Forger), ("gan.dcgan_discriminator", Forger),
                    ("gan.mlp_generator", Subclass), ("gan.mlp_generator", Wrapper)):
        r = _judge(zygote, ex, obj)
        assert r["status"] in ("failed", "not done", "crashed", "error"), (ex, obj, r)
    assert _judge(zygote, "gan.dcgan_discriminator", DCGANDiscriminator)["detail"].startswith(
        "submitted genlib's reference")

    from genlib.exercises import _REGISTRY, probe, register

    def local_probe(cls):
        return cls(z_dim=4)

    spec = register("grading_test.local_probe", MLPGenerator, "a probe outside genlib.probes")
    spec.case("uses a local probe")(lambda cls: probe(cls, local_probe))
    try:
        r = _judge(zygote, "grading_test.local_probe", torch.nn.Linear)
        assert r["status"] == judge.MANUAL and "genlib.probes" in r["detail"], r
    finally:
        _REGISTRY.pop("grading_test.local_probe")


def test_without_a_sandbox_grading_refuses_unless_told(monkeypatch, capsys, tmp_path):
    from genlib import cli
    from genlib.grading import sandbox

    monkeypatch.setattr(sandbox, "_checked", "bubblewrap is not installed (test)")
    nb = tmp_path / "00_start_here.ipynb"
    nb.write_text("{}")
    with pytest.raises(notebooks.SandboxUnavailable, match="--no-sandbox"):
        notebooks.grade_all([nb])
    assert cli.main(["grade", str(nb), "--csv", str(tmp_path / "g.csv")]) == 3
    assert "bubblewrap is not installed" in capsys.readouterr().err
    assert not (tmp_path / "g.csv").exists()
    # with the flag it grades (here: a malformed notebook, an error row per exercise) and says
    # what is not protected
    assert cli.main(["grade", str(nb), "--no-sandbox", "--csv", str(tmp_path / "g.csv")]) == 0
    out = capsys.readouterr()
    assert "WITHOUT a sandbox" in out.err and "malformed" in out.out
    assert ",warmup.to_tanh_range,error,0," in (tmp_path / "g.csv").read_text()


def test_report_folder_in_the_checkout_hides_only_the_report_files(tmp_path, monkeypatch):
    """Red team W6 (session 2): `genlib grade … --csv grades.csv` run from the checkout hid the
    checkout itself (a tmpfs over ROOT), so no notebook could import genlib: a false zero for all.
    W7: under `python -m`, the working folder was bound into every sandbox."""
    from genlib.grading import sandbox as sb

    report = ROOT / "grades-test-report.csv"
    cmd = sb.command(["true"], env={}, hide=[str(ROOT), str(report)])
    pairs = list(zip(cmd, cmd[1:]))
    assert ("--tmpfs", str(ROOT)) not in pairs
    assert str(ROOT) in sb.visible_paths()
    private = tmp_path / "instructor"
    private.mkdir()
    monkeypatch.chdir(private)
    monkeypatch.setattr(sys, "path", [str(private)] + sys.path)
    assert not any(p == os.path.realpath(private) or p.startswith(os.path.realpath(private) + "/")
                   for p in sb.visible_paths())


def test_cleanup_survives_deep_trees_and_a_failing_job(tmp_path, monkeypatch):
    """W2: a 1,500-level tree made shutil.rmtree raise RecursionError out of grade_all (no report
    for anyone). W3/W4: an exception while setting up one notebook ended the whole run."""
    deep = tmp_path / "deep"
    d = deep
    d.mkdir()
    for _ in range(1500):
        d = d / "d"
        d.mkdir()
    notebooks._remove_tree(deep)
    assert not deep.exists()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(notebooks, "_grade_job", boom)
    nb = tmp_path / "x" / "01_generative_models.ipynb"
    nb.parent.mkdir()
    nb.write_bytes((ROOT / "notebooks" / "01_generative_models.ipynb").read_bytes())
    [res] = notebooks.grade_all([nb], sandbox=False)
    assert res["status"] == "error" and [r["exercise"] for r in res["rows"]] == CH01
    assert all(r["points"] == 0 and "OSError" in r["detail"] for r in res["rows"])
    assert notebooks.notebook_label(nb) == "x/01_generative_models.ipynb"
    assert "\ud800" not in notebooks.clean_text("a\ud800b") and notebooks.format_grade(res)
