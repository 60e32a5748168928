"""The grading worker: the only place where a submitted function runs while it is graded.

``python -m genlib.grading.worker FD`` starts a *zygote*: a fresh interpreter, started by the
judge with a clean environment, that imports torch and genlib (no learner code ever runs in it)
and then waits on the control socket ``FD``. For each exercise the judge sends a socket; the
zygote forks one child per exercise, which

* starts its own session, drops to the ``nobody`` account when the grader runs as root, applies
  rlimits (address space, CPU seconds, file size, no core files) and moves into a fresh empty
  directory; stdin/stdout/stderr go to ``/dev/null`` (nothing it prints reaches the judge);
* makes the exercise's own genlib reference unusable (its code is replaced by one that raises),
* installs an audit hook that refuses, from then on, to open genlib's sources, the solutions and
  the judge's folder, to write outside its own folder, to start processes, to load native code
  through ctypes, to connect sockets and to send signals;
* only then unpickles the learner's function or class, and serves ``call`` / ``backward`` /
  ``probe`` requests: it decodes plain data (``genlib.grading.wire``), calls the function (or runs
  genlib's probe from ``genlib.probes`` on the learner's object) and sends back what it returned.

The child never says whether a check passed: it has no checks. Whatever it sends is treated by the
judge as the learner function's return value, and judged there.
"""
from __future__ import annotations

import functools
import json
import os
import resource
import signal
import socket
import struct
import sys
import traceback
import types

import torch

from genlib.grading import wire

_SKIP_PRELOAD = ("genlib.checks", "genlib.notebooks", "genlib.cli", "genlib.__main__",
                 "genlib.grading.judge")


def _prctl(option: int, value: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except Exception:  # noqa: BLE001 - not Linux: the hardening is best effort
        pass


PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4


def _preload() -> None:
    """Import genlib's modules now, before the audit hook forbids reading their sources."""
    import importlib
    import pkgutil

    import genlib

    for mod in pkgutil.walk_packages(genlib.__path__, "genlib."):
        if mod.name.startswith(_SKIP_PRELOAD):
            continue
        try:
            importlib.import_module(mod.name)
        except Exception:  # noqa: BLE001 - an optional module that cannot load is not needed
            pass
    # The modules of the references to block (some live in genlib.checks): the worker may be
    # unable to read its sources later (audit hook, or a private folder when run as nobody).
    extra = [m for m in os.environ.pop("GENLIB_PRELOAD", "").split(",") if m]
    for name in extra + list(_STDLIB + _OPTIONAL):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001
            pass
    _warm_up()


# Imported before the worker may drop to ``nobody`` (who may not be able to read the interpreter's
# library folder) and before the audit hook: what a learner's function may reasonably import.
_STDLIB = ("math", "cmath", "statistics", "random", "itertools", "functools", "collections",
           "operator", "numbers", "decimal", "fractions", "copy", "typing", "dataclasses",
           "warnings", "inspect", "re", "json", "string", "textwrap", "time", "contextlib",
           "enum", "abc", "bisect", "heapq", "array", "struct", "cloudpickle", "pickle")
_OPTIONAL = ("numpy.linalg", "numpy.random", "numpy.fft", "scipy", "scipy.linalg",
             "scipy.special", "torch.distributions", "torch.nn.functional", "torch.linalg",
             "torch.fft", "torch.special", "sympy", "mpmath")


def _warm_up() -> None:
    """Run the usual operations once so that their lazy imports happen here, not in a worker."""
    import numpy as np
    import torch.nn.functional as F

    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = (F.softplus(x) ** 2).sum() + F.binary_cross_entropy_with_logits(x, torch.ones_like(x))
    (g,) = torch.autograd.grad(y, x, create_graph=True)
    g.sum().backward()
    a = x.detach().T @ x.detach() + torch.eye(3, dtype=torch.float64)
    torch.linalg.cholesky(a), torch.linalg.inv(a), torch.linalg.eigh(a), torch.logdet(a)
    torch.distributions.MultivariateNormal(torch.zeros(3, dtype=torch.float64), a).log_prob(a)
    torch.distributions.kl_divergence(torch.distributions.Normal(0.0, 1.0),
                                      torch.distributions.Normal(1.0, 2.0))
    F.conv2d(torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3)), torch.cdist(a, a)
    np.linalg.eigh(a.numpy()), np.linalg.inv(a.numpy())
    for device, dtype in (("meta", torch.float32), ("cpu", torch.bfloat16)):  # e.g. a device check
        m = torch.randn(4, 2, device=device, dtype=dtype).requires_grad_(True)
        w = torch.nn.Parameter(torch.rand(2, device=device, dtype=dtype))
        (gm,) = torch.autograd.grad((w * m * torch.rand(4, 1, device=device, dtype=dtype)).sum(), m,
                                    create_graph=True)
        ((gm.flatten(1).norm(dim=1) - 1) ** 2).mean().backward()
    torch.optim.SGD([w], lr=0.1).step(), torch.optim.Adam([torch.nn.Parameter(x.detach())]).step()


