"""Checks for chapter 03 (GAN practice): the digits generators/discriminators and the training step.

Module checks instantiate the learner's class and test behaviour: shapes, output range, logits,
parameter counts, gradients. The training-step check runs the learner's step on tiny models with
instrumented optimisers, and compares the gradient each optimiser holds at the moment it steps
with the gradient it should hold — which tells a missing ``detach``, a missing ``zero_grad``, and
the wrong optimiser apart.
"""
import torch

from genlib import gan, models
from genlib.exercises import CheckFailure, expect_tensor, probe, register
from genlib.losses import d_loss, g_loss
from genlib.probes import ch03 as P

# ============================================================================ modules
# Every case reaches the learner's class through a probe (genlib.probes.ch03), which builds it with
# fixed seeds and returns what the case looks at, so that the grader can run it in its worker.


def _n_params(shapes):
    return sum(int(torch.Size(s).numel()) for s in shapes)


def generator_check(name, ref, kind):
    spec = register(name, ref, f"{kind} generator: z (N, z_dim) → images (N, 1, 8, 8) in [-1, 1]")

    @spec.case("maps (N, z_dim) noise to (N, 1, 8, 8)")
    def _(cls):
        out = probe(cls, P.output, "generator", {"z_dim": 16}, (5, 16))
        expect_tensor(out, what="G(z) for z of shape (5, 16)")
        if tuple(out.shape) != (5, 1, 8, 8):
            raise CheckFailure(f"G(z) for z: (5, 16) has shape {tuple(out.shape)}, expected "
                               "(5, 1, 8, 8): one 8×8 single-channel image per noise vector "
                               "(use z_dim from the constructor, and .view(-1, 1, 8, 8))")

    @spec.case("tanh output in [-1, 1], like the data")
    def _(cls):
        out, big = probe(cls, P.generator_range)
        if out.min() >= 0 and big.min() >= 0:
            raise CheckFailure("your images never go below 0 (a sigmoid output?) but the data are "
                               "scaled to [-1, 1], so D separates real from fake by range alone "
                               "(the S0.4 bug): end the generator with tanh")
        if big.abs().max() > 1 + 1e-5:
            raise CheckFailure(f"your outputs are unbounded (values up to {big.abs().max():.3g} with "
                               "larger weights): a linear output cannot match data in [-1, 1] "
                               "(the S3.6 bug); end with tanh")
        if big.abs().max() < 0.9:
            raise CheckFailure("your outputs never come near ±1, so dark and bright pixels are "
                               "out of reach: end with tanh, not tanh of something bounded")

    @spec.case("different noise, different images")
    def _(cls):
        out = probe(cls, P.output, "generator", {"z_dim": 16}, (8, 16), mode="eval", grad=False)
        if (out - out[:1]).abs().max() < 1e-6:
            raise CheckFailure("all noise vectors give the same image: the generator ignores z")

    @spec.case("a single sample in eval mode")
    def _(cls):
        out = probe(cls, P.output, "generator", {"z_dim": 16}, (1, 16), seed=None, mode="eval",
                    grad=False)
        expect_tensor(out, (1, 1, 8, 8), "G(z) for one noise vector in eval mode")

    @spec.case("parameter count fits 8×8 digits")
    def _(cls):
        n = _n_params(probe(cls, P.parameter_shapes, "generator"))
        if n < 2_000:
            raise CheckFailure(f"{n:,} parameters is too few to draw ten digit classes")
        if n > 1_000_000:
            raise CheckFailure(f"{n:,} parameters for 64-pixel images will not train on a CPU in "
                               "minutes; shrink the hidden sizes / channels")

    @spec.case("every parameter gets a gradient")
    def _(cls):
        grads = probe(cls, P.generator_grads)
        dead = [n for n, g in grads if g is None or not g.abs().sum() > 0]
        if dead:
            raise CheckFailure(f"no gradient reaches {', '.join(dead[:3])}: a layer is built but "
                               "not used in forward, or the graph is cut (.detach(), .data)")

    if kind == "DCGAN":
        @spec.case("builds the image with (transposed) convolutions")
        def _(cls):
            seen = probe(cls, P.generator_trace)
            if not any(k in ("ConvTranspose2d", "Conv2d") for k, _, _ in seen):
                raise CheckFailure("a DCGAN generator reshapes the projected noise into a small "
                                   "feature map and grows it with transposed convolutions (or "
                                   "upsample + conv); yours has no convolution")
            grows = any(o[0] > i[0] or o[1] > i[1] for k, i, o in seen
                        if k in ("ConvTranspose2d", "Upsample"))
            small = any(i[0] < 8 or i[1] < 8 for k, i, _ in seen if k in ("ConvTranspose2d", "Conv2d"))
            if not (grows or small):
                raise CheckFailure("every convolution in your generator works on full 8×8 maps: the "
                                   "image is made by a dense layer and a convolution only polishes it. "
                                   "DCGAN reshapes the projected noise to a small map (4×4) and grows it "
                                   "with a stride-2 ConvTranspose2d (or nn.Upsample + Conv2d)")
    @spec.case("as chapter 03 uses it: z_dim = 8, 297 samples in eval mode for the classifier")
    def _(cls):
        # evaluate() draws N_EVAL = 297 samples with gan.sample (eval mode, no grad) and feeds them to
        # features.classify_digits, which expects (N, 1, 8, 8) images in [-1, 1]
        out = probe(cls, P.output, "generator", {"z_dim": 8}, (297, 8), mode="eval", grad=False)
        expect_tensor(out, (297, 1, 8, 8), "G(z) for 297 noise vectors of size 8 in eval mode")
        if not torch.isfinite(out).all() or out.abs().max() > 1 + 1e-6:
            raise CheckFailure("in eval mode with z_dim = 8 your generator's images are not finite values in "
                               "[-1, 1]: the chapter's classifier reads them as [-1, 1] digits (end with tanh)")

    return spec


