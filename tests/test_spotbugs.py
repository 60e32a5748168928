"""Spot-the-bug snippets: each buggy version is rejected by its check, each fix accepted."""
import pytest

from genlib import interview, spotbugs
from genlib.exercises import registry, run_check

BUGS = spotbugs.BUGS

# The bug patterns issue 7 asks for, by slug.
REQUIRED = {"reparameterize", "gaussian_head", "sigmoid_bce", "target_shape", "pixel_scale",
            "d_step_detach", "vae_kl_missing", "vae_loss_scale", "logits_as_probs", "d_never_updated"}


def test_at_least_twelve_and_required_patterns():
    slugs = [b.slug for b in BUGS]
    assert len(slugs) >= 12 and len(set(slugs)) == len(slugs)
    assert REQUIRED <= set(slugs)


@pytest.mark.parametrize("bug", BUGS, ids=[b.slug for b in BUGS])
def test_check_registered_with_source_ids(bug):
    assert f"bugs.{bug.slug}" in registry()
    assert bug.source_ids and set(bug.source_ids) <= set(interview.SOURCE_IDS)
    assert bug.whats_wrong and bug.task and bug.title


@pytest.mark.parametrize("bug", BUGS, ids=[b.slug for b in BUGS])
def test_buggy_rejected(bug):
    report = run_check(f"bugs.{bug.slug}", bug.buggy)
    assert not report.passed and not report.not_implemented, report.text()
    assert all(r.message for r in report.results if not r.passed)


@pytest.mark.parametrize("bug", BUGS, ids=[b.slug for b in BUGS])
def test_fix_accepted(bug):
    report = run_check(f"bugs.{bug.slug}", bug.fixed)
    assert report.passed, report.text()


@pytest.mark.parametrize("bug", BUGS, ids=[b.slug for b in BUGS])
def test_shown_source_gives_nothing_away(bug):
    src = spotbugs.buggy_source(bug.slug)
    assert "BUG" not in src and "buggy" not in src.lower() and "fixed" not in src.lower()
    assert spotbugs.display_name(bug) in src.splitlines()[0]
    compile(src, "<snippet>", "exec")  # still valid Python after the comments are removed


def test_show_prints_task_and_source_ids(capsys):
    spotbugs.show("reparameterize")
    out = capsys.readouterr().out
    assert "sampling the latent code" in out and "S0.5" in out and "def reparameterize" in out


def test_every_source_bug_item_has_a_snippet():
    covered = {s for b in BUGS for s in b.source_ids}
    # the articles' code items with bug patterns (SOURCES.md): S0.4, S0.5, S1.7, S3.6, S4.7, S4.8
    assert {"S0.4", "S0.5", "S1.7", "S3.6", "S4.7", "S4.8"} <= covered
