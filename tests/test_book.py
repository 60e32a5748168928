"""The book (``make book``): built from solutions/ offline, every chapter with its figures, no broken
link, bank pages linked both ways, and — in a real headless Chromium — math typeset and a figure seen."""
import html
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import numpy as np
import pytest

from genlib import book, interview

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


class Page(HTMLParser):
    """The ids, links, images, scripts and text of one HTML file."""

    def __init__(self, path: Path):
        super().__init__(convert_charrefs=True)
        self.path, self.ids, self.links, self.imgs, self.scripts, self.styles = path, set(), [], [], [], []
        self.title, self._in_title, self.h1, self._in_h1, self.text = "", False, [], 0, []
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        elif tag == "img":
            self.imgs.append(a.get("src", ""))
        elif tag == "script" and a.get("src"):
            self.scripts.append(a["src"])
        elif tag == "link" and a.get("href"):
            self.styles.append(a["href"])
        elif tag == "title":
            self._in_title = True
        elif tag == "h1":
            self._in_h1 += 1

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag == "h1":
            self._in_h1 -= 1

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if self._in_h1:
            self.h1.append(data)
        self.text.append(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    proc = subprocess.run([sys.executable, "-m", "genlib.book", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    html_dir = out / "html"
    pages = {p.relative_to(html_dir).as_posix(): Page(p) for p in html_dir.rglob("*.html")
             if not p.relative_to(html_dir).as_posix().startswith("_")}
    return {"html": html_dir, "pages": pages, "out": out, "log": proc.stdout + proc.stderr}


def _title(nb_path: Path) -> str:
    nb = nbformat.read(str(nb_path), as_version=4)
    return next(m for c in nb.cells if c.cell_type == "markdown"
                for m in re.findall(r"^#\s+(.+)$", c.source, flags=re.M)).strip()


def _figures(nb_path: Path) -> int:
    nb = nbformat.read(str(nb_path), as_version=4)
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for o in c.outputs)


def _plain(md: str) -> str:
    return re.sub(r"[`*]", "", md)


# ============================================================================ the built site
def test_every_chapter_has_a_page_with_its_title_and_figures(site):
    assert CHAPTERS, "no chapter in solutions/"
    for nb_path in CHAPTERS:
        page = site["pages"].get(f"chapters/{nb_path.stem}.html")
        assert page is not None, f"no page for {nb_path.name}"
        title = _plain(_title(nb_path))
        assert title in "".join(page.h1), f"{nb_path.stem}: h1 {page.h1!r} is not {title!r}"
        assert title in page.title.replace("\n", " "), page.title
        figures = [s for s in page.imgs if "_images/" in s]
        n = _figures(nb_path)
        assert len(figures) >= n, f"{nb_path.stem}: {len(figures)} <img> for {n} figures"
        for src in figures:
            f = (page.path.parent / unquote(src)).resolve()
            assert f.is_file() and f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{nb_path.stem}: {src}"


def test_solution_code_is_folded_and_learners_see_no_raw_markers(site):
    for nb_path in CHAPTERS:
        nb = nbformat.read(str(nb_path), as_version=4)
        n = sum(book.BEGIN in c.source for c in nb.cells if c.cell_type == "code")
        raw = (site["html"] / "chapters" / f"{nb_path.stem}.html").read_text(encoding="utf-8")
        assert raw.count('class="admonition hide above-input"') >= n, nb_path.stem
        assert "BEGIN SOLUTION -->" not in raw


def test_no_broken_internal_link_and_nothing_from_the_network(site):
    broken = []
    for name, page in site["pages"].items():
        for url in page.links + page.imgs + page.scripts + page.styles:
            parts = urlsplit(url)
            if parts.scheme in ("http", "https") or url.startswith("//"):
                if url in page.scripts or url in page.styles or url in page.imgs:
                    broken.append(f"{name}: loads {url} from the network")
                continue
            if parts.scheme:  # mailto: and the like
                continue
            target = (page.path.parent / unquote(parts.path)).resolve() if parts.path else page.path
            if not target.exists():
                broken.append(f"{name}: {url} (no file)")
            elif parts.fragment and target.suffix == ".html":
                ids = site["pages"][target.relative_to(site["html"]).as_posix()].ids \
                    if target.relative_to(site["html"]).as_posix() in site["pages"] else Page(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{name}: {url} (no id {parts.fragment!r})")
    assert not broken, "\n".join(broken[:30])
    bad = [w for w in (site["out"] / "warnings.txt").read_text(encoding="utf-8").splitlines()
           if re.search(r"xref|reference|label|not readable|not found", w, re.I)]
    assert not bad, "Sphinx could not resolve:\n" + "\n".join(bad[:20])
    n_links = sum(len(p.links) for p in site["pages"].values())
    assert n_links > 500, f"only {n_links} links checked: is the site empty?"
    mathjax = [s for p in site["pages"].values() for s in p.scripts if "mathjax" in s.lower()]
    assert mathjax and all(not s.startswith(("http", "//")) for s in mathjax), mathjax


def test_landing_page_has_the_readme_table_linked_to_every_chapter(site):
    index = site["pages"]["index.html"]
    _, rows, _ = book.readme_parts(ROOT / "README.md")
    linked = {Path(urlsplit(u).path).stem for u in index.links if u.startswith("chapters/")}
    assert {p.stem for p in CHAPTERS} <= linked
    text = re.sub(r"\s+", " ", "".join(index.text))
    for row in rows:
        assert re.sub(r"[`*]", "", row[2])[:40] in text, row[:2]
    assert "CC BY 4.0" in text


def test_bank_pages_hold_every_question_and_link_to_the_sections_they_cite(site):
    present = {p.stem for p in CHAPTERS}
    for topic in interview.TOPICS:
        entries = interview.load_bank(topic=topic)
        if not entries:
            continue
        page = site["pages"][f"bank/{topic}.html"]
        text = "".join(page.text)
        for e in entries:
            assert e["id"] in page.ids, f"{topic}: no anchor {e['id']}"
            nb = e["links"]["notebook"]
            if not nb:
                continue
            stem = Path(nb.split("#")[0]).stem
            if stem in present:
                assert any(f"chapters/{stem}.html" in u for u in page.links), (e["id"], stem)
            else:
                assert f"coming in chapter {stem[:2]}" in text, (e["id"], stem)
    myths = site["pages"]["bank/myths.html"]
    assert {m["id"] for m in interview.load_myths()} <= myths.ids
    # chapters link to the questions their interview corner names
    corner_links = [u for name, p in site["pages"].items() if name.startswith("chapters/")
                    for u in p.links if "bank/" in u and "#" in u]
    assert len(corner_links) > 20, corner_links


# ============================================================================ staging, no Sphinx
def test_linker_links_ids_and_chapters_but_leaves_code_math_and_links_alone():
    chs = [{"num": "02", "stem": "02_gan_theory"}, {"num": "04", "stem": "04_mode_collapse"}]
    linker = book.Linker(chs, {"gan-2", "myth-3"})
    md = ("See `gan-2`, **gan-2**, myth-3 and gan-99; chapter 04 and chapter 07.\n"
          "```python\ngan-2\n```\n$gan-2$ [gan-2](x.md) `chapter 04`\n## chapter 04 gan-2")
    out = linker.rewrite(md, own_num="02")
    assert "[`gan-2`](#gan-2)" in out and "**[gan-2](#gan-2)**" in out and "[myth-3](#myth-3)" in out
    assert "gan-99;" in out and "[gan-99]" not in out
    assert "[chapter 04](#chapter-04)" in out and "chapter 07." in out and "[chapter 07]" not in out
    assert "```python\ngan-2\n```" in out and "$gan-2$" in out and "[gan-2](x.md)" in out
    assert "`chapter 04`" in out and out.endswith("## chapter 04 gan-2")
    assert linker.rewrite("chapter 02", own_num="02") == "chapter 02"
    assert linker.notebook_link("solutions/11_interview_prep.ipynb#Speed") == "coming in chapter 11"
    assert linker.notebook_link("solutions/04_mode_collapse.ipynb#Nope") == "[chapter 04](#chapter-04)"
    label = linker.section_label("04_mode_collapse", "2 · Watch it")
    assert linker.notebook_link("solutions/04_mode_collapse.ipynb#2 · Watch it").endswith(f"(#{label})")


def test_the_table_of_contents_follows_the_files_in_solutions(tmp_path):
    """A new chapter appears without editing anything; a missing one reads 'coming in chapter NN'."""
    src = tmp_path / "solutions"
    src.mkdir()
    shutil.copy(CHAPTERS[0], src / CHAPTERS[0].name)
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 12 · Extra: a test chapter\n\nSee `gan-2` and chapter 00."),
        nbformat.v4.new_markdown_cell("## 1 · Noise"),
        nbformat.v4.new_markdown_cell("Text.\n## 2 · Later\n```python\n# a comment, not a heading\n```"),
        nbformat.v4.new_markdown_cell("## 1 · Noise")])  # the same heading twice
    nbformat.write(nb, str(src / "12_extra.ipynb"))
    info = book.stage(tmp_path / "stage", src=src)
    assert [c["stem"] for c in info["chapters"]] == [CHAPTERS[0].stem, "12_extra"]
    index = (tmp_path / "stage" / "index.md").read_text(encoding="utf-8")
    toc = index[index.index(":caption: Chapters"):]
    assert f"chapters/{CHAPTERS[0].stem}" in toc and "chapters/12_extra" in toc
    assert "[12 · Extra: a test chapter](#chapter-12)" in index  # not in README's table
    assert f"`{CHAPTERS[1].stem}` (coming in chapter {CHAPTERS[1].stem[:2]})" in index  # not in src
    staged = nbformat.read(str(tmp_path / "stage" / "chapters" / "12_extra.ipynb"), as_version=4)
    assert "(chapter-12)=" in staged.cells[0].source
    assert "[`gan-2`](#gan-2)" in staged.cells[0].source and "(#chapter-00)" in staged.cells[0].source
    # a label needs a blank line before it (else it joins the paragraph); code comments get none
    assert re.fullmatch(r"Text\.\n\n\(12_extra--2-later\)=\n\n## 2 · Later\n```python\n"
                        r"# a comment, not a heading\n```", staged.cells[2].source), staged.cells[2].source
    speed = (tmp_path / "stage" / "bank" / "speed.md").read_text(encoding="utf-8")
    if any((e["links"]["notebook"] or "").startswith("solutions/11_") for e in interview.load_bank("speed")):
        assert "coming in chapter 11" in speed
    assert staged.cells[1].source.startswith("(12_extra--1-noise)=")
    assert staged.cells[3].source.startswith("(12_extra--1-noise-2)=")
    assert (tmp_path / "stage" / "_static" / "mathjax" / "tex-svg.js").is_file()


# ============================================================================ a real browser
def _chromium():
    for name in (os.environ.get("GENLIB_CHROMIUM"), "chromium", "chromium-browser",
                 "google-chrome", "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


PROBE = """
<script>
window.addEventListener('load', function () {
  function put(r) { document.body.setAttribute('data-book-check', JSON.stringify(r)); }
  if (!window.MathJax || !MathJax.startup) { put({error: 'MathJax did not load'}); return; }
  MathJax.startup.promise.then(function () {
    var math = Array.from(document.querySelectorAll('mjx-container'));
    var img = document.querySelector('.cell_output img');
    var box = function (el) { var r = el.getBoundingClientRect();
      return [r.left + scrollX, r.top + scrollY, r.width, r.height]; };
    put({math: math.length, svg: math.filter(function (m) { return m.querySelector('svg'); }).length,
         errors: document.querySelectorAll('[data-mjx-error], mjx-merror').length,
         raw_tex_left: document.body.innerText.indexOf('\\\\max_D') >= 0,
         eq: math.length ? box(math[0]) : null,
         img: img ? {src: img.getAttribute('src'), loaded: img.complete && img.naturalWidth > 0,
                     box: box(img)} : null});
  }, function (e) { put({error: String(e)}); });
});
</script>
"""


def _run_chromium(exe, args, tmp_path):
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: what renders came with the book
           "--force-device-scale-factor=1", "--virtual-time-budget=20000",
           f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_chapter_page_in_headless_chromium_has_typeset_math_and_a_visible_figure(site, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("headless Chromium not found: install it with `sudo apt-get install chromium` "
                    "(Debian; `chromium-browser` on Ubuntu) or point GENLIB_CHROMIUM at a Chrome binary")
    from matplotlib.image import imread

    page = site["html"] / "chapters" / "02_gan_theory.html"
    probe = page.with_name("_probe.html")  # beside the page, so its relative links still work
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                     encoding="utf-8")
    dom = _run_chromium(exe, ["--window-size=1280,1000", "--dump-dom", probe.as_uri()], tmp_path).stdout
    m = re.search(r'data-book-check="([^"]*)"', dom)
    assert m, "the probe wrote no result: did the page's scripts run?"
    r = json.loads(html.unescape(m.group(1)))
    assert "error" not in r, r
    n_math = page.read_text(encoding="utf-8").count('class="math notranslate nohighlight"')
    assert n_math >= 3 and r["math"] >= n_math, (n_math, r)      # every formula typeset …
    assert r["svg"] == r["math"] and r["errors"] == 0, r           # … as SVG, without TeX errors
    assert not r["raw_tex_left"], "raw TeX (\\max_D) is still on the page"
    assert r["img"] and r["img"]["loaded"], r["img"]

    # Screenshot tall enough to hold the first equation and the first figure, then look at pixels.
    x, y, w, h = r["img"]["box"]
    height = int(max(y + h, r["eq"][1] + r["eq"][3])) + 50
    shot = tmp_path / "chapter02.png"
    _run_chromium(exe, [f"--window-size=1280,{height}", f"--screenshot={shot}", probe.as_uri()], tmp_path)
    assert shot.is_file(), "Chromium wrote no screenshot"
    if os.environ.get("GENLIB_BOOK_SCREENSHOT"):  # keep it to look at
        shutil.copy(shot, os.environ["GENLIB_BOOK_SCREENSHOT"])
    pixels = imread(str(shot))[..., :3].mean(axis=2)               # grey levels in [0, 1]
    assert pixels.shape[0] >= height - 5, pixels.shape

    ex, ey, ew, eh = (int(round(v)) for v in r["eq"])
    ink = (pixels[ey:ey + eh, ex:ex + ew] < 0.5).mean()
    assert ew > 100 and 0.01 < ink < 0.6, f"the equation's box holds {ink:.1%} dark pixels"

    crop = pixels[int(y):int(y + h), int(x):int(x + w)]
    original = imread(str((page.parent / unquote(r["img"]["src"])).resolve()))[..., :3].mean(axis=2)

    def thumb(a, n=16):  # n×n block means: robust to the browser's rescaling
        ys, xs = np.linspace(0, a.shape[0], n + 1).astype(int), np.linspace(0, a.shape[1], n + 1).astype(int)
        return np.array([a[ys[i]:ys[i + 1], xs[j]:xs[j + 1]].mean() for i in range(n) for j in range(n)])

    corr = np.corrcoef(thumb(crop), thumb(original))[0, 1]
    assert crop.std() > 0.05 and corr > 0.8, f"figure on screen vs its PNG: corr {corr:.2f}"
