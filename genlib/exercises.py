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

One diagnosis per mistake: the report shows the message of ONE failing case in full — the *lead*,
the failing case with the lowest ``priority`` (then the first declared) — and lists every other
failing case as "also fails … (may share that cause: fix the first, then re-run)", so a learner is
never handed several different pieces of advice for one slip. Declare cases from the most basic to the most derived;
give a case ``priority=-1`` (or lower) when its diagnosis should win over earlier cases, and
``depends_on=("other case",)`` when it can only fail because another one did (it is then never
the lead while that one fails). Write messages that name the likely mistake and the way out.

The mechanism adds three things to every check of a function (not of a class):

* **inputs left unchanged** — every tensor the case hands ``fn`` (also inside lists, tuples and
  dicts) is compared before and after the call; a change fails the check with its own message,
  shown first ("leaves its inputs unchanged"). A case that tests this itself may say
  ``inputs=True``; when it fails, it is the lead and the generic result is not added. A function
  whose job is to modify its arguments registers with ``mutates=True``.
* **dtype and device errors in plain words** — a torch error about mixed dtypes or devices,
  raised inside the learner's function or by the case on what the function returned, is reported
  as such (which dtypes were mixed, what the function was called with, how to create tensors in
  the inputs' dtype and device), never as a raw torch message.
* **non-finite values never pass**: ``expect_close`` rejects NaN and inf, even where the
  reference has them.

``genlib grade`` runs the cases in a process without learner code and sends each
call of ``fn`` to a worker, so a case may hand ``fn`` plain data only (tensors, numbers, lists,
dicts, plain callables); a case that needs a network, an optimiser or a class calls
``probe(fn, how, ...)`` with a probe from ``genlib.probes`` (see its docstring for the rules).

Galleries (``tests/test_checks_chNN.py``) assert with :func:`assert_first_failure` which case
fails first and what its message says, for each wrong implementation.
"""
from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["check", "register", "run_check", "CheckFailure", "Report", "registry", "Spec", "probe",
           "expect_tensor", "expect_close", "expect_like", "assert_first_failure", "INPUTS_CASE"]

#: the name of the result the mechanism adds when the learner's function changed its inputs
INPUTS_CASE = "leaves its inputs unchanged"


class CheckFailure(AssertionError):
    """Raised inside a case to fail it with a learner-facing message.

    ``generic=True`` marks a fallback that only says *that* something differs (``expect_close``'s
    "differs from the reference", ``expect_tensor``'s wrong shape): when another case names the
    mistake, that case's message is shown first.
    """

    def __init__(self, *args, generic: bool = False):
        super().__init__(*args)
        self.generic = generic


@dataclass
class Case:
    name: str
    fn: Callable[[Callable], None]
    priority: int = 0
    depends_on: tuple[str, ...] = ()
    inputs: bool = False


@dataclass
class Spec:
    name: str
    reference: Any
    summary: str = ""
    cases: list[Case] = field(default_factory=list)
    mutates: bool = False

    def case(self, name: str, *, priority: int = 0, depends_on: tuple[str, ...] | str = (),
             inputs: bool = False):
        """Decorator that adds a case; cases run in the order they are declared.

        ``priority``: lower is reported first when several cases fail (default 0).
        ``depends_on``: case names whose failure explains this one's (it is then a consequence).
        ``inputs``: this case checks that the inputs are left unchanged (lead when it fails).
        """
        deps = (depends_on,) if isinstance(depends_on, str) else tuple(depends_on)

        def deco(fn):
            self.cases.append(Case(name, fn, priority if not inputs else min(priority, -10), deps, inputs))
            return fn
        return deco


@dataclass
class CaseResult:
    name: str
    passed: bool
    message: str = ""
    kind: str = ""            # "", "generic", "dtype", "device", "inputs", "crash"
    priority: int = 0
    depends_on: tuple[str, ...] = ()


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
        """Names of the failing cases in the order they ran (the lead is :attr:`first_failed`)."""
        return [r.name for r in self.results if not r.passed]

    def message_for(self, case: str) -> str:
        for r in self.results:
            if r.name == case:
                return r.message
        raise KeyError(case)

    @property
    def lead(self) -> CaseResult | None:
        """The failing case whose message the learner reads first (None when nothing fails)."""
        failed = [(i, r) for i, r in enumerate(self.results) if not r.passed]
        if not failed:
            return None
        names = {r.name for _, r in failed}
        free = [(i, r) for i, r in failed if not (set(r.depends_on) & names)] or failed
        named = [(i, r) for i, r in free if r.kind != "generic"] or free
        return min(named, key=lambda ir: (ir[1].priority, ir[0]))[1]

    @property
    def first_failed(self) -> str | None:
        lead = self.lead
        return None if lead is None else lead.name

    def text(self) -> str:
        if self.not_implemented:
            return f"✗ {self.name}: not done yet (raises NotImplementedError)."
        n_ok = sum(r.passed for r in self.results)
        head = "✓" if self.passed else "✗"
        lines = [f"{head} {self.name}: {n_ok}/{len(self.results)} checks passed"]
        lead = self.lead
        if lead is not None:
            lines.append(f"  ✗ {lead.name} — {lead.message}")
            for r in self.results:
                if not r.passed and r is not lead:
                    why = (f"follows from: {lead.name}" if lead.name in r.depends_on
                           else "may share that cause: fix the first, then re-run")
                    lines.append(f"  · also fails: {r.name} ({why})")
        for r in self.results:
            if r.passed:
                lines.append(f"  ✓ {r.name}")
        return "\n".join(lines)


_REGISTRY: dict[str, Spec] = {}
_LOADED = False


def register(name: str, reference: Any, summary: str = "", *, mutates: bool = False) -> Spec:
    """Create (or replace) the check called ``name`` and return it so cases can be added.

    ``mutates=True``: the function's job is to change its arguments, so the mechanism does not
    check that they are left unchanged.
    """
    spec = Spec(name, reference, summary, mutates=mutates)
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


def _learner_line(exc: BaseException) -> str:
    """The last line of the traceback in the learner's code (not genlib's, torch's or numpy's)."""
    for fr in reversed(traceback.extract_tb(exc.__traceback__)):
        path = os.path.abspath(fr.filename)
        if path.startswith(_PKG_DIR) or "site-packages" in path or "dist-packages" in path:
            continue
        if fr.line:
            return fr.line.strip()
    return ""


def _short_exc(exc: BaseException) -> str:
    """One line: the exception and the learner's line that raised it (not genlib's)."""
    line = _learner_line(exc)
    where = f" (at: {line})" if line else ""
    return f"your code raised {type(exc).__name__}: {exc}{where}"


# ----------------------------------------------------------------------------- the call watcher
_TORCH_DTYPES = {"float": "float32", "double": "float64", "half": "float16", "bfloat16": "bfloat16",
                 "long": "int64", "int": "int32", "bool": "bool", "byte": "uint8", "short": "int16",
                 "char": "int8", "complexfloat": "complex64", "complexdouble": "complex128"}
_DEVICE_RE = re.compile(r"same device|on device|expected device|device type|different devices|"
                        r"\bcuda\b|torch\.cuda\.|\bmps\b", re.I)
_DTYPE_RE = re.compile(r"dtype|scalar type|did not match|can't be cast|cannot be cast|"
                       r"\(torch\.\w*Tensor\) and weight type|Expected floating point type|"
                       r"expected .*(Float|Double|Half|BFloat16).* but (got|found)", re.I)


def _dtype_words(text: str) -> list[str]:
    """float32/float64/… named in a torch error message, in order, without repeats."""
    found = []
    for m in re.finditer(r"(ComplexDouble|ComplexFloat|BFloat16|Double|Float|Half|Long|Int|Bool|Byte|Short|Char)"
                         r"(?:Tensor)?\b", text, re.I):
        w = _TORCH_DTYPES.get(m.group(1).lower())
        if w and w not in found:
            found.append(w)
    return found


def _is_tensor(x) -> bool:
    import torch
    return isinstance(x, torch.Tensor)


def _is_array(x) -> bool:
    """A torch tensor or a NumPy array (both are watched for in-place changes)."""
    if _is_tensor(x):
        return True
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return False
    return isinstance(x, np.ndarray) and x.dtype != object


def _flat_args(args, kwargs, names):
    """(label, tensor) for every tensor argument, one level into lists, tuples and dicts."""
    out = []

    def add(label, v):
        if _is_array(v):
            out.append((label, v))
        elif isinstance(v, (list, tuple)):
            for j, u in enumerate(v):
                if _is_array(u):
                    out.append((f"{label}[{j}]", u))
        elif isinstance(v, dict):
            for k, u in v.items():
                if _is_array(u):
                    out.append((f"{label}[{k!r}]", u))

    for i, a in enumerate(args):
        add(names[i] if i < len(names) else f"argument {i + 1}", a)
    for k, a in kwargs.items():
        add(k, a)
    return out


def _same(before, after) -> bool:
    import torch
    if not _is_tensor(after):
        import numpy as np
        return before.shape == after.shape and before.dtype == after.dtype and bool(
            np.array_equal(before, after, equal_nan=after.dtype.kind in "fc"))
    if before.shape != after.shape or before.dtype != after.dtype:
        return False
    if after.device.type == "meta":
        return True
    a = after.detach()
    if a.is_floating_point() or a.is_complex():
        return bool(torch.equal(torch.nan_to_num(before), torch.nan_to_num(a))
                    and torch.equal(torch.isnan(before), torch.isnan(a)))
    return bool(torch.equal(before, a))


class _Watched:
    """Stands for the learner's function inside ``run_check``: records what each call received
    (dtypes, devices) and returned, and which tensor inputs it changed."""

    def __init__(self, fn):
        self._fn = fn
        self.__name__ = getattr(fn, "__name__", "fn")
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn
        try:
            self._names = [p.name for p in inspect.signature(fn).parameters.values()
                           if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            self._names = []
        self.mutated: list[str] = []
        self.last_inputs: list[tuple[str, Any]] = []
        self.last_output = None

    def __getattr__(self, item):  # e.g. a case reading fn.some_attribute
        if item == "_fn":
            raise AttributeError(item)
        return getattr(self._fn, item)

    def __call__(self, *args, **kwargs):
        tensors = _flat_args(args, kwargs, self._names)
        snaps = []
        for label, t in tensors:
            try:
                snaps.append((label, t, t.detach().clone() if _is_tensor(t) else t.copy()))
            except Exception:  # noqa: BLE001 - an exotic tensor we cannot copy is not watched
                pass
        self.last_inputs = [(label, t.dtype, t.device) for label, t in tensors if _is_tensor(t)]
        self.last_output = None
        try:
            out = self._fn(*args, **kwargs)
        except BaseException as e:
            try:
                e._genlib_in_learner = True  # noqa: SLF001 - tags where the error came from
            except Exception:  # noqa: BLE001
                pass
            raise
        finally:
            for label, t, before in snaps:
                try:
                    same = _same(before, t)
                except Exception:  # noqa: BLE001
                    same = True
                if not same and label not in self.mutated:
                    self.mutated.append(label)
        self.last_output = out
        return out


def _out_desc(out) -> str:
    if _is_tensor(out):
        return f"a {str(out.dtype).replace('torch.', '')} tensor on {out.device.type}"
    if isinstance(out, (tuple, list)) and out and any(_is_tensor(o) for o in out):
        parts = [str(o.dtype).replace("torch.", "") if _is_tensor(o) else type(o).__name__ for o in out]
        return f"({', '.join(parts)})"
    return type(out).__name__


def _explain(exc: BaseException, watch: _Watched | None) -> tuple[str, str]:
    """(kind, message) for an exception raised while a case ran."""
    text = str(exc)
    in_learner = bool(getattr(exc, "_genlib_in_learner", False))
    inputs = watch.last_inputs if watch is not None else []
    floating = [(lab, dt, dev) for lab, dt, dev in inputs if dt.is_floating_point]
    kind = ""
    if _DEVICE_RE.search(text):
        kind = "device"
    elif _DTYPE_RE.search(text):
        kind = "dtype"
    if not kind:
        return "crash", _short_exc(exc)
    line = _learner_line(exc) if in_learner else ""
    at = f", at: {line}" if line else ""
    torch_says = f'(torch: "{text.splitlines()[0][:160]}"{at})'
    if kind == "device":
        devs = sorted({str(dev) for _, _, dev in inputs})
        got = f" It was called with tensors on {', '.join(devs)}." if devs else ""
        if in_learner:
            return kind, (f"device mismatch inside your function: it mixes tensors on different devices "
                          f"{torch_says}.{got} A tensor you create (torch.randn, torch.zeros, torch.tensor, "
                          "a window, a mask) lands on the CPU unless you say otherwise: create it on the "
                          "inputs' device, e.g. torch.rand(..., device=x.device, dtype=x.dtype) or "
                          "torch.zeros_like(x), so the chapter runs unchanged on a GPU")
        out = _out_desc(watch.last_output) if watch is not None else "its result"
        return kind, (f"your function returned {out}, on another device than its inputs, and the "
                      f"chapter's code cannot use it {torch_says}.{got} Keep every tensor on the "
                      "inputs' device (device=x.device, *_like constructors)")
    order = list(_TORCH_DTYPES.values())
    words = sorted(_dtype_words(text)[:2], key=order.index)
    mixed = " and ".join(words) if len(words) == 2 else "different dtypes"
    called = ""
    if floating:
        dts = sorted({str(dt).replace("torch.", "") for _, dt, _ in floating})
        labels = ", ".join(lab for lab, _, _ in floating[:4])
        called = f" This case called it with {' and '.join(dts)} inputs ({labels}), as the chapter does."
    if in_learner:
        return kind, (f"dtype mismatch inside your function: it mixes {mixed} tensors {torch_says}."
                      f"{called} A tensor you create (torch.randn, torch.zeros, torch.tensor, "
                      "torch.arange, a window such as metrics.gaussian_window, which is float64) gets its "
                      "own default dtype unless you say otherwise: create it in the inputs' dtype and "
                      "device — torch.randn(..., dtype=x.dtype, device=x.device), torch.zeros_like(x), "
                      "or w.to(x.dtype) — and do not cast the inputs (.float(), .double()) unless you "
                      "cast the result back")
    out = _out_desc(watch.last_output) if watch is not None else "its result"
    return kind, (f"your function returned {out}; combined with tensors in the inputs' dtype (as this "
                  f"check does, and code that uses your result may) that fails {torch_says}.{called} "
                  "Return the inputs' dtype: compute in it, or cast the result back with .to(x.dtype)")


def _is_stub(e: NotImplementedError) -> bool:
    """The exercise stub's bare ``raise NotImplementedError`` (no message; from the grading worker
    only the location is added), as opposed to torch's NotImplementedError for an unsupported call,
    which carries a message and is a mistake to explain, not "not done yet"."""
    text = str(e)
    return text == "" or text.startswith(" (at: ")


def run_check(name: str, fn: Any) -> Report:
    """Run every case of check ``name`` on ``fn``; never raises for a learner's mistake."""
    spec = get_spec(name)
    results: list[CaseResult] = []
    watch = None
    if not spec.mutates and not inspect.isclass(spec.reference) and not inspect.isclass(fn) and callable(fn):
        watch = _Watched(fn)
    target = watch if watch is not None else fn
    mutated_in: list[tuple[str, list[str]]] = []
    for case in spec.cases:
        if watch is not None:
            watch.mutated = []
            watch.last_inputs, watch.last_output = [], None
        try:
            case.fn(target)
        except NotImplementedError as e:
            if _is_stub(e):
                return Report(name, [], not_implemented=True)
            kind, msg = _explain(e, watch)  # torch's own (e.g. F.interpolate's mode): a mistake
            results.append(CaseResult(case.name, False, msg, kind, case.priority, case.depends_on))
        except CheckFailure as e:
            kind = "generic" if getattr(e, "generic", False) else ""
            results.append(CaseResult(case.name, False, str(e), kind, case.priority, case.depends_on))
        except Exception as e:  # the learner's code crashed inside the case
            kind, msg = _explain(e, watch)
            results.append(CaseResult(case.name, False, msg, kind, case.priority, case.depends_on))
        else:
            results.append(CaseResult(case.name, True, "", "", case.priority, case.depends_on))
        if watch is not None and watch.mutated:
            mutated_in.append((case.name, list(watch.mutated)))
    if mutated_in:
        explicit = [r for r, c in zip(results, spec.cases) if not r.passed and (
            c.inputs or "in place" in r.message.lower() or "in-place" in r.message.lower())]
        if explicit:
            for r in explicit:
                r.kind, r.priority = "inputs", min(r.priority, -10)
        else:
            case_name, labels = mutated_in[0]
            what = ", ".join(labels)
            results.append(CaseResult(
                INPUTS_CASE, False,
                f"your function changed its input{'s' if len(labels) > 1 else ''} {what} in place (in the "
                f"case \"{case_name}\"): an in-place operation (+=, *=, x[...] = …, .add_(), .clamp_(), "
                "an out= argument) on an argument overwrites the caller's data, and the chapter reuses "
                "that tensor afterwards. Work on a copy (x = x.clone()) or use out-of-place operations "
                "(x = x + …, torch.where)", "inputs", -10))
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
    if isinstance(fn, _Watched):  # probes get the learner's object itself
        fn = fn._fn
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
def _dt(dtype) -> str:
    return str(dtype).replace("torch.", "")


