"""The interview question bank, the myth-vs-fact list, and ``genlib quiz``.

* ``load_bank(topic=None, difficulty=None)`` → list of question entries (dicts) from
  ``genlib/bank/<topic>.json``. Fields: ``id`` (``<topic>-<n>``), ``topic``, ``difficulty``
  (easy/medium/hard), ``question``, ``short_answer`` (≤ 120 words: say it aloud), ``deep_answer``
  (for the follow-up), ``follow_ups``, ``pitfalls``, ``references`` ([{"paper", "year"}]),
  ``sources`` (S-ids from SOURCES.md), ``links`` ({"notebook": "solutions/NN_x.ipynb#Heading" or
  null, "function": "genlib.module.name" or null}), and ``key_points``: 2–4 short items a good
  answer must mention, to grade yourself against (checked whenever present; ``missing_key_points``
  lists the questions that still lack them).
* ``load_myths()`` → the wrong claims of the source articles, each with its correction and its
  evidence ({"kind": derivation | measurement | citation, "detail", optional "check": a function
  here that re-derives or re-measures the fact and raises if it does not hold}).
* ``genlib quiz [--topic T] [--difficulty D] [-n N] [--state PATH]``: asks, reveals on Enter,
  records a 1–3 self-rating, and brings weak questions back sooner (a small Leitner schedule counted
  in sessions, stored in ``~/.genlib-quiz.json``). After each answer it shows the deeper answer,
  follow-ups, pitfalls and references, then the question's key points as a checklist to rate
  yourself against. Progress is never lost: it is written atomically after each
  rating and only then (quitting before a rating changes nothing); Ctrl-C and end of input stop
  cleanly; an unreadable progress file is reported and kept as ``<name>.corrupt-<timestamp>``; a
  ``--state`` the quiz could not save to is a one-line error before the first question; fewer
  matching questions than ``-n`` asks for are announced.
  ``genlib quiz --mock [-n N] [--seconds S] [--seed K]``: a timed mock interview, N questions
  (default 5) from N different topics, at least one hard, each answer timed against S seconds
  (default 120); it prints its seed, and ``--seed K`` asks the same mock again.
  ``genlib quiz --print [--topic T] [--difficulty D] [-n N]``: a study sheet, no input needed;
  ``genlib quiz --print --myths``: the myth-vs-fact sheet. ``genlib quiz --stats [--topic T]``:
  progress per topic (seen, due next session, weak) and the weak questions, read-only.
  ``--follow-ups`` (with the quiz or ``--mock``) asks each question's follow-ups after its short
  answer, before the deeper answer that answers them. Meaningless combinations (``--myths``
  without ``--print``, ``--mock`` with ``--print``, filters with ``--myths``, ``--seconds`` or
  ``--seed`` without ``--mock``) are refused with a message, as is an ``-n`` below 1.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import re
import sys
import tempfile
import textwrap
from functools import lru_cache
from pathlib import Path

BANK_DIR = Path(__file__).resolve().parent / "bank"
ROOT = Path(__file__).resolve().parent.parent
TOPICS = {
    "basics": "Foundations and history",
    "gan": "GAN theory",
    "training": "GAN training",
    "modes": "Mode collapse",
    "vae": "Variational autoencoders",
    "metrics": "Evaluation metrics",
    "cond": "Conditioning and text-to-image",
    "speed": "Speed and hardware",
    "diffusion": "Diffusion basics",
}
DIFFICULTIES = ("easy", "medium", "hard")
FIELDS = ("id", "topic", "difficulty", "question", "short_answer", "deep_answer", "follow_ups",
          "pitfalls", "references", "sources", "links")
EVIDENCE_KINDS = ("derivation", "measurement", "citation")
SHORT_ANSWER_WORDS = 120
KEY_POINTS = (2, 4)  # how many key points a question has (fewest, most)

# Every item of SOURCES.md (articles 000–004). The bank must cover each one; tests also
# cross-check this list against ../shared/SOURCES.md when that file is present.
SOURCE_IDS = (
    [f"S0.{i}" for i in range(1, 6)] + [f"S1.{i}" for i in range(1, 9)]
    + [f"S2.{i}" for i in range(1, 8)] + [f"S3.{i}" for i in range(1, 8)]
    + [f"S4.{i}" for i in range(1, 9)]
)


# ============================================================================ loading
@lru_cache(maxsize=1)
def _all_entries() -> tuple:
    entries = []
    for topic in TOPICS:
        path = BANK_DIR / f"{topic}.json"
        if path.exists():
            entries.extend(json.loads(path.read_text(encoding="utf-8")))
    return tuple(entries)


def load_bank(topic: str | None = None, difficulty: str | None = None) -> list[dict]:
    """Question entries (fresh dicts), optionally filtered by topic and difficulty."""
    if topic is not None and topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}; choose one of {', '.join(TOPICS)}")
    if difficulty is not None and difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r}; choose one of {', '.join(DIFFICULTIES)}")
    return [json.loads(json.dumps(e)) for e in _all_entries()
            if (topic is None or e["topic"] == topic)
            and (difficulty is None or e["difficulty"] == difficulty)]


def load_myths() -> list[dict]:
    """Myth-vs-fact items: id, claim, source_ids, correction, evidence, question_ids."""
    return json.loads((BANK_DIR / "myths.json").read_text(encoding="utf-8"))


def get(qid: str) -> dict:
    """One entry by id (``"vae-2"``)."""
    for e in load_bank():
        if e["id"] == qid:
            return e
    raise KeyError(f"no question {qid!r} in the bank")


def source_ids_in(text: str) -> list[str]:
    """The S-ids (S0.1 …) listed as items in a SOURCES.md text, in order of appearance."""
    return list(dict.fromkeys(re.findall(r"^- (S\d\.\d+)\b", text, flags=re.M)))


def coverage(entries=None) -> dict[str, list[str]]:
    """S-id → ids of the questions that cover it (every S-id in SOURCE_IDS is a key)."""
    cov = {s: [] for s in SOURCE_IDS}
    for e in entries if entries is not None else load_bank():
        for s in e["sources"]:
            cov.setdefault(s, []).append(e["id"])
    return cov


# ============================================================================ validation
def validate_entry(e: dict) -> list[str]:
    """Problems with one entry's structure (an empty list means it is well formed)."""
    problems = [f"missing field {f!r}" for f in FIELDS if f not in e]
    if problems:
        return problems
    if e["topic"] not in TOPICS:
        problems.append(f"unknown topic {e['topic']!r}")
    if not re.fullmatch(rf"{re.escape(e['topic'])}-\d+", e["id"]):
        problems.append(f"id {e['id']!r} should be '{e['topic']}-<n>'")
    if e["difficulty"] not in DIFFICULTIES:
        problems.append(f"difficulty {e['difficulty']!r} not in {DIFFICULTIES}")
    for f in ("question", "short_answer", "deep_answer"):
        if not isinstance(e[f], str) or len(e[f].strip()) < 20:
            problems.append(f"{f} is empty or too short")
    n_words = len(e["short_answer"].split())
    if n_words > SHORT_ANSWER_WORDS:
        problems.append(f"short_answer has {n_words} words (> {SHORT_ANSWER_WORDS})")
    if len(e["deep_answer"].split()) < 40 or e["deep_answer"] == e["short_answer"]:
        problems.append("deep_answer should add at least 40 words beyond the short answer")
    for f in ("follow_ups", "pitfalls"):
        if not e[f] or not all(isinstance(s, str) and s.strip() for s in e[f]):
            problems.append(f"{f} must be a non-empty list of strings")
    if not e["references"]:
        problems.append("no references")
    for r in e["references"]:
        if not (isinstance(r, dict) and r.get("paper") and isinstance(r.get("year"), int)
                and 1900 < r["year"] < 2100):
            problems.append(f"reference {r!r} needs 'paper' and an integer 'year'")
    for s in e["sources"]:
        if s not in SOURCE_IDS:
            problems.append(f"unknown source id {s!r}")
    links = e["links"]
    if not isinstance(links, dict) or set(links) != {"notebook", "function"}:
        problems.append("links must be {'notebook': …, 'function': …}")
    if "key_points" in e:
        problems += key_point_problems(e)
    return problems


