"""Checks for chapter 08 (conditioning and text-to-image).

Vector quantisation with a straight-through gradient, CLIP's InfoNCE loss, the projection
discriminator's logit, the causal attention mask of a decoder-only transformer, and classifier-free
guidance on logits. Every check compares with formulas written out here, and when the learner's
numbers equal a known wrong formula it names that mistake.
"""
import torch
import torch.nn.functional as F

from genlib.conditioning import projection_logit
from genlib.exercises import CheckFailure, expect_tensor, register
from genlib.text import info_nce
from genlib.tokens import quantize
from genlib.transformer import causal_mask, guided_logits


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _close(a, b, tol: float = 1e-4) -> bool:
    return (torch.is_tensor(a) and a.shape == b.shape and bool(torch.isfinite(a).all())
            and torch.allclose(a.double(), b.double(), rtol=tol, atol=tol))


def _untouched(fn, args, names):
    before = [a.clone() if torch.is_tensor(a) else a for a in args]
    out = fn(*args)
    for name, a, b in zip(names, args, before):
        if torch.is_tensor(a) and not torch.equal(a, b):
            raise CheckFailure(f"your function changed its input {name} in place (+=, .add_(), "
                               f"indexing assignment...): the caller still needs {name}")
    return out


# ============================================================================ quantize
qz = register("tokens.quantize", quantize,
              "(z_q, idx): nearest codebook row by Euclidean distance, straight-through gradient")


def _vq_case(seed=0, n=3, d=4, h=5, w=6, k=9):
    g = _gen(seed)
    z = torch.randn(n, d, h, w, generator=g)
    # codes of very different lengths, so that "largest dot product" and "nearest" disagree
    codebook = torch.randn(k, d, generator=g) * torch.linspace(0.2, 3.0, k).unsqueeze(1)
    return z, codebook


def _ref_idx(z, codebook):
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).double()
    return torch.cdist(flat, codebook.double()).argmin(1).view(z.shape[0], z.shape[2], z.shape[3])


def _pair(out):
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise CheckFailure("quantize must return a pair (z_q, idx)")
    return out


@qz.case("returns z_q (N, D, H, W) and idx (N, H, W) of integers")
def _(fn):
    z, cb = _vq_case()
    z_q, idx = _pair(_untouched(fn, (z, cb), ("z", "codebook")))
    if torch.is_tensor(z_q) and tuple(z_q.shape) == (3, 5, 6, 4):
        raise CheckFailure("z_q has shape (N, H, W, D): move the code dimension back to position 1 "
                           "(.permute(0, 3, 1, 2)) so z_q is shaped like z")
    expect_tensor(z_q, z.shape, "z_q")
    if torch.is_tensor(idx) and idx.numel() == 90 and tuple(idx.shape) != (3, 5, 6):
        raise CheckFailure(f"idx has shape {tuple(idx.shape)}: reshape it to (N, H, W) = (3, 5, 6), "
                           "one code index per spatial position")
    expect_tensor(idx, (3, 5, 6), "idx")
    if idx.dtype not in (torch.int64, torch.int32):
        raise CheckFailure(f"idx has dtype {idx.dtype}; indices are integers (argmin returns int64), so "
                           "that codebook[idx] can look the codes up")
    if z_q.dtype != z.dtype:
        raise CheckFailure(f"z_q has dtype {z_q.dtype} for {z.dtype} inputs: keep z's dtype")