def discriminator_check(name, ref, kind):
    spec = register(name, ref, f"{kind} discriminator: x (N, 1, 8, 8) → logits (N,)")

    @spec.case("maps (N, 1, 8, 8) to logits of shape (N,)")
    def _(cls):
        out = probe(cls, P.output, "discriminator", {}, (5, 1, 8, 8), noise="rand2")
        expect_tensor(out, what="D(x)")
        if tuple(out.shape) == (5, 1):
            raise CheckFailure("D(x) has shape (5, 1): return (N,) with .view(-1); (N, 1) logits "
                               "against (N,) targets is the S0.4 shape bug")
        if tuple(out.shape) != (5,):
            raise CheckFailure(f"D(x) has shape {tuple(out.shape)}, expected (5,): one logit per image")

    @spec.case("returns logits, not probabilities")
    def _(cls):
        out, shifted = probe(cls, P.discriminator_logits)
        if out.min() >= 0 and out.max() <= 1:
            raise CheckFailure("your outputs stay in [0, 1] even with large weights: D ends in a "
                               "sigmoid. Return raw logits and use a loss computed from logits "
                               "(probabilities fed to a logit loss is the S4.7 mismatch)")
        if out.min() >= -1 and out.max() <= 1:
            raise CheckFailure("your outputs stay in [-1, 1] even with large weights: D ends in a "
                               "tanh (the generator's last layer, copied?). A logit must be free to "
                               "grow: with tanh, D(x) = σ(logit) is stuck in [0.27, 0.73]. End with "
                               "the Linear layer")
        # a raw logit is the last layer's output: adding c to that layer's bias adds c to every logit
        if shifted is not None:
            if not torch.allclose(shifted - out, torch.full_like(out, 10.0), atol=1e-3):
                kind_ = "log-sigmoid (outputs ≤ 0)" if out.max() <= 0 else "a squashing function"
                raise CheckFailure(f"something follows D's last linear layer — {kind_}: a logit must be "
                                   "the last layer's raw output (shifting its bias by 10 should shift "
                                   "every output by 10). Drop the final activation")

    @spec.case("gradient reaches the input image")
    def _(cls):
        grad = probe(cls, P.discriminator_input_grad)
        if grad is None or not grad.abs().sum() > 0:
            raise CheckFailure("no gradient flows from D's output back to its input, so the "
                               "generator cannot learn through D: avoid .detach(), .round(), argmax")

    @spec.case("parameter count fits 8×8 digits")
    def _(cls):
        n = _n_params(probe(cls, P.parameter_shapes, "discriminator"))
        if n < 500:
            raise CheckFailure(f"{n:,} parameters is too few to judge digits")
        if n > 1_000_000:
            raise CheckFailure(f"{n:,} parameters for 64-pixel images is far too many for a CPU run")

    if kind == "DCGAN":
        @spec.case("downsamples with strided convolutions")
        def _(cls):
            convs, pools = probe(cls, P.discriminator_trace)
            if not convs:
                raise CheckFailure("a DCGAN discriminator uses strided convolutions instead of "
                                   "pooling or a flat MLP; yours has no Conv2d")
            if not any(o[0] < i[0] or o[1] < i[1] for i, o in convs):
                extra = f" ({', '.join(pools)} does the downsampling)" if pools else ""
                raise CheckFailure("none of your convolutions makes the feature map smaller"
                                   f"{extra}: DCGAN replaced pooling by stride-2 convolutions, e.g. "
                                   "Conv2d(1, ch, 4, stride=2, padding=1): 8×8 → 4×4")

        @spec.case("each image's logit depends on that image alone (no batch norm)")
        def _(cls):
            a, b, bn = probe(cls, P.discriminator_batch_coupling)
            if not torch.allclose(a, b, atol=1e-5):
                what = f"your D has {bn[0]}" if bn else "something mixes the samples of a batch"
                raise CheckFailure(f"in train mode, changing the other images of the batch changed image "
                                   f"0's logit: {what}. This D has no batch norm, so each logit depends on "
                                   "its own image only (and spectral norm can be added later)")
    @spec.case("as chapter 03 uses it: a training batch of 256 images in train mode → (256,) logits")
    def _(cls):
        # genlib.gan.train_step calls D on (256, 1, 8, 8) batches in train mode and hands D(x) to the
        # losses, which take (N,) logits
        out = probe(cls, P.output, "discriminator", {}, (256, 1, 8, 8), mode="train", noise="rand2")
        expect_tensor(out, (256,), "D(x) for a batch of 256 images in train mode")
        if not torch.isfinite(out).all():
            raise CheckFailure("your discriminator's logits for a batch of 256 images are not finite")

    return spec


