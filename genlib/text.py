"""Text for text-to-image, from scratch: a word tokenizer, two text encoders, a CLIP-style model.

No pretrained language model: the ``shapes`` captions have a vocabulary of 16 words, so every piece
here trains in seconds on a CPU, and what a better text encoder buys can be measured directly.

======================  ======================================================================
``Tokenizer``           words ⇄ integer ids; pads every caption to one length with id 0
``BagOfWords``          mean of word embeddings: order-blind ("red circle, blue square" =
                        "blue circle, red square")
``TextTransformer``     a small transformer encoder with positions: it can bind words to words
``info_nce``            the symmetric contrastive loss of CLIP (Radford et al. 2021)
``ShapeCLIP``           image encoder + text encoder trained with ``info_nce``: a caption score,
                        zero-shot classification and retrieval on ``shapes``
======================  ======================================================================
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genlib.data import COLOR_NAMES, SHAPE_NAMES, SIZE_NAMES

PAD, UNK = 0, 1
WORDS = ("a", "of", "left", "right", *SIZE_NAMES, *COLOR_NAMES, *SHAPE_NAMES)


class Tokenizer:
    """Whitespace word tokenizer with a fixed vocabulary: id 0 is padding, id 1 an unknown word."""

    def __init__(self, words=WORDS):
        self.itos = ["<pad>", "<unk>", *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, captions, length: int | None = None) -> torch.Tensor:
        """list of N captions → (N, L) int64 ids, right-padded with 0 (L = longest, or ``length``)."""
        if isinstance(captions, str):
            captions = [captions]
        ids = [[self.stoi.get(w, UNK) for w in c.lower().split()] for c in captions]
        length = length or max(len(s) for s in ids)
        out = torch.zeros(len(ids), length, dtype=torch.long)
        for i, s in enumerate(ids):
            s = s[:length]
            out[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        return out

    def decode(self, ids: torch.Tensor) -> list[str]:
        return [" ".join(self.itos[i] for i in row.tolist() if i != PAD) for row in ids]


class BagOfWords(nn.Module):
    """ids (N, L) → (N, out): the mean embedding of the non-padding words, then a small MLP.

    Permuting the words leaves the output unchanged, which is the whole point of the comparison.
    """

    def __init__(self, vocab: int, dim: int = 64, out: int = 64):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=PAD)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, out))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        keep = (ids != PAD).float().unsqueeze(-1)
        mean = (self.embed(ids) * keep).sum(1) / keep.sum(1).clamp(min=1)
        return self.mlp(mean)


class TextTransformer(nn.Module):
    """ids (N, L) → (N, out): word + position embeddings, ``layers`` transformer-encoder layers
    (bidirectional, padding masked out), mean-pooled over the real words, then a linear layer.

    ``states(ids)`` returns the per-word states (N, L, dim) for cross-attention.

    ``pos_std``: initial scale of the position embeddings. The word embeddings start at N(0, 1);
    positions drawn at the customary 0.02 are then 50× smaller, the encoder starts (and after a
    few hundred steps still is) practically order-blind, and a two-object caption read through it
    is no better than a bag of words (chapter 08, section 4 measures it). The default 1 gives
    positions the same scale as words. ShapeCLIP keeps 0.02: its shipped weights were trained so,
    and its single-object captions do not depend on word order.
    """

    def __init__(self, vocab: int, dim: int = 64, out: int = 64, layers: int = 2, heads: int = 4,
                 max_len: int = 16, pos_std: float = 1.0):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(max_len, dim) * pos_std)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out)

    def states(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids) + self.pos[:ids.shape[1]]
        return self.norm(self.encoder(h, src_key_padding_mask=ids == PAD))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        keep = (ids != PAD).float().unsqueeze(-1)
        pooled = (self.states(ids) * keep).sum(1) / keep.sum(1).clamp(min=1)
        return self.head(pooled)


def info_nce(img_emb: torch.Tensor, txt_emb: torch.Tensor, temperature: float) -> torch.Tensor:
    """CLIP's symmetric contrastive loss for N matching (image, text) pairs.

    img_emb, txt_emb: (N, E), row i of each describes the same pair. Both are L2-normalised here;
    logits = cosine similarities / temperature (N, N); the loss is the mean of the image→text and
    text→image cross-entropies whose correct class is the diagonal.
    """
    img = F.normalize(img_emb, dim=-1)
    txt = F.normalize(txt_emb, dim=-1)
    logits = img @ txt.t() / temperature
    target = torch.arange(len(img), device=img.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


class ImageEncoder(nn.Module):
    """(N, 3, 16, 16) in [-1, 1] → (N, out)."""

    def __init__(self, out: int = 64, ch: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(ch, 2 * ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * ch * 16, 128), nn.ReLU(), nn.Linear(128, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def all_captions() -> list[str]:
    """The 48 single-object captions, in the order (size, colour, shape) of ``caption_attributes``."""
    return [f"a {sz} {co} {sh}" for sz in SIZE_NAMES for co in COLOR_NAMES for sh in SHAPE_NAMES]


def caption_attributes() -> dict:
    """For each caption of ``all_captions``: its shape, colour and size index (48,) each."""
    caps = [(si, ci, hi) for si in range(len(SIZE_NAMES)) for ci in range(len(COLOR_NAMES))
            for hi in range(len(SHAPE_NAMES))]
    t = torch.tensor(caps)
    return {"size": t[:, 0], "color": t[:, 1], "shape": t[:, 2]}


class ShapeCLIP(nn.Module):
    """A dual encoder for ``shapes``: ``score(images, captions)`` is a cosine similarity.

    ``zero_shot(images)`` classifies shape, colour and size by the best of the 48 captions — no
    classifier head was trained; ``retrieve(captions, images, k)`` ranks images for each caption.
    """

    def __init__(self, dim: int = 64, temperature: float = 0.1):
        super().__init__()
        self.tokenizer = Tokenizer()
        self.image = ImageEncoder(dim)
        self.text = TextTransformer(len(self.tokenizer), out=dim, pos_std=0.02)  # as shipped
        self.temperature = temperature

    def embed_images(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image(x), dim=-1)

    def embed_text(self, captions) -> torch.Tensor:
        ids = self.tokenizer.encode(captions, 8).to(self.text.pos.device)
        return F.normalize(self.text(ids), dim=-1)

    def loss(self, x: torch.Tensor, captions) -> torch.Tensor:
        ids = self.tokenizer.encode(captions, 8).to(x.device)
        return info_nce(self.image(x), self.text(ids), self.temperature)

    @torch.no_grad()
    def score(self, x: torch.Tensor, captions) -> torch.Tensor:
        """(N,) cosine similarity of image i with caption i (the "ShapeCLIP score")."""
        return (self.embed_images(x) * self.embed_text(captions)).sum(-1)

    @torch.no_grad()
    def zero_shot(self, x: torch.Tensor) -> dict:
        """images (N,3,16,16) → {"shape", "color", "size"} predicted labels (N,) each."""
        best = (self.embed_images(x) @ self.embed_text(all_captions()).t()).argmax(1)
        return {k: v[best.cpu()].to(x.device) for k, v in caption_attributes().items()}

    @torch.no_grad()
    def retrieve(self, captions, x: torch.Tensor, k: int = 5) -> torch.Tensor:
        """For each caption, the indices (len(captions), k) of the k most similar images."""
        sims = self.embed_text(captions) @ self.embed_images(x).t()
        return sims.topk(k, dim=1).indices


def train_shapeclip(model: ShapeCLIP, data, steps: int, lr: float = 2e-3,
                    generator: torch.Generator | None = None, progress: bool = False):
    """Contrastive training on ``data`` (a ``genlib.data.Shapes``). Each batch holds one image of
    every one of the 48 captions, so no two pairs in a batch share a caption (with duplicates the
    loss would push apart an image and its own, correct caption). Returns the loss history."""
    from genlib.train import progress as bar

    g = generator or torch.Generator().manual_seed(0)
    caps = all_captions()
    cls = (data.size * len(COLOR_NAMES) + data.color) * len(SHAPE_NAMES) + data.shape
    members = [torch.nonzero(cls == c).view(-1) for c in range(len(caps))]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    hist = []
    for _ in (bar(range(steps), desc="ShapeCLIP") if progress else range(steps)):
        pick = torch.stack([m[torch.randint(len(m), (1,), generator=g)] for m in members]).view(-1)
        loss = model.loss(data.images[pick], [data.captions[i] for i in pick.tolist()])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        hist.append(loss.item())
    return model.eval(), hist
