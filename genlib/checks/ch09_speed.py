"""Checks for chapter 09 (speed, measured).

* ``speed.nfe``            network evaluations per sample of a sampler (guidance ×2, Heun ×2)
* ``speed.kv_attend``      one decoding step of attention with a KV cache
* ``speed.cache_write``    the preallocated cache's update: write in place, return views
* ``speed.median_ms``      a timing with warm-up calls and the median of repeated runs
* ``parallel.global_gradient``  what the all-reduce of data-parallel training must compute

Every check compares outputs with formulas written out here, and names the known wrong formula
when the learner's numbers equal it.
"""
from __future__ import annotations

import math
import numbers
import statistics
import time

import torch

from genlib.exercises import CheckFailure, expect_tensor, probe, register
from genlib.probes import ch09 as P9
from genlib.parallel import global_gradient


def _close(a, b, tol: float = 1e-5) -> bool:
    return (torch.is_tensor(a) and a.shape == b.shape and bool(torch.isfinite(a).all())
            and torch.allclose(a.double(), b.double(), rtol=tol, atol=tol))


# ============================================================================ NFE
ONE_PASS = ("gan", "vae")
PER_STEP = {"ddpm": 1, "ddim": 1, "euler": 1, "heun": 2}


def nfe(method: str, steps: int, guided: bool) -> int:
    """Network evaluations per generated sample.

    method: "gan" or "vae" (one pass of the generator/decoder; ``steps`` is ignored),
    "ddpm", "ddim", "euler" (one evaluation per step) or "heun" (two per step: the slope at the
    start and at the Euler end point). ``guided``: classifier-free guidance evaluates the network on
    the condition and on the null condition, so every evaluation counts twice (even when both go
    through as one batched call).
    """
    n = 1 if method in ONE_PASS else PER_STEP[method] * steps
    return 2 * n if guided and method not in ONE_PASS else n


nfe_spec = register("speed.nfe", nfe,
                    "network evaluations per sample: one pass 1, DDPM/DDIM/Euler = steps, Heun = 2·steps, "
                    "classifier-free guidance ×2")


def _int(out, what):
    """An integer count: a Python int, a NumPy integer or a 0-d integer tensor (all format with {:4d},
    as the chapter prints it). A float, even a whole one, crashes that print."""
    import numpy as np

    if torch.is_tensor(out) and out.dim() == 0 and not out.is_floating_point() and out.dtype != torch.bool:
        return int(out.item())
    if isinstance(out, (int, np.integer)) and not isinstance(out, (bool, np.bool_)):
        return int(out)
    if isinstance(out, (float, np.floating)) or (torch.is_tensor(out) and out.numel() == 1):
        raise CheckFailure(f"{what} returned {out!r}, a float: a count of evaluations is an integer, and the "
                           "chapter prints it with f'{nfe(...):4d}', which a float cannot do. Return an int "
                           "(no / division; use * and int constants)")
    raise CheckFailure(f"{what}: expected a whole number of evaluations (an int), got {out!r}")


@nfe_spec.case("one-pass generators cost one evaluation")
def _(fn):
    for m in ONE_PASS:
        for steps in (1, 50):
            got = _int(fn(m, steps, False), f"nfe({m!r}, {steps}, False)")
            if got != 1:
                raise CheckFailure(f"nfe({m!r}, {steps}, False) = {got}: a {m.upper()} draws a sample with ONE "
                                   "pass of its generator/decoder, whatever `steps` says (there are no steps)")


@nfe_spec.case("one evaluation per step for DDPM, DDIM and Euler")
def _(fn):
    for m in ("ddpm", "ddim", "euler"):
        for steps in (1, 10, 100):
            got = _int(fn(m, steps, False), f"nfe({m!r}, {steps}, False)")
            if got == steps:
                continue
            if m == "ddpm" and got in (1000, 999):
                raise CheckFailure("DDPM's cost is the number of steps you run (`steps`), not a fixed 1000")
            raise CheckFailure(f"nfe({m!r}, {steps}, False) = {got}: each {m} step calls the network once")


@nfe_spec.case("Heun evaluates twice per step")
def _(fn):
    for steps in (8, 32, 1):     # 8 first: 2·1 − 1 = 1 would look like Euler
        got = _int(fn("heun", steps, False), f"nfe('heun', {steps}, False)")
        if got == 2 * steps:
            continue
        if got == steps:
            raise CheckFailure("Heun counted like Euler: each Heun step evaluates the velocity at the start "
                               "AND at the Euler end point to average the two slopes, 2 evaluations per step")
        if got == 2 * steps - 1:
            raise CheckFailure("2·steps − 1 is EDM's variant (its last step is a plain Euler step); genlib's "
                               "sample_heun corrects every step: 2·steps")
        raise CheckFailure(f"nfe('heun', {steps}, False) = {got}; expected 2·steps = {2 * steps}")


@nfe_spec.case("guidance doubles every iterative method")
def _(fn):
    for m, steps in (("ddim", 10), ("euler", 4), ("ddpm", 100), ("heun", 8)):
        base = (2 if m == "heun" else 1) * steps
        got = _int(fn(m, steps, True), f"nfe({m!r}, {steps}, True)")
        if got == 2 * base:
            continue
        if got == base:
            raise CheckFailure(f"guidance not counted for {m}: classifier-free guidance runs the network on the "
                               "condition and on the null condition at every step, ×2 (batching the two "
                               "calls saves latency, not evaluations)")
        if got == base + 1:
            raise CheckFailure("guidance added one evaluation in total; it adds one per step (×2)")
        if m == "heun" and got in (2 * steps, 3 * steps):
            raise CheckFailure(f"Heun with guidance gave {got} for {steps} steps: 2 evaluations per step × 2 "
                               "for guidance = 4·steps (guidance doubles every evaluation, not every step)")
        raise CheckFailure(f"nfe({m!r}, {steps}, True) = {got}; expected {2 * base}")


