"""genlib.transformer: causal mask, KV cache = no cache, guidance, sampling step, MaskGIT."""
import torch

import pytest

from genlib.transformer import (KVCache, MaskGIT, TokenGPT, causal_mask, guided_logits, kv_cache_bytes,
                               sample_step)


def _gpt(seed=0):
    torch.manual_seed(seed)
    return TokenGPT(k=12, n_img=9, cond_vocab=5, n_cond=3, dim=32, layers=2, heads=4).eval()


def test_causal_mask():
    m = causal_mask(4)
    assert m.dtype == torch.bool and m.tolist()[1] == [True, True, False, False]


def test_logits_do_not_depend_on_future_tokens():
    m = _gpt()
    cond = torch.randint(5, (2, 3))
    img = torch.randint(12, (2, 9))
    img2 = img.clone()
    img2[:, 5:] = (img2[:, 5:] + 1) % 12
    a, b = m(cond, img), m(cond, img2)
    assert a.shape == (2, 9, 12)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-5)          # logits for tokens 0..5 see ≤ 4
    assert not torch.allclose(a[:, 6:], b[:, 6:], atol=1e-5)


def test_kv_cache_gives_identical_samples():
    m = _gpt(1)
    cond = torch.randint(5, (7, 3))
    for guidance in (1.0, 2.5):
        g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        a, la = m.generate(cond, guidance=guidance, generator=g1, use_cache=True, return_logits=True)
        b, lb = m.generate(cond, guidance=guidance, generator=g2, use_cache=False, return_logits=True)
        assert a.shape == (7, 9) and la.shape == (7, 9, 12)
        # the logits agree to rounding, not bitwise; the tokens agree unless a uniform falls within
        # that rounding of a CDF boundary (it does not for this seed)
        assert torch.allclose(la, lb, atol=1e-4) and torch.equal(a, b)
        # the returned logits are the ones the tokens were drawn from: a teacher-forced full pass
        if guidance == 1.0:
            assert torch.allclose(m(cond, a)[:, :9], la, atol=1e-4)


def test_preallocated_cache_matches_the_concat_cache_and_no_cache():
    """The preallocated cache (no torch.cat, no mask for one-token steps) draws the same tokens from
    the same random numbers as the naive cache and as no cache, with and without guidance."""
    m = _gpt(2)
    cond = torch.randint(5, (6, 3))
    for guidance in (1.0, 3.0):
        got = {}
        for key, kw in {"pre": dict(use_cache=True), "cat": dict(use_cache=True, cache_impl="concat"),
                        "none": dict(use_cache=False)}.items():
            got[key] = m.generate(cond, guidance=guidance, generator=torch.Generator().manual_seed(5),
                                  return_logits=True, **kw)
        for key in ("cat", "none"):
            assert torch.equal(got["pre"][0], got[key][0]), key
            assert torch.allclose(got["pre"][1], got[key][1], atol=1e-4), key
    with pytest.raises(ValueError, match="cache_impl"):
        m.generate(cond, cache_impl="dict")


def test_kv_cache_buffers_append_and_refuse_overflow():
    c = KVCache(5)
    assert c.nbytes == 0 and c.length == 0
    k, v = torch.randn(2, 4, 3, 8), torch.randn(2, 4, 3, 8)
    ka, va = c.append(k, v)
    assert torch.equal(ka, k) and torch.equal(va, v) and c.length == 3
    buf = c.k.data_ptr()
    k2, v2 = torch.randn(2, 4, 1, 8), torch.randn(2, 4, 1, 8)
    ka, va = c.append(k2, v2)
    assert ka.shape == (2, 4, 4, 8) and torch.equal(ka[:, :, 3:], k2) and torch.equal(va[:, :, :3], v)
    assert c.k.data_ptr() == buf and ka.data_ptr() == buf        # no reallocation: views of one buffer
    assert c.nbytes == 2 * 2 * 4 * 5 * 8 * 4
    c.append(k2, v2)
    with pytest.raises(ValueError, match="full"):
        c.append(k2, v2)
    with pytest.raises(ValueError):
        KVCache(0)
    c2 = KVCache(4)
    c2.append(torch.randn(2, 4, 1, 8), torch.randn(2, 4, 1, 8))
    for bad in (torch.randn(3, 4, 1, 8), torch.randn(2, 4, 1, 8, dtype=torch.float64)):
        with pytest.raises(ValueError, match="do not fit"):
            c2.append(bad, bad)