def first_sentence(text: str) -> str:
    """The text up to its first full stop, question or exclamation mark followed by a space."""
    return re.split(r"(?<=[.?!])\s", text.strip(), maxsplit=1)[0]


def key_point_problems(e: dict) -> list[str]:
    """Problems with an entry's ``key_points``: 2–4 distinct non-empty strings of at most 30 words,
    none of them a copy of the short answer's first sentence or of a piece of it (a key point names
    one thing a good answer mentions, in its own words)."""
    kp = e.get("key_points")
    lo, hi = KEY_POINTS
    if not isinstance(kp, list) or not lo <= len(kp) <= hi:
        return [f"key_points must be a list of {lo}–{hi} items"]
    problems = []
    if not all(isinstance(k, str) and k.strip() for k in kp):
        problems.append("every key point must be a non-empty string")
        return problems
    if len({k.strip().lower() for k in kp}) != len(kp):
        problems.append("key points repeat")

    def norm(text):
        return " ".join(text.lower().split()).rstrip(".?!:; ")

    opening = norm(first_sentence(e["short_answer"]))
    for k in kp:
        if norm(k) in opening or (len(opening.split()) >= 4 and opening in norm(k)):
            problems.append(f"key point {k[:40]!r}… copies (part of) the short answer's first sentence")
        if len(k.split()) > 30:
            problems.append(f"key point {k[:40]!r}… is over 30 words")
    return problems


def missing_key_points(entries=None) -> list[str]:
    """Ids of the questions that have no key points yet."""
    return [e["id"] for e in (entries if entries is not None else load_bank()) if not e.get("key_points")]


@lru_cache(maxsize=None)
def notebook_headings(path: str) -> tuple:
    """Markdown headings (text after the #s) of a notebook under the project root."""
    import nbformat

    nb = nbformat.read(str(ROOT / path), as_version=4)
    heads = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heads += [m.strip() for m in re.findall(r"^#{1,6}\s+(.+)$", cell.source, flags=re.M)]
    return tuple(heads)


def resolve_function(dotted: str):
    """Import ``genlib.module.name`` (or ``genlib.module.Class.method``) and return the object."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(f"cannot import {dotted!r}")


def link_problems(link: dict) -> list[str]:
    """Broken parts of a ``links`` dict: a missing notebook or heading, an unimportable function.

    Every chapter 00–11 exists, so a link to a missing notebook is always broken (earlier
    versions let a question wait for a planned chapter).
    """
    problems = []
    nb = link.get("notebook")
    if nb is not None:
        path, _, heading = nb.partition("#")
        if not (ROOT / path).exists():
            problems.append(f"notebook {path} does not exist")
        elif not heading:
            pass  # the whole chapter
        elif heading.strip() not in notebook_headings(path):
            problems.append(f"notebook {path} has no heading {heading!r}")
    fn = link.get("function")
    if fn is not None:
        if not fn.startswith("genlib."):
            problems.append(f"function link {fn!r} must be a genlib.* dotted path")
        else:
            try:
                resolve_function(fn)
            except (ImportError, AttributeError) as e:
                problems.append(f"function {fn} does not import: {e}")
    return problems


# ============================================================================ scheduling
INTERVALS = (1, 2, 4, 8, 16)  # sessions until a question in box b comes back
RATINGS = {1: "missed it", 2: "partly", 3: "knew it"}


class QuizStateError(Exception):
    """The progress file cannot be used (a directory, a missing or unwritable directory, …): the
    quiz stops before the first question. ``str(e)`` is a one-line message for the learner."""


class UnreadableState(QuizStateError):
    """The progress file exists but cannot be read as quiz progress (bad JSON, wrong schema,
    unreadable bytes or permissions). The file itself is left untouched."""


def _state_problem(state) -> str | None:
    """Why a parsed progress file is not quiz progress (None when it is)."""
    if not isinstance(state, dict):
        return f"expected a JSON object, found {type(state).__name__}"
    if state.get("version", 1) != 1:
        return f"version {state.get('version')!r} (this genlib reads version 1)"
    session, items = state.get("session"), state.get("items")
    if not isinstance(session, int) or isinstance(session, bool) or session < 0:
        return f"'session' should be a count ≥ 0, found {session!r}"
    if not isinstance(items, dict):
        return "'items' should be an object of question ids"
    for qid, item in items.items():
        ok = (isinstance(item, dict)
              and all(isinstance(item.get(k), int) and not isinstance(item.get(k), bool)
                      for k in ("box", "seen", "due"))
              and 0 <= item["box"] < len(INTERVALS)
              and isinstance(item.get("ratings"), list)
              and all(r in RATINGS for r in item["ratings"]))
        if not ok:
            return f"item {qid!r} is not a progress record (box, seen, due, ratings)"
    return None


def fresh_state() -> dict:
    return {"version": 1, "session": 0, "items": {}}


def load_state(path) -> dict:
    """The progress stored at ``path``, or a fresh state when there is no file yet.

    Raises ``UnreadableState`` (and leaves the file alone) when the file exists but is not readable
    quiz progress: the caller decides what to do with it (``run_quiz`` keeps it aside).
    """
    path = Path(path).expanduser()
    if not path.exists():
        return fresh_state()
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UnreadableState(f"{path}: not valid JSON at line {e.lineno} column {e.colno}") from None
    except UnicodeDecodeError:
        raise UnreadableState(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise UnreadableState(f"{path}: cannot be read ({e.strerror or e})") from None
    problem = _state_problem(state)
    if problem:
        raise UnreadableState(f"{path}: not quiz progress ({problem})")
    return state


def save_state(state: dict, path) -> None:
    """Write ``state`` atomically: a temporary file in the same directory, then ``os.replace``, so
    an interruption or a full disk leaves either the old file or the new one, never half of one."""
    path = Path(path).expanduser()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:  # keep an existing file's permissions; a new file gets the usual ones (umask)
            mode = path.stat().st_mode & 0o7777
        except OSError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        with contextlib.suppress(OSError):
            os.chmod(tmp, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_state_path(path) -> Path:
    """The expanded progress path, or ``QuizStateError`` with a one-line reason if the quiz could
    not save there (checked before the first question, not after the first answer)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise QuizStateError(f"--state {path} is a directory; give a file, e.g. {path / 'quiz.json'}")
    if path.exists() and not path.is_file():
        raise QuizStateError(f"--state {path} is not a regular file")
    parent = path.parent
    if not parent.exists():
        raise QuizStateError(f"--state {path}: the directory {parent} does not exist")
    if not parent.is_dir():
        raise QuizStateError(f"--state {path}: {parent} is not a directory")
    try:  # the only reliable test of "can I write here" (permissions, read-only mounts, root)
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise QuizStateError(f"--state {path}: cannot write in {parent} ({e.strerror or e})") from None
    return path


