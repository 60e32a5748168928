"""genlib.textpretrain: the text-only corpus, its vocabulary, BERT masking, the MLM loss, pretraining."""
import math

import pytest
import torch

from genlib import textpretrain as tp
from genlib.conditioning import two_shapes
from genlib.data import shapes
from genlib.text import WORDS, Tokenizer

ATTRIBUTE_WORDS = {w for names in tp.CATEGORIES.values() for w in names}
SYNONYM_OF = {s: b for b, syns in tp.SYNONYMS.items() for s in syns}
ANCHOR_WORDS = {n for ns in tp.ANCHORS.values() for n in ns}


def test_corpus_is_deterministic_text_only_and_uses_every_word():
    a, b = tp.corpus(800, seed=3), tp.corpus(800, seed=3)
    assert a == b and a != tp.corpus(800, seed=4) and len(a) == 800
    words = {w for s in tp.corpus(4000, 0) for w in s.split()}
    assert words == set(WORDS) | set(tp.EXTENDED)          # every word occurs, nothing else
    assert len(tp.Vocabulary()) == 2 + len(WORDS) + len(tp.EXTENDED) + 1
    with pytest.raises(ValueError):
        tp.corpus(0)


def test_base_captions_use_base_words_only_and_match_the_image_datasets():
    base, extended = set(WORDS), set(tp.EXTENDED)
    caps = [tp.base_caption(r) for r in tp.all_records()]
    caps += [tp.base_caption(r, flip) for r in tp.all_records(two=True) for flip in (False, True)]
    for c in caps:
        assert set(c.split()) <= base and not set(c.split()) & extended, c
    assert set(shapes(300, seed=0).captions) <= set(caps)
    assert set(two_shapes(300, seed=0).captions) <= set(caps)
    assert len(set(caps)) == 48 + 720


def test_unseen_captions_are_unseen_and_describe_the_same_record():
    for r in tp.all_records()[:12] + tp.all_records(two=True)[:12]:
        syn = tp.unseen_caption(r, "synonym", seed=1).split()
        assert not set(syn) & ATTRIBUTE_WORDS                  # every attribute word replaced
        base_attr = [w for w in tp.base_caption(r).split() if w in ATTRIBUTE_WORDS]
        assert [SYNONYM_OF[w] for w in syn if w in SYNONYM_OF] == base_attr
        para = tp.unseen_caption(r, "paraphrase", seed=1)
        assert para != tp.base_caption(r) and para != tp.base_caption(r, True)
        assert sorted(w for w in para.split() if w in ATTRIBUTE_WORDS) == sorted(base_attr)
        assert set(tp.unseen_caption(r, "both", seed=1).split()) & set(tp.EXTENDED)
    with pytest.raises(ValueError):
        tp.unseen_caption(tp.all_records()[0], "typo")


def test_every_synonym_fills_exactly_the_contexts_of_its_base_word():
    def contexts(sentences):
        """word → set of sentence frames: the word as "_", other attribute words as their
        category, anchors as <n>."""
        cat_of = {w: c for c, names in tp.CATEGORIES.items() for b in names
                  for w in (b, *tp.SYNONYMS[b])}
        out = {}
        for s in sentences:
            ws = s.split()
            for i, w in enumerate(ws):
                if w in cat_of:
                    frame = ["_" if j == i else cat_of.get(v, "<n>" if v in ANCHOR_WORDS else v)
                             for j, v in enumerate(ws)]
                    out.setdefault(w, set()).add(" ".join(frame))
        return out

    ctx = contexts(tp.corpus(6000, 0))
    for s, b in SYNONYM_OF.items():
        assert ctx[s] == ctx[b], (s, b, ctx[s] ^ ctx[b])
        assert len(ctx[b]) >= 10


def test_vocabulary_keeps_the_tokenizer_ids_and_base_only_maps_new_words_to_unk():
    v, cap = tp.Vocabulary(), "a large red circle left of a blue square"
    assert torch.equal(v.encode(cap), Tokenizer().encode(cap))
    assert v.decode(v.encode(["a huge crimson disc like a cherry"])) == ["a huge crimson disc like a cherry"]
    assert v.itos[v.mask_id] == "<mask>" and v.encode("a purple blob")[0, 1] == tp.UNK
    base = tp.Vocabulary.base_only()
    assert base.encode("a huge crimson disc").tolist() == [[base.stoi["a"], 1, 1, 1]]
    bow = tp.bag_of_words(["a large red circle", "a huge red disc"])
    assert bow.shape == (2, 17) and bow[1, 0] == 2 and bow[0, 0] == 0   # column 0 counts <unk>