@nfe_spec.case("a guided one-pass generator still draws in one pass")
def _(fn):
    # the chapter never guides a GAN or a VAE and its text leaves the count open ("guidance doubles every
    # evaluation" reads as 2; genlib.speed.count_nfe says 2, this check's reference says 1): both are
    # accepted; what is checked is that `steps` still plays no part
    for m in ONE_PASS:
        for steps in (1, 50):
            got = _int(fn(m, steps, True), f"nfe({m!r}, {steps}, True)")
            if got not in (1, 2):
                raise CheckFailure(f"nfe({m!r}, {steps}, True) = {got}: a {m.upper()} draws its sample in one pass "
                                   "whatever `steps` says; with guidance that is at most 2 evaluations (the "
                                   "conditional and the null-condition pass), never a count per step")


# ============================================================================ KV-cache attention
def kv_attend(q, k_new, v_new, k_cache, v_cache):
    """One decoding step of scaled dot-product attention with a KV cache.

    q, k_new, v_new: (B, H, 1, d), the new token's query, key and value; k_cache, v_cache:
    (B, H, t, d), the keys and values of the t earlier tokens (t may be 0). The new key and value
    are appended to the cache (along the sequence axis, after the old ones) and the new query
    attends over all t + 1 of them — there is nothing to mask: everything in the cache is in the
    past. Returns (out (B, H, 1, d), k_cache (B, H, t+1, d), v_cache (B, H, t+1, d)).
    """
    k = torch.cat([k_cache, k_new], dim=2)
    v = torch.cat([v_cache, v_new], dim=2)
    w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
    return w @ v, k, v


kv_spec = register("speed.kv_attend", kv_attend,
                   "append k/v to the cache (sequence axis), attend the new query over every cached "
                   "position with softmax(q·kᵀ/√d)")


def _qkv(b=2, h=3, length=7, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, length, d, generator=g) for _ in range(3)]


def _causal_full(q, k, v):
    """Full causal attention over a whole sequence (what decoding without a cache recomputes)."""
    length, d = q.shape[-2], q.shape[-1]
    s = q @ k.transpose(-2, -1) / math.sqrt(d)
    mask = torch.ones(length, length, dtype=torch.bool).tril()
    return s.masked_fill(~mask, float("-inf")).softmax(-1) @ v


def _step(fn, q, k, v, i, kc, vc):
    sl = slice(i, i + 1)
    kc0, vc0 = kc.clone(), vc.clone()
    try:
        res = fn(q[..., sl, :].clone(), k[..., sl, :].clone(), v[..., sl, :].clone(), kc, vc)
    except RuntimeError as e:
        if "Sizes of tensors must match" in str(e) or "size of tensor" in str(e):
            raise CheckFailure(f"shapes do not fit ({str(e)[:120]}): the cache (B, H, t, d) and the new key "
                               "(B, H, 1, d) differ along the sequence axis; concatenate along it (dim=2)")
        raise
    if not (torch.equal(kc, kc0) and torch.equal(vc, vc0)):
        raise CheckFailure("your step wrote into the cache it was given (in place): the caller's earlier "
                           "cache is overwritten. Return new tensors (torch.cat makes one)")
    if not isinstance(res, (tuple, list)) or len(res) != 3:
        raise CheckFailure("return three things: (out, k_cache, v_cache), the updated caches included")
    return res


@kv_spec.case("returns (out, k_cache, v_cache) with the caches one longer")
def _(fn):
    q, k, v = _qkv()
    b, h, _, d = q.shape
    kc, vc = k[..., :3, :].clone(), v[..., :3, :].clone()
    out, k2, v2 = _step(fn, q, k, v, 3, kc, vc)
    expect_tensor(out, (b, h, 1, d), "out")
    if not torch.is_tensor(k2) or not torch.is_tensor(v2):
        raise CheckFailure("the caches must be tensors")
    if k2.shape == kc.shape:
        raise CheckFailure("the returned cache has the old length t: append k_new and v_new to it "
                           "(torch.cat([k_cache, k_new], dim=2)), or the next token cannot see this one")
    if k2.shape == (b, h, 1, d) and _close(k2, k[..., 3:4, :]):
        raise CheckFailure("you returned the new key and value alone as the cache: nothing was concatenated. "
                           "The cache must hold every earlier key plus the new one, "
                           "torch.cat([k_cache, k_new], dim=2)")
    if k2.shape != (b, h, 4, d) or v2.shape != (b, h, 4, d):
        raise CheckFailure(f"cache shape {tuple(k2.shape)}: expected (B, H, t+1, d) = {(b, h, 4, d)}. "
                           "Concatenate along the sequence axis (dim=2 or -2), not the batch, head or "
                           "feature axis")


@kv_spec.case("the cache keeps the old entries first, the new one last")
def _(fn):
    q, k, v = _qkv(seed=1)
    kc, vc = k[..., :4, :].clone(), v[..., :4, :].clone()
    _, k2, v2 = _step(fn, q, k, v, 4, kc, vc)
    if _close(k2, k[..., :5, :]) and _close(v2, v[..., :5, :]):
        return
    if _close(k2, torch.cat([k[..., 4:5, :], kc], 2)):
        raise CheckFailure("the new key went in front of the cache: append it at the end, so position i of "
                           "the cache is token i")
    if _close(k2, torch.cat([kc, v[..., 4:5, :]], 2)) or _close(v2, torch.cat([vc, k[..., 4:5, :]], 2)):
        raise CheckFailure("keys and values are swapped between the two caches")
    raise CheckFailure("the updated caches are not [old entries, new entry] along the sequence axis")