def keep_aside(path) -> Path:
    """Rename ``path`` to ``<name>.corrupt-<timestamp>`` (``-2``, ``-3`` … if that exists): a
    file is never overwritten. Returns the new path."""
    import time

    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, k = path.with_name(f"{path.name}.corrupt-{stamp}"), 1
    while True:
        try:
            os.link(path, target)  # fails if target exists: never overwrites
        except FileExistsError:
            k += 1
            target = path.with_name(f"{path.name}.corrupt-{stamp}-{k}")
            continue
        except OSError:  # a file system without hard links
            if target.exists() or target.is_symlink():
                k += 1
                target = path.with_name(f"{path.name}.corrupt-{stamp}-{k}")
                continue
            os.rename(path, target)
            return target
        os.unlink(path)
        return target


def rate(state: dict, qid: str, rating: int) -> dict:
    """Record a self-rating (1 missed, 2 partly, 3 knew it) and reschedule ``qid``.

    Missed → box 0 (back next session); partly → box ≤ 1; knew it → one box up. A question in box
    b is due INTERVALS[b] sessions later.
    """
    if rating not in RATINGS:
        raise ValueError(f"rating must be 1, 2 or 3, got {rating!r}")
    old = state["items"].get(qid, {"box": 0, "seen": 0, "ratings": []})
    box = old["box"]
    box = 0 if rating == 1 else (min(box, 1) if rating == 2 else min(box + 1, len(INTERVALS) - 1))
    item = dict(old, box=box, seen=old["seen"] + 1, due=state["session"] + INTERVALS[box],
                ratings=(old["ratings"] + [rating])[-5:])
    state["items"][qid] = item  # one assignment: an interruption never leaves half an item
    return item


def schedule(entries: list[dict], state: dict) -> list[dict]:
    """Order for this session: due questions (weakest box first), then new ones, then the rest."""
    session = state["session"]

    def key(pos_e):
        pos, e = pos_e
        item = state["items"].get(e["id"])
        if item is None:
            return (1, 0, 0, pos)
        if item["due"] <= session:
            return (0, item["box"], item["due"], pos)
        return (2, item["due"], item["box"], pos)

    return [e for _, e in sorted(enumerate(_interleave(entries)), key=key)]


def _interleave(entries: list[dict]) -> list[dict]:
    """Round-robin over topics, so a short session mixes topics (bank order within a topic)."""
    by_topic: dict[str, list] = {}
    for e in entries:
        by_topic.setdefault(e["topic"], []).append(e)
    out, queues = [], list(by_topic.values())
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


def pick_mock(entries: list[dict], k: int = 5, seed: int = 0) -> list[dict]:
    """A mock interview: ``k`` questions from ``k`` different topics (at least one hard), seeded."""
    import random

    rng = random.Random(seed)
    topics = sorted({e["topic"] for e in entries})
    if len(topics) < k:
        raise ValueError(f"need {k} topics, have {len(topics)}")
    chosen = rng.sample(topics, k)
    picked = [rng.choice([e for e in entries if e["topic"] == t]) for t in chosen]
    if not any(e["difficulty"] == "hard" for e in picked):
        for i, t in enumerate(chosen):  # swap in a hard question from the first topic that has one
            hard = [e for e in entries if e["topic"] == t and e["difficulty"] == "hard"]
            if hard:
                picked[i] = rng.choice(hard)
                break
    return picked


def topic_chapter_map(entries=None) -> dict[str, list[str]]:
    """Topic → the notebooks its questions link to (sorted file names), from the entries' links."""
    out: dict[str, set] = {t: set() for t in TOPICS}
    for e in entries if entries is not None else load_bank():
        nb = e["links"].get("notebook")
        if nb:
            name = nb.split("#")[0].split("/")[-1]
            out[e["topic"]].add(name)
    return {t: sorted(v) for t, v in out.items()}


# ============================================================================ text
def _wrap(text: str, indent: str = "  ", width: int = 92) -> str:
    return textwrap.fill(text, width=width, initial_indent=indent, subsequent_indent=indent,
                         break_on_hyphens=False, break_long_words=False)


def format_reference(r: dict) -> str:
    return f"{r['paper']} ({r['year']})"


def learner_notebook(link: str) -> str:
    """A bank link (``solutions/NN_x.ipynb#Heading``) as a learner should follow it: the learner
    copy in ``notebooks/`` (same headings, exercises left to do) when it exists."""
    path, sep, heading = link.partition("#")
    if path.startswith("solutions/"):
        learner = "notebooks/" + path[len("solutions/"):]
        if (ROOT / learner).exists():
            return learner + sep + heading
    return link


def _after_answer(e: dict, follow_ups: bool = True) -> list[str]:
    """Follow-ups (unless they were just asked), pitfalls, references and where to read more:
    shown after the answer."""
    lines = ["Follow-ups:"] + [_wrap("- " + f) for f in e["follow_ups"]] if follow_ups else []
    lines += ["Pitfalls:"] + [_wrap("- " + p) for p in e["pitfalls"]]
    lines.append(textwrap.fill("References: " + "; ".join(format_reference(r) for r in e["references"]),
                               width=92, subsequent_indent="  ", break_on_hyphens=False))
    where = [f"covers {', '.join(e['sources'])}"] if e["sources"] else []
    if e["links"].get("notebook"):
        where.append(f"notebook {learner_notebook(e['links']['notebook'])}")
    if e["links"].get("function"):
        where.append(f"code {e['links']['function']}")
    if where:
        lines.append(textwrap.fill("See: " + " · ".join(where), width=92, subsequent_indent="  ",
                                   break_on_hyphens=False))
    return lines


