"""The question bank and the myth list: structure, S-item coverage, links, evidence."""
import re
from collections import Counter
from pathlib import Path

import pytest

from genlib import interview

BANK = interview.load_bank()
MYTHS = interview.load_myths()

# SOURCES.md sits in ../shared beside the repository (CI) or in /work/shared (authoring).
SOURCES_CANDIDATES = [interview.ROOT.parent / "shared" / "SOURCES.md", Path("/work/shared/SOURCES.md")]

# S-items whose text in SOURCES.md reports a wrong claim or a bug: each must appear in a myth.
WRONG_CLAIM_ITEMS = ["S0.1", "S0.2", "S0.4", "S0.5", "S1.1", "S1.3", "S1.4", "S1.5", "S1.6", "S1.7",
                     "S1.8", "S2.1", "S2.3", "S3.1", "S3.4", "S3.5", "S3.6", "S4.4", "S4.5", "S4.7",
                     "S4.8"]


def test_internal_source_list_is_the_35_items():
    ids = interview.SOURCE_IDS
    assert len(ids) == len(set(ids)) == 35
    per_article = Counter(s.split(".")[0] for s in ids)
    assert per_article == {"S0": 5, "S1": 8, "S2": 7, "S3": 7, "S4": 8}


def test_internal_list_matches_sources_md_when_present():
    found = [p for p in SOURCES_CANDIDATES if p.exists()]
    if not found:  # the internal list above is still checked by every other test
        return
    parsed = interview.source_ids_in(found[0].read_text(encoding="utf-8"))
    assert parsed == list(interview.SOURCE_IDS), "SOURCES.md and genlib.interview.SOURCE_IDS differ"


def test_source_id_parser():
    text = "## Article 000\n- S0.1 What…\n- S0.2 How…\n  not an item S0.9\n- S1.10 late\n"
    assert interview.source_ids_in(text) == ["S0.1", "S0.2", "S1.10"]


def test_every_source_item_is_covered():
    cov = interview.coverage(BANK)
    missing = [s for s in interview.SOURCE_IDS if not cov[s]]
    assert not missing, f"S-items without a question: {missing}"


def test_coverage_detects_a_gap():
    without = [e for e in BANK if "S1.4" not in e["sources"]]
    assert interview.coverage(without)["S1.4"] == []


def test_size_topics_and_difficulties():
    assert len(BANK) >= 92
    topics = Counter(e["topic"] for e in BANK)
    assert set(topics) == set(interview.TOPICS)
    assert min(topics.values()) >= 5, topics
    assert set(e["difficulty"] for e in BANK) == set(interview.DIFFICULTIES)


def test_ids_unique_and_numbered():
    ids = [e["id"] for e in BANK]
    assert len(ids) == len(set(ids))
    for topic in interview.TOPICS:
        nums = sorted(int(e["id"].split("-")[1]) for e in BANK if e["topic"] == topic)
        assert nums == list(range(1, len(nums) + 1)), f"{topic}: ids not 1..n"


@pytest.mark.parametrize("entry", BANK, ids=[e["id"] for e in BANK])
def test_entry_is_well_formed(entry):
    assert interview.validate_entry(entry) == []


def test_validate_entry_catches_problems():
    good = dict(BANK[0])
    assert interview.validate_entry(good) == []
    long = dict(good, short_answer="word " * 121)
    assert any("121 words" in p for p in interview.validate_entry(long))
    assert any("difficulty" in p for p in interview.validate_entry(dict(good, difficulty="trivial")))
    assert any("source id" in p for p in interview.validate_entry(dict(good, sources=["S9.9"])))
    assert any("year" in p for p in interview.validate_entry(dict(good, references=[{"paper": "x"}])))
    assert any("missing field" in p for p in
               interview.validate_entry({k: v for k, v in good.items() if k != "pitfalls"}))


@pytest.mark.parametrize("entry", BANK, ids=[e["id"] for e in BANK])
def test_links_resolve(entry):
    assert interview.link_problems(entry["links"]) == []


def test_link_checker_rejects_broken_links():
    assert interview.link_problems({"notebook": "solutions/99_nope.ipynb#X", "function": None})
    assert interview.link_problems({"notebook": None, "function": "genlib.losses.no_such_fn"})
    assert interview.link_problems({"notebook": None, "function": "torch.nn.Linear"})
    nb = "solutions/11_interview_prep.ipynb"
    assert interview.link_problems({"notebook": nb + "#No such heading here", "function": None})
    assert interview.link_problems({"notebook": nb + "#Myth vs fact", "function": "genlib.losses.d_loss"}) == []