@kv_spec.case("decoding token by token equals full causal attention")
def _(fn):
    q, k, v = _qkv(seed=2)
    b, h, length, d = q.shape
    want = _causal_full(q, k, v)
    kc, vc = k[..., :0, :].clone(), v[..., :0, :].clone()
    outs = []
    for i in range(length):
        out, kc, vc = _step(fn, q, k, v, i, kc, vc)
        expect_tensor(out, (b, h, 1, d), f"out at step {i}")
        outs.append(out)
        if kc.shape[2] != i + 1:
            raise CheckFailure("the cache does not grow by one per step: append the new key and value")
    got = torch.cat(outs, 2)
    if _close(got, want):
        return
    if _close(got, v):
        raise CheckFailure("each token attended only to itself (the output is its own value): the query "
                           "must attend over the whole cache plus the new key")
    unscaled = (q @ k.transpose(-2, -1)).masked_fill(~torch.ones(length, length, dtype=torch.bool).tril(),
                                                     float("-inf")).softmax(-1) @ v
    if _close(got, unscaled):
        raise CheckFailure("scores not divided by √d: softmax(q·kᵀ/√d); without it the softmax saturates "
                           "as d grows")
    first = v[..., :1, :].expand_as(v)
    if _close(got, first):
        raise CheckFailure("every step attended only to the first key: a causal mask for the first row "
                           "(tril) applied to the single new query. The new query comes after every cached "
                           "key, so nothing is masked")
    if _close(got[..., 1:, :], _excl(q, k, v)[..., 1:, :]):   # row 0 has nothing to attend to (NaN)
        raise CheckFailure("the new token's own key was masked out (it attends only to the earlier cache): "
                           "a token attends to itself too")
    for name, scale in (("d", lambda i: d), ("√(sequence length)", lambda i: math.sqrt(i + 1)),
                        ("√H (the number of heads)", lambda i: math.sqrt(h)),
                        ("√d·√(sequence length)", lambda i: math.sqrt(d * (i + 1)))):
        if _close(got, _causal_scaled(q, k, v, scale)):
            raise CheckFailure(f"the scores were divided by {name}: scaled dot-product attention divides by "
                               "√d, the square root of the head's feature size q.shape[-1] (so the scores keep "
                               "unit variance), whatever the length or the number of heads")
    raise CheckFailure("the step-by-step outputs differ from full causal attention's rows "
                       "softmax(q·kᵀ/√d)·v: check the scale (√d with d = q.shape[-1]) and the softmax axis "
                       "(over the keys, dim=-1)")


def _causal_scaled(q, k, v, scale):
    """Causal attention whose row i divides its scores by scale(i) instead of √d."""
    length = q.shape[-2]
    s = q @ k.transpose(-2, -1)
    s = s / torch.tensor([scale(i) for i in range(length)], dtype=s.dtype)[:, None]
    mask = torch.ones(length, length, dtype=torch.bool).tril()
    return s.masked_fill(~mask, float("-inf")).softmax(-1) @ v


def _excl(q, k, v):
    """Attention where each token sees the strictly earlier tokens only (row 0 set to zero)."""
    length, d = q.shape[-2], q.shape[-1]
    s = q @ k.transpose(-2, -1) / math.sqrt(d)
    mask = torch.ones(length, length, dtype=torch.bool).tril(-1)
    mask[0, 0] = True
    return s.masked_fill(~mask, float("-inf")).softmax(-1) @ v


@kv_spec.case("leaves the old cache tensors unchanged")
def _(fn):
    q, k, v = _qkv(seed=3)
    kc, vc = k[..., :3, :].clone(), v[..., :3, :].clone()
    kc0, vc0 = kc.clone(), vc.clone()
    _step(fn, q, k, v, 3, kc, vc)
    if not (torch.equal(kc, kc0) and torch.equal(vc, vc0)):
        raise CheckFailure("your step wrote into the cache it was given (in place): return new tensors "
                           "(torch.cat makes one)")


# ============================================================================ preallocated cache
def cache_write(k_buf, v_buf, length, k_new, v_new):
    """Write the new keys and values into preallocated cache buffers, in place.

    k_buf, v_buf: (B, H, capacity, d), positions 0 … length−1 already filled; k_new, v_new:
    (B, H, l, d), l ≥ 1 new positions. They go to positions length … length+l−1 of the buffers.
    Returns (k_view, v_view, new_length): new_length = length + l, and the views are the filled part
    of the buffers, ``buf[:, :, :new_length]`` — slices, so no memory is copied. Raises ValueError
    when the l new positions do not fit in the capacity.
    """
    end = length + k_new.shape[2]
    if end > k_buf.shape[2]:
        raise ValueError(f"cache full: {length} + {k_new.shape[2]} positions > capacity {k_buf.shape[2]}")
    k_buf[:, :, length:end] = k_new
    v_buf[:, :, length:end] = v_new
    return k_buf[:, :, :end], v_buf[:, :, :end], end


cw_spec = register("speed.cache_write", cache_write,
                   "write k/v into the buffers at positions length … length+l−1 in place; return the "
                   "filled views buf[:, :, :length+l] and the new length; ValueError when full",
                   mutates=True)


def _bufs(b=2, h=3, cap=6, d=4, filled=2, seed=0, garbage=float("nan")):
    g = torch.Generator().manual_seed(seed)
    kb, vb = torch.randn(b, h, cap, d, generator=g), torch.randn(b, h, cap, d, generator=g)
    kb[:, :, filled:], vb[:, :, filled:] = garbage, garbage    # never written: garbage
    return kb, vb


def _new(b=2, h=3, l=1, d=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, h, l, d, generator=g), torch.randn(b, h, l, d, generator=g)


class _Written:
    """What one call of the learner's cache_write did (observed by the probe where it ran)."""

    def __init__(self, kv, vv, n, items):
        self.kv, self.vv, self.n, self.items = kv, vv, n, items