def key_point_lines(e: dict) -> list[str]:
    """The key points as a checklist (empty for a question without them)."""
    if not e.get("key_points"):
        return []
    return (["Key points — a good answer mentions each:"]
            + [textwrap.fill(k, width=92, initial_indent="  [ ] ", subsequent_indent="      ",
                             break_on_hyphens=False, break_long_words=False) for k in e["key_points"]])


def format_entry(e: dict, deep: bool = True) -> str:
    """A study-sheet block for one question."""
    lines = [f"## {e['id']} · {TOPICS[e['topic']]} · {e['difficulty']}", _wrap(e["question"], ""),
             "", "Answer:", _wrap(e["short_answer"])] + key_point_lines(e)
    if deep:
        lines += ["Deeper:", _wrap(e["deep_answer"])]
    return "\n".join(lines + _after_answer(e))


def study_sheet(entries: list[dict], title: str = "Study sheet") -> str:
    head = f"# {title} — {len(entries)} question{'s' if len(entries) != 1 else ''}"
    return "\n\n".join([head] + [format_entry(e) for e in entries]) + "\n"


def myth_sheet(myths: list[dict]) -> str:
    blocks = [f"# Myth vs fact — {len(myths)} claims from the source articles"]
    for m in myths:
        ev = m["evidence"]
        blocks.append("\n".join([
            f"## {m['id']} ({', '.join(m['source_ids'])})",
            _wrap("Myth: " + m["claim"], ""), _wrap("Fact: " + m["correction"], ""),
            _wrap(f"Evidence ({ev['kind']}): {ev['detail']}", "")]))
    return "\n\n".join(blocks) + "\n"


# ============================================================================ the quiz
def _ask(prompt: str, stdin, stdout) -> str | None:
    stdout.write(prompt)
    stdout.flush()
    line = stdin.readline()
    if line == "":  # end of input (Ctrl-D): stop cleanly
        return None
    return line.strip().lower()


def _plural(k: int, word: str) -> str:
    return f"{k} {word}{'' if k == 1 else 's'}"


def _match(k: int) -> str:
    return "matches" if k == 1 else "match"


def run_quiz(entries: list[dict], state_path, n: int = 5, stdin=None, stdout=None,
             mock: bool = False, seed: int | None = None, limit_s: float = 120.0,
             clock=None, drill: bool = False) -> dict:
    """The interactive loop.

    Normal mode asks the ``n`` most urgent questions (``schedule``). ``mock=True`` is a timed mock
    interview: ``n`` questions from ``n`` different topics (``pick_mock``), each answer timed from
    the question to the Enter key against ``limit_s`` seconds. After each answer come the deeper
    answer, follow-ups, pitfalls and references, then the question's key points (a checklist to
    grade yourself against) just before the 1–3 rating. Fewer matching questions (or topics, in a
    mock) than ``n`` are announced, not silently dropped.

    Progress is never lost:

    * a path the quiz could not save to (a directory, a missing or unwritable directory, not a
      regular file) raises ``QuizStateError`` before the first question;
    * the progress file is written atomically after every rating, and only then: quitting (``q``,
      end of input, Ctrl-C) before the first rating leaves it exactly as it was;
    * Ctrl-C stops the quiz like ``q``: what was rated is saved, no traceback;
    * a progress file that cannot be read as quiz progress is reported in one line and left
      untouched; the quiz starts afresh and, just before its first save, renames that file to
      ``<name>.corrupt-<timestamp>`` (never overwriting anything).

    ``drill=True`` asks the follow-ups too: after the short answer each follow-up is put to the
    learner in turn (answer aloud, Enter for the next), and only then come the deeper answer, which
    answers them, the pitfalls and the references.

    A mock's questions depend only on the filters and ``seed`` (random when None, and printed),
    so the same seed repeats the same mock.

    Returns ``{"asked": [ids], "ratings": {id: 1|2|3}, "seconds": {id: float},
    "interrupted": bool, "kept_aside": path of the renamed unreadable file or None}``, plus
    ``"seed"`` for a mock.
    """
    import random
    import time

    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    clock = clock or time.monotonic
    path = check_state_path(state_path)
    unreadable = None
    try:
        state = load_state(path)
    except UnreadableState as e:
        unreadable, state = e, fresh_state()
        stdout.write(f"Unreadable progress file, {e}: starting afresh; at your first rating it is "
                     f"kept as {path.name}.corrupt-<time>.\n")
    state["session"] += 1
    result = {"asked": [], "ratings": {}, "seconds": {}, "interrupted": False, "kept_aside": None}
    if mock:
        n_topics = len({e["topic"] for e in entries})
        seed = random.randrange(10**6) if seed is None else seed
        result["seed"] = seed
        picked = pick_mock(entries, k=min(n, n_topics), seed=seed) if entries else []
    else:
        picked = schedule(entries, state)[:n]
    if not picked:
        stdout.write("No questions match those filters.\n")
        return result
    if len(picked) < n:
        if mock:
            stdout.write(f"A mock interview asks one question per topic, and only "
                         f"{_plural(n_topics, 'topic')} {_match(n_topics)} these filters: "
                         f"{_plural(len(picked), 'question')}, not {n}.\n")
        else:
            stdout.write(f"Only {_plural(len(picked), 'question')} {_match(len(picked))} these filters: this "
                         f"session asks all of them, not {n}.\n")

    def save():
        if unreadable is not None and result["kept_aside"] is None and path.is_file():
            result["kept_aside"] = str(keep_aside(path))
            stdout.write(f"(The unreadable progress file is kept as {result['kept_aside']}.)\n")
        try:
            save_state(state, path)
        except OSError as e:
            raise QuizStateError(f"could not save progress to {path} ({e.strerror or e}); the "
                                 "last rating is not saved") from None

    head = "mock interview" if mock else "quiz"
    stdout.write(f"genlib {head} — session {state['session']}, {_plural(len(picked), 'question')}. "
                 "Answer aloud, then press Enter to compare. q (or Ctrl-C) quits.\n")
    if mock:
        stdout.write(f"Timed: aim for under {limit_s:.0f} s per answer. "
                     f"Seed {seed}: --seed {seed} asks the same questions again.\n")
    unsaved = False
    try:
        for i, e in enumerate(picked, 1):
            stdout.write(f"\n[{i}/{len(picked)}] {e['id']} · {TOPICS[e['topic']]} · {e['difficulty']}\n")
            stdout.write(_wrap(e["question"], "") + "\n")
            t0 = clock()
            if _ask("(Enter reveals the answer) ", stdin, stdout) in (None, "q"):
                break
            took = clock() - t0
            result["asked"].append(e["id"])
            result["seconds"][e["id"]] = took
            if mock:
                verdict = "within time" if took <= limit_s else f"over the {limit_s:.0f} s limit"
                stdout.write(f"You took {took:.0f} s ({verdict}).\n")
            stdout.write("\nAnswer:\n" + _wrap(e["short_answer"]) + "\n")
            if drill:
                stopped = False
                for k, f in enumerate(e["follow_ups"], 1):
                    stdout.write(f"\nFollow-up {k}/{len(e['follow_ups'])}:\n" + _wrap(f, "") + "\n")
                    if _ask("(answer aloud; Enter goes on) ", stdin, stdout) in (None, "q"):
                        stopped = True
                        break
                if stopped:
                    break
                stdout.write("\n")
            stdout.write("Deeper:\n" + _wrap(e["deep_answer"]) + "\n")
            stdout.write("\n".join(_after_answer(e, follow_ups=not drill)) + "\n")
            checklist = key_point_lines(e)
            if checklist:
                stdout.write("\n" + "\n".join(checklist) + "\n"
                             "  (3: you said all of them; 2: some; 1: few or none)\n")
            while True:
                got = _ask("Rate yourself — 1 missed it, 2 partly, 3 knew it (q quits): ", stdin, stdout)
                if got in (None, "q") or got in ("1", "2", "3"):
                    break
                stdout.write("Please type 1, 2 or 3.\n")
            if got in (None, "q"):
                break
            unsaved = True
            rate(state, e["id"], int(got))
            result["ratings"][e["id"]] = int(got)
            save()
            unsaved = False
    except KeyboardInterrupt:
        result["interrupted"] = True
        stdout.write("\nStopped (Ctrl-C).\n")
        if unsaved:  # interrupted between a rating and its save
            save()
    rated = result["ratings"]
    if rated:
        soon = [q for q in rated if state["items"][q]["due"] == state["session"] + 1]
        stdout.write(f"\nDone: {len(rated)} rated, progress saved in {path}"
                     + (f"; back next session: {', '.join(soon)}" if soon else "") + "\n")
    else:
        stdout.write("\nDone: nothing rated"
                     + (", progress file unchanged.\n" if path.exists() else ", nothing saved.\n"))
    if mock and result["seconds"]:
        slow = [q for q, t in result["seconds"].items() if t > limit_s]
        stdout.write(f"Time: {sum(result['seconds'].values()):.0f} s in all"
                     + (f"; over the limit: {', '.join(slow)}" if slow else "; all within the limit")
                     + "\n")
    return result