def test_every_chapter_exists_so_no_link_may_wait():
    """All twelve chapters of DESIGN.md are written: a link to a missing notebook is broken."""
    stems = sorted(p.stem for p in (interview.ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    assert [s[:2] for s in stems] == [f"{i:02d}" for i in range(12)], stems
    for bad in ("solutions/07_diffusion_and_flow.ipynb", "solutions/12_future.ipynb", "solutions/09_speed"):
        assert interview.link_problems({"notebook": bad, "function": None}), bad
    assert interview.link_problems({"notebook": "solutions/09_speed.ipynb", "function": None}) == []
    assert interview.link_problems({"notebook": "solutions/09_speed.ipynb#No such part", "function": None})


def test_most_questions_link_to_a_notebook_or_function():
    linked = [e for e in BANK if e["links"]["notebook"] or e["links"]["function"]]
    assert len(linked) >= 0.6 * len(BANK)


def test_short_answers_are_sayable():
    words = [len(e["short_answer"].split()) for e in BANK]
    assert max(words) <= interview.SHORT_ANSWER_WORDS


# ----------------------------------------------------------------------------- myths
def test_myths_have_ids_claims_corrections():
    ids = [m["id"] for m in MYTHS]
    assert ids == [f"myth-{i}" for i in range(1, len(MYTHS) + 1)]
    for m in MYTHS:
        assert m["claim"] and m["correction"] and m["claim"] != m["correction"]
        assert m["source_ids"] and set(m["source_ids"]) <= set(interview.SOURCE_IDS)


def test_every_wrong_claim_item_has_a_myth():
    covered = {s for m in MYTHS for s in m["source_ids"]}
    assert not set(WRONG_CLAIM_ITEMS) - covered


def test_myths_point_at_existing_questions():
    ids = {e["id"] for e in BANK}
    for m in MYTHS:
        assert m["question_ids"] and set(m["question_ids"]) <= ids, m["id"]


@pytest.mark.parametrize("myth", MYTHS, ids=[m["id"] for m in MYTHS])
def test_every_myth_has_evidence_that_holds(myth):
    summary = interview.verify_myth(myth)
    assert summary


def test_verify_myth_rejects_missing_evidence():
    bad = {"id": "myth-x", "evidence": {"kind": "measurement", "detail": "trust me, it is faster"}}
    with pytest.raises(AssertionError, match="must be runnable"):
        interview.verify_myth(bad)
    with pytest.raises(AssertionError, match="kind"):
        interview.verify_myth({"id": "myth-y", "evidence": {"kind": "vibes", "detail": "x" * 20}})
    with pytest.raises(AssertionError, match="references"):
        interview.verify_myth({"id": "myth-z", "evidence": {"kind": "citation", "detail": "x" * 20}})


def test_evidence_kinds_all_used():
    assert {m["evidence"]["kind"] for m in MYTHS} == set(interview.EVIDENCE_KINDS)


def test_references_are_papers_with_years():
    for e in BANK:
        for r in e["references"]:
            assert re.search(r"[A-Za-z]", r["paper"]) and 1950 <= r["year"] <= 2026, (e["id"], r)


def test_interview_corner_ids_in_every_chapter_exist():
    """Chapters cite bank ids (vae-3, myth-15) in their text: each must exist in the bank."""
    import nbformat

    ids = {e["id"] for e in BANK} | {m["id"] for m in MYTHS}
    pattern = re.compile(r"\b((?:%s|myth)-\d+)\b" % "|".join(interview.TOPICS))
    for path in sorted((interview.ROOT / "solutions").glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        cited = {m for c in nb.cells if c.cell_type == "markdown" for m in pattern.findall(c.source)}
        assert cited <= ids, f"{path.name} cites questions not in the bank: {sorted(cited - ids)}"


def test_topics_with_a_chapter_always_link_to_one():
    """A null notebook link is allowed only where no chapter covers the topic (diffusion, speed, …)."""
    for e in BANK:
        if e["topic"] in ("gan", "training", "modes", "vae"):
            assert e["links"]["notebook"], f"{e['id']} has no notebook link although its topic has a chapter"


def test_readme_and_chapter_11_state_the_bank_size_truly():
    """README's "Interview prep" section names the exact number of questions and myths; chapter 11 says
    "over N" — both must stay true when questions are added."""
    import nbformat

    readme = (interview.ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Interview prep"):]
    section = section[:section.index("\n## ", 1)]
    said = re.search(r"has (\d+)\s+questions", section)
    assert said and int(said.group(1)) == len(BANK), (said and said.group(0), len(BANK))
    myths = re.search(r"(\d+) myth-vs-fact items", section)
    assert myths and int(myths.group(1)) == len(MYTHS)
    nb = nbformat.read(str(interview.ROOT / "solutions" / "11_interview_prep.ipynb"), as_version=4)
    over = re.search(r"bank of over (\d+) questions", nb.cells[0].source)
    assert over and int(over.group(1)) < len(BANK) <= int(over.group(1)) + 50, over and over.group(0)


# Review findings (turn 3) whose wrong text must not come back: (id, field, phrase).
CORRECTED = [
    ("diffusion-9", "short_answer", "equals v up to a time-dependent scaling"),
    ("diffusion-9", "deep_answer", "is a rescaling of the same vector"),
    ("diffusion-4", "deep_answer", "up to a time-dependent scaling, the same regression"),
    ("cond-2", "deep_answer", "It approximates sampling from"),
    ("speed-17", "short_answer", "hold little compute"),
    ("diffusion-2", "deep_answer", "dominated by the high-noise terms"),
    ("diffusion-3", "short_answer", "it needs many (hundreds to 1,000) steps"),
    ("speed-5", "deep_answer", "because the uncached work is cubic"),
    ("metrics-11", "deep_answer", "3,000 steps"),
    ("metrics-11", "deep_answer", "exactly 3 dB"),
    ("metrics-10", "deep_answer", "keeps the digit's class more often"),
    ("diffusion-10", "deep_answer", "the guided flow keeps it more often"),
]


@pytest.mark.parametrize("qid,field,phrase", CORRECTED, ids=[f"{q}:{p[:20]}" for q, _, p in CORRECTED])
def test_corrected_claims_stay_corrected(qid, field, phrase):
    assert phrase not in interview.get(qid)[field]


def test_2026_topics_have_questions():
    """Issue 23: the topics an interviewer asks in 2026 each have a question that names them."""
    text = {e["id"]: " ".join([e["question"], e["short_answer"], e["deep_answer"]]) for e in BANK}
    for term in ("MM-DiT", "adaLN", "FSQ", "ControlNet", "LoRA", "DreamBooth", "IP-Adapter", "SDEdit",
                 "null-text inversion", "Diffusion-DPO", "DDPO", "DRaFT", "recaption", "CFG rescale",
                 "autoguidance", "logit-normal", "EMA", "CMMD", "GenEval", "DINOv2", "VQAScore", "video",
                 "space-time patches", "Tree-Ring", "C2PA", "FSDP", "checkpointing", "NVFP4"):
        assert any(term.lower() in t.lower() for t in text.values()), term


# ----------------------------------------------------------------------------- key points
def test_every_question_has_two_to_four_key_points():
    """learners (turn 3): no per-question key points to self-grade against. Every question now has
    them; missing_key_points names any question added without."""
    assert interview.missing_key_points(BANK) == []
    for e in BANK:
        lo, hi = interview.KEY_POINTS
        assert lo <= len(e["key_points"]) <= hi, e["id"]
        opening = " ".join(interview.first_sentence(e["short_answer"]).lower().split()).rstrip(".?!")
        for k in e["key_points"]:
            assert isinstance(k, str) and k.strip(), e["id"]
            assert " ".join(k.lower().split()).rstrip(".?!") != opening, (e["id"], k)
        assert interview.key_point_problems(e) == [], e["id"]


def test_key_point_checker_catches_problems():
    good = dict(BANK[0])
    opening = interview.first_sentence(good["short_answer"])
    assert opening and opening != good["short_answer"] and opening.endswith(".")
    bad = {
        "too few": ["only one"],
        "too many": ["a", "b", "c", "d", "e"],
        "empty": ["fine point", "  "],
        "not a list": "one string",
        "copy": [opening, "something else"],
        "copy without its full stop": [opening.rstrip(".").upper(), "something else"],
        "piece of the first sentence": [" ".join(opening.split()[:6]), "something else"],
        "repeat": ["same thing", "Same thing"],
        "too long": ["word " * 31, "short"],
    }
    for why, kp in bad.items():
        assert interview.key_point_problems(dict(good, key_points=kp)), why
        assert interview.validate_entry(dict(good, key_points=kp)), why
    assert interview.key_point_problems(good) == []
    without = {k: v for k, v in good.items() if k != "key_points"}
    assert interview.validate_entry(without) == []  # checked where present …
    assert interview.missing_key_points([without, good]) == [good["id"]]  # … and listed where absent
    assert interview.first_sentence("Is it? Yes. No.") == "Is it?"


def test_key_points_are_shown_on_the_study_sheet():
    e = interview.get("vae-3")
    sheet = " ".join(interview.format_entry(e).split())
    at = [sheet.index(" ".join(k.split())) for k in e["key_points"]]
    assert sheet.index("Answer:") < sheet.index("Key points") < min(at) and max(at) < sheet.index("Deeper:")