def _write(fn, kb, vb, length, kn, vn):
    """Call the learner's function through ``probes.ch09.cache_write`` and copy the buffers it wrote
    back into kb and vb here (so the cases read them as if the call had run in this process)."""
    obs = probe(fn, P9.cache_write, kb, vb, length, kn, vn)
    if not (torch.equal(obs["k_new"], kn) and torch.equal(obs["v_new"], vn)):
        raise CheckFailure("your function changed k_new or v_new: only the buffers are written")
    for here, there in ((kb, obs["k_buf"]), (vb, obs["v_buf"])):
        if not torch.is_tensor(there) or there.shape != here.shape:
            raise CheckFailure("the buffers changed shape: write into them, do not replace them")
        here.copy_(there)
    items = obs["items"]
    if items is None or len(items) != 3:
        raise CheckFailure("return three things: (k_view, v_view, new_length)")
    kv, vv, n = items
    if "tensor" not in kv or "tensor" not in vv:
        raise CheckFailure("k_view and v_view must be tensors (slices of the buffers)")
    if "tensor" in n and n["tensor"].numel() == 1 and not n["tensor"].is_floating_point() \
            and n["tensor"].dtype != torch.bool:
        n = {"value": int(n["tensor"].item())}
    if "value" not in n:
        got = "a tensor" if "tensor" in n else n.get("type", "something else")
        raise CheckFailure(f"new_length should be an int (length + k_new.shape[2]), got {got}")
    return _Written(kv["tensor"], vv["tensor"], n["value"], (kv, vv))


@cw_spec.case("writes into the buffers and returns views of them, no copy")
def _(fn):
    kb, vb = _bufs(garbage=0.25)                   # finite garbage: shows an accumulation (+=)
    kn, vn = _new()
    _write(fn, kb, vb, 2, kn, vn)
    if torch.allclose(kb[:, :, 2:3], kn + 0.25) and not torch.allclose(kb[:, :, 2:3], kn):
        raise CheckFailure("position `length` holds its old contents plus k_new: you added into the buffer (+=) "
                           "instead of assigning. Unwritten memory is garbage (torch.empty); assign, "
                           "k_buf[:, :, length:length + l] = k_new")
    kb, vb = _bufs()
    kb0 = kb.clone()
    kn, vn = _new()
    w = _write(fn, kb, vb, 2, kn, vn)
    kv, vv, n = w.kv, w.vv, w.n
    ki, vi = w.items
    if torch.equal(kb.nan_to_num(7.0), kb0.nan_to_num(7.0)):
        raise CheckFailure("the buffers were not written: the new key and value must go into k_buf and v_buf "
                           "themselves (k_buf[:, :, length:length + l] = k_new). Building a new tensor "
                           "(torch.cat, .clone()) is the reallocation the preallocated cache exists to avoid")
    if kv.shape[2] == kb.shape[2] and n != kb.shape[2]:
        raise CheckFailure(f"the views have the whole capacity ({kb.shape[2]} positions): return only the "
                           "filled part, buf[:, :, :new_length] — the rest is memory never written, and the "
                           "query must not attend to it")
    if ki["shares_v"] and vi["shares_k"]:
        raise CheckFailure("the views come back in the wrong order: return (k_view, v_view, new_length)")
    if not (ki["shares_k"] and vi["shares_v"]):
        raise CheckFailure("the returned keys/values are a copy, not views of the buffers: slice the buffers "
                           "(k_buf[:, :, :new_length]) so that no memory moves")
    if ki["start"] != 0:
        raise CheckFailure(f"the views hold {kv.shape[2]} position(s) starting at position "
                           f"{ki['start']}: return everything "
                           "filled so far, buf[:, :, :new_length] — the new query attends to the earlier tokens too")
    expect_tensor(kv, (2, 3, 3, 4), "k_view")
    expect_tensor(vv, (2, 3, 3, 4), "v_view")


@cw_spec.case("keeps the earlier positions and writes the new ones right after them")
def _(fn):
    # the first write (length 0), one decoding step, and a prefill of several positions
    for length, l, seed in ((0, 1, 3), (2, 1, 1), (2, 3, 2)):
        kb, vb = _bufs(filled=length, seed=seed)
        cap, end = kb.shape[2], length + l
        old_k, old_v = kb[:, :, :length].clone(), vb[:, :, :length].clone()
        kn, vn = _new(l=l, seed=seed + 10)
        w = _write(fn, kb, vb, length, kn, vn)
        kv, vv, n = w.kv, w.vv, w.n
        if n == length:
            raise CheckFailure("new_length is the old length: add the number of new positions, l = "
                               "k_new.shape[2], or the next write lands on the same slot")
        if n != end:
            raise CheckFailure(f"new_length {n} after writing {l} position(s) at length {length}: expected {end} "
                               "(length + k_new.shape[2] — a prefill writes several positions at once)")
        here_k, here_v = kb[:, :, length:end], vb[:, :, length:end]
        if torch.equal(here_k, kn) and torch.equal(here_v, vn) and torch.equal(kb[:, :, :length], old_k) \
                and torch.equal(vb[:, :, :length], old_v):
            if l == 1 and end < cap and torch.equal(kb[:, :, end:], kn.expand_as(kb[:, :, end:])):
                raise CheckFailure("k_new went into every position from `length` on (k_buf[:, :, length:] = k_new "
                                   "broadcasts it): stop at length + l, the rest of the buffer is for later tokens")
            if not (torch.equal(kv, kb[:, :, :n]) and torch.equal(vv, vb[:, :, :n])):
                raise CheckFailure("the returned views are not buf[:, :, :new_length]")
            continue
        if length == 0 and torch.equal(kv, kn) and not torch.equal(here_k, kn):
            raise CheckFailure("at length 0 the buffers were not written (k_new itself was returned): the first "
                               "write must go into the buffers too, or the next step attends to garbage")
        if length and torch.equal(kb[:, :, :l], kn):
            raise CheckFailure("the new key went to position 0, over the earlier ones: write at positions "
                               "length … length + l − 1")
        if end + 1 <= cap and torch.equal(kb[:, :, length + 1:end + 1], kn):
            raise CheckFailure("the new key went one slot too far (position length + 1): position `length` is "
                               "the first free one (0-based), and the gap left behind is garbage the query "
                               "would attend to")
        if torch.equal(here_k, vn) and torch.equal(here_v, kn):
            raise CheckFailure("keys and values are swapped between the two buffers")
        if torch.equal(here_v, kn):
            raise CheckFailure("k_new went into v_buf: keys go to k_buf, values to v_buf")
        if l > 1 and torch.equal(kb[:, :, length], kn[:, :, 0]):
            raise CheckFailure(f"only the first of the {l} new positions was written: a prefill writes all of "
                               "them, k_buf[:, :, length:length + l] = k_new")
        if not torch.equal(kb[:, :, :length], old_k) or not torch.equal(vb[:, :, :length], old_v):
            raise CheckFailure("an earlier position of the buffers changed: write only positions "
                               "length … length + l − 1")
        raise CheckFailure("positions length … length + l − 1 of the buffers do not hold k_new and v_new "
                           "(k_buf[:, :, length:length + l] = k_new, v_buf[:, :, length:length + l] = v_new)")


