"""The grader's trust boundary: attacks that must earn nothing, and the sanity cases.

Two levels:

* the judge on its own (fast): learner functions pickled here and judged through a worker —
  containment (time, memory, crashes, environment, files), reference blocking, gradients;
* whole notebooks through ``notebooks.grade`` (a kernel each, so few): every attack of the
  gallery, written into the *unsolved* learner notebook of chapter 01 as a learner would, must
  score 0 — each by name; the solution notebooks score full marks; a half-solved notebook scores
  exactly its solved exercises.
"""
import importlib
import inspect
import json
import os
import re
import sys
import tempfile
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
    assert _judge(zygote, TANH, lambda x: x.mul_(2).sub_(1))["detail"] == "does not modify its input"


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
STUB = "# YOUR CODE HERE\n    raise NotImplementedError"
CH01 = ["basics.fit_gaussian", "basics.gaussian_log_prob", "basics.sample_gaussian"]


def _with_bodies(src: Path, out: Path, body: str | dict, before: str = "") -> Path:
    """``src`` with every exercise stub replaced by ``body`` (per exercise when a dict)."""
    nb = nbformat.read(src, as_version=4)
    for cell in nb.cells:
        m = re.search(r"""check\(\s*["']([\w.]+)["']""", cell.source)
        if cell.cell_type == "code" and STUB in cell.source and m:
            new = body.get(m.group(1)) if isinstance(body, dict) else body
            if new is not None:
                cell.source = cell.source.replace(STUB, new.replace("\n", "\n    "))
    if before:
        nb.cells.insert(1, nbformat.v4.new_code_cell(before))
    nbformat.write(nb, str(out))
    return out


def _grade(path, reference=None):
    result = notebooks.grade(path, timeout=120, reference=reference)
    return result, {r["exercise"]: r for r in result["rows"]}


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


ATTACKS = {  # attack → how it must end for the three exercises (every one with 0 points)
    "forged output and early exit in the verifier": dict(body=FORGE, end=["crashed"] * 3),
    "patching genlib's checks, torch and builtins": dict(body=PATCH, end=["failed|crashed"] * 3),
    "wrappers around genlib's references": dict(body=WRAP, end=["failed"] * 3),
    "right answer only when it detects grading": dict(body={
        "basics.fit_gaussian": DETECT.replace("CALL", "d.fit_gaussian(x)"),
        "basics.gaussian_log_prob": DETECT.replace("CALL", "d.gaussian_log_prob(x, mean, cov)"),
        "basics.sample_gaussian": DETECT.replace("CALL", "d.sample_gaussian(mean, cov, n, generator)")},
        end=["failed"] * 3),
    "files planted where submissions are collected": dict(body={}, before=PLANT,
                                                          end=["failed", "failed", "error"]),
    "pickled objects that run code when loaded": dict(body={}, before=PICKLE_BOMB,
                                                      end=["crashed"] * 3),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attack_on_an_unsolved_notebook_scores_zero(tmp_path, attack):
    spec = ATTACKS[attack]
    path = _with_bodies(ROOT / "notebooks" / "01_generative_models.ipynb",
                        tmp_path / "01_generative_models.ipynb", spec["body"], spec.get("before", ""))
    result, rows = _grade(path, reference=ROOT / "notebooks" / "01_generative_models.ipynb")
    assert list(rows) == CH01
    assert [r["points"] for r in rows.values()] == [0, 0, 0], (attack, result["rows"])
    # each attack reached the judge and ended as it should (not, say, "not reached")
    for r, end in zip(rows.values(), spec["end"]):
        assert r["status"] in end.split("|"), (attack, result["rows"])
    if attack.startswith("files planted"):
        assert rows["basics.fit_gaussian"]["detail"].startswith("submitted genlib's reference")
    assert not (tmp_path / "pwned").exists() and not (ROOT / "pwned").exists()


@pytest.mark.parametrize("chapter", ["00_start_here", "01_generative_models", "02_gan_theory"])
def test_solution_notebooks_score_full_marks(chapter):
    result, rows = _grade(ROOT / "solutions" / f"{chapter}.ipynb")
    assert rows and all(r["points"] == 1 for r in rows.values()), result["rows"]


def test_half_solved_notebook_scores_exactly_its_solved_exercises(tmp_path):
    """Chapter 01 with only sample_gaussian solved (and fit_gaussian solved wrongly)."""
    body = {"basics.sample_gaussian": "eps = torch.randn(n, len(mean), generator=generator, "
                                      "dtype=mean.dtype)\nreturn mean + eps @ torch.linalg.cholesky(cov).T",
            "basics.fit_gaussian": "return x.mean(0), torch.cov(x.T)"}
    path = _with_bodies(ROOT / "notebooks" / "01_generative_models.ipynb",
                        tmp_path / "01_generative_models.ipynb", body)
    result, rows = _grade(path)
    assert {n: r["points"] for n, r in rows.items()} == {
        "basics.fit_gaussian": 0, "basics.gaussian_log_prob": 0, "basics.sample_gaussian": 1}
    assert rows["basics.fit_gaussian"]["status"] == "failed"
    assert rows["basics.gaussian_log_prob"]["status"] == "not done"


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
        return {n: notebooks._judge_one(n, Path(d), zygote, 60) for n in names}


@pytest.mark.parametrize("chapter", list(PROBED))
def test_solution_exercises_of_probed_chapters_score_full_marks(zygote, chapter, capsys):
    """Every exercise of chapters 03, 04, 07 and 11, as the solution notebook defines it, passes in
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
        assert r["detail"].split("; ") == local and case in local, (label, r, local)


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