# ----------------------------------------------------------------------------- the zygote
def zygote(control_fd: int) -> None:
    _prctl(PR_SET_DUMPABLE, 0)          # other processes of this user cannot ptrace/read us
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    _preload()
    ctl = socket.socket(fileno=control_fd)
    ctl.sendall(b"R")  # ready
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(ctl, 1 << 16, 1)
        except OSError:
            return
        if not data:
            return
        req = json.loads(data.decode())
        if len(fds) != 1:
            return
        pid = os.fork()
        if pid == 0:
            try:
                ctl.close()
                _child(fds[0], req)
            finally:
                os._exit(0)
        os.close(fds[0])
        ctl.sendall(struct.pack("<q", pid))


# ----------------------------------------------------------------------------- the child
def _limits(req: dict) -> None:
    workdir = os.path.join(os.environ.get("TMPDIR") or "/tmp", os.path.basename(req["workdir"]))
    os.mkdir(workdir, 0o700)
    req["workdir"] = workdir
    os.setsid()
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    mem = int(req.get("memory_bytes", 0))
    if mem:
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + mem, used + mem))
    cpu = int(req.get("cpu_seconds", 0))
    if cpu:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 2 ** 20, 64 * 2 ** 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if os.geteuid() == 0:  # grading as root: the learner's code runs as nobody
        import pwd

        try:
            nobody = pwd.getpwnam("nobody")
            os.chown(workdir, nobody.pw_uid, nobody.pw_gid)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))
        except (KeyError, OSError):
            pass
    os.chdir(workdir)
    os.environ["HOME"] = os.environ["TMPDIR"] = workdir
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    torch.set_num_threads(1)