def progress_report(entries: list[dict], state: dict) -> str:
    """Where a learner stands, per topic: questions seen and unseen, due next session, and weak
    (last rating 1), then the weak questions by id. Reads the progress, never changes it."""
    nxt = state["session"] + 1
    rows, weak_ids = [], []
    for topic, name in TOPICS.items():
        mine = [e for e in entries if e["topic"] == topic]
        if not mine:
            continue
        items = [state["items"].get(e["id"]) for e in mine]
        seen = [it for it in items if it]
        due = sum(1 for it in items if it is None or it["due"] <= nxt)
        weak = [e["id"] for e, it in zip(mine, items) if it and it["ratings"] and it["ratings"][-1] == 1]
        weak_ids += weak
        rows.append((name, len(mine), len(seen), due, len(weak)))
    width = max([len("topic")] + [len(r[0]) for r in rows]) + 1
    lines = [f"Progress after {_plural(state['session'], 'session')}:",
             f"{'topic':{width}s}{'questions':>10s}{'seen':>6s}{'due':>5s}{'weak':>6s}"]
    lines += [f"{n:{width}s}{q:>10d}{s_:>6d}{d:>5d}{w:>6d}" for n, q, s_, d, w in rows]
    lines.append("(due: asked next session, unseen ones included; weak: last rated 1 'missed it')")
    lines.append("Weak questions: " + (", ".join(weak_ids) if weak_ids else "none"))
    return "\n".join(lines) + "\n"


DEFAULT_STATE = "~/.genlib-quiz.json"


def _add_quiz_arguments(p):
    p.add_argument("--topic", choices=list(TOPICS), help="only this topic")
    p.add_argument("--difficulty", choices=list(DIFFICULTIES), help="only this difficulty")
    p.add_argument("-n", type=int, default=None,
                   help="number of questions (default 5; all with --print)")
    p.add_argument("--print", dest="print_sheet", action="store_true",
                   help="print a study sheet instead of quizzing (no input, state untouched)")
    p.add_argument("--myths", action="store_true", help="with --print: the myth-vs-fact sheet")
    p.add_argument("--mock", action="store_true",
                   help="timed mock interview: n questions (default 5) from n different topics, "
                        "answers timed")
    p.add_argument("--seconds", type=float, default=None,
                   help="with --mock: time limit per answer (default 120)")
    p.add_argument("--seed", type=int, default=None,
                   help="with --mock: pick the questions with this seed (a mock prints its seed), "
                        "to repeat a mock")
    p.add_argument("--follow-ups", dest="drill", action="store_true",
                   help="after the short answer, ask each follow-up before the deeper answer")
    p.add_argument("--stats", action="store_true",
                   help="show your progress per topic (seen, due, weak questions); no input, "
                        "state untouched")
    p.add_argument("--state", default=DEFAULT_STATE, help=f"progress file (default {DEFAULT_STATE})")


def quiz_args_problem(args) -> str | None:
    """Why a combination of quiz options makes no sense (None when it does)."""
    if getattr(args, "drill", False) and args.print_sheet:
        return "--follow-ups asks the follow-ups interactively; --print already lists them"
    if getattr(args, "stats", False) and (args.print_sheet or args.mock or args.myths or args.n is not None
                                          or args.seconds is not None or getattr(args, "seed", None) is not None
                                          or getattr(args, "drill", False)):
        return "--stats shows your progress: only --topic, --difficulty and --state apply to it"
    if args.n is not None and args.n < 1:
        return f"-n must be at least 1, got {args.n}"
    if args.myths and not args.print_sheet:
        return "--myths prints the myth-vs-fact sheet: use it with --print"
    if args.myths and (args.topic or args.difficulty or args.n is not None):
        return "--myths prints every myth: --topic, --difficulty and -n do not apply to it"
    if args.mock and args.print_sheet:
        return "--mock is an interactive interview and --print a study sheet: choose one"
    if args.seconds is not None and not args.mock:
        return "--seconds sets the mock interview's time limit: use it with --mock"
    if getattr(args, "seed", None) is not None and not args.mock:
        return "--seed repeats a mock interview's questions: use it with --mock"
    if args.seconds is not None and args.seconds <= 0:
        return f"--seconds must be positive, got {args.seconds:g}"
    if args.mock and args.n is not None and args.n > len(TOPICS):
        return f"--mock asks one question per topic: -n can be at most {len(TOPICS)}"
    return None


