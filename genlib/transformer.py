"""Transformers over image tokens: the decoder-only (GPT) route and the masked (MaskGIT) route.

An image is an 8×8 grid of VQ codes (``genlib.tokens``) read in raster order; a caption (or a
class) is a few condition tokens in front. Both models here predict image tokens given the
condition:

* ``TokenGPT`` — causal, one token per step, with a KV cache: decoder-only over [condition;
  image tokens] like DALL·E 1 (2021, caption tokens in the prefix) and LlamaGen (2024, projected
  text-encoder embeddings in the prefix). Parti (2022) uses the same next-token objective in an
  encoder-decoder Transformer instead. 64 tokens = 64 forward passes.
* ``MaskGIT`` — bidirectional, trained to fill in randomly masked tokens, decoded in a handful of
  parallel steps, keeping the most confident guesses each time (Chang et al. 2022).

Both support classifier-free guidance on the logits: ``guided_logits(cond, uncond, scale)``.

=====================  =================================================================
``causal_mask``        (L, L) bool, True where query i may attend to key j (j ≤ i)
``guided_logits``      uncond + scale·(cond − uncond)
``sample_step``        logits (N, K) → token ids (N,) from softmax(logits/τ) with given uniforms
``KVCache``            one layer's keys and values in preallocated buffers, filled left to right
``kv_cache_bytes``     the formula: 2 · layers · tokens · kv_heads · head_dim · bytes per number
=====================  =================================================================
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def causal_mask(length: int, device=None) -> torch.Tensor:
    """(L, L) bool: entry [i, j] is True when position i may attend to position j, i.e. j ≤ i."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def guided_logits(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on logits: scale 1 is the conditional model, 0 the unconditional,
    > 1 pushes further away from the unconditional prediction (sharper, less diverse)."""
    return uncond + scale * (cond - uncond)


def sample_step(logits: torch.Tensor, temperature: float = 1.0,
                uniform: torch.Tensor | None = None, generator: torch.Generator | None = None):
    """One autoregressive sampling step: logits (N, K) → ids (N,) drawn from softmax(logits/τ).

    Drawn by inverting the CDF with one uniform number per row, so that two computations of the
    same logits (cached or not) with the same random stream give the same tokens.
    """
    if uniform is None:
        uniform = torch.rand(len(logits), generator=generator, device=logits.device)
    probs = F.softmax(logits.float() / temperature, dim=-1)
    cdf = probs.cumsum(-1)
    idx = torch.searchsorted(cdf, (uniform * cdf[:, -1]).unsqueeze(1).contiguous()).squeeze(1)
    return idx.clamp(max=logits.shape[-1] - 1)


def kv_cache_bytes(layers: int, tokens: int, dim: int, heads: int, kv_heads: int | None = None,
                   bytes_per_number: int = 4, batch: int = 1) -> int:
    """Bytes a KV cache holds for ``batch`` sequences of ``tokens`` positions: keys and values (2) for
    every layer and position, ``kv_heads`` heads of ``dim // heads`` numbers each.

    ``kv_heads = heads`` (default) is multi-head attention; 1 is multi-query attention (Shazeer
    2019); 1 < kv_heads < heads is grouped-query attention (Ainslie et al. 2023): the cache shrinks
    by heads / kv_heads while the queries keep all heads."""
    kv_heads = heads if kv_heads is None else kv_heads
    if dim % heads or not 1 <= kv_heads <= heads or heads % kv_heads:
        raise ValueError(f"need heads | dim and kv_heads | heads, got dim={dim}, heads={heads}, "
                         f"kv_heads={kv_heads}")
    return 2 * layers * tokens * kv_heads * (dim // heads) * bytes_per_number * batch


class KVCache:
    """One attention layer's keys and values in buffers allocated once, (N, H, capacity, d_head).

    ``append(k, v)`` writes the new positions after the ``length`` already stored and returns views
    of everything stored so far — no reallocation per step, unlike growing the cache with
    ``torch.cat`` (which copies all earlier keys and values at every step: O(L²) bytes moved for L
    tokens instead of O(L)). The buffers are allocated at the first ``append``, with the dtype and
    device of the keys. ``nbytes`` is the memory the buffers hold (at capacity).
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity, self.length = capacity, 0
        self.k = self.v = None

    def append(self, k: torch.Tensor, v: torch.Tensor):
        l, end = k.shape[2], self.length + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"KV cache full: {self.length} + {l} positions > capacity {self.capacity}")
        if self.k is None:
            n, h, _, dh = k.shape
            self.k = k.new_empty(n, h, self.capacity, dh)
            self.v = v.new_empty(n, h, self.capacity, dh)
        want = (self.k.shape[0], self.k.shape[1], l, self.k.shape[3])
        if k.shape != want or v.shape != want or k.dtype != self.k.dtype or v.dtype != self.k.dtype:
            raise ValueError(f"keys {tuple(k.shape)} {k.dtype} / values {tuple(v.shape)} {v.dtype} do not fit "
                             f"this cache: (batch, heads, l, head_dim) = {want}, {self.k.dtype}")
        self.k[:, :, self.length:end] = k
        self.v[:, :, self.length:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    @property
    def nbytes(self) -> int:
        return 0 if self.k is None else self.k.nbytes + self.v.nbytes


class Attention(nn.Module):
    """Multi-head self-attention with an optional boolean mask and an optional KV cache.

    x: (N, L, D). ``cache``, when given, receives this layer's keys and values and supplies the
    earlier ones: new queries then attend to all cached positions plus, causally, to the new ones.
    It is a ``KVCache`` (preallocated) or a dict (the naive cache, grown with ``torch.cat``, with the
    causal mask rebuilt at every call — kept as the reference the preallocated one is measured
    against). A single new query is the last position and may see every key, so the preallocated
    path builds no mask for it.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, causal: bool, cache: KVCache | dict | None = None):
        n, l, d = x.shape
        q, k, v = self.qkv(x).view(n, l, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        need_mask = causal
        if isinstance(cache, KVCache):
            k, v = cache.append(k, v)
            need_mask = causal and l > 1
        elif cache is not None:
            if "k" in cache:
                k = torch.cat([cache["k"], k], 2)
                v = torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        att = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])        # (N, H, Lq, Lk)
        if need_mask:
            lk = k.shape[2]
            allowed = causal_mask(lk, x.device)[lk - l:]                  # the last Lq query rows
            att = att.masked_fill(~allowed, float("-inf"))
        out = att.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(n, l, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x, causal: bool, cache: KVCache | dict | None = None):
        x = x + self.attn(self.ln1(x), causal, cache)
        return x + self.mlp(self.ln2(x))


class _TokenModel(nn.Module):
    """Shared parts: condition-token embedding (with a null token for guidance), image-token
    embedding, positions, blocks, output head."""

    def __init__(self, k: int, n_img: int, cond_vocab: int, n_cond: int, dim: int, layers: int,
                 heads: int, extra_img_tokens: int = 0):
        super().__init__()
        self.k, self.n_img, self.n_cond, self.cond_vocab = k, n_img, n_cond, cond_vocab
        self.null = cond_vocab                                    # id of the "no condition" token
        self.cond_embed = nn.Embedding(cond_vocab + 1, dim)
        self.img_embed = nn.Embedding(k + extra_img_tokens, dim)
        self.pos = nn.Parameter(torch.randn(n_cond + n_img, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, k)

    def null_cond(self, n: int, device=None) -> torch.Tensor:
        return torch.full((n, self.n_cond), self.null, dtype=torch.long, device=device)

    def drop_cond(self, cond: torch.Tensor, p: float, generator=None) -> torch.Tensor:
        """Replace the whole condition of a random fraction p of the rows by the null token."""
        drop = torch.rand(len(cond), generator=generator).to(cond.device) < p
        return torch.where(drop.unsqueeze(1), torch.full_like(cond, self.null), cond)

    def _run(self, h, causal, caches=None):
        for i, blk in enumerate(self.blocks):
            h = blk(h, causal, None if caches is None else caches[i])
        return self.head(self.ln(h))


class TokenGPT(_TokenModel):
    """Decoder-only transformer over [condition tokens; image tokens].

    ``forward(cond, img)``: cond (N, n_cond), img (N, n_img) → logits (N, n_img, K) where the logits
    at image position t only see the condition and the image tokens before t.
    """

    def __init__(self, k: int = 64, n_img: int = 64, cond_vocab: int = 20, n_cond: int = 4,
                 dim: int = 96, layers: int = 3, heads: int = 4):
        super().__init__(k, n_img, cond_vocab, n_cond, dim, layers, heads)

    def _embed(self, cond, img, start: int = 0):
        parts = []
        if cond is not None:
            parts.append(self.cond_embed(cond))
        if img is not None and img.shape[1]:
            parts.append(self.img_embed(img))
        h = torch.cat(parts, 1)
        return h + self.pos[start:start + h.shape[1]]

    def forward(self, cond: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        h = self._embed(cond, img[:, :-1])            # the last image token predicts nothing
        logits = self._run(h, causal=True)
        return logits[:, self.n_cond - 1:]            # the last condition position predicts token 0

    def loss(self, cond, img, p_uncond: float = 0.1, generator=None):
        cond = self.drop_cond(cond, p_uncond, generator)
        logits = self(cond, img)
        return F.cross_entropy(logits.reshape(-1, self.k), img.reshape(-1))

    @torch.no_grad()
    def generate(self, cond: torch.Tensor, guidance: float = 1.0, temperature: float = 1.0,
                 generator: torch.Generator | None = None, use_cache: bool = True,
                 uniforms: torch.Tensor | None = None, return_logits: bool = False,
                 cache_impl: str = "preallocated"):
        """cond (N, n_cond) → image tokens (N, n_img), one token per step.

        ``use_cache=False`` recomputes the whole prefix of length t at every step t: O(t·d²) for
        the projections and MLPs plus O(t²·d) for attention, so O(L²·d² + L³·d) for a sequence of
        L tokens. With the cache each step feeds only the newest token against the stored keys and
        values: O(d² + t·d) per step, O(L·d² + L²·d) in all, for 2·layers·L·d stored numbers per
        sequence (``kv_cache_bytes``). The two compute the same logits in exact arithmetic; in
        floating point they differ by rounding (~1e-5 here), so from the same random numbers they
        give the same tokens except when a uniform lands within that rounding of a CDF boundary
        (rare, not impossible).
        ``cache_impl``: "preallocated" (``KVCache`` buffers, no mask for the one-token steps) or
        "concat" (the naive cache grown with ``torch.cat``, mask rebuilt every step).
        ``uniforms`` (n_img, N) fixes the random numbers (default: drawn from ``generator``).
        ``return_logits``: also return the (guided) logits each token was drawn from, (N, n_img, K).
        """
        if cache_impl not in ("preallocated", "concat"):
            raise ValueError(f"cache_impl must be 'preallocated' or 'concat', got {cache_impl!r}")
        n = len(cond)
        if uniforms is None:
            uniforms = torch.rand(self.n_img, n, generator=generator).to(cond.device)
        guide = guidance != 1.0
        c = torch.cat([cond, self.null_cond(n, cond.device)]) if guide else cond
        img = torch.zeros(len(c), self.n_img, dtype=torch.long, device=cond.device)
        if not use_cache:
            caches = None
        elif cache_impl == "preallocated":
            caches = [KVCache(self.n_cond + self.n_img - 1) for _ in self.blocks]
        else:
            caches = [dict() for _ in self.blocks]
        seen = []
        for t in range(self.n_img):
            if use_cache:
                h = self._embed(c, None) if t == 0 else self._embed(None, img[:, t - 1:t],
                                                                      self.n_cond + t - 1)
                logits = self._run(h, True, caches)[:, -1]
            else:
                logits = self._run(self._embed(c, img[:, :t]), True)[:, -1]
            if guide:
                logits = guided_logits(logits[:n], logits[n:], guidance)
            if return_logits:
                seen.append(logits)
            tok = sample_step(logits, temperature, uniforms[t])
            img[:n, t] = tok
            if guide:
                img[n:, t] = tok
        return (img[:n], torch.stack(seen, 1)) if return_logits else img[:n]


class MaskGIT(_TokenModel):
    """Bidirectional transformer that fills in masked image tokens (Chang et al. 2022).

    ``forward(cond, img)``: img (N, n_img) with some entries equal to ``mask_id`` (= K) → logits
    (N, n_img, K) for every position. Trained on a random fraction cos(π/2·u) of masked tokens.
    """

    def __init__(self, k: int = 64, n_img: int = 64, cond_vocab: int = 20, n_cond: int = 4,
                 dim: int = 96, layers: int = 3, heads: int = 4):
        super().__init__(k, n_img, cond_vocab, n_cond, dim, layers, heads, extra_img_tokens=1)
        self.mask_id = k

    def forward(self, cond: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.cond_embed(cond), self.img_embed(img)], 1) + self.pos
        return self._run(h, causal=False)[:, self.n_cond:]

    def loss(self, cond, img, p_uncond: float = 0.1, generator=None):
        n, l = img.shape
        cond = self.drop_cond(cond, p_uncond, generator)
        ratio = torch.cos(0.5 * math.pi * torch.rand(n, 1, generator=generator)).to(img.device)
        scores = torch.rand(n, l, generator=generator).to(img.device)
        n_mask = (ratio * l).ceil().clamp(min=1)
        masked = scores.argsort(1).argsort(1) < n_mask                # n_mask random positions
        logits = self(cond, torch.where(masked, torch.full_like(img, self.mask_id), img))
        return F.cross_entropy(logits[masked], img[masked])

    @torch.no_grad()
    def generate(self, cond: torch.Tensor, steps: int = 8, guidance: float = 1.0,
                 temperature: float = 1.0, generator: torch.Generator | None = None,
                 confidence_noise: float = 1.0) -> torch.Tensor:
        """cond (N, n_cond) → image tokens (N, n_img) in ``steps`` parallel steps.

        Each step samples every masked position, then keeps the most confident samples and
        re-masks the rest; the number still masked after step s is ⌊L·cos(π/2·s/steps)⌋.
        A little Gumbel noise on the confidences (annealed to 0) keeps the choice from being greedy.
        """
        n, l = len(cond), self.n_img
        img = torch.full((n, l), self.mask_id, dtype=torch.long, device=cond.device)
        for s in range(steps):
            masked = img == self.mask_id
            if guidance != 1.0:
                both = self(torch.cat([cond, self.null_cond(n, cond.device)]), img.repeat(2, 1))
                logits = guided_logits(both[:n], both[n:], guidance)
            else:
                logits = self(cond, img)
            u = torch.rand(n * l, generator=generator).to(cond.device)
            tok = sample_step(logits.reshape(n * l, -1), temperature, u).view(n, l)
            prob = F.softmax(logits.float() / temperature, -1).gather(-1, tok.unsqueeze(-1))[..., 0]
            g = torch.rand(n, l, generator=generator).to(cond.device).clamp(1e-9, 1 - 1e-9)
            conf = prob.log() + confidence_noise * (1 - (s + 1) / steps) * -torch.log(-torch.log(g))
            conf = torch.where(masked, conf, torch.full_like(conf, float("inf")))
            tok = torch.where(masked, tok, img)
            n_left = int(math.floor(l * math.cos(0.5 * math.pi * (s + 1) / steps)))
            if n_left > 0:
                remask = conf.argsort(1).argsort(1) < n_left                  # least confident
                tok = torch.where(remask, torch.full_like(tok, self.mask_id), tok)
            img = tok
        return img