generator_check("gan.mlp_generator", models.MLPGenerator, "MLP")
discriminator_check("gan.mlp_discriminator", models.MLPDiscriminator, "MLP")
generator_check("gan.dcgan_generator", models.DCGANGenerator, "DCGAN")
discriminator_check("gan.dcgan_discriminator", models.DCGANDiscriminator, "DCGAN")


# ============================================================================ the training step
# The learner's step runs in a probe (genlib.probes.ch03.train_step_run) on tiny instrumented models
# whose optimisers record, at each step(), the gradients they hold and the models' parameters. The
# gradients they should hold and the reference step are computed here, from those records.
_Recorder, Z, X = P.Recorder, P.Z, P.X


def _g_noise(last, z):
    """The noise of the G step: the z passed in, or fresh noise of the same shape that G last saw
    (Goodfellow et al.'s Algorithm 1 samples new z for the G step: a valid variant)."""
    last = z if last is None else last
    if last.shape == z.shape and not torch.equal(last, z) and 0.3 < float(last.std()) < 3 \
            and float((last - last[:1]).abs().max()) > 0:
        return last
    return z


def _models(state):
    G, D = _Recorder(Z, X, torch.tanh), _Recorder(X, 1)
    G.load_state_dict(state["G"])
    D.load_state_dict(state["D"])
    return G, D