def _run_quiz_cli(args, stdin=None, stdout=None) -> int:
    stdout = stdout or sys.stdout
    problem = quiz_args_problem(args)
    if problem:
        sys.stderr.write(f"genlib quiz: {problem}\n")
        return 2
    if args.print_sheet and args.myths:
        stdout.write(myth_sheet(load_myths()))
        return 0
    entries = load_bank(args.topic, args.difficulty)
    if getattr(args, "stats", False):
        try:
            path = Path(args.state).expanduser()
            state = load_state(path)
        except (QuizStateError, OSError) as e:
            sys.stderr.write(f"genlib quiz: cannot read {args.state}: {e}\n")
            return 2
        stdout.write(progress_report(entries, state))
        return 0
    if args.print_sheet:
        if args.n is not None:
            if args.n > len(entries):
                k = len(entries)
                sys.stderr.write(f"genlib quiz: only {_plural(k, 'question')} {_match(k)} these "
                                 f"filters; the sheet has all of them, not {args.n}\n")
            entries = entries[: args.n]
        parts = [TOPICS[args.topic] if args.topic else "all topics"]
        if args.difficulty:
            parts.append(args.difficulty)
        stdout.write(study_sheet(entries, "Study sheet: " + ", ".join(parts)))
        return 0
    try:
        result = run_quiz(entries, args.state, n=args.n or 5, stdin=stdin, stdout=stdout,
                          mock=args.mock, seed=getattr(args, "seed", None), drill=getattr(args, "drill", False),
                          limit_s=120.0 if args.seconds is None else args.seconds)
    except QuizStateError as e:
        stdout.flush()
        sys.stderr.write(f"genlib quiz: {e}\n")
        return 2
    except KeyboardInterrupt:  # outside the question loop (which handles it itself)
        stdout.write("\ngenlib quiz: stopped (Ctrl-C); nothing was changed since the last save.\n")
        return 130
    return 130 if result["interrupted"] else 0


CLI_COMMANDS = {
    "quiz": ("interview practice from the question bank (--print for a study sheet)",
             _add_quiz_arguments, _run_quiz_cli),
}


def verify_myth(myth: dict) -> str:
    """Re-run a myth's evidence; raise AssertionError if it fails. Returns a one-line summary.

    ``check``: a function here that re-derives or re-measures the fact. ``spotbug``: the buggy
    snippet must fail its check and the fix must pass. Citations must name papers with years.
    """
    ev = myth["evidence"]
    assert ev.get("kind") in EVIDENCE_KINDS, f"{myth['id']}: evidence kind {ev.get('kind')!r}"
    assert len(ev.get("detail", "")) >= 15, f"{myth['id']}: evidence needs a detail"
    if ev["kind"] == "measurement":
        assert ev.get("check") or ev.get("spotbug"), f"{myth['id']}: a measurement must be runnable"
    if ev["kind"] == "citation":
        assert ev.get("references"), f"{myth['id']}: a citation needs references"
    parts = []
    if ev.get("check"):
        parts.append(f"{ev['check'].rsplit('.', 1)[-1]} → {resolve_function(ev['check'])()}")
    if ev.get("spotbug"):
        from genlib.exercises import run_check
        from genlib.spotbugs import BY_SLUG

        bug, name = BY_SLUG[ev["spotbug"]], f"bugs.{ev['spotbug']}"
        bad, good = run_check(name, bug.buggy), run_check(name, bug.fixed)
        assert not bad.passed, f"{myth['id']}: {name} accepts the buggy snippet"
        assert good.passed, f"{myth['id']}: {name} rejects the fix:\n{good.text()}"
        parts.append(f"{name}: buggy rejected ({bad.failed_cases[0]}), fix accepted")
    if ev.get("references"):
        assert all(r.get("paper") and isinstance(r.get("year"), int) for r in ev["references"])
        parts.append("; ".join(format_reference(r) for r in ev["references"]))
    return " | ".join(parts) if parts else ev["detail"]


# ============================================================================ myth evidence
# Each function re-derives or re-measures one fact behind a myth correction and raises
# AssertionError if it does not hold; it returns the numbers it measured.

def evidence_no_epsilon() -> dict:
    """z = mu + σ (no ε) has zero variance: nothing is sampled."""
    import torch

    from genlib import spotbugs as sb

    mu, logvar = torch.zeros(5000, 1), torch.zeros(5000, 1)
    std_bug = sb.buggy_reparameterize(mu, logvar).std().item()
    std_fix = sb.fixed_reparameterize(mu, logvar).std().item()
    assert std_bug == 0.0 and abs(std_fix - 1) < 0.05
    return {"std_without_eps": std_bug, "std_with_eps": round(std_fix, 3)}


def evidence_relu_head_cannot_fit(steps: int = 300) -> dict:
    """Train the source's encoder head (ReLU on the mean and the log-variance) and a plain linear
    head to output the narrow posterior a good encoder needs, N(−1, 0.3²) in each of 2 latent dims.
    The ReLU head cannot get below the KL floor that mu ≥ 0 and variance ≥ 1 impose (≈ 9.4 nats per
    dimension); the linear head reaches it almost exactly."""
    import torch

    from genlib import spotbugs as sb

    target_mu, target_std = -1.0, 0.3
    # KL(N(0, 1) ‖ N(−1, 0.3²)) per dimension: the best the constrained head can do
    floor_per_dim = (math.log(target_std) + (1 + target_mu ** 2) / (2 * target_std ** 2) - 0.5)
    result = {}
    for name, cls in (("relu_head", sb.BuggyGaussianHead), ("linear_head", sb.FixedGaussianHead)):
        torch.manual_seed(0)
        head = cls(8, 2)
        h = torch.randn(256, 8)
        opt = torch.optim.Adam(head.parameters(), lr=0.05)
        for _ in range(steps):
            mu, logvar = head(h)
            var = logvar.exp()
            kl = (math.log(target_std) - 0.5 * logvar
                  + (var + (mu - target_mu) ** 2) / (2 * target_std ** 2) - 0.5).sum(1).mean()
            opt.zero_grad()
            kl.backward()
            opt.step()
        result[name] = round(kl.item(), 3)
    floor = 2 * floor_per_dim
    assert result["relu_head"] >= floor - 1e-3, result
    assert result["linear_head"] < 0.05, result
    result["floor_for_mu_ge_0_var_ge_1"] = round(floor, 3)
    return result


def evidence_gradient_of_d_loss() -> dict:
    """d/dl of −log σ(l) is σ(l) − 1 and of −log(1 − σ(l)) is σ(l): autograd agrees, the article's
    ∇L_D = x/D(x) − G(z)/(1 − D(G(z))) does not even have the right units."""
    import torch
    import torch.nn.functional as F

    l_real = torch.randn(64, requires_grad=True)
    l_fake = torch.randn(64, requires_grad=True)
    (F.softplus(-l_real).sum() + F.softplus(l_fake).sum()).backward()
    err = max((l_real.grad - (torch.sigmoid(l_real) - 1)).abs().max().item(),
              (l_fake.grad - torch.sigmoid(l_fake)).abs().max().item())
    assert err < 1e-6
    return {"max_error_vs_closed_form": err}


