"""The judge: computes every verdict in a process where no learner code runs.

For each exercise the judge runs genlib's check cases itself, on a :class:`RemoteFunction` that
stands for the learner's function: each call sends its arguments (plain data only) to a worker
process (``genlib.grading.worker``), which calls the learner's function there and sends back what
it returned; the judge rebuilds that as plain tensors and numbers and the case compares it with
genlib's reference, exactly as the interactive ``check`` does in the notebook. Gradients cross the
boundary through :class:`_RemoteCall`, an autograd function whose backward asks the worker for the
input gradients. In-place changes to the arguments and the global torch RNG are copied back, so a
case sees what it would see in-process.

What the worker sends is only ever *the learner's return value*: no pass/fail claim, exit code,
printed line or patch inside the worker can change a verdict, and nothing it sends is unpickled.

A case that needs more than plain data — a network, an optimiser, an exercise whose answer is a
class — runs a *probe* (``genlib.exercises.probe``): genlib code from ``genlib.probes`` that the
worker runs on the learner's object, building what it needs from plain arguments, and whose plain
result comes back to the judge for the verdict. Only functions of ``genlib.probes`` are run that
way.

Fail-closed rule: a case that would hand a module, an optimiser or another live object to the
learner's code directly (not through a probe) is not graded automatically — the exercise scores 0
with status ``manual review`` (see :data:`MANUAL`).
"""
from __future__ import annotations

import builtins
import inspect
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from genlib.exercises import get_spec, run_check
from genlib.grading import wire

MANUAL = "manual review"
PKG_DIR = Path(__file__).resolve().parent.parent
ROOT = PKG_DIR.parent


class Abort(BaseException):
    """Stops grading one exercise: not a learner's failing case, so ``run_check`` lets it through."""

    status = "error"


class Ungradable(Abort):
    status = MANUAL


class WorkerTimeout(Abort):
    status = "timed out"


class WorkerGone(Abort):
    status = "crashed"


class RemoteError(Exception):
    """An exception raised by the learner's code in the worker (type name and message only)."""


_SAFE_EXC = {name: getattr(builtins, name) for name in (
    "ArithmeticError", "AttributeError", "IndexError", "KeyError", "LookupError", "MemoryError",
    "NotImplementedError", "OverflowError", "RuntimeError", "TypeError", "ValueError",
    "ZeroDivisionError", "RecursionError", "PermissionError", "OSError", "ImportError",
    "ModuleNotFoundError", "NameError", "UnboundLocalError", "FloatingPointError")}


def _exception(err: dict, probe: bool = False) -> Exception:
    if not isinstance(err, dict):
        return RemoteError("malformed error from the worker")
    name, msg, where = (str(err.get(k, ""))[:2000] for k in ("type", "message", "where"))
    if probe and name == "CheckFailure":  # a probe's own failure message (it can only fail a case)
        from genlib.exercises import CheckFailure

        return CheckFailure(msg)
    text = msg + (f" (at: {where})" if where else "")
    cls = _SAFE_EXC.get(name)
    if cls is None:
        return RemoteError(f"{name}: {text}")
    try:
        return cls(text)
    except Exception:  # noqa: BLE001
        return RemoteError(f"{name}: {text}")


