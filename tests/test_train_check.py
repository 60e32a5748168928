"""genlib.reproduce: the functional comparison behind scripts/train_*.py --check (tiny models, no training)."""
import math

import pytest
import torch

from genlib.reproduce import compare, compare_all, verdict, weight_difference


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g)
    w = torch.randn(5, 3, generator=g)
    return x, (x @ w).argmax(1), w


def _model(w):
    m = torch.nn.Linear(5, 3, bias=False)
    with torch.no_grad():
        m.weight.copy_(w.T)
    return m


def _acc(m, x, y):
    with torch.no_grad():
        return (m(x).argmax(1) == y).float().mean().item()


def _check(new, old, x, y, lines=None):
    c = [compare("accuracy", _acc(new, x, y), _acc(old, x, y), abs_tol=0.02)]
    return verdict("toy.pt", c, weight_difference(new.state_dict(), old.state_dict()),
                   out=(lines.append if lines is not None else lambda s: None))


def test_same_function_passes_and_bit_identity_is_information():
    x, y, w = _data()
    lines = []
    assert _check(_model(w), _model(w), x, y, lines)
    assert any("bit for bit identical" in s for s in lines)
    # another CPU's rounding: every tensor differs a little, the function is the same → still passes
    lines = []
    assert _check(_model(w * (1 + 1e-4)), _model(w), x, y, lines)
    assert any("differ bit-wise in 1 of 1" in s for s in lines)


def test_clearly_different_model_fails():
    x, y, w = _data()
    other = _model(torch.randn(5, 3, generator=torch.Generator().manual_seed(7)))
    assert _acc(other, x, y) < 0.8 and _acc(_model(w), x, y) == 1.0
    assert not _check(other, _model(w), x, y)


def test_nan_fails():
    x, y, w = _data()
    broken = _model(w.clone().fill_(float("nan")))
    lines = []
    assert not _check(broken, _model(w), x, y, lines)
    assert any("NaN/inf" in s for s in lines)
    # a NaN score fails on either side, even with a huge tolerance; NaN weights fail even if the
    # score is somehow fine
    assert not compare("loss", float("nan"), 1.0, rel_tol=10).ok
    assert not compare("loss", 1.0, float("nan"), rel_tol=10).ok
    assert not compare("loss", float("inf"), 1.0, abs_tol=1e9).ok
    wd = weight_difference({"w": torch.tensor([1.0, float("nan")])}, {"w": torch.tensor([1.0, 2.0])})
    assert not verdict("x", [compare("loss", 1.0, 1.0, abs_tol=0.1)], wd, out=lambda s: None)


def test_tolerance_edges_and_relative_tolerance():
    assert compare("acc", 0.95, 0.97, abs_tol=0.02 + 1e-12).ok
    assert not compare("acc", 0.94, 0.97, abs_tol=0.02).ok
    assert compare("fid", 0.36, 0.30, rel_tol=0.25).ok          # |Δ| 0.06 ≤ 0.075
    assert not compare("fid", 0.40, 0.30, rel_tol=0.25).ok      # |Δ| 0.10 > 0.075
    assert not compare("fid", 0.20, 0.30, rel_tol=0.25).ok      # two-sided: better by far is not a reproduction
    with pytest.raises(ValueError):
        compare("acc", 1.0, 1.0)                                 # no tolerance = bit identity again
    with pytest.raises(ValueError):
        compare("acc", 1.0, 1.0, abs_tol=-0.1)


def test_structure_mismatch_fails_and_nothing_to_compare_is_an_error():
    wd = weight_difference({"a": torch.zeros(2), "b": torch.zeros(1)}, {"a": torch.zeros(3)})
    assert wd.structural_fault and set(wd.mismatched) == {"a", "b"}
    assert not verdict("x", [compare("m", 1.0, 1.0, abs_tol=0.1)], wd, out=lambda s: None)
    with pytest.raises(ValueError):
        verdict("x", [], None, out=lambda s: None)
    with pytest.raises(KeyError):
        compare_all({"acc": 1.0}, {}, {"acc": {"abs_tol": 0.1}})


def test_nested_state_dicts_and_plain_values():
    new = {"G": {"w": torch.ones(2, dtype=torch.float16)}, "width": 8}
    old = {"G": {"w": torch.ones(2, dtype=torch.float16)}, "width": 16}
    wd = weight_difference(new, old)
    assert wd.differ == ["width"] and not wd.structural_fault and wd.n == 2
    old["G"]["w"] = torch.tensor([1.0, 1.5], dtype=torch.float16)
    assert math.isclose(weight_difference(new, old).max_abs, 0.5)


def test_a_script_check_passes_the_shipped_file_and_fails_a_broken_one(tmp_path, capsys):
    """scripts/train_applications.py's check on style_ff.pt: shipped vs itself passes; the same file
    with its last layer's weights scaled by 0.5 (a clearly different function) and with a NaN fail."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
    import train_applications as ta

    shipped = os.path.join(ta.WEIGHTS, "style_ff.pt")
    assert ta.check(shipped, shipped)
    state = torch.load(shipped, weights_only=True)
    last = [k for k in state if k.endswith("weight")][-1]
    changes = {"half": lambda w: w * 0.5,
               "nan": lambda w: w.index_fill(0, torch.tensor([0]), float("nan"))}
    for name, change in changes.items():
        bad = dict(state, **{last: change(state[last])})
        path = tmp_path / name / "style_ff.pt"
        path.parent.mkdir()
        torch.save(bad, path)
        assert not ta.check(str(path), shipped), name
    assert "NOT reproduced" in capsys.readouterr().out