def evidence_optimal_discriminator() -> dict:
    """For fixed G the minimax V(D, G) is maximised by D*(x) = p(x) / (p(x) + q(x)) (pointwise)."""
    import numpy as np

    p, q = 0.7, 0.2
    d = np.linspace(1e-4, 1 - 1e-4, 200001)
    v = p * np.log(d) + q * np.log(1 - d)
    best = d[np.argmax(v)]
    assert abs(best - p / (p + q)) < 1e-3
    return {"argmax_D": round(float(best), 4), "p_over_p_plus_q": round(p / (p + q), 4)}


def evidence_kl_closed_form() -> dict:
    """The VAE's KL term has a closed form that a Monte-Carlo estimate reproduces."""
    import torch

    from genlib.losses import gaussian_kl

    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.tensor([[0.8, -0.5]]), torch.tensor([[-1.0, 0.4]])
    z = mu + (0.5 * logvar).exp() * torch.randn(200000, 2, generator=g)
    log_q = (-0.5 * ((z - mu) ** 2 / logvar.exp() + logvar + math.log(2 * math.pi))).sum(1)
    log_p = (-0.5 * (z ** 2 + math.log(2 * math.pi))).sum(1)
    mc, exact = (log_q - log_p).mean().item(), gaussian_kl(mu, logvar).item()
    assert abs(mc - exact) < 0.02
    return {"monte_carlo": round(mc, 3), "closed_form": round(exact, 3)}


def evidence_psnr_needs_pairs() -> dict:
    """PSNR compares an image with *its* reference: two sets from the same distribution (real test
    digits vs real train digits, paired arbitrarily) score as badly as noise-free pairs score well,
    so it cannot judge unconditional samples."""
    import torch

    from genlib.data import digits

    a, _ = digits("train", value_range=(0, 1))
    b, _ = digits("test", value_range=(0, 1))

    def psnr(x, y):
        mse = (x - y).pow(2).flatten(1).mean(1)
        return (10 * torch.log10(1.0 / mse)).mean().item()

    same_dist = psnr(a[: len(b)], b)          # real vs real, unpaired
    paired = psnr(b, (b + 0.02 * torch.randn_like(b)).clamp(0, 1))
    assert same_dist < 15 < 30 < paired
    return {"psnr_real_vs_real_unpaired_db": round(same_dist, 1), "psnr_paired_db": round(paired, 1)}


def evidence_is_ignores_diversity() -> dict:
    """Inception Score is blind to diversity *within* a class: one image per class gets the
    maximum IS = number of classes, so IS cannot act as a diversity regulariser."""
    import numpy as np

    k = 10
    probs = np.eye(k)[np.repeat(np.arange(k), 100)]  # 100 copies of one confident image per class
    py = probs.mean(0)
    kl = (probs * (np.log(probs + 1e-12) - np.log(py + 1e-12))).sum(1)
    score = float(np.exp(kl.mean()))
    assert abs(score - k) < 1e-6
    return {"inception_score_of_10_distinct_images": round(score, 3), "max_possible": k}


def evidence_bf16_updates_vanish() -> dict:
    """Mixed precision is low-precision floats with float32 master weights: in bf16 a 1e-4 update
    to a weight of 1.0 rounds away; in float32 it is kept."""
    import torch

    w16 = torch.tensor(1.0, dtype=torch.bfloat16)
    w32 = torch.tensor(1.0)
    assert (w16 - 1e-4).item() == 1.0 and (w32 - 1e-4).item() != 1.0
    return {"bf16_after_update": (w16 - 1e-4).item(), "fp32_after_update": (w32 - 1e-4).item()}


def cpu_seconds(fn, repeats: int = 5) -> float:
    """Best-of-``repeats`` CPU time of ``fn()`` on one thread, in seconds.

    CPU time of this process, not wall time: on a shared machine wall time also counts the time
    other programs held the cores, while CPU time counts only our own work. One intra-op thread
    keeps all the work on this thread, so the CPU time is the compute itself.
    """
    import time

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            fn()  # warm-up: first calls pay for allocation
            best = float("inf")
            for _ in range(repeats):
                t = time.process_time()
                fn()
                best = min(best, time.process_time() - t)
    finally:
        torch.set_num_threads(threads)
    return best


def evidence_speed_claims(n: int = 200) -> dict:
    """What the source's "parallel processing, end-to-end models and attention" hides, measured on
    the workbook's shipped models with ``genlib.speed`` (chapter 09; ``genlib bench speed`` has the
    full table). Every timing here is CPU time of this process (``clock="process"``) with one
    intra-op thread pinned for the whole measurement, so that other programs on a shared machine do
    not distort the ratios:

    * fewer network evaluations: the reflowed flow model at 1 step vs the flow model at 32 Euler
      steps on n digits — time ratio and digits-FID of both (same n, held-out test digits);
    * a KV cache on chapter 08's token GPT (64 tokens, batch 16): identical tokens from the same
      random numbers, and the time saved by not recomputing the prefix;
    * parallel decoding: MaskGIT at 8 steps vs the cached GPT's 64 sequential steps at batch 1;
    * exact attention over 4× the tokens costs far more than 4× (attention is a cost).
    """
    import torch
    import torch.nn.functional as F

    from genlib import speed
    from genlib.diffusion import digits_eval, load_pretrained
    from genlib.flow import sample_euler

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fl, re = load_pretrained("digits_flow"), load_pretrained("digits_reflow")
        z = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(5))
        y = torch.arange(n) % 10
        t_one = speed.time_fn(lambda: sample_euler(re, z, 1, y), repeats=3, clock="process")
        t_32 = speed.time_fn(lambda: sample_euler(fl, z, 32, y), repeats=2, clock="process")
        with torch.inference_mode():
            fid_one = digits_eval(sample_euler(re, z, 1, y), y)["fid"]
            fid_32 = digits_eval(sample_euler(fl, z, 32, y), y)["fid"]

        tm = speed.token_models(lengths=(64,))
        # one intra-op thread is pinned above, so the process clock measures our work alone here
        # (with more threads it would sum their CPU time)
        kv = speed.kv_cache_rows(tm, (64,), batch=16, repeats=2, progress=False, clock="process")[0]
        dec = speed.decoding_rows(tm, (1,), (8,), repeats=3, no_cache_max_batch=0, progress=False,
                                  clock="process")
        ar1 = next(r for r in dec if r["method"] == "AR, KV cache")["timing"]["median_ms"]
        mg1 = next(r for r in dec if r["method"] == "MaskGIT 8 steps")["timing"]["median_ms"]

        q_small, q_large = torch.randn(1, 4, 256, 64), torch.randn(1, 4, 1024, 64)
        att_small = speed.time_fn(lambda: F.scaled_dot_product_attention(q_small, q_small, q_small),
                                  repeats=5, clock="process")["median_ms"]
        att_large = speed.time_fn(lambda: F.scaled_dot_product_attention(q_large, q_large, q_large),
                                  repeats=5, clock="process")["median_ms"]
    finally:
        torch.set_num_threads(threads)
    one_pass = t_32["median_ms"] / t_one["median_ms"]
    assert one_pass > 8, f"1 NFE should cost far less than 32 NFE (ideal 32×), measured {one_pass:.1f}×"
    assert fid_one < 3 * fid_32 + 0.3, (fid_one, fid_32)
    assert kv["identical"], "the KV cache changed the sampled tokens"
    assert kv["speedup"] > 2, f"KV cache speed-up at 64 tokens, batch 16: {kv['speedup']:.1f}×"
    assert ar1 / mg1 > 1.5, (ar1, mg1)
    assert att_large / att_small > 6, (att_small, att_large)
    return {"reflow_1_nfe_vs_flow_32_nfe_speedup": round(one_pass, 1),
            "digits_fid_reflow_1_vs_flow_32": (round(fid_one, 3), round(fid_32, 3)),
            "kv_cache_speedup_64_tokens_batch_16": round(kv["speedup"], 1),
            "kv_cache_tokens_identical": kv["identical"],
            "maskgit_8_vs_cached_ar_batch_1_speedup": round(ar1 / mg1, 1),
            "attention_4x_tokens_cost": round(att_large / att_small, 1)}