# ----------------------------------------------------------------------------- the zygote
class Zygote:
    """A fresh interpreter with torch and genlib imported, forking one worker per exercise.

    ``sandbox=True``: it runs in its own bubblewrap sandbox (:mod:`genlib.grading.sandbox`) —
    read-only view of Python and the repository with ``hide`` hidden, a private ``/tmp`` where
    the workers' folders are made, no network, its own process namespace, unprivileged. Closing
    it ends the sandbox and, with it, every process any worker started.
    """

    def __init__(self, deny_read: list[str], memory_bytes: int, start_timeout: float = 120,
                 deny_source: list[str] = (str(PKG_DIR),), sandbox: bool = False,
                 hide: list[str] = (), preload: list[str] | None = None):
        from genlib.grading import sandbox as sb

        if preload is None:  # the modules of every reference, which the worker must block
            from genlib.exercises import registry

            preload = sorted({getattr(s.reference, "__module__", None) or "genlib"
                              for s in registry().values()})

        self.deny_read = [str(p) for p in deny_read]
        self.deny_source = [str(p) for p in deny_source]
        self.memory_bytes = memory_bytes
        self.sandbox, self.hide, self.preload = sandbox, list(hide), list(preload)
        ctl, theirs = socket.socketpair()
        argv = [sys.executable, "-m", "genlib.grading.worker", str(theirs.fileno())]
        if sandbox:
            self.root = None
            self.inner_root = "/tmp"
            env = dict(sb.base_env(), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                       GENLIB_PRELOAD=",".join(self.preload))
            cmd, cwd = sb.command(argv, env=env, hide=self.hide, cwd="/tmp"), None
        else:
            self.root = tempfile.mkdtemp(prefix="genlib-worker-", dir=_reachable_tmp())
            os.chmod(self.root, 0o755)
            self.inner_root = self.root
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.root,
                   "TMPDIR": self.root, "LANG": "C.UTF-8", "GENLIB_PROGRESS": "0",
                   "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
                   "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                   "GENLIB_PRELOAD": ",".join(self.preload)}
            cmd, cwd = argv, self.root
        self.proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], env=env, cwd=cwd,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        self.ctl = ctl
        ready, _, _ = select.select([ctl], [], [], start_timeout)
        if not ready or ctl.recv(1) != b"R":
            self.close()
            raise RuntimeError("the grading worker did not start")
        self.n = 0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def restart(self) -> None:
        """End this zygote (and its sandbox, if any) and start a fresh one in its place."""
        self.close()
        fresh = Zygote(self.deny_read, self.memory_bytes, deny_source=self.deny_source,
                       sandbox=self.sandbox, hide=self.hide, preload=self.preload)
        self.__dict__.update(fresh.__dict__)

    def spawn(self, exercise: str, reference: tuple[str, str], timeout: float) -> "Session":
        self.n += 1
        req = {"exercise": exercise, "reference": list(reference), "workdir": f"w{self.n}",
               "memory_bytes": self.memory_bytes, "cpu_seconds": int(timeout) + 5,
               "deny_read": self.deny_read + [self.inner_root], "deny_source": self.deny_source}
        mine, theirs = socket.socketpair()
        try:
            socket.send_fds(self.ctl, [json.dumps(req).encode()], [theirs.fileno()])
            ready, _, _ = select.select([self.ctl], [], [], 30)
            if not ready:
                raise WorkerGone("the grading worker did not answer")
            raw = self.ctl.recv(8)
            if len(raw) != 8:
                raise WorkerGone("the grading worker stopped")
        except OSError:
            mine.close()
            raise WorkerGone("the grading worker stopped") from None
        finally:
            theirs.close()
        (pid,) = struct.unpack("<q", raw)
        # In a sandbox the pid is one of the sandbox's own namespace: never signalled from here.
        host_pid = None if self.sandbox else pid
        workdir = None if self.sandbox else os.path.join(self.root, f"w{self.n}")
        return Session(mine, host_pid, time.monotonic() + timeout, workdir)

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self.ctl.close()
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)