@qz.case("picks the nearest code by Euclidean distance")
def _(fn):
    z, cb = _vq_case(1)
    _, idx = _pair(fn(z, cb))
    want = _ref_idx(z, cb)
    expect_tensor(idx, want.shape, "idx")
    if torch.equal(idx, want):
        return
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    shape = want.shape
    if torch.equal(idx, (flat @ cb.t()).argmax(1).view(shape)):
        raise CheckFailure("you picked the code with the largest dot product z·e. That ignores the "
                           "codes' lengths ‖e‖²: the nearest code minimises ‖z‖² − 2z·e + ‖e‖²")
    if torch.equal(idx, F.cosine_similarity(flat.unsqueeze(1), cb.unsqueeze(0), dim=-1)
                   .argmax(1).view(shape)):
        raise CheckFailure("you picked the code with the largest cosine similarity; the codebook "
                           "lookup uses Euclidean distance, so the codes' lengths matter")
    if torch.equal(idx, torch.cdist(flat, cb).argmax(1).view(shape)):
        raise CheckFailure("you picked the farthest code (argmax of the distance): use argmin")
    if torch.equal(idx, torch.cdist(flat, cb, p=1).argmin(1).view(shape)):
        raise CheckFailure("you used the L1 (Manhattan) distance; the nearest code is by Euclidean "
                           "distance ‖z − e‖₂")
    if idx.shape == want.shape and torch.equal(idx, _ref_idx(z.transpose(2, 3), cb).transpose(1, 2)) or \
            torch.equal(idx.reshape(-1), _ref_idx(z.transpose(2, 3), cb).reshape(-1)):
        raise CheckFailure("every position got its nearest code, but idx is laid out (N, W, H): flattening "
                           "with z.transpose(1, 3) puts W before H. Use z.permute(0, 2, 3, 1) (N, H, W, D) "
                           "before reshaping, and view idx as (N, H, W)")
    wrong = z.reshape(-1, z.shape[1])
    if torch.equal(idx.reshape(-1), torch.cdist(wrong, cb).argmin(1)):
        raise CheckFailure("you reshaped z (N, D, H, W) straight to (-1, D): that mixes spatial "
                           "positions into the code vectors. Permute D last first: "
                           "z.permute(0, 2, 3, 1).reshape(-1, D)")
    bad = (idx != want).float().mean().item()
    raise CheckFailure(f"{bad:.0%} of the positions got a code that is not the nearest one "
                       "(Euclidean distance between the D-vector z[n, :, h, w] and each codebook row)")


@qz.case("z_q holds the chosen codes")
def _(fn):
    z, cb = _vq_case(2)
    z_q, idx = _pair(fn(z, cb))
    expect_tensor(z_q, z.shape, "z_q")
    want = cb[_ref_idx(z, cb)].permute(0, 3, 1, 2)
    if _close(z_q, want):
        return
    if _close(z_q, z):
        raise CheckFailure("z_q equals z: nothing was quantised (e + (z − e).detach() has the value z). The "
                           "forward value must be the code e = codebook[idx]; only the gradient goes straight "
                           "through to z: z + (e − z).detach()")
    if _close(z_q, cb[_ref_idx(z, cb)].reshape(z.shape)):
        raise CheckFailure("z_q holds the right codes in the wrong layout: codebook[idx] is "
                           "(N, H, W, D); permute it to (N, D, H, W), do not .view() it")
    raise CheckFailure("z_q is not codebook[idx] at every position (in the layout of z)")


@qz.case("straight-through gradient to z, none to the codebook")
def _(fn):
    z, cb = _vq_case(3)
    z = z.clone().requires_grad_(True)
    cb = cb.clone().requires_grad_(True)
    z_q, _ = _pair(fn(z, cb))
    if not torch.is_tensor(z_q) or not z_q.requires_grad:
        raise CheckFailure("z_q carries no gradient: argmin and indexing cut the graph. Return "
                           "z + (e − z).detach(), whose value is e and whose gradient is that of z")
    w = torch.randn(z.shape, generator=_gen(4))
    (z_q * w).sum().backward()
    if z.grad is None or z.grad.abs().max() < 1e-8:
        raise CheckFailure("no gradient reaches z (did you write e + (z − e).detach(), or "
                           "z + (e − z) without .detach()?). The straight-through estimator is "
                           "z + (e − z).detach(): value e, gradient ∂/∂z = identity")
    if not _close(z.grad, w):
        raise CheckFailure("the gradient reaching z is not copied through unchanged (∂z_q/∂z must "
                           "be the identity): use z + (e − z).detach()")
    if cb.grad is not None and cb.grad.abs().max() > 1e-8:
        raise CheckFailure("the gradient of z_q also flows into the codebook. In VQ-VAE the "
                           "codebook learns only from its own loss ‖sg(z) − e‖²; detach the "
                           "code inside the straight-through term: z + (e − z).detach()")


