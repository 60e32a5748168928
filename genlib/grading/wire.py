"""The wire format between the judge and a worker: plain data only, never pickle.

A message is a JSON header plus raw tensor buffers. Values are encoded as a JSON tree in which
tensors, numpy arrays and generator states point at a buffer by index; each buffer travels with
its dtype and shape, and is rebuilt with ``torch.frombuffer`` — no code can run while a message
from the learner's side is decoded. Anything else (a module, an optimiser, a custom object) is
not data: the judge refuses to send it, and an unsupported value coming back from a worker
arrives as an :class:`Opaque` placeholder that fails every check that looks at it.

Framing: ``u32 number of parts``, then for each part ``u64 length`` + bytes; part 0 is the header.
"""
from __future__ import annotations

import json
import math
import struct

import numpy as np
import torch

MAX_MESSAGE = 512 * 2 ** 20  # bytes; a bigger reply is a protocol error, not an answer
MAX_PARTS = 10_000

_DTYPES = {str(d).replace("torch.", ""): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)}
_NP_OK = set("?bBhHiIlLqQefdgFD")  # numpy dtype chars that map to a torch dtype above


class ProtocolError(Exception):
    """The other side sent something that is not a well-formed message."""


class NotData(TypeError):
    """A value that cannot cross the boundary as plain data."""


class Opaque:
    """Stands for a value the worker returned that is not plain data (its type name only)."""

    def __init__(self, type_name: str):
        self.type_name = str(type_name)[:80]

    def __repr__(self):
        return f"<{self.type_name} object that cannot leave the grading worker>"


# ----------------------------------------------------------------------------- values
def _tensor_meta(t: torch.Tensor, blobs: list) -> dict:
    if t.layout != torch.strided or t.is_quantized or t.device.type != "cpu":
        raise NotData(f"tensor with layout {t.layout} on {t.device}")
    name = str(t.dtype).replace("torch.", "")
    if name not in _DTYPES:
        raise NotData(f"tensor of dtype {t.dtype}")
    c = t.detach().contiguous()
    if c.numel() and c.element_size() == 2:
        raw = c.view(torch.int16).numpy().tobytes()
    elif c.dtype == torch.bool:
        raw = c.view(torch.uint8).numpy().tobytes()
    else:
        raw = c.resolve_conj().resolve_neg().numpy().tobytes()
    blobs.append(raw)
    return {"i": len(blobs) - 1, "dtype": name, "shape": list(c.shape)}


def _tensor_from(meta: dict, blobs: list) -> torch.Tensor:
    try:
        dtype = _DTYPES[meta["dtype"]]
        shape = [int(s) for s in meta["shape"]]
        raw = blobs[int(meta["i"])]
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ProtocolError(f"bad tensor description: {e}") from None
    if any(s < 0 for s in shape) or len(shape) > 16:
        raise ProtocolError("bad tensor shape")
    n = math.prod(shape)
    size = torch.empty((), dtype=dtype).element_size()
    if n * size != len(raw):
        raise ProtocolError("tensor buffer does not match its shape")
    if n == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape).clone()


def encode(obj, blobs: list, strict: bool = True, depth: int = 0, refs: list | None = None,
           callbacks: list | None = None):
    """``obj`` as a JSON-able tree whose tensors are appended to ``blobs``.

    ``strict``: raise :class:`NotData` for anything else (the judge's side); otherwise encode it
    as an opaque placeholder (the worker's side — what the learner returned is theirs to choose).
    ``refs`` collects the tensors, arrays and generators in the order :func:`decode` meets them.
    ``callbacks`` (the judge's side only): a plain callable — not a module, not a class — is sent
    as a handle; the worker calls it back and the judge runs it on plain data (see the judge).
    """
    def sub(x):
        return encode(x, blobs, strict, depth + 1, refs, callbacks)

    if depth > 32:
        raise NotData("nested too deeply")
    if obj is None or isinstance(obj, (bool, str)):
        return {"v": obj}
    if isinstance(obj, int):
        return {"int": str(int(obj))}
    if isinstance(obj, float):
        return {"float": repr(float(obj))}
    if isinstance(obj, complex):
        obj = complex(obj)
        return {"complex": [repr(obj.real), repr(obj.imag)]}
    if isinstance(obj, torch.Tensor):
        if type(obj) not in (torch.Tensor, torch.nn.Parameter):
            if strict:
                raise NotData(f"tensor subclass {type(obj).__name__}")
            obj = obj.as_subclass(torch.Tensor)
        try:
            meta = _tensor_meta(obj, blobs)
        except NotData:
            if strict:
                raise
            return {"opaque": "Tensor"}
        meta["grad"] = bool(obj.requires_grad)
        if refs is not None:
            refs.append(obj)
        return {"tensor": meta}
    if isinstance(obj, np.ndarray):
        if obj.dtype.char not in _NP_OK or obj.dtype.char == "g":
            if strict:
                raise NotData(f"numpy array of dtype {obj.dtype}")
            return {"opaque": "ndarray"}
        meta = _tensor_meta(torch.from_numpy(np.ascontiguousarray(obj)), blobs)
        if refs is not None:
            refs.append(obj)
        return {"ndarray": meta}
    if isinstance(obj, np.generic) and obj.dtype.char in _NP_OK and obj.dtype.char != "g":
        return {"npscalar": _tensor_meta(torch.from_numpy(np.asarray(obj).reshape(1)), blobs)}
    if isinstance(obj, torch.Generator):
        if obj.device.type != "cpu":
            raise NotData("generator on a device")
        meta = _tensor_meta(obj.get_state(), blobs)
        if refs is not None:
            refs.append(obj)
        return {"generator": meta}
    if isinstance(obj, torch.dtype):
        name = str(obj).replace("torch.", "")
        if name in _DTYPES:
            return {"dtype": name}
    if isinstance(obj, torch.Size):
        return {"size": [int(s) for s in obj]}
    if type(obj) in (tuple, list):
        key = "tuple" if type(obj) is tuple else "list"
        return {key: [sub(x) for x in obj]}
    if type(obj) is dict:
        return {"dict": [[sub(k), sub(v)] for k, v in obj.items()]}
    if (callbacks is not None and callable(obj) and not isinstance(obj, (type, torch.nn.Module))):
        callbacks.append(obj)
        return {"callback": len(callbacks) - 1}
    if strict:
        raise NotData(f"a {type(obj).__module__}.{type(obj).__qualname__}")
    return {"opaque": type(obj).__name__}