def test_kv_cache_bytes_formula():
    # 2 (k and v) · layers · tokens · heads · head_dim · 4 bytes
    assert kv_cache_bytes(3, 67, 96, 4) == 2 * 3 * 67 * 96 * 4
    assert kv_cache_bytes(3, 67, 96, 4, kv_heads=1) * 4 == kv_cache_bytes(3, 67, 96, 4)
    assert kv_cache_bytes(3, 67, 96, 4, kv_heads=2, bytes_per_number=2, batch=8) == 2 * 3 * 67 * 48 * 2 * 8
    for bad in (dict(kv_heads=3), dict(kv_heads=0), dict(kv_heads=8)):
        with pytest.raises(ValueError):
            kv_cache_bytes(3, 67, 96, 4, **bad)
    with pytest.raises(ValueError):
        kv_cache_bytes(3, 67, 96, 5)


def test_cached_logits_equal_full_forward():
    m = _gpt(2)
    cond = torch.randint(5, (3, 3))
    img = torch.randint(12, (3, 9))
    full = m(cond, img)
    caches = [dict() for _ in m.blocks]
    steps = [m._run(m._embed(cond, None), True, caches)[:, -1]]
    for t in range(1, 9):
        steps.append(m._run(m._embed(None, img[:, t - 1:t], 3 + t - 1), True, caches)[:, -1])
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)


def test_guided_logits_and_sample_step():
    c, u = torch.randn(4, 6), torch.randn(4, 6)
    assert torch.allclose(guided_logits(c, u, 1.0), c) and torch.allclose(guided_logits(c, u, 0.0), u)
    logits = torch.tensor([[0.0, 10.0, 0.0], [10.0, 0.0, 0.0]])
    assert sample_step(logits, 1.0, torch.tensor([0.5, 0.5])).tolist() == [1, 0]
    # frequencies follow softmax(logits / τ)
    g = torch.Generator().manual_seed(0)
    lg = torch.log(torch.tensor([0.2, 0.5, 0.3])).expand(20000, 3)
    freq = torch.bincount(sample_step(lg, 1.0, generator=g), minlength=3) / 20000
    assert torch.allclose(freq, torch.tensor([0.2, 0.5, 0.3]), atol=0.015)


def test_guidance_sharpens_a_trained_conditional_gpt():
    """Train a tiny GPT where the condition decides the tokens; guidance 3 follows it more often
    than guidance 0 (unconditional)."""
    torch.manual_seed(0)
    m = TokenGPT(k=4, n_img=3, cond_vocab=4, n_cond=1, dim=32, layers=1, heads=2)
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        cond = torch.randint(4, (64, 1), generator=g)
        noisy = torch.rand(64, 3, generator=g) < 0.3
        img = torch.where(noisy, torch.randint(4, (64, 3), generator=g), cond.expand(-1, 3))
        loss = m.loss(cond, img, p_uncond=0.2, generator=g)
        opt.zero_grad(); loss.backward(); opt.step()  # noqa: E702
    m.eval()
    cond = torch.randint(4, (400, 1), generator=g)
    hit = {s: (m.generate(cond, guidance=s, generator=torch.Generator().manual_seed(1)) == cond)
           .float().mean().item() for s in (0.0, 1.0, 3.0)}
    assert hit[0.0] < 0.45 < hit[1.0] < hit[3.0]


def test_maskgit_loss_and_decoding():
    torch.manual_seed(0)
    m = MaskGIT(k=12, n_img=9, cond_vocab=5, n_cond=3, dim=32, layers=2, heads=4)
    cond, img = torch.randint(5, (4, 3)), torch.randint(12, (4, 9))
    loss = m.loss(cond, img, generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    m.eval()
    out = m.generate(cond, steps=4, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 9) and out.max() < 12 and out.min() >= 0   # nothing left masked
    out2 = m.generate(cond, steps=4, guidance=2.0, generator=torch.Generator().manual_seed(0))
    assert out2.shape == (4, 9) and (out2 != m.mask_id).all()
    # bidirectional: changing a late token changes an early position's logits
    a = m(cond, img)
    img2 = img.clone()
    img2[:, -1] = (img2[:, -1] + 1) % 12
    assert not torch.allclose(a[:, 0], m(cond, img2)[:, 0], atol=1e-6)