def _resolve(ref):
    import importlib

    mod_name, qualname = ref
    obj = importlib.import_module(mod_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _block_reference(req: dict):
    """Make genlib's own answer to this exercise raise, wherever it is referenced from."""
    import importlib

    mod_name, qualname = req["reference"]
    obj = importlib.import_module(mod_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    msg = (f"genlib's reference for {req['exercise']} ({mod_name}.{qualname}) is not available "
           "while your work is graded: the grader scores your own code")

    def stub_code(n_free: int):
        names = [f"_f{i}" for i in range(n_free)]
        src = "def _outer():\n"
        src += "".join(f"    {n} = None\n" for n in names)
        src += "    def _blocked(*args, **kwargs):\n"
        src += "".join(f"        {n}\n" for n in names)
        src += f"        raise RuntimeError({msg!r})\n    return _blocked\n"
        ns: dict = {}
        exec(compile(src, "<genlib grading>", "exec"), ns)  # noqa: S102 - our own constant text
        return ns["_outer"]().__code__

    import types

    if isinstance(obj, types.FunctionType):
        obj.__code__ = stub_code(len(obj.__code__.co_freevars))
        obj.__wrapped__ = None
    elif isinstance(obj, type):
        def blocked(self, *args, **kwargs):
            raise RuntimeError(msg)
        for attr in ("__init__", "forward", "__call__"):
            if attr in vars(obj) or attr == "__init__":
                setattr(obj, attr, blocked)
    return obj


def _audit(deny_read: list[str], workdir: str, deny_source: list[str] = ()):
    """Refuse, from now on: reading ``deny_read`` folders and Python/notebook sources under
    ``deny_source``; writing outside ``workdir``; processes, native loading, sockets, signals."""
    deny_read = [os.path.realpath(p) for p in deny_read]
    deny_source = [os.path.realpath(p) for p in deny_source]
    workdir = os.path.realpath(workdir)
    source_suffixes = (".py", ".pyc", ".pyo", ".ipynb", ".pth")
    always = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
              "os.fork", "os.forkpty", "pty.spawn", "ctypes.dlopen", "ctypes.dlsym",
              "ctypes.dlsym/handle", "ctypes.call_function", "os.kill", "os.killpg",
              "signal.pthread_kill", "socket.connect", "socket.bind", "os.link", "os.symlink",
              "sys.remote_exec", "os.chmod", "os.chown"}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    path_events = {"os.remove", "os.rename", "os.rmdir", "os.truncate", "os.mkdir",
                   "shutil.rmtree", "shutil.move", "os.utime"}

    def inside(path, roots):
        return any(path == r or path.startswith(r + os.sep) for r in roots)

    def hook(event, args):
        if event in always:
            raise PermissionError(f"{event} is not allowed while grading")
        if event == "open" or event in path_events:
            path = args[0] if args else None
            if isinstance(path, int) or path is None:
                return
            try:
                real = os.path.realpath(os.fsdecode(path))
            except Exception:  # noqa: BLE001
                raise PermissionError("unreadable path while grading") from None
            if inside(real, [workdir]):
                return
            if inside(real, deny_read) or (inside(real, deny_source)
                                           and real.endswith(source_suffixes)):
                raise PermissionError(f"{real} cannot be opened while grading")
            writing = event != "open"
            if event == "open":
                mode, flags = (args[1] if len(args) > 1 else None), (args[2] if len(args) > 2 else 0)
                writing = bool((isinstance(mode, str) and any(c in mode for c in "wax+"))
                               or (isinstance(flags, int) and flags & write_flags))
            if writing and real != os.devnull:
                raise PermissionError(f"writing {real} is not allowed while grading")

    sys.addaudithook(hook)


class _Chan:
    def __init__(self, fd: int):
        self.sock = socket.socket(fileno=fd)

    def read(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise EOFError
            buf += chunk
        return bytes(buf)

    def recv(self):
        return wire.unpack(self.read)

    def send(self, header: dict, blobs: list) -> None:
        self.sock.sendall(wire.pack(header, blobs))


def _where(exc: BaseException) -> str:
    for fr in reversed(traceback.extract_tb(exc.__traceback__)):
        if "genlib" not in fr.filename.split(os.sep) and fr.line:
            return fr.line.strip()[:200]
    return ""


def _error(exc: BaseException) -> dict:
    try:
        text = str(exc)[:2000]
    except Exception:  # noqa: BLE001
        text = ""
    return {"ok": False, "error": {"type": type(exc).__name__[:80], "message": text,
                                   "where": _where(exc)}}


def _snapshot(refs):
    snap = []
    for r in refs:
        if isinstance(r, torch.Tensor):
            snap.append(r.detach().clone())
        elif isinstance(r, torch.Generator):
            snap.append(r.get_state())
        else:
            snap.append(r.copy())
    return snap


def _changed(before, after) -> bool:
    import numpy as np

    if isinstance(after, torch.Generator):
        return True  # the judge's generator must advance as if it had run there
    if isinstance(after, torch.Tensor):
        a = after.detach()
        return a.shape != before.shape or a.dtype != before.dtype or not torch.equal(
            torch.nan_to_num(a) if a.is_floating_point() else a,
            torch.nan_to_num(before) if before.is_floating_point() else before)
    return after.shape != before.shape or not np.array_equal(after, before, equal_nan=True)


def _callback(chan: _Chan, index: int):
    """A function that asks the judge to run the judge's callable ``index`` on plain data."""
    def call_judge(*args, **kwargs):
        blobs: list = []
        enc = wire.encode((list(args), dict(kwargs)), blobs, strict=False)
        chan.send({"op": "callback", "cb": index, "args": enc}, blobs)
        header, rblobs = chan.recv()
        if not header.get("ok"):
            err = header.get("error", {})
            raise RuntimeError(f"{err.get('type')}: {err.get('message')}")
        return wire.decode(header["out"], rblobs)
    return call_judge


def _probe_function(header: dict):
    """The genlib probe the judge asked for: a function defined in a ``genlib.probes`` module."""
    import types

    mod, name = str(header.get("module", "")), str(header.get("name", ""))
    if not mod.startswith("genlib.probes.") or not name.isidentifier():
        raise PermissionError(f"{mod}.{name} is not a genlib probe")
    how = getattr(sys.modules.get(mod), name, None)  # imported before the learner's code ran
    if not isinstance(how, types.FunctionType) or how.__module__ != mod:
        raise PermissionError(f"{mod}.{name} is not a genlib probe")
    return how


def _fingerprint(code) -> tuple:
    """What a code object is, wherever it travelled: name, first line, bytecode, variable names
    and constants (docstring included; nested code by its own fingerprint). A copy of genlib's
    function (its code object in a new function, or cloudpickle's by-value pickle of it, which
    keeps all of these but not the file name) matches; code a learner wrote matches only if it
    reproduced genlib's function down to its docstring and line number."""
    consts = tuple(_fingerprint(c) if isinstance(c, types.CodeType) else repr(c)
                   for c in code.co_consts)
    return (code.co_name, code.co_firstlineno, code.co_code, code.co_varnames, consts)


def _reference_prints(obj) -> set:
    """Fingerprints of the reference's own code (a function, or a class's methods), taken before
    the reference is blocked."""
    codes = []
    if isinstance(obj, types.FunctionType):
        codes.append(obj.__code__)
    elif isinstance(obj, type):
        for v in vars(obj).values():
            v = getattr(v, "__func__", v)
            if isinstance(v, types.FunctionType):
                codes.append(v.__code__)
    return {_fingerprint(c) for c in codes}


def _copies_reference(fn, prints: set, reference, limit: int = 20000) -> bool:
    """True when the submission reaches a *copy* of genlib's reference (the same code in another
    function object: ``types.FunctionType(ref.__code__, …)`` or cloudpickle's by-value pickling of
    genlib). Walks functions, closures, globals they name, defaults, classes, partials, containers."""
    if not prints:
        return False
    seen, todo = set(), [fn]
    while todo and len(seen) < limit:
        o = todo.pop()
        if id(o) in seen or o is reference:
            continue
        seen.add(id(o))
        if isinstance(o, types.MethodType):
            todo.append(o.__func__)
        elif isinstance(o, types.FunctionType):
            stack = [o.__code__]
            names: set = set()
            while stack:
                c = stack.pop()
                if _fingerprint(c) in prints:
                    return True
                names.update(c.co_names)
                stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
            g = o.__globals__
            todo.extend(g[n] for n in names if n in g)
            todo.extend(cell.cell_contents for cell in (o.__closure__ or ())
                        if _cell_filled(cell))
            todo.extend(o.__defaults__ or ())
            todo.extend((o.__kwdefaults__ or {}).values())
        elif isinstance(o, type):
            if o.__module__ in ("builtins",) or o.__module__.startswith("torch"):
                continue
            todo.extend(vars(o).values())
            todo.extend(o.__mro__[1:])
        elif isinstance(o, (staticmethod, classmethod)):
            todo.append(o.__func__)
        elif isinstance(o, property):
            todo.extend(f for f in (o.fget, o.fset, o.fdel) if f is not None)
        elif isinstance(o, functools.partial):
            todo.append(o.func)
            todo.extend(o.args)
            todo.extend(o.keywords.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            todo.extend(list(o)[:1000])
        elif isinstance(o, dict):
            todo.extend(list(o.values())[:1000])
        elif isinstance(o, torch.nn.Module):
            todo.append(type(o))
            todo.extend(o.__dict__.get("_modules", {}).values())
        elif callable(o) and not isinstance(o, (types.BuiltinFunctionType, types.ModuleType)):
            todo.append(type(o))
    return False


def _cell_filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _serve(chan: _Chan, reference, prints: set = frozenset()) -> None:
    import cloudpickle

    fn, graphs = None, {}
    while True:
        try:
            header, blobs = chan.recv()
        except (EOFError, OSError, wire.ProtocolError, struct.error):
            return
        op = header.get("op")
        out_blobs: list = []
        try:
            if op == "load":
                fn = cloudpickle.loads(blobs[0])
                kind = ("reference" if fn is reference or _copies_reference(fn, prints, reference)
                        else "class" if isinstance(fn, type)
                        else "function" if callable(fn) else "other")
                reply = {"ok": True, "kind": kind}
            elif op == "call":
                refs: list = []
                torch.set_rng_state(wire.decode(header["rng"], blobs))
                args, kwargs = wire.decode(header["args"], blobs, refs=refs,
                                           make_callback=lambda i: _callback(chan, i))
                before = _snapshot(refs)
                with torch.set_grad_enabled(bool(header.get("grad"))):
                    result = fn(*args, **kwargs)
                outs: list = []
                enc = wire.encode(result, out_blobs, strict=False, refs=outs)
                mutated = [[i, wire.encode(r, out_blobs, strict=False)]
                           for i, (b, r) in enumerate(zip(before, refs)) if _changed(b, r)]
                reply = {"ok": True, "out": enc, "mutated": mutated,
                         "rng": wire.encode(torch.get_rng_state(), out_blobs)}
                if header.get("keep"):
                    graphs[header["id"]] = ([r for r in refs if isinstance(r, torch.Tensor)],
                                            [o for o in outs if isinstance(o, torch.Tensor)])
            elif op == "probe":
                how = _probe_function(header)
                torch.set_rng_state(wire.decode(header["rng"], blobs))
                refs = []
                args, kwargs = wire.decode(header["args"], blobs, refs=refs,
                                           make_callback=lambda i: _callback(chan, i))
                before = _snapshot(refs)
                with torch.set_grad_enabled(bool(header.get("grad"))):
                    result = how(fn, *args, **kwargs)
                enc = wire.encode(result, out_blobs, strict=False)
                mutated = [[i, wire.encode(r, out_blobs, strict=False)]
                           for i, (b, r) in enumerate(zip(before, refs)) if _changed(b, r)]
                reply = {"ok": True, "out": enc, "mutated": mutated,
                         "rng": wire.encode(torch.get_rng_state(), out_blobs)}
            elif op == "backward":
                ins, outs = graphs[header["id"]]
                grads = wire.decode(header["grads"], blobs)
                pairs = [(o, g) for o, g in zip(outs, grads)
                         if g is not None and isinstance(o, torch.Tensor) and o.requires_grad]
                want = [i for i, t in enumerate(ins) if t.requires_grad]
                got = [None] * len(ins)
                if pairs and want:
                    res = torch.autograd.grad([o for o, _ in pairs], [ins[i] for i in want],
                                              [g.to(o.dtype) for o, g in pairs],
                                              allow_unused=True, retain_graph=True)
                    for i, g in zip(want, res):
                        got[i] = g
                reply = {"ok": True, "grads": wire.encode(got, out_blobs, strict=False)}
            elif op == "release":
                graphs.pop(header.get("id"), None)
                reply = {"ok": True}
            else:
                return
        except BaseException as e:  # noqa: BLE001 - whatever the learner's code raised
            out_blobs = []
            reply = _error(e)
        try:
            chan.send(reply, out_blobs)
        except BaseException as e:  # noqa: BLE001 - e.g. an unencodable reply
            try:
                chan.send(_error(e), [])
            except OSError:
                return


def _child(fd: int, req: dict) -> None:
    chan = _Chan(fd)
    try:
        _limits(req)
        prints = _reference_prints(_resolve(req["reference"]))
        reference = _block_reference(req)
        _audit(req.get("deny_read", []), req["workdir"], req.get("deny_source", []))
    except BaseException as e:  # noqa: BLE001 - report and stop: the judge fails the exercise
        chan.send({"ok": False, "error": {"type": "SetupError", "message": repr(e)[:500],
                                          "where": ""}}, [])
        return
    chan.send({"ok": True, "ready": True}, [])
    _serve(chan, reference, prints)


if __name__ == "__main__":
    zygote(int(sys.argv[1]))
