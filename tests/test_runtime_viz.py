import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from genlib import runtime, train, viz


def test_budget_and_scaled(monkeypatch):
    monkeypatch.setenv("GENLIB_BUDGET", "smoke")
    assert runtime.budget() == "smoke" and runtime.scaled(100, smoke=5, gpu=1000) == 5
    monkeypatch.setenv("GENLIB_BUDGET", "gpu")
    assert runtime.scaled(100, smoke=5, gpu=1000) == 1000
    monkeypatch.setenv("GENLIB_BUDGET", "default")
    assert runtime.scaled(100, smoke=5) == 100
    monkeypatch.setenv("GENLIB_BUDGET", "huge")
    with pytest.raises(ValueError, match="smoke, default, gpu"):
        runtime.budget()


def test_claim_enforced_except_at_smoke(monkeypatch, capsys):
    monkeypatch.setenv("GENLIB_BUDGET", "default")
    with pytest.raises(AssertionError, match="the model learns"):
        runtime.claim(False, "the model learns")
    monkeypatch.setenv("GENLIB_BUDGET", "smoke")
    v = runtime.claim(False, "the model learns")
    assert not v and v == False and v.message == "the model learns"  # noqa: E712
    assert "not enforced" in capsys.readouterr().out
    monkeypatch.setenv("GENLIB_BUDGET", "default")
    v = runtime.claim(True, "holds")
    assert v and v == True and not hasattr(v, "_repr_html_")  # noqa: E712
    # a cell ending with a claim echoes nothing but the claim's own line
    v._ipython_display_()
    assert capsys.readouterr().out == "✓ holds\n"


def test_device_override(monkeypatch):
    monkeypatch.setenv("GENLIB_DEVICE", "cpu")
    assert runtime.get_device().type == "cpu"
    if not torch.cuda.is_available():
        monkeypatch.setenv("GENLIB_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="not available"):
            runtime.get_device()
    with runtime.autocast("cpu"):
        assert torch.ones(2).dtype == torch.float32


def test_seed_everything_reproducible():
    runtime.seed_everything(3)
    a = torch.randn(4)
    runtime.seed_everything(3)
    assert torch.equal(a, torch.randn(4))


def test_make_grid_layout_and_range():
    imgs = torch.linspace(-1, 1, 10 * 64).view(10, 1, 8, 8)
    g = viz.make_grid(imgs, nrow=4, pad=1)
    assert g.shape == (3 * 9 + 1, 4 * 9 + 1, 1)
    assert g.min() >= 0 and g.max() <= 1
    assert np.isclose(g[1, 1, 0], 0.0) and np.isclose(g[1 + 7, 1 + 7, 0], (imgs[0, 0, 7, 7] + 1) / 2)
    with pytest.raises(ValueError, match="channels"):
        viz.make_grid(torch.zeros(2, 2, 4, 4))


def test_plots_draw_labelled_axes():
    ax = viz.plot_samples_2d(torch.randn(50, 2), data=torch.randn(50, 2), centers=torch.zeros(1, 2))
    assert ax.get_xlabel() and len(ax.collections) == 3
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["data", "modes", "samples"], legend
    ax = viz.plot_samples_2d(torch.randn(5, 2), centers=torch.zeros(1, 2), label="data points")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["modes", "data points"]
    ax = viz.plot_history({"d_loss": [1, 2, 3], "g_loss": [3, 2, 1]}, title="losses")
    assert len(ax.lines) == 2 and ax.get_title() == "losses"
    viz.show_images(torch.rand(4, 3, 8, 8), value_range=(0, 1), title="rgb")
    plt.close("all")


def test_history_and_batches():
    h = train.History()
    for i in range(10):
        h.log(loss=torch.tensor(float(i)))
    assert h.last("loss", 2) == 8.5
    x = torch.arange(10)
    it = train.batches(x, 4, torch.Generator().manual_seed(0))
    seen = torch.cat([next(it), next(it)])
    assert seen.unique().numel() == 8
    with pytest.raises(ValueError, match="larger"):
        next(train.batches(x, 20))


def test_setup_notebook_keeps_genlib_warnings_visible(capsys):
    import warnings

    from genlib import metrics

    x = torch.zeros(2, 1, 4, 4)
    y = torch.full((2, 1, 4, 4), 255.0)
    with warnings.catch_warnings(record=True) as caught:
        runtime.setup_notebook(seed=0)
        warnings.warn("a third-party UserWarning", UserWarning)   # silenced
        metrics.psnr(x, y, data_range=1.0)                        # a genlib guard: shown
    capsys.readouterr()
    kinds = [(w.category, str(w.message)) for w in caught]
    assert not any("third-party" in m for _, m in kinds), kinds
    assert any(c is runtime.GenlibWarning and "data_range=1.0" in m for c, m in kinds), kinds
    assert issubclass(runtime.GenlibWarning, UserWarning)