@cw_spec.case("a write that fills the cache exactly is allowed, one more raises ValueError")
def _(fn):
    kb, vb = _bufs(cap=4, filled=3)
    kn, vn = _new(l=1)
    try:
        _write(fn, kb, vb, 3, kn, vn)
    except ValueError as e:
        raise CheckFailure(f"writing 1 position at length 3 into a capacity of 4 raised ValueError ({e}): "
                           "that write fits exactly (positions 0 … 3); the cache is full only when "
                           "length + l > capacity")
    for length, l in ((4, 1), (3, 2)):
        kb, vb = _bufs(cap=4, filled=min(length, 4))
        kn, vn = _new(l=l)
        try:
            probe(fn, P9.cache_write, kb, vb, length, kn, vn)
        except ValueError:
            continue
        except Exception as e:       # noqa: BLE001 — any other type is the finding
            raise CheckFailure(f"writing {l} position(s) at length {length} into a capacity of 4 raised "
                               f"{type(e).__name__} ({str(e)[:80]}): the cache-full error should be a ValueError "
                               "— check length + l against k_buf.shape[2] before writing")
        raise CheckFailure(f"writing {l} position(s) at length {length} into a capacity of 4 did not raise"
                           + (": PyTorch assigns into the empty slice k_buf[:, :, 4:5] without an error, so the "
                              "token is silently dropped" if length == 4 else "")
                           + " — check length + l against k_buf.shape[2] yourself and raise ValueError")


@cw_spec.case("decoding with your cache equals full causal attention", depends_on=(
        "keeps the earlier positions and writes the new ones right after them",))
def _(fn):
    q, k, v = _qkv(seed=4)
    b, h, length, d = q.shape
    kb, vb = torch.full((b, h, length + 2, d), float("nan")), torch.full((b, h, length + 2, d), float("nan"))
    want = _causal_full(q, k, v)
    n, outs = 0, []
    for i in range(length):
        w = _write(fn, kb, vb, n, k[..., i:i + 1, :].clone(), v[..., i:i + 1, :].clone())
        kv, vv, n = w.kv, w.vv, w.n
        w = (q[..., i:i + 1, :] @ kv.transpose(-2, -1) / math.sqrt(d)).softmax(-1)
        outs.append(w @ vv)
    got = torch.cat(outs, 2)
    if not torch.isfinite(got).all():
        raise CheckFailure("the attention over your views met unwritten (NaN) positions: return only the "
                           "filled part of the buffers")
    if not _close(got, want):
        raise CheckFailure("step-by-step attention over your views differs from full causal attention")


