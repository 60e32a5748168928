"""What pretraining on text alone gives a text encoder, measured without a single image.

The ``shapes`` captions use 16 words ("a large red circle", "a red circle left of a blue square").
A generator trained on them has never read "a huge crimson disc". A language model pretrained on
plenty of text has: it saw "crimson" where "red" also occurs (next to "blood", "cherry", "fire"),
so its encoder may map the two close together. This module builds such text, pretrains a small
encoder on it with a masked-language-model loss, and measures what carried over — all on a CPU in
seconds. ``textpretrain`` is text only; no sentence of ``corpus`` is ever paired with an image.

=======================  ==========================================================================
``SYNONYMS``             two unseen words for every attribute word (``shapes`` never uses them)
``ANCHORS``              world nouns tied to each attribute word ("blood" → red, "whale" → large):
                         the distributional context that makes a synonym behave like its base word
``corpus(n, seed)``      n sentences: base grammar, paraphrases, other word orders, two objects,
                         anchor sentences; every attribute slot drawn from the base word and its
                         synonyms with equal odds, so a synonym fills exactly its base word's slots
``Vocabulary``           words ⇄ ids over base + extended words; id 0 pad, 1 unk, the 16 base words
                         keep their ``text.Tokenizer`` ids; ``base_only()`` maps the rest to unk
``base_caption``         attribute record → caption in the ``shapes`` grammar (base words only)
``unseen_caption``       the same record in synonyms and/or a paraphrase the generator never saw
``mask_tokens``          BERT masking: 15 % of the real words; of those 80 % → <mask>, 10 % → a
                         random word, 10 % kept; targets −100 (ignored) everywhere else
``mlm_loss``             cross-entropy over the masked positions only
``MaskedLM``             ``text.TextTransformer`` (positions, 2 layers) + an output layer tied to
                         its word embeddings
``pretrain``             seeded MLM training on ``corpus``, with a progress bar
``synonym_similarity``   contextual cosine of each synonym to its base word vs to its rivals
``probe_transfer``       linear probes trained on base captions, tested on unseen phrasings
=======================  ==========================================================================

Why these words: each synonym is an everyday English word a person would use for the drawn image
(a filled circle is a "disc" or a "dot", not a "ring"; the cross is drawn as a plus sign, so
"plus"; "pink" is what many people call magenta). Anchors are objects whose typical colour,
size or shape most speakers agree on. The masking is BERT's (Devlin et al. 2019): the random and
kept 10 % force the encoder to build a useful state at every position, not only at ``<mask>``.
"""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

from genlib.data import COLOR_NAMES, SHAPE_NAMES, SIZE_NAMES
from genlib.text import PAD, UNK, WORDS, TextTransformer, Tokenizer

IGNORE = -100
CATEGORIES = {"size": SIZE_NAMES, "color": COLOR_NAMES, "shape": SHAPE_NAMES}

SYNONYMS = {
    "small": ("tiny", "little"), "large": ("big", "huge"),
    "red": ("crimson", "scarlet"), "green": ("jade", "lime"), "blue": ("cobalt", "navy"),
    "yellow": ("golden", "lemon"), "magenta": ("fuchsia", "pink"), "cyan": ("turquoise", "teal"),
    "circle": ("disc", "dot"), "square": ("box", "block"), "triangle": ("wedge", "delta"),
    "cross": ("plus", "cruciform"),
}
ANCHORS = {
    "small": ("flea", "mouse", "pebble"), "large": ("whale", "mountain", "giraffe"),
    "red": ("blood", "cherry", "tomato"), "green": ("grass", "leaf", "frog"),
    "blue": ("sky", "sea", "jeans"), "yellow": ("sun", "banana", "corn"),
    "magenta": ("peony", "flamingo", "dragonfruit"), "cyan": ("lagoon", "glacier", "pool"),
    "circle": ("wheel", "coin", "moon"), "square": ("tile", "window", "stamp"),
    "triangle": ("roof", "sail", "slice"), "cross": ("hospital", "junction", "grave"),
}