# ============================================================================ info_nce
nce = register("text.info_nce", info_nce,
               "CLIP's symmetric InfoNCE: mean of image→text and text→image cross-entropies")


def _nce_ref(i, t, tau):
    i = i.double() / i.double().norm(dim=1, keepdim=True)
    t = t.double() / t.double().norm(dim=1, keepdim=True)
    logits = i @ t.t() / tau
    y = torch.arange(len(i))
    return 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.t(), y))


def _nce_inputs(seed=0, n=6, e=5):
    g = _gen(seed)
    i = torch.randn(n, e, generator=g) * torch.linspace(0.5, 4.0, n).unsqueeze(1)
    t = i / i.norm(dim=1, keepdim=True) * 0.6 + torch.randn(n, e, generator=g) * 0.8
    return i, t * torch.linspace(3.0, 0.7, n).unsqueeze(1)


def _nce_call(fn, *args):
    try:
        return fn(*args)
    except (ValueError, IndexError, RuntimeError) as e:
        if "size" in str(e) or "shape" in str(e) or "bound" in str(e) or "Expected input batch" in str(e):
            n, e_dim = args[0].shape
            raise CheckFailure(f"with {n} pairs of {e_dim}-dim embeddings your loss crashed ({str(e)[:100]}): "
                               "the targets are torch.arange(N), one per pair (N = len(img_emb)), not "
                               "arange(E), and the logits are N×N (img @ txt.T)") from None
        raise


def _scalar(out):
    if torch.is_tensor(out) and out.dim() == 1 and out.numel() > 1:
        raise CheckFailure(f"the loss has shape {tuple(out.shape)}: average the per-pair "
                           "cross-entropies to one number (the default reduction='mean')")
    expect_tensor(out, (), "the loss")
    return out


@nce.case("returns a scalar")
def _(fn):
    i, t = _nce_inputs()
    _scalar(_nce_call(lambda *a: _untouched(fn, a, ("img_emb", "txt_emb", "temperature")), i, t, 0.1))