# ============================================================================ median timing
def median_ms(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in milliseconds: ``warmup`` untimed calls first (caches, lazy
    initialisation, the first-call allocator), then ``repeats`` timed calls, each timed on its own
    with ``time.perf_counter``; the median resists the odd slow run that the mean does not."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1000)
    return statistics.median(runs)


med_spec = register("speed.median_ms", median_ms,
                    "warm-up calls untimed, then the median of `repeats` separately timed calls, in ms")


class _Scripted:
    """A callable that sleeps a scripted number of milliseconds on each call and counts calls."""

    def __init__(self, ms):
        self.ms, self.calls = list(ms), 0

    def __call__(self):
        d = self.ms[min(self.calls, len(self.ms) - 1)]
        self.calls += 1
        time.sleep(d / 1000)


def _run_scripted(fn, warm, timed):
    f = _Scripted(list(warm) + list(timed))
    out = fn(f, len(timed), len(warm))
    if isinstance(out, bool) or not isinstance(out, (int, float)) and not (torch.is_tensor(out) and out.numel() == 1):
        raise CheckFailure(f"return one number (milliseconds), got {type(out).__name__}")
    return float(out), f.calls


@med_spec.case("calls fn warmup + repeats times")
def _(fn):
    for warm, rep in ((2, 3), (0, 5), (1, 1), (0, 1)):      # (0, 1): the chapter's first, cold timing
        f = _Scripted([0.2])
        fn(f, rep, warm)
        if f.calls == warm + rep:
            continue
        if f.calls == rep and warm:
            raise CheckFailure(f"fn was called {f.calls} times for repeats={rep}, warmup={warm}: the warm-up calls "
                               "are missing (call fn `warmup` times before timing)")
        raise CheckFailure(f"fn was called {f.calls} times for repeats={rep}, warmup={warm}; expected "
                           f"{warm + rep}")


def _spin(ms):
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


def _cpu_clock_or_seconds(fn, got):
    """A result far below a millisecond: seconds, or a CPU-time clock around a sleep (which uses no CPU).
    Runs that keep the CPU busy for 20 ms tell them apart: seconds read 0.02, a CPU clock about 20."""
    again = fn(lambda: _spin(20), 3, 0)
    again = float(again) if not isinstance(again, bool) and isinstance(again, (int, float)) or \
        (torch.is_tensor(again) and again.numel() == 1) else float("nan")
    if 0.015 <= again <= 0.2:
        raise CheckFailure(f"got {got:.4f}: that is seconds, not milliseconds (multiply by 1000)")
    raise CheckFailure(f"got {got:.4f} ms for runs that each wait 12 ms or more: your clock does not see time "
                       "spent waiting (time.process_time or thread_time count this process's CPU time only). "
                       "Latency is wall time: time.perf_counter()")


@med_spec.case("the median of the timed runs, in milliseconds")
def _(fn):
    # two 60 ms warm-up calls, then timed runs of 2, 2, 12, 50, 50 ms: median 12, mean 23.2, min 2,
    # max 50, median of the last four 31, total 116, median of all seven calls 50
    got, _ = _run_scripted(fn, (60, 60), (2, 2, 12, 50, 50))
    if 11.5 <= got <= 17.5:
        pass
    elif got < 1.0:
        _cpu_clock_or_seconds(fn, got)
    elif got >= 1900:
        raise CheckFailure(f"got {got:.0f}: microseconds, not milliseconds")
    elif 20 <= got <= 27:
        raise CheckFailure(f"got {got:.1f} ms for runs of 2, 2, 12, 50, 50 ms: that is the mean; two slow runs "
                           "pull it up. Return the median (statistics.median)")
    elif 28 <= got <= 37:
        raise CheckFailure(f"got {got:.1f} ms for runs of 2, 2, 12, 50, 50 ms: that is the median of the last "
                           "four — the first timed run was dropped (or spent as an extra warm-up). Time every "
                           "one of the `repeats` runs")
    elif 47 <= got <= 65:
        raise CheckFailure(f"got {got:.1f} ms for runs of 2, 2, 12, 50, 50 ms after two 60 ms warm-up calls: the "
                           "warm-up calls were timed too, or you returned the maximum. Time only the repeats")
    elif got >= 100:
        raise CheckFailure(f"got {got:.1f} ms: the total of the runs, not one run's median")
    elif 1.9 <= got <= 5:
        raise CheckFailure(f"got {got:.1f} ms for runs of 2, 2, 12, 50, 50 ms: that is the minimum; the median "
                           "is about 12")
    else:
        raise CheckFailure(f"got {got:.1f} ms; the median of the timed runs is about 12 ms")
    # timed runs of 12, 12, 12, 2, 2 ms: median 12, minimum 2, mean 8
    got, _ = _run_scripted(fn, (30,), (12, 12, 12, 2, 2))
    if 11.9 <= got <= 20:
        return
    if 1.9 <= got <= 5:
        raise CheckFailure(f"got {got:.1f} ms for runs of 12, 12, 12, 2, 2 ms: that is the minimum; the median "
                           "is about 12")
    if 7 <= got < 11.9:
        raise CheckFailure(f"got {got:.1f} ms for runs of 12, 12, 12, 2, 2 ms: that is the mean (8); return the "
                           "median (12)")
    if got >= 40:
        raise CheckFailure(f"got {got:.1f} ms: the total of the runs, not one run's median")
    raise CheckFailure(f"got {got:.1f} ms; the median of the timed runs is about 12 ms")


@med_spec.case("the warm-up calls come before the timed ones")
def _(fn):
    # three slow warm-up calls (60 ms) then three fast runs (3 ms): timing the first calls reads 60
    got, _ = _run_scripted(fn, (60, 60, 60), (3, 3, 3))
    if got >= 40:
        raise CheckFailure(f"got {got:.1f} ms for 3 ms runs after three 60 ms warm-up calls: the slow first calls "
                           "were timed. Make every warm-up call BEFORE the timing loop, then time the next "
                           "`repeats` calls (not the first `repeats` of all calls)")


@med_spec.case("an even number of runs: the mean of the two middle ones")
def _(fn):
    # timed runs of 2, 4, 12, 20 ms: median 8; the upper middle is 12, the lower 4
    got, _ = _run_scripted(fn, (), (2, 4, 12, 20))
    if 7.5 <= got <= 11:
        return
    if 11 < got <= 15:
        raise CheckFailure(f"got {got:.1f} ms for runs of 2, 4, 12, 20 ms: that is the upper of the two middle runs "
                           "(sorted(runs)[len(runs) // 2]); for an even count the median is the mean of the two "
                           "middle ones, 8 (statistics.median does this)")
    if 3.5 <= got < 7.5:
        raise CheckFailure(f"got {got:.1f} ms for runs of 2, 4, 12, 20 ms: that is the lower of the two middle runs; "
                           "for an even count the median is the mean of the two middle ones, 8 (statistics.median)")
    raise CheckFailure(f"got {got:.1f} ms for runs of 2, 4, 12, 20 ms; their median is 8")


@med_spec.case("each run timed on its own")
def _(fn):
    got, _ = _run_scripted(fn, (), (3, 3, 3))
    if got >= 8:
        raise CheckFailure(f"got {got:.1f} ms for three 3 ms runs: the runs were timed together (total). "
                           "Start the clock before each call and stop it after")
    if got < 2.9:
        raise CheckFailure(f"got {got:.2f} ms for three 3 ms runs: too small (seconds? divided by repeats?)")


@med_spec.case("called as the chapter calls it: median_ms(fn, repeats=7, warmup=2)")
def _(fn):
    f = _Scripted([0.2])
    try:
        out = fn(f, repeats=7, warmup=2)                   # the chapter passes both by name
    except TypeError as e:
        if "keyword" in str(e) or "argument" in str(e):
            raise CheckFailure(f"median_ms(fn, repeats=7, warmup=2) failed ({e}): the chapter calls it with these "
                               "keywords, so keep the signature median_ms(fn, repeats=5, warmup=1)") from None
        raise
    if f.calls != 9:
        raise CheckFailure(f"median_ms(fn, repeats=7, warmup=2) called fn {f.calls} times; expected 9")
    try:
        f"{out:.1f}"
    except (TypeError, ValueError):
        raise CheckFailure(f"the chapter prints the result with f'{{ms:.1f}}', which fails for "
                           f"{type(out).__name__}: return a float") from None


# ============================================================================ global gradient
gg_spec = register("parallel.global_gradient", global_gradient,
                   "the gradient of the global mean loss: Σ_w n_w·g_w / Σ_w n_w from per-process means")


def _grads(sizes, p=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(sizes), p, generator=g), torch.tensor(sizes)


def _call_gg(fn, grads, sizes):
    g, n = grads.clone(), sizes.clone()
    out = fn(g, n)
    if not (torch.equal(g, grads) and torch.equal(n, sizes)):
        raise CheckFailure("your function changed local_grads (or local_sizes) in place, e.g. g.mul_(n) or "
                           "g *= n: each process still holds its gradient, return a new tensor")
    expect_tensor(out, (grads.shape[1],), "the global gradient")
    if not torch.isfinite(out).all():
        raise CheckFailure("the global gradient contains NaN or inf")
    return out


@gg_spec.case("equal shards: the mean over processes")
def _(fn):
    grads, sizes = _grads([16, 16, 16, 16])
    out = _call_gg(fn, grads, sizes)
    want = grads.mean(0)
    if _close(out, want):
        return
    if _close(out, grads.sum(0)):
        raise CheckFailure("you summed the gradients: the all-reduce adds them up, then each process must "
                           "divide by the world size W, or the step is W times too large")
    if _close(out, grads.mean(0) / len(sizes)):
        raise CheckFailure("divided by the world size twice: the mean over processes is already Σ g_w / W")
    if _close(out, grads[0]):
        raise CheckFailure("you returned process 0's gradient: every process must get the average of all of them")
    if _close(out, (sizes[:, None] * grads).sum(0)):
        raise CheckFailure("weighted by n_w but not normalised: divide by Σ n_w")
    raise CheckFailure("with equal shards the global gradient is the plain mean over processes")


@gg_spec.case("unequal shards: weighted by the samples each process saw")
def _(fn):
    grads, sizes = _grads([8, 24, 32], seed=1)
    out = _call_gg(fn, grads, sizes)
    n = sizes.double()
    want = (n[:, None] * grads.double()).sum(0) / n.sum()
    if _close(out, want):
        return
    if _close(out, grads.mean(0)):
        raise CheckFailure("the plain mean over processes gives a process with 8 samples as much say as one "
                           "with 32: each g_w is a mean over n_w samples, so weight it by n_w and divide by "
                           "Σ n_w (DDP's all-reduce assumes equal shards)")
    if _close(out, ((grads.double() / n[:, None]).sum(0) / (1 / n).sum())):
        raise CheckFailure("weighted by 1/n_w: the gradient of a process that saw more samples must count more, "
                           "weight by n_w")
    if _close(out, (n[:, None] * grads.double()).sum(0) / len(sizes)):
        raise CheckFailure("weighted by n_w but divided by the world size: divide by Σ n_w")
    if _close(out, (n[:, None] * grads.double()).sum(0)):
        raise CheckFailure("weighted by n_w but not normalised: divide by Σ n_w")
    raise CheckFailure("the global gradient is Σ_w n_w·g_w / Σ_w n_w")


@gg_spec.case("leaves the per-process gradients unchanged")
def _(fn):
    for sizes in ([4, 4], [3, 9, 5]):
        grads, n = _grads(sizes, seed=2)
        _call_gg(fn, grads, n)



# ============================================================================ progressive distillation target
from genlib.distill import progressive_target  # noqa: E402  (the reference)

pt_spec = register("distill.progressive_target", progressive_target,
                   "two teacher Euler steps of size dt from (x_t, t), the second at (x_mid, t + dt); return "
                   "(x_end − x_t) / (2·dt), with no gradient into the teacher")


_Teacher = P9.PTeacher  # the instrumented teacher lives in genlib.probes.ch09 (built where fn runs)


def _pt_inputs(n=5, seed=0, shape=(1, 3, 3)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    t = torch.rand(n, generator=g) * 0.8
    y = torch.randint(0, 10, (n,), generator=g)
    return x, t, y


def _pt_wrong(teacher, x, t, dt, y):
    """The classic slips, in the order the check names them (first match wins)."""
    with torch.no_grad():
        v1 = teacher(x, t, y)
        xm = x + dt * v1
        right = (xm + dt * teacher(xm, t + dt, y) - x) / (2 * dt)
        return [
            ("you returned (x_t − x_end)/(2·dt): the sign is reversed — the target points from x_t to where "
             "the two teacher steps land, (x_end − x_t)/(2·dt)", -right),
            ("you divided by dt instead of 2·dt: the student takes ONE step of size 2·dt, so its velocity "
             "is (x_end − x_t)/(2·dt) — yours is twice that", 2 * right),
            ("you returned the end point x_end, not a velocity: divide the displacement by the student's "
             "step, (x_end − x_t)/(2·dt)", x + 2 * dt * right),
            ("you returned the teacher's velocity at (x_t, t) — one teacher step. The target must reproduce "
             "TWO teacher steps: a second evaluation at (x_mid, t + dt)", v1),
            ("the second teacher evaluation used time t: it belongs to t + dt (the time of x_mid)",
             (dt * v1 + dt * teacher(xm, t, y)) / (2 * dt)),
            ("the second teacher evaluation used time t + 2·dt: x_mid sits at t + dt",
             (dt * v1 + dt * teacher(xm, t + 2 * dt, y)) / (2 * dt)),
            ("the second teacher evaluation used time t − dt: time runs from noise (t = 0) to data (t = 1), so "
             "x_mid = x_t + dt·v sits at t + dt", (dt * v1 + dt * teacher(xm, t - dt, y)) / (2 * dt)),
            ("the teacher took two half steps of dt/2 and you divided by dt: here dt is the TEACHER's step — "
             "two teacher steps of dt, one student step of 2·dt, target (x_end − x_t)/(2·dt)",
             (dt / 2 * v1 + dt / 2 * teacher(x + dt / 2 * v1, t + dt / 2, y)) / dt),
            ("the second teacher evaluation was at x_t, not at x_mid = x_t + dt·v(x_t, t): the second step "
             "starts where the first one ended", (v1 + teacher(x, t + dt, y)) / 2),
            ("the teacher took steps of 2·dt each: its steps are dt, the student's one step is 2·dt",
             (2 * dt * v1 + 2 * dt * teacher(x + 2 * dt * v1, t + 2 * dt, y)) / (2 * dt)),
            ("the label y went to the first teacher call only: pass it to the second call too, "
             "v(x_mid, t + dt, y)", (dt * v1 + dt * teacher(xm, t + dt, None)) / (2 * dt)),
            ("the teacher was called without the label y: pass y to both calls (a class-conditional teacher "
             "draws the requested digit only when told which one)",
             (dt * teacher(x, t, None) + dt * teacher(x + dt * teacher(x, t, None), t + dt, None)) / (2 * dt)),
        ]


def _pt_compare(fn, x, t, dt, y, backward=False):
    """The learner's target from a fresh PTeacher (run by the probe where fn lives), judged here
    against the reference and the named slips computed with an identical teacher."""
    x0 = x
    x = x.clone()          # the learner's function gets its own copy; x0 stays the original
    t0 = t
    obs = probe(fn, P9.progressive, x, t.clone(), dt, y, backward=backward)
    x, t = x0, t0
    if not torch.equal(obs["x_after"], x):
        raise CheckFailure("x_t changed: your function moved x_t in place (x_t += …); build new tensors, the "
                           "training loop still needs x_t as the student's input")
    got = obs["out"]
    if got is None:
        raise CheckFailure(f"return a tensor (the target velocity), not {obs['type']}")
    expect_tensor(got, tuple(x.shape), "the target")
    if not torch.isfinite(got).all():
        raise CheckFailure("the target has NaN or inf entries")
    teacher = _Teacher()
    with torch.no_grad():
        want = progressive_target(teacher, x, t, dt, y)
    if not _close(got, want):
        for msg, wrong in _pt_wrong(teacher, x, t, dt, y):
            if _close(got, wrong):
                raise CheckFailure(msg)
        raise CheckFailure(f"the target differs from (x_end − x_t)/(2·dt) (max |diff| "
                           f"{float((got.double() - want.double()).abs().max()):.3g}): x_mid = x_t + dt·v(x_t, t, y), "
                           "x_end = x_mid + dt·v(x_mid, t + dt, y)")
    return obs


@pt_spec.case("two teacher steps of dt reproduced by one step of 2·dt")
def _(fn):
    for seed, dt in ((0, 0.05), (1, 0.125)):
        x, t, y = _pt_inputs(seed=seed)
        _pt_compare(fn, x, t, dt, y)


@pt_spec.case("the target carries no gradient into the teacher",
              depends_on=("two teacher steps of dt reproduced by one step of 2·dt",))
def _(fn):
    x, t, y = _pt_inputs(seed=2)
    obs = _pt_compare(fn, x, t, 0.1, y, backward=True)
    if obs["requires_grad"]:
        raise CheckFailure("the target requires grad: it was computed with the teacher's graph attached. "
                           "Wrap the teacher calls in torch.no_grad() (or detach the result) — the target is "
                           "a fixed label for the student, and the teacher must not be trained by its loss")
    if obs["backward_error"]:
        raise CheckFailure("the student's loss against your target cannot be back-propagated "
                           f"({obs['backward_error']}): a tensor made under torch.inference_mode() cannot enter "
                           "a loss that is trained; use torch.no_grad() (or .detach()) instead")
    if obs["calls"] != 2:
        raise CheckFailure(f"the teacher was called {obs['calls']} times for one target: two Euler steps are "
                           "two network evaluations (that is what the student saves)")


@pt_spec.case("works with no label (y = None), for images of any shape and dt up to 1/2",
              depends_on=("two teacher steps of dt reproduced by one step of 2·dt",))
def _(fn):
    for shape, dt in (((1, 8, 8), 0.5), ((3, 2, 2), 1 / 64)):
        x, t, _ = _pt_inputs(n=4, seed=3, shape=shape)
        _pt_compare(fn, x, t * (1 - 2 * dt), dt, None)


@pt_spec.case("runs where the tensors live (the chapter uses a GPU when there is one)",
              depends_on=("two teacher steps of dt reproduced by one step of 2·dt",))
def _(fn):
    obs = probe(fn, P9.progressive_meta)
    if obs["error"]:
        raise CheckFailure("with x_t and t on another device than the CPU your function fails "
                           f"({obs['error']}): a tensor you create inside it (torch.ones(…), torch.tensor(…)) lives on "
                           "the CPU. Build it from the inputs instead (t + dt, torch.ones_like(t)) so it follows them "
                           "(checked with tensors on PyTorch's 'meta' device, which behaves like a GPU here)")
    if obs["device"] not in (None, "meta"):
        raise CheckFailure(f"for inputs on another device the target came back on {obs['device']}: keep it on "
                           "x_t's device")
