"""A small Diffusion Transformer (DiT; Peebles & Xie 2023, "Scalable Diffusion Models with
Transformers") as the velocity network of flow matching.

An image (or a latent) is cut into p×p patches; each patch becomes one token, a plain transformer
mixes the tokens, and a linear layer turns every token back into its patch. The network is called
``model(x, t, y)`` like chapter 08's ``CaptionFlowNet``: y is (N, L) caption token ids
(``genlib.t2i.caption_tokens``) or (N,) class labels (a one-word caption), and the id
``null_class`` (= vocabulary size) in every position is the empty caption, so
``genlib.flow.train_flow`` drops captions for classifier-free guidance and ``sample_euler(...,
guidance=s)`` guides it. The text encoder is the one ``CaptionFlowNet`` uses — a table of word
embeddings — read either pooled (their sum) or as a sequence (one token per word, plus a learned
position per word), so a comparison with chapter 08 changes the generator, not the text encoder.

The three ways the DiT paper (its "DiT block design" paragraphs) feeds the time t and the condition c into
a block, all built here (``cond=``):

* ``"adaln_zero"``: c = embed(t) + pooled caption regresses, per block, a shift, a scale and a
  gate for the attention and for the MLP; the regression layer starts at zero, so every block
  starts as the identity. Paper, Figure 5: "adaLN-Zero outperforms cross-attention and in-context
  conditioning at all stages of training"; of the block designs, adaLN "adds the least Gflops".
* ``"in_context"``: [time token; word tokens] are appended to the image tokens, pass through
  plain transformer blocks with them, and are dropped before the final layer. The paper appends
  2 tokens to 256; here 5 condition tokens join 16 image tokens (16×16 pixels, p = 4), so the
  extra cost is far from small: measure it with ``cost``.
* ``"cross_attention"``: a cross-attention layer after self-attention in each block lets the
  image tokens read the sequence [time token; word tokens]; the paper: "Cross-attention adds the
  most Gflops to the model, roughly a 15% overhead".

Careful when comparing the three: here adaLN-Zero reads the caption *pooled* (an order-blind sum,
a bag of words), the other two read it as a sequence with word positions. On two-object captions
adaLN-Zero would lose binding to the pooling, not to the mechanism; the paper's comparison was on
class labels (one token, nothing to bind). Compare the mechanisms on class labels or one-object
captions, or give adaLN an order-aware pooled vector (review helper-32 H1).

The final layer is adaLN (shift, scale from c) + linear for ``"adaln_zero"`` and LayerNorm +
linear for the other two (there the condition enters only through its own mechanism); the last
linear layer is zero in every mode, so an untrained DiT outputs exactly 0.

=======================  ====================================================================
``patchify``             (N, C, H, W) → (N, (H/p)(W/p), C·p·p) tokens in raster order
``unpatchify``           the exact inverse
``modulate``             x·(1 + scale) + shift, one (shift, scale) per sample for all its tokens
``sincos_positions``     fixed 2-D sine-cosine position embedding (rows in one half, columns in
                         the other)
``CrossAttention``       queries from the image tokens, keys and values from condition tokens
``DiTBlock``             one transformer block with one of the three conditioning mechanisms
``DiT``                  patch embedding + positions + blocks + final layer + unpatchify
``cost``                 parameters, forward FLOPs (``FlopCounterMode``) and token count
=======================  ====================================================================
"""
from __future__ import annotations

import math

import torch
from torch import nn

from genlib.diffusion import timestep_embedding
from genlib.t2i import N_COND
from genlib.text import Tokenizer
from genlib.transformer import Attention

