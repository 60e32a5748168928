"""genlib.dit: patchify layout, adaLN-Zero's identity start (and what it does to the first
gradients), the three conditioning mechanisms, guidance, cost(), and a short training run."""
import pytest
import torch
import torch.nn.functional as F

from genlib.data import shapes
from genlib.dit import CONDS, DiT, DiTBlock, cost, modulate, patchify, sincos_positions, unpatchify
from genlib.flow import flow_matching_loss, sample_euler, train_flow
from genlib.t2i import caption_tokens


@pytest.fixture(autouse=True)
def one_thread():
    # these models are tiny: one thread is fastest, and two fight each other on a busy 2-core box
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _batch(n=8, seed=0):
    d = shapes(n, seed=seed)
    return d.images, torch.rand(n, generator=torch.Generator().manual_seed(seed)), caption_tokens(d.captions)


def _small(cond, **kw):
    torch.manual_seed(0)
    return DiT(dim=32, depth=2, heads=4, patch=4, cond=cond, **kw)


# ----------------------------------------------------------------------------- patchify
def test_patchify_layout_by_hand():
    x = torch.arange(2 * 4 * 4).view(1, 2, 4, 4)      # channel 0 holds 0..15, channel 1 16..31
    tok = patchify(x, 2)
    assert tok.shape == (1, 4, 8)
    # token 1 = patch row 0, patch column 1: pixels (0,2),(0,3),(1,2),(1,3) of channel 0, then channel 1
    assert tok[0, 1].tolist() == [2, 3, 6, 7, 18, 19, 22, 23]
    # token 2 = patch row 1, patch column 0 (raster order over patches)
    assert tok[0, 2].tolist() == [8, 9, 12, 13, 24, 25, 28, 29]
    assert tok[0, 0].tolist() == [0, 1, 4, 5, 16, 17, 20, 21]


def test_patchify_then_linear_is_a_strided_convolution():
    x, p = torch.randn(2, 3, 8, 12), 4
    lin = torch.nn.Linear(3 * p * p, 5)
    conv = F.conv2d(x, lin.weight.view(5, 3, p, p), lin.bias, stride=p)         # (2, 5, 2, 3)
    assert torch.allclose(lin(patchify(x, p)), conv.flatten(2).transpose(1, 2), atol=1e-5)


@pytest.mark.parametrize("p", [1, 2, 4])
def test_unpatchify_inverts_patchify_exactly(p):
    x = torch.randn(3, 5, 8, 12)
    assert torch.equal(unpatchify(patchify(x, p), p, 5, 8, 12), x)
    tok = torch.randn(3, (8 // p) * (12 // p), 5 * p * p)
    assert torch.equal(patchify(unpatchify(tok, p, 5, 8, 12), p), tok)


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="divide"):
        patchify(torch.randn(1, 3, 16, 16), 3)
    with pytest.raises(ValueError, match="divide"):
        patchify(torch.randn(1, 3, 16, 10), 4)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        patchify(torch.randn(3, 16, 16), 4)
    with pytest.raises(ValueError, match="do not fit"):
        unpatchify(torch.randn(1, 15, 48), 4, 3, 16, 16)
    with pytest.raises(ValueError, match="do not fit"):
        unpatchify(torch.randn(1, 16, 47), 4, 3, 16, 16)
    with pytest.raises(ValueError, match="divide"):
        DiT(patch=3)
    with pytest.raises(ValueError, match="cond must be"):
        DiT(cond="film")
    with pytest.raises(ValueError, match="cond must be"):
        DiTBlock(32, 4, "adaln")
    with pytest.raises(ValueError, match="takes"):
        _small("adaln_zero")(torch.randn(2, 3, 8, 8), torch.rand(2))
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_positions(2, 2, 6)


def test_modulate_applies_one_shift_and_scale_per_sample_to_all_tokens():
    x = torch.randn(2, 5, 3)
    zero = torch.zeros(2, 3)
    assert torch.equal(modulate(x, zero, zero), x)
    shift, scale = torch.tensor([[1., 2, 3], [4, 5, 6]]), torch.tensor([[0., 1, -1], [2, 0, 0]])
    out = modulate(x, shift, scale)
    for i in range(2):
        for j in range(5):                                    # the same per-sample vectors at every token
            assert torch.allclose(out[i, j], x[i, j] * (1 + scale[i]) + shift[i])


def test_positions_are_distinct_and_fixed():
    pos = sincos_positions(4, 4, 32)
    assert pos.shape == (16, 32) and torch.cdist(pos, pos).fill_diagonal_(1).min() > 0.1
    assert "pos" not in DiT().state_dict()                    # recomputed, not learned


# ----------------------------------------------------------------------------- zero init
def test_adaln_zero_block_is_exactly_the_identity_at_init():
    torch.manual_seed(0)
    block = DiTBlock(32, 4, "adaln_zero")
    x, c = torch.randn(3, 10, 32), torch.randn(3, 32)
    assert torch.equal(block(x, c), x)
    other = DiTBlock(32, 4, "in_context")                     # a plain block is not
    assert not torch.allclose(other(x), x)


@pytest.mark.parametrize("cond", CONDS)
def test_dit_outputs_exactly_zero_at_init_with_input_shape(cond):
    x, t, y = _batch()
    out = _small(cond)(x, t, y)
    assert out.shape == x.shape and torch.equal(out, torch.zeros_like(x))


def _grad_names(model, x, t, y):
    model.zero_grad(set_to_none=True)
    F.mse_loss(model(x, t, y), -x).backward()
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().max() > 0}