def _reachable_tmp() -> str:
    """A temporary folder that the ``nobody`` account can enter (for a worker started without a
    sandbox by root): TMPDIR when every folder above it lets others in, else /tmp or /var/tmp."""
    if os.geteuid() != 0:
        return tempfile.gettempdir()
    for cand in (tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"):
        p, ok = Path(cand).resolve(), True
        if not p.is_dir():
            continue
        for part in [p, *p.parents]:
            try:
                if not part.stat().st_mode & 0o001:
                    ok = False
                    break
            except OSError:
                ok = False
                break
        if ok:
            return str(p)
    raise RuntimeError("no temporary folder that the nobody account can enter (set TMPDIR)")


# ----------------------------------------------------------------------------- one exercise
class Session:
    """The judge's end of one worker: strict request/reply, with a deadline for the exercise."""

    def __init__(self, sock: socket.socket, pid: int | None, deadline: float, workdir: str | None):
        self.sock, self.pid, self.deadline, self.workdir = sock, pid, deadline, workdir
        self.dead: Abort | None = None
        self.ids = 0
        self.callbacks: list = []
        hello, _ = self._recv()
        if not hello.get("ok"):
            err = hello.get("error", {})
            self._die(WorkerGone(f"the worker could not start: {str(err.get('message'))[:300]}"))

    # transport
    def _read(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            left = self.deadline - time.monotonic()
            ready, _, _ = select.select([self.sock], [], [], max(left, 0))
            if not ready:
                self._die(WorkerTimeout("the exercise ran past its time limit"))
            chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                self._die(WorkerGone("the worker process ended (it crashed, exited, or ran out "
                                     "of memory)"))
            buf += chunk
        return bytes(buf)

    def _recv(self):
        if self.dead is not None:
            raise self.dead
        try:
            return wire.unpack(self._read)
        except (wire.ProtocolError, struct.error) as e:
            self._die(WorkerGone(f"the worker sent a malformed reply ({e})"))

    def _die(self, exc: Abort):
        self.dead = exc
        self.kill()
        raise exc

    def request(self, header: dict, blobs: list) -> tuple[dict, list]:
        if self.dead is not None:
            raise self.dead
        self._send(wire.pack(header, blobs))
        while True:
            reply, rblobs = self._recv()
            if reply.get("op") == "callback":  # the learner's code calls a function of the check
                self._callback(reply, rblobs)
                continue
            if not isinstance(reply.get("ok"), bool):
                self._die(WorkerGone("the worker sent a malformed reply"))
            return reply, rblobs

    def _send(self, data: bytes) -> None:
        """Send within the exercise's deadline: a worker that stops reading cannot block us."""
        try:
            self.sock.settimeout(max(self.deadline - time.monotonic(), 0.001))
            self.sock.sendall(data)
        except (socket.timeout, TimeoutError):
            self._die(WorkerTimeout("the exercise ran past its time limit"))
        except OSError:
            self._die(WorkerGone("the worker process ended"))
        finally:
            try:
                self.sock.settimeout(None)
            except OSError:
                pass

    def _callback(self, req: dict, rblobs: list) -> None:
        """Run the check's own callable here, on the plain data the worker sent; reply with plain
        data. It is genlib's code (e.g. a velocity field that records where it was evaluated), so
        what it records stays in the judge, out of the learner's reach."""
        blobs: list = []
        try:
            fn = self.callbacks[int(req.get("cb"))]
            args, kwargs = wire.decode(req.get("args"), rblobs, grad=False)
            _bounded_callback_args(args, kwargs)
            with torch.no_grad():
                out = fn(*args, **kwargs)
            reply = {"ok": True, "out": wire.encode(out, blobs)}
        except Abort:
            raise
        except BaseException as e:  # noqa: BLE001 - goes back to the learner's code as an error
            blobs = []
            reply = {"ok": False, "error": {"type": type(e).__name__, "message": str(e)[:500]}}
        self._send(wire.pack(reply, blobs))

    def kill(self) -> None:
        """End this worker: its socket closes (a worker that still listens exits on that); outside
        a sandbox it is also killed by pid. In a sandbox a stuck worker goes with its sandbox."""
        if self.pid is not None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        try:
            self.sock.close()
        except OSError:
            pass
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def load(self, payload: bytes) -> str:
        reply, _ = self.request({"op": "load"}, [payload])
        if not reply["ok"]:
            raise _exception(reply.get("error"))
        return str(reply.get("kind"))

    # calls
    def call(self, args, kwargs):
        refs: list = []
        blobs: list = []
        try:
            enc = wire.encode((list(args), dict(kwargs)), blobs, refs=refs,
                              callbacks=self.callbacks)
        except wire.NotData as e:
            raise Ungradable(f"a check hands your function {e}, which the safe grader cannot "
                             "send to a separate process") from None
        tensors = [r for r in refs if isinstance(r, torch.Tensor)]
        box = _Call(self, enc, blobs, refs)
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            outs = _RemoteCall.apply(box, *tensors)
            box.finish_with(list(outs[:-1]))
        else:
            box.run(keep=False)
        return box.result

    def probe(self, how, args, kwargs):
        """Run genlib's probe ``how`` on the learner's object in the worker; its plain result."""
        mod, qual = getattr(how, "__module__", "") or "", getattr(how, "__qualname__", "") or ""
        if not mod.startswith("genlib.probes.") or "<" in qual or "." in qual:
            raise Ungradable(f"a check runs {mod}.{qual} as a probe; only module-level functions "
                             "of genlib.probes can run in the grading worker")
        blobs: list = []
        refs: list = []
        try:
            enc = wire.encode((list(args), dict(kwargs)), blobs, refs=refs, callbacks=self.callbacks)
        except wire.NotData as e:
            raise Ungradable(f"a check hands a probe {e}, which the safe grader cannot send to a "
                             "separate process") from None
        self.ids += 1
        rng = wire.encode(torch.get_rng_state(), blobs)
        header = {"op": "probe", "id": self.ids, "module": mod, "name": qual, "args": enc,
                  "rng": rng, "grad": torch.is_grad_enabled()}
        reply, rblobs = self.request(header, blobs)
        if not reply["ok"]:
            raise _exception(reply.get("error"), probe=True)
        try:
            result = wire.decode(reply["out"], rblobs, grad=False)
            _apply_side_effects(refs, reply, rblobs, probe=True)  # generators, RNG
        except wire.ProtocolError:
            raise
        except Exception as e:  # noqa: BLE001
            raise RemoteError(f"the probe's result is unreadable ({e})") from None
        return result

    def backward(self, call_id: int, grads: list) -> list:
        blobs: list = []
        enc = wire.encode(grads, blobs)
        reply, rblobs = self.request({"op": "backward", "id": call_id, "grads": enc}, blobs)
        if not reply["ok"]:
            raise _exception(reply.get("error"))
        try:
            got = wire.decode(reply["grads"], rblobs, grad=False)
        except Exception as e:  # noqa: BLE001
            raise RemoteError(f"malformed gradients from your code ({e})") from None
        return got if isinstance(got, list) else []


class _Call:
    """One call of the learner's function: encodes, sends, decodes, applies side effects."""

    def __init__(self, session: Session, enc, blobs, refs):
        self.session, self.enc, self.blobs, self.refs = session, enc, blobs, refs
        self.result, self.out_tensors, self.out_grad, self.id = None, [], [], None

    def run(self, keep: bool):
        s = self.session
        s.ids += 1
        self.id = s.ids
        blobs = list(self.blobs)
        rng = wire.encode(torch.get_rng_state(), blobs)
        header = {"op": "call", "id": self.id, "args": self.enc, "rng": rng,
                  "grad": torch.is_grad_enabled() or keep, "keep": keep}
        reply, rblobs = s.request(header, blobs)
        if not reply["ok"]:
            raise _exception(reply.get("error"))
        outs: list = []
        try:
            result = wire.decode(reply["out"], rblobs, refs=outs, grad=not keep)
            self._side_effects(reply, rblobs)
        except (wire.ProtocolError, RemoteError):
            raise
        except Exception as e:  # noqa: BLE001 - learner-made garbage is a wrong answer
            raise RemoteError(f"your function returned something unreadable ({e})") from None
        self.result = result
        self.out_tensors = [o for o in outs if isinstance(o, torch.Tensor)]
        flags: list = []
        _grad_flags(reply["out"], flags)
        self.out_grad = flags
        return self.out_tensors

    def _side_effects(self, reply, rblobs):
        _apply_side_effects(self.refs, reply, rblobs)

    def finish_with(self, tensors: list):
        it = iter(tensors)
        self.result = _replace_tensors(self.result, it)

    def backward(self, grads: list) -> list:
        return self.session.backward(self.id, grads)


def _apply_side_effects(refs: list, reply: dict, rblobs: list, probe: bool = False) -> None:
    """The worker's side effects, as the case may see them. The learner's function worked on
    copies: a tensor or array argument it changed in place is *not* copied back (every value the
    case computes afterwards comes from the arguments as they were before the call); a plain call
    that changed one fails with :class:`RemoteError` (every check treats writing into an input as
    a mistake). A probe's observations of its own inputs come back in its result instead.
    Generators and the global torch RNG advance as they would have in-process."""
    mutated = reply.get("mutated", [])
    if not isinstance(mutated, list):
        raise wire.ProtocolError("malformed mutations")
    changed_input = False
    for item in mutated:
        try:
            idx = int(item[0])
            ref = refs[idx]
        except (TypeError, ValueError, IndexError, KeyError):
            raise wire.ProtocolError("malformed mutations") from None
        if isinstance(ref, torch.Generator):
            val = wire.decode(item[1], rblobs, grad=False)
            if isinstance(val, torch.Generator):
                try:
                    ref.set_state(val.get_state())
                except Exception:  # noqa: BLE001 - an impossible state is ignored, not trusted
                    pass
        else:
            changed_input = True
    state = wire.decode(reply["rng"], rblobs, grad=False)
    if isinstance(state, torch.Tensor) and state.dtype == torch.uint8:
        try:
            torch.set_rng_state(state)
        except Exception:  # noqa: BLE001
            pass
    if changed_input and not probe:
        raise RemoteError("your function changed one of its input tensors in place (e.g. x.mul_(), "
                          "x += …, x[...] = …); the grader gives it copies and compares with "
                          "values computed from the inputs as they were: work on new tensors")


def _grad_flags(node, flags: list):
    """requires_grad of every output tensor, in decode order."""
    if isinstance(node, dict) and len(node) == 1:
        (kind, v), = node.items()
        if kind == "tensor":
            flags.append(bool(v.get("grad")) if isinstance(v, dict) else False)
        elif kind in ("tuple", "list") and isinstance(v, list):
            for x in v:
                _grad_flags(x, flags)
        elif kind == "dict" and isinstance(v, list):
            for pair in v:
                if isinstance(pair, list):
                    for x in pair:
                        _grad_flags(x, flags)


def _replace_tensors(obj, it):
    if isinstance(obj, torch.Tensor):
        return next(it)
    if type(obj) in (tuple, list):
        return type(obj)(_replace_tensors(x, it) for x in obj)
    if type(obj) is dict:
        return {k: _replace_tensors(v, it) for k, v in obj.items()}
    return obj


class _RemoteCall(torch.autograd.Function):
    """Forward: the remote call. Backward: the worker's input gradients for our grad_outputs."""

    @staticmethod
    def forward(ctx, box: _Call, *tensors):
        outs = box.run(keep=True)
        ctx.box, ctx.shapes = box, [(t.shape, t.dtype) for t in tensors]
        ctx.set_materialize_grads(False)
        dummy = torch.zeros(())
        no_grad = [o for o, g in zip(outs, box.out_grad)
                   if not g or not (o.is_floating_point() or o.is_complex())]
        ctx.mark_non_differentiable(dummy, *no_grad)
        return (*outs, dummy)

    @staticmethod
    def backward(ctx, *grad_outputs):
        grads = [g for g in grad_outputs[:-1]]
        got = ctx.box.backward(grads)
        result = []
        for i, (shape, dtype) in enumerate(ctx.shapes):
            g = got[i] if i < len(got) else None
            if isinstance(g, torch.Tensor) and g.shape == shape:
                result.append(g.to(dtype))
            elif g is None:
                result.append(None)
            else:
                raise RemoteError("your code produced a gradient of the wrong shape")
        return (None, *result)


class RemoteFunction:
    """What the judge's check cases call in place of the learner's function."""

    def __init__(self, session: Session, name: str):
        self._session, self.__name__, self.__qualname__ = session, name, name
        self.__module__ = "<submission>"

    def __call__(self, *args, **kwargs):
        return self._session.call(args, kwargs)

    def _genlib_run_probe(self, how, args, kwargs):
        return self._session.probe(how, args, kwargs)


class RemoteClass(RemoteFunction):
    """Stands for the learner's class: only probes may use it (they build instances in the worker)."""

    def __call__(self, *args, **kwargs):
        raise Ungradable("a check builds your class directly instead of through a probe, so the "
                         "safe grader cannot run it")


# ----------------------------------------------------------------------------- grading
def reference_location(ref) -> tuple[str, str] | None:
    mod, qual = getattr(ref, "__module__", None), getattr(ref, "__qualname__", None)
    if not mod or not qual or "<locals>" in qual:
        return None
    return mod, qual


MAX_CALLBACK_NUMEL = 2 ** 22  # elements of one tensor a worker hands a check's callable
MAX_CALLBACK_PRODUCT = 2 ** 24  # bound on any broadcast between the tensors of one callback


def _bounded_callback_args(args, kwargs) -> None:
    """Refuse, before any computation, tensors that would make a check's callable (run here, in
    the judge) allocate without bound: each is capped, and so is the product of their sizes,
    which bounds every broadcast between them."""
    import numpy as np

    sizes: list[int] = []

    def walk(x, depth=0):
        if isinstance(x, (torch.Tensor, np.ndarray)):
            sizes.append(int(x.numel() if isinstance(x, torch.Tensor) else x.size))
        elif isinstance(x, (list, tuple)) and depth < 8:
            for y in x:
                walk(y, depth + 1)
        elif isinstance(x, dict) and depth < 8:
            for y in x.values():
                walk(y, depth + 1)

    walk(list(args) + list(kwargs.values()))
    product = 1
    for n in sizes:
        if n > MAX_CALLBACK_NUMEL:
            raise ValueError(f"a tensor of {n} elements is too large for the check's function "
                             f"(at most {MAX_CALLBACK_NUMEL})")
        product *= max(n, 1)
        if product > MAX_CALLBACK_PRODUCT:
            raise ValueError("the tensors passed to the check's function are too large together "
                             f"(the product of their sizes exceeds {MAX_CALLBACK_PRODUCT})")


def judge_exercise(name: str, payload: bytes, zygote: Zygote, timeout: float) -> dict:
    """``{"status", "detail"}`` for one exercise from the learner's pickled function (bytes)."""
    try:
        spec = get_spec(name)
    except KeyError:
        return {"status": "error", "detail": f"genlib has no check called {name[:80]!r}"}
    want = "class" if inspect.isclass(spec.reference) else "function"
    where = reference_location(spec.reference)
    if where is None:
        return {"status": MANUAL, "detail": "genlib's reference cannot be located to be blocked"}
    session = None
    try:
        session = zygote.spawn(name, where, timeout)
        kind = session.load(payload)
        if kind == "reference":
            return {"status": "failed", "detail": "submitted genlib's reference, not your own code"}
        if kind != want:
            return {"status": "failed", "detail": f"expected a {want}, got a {kind}"}
        stand_in = RemoteClass if want == "class" else RemoteFunction
        report = run_check(name, stand_in(session, name.rsplit(".", 1)[-1]))
    except Abort as e:
        return {"status": e.status, "detail": str(e)[:300]}
    except Exception as e:  # noqa: BLE001 - e.g. the function could not be unpickled
        return {"status": "error", "detail": f"could not load your function: {str(e)[:300]}"}
    finally:
        if session is not None:
            session.kill()
    if report.not_implemented:
        return {"status": "not done", "detail": "raises NotImplementedError"}
    if report.passed:
        return {"status": "passed", "detail": f"{len(report.results)} checks"}
    return {"status": "failed", "detail": "; ".join(report.failed_cases)}


def set_dumpable(flag: bool) -> None:
    """While grading, other processes of this user cannot ptrace the judge or read its memory."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, int(flag), 0, 0, 0)
    except Exception:  # noqa: BLE001 - not Linux
        pass


def judge_bounded(name: str, payload: bytes, zygote: Zygote, timeout: float,
                  memory_bytes: int) -> dict:
    """:func:`judge_exercise` in a forked child of the grader with bounded memory and time.

    The child computes the verdict (genlib's cases, on data from the worker) under an address
    space limit; the grader waits at most ``timeout`` + a margin for its small JSON answer and
    kills it after that. So whatever the worker sends can cost only this exercise: a reply that
    makes a case allocate without bound ends as "error", one that stalls as "timed out". The
    zygote is restarted after any such ending (it may still hold the stuck worker).
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        zygote.n += 1  # the child's spawn counted one worker; keep the names unique
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(r)
            # OpenMP's thread pool does not survive fork: a parallel region in the child would
            # wait forever for the parent's threads. One thread: no parallel region.
            torch.set_num_threads(1)
            import resource

            if memory_bytes:
                with open("/proc/self/statm") as f:
                    used = int(f.read().split()[0]) * resource.getpagesize()
                resource.setrlimit(resource.RLIMIT_AS, (used + memory_bytes, used + memory_bytes))
            try:
                res = judge_exercise(name, payload, zygote, timeout)
            except MemoryError:
                res = {"status": "error", "detail": "judging this exercise needed more memory "
                       "than allowed (what your code returned is too large)"}
            data = json.dumps({"status": str(res["status"]), "detail": str(res["detail"])[:2000]})
            view = memoryview(data.encode())
            while view:
                view = view[os.write(w, view):]
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    deadline = time.monotonic() + timeout * 1.5 + 30
    buf, timed_out = bytearray(), False
    try:
        while len(buf) < 1 << 16:
            ready, _, _ = select.select([r], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                timed_out = True
                break
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            buf += chunk
    finally:
        os.close(r)
        if timed_out:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.waitpid(pid, 0)
    try:
        res = json.loads(buf.decode())
        ok = isinstance(res, dict) and {"status", "detail"} <= set(res)
    except ValueError:
        ok = False
    if timed_out:
        res = {"status": "timed out", "detail": "judging this exercise ran past its time limit"}
    elif not ok:
        res = {"status": "error", "detail": "judging this exercise failed (it ran out of memory "
               "or crashed on what your code returned)"}
    if timed_out or not ok or res["status"] in ("timed out", "crashed"):
        zygote.restart()  # a worker may be stuck in it: start the next exercise clean
    return res
