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
    assert len(slugs) >= 23 and len(set(slugs)) == len(slugs)
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


# Every bug pattern that SOURCES.md lists for the articles' code, and the snippet that carries it.
SOURCE_BUG_PATTERNS = {
    "S0.4 BCELoss on (N, 1) outputs against (N,) targets": "target_shape",
    "S0.4 data not scaled to [-1, 1] for a tanh generator": "pixel_scale",
    "S0.4 sigmoid + BCELoss instead of logits + BCEWithLogitsLoss": "sigmoid_bce",
    "S0.4 default Adam betas": "adam_betas",
    "S0.5 reparameterization without noise": "reparameterize",
    "S0.5 encoder flatten size computed for 32x32": "conv_encoder",
    "S0.5 latent size 50 but decoder expects 100": "conv_decoder",
    "S0.5 view to a feature map before the decoder's linear layer": "conv_decoder",
    "S0.5 decoder output 32x32 for 28x28 data": "conv_decoder",
    "S0.5 tanh output fed to BCELoss": "tanh_bce",
    "S0.5 reconstruction mean-reduced while KL is summed": "vae_loss_scale",
    "S1.7 noise and real images drawn from the same dataset": "noise_from_data",
    "S1.7 a .loss attribute that does not exist": "loss_attribute",
    "S1.7 generator loss 1 - mean(D(G(z)))": "saturating_g_loss",
    "S3.6 no alternating D/G updates": "d_never_updated",
    "S3.6 discriminator never frozen for the generator step": "d_not_frozen",
    "S3.6 linear generator output for data in [-1, 1]": "generator_tanh",
    "S3.6 resizing a tensor with no channel axis": "resize_channel",
    "S4.7 linear Dense(1) compiled with probability BCE": "logits_as_probs",
    "S4.7 noise of shape (1, 100, 100) for a (N, 100) generator": "noise_shape",
    "S4.8 ReLU on z_mean and z_log_var": "gaussian_head",
    "S4.8 compiled with MSE alone (no KL)": "vae_kl_missing",
    "S4.8 tanh decoder output": "tanh_bce",
    "S4.8 undefined backend alias in the sampling function": "backend_alias",
}


@pytest.mark.parametrize("pattern", sorted(SOURCE_BUG_PATTERNS))
def test_every_source_bug_pattern_is_an_exercise(pattern):
    bug = spotbugs.BY_SLUG[SOURCE_BUG_PATTERNS[pattern]]
    assert pattern.split()[0] in bug.source_ids, (pattern, bug.source_ids)


def test_every_source_bug_item_has_a_snippet():
    covered = {s for b in BUGS for s in b.source_ids}
    # the articles' code items with bug patterns (SOURCES.md): S0.4, S0.5, S1.7, S3.6, S4.7, S4.8
    assert {"S0.4", "S0.5", "S1.7", "S3.6", "S4.7", "S4.8"} <= covered


# Each snippet states what the code must do, so that the bug can be seen in the snippet itself
# (turn-3 reader: adam_betas, vae_loss_scale and resize_channel were underspecified).
SPEC_IN_SNIPPET = {
    "adam_betas": ["DCGAN", "β1 = 0.5"],
    "vae_loss_scale": ["summed over pixels", "no ½", "summed over latent dims", "mean over the batch"],
    "vae_kl_missing": ["KL(q(z|x) ‖ N(0, I))"],
    "resize_channel": ["bilinear", "align_corners=False", "no antialiasing"],
}


@pytest.mark.parametrize("slug", sorted(SPEC_IN_SNIPPET))
def test_snippet_states_the_spec_its_bug_breaks(slug):
    src = spotbugs.buggy_source(slug)
    for phrase in SPEC_IN_SNIPPET[slug]:
        assert phrase in src, (slug, phrase)
