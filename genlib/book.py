"""The workbook as a static website: ``python -m genlib.book`` (or ``make book``).

Reads the *executed* ``solutions/NN_*.ipynb`` (the learner copies have no outputs, so no figures),
the chapter table of ``README.md`` and the interview bank (``genlib/bank/*.json``), writes a MyST
source tree into ``<out>/src`` and builds it with Sphinx + MyST-NB (the engine of Jupyter Book 1)
into ``<out>/html``. Nothing is executed again and nothing is fetched: MathJax 3 is copied from the
``sphinx-mathjax-offline`` package into the book, and the theme ships its own fonts and icons.

What the build adds to the notebooks (in its copies only, never in ``solutions/``):

* solution code cells are folded behind "Show code cell source" (an HTML ``<details>``, no JS), so
  a reader can try first;
* question ids (``gan-2``, ``myth-4``) become links to their bank entry, and "chapter NN" becomes a
  link to that chapter when it exists;
* every heading gets a label, so bank entries link to the exact section they cite.

Pages are generated from the files present: a chapter added to ``solutions/`` appears in the table
of contents with no hand-editing; a bank link to a chapter that is not there yet reads
"coming in chapter NN".
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "# BEGIN SOLUTION"
MD_BEGIN, MD_END = "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"
CHAPTER_RE = re.compile(r"^(\d\d)_\w+$")
QID_RE = re.compile(r"\b(?:basics|gan|training|modes|vae|metrics|cond|speed|diffusion|myth)-\d+\b")
# Markdown that must not be rewritten: code, math, links, raw HTML, headings.
PROTECTED = re.compile(
    r"```.*?```|~~~.*?~~~|`[^`\n]+`|\$\$.*?\$\$|\$[^$\n]+\$|!?\[[^\]\n]*\]\([^)\n]*\)|<[^>\n]+>"
    r"|^#{1,6}\s[^\n]*$", re.S | re.M)
CHAPTER_MENTION = re.compile(r"\b([Cc]hapter) (\d\d)\b")
MATHJAX_PARTS = ("tex-svg.js", "input", "ui", "a11y", "sre")  # SVG output: no web fonts needed


# ============================================================================ inputs
def chapters(src: Path) -> list[dict]:
    """The chapters present in ``src``: number, stem, title (first heading), path."""
    out = []
    for path in sorted(src.glob("*.ipynb")):
        m = CHAPTER_RE.match(path.stem)
        if not m:
            continue
        nb = nbformat.read(str(path), as_version=4)
        title = next((h for c in nb.cells if c.cell_type == "markdown"
                      for h in re.findall(r"^#\s+(.+)$", c.source, flags=re.M)), path.stem)
        out.append({"num": m.group(1), "stem": path.stem, "title": title.strip(), "path": path})
    return out


def readme_parts(readme: Path) -> tuple[str, list[list[str]], list[str]]:
    """README's intro paragraphs, its chapter table (rows of cells) and that table's header."""
    text = readme.read_text(encoding="utf-8")
    intro = text.split("\n## ", 1)[0].split("\n", 1)[1].strip()
    table = text[text.index("<!-- chapters:start -->"):text.index("<!-- chapters:end -->")]
    lines = [ln for ln in table.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    header, rows = cells[0], [r for r in cells[2:] if r and r[0]]
    return intro, rows, header


def bank_entries() -> tuple[dict[str, list[dict]], list[dict]]:
    from genlib import interview

    by_topic = {t: interview.load_bank(topic=t) for t in interview.TOPICS}
    return {t: es for t, es in by_topic.items() if es}, interview.load_myths()


# ============================================================================ markdown helpers
def escape(text: str) -> str:
    """Bank text → Markdown that renders as written (inline code spans are kept)."""
    parts = re.split(r"(`[^`\n]+`)", text)
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"([\\*_\[\]<>$|{}#])", r"\\\1", parts[i])
    return "".join(parts)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", re.sub(r"[`*_]", "", text).lower()).strip("-")[:60]


class Linker:
    """Knows which chapters, sections and bank entries exist, and writes links to them."""

    def __init__(self, chs: list[dict], qids: set[str]):
        self.chapters = {c["num"]: c for c in chs}
        self.by_stem = {c["stem"]: c for c in chs}
        self.qids = qids
        self.sections: dict[tuple[str, str], str] = {}  # (stem, heading text) → label

    def section_label(self, stem: str, heading: str) -> str:
        key = (stem, heading.strip())
        if key not in self.sections:
            base = f"{stem}--{slug(heading)}"
            label, n = base, 1
            while label in self.sections.values():
                n += 1
                label = f"{base}-{n}"
            self.sections[key] = label
        return self.sections[key]

    def chapter_link(self, num: str, text: str | None = None) -> str:
        ch = self.chapters.get(num)
        if ch is None:
            return f"coming in chapter {num}"
        return f"[{text or 'chapter ' + num}](#chapter-{num})"

    def notebook_link(self, ref: str | None) -> str | None:
        """``solutions/NN_x.ipynb#Heading`` → a link to that section (or plain text if absent)."""
        if not ref:
            return None
        path, _, heading = ref.partition("#")
        stem = Path(path).stem
        m = CHAPTER_RE.match(stem)
        if stem not in self.by_stem:
            return f"coming in chapter {m.group(1)}" if m else escape(ref)
        num = m.group(1)
        if heading and (stem, heading.strip()) in self.sections:
            return f"[chapter {num}, § {escape(heading.strip())}](#{self.sections[(stem, heading.strip())]})"
        return self.chapter_link(num)

    def rewrite(self, md: str, own_num: str | None = None) -> str:
        """Link question ids and "chapter NN" mentions in a chapter's Markdown."""
        def plain(text: str) -> str:
            text = QID_RE.sub(lambda m: f"[{m.group(0)}](#{m.group(0)})"
                              if m.group(0) in self.qids else m.group(0), text)
            return CHAPTER_MENTION.sub(
                lambda m: m.group(0) if m.group(2) == own_num or m.group(2) not in self.chapters
                else f"[{m.group(0)}](#chapter-{m.group(2)})", text)

        out, pos = [], 0
        for m in PROTECTED.finditer(md):
            out.append(plain(md[pos:m.start()]))
            tok = m.group(0)
            if tok.startswith("`") and not tok.startswith("``") and tok.strip("`") in self.qids:
                tok = f"[{tok}](#{tok.strip('`')})"
            out.append(tok)
            pos = m.end()
        out.append(plain(md[pos:]))
        return "".join(out)