# single-object phrasings; {size} {color} {shape} are attribute slots. The first is the base grammar.
ONE = ("a {size} {color} {shape}",
       "a {shape} that is {color} and {size}",
       "the {size} {color} one is a {shape}",
       "this {shape} is {size} and {color}",
       "a {color} {shape} which is {size}")
# two objects; {a} is the left one, {b} the right one ("{color} {shape}" each). The first two are
# the grammar of ``conditioning.two_shapes``.
TWO = ("a {a} left of a {b}", "a {b} right of a {a}",
       "a {a} to the left of a {b}", "a {b} is right of a {a}", "a {b} to the right of a {a}",
       "the {a} is on the left and the {b} is on the right")
# anchor sentences: {w} an attribute word (or synonym) of the anchor's category, {n} the anchor noun
ANCHOR_TEMPLATES = {
    "size": ("the {n} is {w}", "a {w} {n}", "this {n} is {w}"),
    "color": ("the {n} is {w}", "a {w} {n}", "this {n} is {w}"),
    "shape": ("the {n} is a {w}", "a {n} looks like a {w}", "this {n} is shaped like a {w}"),
}
FUNCTION_WORDS = ("the", "that", "is", "and", "one", "this", "which", "to", "on", "looks",
                  "like", "shaped")
EXTENDED = (FUNCTION_WORDS + tuple(s for w in WORDS if w in SYNONYMS for s in SYNONYMS[w])
            + tuple(n for w in WORDS if w in ANCHORS for n in ANCHORS[w]))


def _word(base: str, rng: random.Random, synonyms: bool) -> str:
    return rng.choice((base, *SYNONYMS[base])) if synonyms else base


def _fill(template: str, rec: dict, rng: random.Random, synonyms: bool) -> str:
    """Fill a ONE or TWO template from a record (see ``base_caption``)."""
    def obj(j):
        return (f"{_word(COLOR_NAMES[rec['color'][j]], rng, synonyms)} "
                f"{_word(SHAPE_NAMES[rec['shape'][j]], rng, synonyms)}")
    if isinstance(rec["shape"], (tuple, list)):
        return template.format(a=obj(0), b=obj(1))
    return template.format(**{k: _word(CATEGORIES[k][rec[k]], rng, synonyms) for k in CATEGORIES})


def _random_record(rng: random.Random, two: bool) -> dict:
    if two:
        return {"shape": tuple(rng.sample(range(len(SHAPE_NAMES)), 2)),
                "color": tuple(rng.sample(range(len(COLOR_NAMES)), 2))}
    return {k: rng.randrange(len(v)) for k, v in CATEGORIES.items()}