@nce.case("value: cosine / temperature, both directions, matches on the diagonal")
def _(fn):
    i, t = _nce_inputs(1)
    tau = 0.2
    out = _scalar(_nce_call(fn, i, t, tau))
    want = _nce_ref(i, t, tau)
    if _close(out, want):
        return
    y = torch.arange(len(i))
    raw = i.double() @ t.double().t()
    inn, tn = F.normalize(i.double(), dim=1), F.normalize(t.double(), dim=1)
    cos = inn @ tn.t()
    one_way = F.cross_entropy(cos / tau, y)
    other_way = F.cross_entropy(cos.t() / tau, y)
    sym = lambda lg: 0.5 * (F.cross_entropy(lg, y) + F.cross_entropy(lg.t(), y))  # noqa: E731
    if _close(out, sym(raw / tau)) or _close(out, sym(raw)):
        raise CheckFailure("the embeddings were not L2-normalised: the logits must be cosine "
                           "similarities (F.normalize(emb, dim=-1) on both) divided by the temperature")
    nb = F.normalize(i.double(), dim=0) @ F.normalize(t.double(), dim=0).t()
    if _close(out, sym(nb / tau)):
        raise CheckFailure("you normalised along the batch (dim=0); normalise each embedding "
                           "vector: F.normalize(emb, dim=-1)")
    if _close(out, sym(cos * tau)):
        raise CheckFailure("you multiplied by the temperature; the logits are cosine / temperature "
                           "(a small temperature sharpens the softmax)")
    if _close(out, sym(cos)):
        raise CheckFailure("the temperature is missing: logits = cosine similarity / temperature")
    if _close(out, one_way) or _close(out, other_way):
        raise CheckFailure("only one direction: CLIP's loss is the mean of the image→text "
                           "cross-entropy (rows of the logits) and the text→image one (columns)")
    if _close(out, one_way + other_way):
        raise CheckFailure("you summed the two directions; the loss is their mean")
    if _close(out, sym(cos / tau) * len(i)):
        raise CheckFailure("the cross-entropies were summed over the batch; average them "
                           "(reduction='mean')")
    zeros = torch.zeros_like(y)
    if _close(out, 0.5 * (F.cross_entropy(cos / tau, zeros) + F.cross_entropy(cos.t() / tau, zeros))):
        raise CheckFailure("the targets are all 0; pair i matches pair i, so the target of row i is "
                           "i: torch.arange(N)")
    sig = F.binary_cross_entropy_with_logits(cos / tau, torch.eye(len(i), dtype=cos.dtype))
    if _close(out, sig):
        raise CheckFailure("this is a sigmoid (SigLIP-style) loss; InfoNCE is a softmax "
                           "cross-entropy over each row and each column")
    raise CheckFailure(f"loss {out.item():.4f}, expected {want.item():.4f}: normalise both, "
                       "logits = img @ txtᵀ / temperature, mean of the row and column cross-entropies "
                       "with targets arange(N)")


@nce.case("embedding lengths do not matter; uses the diagonal for any N ≠ E")
def _(fn):
    i, t = _nce_inputs(2, n=9, e=3)
    a = _scalar(_nce_call(fn, i, t, 0.1))
    b = _scalar(_nce_call(fn, i * 7.0, t * 0.01, 0.1))
    if not _close(a, b):
        raise CheckFailure("scaling the embeddings changed the loss: normalise them inside "
                           "(F.normalize(emb, dim=-1))")
    if not _close(a, _nce_ref(i, t, 0.1)):
        i1, t1 = _nce_inputs(1)
        if not _close(_scalar(_nce_call(fn, i1, t1, 0.2)), _nce_ref(i1, t1, 0.2)):
            raise CheckFailure("(follows from the ✗ on the value: the loss is already wrong for 6 pairs)")
        raise CheckFailure("wrong value with 9 pairs of 3-dim embeddings: the logits are N×N "
                           "(img @ txt.T), not E×E")


@nce.case("gradients reach both encoders")
def _(fn):
    i, t = _nce_inputs(3)
    i, t = i.clone().requires_grad_(True), t.clone().requires_grad_(True)
    out = _scalar(_nce_call(fn, i, t, 0.1))
    if not out.requires_grad:
        raise CheckFailure("the loss carries no gradient (.item(), .detach() or numpy inside?)")
    out.backward()
    for name, x in (("img_emb", i), ("txt_emb", t)):
        if x.grad is None or x.grad.abs().max() < 1e-8:
            raise CheckFailure(f"no gradient reaches {name}: a detached side stops that encoder "
                               "from learning")
    # gradients by value: compare with autograd of the reference written out here
    i2, t2 = i.detach().clone().requires_grad_(True), t.detach().clone().requires_grad_(True)
    _nce_ref(i2, t2, 0.1).backward()
    for name, x, ref in (("img_emb", i, i2), ("txt_emb", t, t2)):
        if not _close(x.grad, ref.grad, 1e-4):
            if not _close(out, _nce_ref(i.detach(), t.detach(), 0.1)):
                raise CheckFailure("(follows from the ✗ on the value: a different loss has a different gradient)")
            ratio = (x.grad.norm() / ref.grad.norm()).item()
            raise CheckFailure(f"the loss's value is right but its gradient with respect to {name} is "
                               f"{ratio:.2f}× the true one: part of the loss is cut from the graph (a "
                               ".detach() on one direction, e.g. logits.t().detach()). Both directions "
                               "must backpropagate into both encoders")