def _key_bias_free(names_all):
    # the key bias adds the same number to every score of a query: softmax ignores it, so its exact
    # gradient is 0 and only rounding reaches it; leave it out of "every parameter learns"
    return {n for n in names_all if not (n.endswith("attn.qkv.bias") or n.endswith("cross.kv.bias"))}


def test_adaln_zero_gradients_turn_on_in_three_steps():
    """The zero init means: step 1 only the last linear layer learns (everything else is multiplied
    by its zero weights); step 2 the modulation layers and the patch embedding (the residual stream
    reaches the output, but the gates are still 0, so attention and MLP see no gradient and the
    zero modulation weights block the time and word embeddings); step 3 every parameter."""
    model = _small("adaln_zero")
    x, t, y = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    everything = _key_bias_free(n for n, _ in model.named_parameters())
    seen = []
    for _ in range(3):
        names = _grad_names(model, x, t, y)
        seen.append(names)
        opt.step()
    assert seen[0] == {"out.weight", "out.bias"}
    step2 = {"out.weight", "out.bias", "final_ada.1.weight", "final_ada.1.bias", "embed.weight",
             "embed.bias"} | {f"blocks.{i}.ada.1.{w}" for i in range(2) for w in ("weight", "bias")}
    assert seen[1] == step2
    assert not any(".attn." in n or ".mlp." in n or n.startswith(("time.", "words.")) for n in seen[1])
    assert everything <= seen[2]


@pytest.mark.parametrize("cond", ["in_context", "cross_attention"])
def test_sequence_modes_gradients_reach_every_parameter_at_step_two(cond):
    model = _small(cond)
    x, t, y = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = _grad_names(model, x, t, y)
    assert first == {"out.weight", "out.bias"}                # the zero output layer blocks the rest
    opt.step()
    second = _grad_names(model, x, t, y)
    assert _key_bias_free(n for n, _ in model.named_parameters()) <= second