# ============================================================================ pages
def headings(md: str):
    """(line, level, text) for each line of ``md``; level 0 unless an ATX heading outside code."""
    fence = None
    for line in md.split("\n"):
        m = re.match(r"^\s{0,3}(```+|~~~+)", line)
        if m and (fence is None or m.group(1)[0] == fence[0]):
            fence = None if fence else m.group(1)
        h = None if fence or m else re.match(r"^(#{1,6})\s+(.+)$", line)
        yield (line, len(h.group(1)), h.group(2).strip()) if h else (line, 0, "")


def stage_chapter(ch: dict, dst: Path, linker: Linker) -> int:
    """Copy one notebook for the book; returns the number of figures (image outputs) in it."""
    nb = nbformat.read(str(ch["path"]), as_version=4)
    figures = 0
    first_heading, used = True, set()
    for cell in nb.cells:
        if cell.cell_type == "code":
            if BEGIN in cell.source:
                tags = cell.metadata.setdefault("tags", [])
                if "hide-input" not in tags:
                    tags.append("hide-input")
            figures += sum("image/png" in o.get("data", {}) for o in cell.get("outputs", []))
        elif cell.cell_type == "markdown":
            src = linker.rewrite(cell.source, own_num=ch["num"])
            src = src.replace(MD_BEGIN, "<details><summary>Show the answer</summary>\n\n")
            src = src.replace(MD_END, "\n\n</details>")
            lines = []
            for line, level, text in headings(src):
                if level == 1 and first_heading:
                    lines += ["", f"(chapter-{ch['num']})=", ""]
                    first_heading = False
                elif level:
                    label, k = linker.section_label(ch["stem"], text), 1
                    while label in used:  # the same heading twice: the bank links the first
                        k += 1
                        label = f"{linker.section_label(ch['stem'], text)}-{k}"
                    used.add(label)
                    lines += ["", f"({label})=", ""]
                lines.append(line)
            cell.source = "\n".join(lines).lstrip("\n")
    nbformat.write(nb, str(dst / f"{ch['stem']}.ipynb"))
    return figures


def collect_sections(chs: list[dict], linker: Linker) -> None:
    for ch in chs:
        nb = nbformat.read(str(ch["path"]), as_version=4)
        first = True
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                for _, level, text in headings(cell.source):
                    if level == 1 and first:
                        first = False
                    elif level:
                        linker.section_label(ch["stem"], text)