@nce.case("stable at CLIP's temperature 0.01, nearly aligned pairs")
def _(fn):
    # CLIP clips its logit scale at 100 (τ = 0.01): cos/τ reaches ±100, exp(100) overflows float32
    g = _gen(5)
    i = torch.randn(16, 8, generator=g)
    t = i + 0.01 * torch.randn(16, 8, generator=g)
    out = _scalar(_nce_call(fn, i.clone(), t.clone(), 0.01))
    want = _nce_ref(i, t, 0.01)
    if not torch.isfinite(out):
        raise CheckFailure(f"at temperature 0.01 your loss is {out.item()}: exp(cos/τ) overflows float32 when "
                           "cos/τ ≈ 100. Use F.cross_entropy (or log_softmax), which subtract the row's "
                           "maximum before exponentiating, instead of a hand-written softmax")
    if not _close(out, want, 1e-3):
        raise CheckFailure(f"at temperature 0.01 the loss is {out.item():.4g}, expected {want.item():.4g}: "
                           "compute it with F.cross_entropy on the logits, which stays exact at large logits")


# ============================================================================ projection_logit
pj = register("conditioning.projection_logit", projection_logit,
              "projection discriminator: phi·w + b + ⟨embed[y], phi⟩ (Miyato & Koyama 2018)")


def _pj_inputs(seed=0, n=7, f=5, k=4):
    g = _gen(seed)
    phi = torch.randn(n, f, generator=g)
    y = torch.tensor([0, 1, 2, 3, 1, 2, 3])[:n]
    w, b = torch.randn(f, generator=g), torch.randn((), generator=g)
    return phi, y, w, b, torch.randn(k, f, generator=g)


def _ref_pj(phi, y, w, b, v):
    return phi @ w + b + (v[y] * phi).sum(1)


@pj.case("returns one logit per sample, shape (N,)")
def _(fn):
    args = _pj_inputs()
    out = _untouched(fn, args, ("phi", "y", "w", "b", "embed"))
    if torch.is_tensor(out) and tuple(out.shape) == (7, 1):
        raise CheckFailure("the logit has shape (N, 1); return (N,) — sum the inner product over "
                           "features and squeeze")
    if torch.is_tensor(out) and tuple(out.shape) == (5,):
        raise CheckFailure("the result has the feature dimension (F,): you summed over the batch "
                           "instead of over features (use .sum(1) / .sum(-1))")
    expect_tensor(out, (7,), "the logit")


@pj.case("value: unconditional term + inner product with the class embedding")
def _(fn):
    phi, y, w, b, v = args = _pj_inputs(1)
    out = fn(*args)
    want = _ref_pj(*args)
    expect_tensor(out, want.shape, "the logit")
    if _close(out, want):
        return
    if _close(out, phi @ w + b):
        raise CheckFailure("the class never enters: add the projection term ⟨embed[y], phi⟩, "
                           "(embed[y] * phi).sum(1)")
    if _close(out, (v[y] * phi).sum(1)) or _close(out, (v[y] * phi).sum(1) + b):
        raise CheckFailure("the unconditional term ψ(phi) = phi·w + b is missing; the projection "
                           "is added to it, not a replacement")
    if _close(out, phi @ w + (v[y] * phi).sum(1)):
        raise CheckFailure("the bias b of ψ is missing")
    if _close(out, phi @ w + b + (phi @ v.t()).sum(1)):
        raise CheckFailure("you summed the inner products with every class embedding; take only "
                           "the row of the sample's own label, embed[y]")
    if _close(out, phi @ w + b + (v[y] * w).sum(1)):
        raise CheckFailure("the class embedding was multiplied with w; the projection is the inner "
                           "product of embed[y] with the features phi")
    if _close(out, phi @ w + b + (v[(y + 1) % len(v)] * phi).sum(1)) or \
            _close(out, phi @ w + b + (v[(y - 1) % len(v)] * phi).sum(1)):
        raise CheckFailure("off-by-one labels: index the embedding with y itself, embed[y]")
    if _close(out, phi @ w + b + v[y].sum(1)):
        raise CheckFailure("you added the class embedding's entries (a per-class bias) without the inner "
                           "product with phi: the projection term is ⟨embed[y], phi⟩ = (embed[y] * phi).sum(1)")
    if _close(out, phi @ w + b + (v[y] * phi).mean(1)):
        raise CheckFailure("you averaged the products over the features: the inner product ⟨embed[y], phi⟩ "
                           "is their sum, (embed[y] * phi).sum(1)")
    if _close(out, phi @ w + b + (v[y] * phi).sum().expand(len(phi))):
        raise CheckFailure("you summed the products over the whole batch (.sum() without dim): sum over "
                           "the features of each sample, (embed[y] * phi).sum(1)")
    raise CheckFailure("the logit differs from phi·w + b + ⟨embed[y], phi⟩")