def _expected(rec, real, z, info):
    """The gradient the optimiser of record ``rec`` should hold, from the models when it stepped."""
    g, d = _models(rec)
    if rec["label"] == "opt_d":
        fake = g(z)
        loss, params = d_loss(d(real), d(fake.detach())), list(d.parameters())
    else:
        zg = _g_noise(rec["g_input"], z)
        loss, params = g_loss(d(g(zg))), list(g.parameters())
        info["g_loss_at_step"], info["fresh_z"] = loss.item(), zg is not z
    return list(torch.autograd.grad(loss, params))


def _run_step(fn, calls=2, seed=0):
    """Run the learner's step ``calls`` times on tiny models in eval mode; return what happened."""
    raw = probe(fn, P.train_step_run, calls, seed)
    with torch.random.fork_rng(devices=[]):
        G0, D0 = P.tiny_models(seed)
    first = raw["starts"][0]
    if any(not torch.equal(first[m][k], v) for m, net in (("G", G0), ("D", D0))
           for k, v in net.state_dict().items()):
        raise CheckFailure("the models your step received are not the ones the check built")
    per_call, refs = [], []
    for start, records in zip(raw["starts"], raw["per_call"]):
        real, z = start["real"], start["z"]
        # the reference step on a copy of the same state (models and optimisers)
        g2, d2 = _models(start)
        o_g2, o_d2 = torch.optim.SGD(g2.parameters(), lr=0.1), torch.optim.SGD(d2.parameters(), lr=0.1)
        o_g2.load_state_dict(start["opt_g"]), o_d2.load_state_dict(start["opt_d"])
        g2.eval(), d2.eval()
        with torch.no_grad():
            before = {"real_logits": d2(real).view(-1), "fake_logits": d2(g2(z)).view(-1)}
        ref = gan.train_step(g2, d2, o_g2, o_d2, real.clone(), z.clone())
        g2.eval(), d2.eval()
        with torch.no_grad():
            after = {"real_logits": d2(real).view(-1), "fake_logits": d2(g2(z)).view(-1)}
        info = {}
        per_call.append([(r["label"], r["own"], _expected(r, real, z, info), r["g_grads"])
                         for r in records])
        refs.append(dict(ref=ref, before=before, after=after, g_loss_at_step=info.get("g_loss_at_step"),
                         fresh_z=info.get("fresh_z", False)))
    return dict(modes=raw["modes"], outs=raw["outs"], per_call=per_call, refs=refs)


def _same(a, b, tol=1e-5):
    return a is not None and torch.allclose(a, b, rtol=1e-4, atol=tol)


def _all_zero(grads):
    return all(g is None or g.abs().max() == 0 for g in grads)


spec = register("gan.train_step", gan.train_step,
                "one D step on detached fakes, then one G step through D; returns the logged numbers")


@spec.case("returns d_loss, g_loss, d_real, d_fake")
def _(fn):
    out = _run_step(fn, calls=1)["outs"][0]
    if not isinstance(out, dict):
        raise CheckFailure(f"return a dict of floats, got {type(out).__name__}")
    missing = {"d_loss", "g_loss", "d_real", "d_fake"} - set(out)
    if missing:
        raise CheckFailure(f"the returned dict lacks {', '.join(sorted(missing))}")
    for k in ("d_real", "d_fake"):
        v = float(out[k])
        if not 0 <= v <= 1:
            raise CheckFailure(f"{k} = {v:.3g} is not a probability: average sigmoid(logits), "
                               "the D(x) a reader can interpret")


