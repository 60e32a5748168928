"""The README stays true: every chapter is in its table, every command it names exists."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_chapter_is_in_the_table_with_its_exercise_count():
    import nbformat

    from genlib.notebooks import expected_exercises

    table = README[README.index("<!-- chapters:start -->"):README.index("<!-- chapters:end -->")]
    rows = {m.group(1): int(m.group(2)) for m in
            re.finditer(r"^\| \d\d \| `(\w+)` \|.*\| (\d+) \|$", table, re.M)}
    chapters = sorted(p.stem for p in (ROOT / "solutions").glob("*.ipynb"))
    assert sorted(rows) == chapters
    for stem in chapters:
        nb = nbformat.read(ROOT / "solutions" / f"{stem}.ipynb", as_version=4)
        assert rows[stem] == len(expected_exercises(nb)), stem


def test_the_two_commands_and_the_ci_entry_point():
    assert "make lab" in README and "make test" in README
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lab:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_cli_commands_named_in_the_readme_exist():
    from genlib import cli

    cli._register_optional()
    for name in set(re.findall(r"`genlib (\w+)", README)) | set(re.findall(r"^genlib (\w+)", README, re.M)):
        assert name in cli.COMMANDS, name