@pj.case("gradients reach phi, w, b and the class embedding, by value")
def _(fn):
    phi, y, w, b, v = _pj_inputs(2)
    phi, v = phi.clone().requires_grad_(True), v.clone().requires_grad_(True)
    w, b = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
    out = fn(phi, y, w, b, v)
    expect_tensor(out, (7,), "the logit")
    if not out.requires_grad:
        raise CheckFailure("the logit carries no gradient")
    out.sum().backward()
    # d Σ logit: ∂/∂phi_n = w + embed[y_n]; ∂/∂w = Σ_n phi_n; ∂/∂b = N; ∂/∂embed[k] = Σ_{n: y_n = k} phi_n
    pd = phi.detach()
    want_v = torch.zeros_like(v).index_add_(0, y, pd)
    if v.grad is None or v.grad.abs().max() < 1e-8:
        raise CheckFailure("no gradient reaches the class embedding, so it cannot learn")
    if w.grad is None or not _close(w.grad, pd.sum(0)):
        raise CheckFailure("the gradient reaching w is not Σ_n phi_n: ψ's weight would not learn (a "
                           "w.detach() or a copy of w inside?). Use w as given: phi @ w")
    if b.grad is None or not _close(b.grad, torch.tensor(float(len(pd)))):
        raise CheckFailure("the gradient reaching b is not N: ψ's bias would not learn (b.item() or "
                           "float(b) turn it into a constant). Add the tensor b itself")
    if not _close(v.grad, want_v):
        raise CheckFailure("∂/∂embed[k] must be the sum of phi over the samples of class k")
    if phi.grad is None or not _close(phi.grad, w.detach().expand_as(pd) + v.detach()[y]):
        raise CheckFailure("∂logit/∂phi must be w + embed[y]")


# ============================================================================ causal_mask
cm = register("transformer.causal_mask", causal_mask,
              "(L, L) bool: True where query position i may attend to key position j ≤ i")


@cm.case("returns an (L, L) boolean tensor")
def _(fn):
    out = fn(5)
    expect_tensor(out, (5, 5), "the mask")
    if out.dtype != torch.bool:
        raise CheckFailure(f"the mask has dtype {out.dtype}; return a bool tensor, True = may attend "
                           "(torch.ones(L, L, dtype=torch.bool).tril())")