def corpus(n: int = 20000, seed: int = 0) -> list[str]:
    """n text-only sentences, deterministic in ``seed``: 45 % single-object descriptions (25 % of
    the corpus end "like a <anchor of one of its attributes>"), 25 % two objects, 30 %
    anchor sentences. Every attribute slot is filled with the base word or one of its
    two synonyms with probability 1/3 each."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        u = rng.random()
        if u < 0.45:
            rec = _random_record(rng, False)
            sentence = _fill(rng.choice(ONE), rec, rng, True)
            if u < 0.25:                               # "... like a cherry": an anchor of one attribute
                cat = rng.choice(tuple(CATEGORIES))
                sentence += f" like a {rng.choice(ANCHORS[CATEGORIES[cat][rec[cat]]])}"
            out.append(sentence)
        elif u < 0.7:
            out.append(_fill(rng.choice(TWO), _random_record(rng, True), rng, True))
        else:
            cat = rng.choice(tuple(CATEGORIES))
            base = rng.choice(CATEGORIES[cat])
            out.append(rng.choice(ANCHOR_TEMPLATES[cat]).format(
                n=rng.choice(ANCHORS[base]), w=_word(base, rng, True)))
    return out


def all_records(two: bool = False) -> list[dict]:
    """Every single-object record (48: {"size", "color", "shape"} indices) or every two-object one
    (360: {"shape": (left, right), "color": (left, right)}, different shapes and colours)."""
    if two:
        return [{"shape": (s0, s1), "color": (c0, c1)}
                for s0 in range(len(SHAPE_NAMES)) for s1 in range(len(SHAPE_NAMES)) if s1 != s0
                for c0 in range(len(COLOR_NAMES)) for c1 in range(len(COLOR_NAMES)) if c1 != c0]
    return [{"size": z, "color": c, "shape": s} for z in range(len(SIZE_NAMES))
            for c in range(len(COLOR_NAMES)) for s in range(len(SHAPE_NAMES))]


def base_caption(record: dict, right_of: bool = False) -> str:
    """A record in the ``shapes`` grammar: {"size": 1, "color": 0, "shape": 0} → "a large red
    circle"; {"shape": (0, 1), "color": (0, 2)} → "a red circle left of a blue square" (or, with
    ``right_of``, "a blue square right of a red circle"). Base words only."""
    two = isinstance(record["shape"], (tuple, list))
    return _fill(TWO[int(right_of)] if two else ONE[0], record, random.Random(0), False)


def unseen_caption(record: dict, mode: str = "synonym", seed: int = 0) -> str:
    """The record in a phrasing a generator trained on ``base_caption`` never saw:
    "synonym" (base template, every attribute word replaced by one of its synonyms), "paraphrase"
    (another template, base attribute words) or "both"."""
    if mode not in ("synonym", "paraphrase", "both"):
        raise ValueError(f"mode must be 'synonym', 'paraphrase' or 'both', got {mode!r}")
    rng = random.Random(seed)
    two = isinstance(record["shape"], (tuple, list))
    base_templates = TWO[:2] if two else ONE[:1]
    templates = base_templates if mode == "synonym" else (TWO[2:] if two else ONE[1:])
    template = rng.choice(templates)
    if mode == "paraphrase":
        return _fill(template, record, rng, False)
    # synonyms only: never the base word
    def syn(b):
        return rng.choice(SYNONYMS[b])
    if two:
        obj = [f"{syn(COLOR_NAMES[record['color'][j]])} {syn(SHAPE_NAMES[record['shape'][j]])}"
               for j in range(2)]
        return template.format(a=obj[0], b=obj[1])
    return template.format(**{k: syn(CATEGORIES[k][record[k]]) for k in CATEGORIES})


class Vocabulary(Tokenizer):
    """``text.Tokenizer`` (its encode, decode and len) over base + extended words: id 0 <pad>,
    1 <unk>, the 16 base words at the ids ``text.Tokenizer`` gives them, the extended words, <mask>.
    ``Vocabulary.base_only()`` knows only the base words: everything else becomes <unk>."""

    def __init__(self, words=WORDS + EXTENDED):
        self.itos = ["<pad>", "<unk>", *words, "<mask>"]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("words must be unique")
        self.mask_id = len(self.itos) - 1

    @classmethod
    def base_only(cls) -> "Vocabulary":
        return cls(WORDS)


def mask_tokens(ids: torch.Tensor, mask_id: int, ratio: float = 0.15,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of (N, L) ids → (inputs, targets). Each real word (id ≥ 2) is chosen with
    probability ``ratio``; a chosen word becomes ``mask_id`` (80 %), a random real word (10 %) or
    stays (10 %); ``targets`` holds the original id at chosen positions and ``IGNORE`` elsewhere.
    Padding and <unk> are never chosen. Real words are the ids 2 … mask_id − 1."""
    if not 0 < ratio < 1:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    real = (ids > UNK) & (ids != mask_id)
    u = torch.rand(ids.shape, generator=generator)
    chosen = real & (torch.rand(ids.shape, generator=generator) < ratio)
    targets = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    random_words = torch.randint(UNK + 1, mask_id, ids.shape, generator=generator)
    inputs = torch.where(chosen & (u < 0.8), torch.full_like(ids, mask_id), ids)
    inputs = torch.where(chosen & (u >= 0.8) & (u < 0.9), random_words, inputs)
    return inputs, targets


