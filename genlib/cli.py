"""The ``genlib`` command: ``genlib release``, ``genlib grade``, ``genlib execute``, ``genlib checks``.

Chapters add their own subcommands through ``COMMANDS`` (name → (help, add_arguments, run)).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _release(args) -> int:
    from genlib import notebooks

    differing = notebooks.release(args.solutions, args.notebooks, check_only=args.check,
                                  chapters=args.chapters)
    if args.check:
        if differing:
            print("out of sync with solutions/: " + ", ".join(differing)
                  + "\nrun `genlib release` and commit notebooks/")
            return 1
        print("notebooks/ is in sync with solutions/")
        return 0
    print(f"released {len(differing)} changed notebook(s)" +
          (": " + ", ".join(differing) if differing else ""))
    return 0


def _grade(args) -> int:
    from genlib import notebooks
    from genlib.grading import sandbox

    if args.no_sandbox:
        print(sandbox.NOT_PROTECTED, file=sys.stderr)
    outputs = [Path(p).absolute() for p in (args.csv, args.gradescope) if p]
    try:
        results = notebooks.grade_all(args.notebooks, timeout=args.timeout, budget=args.budget,
                                      reference=args.reference,
                                      exercise_timeout=args.exercise_timeout,
                                      memory_mb=args.memory_mb, sandbox=not args.no_sandbox,
                                      hide=[str(p.parent) for p in outputs]
                                      + [str(p) for p in outputs])
    except notebooks.SandboxUnavailable as e:
        print(f"genlib grade: {e}", file=sys.stderr)
        return 3
    # every sandbox is gone: only now is anything written — the files first, then the tables
    if args.csv:
        notebooks.write_csv(results, args.csv)
    if args.gradescope:
        from genlib.grading import gradescope

        gradescope.write_results(results, args.gradescope)
    for result in results:
        print(notebooks.format_grade(result))
    for path in (args.csv, args.gradescope):
        if path:
            print(f"wrote {path}")
    return 0


def _gradescope_bundle(args) -> int:
    from genlib.grading import gradescope

    try:
        out = gradescope.build_bundle(args.chapter, args.out, no_sandbox=args.no_sandbox,
                                      timeout=args.timeout)
    except ValueError as e:
        print(f"genlib gradescope: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def _add_gradescope_bundle(p):
    p.add_argument("chapter", help="chapter number or notebook name, e.g. 01 or 01_generative_models")
    p.add_argument("--out", required=True, help="the .zip to write")
    p.add_argument("--timeout", type=int, default=600, help="seconds per notebook (default 600)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="grade without bubblewrap if the autograder's container cannot run it")


def _execute(args) -> int:
    from genlib import notebooks

    for nb in args.notebooks:
        print(f"executing {nb} …", flush=True)
        notebooks.execute(nb, out=nb, timeout=args.timeout)
    return 0


def _checks(args) -> int:
    from genlib.exercises import registry

    for name, spec in sorted(registry().items()):
        print(f"{name:32s} {len(spec.cases):2d} cases  {spec.summary}")
    return 0


def _convert(args) -> int:
    import nbformat

    from genlib import notebooks

    nb = notebooks.percent_to_notebook(Path(args.script).read_text(encoding="utf-8"))
    nbformat.write(nb, args.output)
    print(f"wrote {args.output}")
    return 0


def _add_release(p):
    p.add_argument("chapters", nargs="*", help="only these chapters (name prefixes, e.g. 04 07); default all")
    p.add_argument("--check", action="store_true", help="only report notebooks that are out of sync")
    p.add_argument("--solutions", default=str(Path(__file__).resolve().parent.parent / "solutions"))
    p.add_argument("--notebooks", default=str(Path(__file__).resolve().parent.parent / "notebooks"))


def _add_grade(p):
    p.add_argument("notebooks", nargs="+", help="submitted .ipynb files")
    p.add_argument("--timeout", type=int, default=600, help="seconds per notebook (default 600)")
    p.add_argument("--budget", default="smoke", choices=["smoke", "default", "gpu"])
    p.add_argument("--reference", help="pristine notebook that lists the exercises")
    p.add_argument("--exercise-timeout", type=int, default=60,
                   help="seconds for judging one exercise, in its worker (default 60)")
    p.add_argument("--memory-mb", type=int, default=4096,
                   help="memory a worker may allocate beyond torch itself (default 4096)")
    p.add_argument("--csv", help="also write the table to this CSV file")
    p.add_argument("--gradescope", metavar="RESULTS_JSON",
                   help="also write Gradescope's results.json (one test per exercise)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="grade without the bubblewrap sandbox (prints what is then unprotected)")


def _add_execute(p):
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--timeout", type=int, default=900, help="seconds per cell")


def _add_convert(p):
    p.add_argument("script", help="a py:percent script")
    p.add_argument("output", help="the .ipynb to write")


COMMANDS = {
    "release": ("write notebooks/ from solutions/ (instructors)", _add_release, _release),
    "grade": ("execute and grade submitted notebooks", _add_grade, _grade),
    "gradescope": ("build a Gradescope autograder .zip for one chapter",
                          _add_gradescope_bundle, _gradescope_bundle),
    "execute": ("run notebooks in place, storing outputs", _add_execute, _execute),
    "checks": ("list every registered exercise check", lambda p: None, _checks),
    "convert": ("py:percent script → notebook (authoring aid)", _add_convert, _convert),
}


# Optional subcommands whose module is light: asking for one imports only that module, so that
# `genlib quiz` runs without PyTorch (genlib.bench imports torch at the top).
LIGHT_COMMANDS = {"quiz": "genlib.interview"}


def _register_optional(argv=None):
    """Subcommands that live with their chapter's module (bench, quiz, …)."""
    import importlib
    import importlib.util

    wanted = argv[0] if argv else None
    mods = (LIGHT_COMMANDS[wanted],) if wanted in LIGHT_COMMANDS else ("genlib.bench", "genlib.interview")
    for mod in mods:
        if importlib.util.find_spec(mod) is not None:
            COMMANDS.update(getattr(importlib.import_module(mod), "CLI_COMMANDS", {}))


def main(argv=None) -> int:
    _register_optional(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="genlib", description="the genlib workbook's tools")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_, add, _) in COMMANDS.items():
        add(sub.add_parser(name, help=help_))
    args = parser.parse_args(argv)
    return COMMANDS[args.command][2](args)


if __name__ == "__main__":
    sys.exit(main())