_PROCESS = ("steps opt_d, then opt_g, once each", "D step: no gradient leaks into G",
            "D step: gradient of d_loss on detached fakes, freshly zeroed", "G step: gradient of g_loss through D",
            "both models in train mode during the step")


# the logged numbers follow from the step: when the step itself is wrong (a missing detach, a misplaced
# zero_grad), the returned values differ as a consequence, and the step's own case names the cause
@spec.case("returned values match the reference step on a copy of the same state", depends_on=_PROCESS)
def _(fn):
    run = _run_step(fn)
    for k, (out, info) in enumerate(zip(run["outs"], run["refs"])):
        if not isinstance(out, dict) or {"d_loss", "g_loss", "d_real", "d_fake"} - set(out):
            raise CheckFailure("return a dict with d_loss, g_loss, d_real, d_fake (see the first case)")
        ref, before, after = info["ref"], info["before"], info["after"]
        got = {key: float(out[key]) for key in ("d_loss", "g_loss", "d_real", "d_fake")}
        want = dict(ref)
        if info["fresh_z"] and info["g_loss_at_step"] is not None:
            want["g_loss"] = info["g_loss_at_step"]  # your G step drew its own noise: its own loss
        close = {key: abs(got[key] - want[key]) <= 1e-5 + 1e-4 * abs(want[key]) for key in want}
        if all(close.values()):
            continue

        def near(v, w):
            return abs(v - float(w)) <= 1e-5 + 1e-4 * abs(float(w))
        sig = torch.sigmoid
        where = f" (call {k + 1})"
        if not (close["d_real"] and close["d_fake"]):
            dr, df = got["d_real"], got["d_fake"]
            if near(dr, want["d_fake"]) and near(df, want["d_real"]):
                raise CheckFailure("you swapped d_real and d_fake: d_real is the mean D(x) on the real "
                                   "batch, d_fake the mean D(G(z)) on the fakes" + where)
            if near(dr, before["real_logits"].mean()) or near(df, before["fake_logits"].mean()):
                raise CheckFailure("d_real / d_fake are means of raw logits: report probabilities, "
                                   "torch.sigmoid(logits).mean()" + where)
            if near(dr, sig(before["real_logits"].mean())) or near(df, sig(before["fake_logits"].mean())):
                raise CheckFailure("you took the sigmoid of the mean logit; report the mean of the "
                                   "probabilities, torch.sigmoid(logits).mean()" + where)
            if near(dr, sig(after["real_logits"]).mean()) or near(df, sig(after["fake_logits"]).mean()):
                raise CheckFailure("d_real / d_fake come from D after its update (or from the G step): "
                                   "report the probabilities D gave in the D step, from the logits its "
                                   "loss used" + where)
            raise CheckFailure(f"d_real = {dr:.4f}, d_fake = {df:.4f} where the reference step on the same "
                               f"state gives {want['d_real']:.4f}, {want['d_fake']:.4f}: the mean "
                               "sigmoid of the real and of the fake logits of the D step" + where)
        if not close["d_loss"]:
            raise CheckFailure(f"d_loss = {got['d_loss']:.4f} where the reference step gives "
                               f"{want['d_loss']:.4f}: return loss_d.item() of the loss you "
                               "backpropagated in the D step" + where)
        raise CheckFailure(f"g_loss = {got['g_loss']:.4f} where the reference step gives "
                           f"{want['g_loss']:.4f}: return loss_g.item() of the G step's loss, computed "
                           "through the updated D" + where)


@spec.case("steps opt_d, then opt_g, once each")
def _(fn):
    for calls in _run_step(fn)["per_call"]:
        order = [rec[0] for rec in calls]
        if order == ["opt_d", "opt_g"]:
            continue
        if "opt_g" not in order:
            raise CheckFailure(f"the optimisers stepped as {order}: opt_g never stepped, so the "
                               "generator never learns. After the generator's backward call "
                               "opt_g.step() (you stepped the wrong optimiser)")
        if "opt_d" not in order:
            raise CheckFailure(f"the optimisers stepped as {order}: opt_d never stepped. After the "
                               "discriminator's backward call opt_d.step() (you stepped the wrong "
                               "optimiser)")
        raise CheckFailure(f"the optimisers stepped as {order}; expected ['opt_d', 'opt_g']: "
                           "update D on the detached fakes first, then G through the updated D")