def evidence_cgan_trained_from_scratch(steps: int = 250, seed: int = 0) -> dict:
    """A conditional GAN (Mirza & Osindero 2014) trained from scratch, nothing pretrained: G and D
    both receive the one-hot label, and on two Gaussian blobs G learns to put each label on its own
    blob. For contrast the same G with a D that never sees the label: D cannot punish a wrong label,
    so whether G's labels line up with the blobs is left to chance (reported, not asserted)."""
    import torch
    import torch.nn.functional as F

    def label_accuracy(label_to_d: bool) -> float:
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        centers = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
        G = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
        D = torch.nn.Sequential(torch.nn.Linear(4 if label_to_d else 2, 32), torch.nn.LeakyReLU(0.2),
                                torch.nn.Linear(32, 1))
        opt_g = torch.optim.Adam(G.parameters(), 2e-3, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(D.parameters(), 2e-3, betas=(0.5, 0.999))

        def d_in(x, onehot):
            return torch.cat([x, onehot], 1) if label_to_d else x

        for _ in range(steps):
            y = torch.randint(0, 2, (128,), generator=g)
            onehot = F.one_hot(y, 2).float()
            real = centers[y] + 0.2 * torch.randn(128, 2, generator=g)
            fake = G(torch.cat([torch.randn(128, 2, generator=g), onehot], 1))
            ld = F.softplus(-D(d_in(real, onehot))).mean() + F.softplus(D(d_in(fake.detach(), onehot))).mean()
            opt_d.zero_grad()
            ld.backward()
            opt_d.step()
            lg = F.softplus(-D(d_in(fake, onehot))).mean()
            opt_g.zero_grad()
            lg.backward()
            opt_g.step()
        with torch.no_grad():
            y = torch.randint(0, 2, (2000,), generator=g)
            x = G(torch.cat([torch.randn(2000, 2, generator=g), F.one_hot(y, 2).float()], 1))
            return (torch.cdist(x, centers).argmin(1) == y).float().mean().item()

    both, g_only = label_accuracy(True), label_accuracy(False)
    assert both > 0.9, both
    return {"label_accuracy_label_in_G_and_D": round(both, 3),
            "label_accuracy_label_in_G_only": round(g_only, 3)}


def evidence_classifier_does_not_generate() -> dict:
    """A classifier's argmax on noise is a class index per input: shape (N,), not (N, C, H, W)."""
    import torch

    clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
    out = clf(torch.randn(4, 3, 8, 8)).argmax(1)
    assert out.shape == (4,) and out.dtype == torch.int64
    return {"output_shape": list(out.shape), "dtype": str(out.dtype)}


def evidence_attention_is_not_a_classifier() -> dict:
    """Self-attention mixes positions with weights that sum to 1 over positions (softmax of dot
    products: SAGAN's f(x)ᵀg(x) unscaled, the Transformer's QKᵀ/√d, which this layer uses), and it is
    permutation-equivariant; a CNN classifier applied to noise is neither."""
    import torch

    torch.manual_seed(0)
    attn = torch.nn.MultiheadAttention(16, 2, batch_first=True)
    x = torch.randn(1, 10, 16)
    y, w = attn(x, x, x)
    perm = torch.randperm(10)
    y_perm, _ = attn(x[:, perm], x[:, perm], x[:, perm])
    assert torch.allclose(w.sum(-1), torch.ones(1, 10), atol=1e-5)
    assert torch.allclose(y[:, perm], y_perm, atol=1e-5)
    return {"rows_sum_to_one": True, "permutation_equivariant": True}


def evidence_bce_needs_probabilities() -> dict:
    """BCE is a Bernoulli log-likelihood: defined for predictions in [0, 1] only. PyTorch refuses a
    tanh output below 0; the sigmoid output of the same logits is accepted."""
    import torch
    import torch.nn.functional as F

    logits, target = torch.tensor([-1.0, 2.0]), torch.tensor([0.0, 1.0])
    try:
        F.binary_cross_entropy(torch.tanh(logits), target)
        refused = False
    except (RuntimeError, ValueError):
        refused = True
    ok = F.binary_cross_entropy(torch.sigmoid(logits), target).item()
    assert refused and math.isfinite(ok)
    return {"tanh_output_refused": refused, "sigmoid_output_loss": round(ok, 4)}



def evidence_clipped_bce_zero_gradient() -> dict:
    """The source's Keras discriminator (linear Dense(1) + probability BCE): Keras clips the
    prediction to [ε, 1 − ε], so raw logits outside that interval give a finite loss and a gradient
    of exactly zero — no NaN, just a D that silently stops learning. PyTorch's BCELoss refuses such
    inputs; the from-logits loss gives the gradient σ(l) − y."""
    import torch
    import torch.nn.functional as F

    eps = 1e-7  # Keras's default epsilon
    logits = torch.tensor([-2.0, 3.0], requires_grad=True)
    target = torch.tensor([1.0, 0.0])
    p = logits.clamp(eps, 1 - eps)  # what Keras does to a prediction that is not a sigmoid output
    clipped = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    clipped.backward()
    grad_clipped = logits.grad.clone()
    try:
        F.binary_cross_entropy(logits.detach(), target)
        refused = False
    except (RuntimeError, ValueError):
        refused = True
    logits.grad = None
    F.binary_cross_entropy_with_logits(logits, target).backward()
    grad_logits = logits.grad.clone()
    expected = (torch.sigmoid(logits.detach()) - target) / 2
    assert math.isfinite(clipped.item()) and torch.equal(grad_clipped, torch.zeros(2))
    assert refused and torch.allclose(grad_logits, expected, atol=1e-6)
    return {"clipped_loss": round(clipped.item(), 2), "clipped_grad": grad_clipped.tolist(),
            "pytorch_bceloss_refuses": refused,
            "from_logits_grad": [round(g, 4) for g in grad_logits.tolist()]}