def mlm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (N, L, V) logits over the positions whose target is not ``IGNORE``."""
    if not (targets != IGNORE).any():
        raise ValueError("no masked position in the batch: nothing to predict")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=IGNORE)


class MaskedLM(nn.Module):
    """``TextTransformer`` over ``Vocabulary`` + an output layer: ids (N, L) → logits (N, L, V).
    ``features(ids)`` → (N, dim): the encoder's states mean-pooled over the real words.

    As in BERT, the output layer reuses the word embeddings (tied weights) and they start small
    (``init_std``; positions too, so that order still counts). Words that the corpus uses in the
    same contexts receive the same gradients as *outputs*; with tied weights that also pulls their
    *input* vectors together."""

    def __init__(self, vocab_size: int, dim: int = 64, layers: int = 2, heads: int = 4,
                 max_len: int = 16, init_std: float = 0.1):
        super().__init__()
        self.encoder = TextTransformer(vocab_size, dim=dim, out=dim, layers=layers, heads=heads,
                                       max_len=max_len, pos_std=init_std)
        nn.init.normal_(self.encoder.embed.weight, std=init_std)
        self.lm_head = nn.Linear(dim, vocab_size)
        self.lm_head.weight = self.encoder.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.encoder.states(ids))

    @torch.no_grad()
    def features(self, ids: torch.Tensor) -> torch.Tensor:
        keep = (ids != PAD).float().unsqueeze(-1)
        return (self.encoder.states(ids) * keep).sum(1) / keep.sum(1).clamp(min=1)


def new_model(vocab: Vocabulary, seed: int = 0, **kw) -> MaskedLM:
    """A ``MaskedLM`` for ``vocab`` initialised from ``seed`` (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MaskedLM(len(vocab), **kw)


def pretrain(model: MaskedLM, sentences: list[str], vocab: Vocabulary, steps: int = 1200,
             batch: int = 128, lr: float = 3e-3, seed: int = 0, progress: bool = True) -> list:
    """MLM training on ``sentences`` (batches and masks drawn from ``seed``); returns the loss
    history. One-cycle learning rate, as ``text.train_shapeclip``. The default 1,200 steps take
    under a minute on one CPU core; a few hundred steps lower the loss but do not yet tie the
    synonyms to their anchors (``probe_transfer`` stays near chance)."""
    from genlib.train import progress as bar

    g = torch.Generator().manual_seed(seed)
    ids = vocab.encode(sentences, model.encoder.pos.shape[0])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    hist = []
    for _ in (bar(range(steps), desc="masked LM") if progress else range(steps)):
        x = ids[torch.randint(len(ids), (batch,), generator=g)]
        x = x[:, :int((x != PAD).sum(1).max())]
        inputs, targets = mask_tokens(x, vocab.mask_id, generator=g)
        loss = mlm_loss(model(inputs), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        hist.append(loss.item())
    model.eval()
    return hist


@torch.no_grad()
def synonym_similarity(model: MaskedLM, vocab: Vocabulary) -> dict:
    """Contextual embedding of a word = the encoder's state at its position, averaged over the 48
    base captions with that slot replaced by the word, minus the mean of these embeddings over all
    words of the category (base and synonyms; the part that only says "a colour goes here").
    For every synonym: cosine to its own base
    word ("same") and the mean cosine to the other base words of its category ("other").
    Returns {"same", "other", "gap"} averaged over all 24 synonyms."""
    model.eval()
    caps = [base_caption(r) for r in all_records()]
    slot = {"size": 1, "color": 2, "shape": 3}

    def embed(word, cat):
        sents = []
        for c in caps:
            w = c.split()
            w[slot[cat]] = word
            sents.append(" ".join(w))
        return model.encoder.states(vocab.encode(sents))[:, slot[cat]].mean(0)

    same, other = [], []
    for cat, names in CATEGORIES.items():
        words = [w for b in names for w in (b, *SYNONYMS[b])]
        emb = {w: embed(w, cat) for w in words}
        centre = torch.stack(list(emb.values())).mean(0)      # what every word of the slot shares
        emb = {w: e - centre for w, e in emb.items()}
        base = {b: emb[b] for b in names}
        for b in names:
            for s in SYNONYMS[b]:
                e = emb[s]
                same.append(F.cosine_similarity(e, base[b], 0).item())
                other.append(sum(F.cosine_similarity(e, base[o], 0).item() for o in names if o != b)
                             / (len(names) - 1))
    same_m, other_m = sum(same) / len(same), sum(other) / len(other)
    return {"same": same_m, "other": other_m, "gap": same_m - other_m}


def _labels(records: list[dict]) -> dict:
    if isinstance(records[0]["shape"], (tuple, list)):
        return {f"{side}_{k}": torch.tensor([r[k][j] for r in records])
                for j, side in enumerate(("left", "right")) for k in ("color", "shape")}
    return {k: torch.tensor([r[k] for r in records]) for k in CATEGORIES}


def fit_probe(x: torch.Tensor, labels: dict, steps: int = 300, weight_decay: float = 1e-3) -> dict:
    """Linear softmax classifiers, one per label, on standardised features (full batch, Adam,
    deterministic). Returns {"mean", "std", "heads"} for ``probe_predict``."""
    mean, std = x.mean(0), x.std(0)
    # a feature constant in training (e.g. bag-of-words <unk>) keeps std 1: dividing by a clamped
    # ~0 std would blow it up to ~1e6 on unseen phrasings, where it is no longer constant
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    z = (x - mean) / std
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        heads = {k: nn.Linear(x.shape[1], int(y.max()) + 1) for k, y in labels.items()}
    params = [p for h in heads.values() for p in h.parameters()]
    opt = torch.optim.Adam(params, lr=0.05, weight_decay=weight_decay)
    for _ in range(steps):
        loss = sum(F.cross_entropy(heads[k](z), y) for k, y in labels.items())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {"mean": mean, "std": std, "heads": heads}


@torch.no_grad()
def probe_accuracy(probe: dict, x: torch.Tensor, labels: dict) -> dict:
    z = (x - probe["mean"]) / probe["std"]
    acc = {k: (probe["heads"][k](z).argmax(1) == y).float().mean().item() for k, y in labels.items()}
    acc["mean"] = sum(acc.values()) / len(acc)
    return acc


def bag_of_words(sentences: list[str]) -> torch.Tensor:
    """Word counts over the base vocabulary (16 words + <unk>): the order-blind, no-pretraining
    baseline. An unseen word only adds to the <unk> count."""
    vocab = Vocabulary.base_only()
    counts = F.one_hot(vocab.encode(sentences), len(vocab)).sum(1).float()
    return counts[:, UNK:vocab.mask_id]                  # drop <pad> and the unused <mask>


def probe_transfer(features, two: bool = False, n_test: int = 4, seed: int = 0) -> dict:
    """Train linear probes on the base captions of every record and test them on unseen phrasings.

    ``features``: list of N sentences → (N, D) tensor (e.g. ``lambda s: model.features(
    vocab.encode(s))`` or ``bag_of_words``). Train set: ``base_caption`` of all 48 single-object
    records (two=False) or of all 360 two-object records in both orders (two=True). Test sets:
    ``n_test`` ``unseen_caption`` draws per record in each mode. Returns {"base": train accuracy,
    "synonym": {...}, "paraphrase": {...}, "both": {...}}, each a dict of per-label accuracies and
    their "mean". Chance: size 1/2, colour 1/6, shape 1/4."""
    recs = all_records(two)
    train = [(base_caption(r, flip), r) for r in recs for flip in ((False, True) if two else (False,))]
    x, y = features([c for c, _ in train]), _labels([r for _, r in train])
    probe = fit_probe(x, y)
    out = {"base": probe_accuracy(probe, x, y)}
    for mode in ("synonym", "paraphrase", "both"):
        test = [(unseen_caption(r, mode, seed * 100_003 + i * 1009 + k), r)
                for i, r in enumerate(recs) for k in range(n_test)]
        out[mode] = probe_accuracy(probe, features([c for c, _ in test]), _labels([r for _, r in test]))
    return out