@spec.case("D step: no gradient leaks into G")
def _(fn):
    calls = _run_step(fn, calls=1)["per_call"][0]
    if calls and calls[0][0] == "opt_d" and not _all_zero(calls[0][3]):
        raise CheckFailure("when opt_d stepped, G's parameters already held gradients: D's loss "
                           "flowed back into G because the fakes were not detached. Use "
                           "D(fake.detach()) in the discriminator step")


@spec.case("D step: gradient of d_loss on detached fakes, freshly zeroed")
def _(fn):
    for k, calls in enumerate(_run_step(fn)["per_call"]):
        for label, grads, want, _ in calls:
            if label != "opt_d":
                continue
            if _all_zero(grads):
                raise CheckFailure("D's gradients are zero when opt_d steps: zero_grad() belongs "
                                   "before loss.backward(), not between backward() and step()")
            if all(_same(g, w) for g, w in zip(grads, want)):
                continue
            if k == 1:
                raise CheckFailure("at the second step D's gradient also contains the previous G "
                                   "step's gradient (G's backward runs through D): call "
                                   "opt_d.zero_grad() before the discriminator's backward")
            raise CheckFailure("D's gradient at opt_d.step() is not that of "
                               "d_loss(D(real), D(G(z).detach())) — check the loss and its inputs")


@spec.case("G step: gradient of g_loss through D")
def _(fn):
    prev_g = None
    for k, calls in enumerate(_run_step(fn)["per_call"]):
        leak = next((rec[3] for rec in calls if rec[0] == "opt_d"), None)  # G's grads when opt_d stepped
        for label, grads, want, _ in calls:
            if label != "opt_g":
                continue
            if _all_zero(grads):
                raise CheckFailure("G's gradients are zero when opt_g steps: in the G step pass the "
                                   "fakes to D without .detach() (and zero_grad before backward, "
                                   "not after)")
            if all(_same(g, w) for g, w in zip(grads, want)):
                prev_g = grads
                continue
            if leak is not None and not _all_zero(leak) and all(
                    _same(g, w + (0 if l is None else l)) for g, w, l in zip(grads, want, leak)):
                raise CheckFailure("G's gradient at opt_g.step() is g_loss's plus what the D step left "
                                   "in G: the fakes were not detached in the D step. Use "
                                   "D(fake.detach()) there")
            if prev_g is not None and all(
                    _same(g, w + (0 if p is None else p)) for g, w, p in zip(grads, want, prev_g)):
                raise CheckFailure("G's gradient at opt_g.step() also holds the previous step's "
                                   "gradient: call opt_g.zero_grad() right before the G backward")
            raise CheckFailure("G's gradient at opt_g.step() is not that of g_loss(D(G(z))) through "
                               "the updated D, for the noise G last saw (the z passed in, or fresh "
                               "noise if you drew some — both are fine). Check that the G step "
                               "computes g_loss on D(G(z)) after opt_d.step(), with the "
                               "non-saturating loss, that the fakes were detached in the D step "
                               "and that opt_g.zero_grad() comes right before the G backward")


@spec.case("both models in train mode during the step")
def _(fn):
    run = _run_step(fn, calls=1)
    if not all(run["modes"]["G"]) or not all(run["modes"]["D"]):
        raise CheckFailure("a model ran in eval mode during training (the notebook samples in eval "
                           "mode between steps): call G.train() and D.train() at the start of "
                           "the step, or batch norm and dropout behave as at test time")