def index_page(chs: list[dict], readme: Path, linker: Linker, topics: dict) -> str:
    intro, rows, header = readme_parts(readme)
    lines = ["# genlib — a workbook on image generation", "", intro, "",
             "This is the book of the workbook: every chapter with the outputs and figures of its "
             "executed solution notebook. Solution code is folded (\"Show code cell source\") so "
             "you can try first; to run the chapters and do the exercises, clone the repository "
             "and run `make lab`.", "", "## Chapters", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    listed = set()
    for row in rows:
        num = row[0]
        listed.add(num)
        stem = row[1].strip("`")
        cell = (f"[`{stem}`](#chapter-{num})" if stem in linker.by_stem
                else f"`{stem}` (coming in chapter {num})")
        lines.append("| " + " | ".join([num, cell] + row[2:]) + " |")
    extra = [c for c in chs if c["num"] not in listed]
    if extra:
        lines += ["", "Also in this build (not in the README's table yet): " + "; ".join(
            f"[{escape(c['title'])}](#chapter-{c['num']})" for c in extra) + "."]
    lines += ["", "## Interview bank", "",
              f"[The question bank](bank/index.md): {sum(len(v) for v in topics.values())} "
              "questions with short and deep answers, follow-ups and pitfalls, each linked to the "
              "chapter section that demonstrates it, and the [myths vs facts](bank/myths.md).", "",
              "## Licence", "",
              "The text of this book and of the notebooks is licensed under CC BY 4.0 "
              "(`LICENSE-CC-BY`); the code under MIT (`LICENSE`).", "",
              "```{toctree}", ":caption: Chapters", ":hidden:", ""]
    lines += [f"chapters/{c['stem']}" for c in chs]
    lines += ["```", "", "```{toctree}", ":caption: Interview bank", ":hidden:", "",
              "bank/index"] + [f"bank/{t}" for t in topics] + ["bank/myths", "```", ""]
    return "\n".join(lines)


def bank_index(topics: dict, myths: list[dict]) -> str:
    from genlib.interview import TOPICS

    lines = ["# The interview question bank", "",
             "Generated from `genlib/bank/*.json` (the same bank that `genlib quiz` asks). Each "
             "entry has a short answer to say aloud, a deeper answer for the follow-up, pitfalls, "
             "references and a link to the chapter section that demonstrates it.", ""]
    for topic, entries in topics.items():
        lines += [f"## [{TOPICS[topic]}]({topic}.md)", ""]
        lines += [f"- [{e['id']}](#{e['id']}) · {escape(e['question'])} *({e['difficulty']})*"
                  for e in entries]
        lines.append("")
    lines += ["## [Myths vs facts](myths.md)", "",
              f"{len(myths)} wrong claims from the source articles, each with its correction and "
              "the evidence (a derivation, a measurement or a citation).", ""]
    return "\n".join(lines)


def _refs(refs: list[dict]) -> str:
    return "; ".join(f"{escape(r['paper'])} ({r['year']})" for r in refs)


def topic_page(topic: str, entries: list[dict], linker: Linker, myth_of: dict) -> str:
    from genlib.interview import TOPICS

    lines = [f"# {TOPICS[topic]}", "",
             f"{len(entries)} questions of topic `{topic}` "
             f"(`genlib quiz --topic {topic}` asks them). [All topics](index.md).", ""]
    for e in entries:
        lines += [f"({e['id']})=", f"## {e['id']} · {escape(e['question'])}", "",
                  f"*{e['difficulty']}* · sources: {', '.join(e['sources']) or '—'}", "",
                  f"**Short answer.** {escape(e['short_answer'])}", "",
                  f"**Deeper.** {escape(e['deep_answer'])}", "", "**Follow-ups.**", ""]
        lines += [f"- {escape(s)}" for s in e["follow_ups"]]
        lines += ["", "**Pitfalls.**", ""] + [f"- {escape(s)}" for s in e["pitfalls"]]
        lines += ["", f"**References.** {_refs(e['references'])}", ""]
        where = [x for x in (linker.notebook_link(e["links"]["notebook"]),
                             e["links"]["function"] and f"`{e['links']['function']}`") if x]
        if where:
            lines += [f"**In the workbook.** {' · '.join(where)}", ""]
        if myth_of.get(e["id"]):
            lines += ["**Myths about this.** " + ", ".join(
                f"[{m}](#{m})" for m in myth_of[e["id"]]), ""]
    return "\n".join(lines)


def myths_page(myths: list[dict], qids: set[str]) -> str:
    lines = ["# Myths vs facts", "",
             "Claims of the source articles that are wrong, with the correction and its evidence. "
             "Items whose evidence is a measurement or a derivation are re-run by genlib's tests "
             "(`genlib quiz --print --myths` prints this list). [All topics](index.md).", ""]
    for m in myths:
        ev = m["evidence"]
        lines += [f"({m['id']})=", f"## {m['id']} · {escape(m['claim'])}", "",
                  f"**Correction.** {escape(m['correction'])}", "",
                  f"**Evidence ({ev['kind']}).** {escape(ev['detail'])}", ""]
        if ev.get("references"):
            lines += [f"**References.** {_refs(ev['references'])}", ""]
        if ev.get("check"):
            lines += [f"**Re-checked by** `{ev['check']}`.", ""]
        q = [f"[{i}](#{i})" if i in qids else i for i in m.get("question_ids", [])]
        lines += [f"**Questions.** {', '.join(q) or '—'} · sources: {', '.join(m['source_ids'])}", ""]
    return "\n".join(lines)


CONF = '''\
# Generated by genlib.book: edit genlib/book.py, not this file.
project = "genlib"
author = "the genlib authors"
copyright = "the genlib authors. Text: CC BY 4.0; code: MIT"
extensions = ["myst_nb"]
exclude_patterns = ["_build"]
nb_execution_mode = "off"          # the outputs are the executed solutions'; never re-run
nb_merge_streams = True
nb_ipywidgets_js = {{}}             # no widget scripts from a CDN
myst_enable_extensions = ["dollarmath", "amsmath"]
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type"]
html_theme = "sphinx_book_theme"
html_title = "genlib — a workbook on image generation"
html_static_path = ["_static"]
html_last_updated_fmt = None
html_copy_source = False
html_show_sourcelink = False
html_theme_options = {{"home_page_in_toc": True, "show_toc_level": 2,
                      "use_download_button": False, "use_fullscreen_button": False}}
# MathJax 3 from the book's own _static (copied from the sphinx-mathjax-offline wheel): no CDN.
mathjax_path = "mathjax/tex-svg.js"
mathjax3_config = {{"svg": {{"fontCache": "global"}}}}
'''


def mathjax_dir() -> Path:
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("MathJax is missing: pip install -e '.[book]' (it brings "
                         "sphinx-mathjax-offline, which ships MathJax 3 for offline use)")
    return Path(list(spec.submodule_search_locations)[0]) / "static" / "mathjax"


# ============================================================================ build
def stage(out: Path, src: Path = ROOT / "solutions", readme: Path = ROOT / "README.md") -> dict:
    """Write the MyST source tree of the book into ``out``; returns what it holds."""
    if out.exists():
        shutil.rmtree(out)
    (out / "chapters").mkdir(parents=True)
    (out / "bank").mkdir()
    chs = chapters(src)
    topics, myths = bank_entries()
    qids = {e["id"] for es in topics.values() for e in es} | {m["id"] for m in myths}
    linker = Linker(chs, qids)
    collect_sections(chs, linker)
    figures = {c["stem"]: stage_chapter(c, out / "chapters", linker) for c in chs}
    myth_of: dict[str, list[str]] = {}
    for m in myths:
        for q in m.get("question_ids", []):
            myth_of.setdefault(q, []).append(m["id"])
    (out / "index.md").write_text(index_page(chs, readme, linker, topics), encoding="utf-8")
    (out / "bank" / "index.md").write_text(bank_index(topics, myths), encoding="utf-8")
    for t, es in topics.items():
        (out / "bank" / f"{t}.md").write_text(topic_page(t, es, linker, myth_of), encoding="utf-8")
    (out / "bank" / "myths.md").write_text(myths_page(myths, qids), encoding="utf-8")
    (out / "conf.py").write_text(CONF.format(), encoding="utf-8")
    mj, static = mathjax_dir(), out / "_static" / "mathjax"
    static.mkdir(parents=True)
    for part in MATHJAX_PARTS:
        (shutil.copytree if (mj / part).is_dir() else shutil.copy2)(mj / part, static / part)
    return {"chapters": chs, "figures": figures, "topics": list(topics), "myths": len(myths)}


def build(out: Path = ROOT / "build" / "book", src: Path = ROOT / "solutions",
          readme: Path = ROOT / "README.md", quiet: bool = True) -> dict:
    """Stage and build the book; returns the staging summary plus ``html`` and ``warnings``."""
    from sphinx.cmd.build import build_main

    out = Path(out)
    info = stage(out / "src", src, readme)
    html, warn_file = out / "html", out / "warnings.txt"
    args = ["-b", "html", "-E", "-d", str(out / "doctrees"), "-w", str(warn_file),
            str(out / "src"), str(html)]
    rc = build_main((["-q"] if quiet else []) + args)
    if rc != 0:
        raise SystemExit(f"sphinx failed (exit {rc}); see {warn_file}")
    info.update(html=html, warnings=warn_file.read_text(encoding="utf-8").splitlines())
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m genlib.book", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "book",
                    help="output folder (default build/book; the site is OUT/html)")
    ap.add_argument("--src", type=Path, default=ROOT / "solutions",
                    help="folder of executed notebooks (default solutions/)")
    ap.add_argument("-v", "--verbose", action="store_true", help="show Sphinx's progress")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    info = build(args.out, args.src, quiet=not args.verbose)
    for w in info["warnings"]:
        print(w, file=sys.stderr)
    print(f"book: {len(info['chapters'])} chapters, {len(info['topics'])} bank topics, "
          f"{info['myths']} myths, {len(info['warnings'])} warnings, "
          f"{time.perf_counter() - t0:.1f} s → open {info['html'] / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