# ----------------------------------------------------------------------------- conditioning
@pytest.mark.parametrize("cond", CONDS)
def test_caption_changes_the_output_after_a_few_steps(cond):
    model = _small(cond)
    x1, _, y = _batch(64)
    g = torch.Generator().manual_seed(1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(10):
        x0, t = torch.randn(x1.shape, generator=g), torch.rand(len(x1), generator=g)
        loss = flow_matching_loss(model, x0, x1, t, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    xt, t = torch.randn(8, 3, 16, 16, generator=g), torch.full((8,), 0.5)
    with torch.no_grad():
        out = model(xt, t, y[:8])
        other = model(xt, t, y[8:16].roll(1, 0))
        null = model(xt, t, None)
    # at init the difference is exactly 0 (zero output layer); float rounding alone is ~1e-7
    assert (out - null).abs().mean() > 1e-4, "the caption does not reach the output"
    diff_rows = (y[:8] != y[8:16].roll(1, 0)).any(1)
    assert (out - other).abs().flatten(1).mean(1)[diff_rows].min() > 5e-5
    assert torch.equal(null, model(xt, t, torch.full((8, 4), model.null_class)))


def test_class_labels_work_as_one_word_captions_with_guidance():
    model = _small("adaln_zero", vocab=48)
    x = shapes(64, seed=0).images
    labels = torch.arange(64) % 48
    ema, _ = train_flow(model, x, 5, y=labels, batch_size=16, progress=False)
    x0 = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = sample_euler(ema, x0, 2, y=labels[:4], guidance=2.0)
    assert out.shape == x0.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("cond", CONDS)
def test_y_none_is_the_null_caption_of_the_trained_length(cond):
    """Review helper-32 H2: y=None used 4 null tokens whatever the model was trained on; label dropout
    nulls whole rows of y, so the empty input is null_len null tokens (1 for class labels)."""
    torch.manual_seed(0)
    model = DiT(dim=32, depth=1, heads=4, patch=4, cond=cond, vocab=48, null_len=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))   # away from the zero init, where every input gives 0
        x, t = torch.randn(3, 3, 16, 16), torch.rand(3)
        none = model(x, t, None)
        assert torch.equal(none, model(x, t, torch.full((3,), model.null_class)))
        assert not torch.allclose(none, model(x, t, torch.full((3, 4), model.null_class)))
    assert DiT(**model.config).null_len == 1
    with pytest.raises(ValueError, match="null_len"):
        DiT(null_len=0)


def test_config_rebuilds_the_same_model():
    model = _small("cross_attention", image_size=(16, 32))
    x, t = torch.randn(2, 3, 16, 32), torch.rand(2)
    y = caption_tokens(["a red circle left of a blue square", "a blue square right of a red circle"])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        clone = DiT(**model.config)
        clone.load_state_dict(model.state_dict())
        assert torch.equal(clone(x, t, y), model(x, t, y))


# ----------------------------------------------------------------------------- cost
def test_cost_counts_tokens_params_and_flops():
    x, t, y = (v[:1] for v in _batch())
    flops = []
    for p in (1, 2, 4, 8):
        model = DiT(dim=32, depth=2, patch=p)
        c = cost(model, x, t, y)
        assert c["tokens"] == (16 // p) ** 2
        assert c["params"] == sum(q.numel() for q in model.parameters())
        flops.append(c["flops"])
    assert all(a > 1.5 * b for a, b in zip(flops, flops[1:])), flops
    assert cost(DiT(image_size=(16, 32), patch=4), torch.randn(1, 3, 16, 32), t, y)["tokens"] == 32


def test_cost_of_a_linear_layer_is_two_flops_per_multiply_add():
    class Lin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(10, 7)

        def forward(self, x, t, y=None):
            return self.lin(x)

    c = cost(Lin(), torch.randn(3, 10), torch.rand(3))
    assert c == {"params": 77, "flops": 2 * 3 * 10 * 7, "tokens": None}


def test_cross_attention_costs_more_than_adaln_zero_at_equal_size():
    x, t, y = (v[:1] for v in _batch())
    ada = cost(DiT(dim=64, depth=4, cond="adaln_zero"), x, t, y)["flops"]
    cross = cost(DiT(dim=64, depth=4, cond="cross_attention"), x, t, y)["flops"]
    assert cross > 1.1 * ada, (cross, ada)


# ----------------------------------------------------------------------------- training
def test_short_training_run_lowers_the_loss_and_samples_with_guidance():
    torch.manual_seed(0)
    d = shapes(512, seed=0)
    model = DiT(dim=48, depth=2, heads=4, patch=4)
    ema, losses = train_flow(model, d.images, 150, y=caption_tokens(d.captions), batch_size=64,
                             lr=2e-3, seed=0, progress=False)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)
    x0 = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = caption_tokens(d.captions[:4])
    plain = sample_euler(ema, x0, 4, y=y)
    guided = sample_euler(ema, x0, 4, y=y, guidance=3.0)
    assert guided.shape == x0.shape and torch.isfinite(guided).all()
    assert (guided - plain).abs().mean() > 1e-3
