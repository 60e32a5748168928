"""The exercise mechanism: ``fn = check("topic.name", fn)``.

A *check* is a named list of small behavioural tests (``Case``) plus the reference answer.
``check`` runs every case on the learner's function, prints a short ✓/✗ report and returns

* the learner's function when every case passes,
* genlib's reference (saying so) when a case fails or the exercise is not done yet, so the rest
  of the notebook still runs.

It never raises at the learner. In grading mode (``GENLIB_GRADING=1``) the first ``check`` of
each exercise is the submission: fallbacks are off for it (the learner's function is returned
whatever happened) and it is saved for the grader,
which re-runs the checks in its own process, calling the learner's function in a separate worker
(see ``genlib.grading`` and ``genlib.notebooks.grade``). The report printed here is for the
learner only; the grader never reads it.

Writing a check (chapter modules in ``genlib/checks/``)::

    from genlib.exercises import register, CheckFailure

    spec = register("warmup.to_tanh_range", reference=to_tanh_range,
                    summary="map images from [0, 1] to [-1, 1]")

    @spec.case("forgot the shift")           # the case name appears in the report
    def _(fn):
        out = fn(torch.zeros(2, 1, 4, 4))
        if torch.allclose(out, torch.zeros_like(out)):
            raise CheckFailure("0 must map to -1: you scaled by 2 but did not subtract 1")

The first failing message of each case is shown, so write messages that name the likely mistake
and the way out. ``genlib grade`` runs the cases in a process without learner code and sends each
call of ``fn`` to a worker, so a case may hand ``fn`` plain data only (tensors, numbers, lists,
dicts, plain callables); a case that needs a network, an optimiser or a class calls
``probe(fn, how, ...)`` with a probe from ``genlib.probes`` (see its docstring for the rules).
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["check", "register", "run_check", "CheckFailure", "Report", "registry", "Spec", "probe"]


class CheckFailure(AssertionError):
    """Raised inside a case to fail it with a learner-facing message."""


@dataclass
class Case:
    name: str
    fn: Callable[[Callable], None]


@dataclass
class Spec:
    name: str
    reference: Any
    summary: str = ""
    cases: list[Case] = field(default_factory=list)

    def case(self, name: str):
        """Decorator that adds a case; cases run in the order they are declared."""
        def deco(fn):
            self.cases.append(Case(name, fn))
            return fn
        return deco


@dataclass
class CaseResult:
    name: str
    passed: bool
    message: str = ""


@dataclass
class Report:
    name: str
    results: list[CaseResult]
    not_implemented: bool = False

    @property
    def passed(self) -> bool:
        return not self.not_implemented and all(r.passed for r in self.results)

    @property
    def failed_cases(self) -> list[str]:
        return [r.name for r in self.results if not r.passed]

    def message_for(self, case: str) -> str:
        for r in self.results:
            if r.name == case:
                return r.message
        raise KeyError(case)

    def text(self) -> str:
        if self.not_implemented:
            return f"✗ {self.name}: not done yet (raises NotImplementedError)."
        n_ok = sum(r.passed for r in self.results)
        head = "✓" if self.passed else "✗"
        lines = [f"{head} {self.name}: {n_ok}/{len(self.results)} checks passed"]
        for r in self.results:
            mark = "  ✓" if r.passed else "  ✗"
            lines.append(f"{mark} {r.name}" + ("" if r.passed else f" — {r.message}"))
        return "\n".join(lines)


_REGISTRY: dict[str, Spec] = {}
_LOADED = False


def register(name: str, reference: Any, summary: str = "") -> Spec:
    """Create (or replace) the check called ``name`` and return it so cases can be added."""
    spec = Spec(name, reference, summary)
    _REGISTRY[name] = spec
    return spec


def _load_all() -> None:
    """Import every module in genlib.checks so that their ``register`` calls run."""
    global _LOADED
    if _LOADED:
        return
    import genlib.checks as pkg
    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"genlib.checks.{mod.name}")
    _LOADED = True


def registry() -> dict[str, Spec]:
    """All registered checks by name."""
    _load_all()
    return dict(_REGISTRY)


def get_spec(name: str) -> Spec:
    _load_all()
    if name not in _REGISTRY:
        close = [k for k in _REGISTRY if k.split(".")[0] == name.split(".")[0]]
        hint = f" Checks in this chapter: {', '.join(sorted(close))}." if close else ""
        raise KeyError(f"no check called {name!r}.{hint}")
    return _REGISTRY[name]


_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def _short_exc(exc: BaseException) -> str:
    """One line: the exception and the learner's line that raised it (not genlib's)."""
    where = ""
    for fr in reversed(traceback.extract_tb(exc.__traceback__)):
        if not os.path.abspath(fr.filename).startswith(_PKG_DIR) and fr.line:
            where = f" (at: {fr.line.strip()})"
            break
    return f"your code raised {type(exc).__name__}: {exc}{where}"


def run_check(name: str, fn: Any) -> Report:
    """Run every case of check ``name`` on ``fn``; never raises for a learner's mistake."""
    spec = get_spec(name)
    results: list[CaseResult] = []
    for case in spec.cases:
        try:
            case.fn(fn)
        except NotImplementedError:
            return Report(name, [], not_implemented=True)
        except CheckFailure as e:
            results.append(CaseResult(case.name, False, str(e)))
        except Exception as e:  # the learner's code crashed inside the case
            results.append(CaseResult(case.name, False, _short_exc(e)))
        else:
            results.append(CaseResult(case.name, True))
    return Report(name, results)