def expect_tensor(out, shape=None, what: str = "your function's output", dtype=None, device=None):
    """Fail unless ``out`` is a tensor (of ``shape``, ``dtype`` and ``device`` when given)."""
    import torch

    if not torch.is_tensor(out):
        raise CheckFailure(f"{what} should be a torch.Tensor, got {type(out).__name__}", generic=True)
    if shape is not None and tuple(out.shape) != tuple(shape):
        raise CheckFailure(f"{what} has shape {tuple(out.shape)}, expected {tuple(shape)}", generic=True)
    if dtype is not None and out.dtype != dtype:
        raise CheckFailure(f"{what} has dtype {_dt(out.dtype)}, expected {_dt(dtype)}: the chapter's code "
                           f"uses it as {_dt(dtype)}. Create new tensors in the inputs' dtype "
                           "(dtype=x.dtype, *_like constructors) and do not cast with .float()/.double()")
    if device is not None and out.device.type != torch.device(device).type:
        raise CheckFailure(f"{what} is on {out.device.type}, expected {torch.device(device).type} (the "
                           "inputs' device): create new tensors with device=x.device (or *_like)")
    return out


def expect_like(out, like, what: str = "your function's output"):
    """Fail unless ``out`` has the shape, dtype and device of the tensor ``like`` (plain-words message)."""
    return expect_tensor(out, tuple(like.shape), what, dtype=like.dtype, device=like.device)


