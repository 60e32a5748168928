"""Gallery for chapter 00's warm-up check: the reference passes, each classic slip is named."""
import pytest
import torch

from genlib.data import to_tanh_range
from genlib.exercises import assert_first_failure

@pytest.fixture
def rejects():
    """Gallery assertion: the named case is the FIRST message the learner reads (one diagnosis per
    mistake), and it contains the fragment."""
    return assert_first_failure


def test_reference_accepted(accepts):
    accepts("warmup.to_tanh_range", to_tanh_range)
    accepts("warmup.to_tanh_range", lambda x: (x - 0.5) / 0.5)  # another correct form


def _inplace(x):
    return x.mul_(2).sub_(1)


GALLERY = [
    ("scale only", lambda x: x * 2, "endpoints: 0 → -1, ½ → 0, 1 → 1", "forgot to subtract 1"),
    ("shift only", lambda x: x - 0.5, "endpoints: 0 → -1, ½ → 0, 1 → 1", "forgot to scale by 2"),
    ("minus one only", lambda x: x - 1, "endpoints: 0 → -1, ½ → 0, 1 → 1", "forgot to scale by 2"),
    ("shift then scale", lambda x: 2 * (x - 1), "endpoints: 0 → -1, ½ → 0, 1 → 1", "scale first"),
    ("in place", _inplace, "does not modify its input", "in place"),
    ("float64", lambda x: (2 * x - 1).double(), "keeps the dtype (float32 stays float32)", "float64"),
    ("numpy out", lambda x: (2 * x - 1).numpy(), "returns a tensor of the same shape", "torch.Tensor"),
    ("flattened", lambda x: (2 * x - 1).flatten(), "returns a tensor of the same shape", "shape"),
    ("min-max rescale per batch", lambda x: 2 * (x - x.min()) / (x.max() - x.min()) - 1,
     "a faint image keeps its values (the map does not depend on the data)", "own min and max"),
]


@pytest.mark.parametrize("label,fn,case,fragment", GALLERY, ids=[g[0] for g in GALLERY])
def test_gallery_rejected(rejects, label, fn, case, fragment):
    rejects("warmup.to_tanh_range", fn, case, fragment)


def test_not_implemented_falls_back(capsys):
    from genlib.exercises import check

    def stub(x):
        raise NotImplementedError

    got = check("warmup.to_tanh_range", stub)
    assert got is to_tanh_range
    out = capsys.readouterr().out
    assert "not done yet" in out and "reference" in out


def test_passing_returns_learner_function():
    from genlib.exercises import check

    def mine(x):
        return 2 * x - 1

    assert check("warmup.to_tanh_range", mine, quiet=True) is mine


def test_crash_is_reported_not_raised():
    from genlib.exercises import run_check

    def crashes(x):
        return x.no_such_method()

    r = run_check("warmup.to_tanh_range", crashes)
    assert not r.passed
    assert "AttributeError" in r.results[0].message and "no_such_method" in r.results[0].message


# ------------------------------------------------------------------ the mechanism: one diagnosis per mistake
def test_one_message_per_mistake():
    """An in-place map fails its own case; the learner reads that message once, not a different advice
    per case (issue 23)."""
    from genlib.exercises import run_check

    report = run_check("warmup.to_tanh_range", _inplace)
    assert report.first_failed == "does not modify its input"
    assert sum(" — " in line for line in report.text().splitlines()) == 1, report.text()


def test_generic_input_watch_and_dtype_words():
    """The mechanism itself: an input changed in place in a case that has no in-place test of its own is
    named, and a dtype clash inside the function is explained in words, not as a raw torch error."""
    from genlib import exercises
    from genlib.exercises import INPUTS_CASE, register, run_check

    spec = register("test_mechanism.double", lambda x: 2 * x, "doubles")
    try:
        _watch_and_words(spec, run_check, INPUTS_CASE)
    finally:
        exercises._REGISTRY.pop("test_mechanism.double", None)


def _watch_and_words(spec, run_check, INPUTS_CASE):

    @spec.case("doubles")
    def _(fn):
        x = torch.ones(3)
        if not torch.equal(fn(x), torch.full((3,), 2.0)):
            from genlib.exercises import CheckFailure
            raise CheckFailure("not doubled")

    def in_place(x):
        return x.mul_(2)

    r = run_check("test_mechanism.double", in_place)
    assert r.first_failed == INPUTS_CASE and "changed its input x in place" in r.lead.message, r.text()
    r = run_check("test_mechanism.double", lambda x: x * torch.ones(3, dtype=torch.float64) @ torch.eye(3))
    assert r.lead.kind == "dtype" and "float32 and float64" in r.lead.message, r.text()
    assert run_check("test_mechanism.double", lambda x: 2 * x).passed
