import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("GENLIB_PROGRESS", "0")


def assert_rejects(name, fn, case, fragment=""):
    """The check ``name`` must fail ``fn`` in the case ``case`` with a message containing ``fragment``."""
    from genlib.exercises import run_check

    report = run_check(name, fn)
    assert not report.passed, f"{name} accepted a wrong implementation (expected to fail {case!r})"
    assert case in report.failed_cases, (
        f"{name}: expected case {case!r} to fail, failed: {report.failed_cases}\n{report.text()}")
    msg = report.message_for(case)
    assert fragment.lower() in msg.lower(), f"{name}/{case}: message {msg!r} lacks {fragment!r}"
    return report


def assert_accepts(name, fn):
    from genlib.exercises import run_check

    report = run_check(name, fn)
    assert report.passed, f"{name} rejected a correct implementation:\n{report.text()}"
    return report


@pytest.fixture
def rejects():
    return assert_rejects


@pytest.fixture
def accepts():
    return assert_accepts