CONDS = ("adaln_zero", "in_context", "cross_attention")


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """x (N, C, H, W) → tokens (N, (H/p)·(W/p), C·p·p).

    Token k is the patch in patch-row k // (W/p), patch-column k % (W/p) (raster order); its
    features are the patch's pixels channel by channel, each channel row by row (the order of a
    Conv2d weight of kernel p, so a linear layer on these tokens is a stride-p convolution)."""
    if x.dim() != 4:
        raise ValueError(f"patchify needs (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if p < 1 or h % p or w % p:
        raise ValueError(f"patch size {p} must divide the height {h} and the width {w}")
    # (N, C, patch row, row inside the patch, patch column, column inside the patch)
    x = x.reshape(n, c, h // p, p, w // p, p)
    x = x.permute(0, 2, 4, 1, 3, 5)                    # (N, patch row, patch col, C, p, p)
    return x.reshape(n, (h // p) * (w // p), c * p * p)


def unpatchify(tokens: torch.Tensor, p: int, c: int, h: int, w: int) -> torch.Tensor:
    """tokens (N, (H/p)·(W/p), C·p·p) → images (N, C, H, W), the exact inverse of ``patchify``:
    ``unpatchify(patchify(x, p), p, *x.shape[1:])`` equals x."""
    if p < 1 or h % p or w % p:
        raise ValueError(f"patch size {p} must divide the height {h} and the width {w}")
    want = ((h // p) * (w // p), c * p * p)
    if tokens.dim() != 3 or tuple(tokens.shape[1:]) != want:
        raise ValueError(f"tokens of shape {tuple(tokens.shape)} do not fit C={c}, H={h}, W={w}, "
                         f"p={p}: need (N, {want[0]}, {want[1]})")
    x = tokens.reshape(len(tokens), h // p, w // p, c, p, p)
    x = x.permute(0, 3, 1, 4, 2, 5)                    # back to (N, C, patch row, row in patch, ...)
    return x.reshape(len(tokens), c, h, w)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (N, L, D) tokens; shift, scale (N, D), one vector per sample → x·(1 + scale) + shift.

    The ``[:, None, :]`` gives shift and scale a token axis of length 1, so every token of a
    sample gets the same shift and scale: adaLN applies one function to all tokens. Scale is
    written as 1 + scale so that a zero regression output leaves x unchanged."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


def sincos_positions(rows: int, cols: int, dim: int) -> torch.Tensor:
    """(rows·cols, dim) fixed position embedding of a token grid in raster order: the first
    dim/2 numbers are the sinusoidal embedding of the token's row, the last dim/2 of its column."""
    if dim % 4:
        raise ValueError(f"dim must be divisible by 4 for a 2-D sine-cosine embedding, got {dim}")
    row = torch.arange(rows).repeat_interleave(cols)   # 0,0,..,0,1,1,..: the row of each token
    col = torch.arange(cols).repeat(rows)              # 0,1,..,cols-1,0,1,..: its column
    return torch.cat([timestep_embedding(row, dim // 2), timestep_embedding(col, dim // 2)], 1)


class CrossAttention(nn.Module):
    """Multi-head attention from x (N, L, D) (queries) to a condition sequence ctx (N, M, D)
    (keys and values) → (N, L, D). Every image token gets its own mix of the words."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        n, l, d = x.shape
        hd = d // self.heads
        q = self.q(x).view(n, l, self.heads, hd).transpose(1, 2)                       # (N, H, L, hd)
        k, v = self.kv(ctx).view(n, ctx.shape[1], 2, self.heads, hd).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1) / math.sqrt(hd)).softmax(-1)                    # (N, H, L, M)
        return self.proj((att @ v).transpose(1, 2).reshape(n, l, d))


class DiTBlock(nn.Module):
    """Pre-norm transformer block (self-attention, MLP) with one conditioning mechanism.

    ``forward(x, c)``: x (N, L, D). c is (N, D) for "adaln_zero", the condition sequence
    (N, M, D) for "cross_attention", and None for "in_context" (the condition tokens are already
    in x). For "adaln_zero" the layer norms have no parameters of their own: shift and scale come
    from c, and the gates (also from c) are 0 at initialisation, so the block is the identity."""

    def __init__(self, dim: int, heads: int, cond: str = "adaln_zero", mlp_ratio: int = 4):
        super().__init__()
        if cond not in CONDS:
            raise ValueError(f"cond must be one of {CONDS}, got {cond!r}")
        if dim % heads:
            raise ValueError(f"heads ({heads}) must divide dim ({dim})")
        self.cond = cond
        affine = cond != "adaln_zero"
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=affine, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=affine, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_ratio * dim, dim))
        if cond == "cross_attention":
            self.norm_cross = nn.LayerNorm(dim, eps=1e-6)
            self.cross = CrossAttention(dim, heads)
        if cond == "adaln_zero":
            self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
            nn.init.zeros_(self.ada[1].weight)      # the "Zero": shift = scale = gate = 0 at start
            nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.cond == "adaln_zero":
            if c is None or c.dim() != 2:
                raise ValueError("an adaln_zero block needs a condition vector c of shape (N, D)")
            shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=1)   # each (N, D)
            x = x + gate1[:, None, :] * self.attn(modulate(self.norm1(x), shift1, scale1), causal=False)
            return x + gate2[:, None, :] * self.mlp(modulate(self.norm2(x), shift2, scale2))
        if self.cond == "cross_attention" and (c is None or c.dim() != 3):
            raise ValueError("a cross_attention block needs condition tokens c of shape (N, M, D)")
        x = x + self.attn(self.norm1(x), causal=False)
        if self.cond == "cross_attention":
            x = x + self.cross(self.norm_cross(x), c)
        return x + self.mlp(self.norm2(x))


class DiT(nn.Module):
    """Velocity (or noise) network v(x, t, y) over patches: x (N, C, H, W) → (N, C, H, W).

    ``image_size``: H = W, or (H, W) (e.g. (16, 32) for chapter 08's two-object images).
    ``patch`` p must divide H and W; T = (H/p)(W/p) tokens (``self.tokens``). ``dim`` must be
    divisible by 4 and by ``heads``. ``vocab``: caption vocabulary (default: chapter 08's
    ``Tokenizer``); ids 0..vocab-1 are words, ``null_class`` = vocab is the empty caption.
    ``max_words``: longest caption the per-word positions cover (sequence modes).
    ``null_len``: how many null tokens ``y=None`` stands for — the caption length the model is
    trained with (label dropout nulls whole rows of y): 4 for chapter 08's captions (the default),
    1 for (N,) class labels, 8 for two-object captions. Any other length is an input never seen.
    Guided sampling builds its null rows from y itself and does not depend on it.
    t is flow time in [0, 1] (multiplied by ``time_scale`` before the sinusoidal embedding).
    """

    def __init__(self, in_channels: int = 3, image_size=16, patch: int = 4, dim: int = 64,
                 depth: int = 4, heads: int = 4, cond: str = "adaln_zero", vocab: int | None = None,
                 max_words: int = 16, mlp_ratio: int = 4, time_scale: float = 1000.0,
                 null_len: int = N_COND):
        super().__init__()
        if cond not in CONDS:
            raise ValueError(f"cond must be one of {CONDS}, got {cond!r}")
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if patch < 1 or h % patch or w % patch:
            raise ValueError(f"patch size {patch} must divide the image size {h}×{w}")
        vocab = len(Tokenizer()) if vocab is None else vocab
        self.config = dict(in_channels=in_channels, image_size=image_size, patch=patch, dim=dim,
                           depth=depth, heads=heads, cond=cond, vocab=vocab, max_words=max_words,
                           mlp_ratio=mlp_ratio, time_scale=time_scale, null_len=null_len)
        if null_len < 1:
            raise ValueError(f"null_len must be at least 1, got {null_len}")
        self.null_len = null_len
        self.channels, self.height, self.width, self.patch = in_channels, h, w, patch
        self.cond, self.dim, self.time_scale, self.null_class = cond, dim, time_scale, vocab
        self.tokens = (h // patch) * (w // patch)
        self.embed = nn.Linear(in_channels * patch * patch, dim)          # = a stride-p convolution
        self.register_buffer("pos", sincos_positions(h // patch, w // patch, dim), persistent=False)
        self.time = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.words = nn.Embedding(vocab + 1, dim)                           # + the null caption id
        if cond != "adaln_zero":                                           # word order for sequences
            self.word_pos = nn.Parameter(torch.randn(max_words, dim))
        self.blocks = nn.ModuleList(DiTBlock(dim, heads, cond, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, elementwise_affine=cond != "adaln_zero", eps=1e-6)
        if cond == "adaln_zero":
            self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
            nn.init.zeros_(self.final_ada[1].weight)
            nn.init.zeros_(self.final_ada[1].bias)
        self.out = nn.Linear(dim, in_channels * patch * patch)
        nn.init.zeros_(self.out.weight)                                     # output exactly 0 at start
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        want = (self.channels, self.height, self.width)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"this DiT takes (N, {want[0]}, {want[1]}, {want[2]}), got {tuple(x.shape)}")
        if y is None:
            y = torch.full((len(x), self.null_len), self.null_class, dtype=torch.long, device=x.device)
        if y.dim() == 1:                                                    # class labels
            y = y[:, None]
        h = self.embed(patchify(x, self.patch)) + self.pos                 # (N, T, D)
        t_emb = self.time(timestep_embedding(t * self.time_scale, self.dim))  # (N, D)
        if self.cond == "adaln_zero":
            c = t_emb + self.words(y).sum(1)                                # pooled, as CaptionFlowNet
            for block in self.blocks:
                h = block(h, c)
            shift, scale = self.final_ada(c).chunk(2, dim=1)
            h = modulate(self.norm(h), shift, scale)
        else:
            if y.shape[1] > len(self.word_pos):
                raise ValueError(f"captions of {y.shape[1]} tokens > max_words={len(self.word_pos)}")
            words = self.words(y) + self.word_pos[:y.shape[1]]             # (N, M, D)
            ctx = torch.cat([t_emb[:, None, :], words], 1)                  # (N, 1 + M, D)
            if self.cond == "in_context":
                h = torch.cat([h, ctx], 1)
                for block in self.blocks:
                    h = block(h)
                h = h[:, :self.tokens]                                      # drop the condition tokens
            else:
                for block in self.blocks:
                    h = block(h, ctx)
            h = self.norm(h)
        return unpatchify(self.out(h), self.patch, *want)


def cost(model: nn.Module, x: torch.Tensor, t: torch.Tensor, y=None) -> dict:
    """Parameters, forward FLOPs of ``model(x, t, y)`` for the whole batch x (pass one sample for
    the cost per image) and the number of patch tokens (None for a model without patches).

    FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode``: matrix products and
    convolutions, 2 per multiply-add; element-wise work (norms, activations, softmax) is not counted.
    With T = HW/p² tokens of width D, one block costs about 24·T·D² for its projections and MLP
    (∝ 1/p²) plus 4·T²·D for the attention scores and their weighted sum (∝ 1/p⁴); the patch
    embedding, 2·T·(C·p²)·D = 2·C·H·W·D, does not depend on p at all.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, t, y)
    return {"params": sum(p.numel() for p in model.parameters()),
            "flops": counter.get_total_flops(), "tokens": getattr(model, "tokens", None)}