def probe(fn: Any, how: Callable, *args, **kwargs):
    """Run the probe ``how(fn, *args, **kwargs)`` where the learner's object ``fn`` lives.

    A probe is genlib code (a module-level function in ``genlib.probes``) that builds what a case
    needs from plain arguments — a network, an optimiser, a schedule — runs the learner's function
    or class on it and returns what it observed as plain data (tensors, numbers, lists, dicts).
    In a notebook this is a plain call. While a submission is graded, ``fn`` stands for the
    learner's object in a separate worker process: the probe runs there and only its plain
    result comes back, so the case's verdict is still computed in the grader (see
    ``genlib.grading``; the rule for check authors is in ``genlib/probes/__init__.py``).
    """
    runner = getattr(type(fn), "_genlib_run_probe", None)
    if runner is not None:
        return runner(fn, how, args, kwargs)
    return how(fn, *args, **kwargs)


def grading() -> bool:
    return os.environ.get("GENLIB_GRADING", "") == "1"


def check(name: str, fn: Any, *, quiet: bool = False) -> Any:
    """Check the learner's ``fn`` for exercise ``name`` and return what the notebook should use."""
    try:
        report = run_check(name, fn)
    except KeyError as e:
        print(f"✗ {e.args[0]}")
        return fn
    if grading():
        from genlib.grading.submission import save_submission
        if save_submission(name, fn):  # the graded submission: no fallback to the reference
            if not quiet:
                print(report.text())
            return fn
    if not quiet or not report.passed:
        print(report.text())
    if report.passed:
        return fn
    ref = get_spec(name).reference
    print(f"→ using genlib's reference for {name} so the rest of the notebook runs;"
          " fix your version and run this cell again.")
    return ref


# ----------------------------------------------------------------------------- helpers for cases
def expect_tensor(out, shape=None, what: str = "your function's output", dtype=None):
    """Fail unless ``out`` is a tensor (of ``shape`` and floating ``dtype`` when given)."""
    import torch

    if not torch.is_tensor(out):
        raise CheckFailure(f"{what} should be a torch.Tensor, got {type(out).__name__}")
    if shape is not None and tuple(out.shape) != tuple(shape):
        raise CheckFailure(f"{what} has shape {tuple(out.shape)}, expected {tuple(shape)}")
    if dtype is not None and out.dtype != dtype:
        raise CheckFailure(f"{what} has dtype {out.dtype}, expected {dtype}")
    return out


def expect_close(out, expected, what: str = "your result", hint: str = "",
                 rtol: float = 1e-4, atol: float = 1e-5):
    """Fail with ``hint`` unless ``out`` matches ``expected`` (shape first, then values)."""
    import torch

    expect_tensor(out, tuple(torch.as_tensor(expected).shape), what)
    expected = torch.as_tensor(expected, dtype=out.dtype, device=out.device)
    if not torch.isfinite(out).all():
        raise CheckFailure(f"{what} contains NaN or inf. {hint}".strip())
    if not torch.allclose(out, expected, rtol=rtol, atol=atol):
        err = (out - expected).abs().max().item()
        raise CheckFailure(f"{what} differs from the reference (max error {err:.3g}). {hint}".strip())