def decode(node, blobs: list, depth: int = 0, refs: list | None = None, grad: bool = True,
           make_callback=None):
    """Rebuild a value written by :func:`encode` (tensors as plain, fresh CPU tensors).

    ``grad=False``: leave every tensor without ``requires_grad`` (the flags stay in the tree).
    """
    def sub(x):
        return decode(x, blobs, depth + 1, refs, grad, make_callback)

    if depth > 40 or not isinstance(node, dict) or len(node) != 1:
        raise ProtocolError("malformed value")
    (kind, v), = node.items()
    if kind == "v":
        if v is None or isinstance(v, (bool, str)):
            return v
    elif kind == "int" and isinstance(v, str) and len(v) < 5000:
        return int(v)
    elif kind == "float" and isinstance(v, str):
        return float(v)
    elif kind == "complex" and isinstance(v, list) and len(v) == 2:
        return complex(float(v[0]), float(v[1]))
    elif kind == "tensor" and isinstance(v, dict):
        t = _tensor_from(v, blobs)
        if grad and v.get("grad") is True and (t.is_floating_point() or t.is_complex()):
            t.requires_grad_(True)
        if refs is not None:
            refs.append(t)
        return t
    elif kind == "ndarray" and isinstance(v, dict):
        arr = _tensor_from(v, blobs).numpy()
        if refs is not None:
            refs.append(arr)
        return arr
    elif kind == "npscalar" and isinstance(v, dict):
        return _tensor_from(v, blobs).numpy()[0]
    elif kind == "generator" and isinstance(v, dict):
        g = torch.Generator()
        g.set_state(_tensor_from(v, blobs))
        if refs is not None:
            refs.append(g)
        return g
    elif kind == "dtype" and v in _DTYPES:
        return _DTYPES[v]
    elif kind == "size" and isinstance(v, list):
        return torch.Size(int(s) for s in v)
    elif kind in ("tuple", "list") and isinstance(v, list):
        items = [sub(x) for x in v]
        return tuple(items) if kind == "tuple" else items
    elif kind == "dict" and isinstance(v, list):
        out = {}
        for pair in v:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ProtocolError("malformed dict")
            k = sub(pair[0])
            try:
                out[k] = sub(pair[1])
            except TypeError:  # an unhashable key
                raise ProtocolError("unhashable dict key") from None
        return out
    elif kind == "opaque" and isinstance(v, str):
        return Opaque(v)
    elif kind == "callback" and make_callback is not None and isinstance(v, int):
        return make_callback(v)
    raise ProtocolError(f"malformed value of kind {kind!r}")


# ----------------------------------------------------------------------------- framing
def pack(header: dict, blobs: list) -> bytes:
    parts = [json.dumps(header).encode()] + [bytes(b) for b in blobs]
    out = [struct.pack("<I", len(parts))]
    for p in parts:
        out += [struct.pack("<Q", len(p)), p]
    return b"".join(out)


def unpack(read) -> tuple[dict, list]:
    """Read one message with ``read(n) -> bytes`` (exactly n bytes or raise ProtocolError)."""
    (n,) = struct.unpack("<I", read(4))
    if not 1 <= n <= MAX_PARTS:
        raise ProtocolError("bad part count")
    parts, total = [], 0
    for _ in range(n):
        (size,) = struct.unpack("<Q", read(8))
        total += size
        if total > MAX_MESSAGE:
            raise ProtocolError("message too large")
        parts.append(read(size))
    try:
        header = json.loads(parts[0].decode())
    except (ValueError, RecursionError) as e:
        raise ProtocolError(f"bad header: {e}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not an object")
    return header, parts[1:]