def test_mlm_loss_counts_masked_positions_only():
    V = 11
    targets = torch.tensor([[tp.IGNORE, 5, tp.IGNORE, 7]])
    assert math.isclose(tp.mlm_loss(torch.zeros(1, 4, V), targets).item(), math.log(V), rel_tol=1e-6)
    logits = torch.zeros(1, 4, V)
    logits[0, 1, 5] = logits[0, 3, 7] = 50.0               # right at the masked positions
    logits[0, 0, 2] = logits[0, 2, 9] = 50.0               # "wrong" at ignored ones: no cost
    assert tp.mlm_loss(logits, targets).item() < 1e-6
    logits[0, 3, 7] = 0.0                                   # one masked position uniform-ish
    expected = 0.5 * (-torch.log_softmax(logits[0, 3], -1)[7]).item()
    assert math.isclose(tp.mlm_loss(logits, targets).item(), expected, rel_tol=1e-5)
    with pytest.raises(ValueError):
        tp.mlm_loss(logits, torch.full((1, 4), tp.IGNORE))


def test_mask_tokens_statistics():
    v = tp.Vocabulary()
    ids = v.encode(tp.corpus(4000, 1), 16)
    g = torch.Generator().manual_seed(0)
    inputs, targets = tp.mask_tokens(ids, v.mask_id, generator=g)
    real, chosen = ids > tp.UNK, targets != tp.IGNORE
    assert not (chosen & ~real).any()                                    # pad never chosen
    assert torch.equal(inputs[ids == tp.PAD], ids[ids == tp.PAD])
    assert torch.equal(inputs[~chosen], ids[~chosen])                    # unchosen untouched
    assert torch.equal(targets[chosen], ids[chosen])
    n = chosen.sum().item()
    assert abs(n / real.sum().item() - 0.15) < 0.01
    masked = (inputs[chosen] == v.mask_id).float().mean().item()
    kept = (inputs[chosen] == ids[chosen]).float().mean().item()
    assert abs(masked - 0.8) < 0.02 and abs(kept - 0.1 - 0.1 / (v.mask_id - 2)) < 0.015
    assert inputs.max() <= v.mask_id and inputs[chosen].min() > tp.UNK  # random ids are real words
    with pytest.raises(ValueError):
        tp.mask_tokens(ids, v.mask_id, ratio=0.0)


def test_pretraining_is_seeded_and_lowers_the_mlm_loss():
    v = tp.Vocabulary()
    sents = tp.corpus(3000, 0)
    h1 = tp.pretrain(tp.new_model(v, seed=0), sents, v, steps=150, batch=64, seed=0, progress=False)
    h2 = tp.pretrain(tp.new_model(v, seed=0), sents, v, steps=5, batch=64, seed=0, progress=False)
    h3 = tp.pretrain(tp.new_model(v, seed=0), sents, v, steps=5, batch=64, seed=0, progress=False)
    h4 = tp.pretrain(tp.new_model(v, seed=1), sents, v, steps=5, batch=64, seed=1, progress=False)
    assert h2 == h3 and h2 != h4 and h1[0] == h2[0]        # seeded (the lr schedule depends on steps)
    start, end = sum(h1[:10]) / 10, sum(h1[-20:]) / 20
    assert math.isclose(start, math.log(len(v)), rel_tol=0.15)
    assert end < start - 2.0, (start, end)


def test_bag_of_words_probe_reads_paraphrases_but_not_synonyms_or_bindings():
    one = tp.probe_transfer(tp.bag_of_words)
    assert one["base"]["mean"] == 1.0 and one["paraphrase"]["mean"] == 1.0   # order-blind helps here
    # every synonym is <unk>: one feature vector for all captions, one answer per label, and the
    # test sets are balanced, so each accuracy is exactly chance
    for k, n in (("size", 2), ("color", 6), ("shape", 4)):
        assert math.isclose(one["synonym"][k], 1 / n, abs_tol=1e-6)
    two = tp.probe_transfer(tp.bag_of_words, two=True)
    assert two["base"]["mean"] < 0.6                        # "a red circle left of a blue square" =
                                                            # the bag of "a blue circle left of a red square"


def test_synonym_similarity_sees_copied_embeddings():
    v = tp.Vocabulary()
    model = tp.new_model(v, seed=0).eval()
    random_gap = tp.synonym_similarity(model, v)["gap"]
    with torch.no_grad():
        for s, b in SYNONYM_OF.items():
            model.encoder.embed.weight[v.stoi[s]] = model.encoder.embed.weight[v.stoi[b]]
    copied = tp.synonym_similarity(model, v)
    assert copied["same"] > 0.99 and copied["gap"] > random_gap + 0.5, (copied, random_gap)