@cm.case("position i sees itself and the past, never the future")
def _(fn):
    for n in (4, 7, 1):
        out = fn(n)
        expect_tensor(out, (n, n), "the mask")
        out = out.bool()
        want = torch.ones(n, n, dtype=torch.bool).tril()
        if torch.equal(out, want):
            continue
        if torch.equal(out, want.t()):
            raise CheckFailure("the mask is transposed: row i (the query) may see columns j ≤ i; you "
                               "let each position see the future instead (use .tril(), not .triu())")
        if torch.equal(out, want.tril(-1)):
            raise CheckFailure("the diagonal is False: a position must be able to attend to itself "
                               "(with .tril(-1) the first token attends to nothing, a row of −∞)")
        if torch.equal(out, ~want):
            raise CheckFailure("the mask is inverted: True must mean *may attend*; you marked the "
                               "blocked (future) positions")
        if out.all():
            raise CheckFailure("everything is True: this is a bidirectional (MaskGIT/BERT) mask; a "
                               "decoder-only model must not see the future")
        if torch.equal(out, torch.eye(n, dtype=torch.bool)):
            raise CheckFailure("only the diagonal is True: each token would see only itself; "
                               "allow all j ≤ i")
        raise CheckFailure(f"wrong mask for L = {n}: entry [i, j] must be True exactly when j ≤ i")


# ============================================================================ guided_logits
gl = register("transformer.guided_logits", guided_logits,
              "classifier-free guidance on logits: uncond + scale·(cond − uncond)")


def _gl_inputs(seed=0):
    g = _gen(seed)
    return torch.randn(4, 3, 10, generator=g) * 2, torch.randn(4, 3, 10, generator=g) * 2


@gl.case("returns logits shaped like the inputs")
def _(fn):
    c, u = _gl_inputs()
    expect_tensor(_untouched(fn, (c, u, 2.0), ("cond", "uncond", "scale")), c.shape, "the logits")


@gl.case("scale 1 is the conditional model, 0 the unconditional, 3 extrapolates")
def _(fn):
    c, u = _gl_inputs(1)
    out3 = fn(c, u, 3.0)
    if _close(out3, (u + 3.0 * (c - u)).softmax(-1)):
        raise CheckFailure("you returned probabilities (a softmax of the guided logits): return the guided "
                           "logits uncond + scale·(cond − uncond) themselves; the sampler applies the softmax")
    for s in (1.0, 0.0, 3.0, 0.5):
        out = fn(c, u, s)
        expect_tensor(out, c.shape, "the logits")
        want = u + s * (c - u)
        # logits are defined up to a constant per row: compare the distributions
        if _close(out.softmax(-1), want.softmax(-1)):
            continue
        if s == 1.0 and _close(out.softmax(-1), (c + (c - u)).softmax(-1)):
            raise CheckFailure("at scale 1 you do not get the conditional logits: you wrote "
                               "cond + scale·(cond − uncond) = (1 + scale)·cond − scale·uncond, the w convention "
                               "of Ho & Salimans (their w = scale − 1). Here scale 1 means the conditional "
                               "model: uncond + scale·(cond − uncond)")
        if s == 1.0 and _close(out.softmax(-1), u.softmax(-1)):
            raise CheckFailure("cond and uncond are swapped: scale 1 must give the conditional model")
        if s == 0.0 and _close(out.softmax(-1), c.softmax(-1)):
            raise CheckFailure("at scale 0 you returned the conditional logits; guidance 0 means "
                               "the unconditional model: uncond + 0·(cond − uncond)")
        pu, pc = u.softmax(-1), c.softmax(-1)
        if _close(out, pu + s * (pc - pu)) or _close(out.softmax(-1), (pu + s * (pc - pu)).clamp(min=0)
                                                     .div((pu + s * (pc - pu)).clamp(min=0).sum(-1, keepdim=True))):
            raise CheckFailure("you mixed probabilities; guidance acts on logits (log-probabilities), "
                               "where extrapolating with scale > 1 stays a valid distribution")
        if _close(out.softmax(-1), (s * c).softmax(-1)):
            raise CheckFailure("you scaled the conditional logits (a temperature), without the "
                               "unconditional ones: uncond + scale·(cond − uncond)")
        if _close(out.softmax(-1), (u + s * c).softmax(-1)):
            raise CheckFailure("you wrote uncond + scale·cond; the guidance direction is the "
                               "difference cond − uncond")
        raise CheckFailure(f"wrong logits at scale {s}: expected uncond + scale·(cond − uncond)")