def expect_close(out, expected, what: str = "your result", hint: str = "",
                 rtol: float = 1e-4, atol: float = 1e-5, dtype=None):
    """Fail with ``hint`` unless ``out`` matches ``expected`` (shape, then dtype when given, then values).

    A NaN or inf in ``out`` never passes, even where ``expected`` has one too.
    """
    import torch

    expect_tensor(out, tuple(torch.as_tensor(expected).shape), what, dtype=dtype)
    expected = torch.as_tensor(expected).detach().to(dtype=out.dtype, device=out.device)
    if not torch.isfinite(out).all():
        raise CheckFailure(f"{what} contains NaN or inf. {hint}".strip(), generic=True)
    if not torch.allclose(out.detach(), expected, rtol=rtol, atol=atol):
        err = (out.detach() - expected).abs().max().item()
        raise CheckFailure(f"{what} differs from the reference (max error {err:.3g}). {hint}".strip(),
                           generic=True)


# ----------------------------------------------------------------------------- for galleries (tests)
def assert_first_failure(name: str, fn: Any, case: str, fragment: str = "", first: bool = True) -> Report:
    """Gallery assertion: check ``name`` rejects ``fn``, and the message the learner reads FIRST is
    the one of case ``case`` and contains ``fragment`` (case-insensitive).

    ``first=False`` (for a second entry on the same wrong implementation): only that case ``case``
    fails with ``fragment`` in its own message, which the learner sees after fixing the first.
    """
    report = run_check(name, fn)
    assert not report.passed, f"{name} accepted a wrong implementation (expected to fail {case!r})"
    if not first:
        assert case in report.failed_cases, (
            f"{name}: expected case {case!r} to fail, failed: {report.failed_cases}\n{report.text()}")
        msg = report.message_for(case)
        assert fragment.lower() in msg.lower(), f"{name}/{case}: message {msg!r} lacks {fragment!r}"
        return report
    lead = report.lead
    assert lead is not None and lead.name == case, (
        f"{name}: expected the first message to be case {case!r}, got {report.first_failed!r}\n"
        f"{report.text()}")
    assert fragment.lower() in lead.message.lower(), (
        f"{name}/{case}: first message {lead.message!r} lacks {fragment!r}")
    return report
