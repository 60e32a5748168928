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
    """A fresh interpreter with torch and genlib imported, forking one worker per exercise."""

    def __init__(self, deny_read: list[str], memory_bytes: int, start_timeout: float = 120,
                 deny_source: list[str] = (str(PKG_DIR),)):
        self.deny_read = [str(p) for p in deny_read]
        self.deny_source = [str(p) for p in deny_source]
        self.memory_bytes = memory_bytes
        self.root = tempfile.mkdtemp(prefix="genlib-worker-")
        os.chmod(self.root, 0o755)
        ctl, theirs = socket.socketpair()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.root,
               "TMPDIR": self.root, "LANG": "C.UTF-8", "GENLIB_PROGRESS": "0",
               "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
               "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "genlib.grading.worker",
                                      str(theirs.fileno())], pass_fds=[theirs.fileno()],
                                     env=env, cwd=self.root, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        theirs.close()
        self.ctl = ctl
        ready, _, _ = select.select([ctl], [], [], start_timeout)
        if not ready or ctl.recv(1) != b"R":
            self.close()
            raise RuntimeError("the grading worker did not start")
        self.n = 0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def spawn(self, exercise: str, reference: tuple[str, str], timeout: float) -> "Session":
        self.n += 1
        workdir = os.path.join(self.root, f"w{self.n}")
        os.mkdir(workdir, 0o700)
        req = {"exercise": exercise, "reference": list(reference), "workdir": workdir,
               "memory_bytes": self.memory_bytes, "cpu_seconds": int(timeout) + 5,
               "deny_read": self.deny_read + [self.root], "deny_source": self.deny_source}
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
        return Session(mine, pid, time.monotonic() + timeout, workdir)

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self.ctl.close()
        shutil.rmtree(self.root, ignore_errors=True)


# ----------------------------------------------------------------------------- one exercise
class Session:
    """The judge's end of one worker: strict request/reply, with a deadline for the exercise."""

    def __init__(self, sock: socket.socket, pid: int, deadline: float, workdir: str):
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
        try:
            self.sock.sendall(wire.pack(header, blobs))
        except OSError:
            self._die(WorkerGone("the worker process ended"))
        while True:
            reply, rblobs = self._recv()
            if reply.get("op") == "callback":  # the learner's code calls a function of the check
                self._callback(reply, rblobs)
                continue
            if not isinstance(reply.get("ok"), bool):
                self._die(WorkerGone("the worker sent a malformed reply"))
            return reply, rblobs

    def _callback(self, req: dict, rblobs: list) -> None:
        """Run the check's own callable here, on the plain data the worker sent; reply with plain
        data. It is genlib's code (e.g. a velocity field that records where it was evaluated), so
        what it records stays in the judge, out of the learner's reach."""
        blobs: list = []
        try:
            fn = self.callbacks[int(req.get("cb"))]
            args, kwargs = wire.decode(req.get("args"), rblobs, grad=False)
            with torch.no_grad():
                out = fn(*args, **kwargs)
            reply = {"ok": True, "out": wire.encode(out, blobs)}
        except Abort:
            raise
        except BaseException as e:  # noqa: BLE001 - goes back to the learner's code as an error
            blobs = []
            reply = {"ok": False, "error": {"type": type(e).__name__, "message": str(e)[:500]}}
        try:
            self.sock.sendall(wire.pack(reply, blobs))
        except OSError:
            self._die(WorkerGone("the worker process ended"))

    def kill(self) -> None:
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
            _apply_side_effects(refs, reply, rblobs)  # in-place changes to the arguments, RNG
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
        except wire.ProtocolError:
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


def _apply_side_effects(refs: list, reply: dict, rblobs: list) -> None:
    """Copy the worker's in-place changes of the arguments ``refs`` and its RNG state back here,
    so that a case sees what it would see in-process."""
    import numpy as np

    mutated = reply.get("mutated", [])
    if not isinstance(mutated, list):
        raise wire.ProtocolError("malformed mutations")
    for item in mutated:
        idx, val = int(item[0]), wire.decode(item[1], rblobs, grad=False)
        ref = refs[idx]
        try:
            if isinstance(ref, torch.Tensor) and isinstance(val, torch.Tensor):
                with torch.no_grad():
                    if ref.shape == val.shape:
                        ref.copy_(val)
                    else:
                        ref.data = val.to(ref.dtype)
            elif isinstance(ref, np.ndarray) and isinstance(val, np.ndarray):
                ref[...] = val
            elif isinstance(ref, torch.Generator) and isinstance(val, torch.Generator):
                ref.set_state(val.get_state())
        except Exception:  # noqa: BLE001 - an impossible mutation is ignored, not trusted
            pass
    state = wire.decode(reply["rng"], rblobs, grad=False)
    if isinstance(state, torch.Tensor) and state.dtype == torch.uint8:
        try:
            torch.set_rng_state(state)
        except Exception:  # noqa: BLE001
            pass


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


def judge_exercise(name: str, payload: bytes, zygote: Zygote, timeout: float) -> dict:
    """``{"status", "detail"}`` for one exercise from the learner's pickled function (bytes)."""
    spec = get_spec(name)
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
