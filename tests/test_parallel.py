"""Data-parallel training and mixed precision (genlib.parallel, scripts/ddp_train.py)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genlib import parallel
from genlib.flow import flow_matching_loss

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- the all-reduce
def _shard_grads(sizes, seed=0):
    """Per-shard gradients of the mean loss, and the gradient of the whole batch's mean loss."""
    model = parallel.new_model(seed)
    x0, x1, t = parallel.global_batch(parallel._data(), 0, sum(sizes), seed)

    def grad(sl):
        model.zero_grad()
        flow_matching_loss(model, x0[sl], x1[sl], t[sl]).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
    local = torch.stack([grad(slice(a, b)) for a, b in zip(bounds, bounds[1:])])
    return local, grad(slice(0, sum(sizes)))


@pytest.mark.parametrize("sizes", [[16, 16], [8, 24], [5, 11, 16]])
def test_global_gradient_is_the_gradient_of_the_global_batch(sizes):
    local, full = _shard_grads(sizes)
    got = parallel.global_gradient(local, torch.tensor(sizes))
    assert torch.allclose(got, full, atol=1e-6, rtol=1e-5)
    if len(set(sizes)) > 1:   # the plain mean over processes is wrong for unequal shards
        assert not torch.allclose(local.mean(0), full, atol=1e-4, rtol=1e-3)
    else:
        assert torch.allclose(local.mean(0), full, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(local.sum(0), full, atol=1e-4, rtol=1e-3)   # the sum is W× too big


# ----------------------------------------------------------------------------- DDP = one process
@pytest.fixture(scope="module")
def single():
    return parallel.train_single(steps=10, batch=64)


def test_ddp_on_two_gloo_processes_equals_one_process_with_the_global_batch(single):
    ddp = parallel.train_ddp(steps=10, batch=64, world_size=2)
    assert parallel.max_difference(ddp, single) < 1e-5
    # not vacuous: the parameters moved, and one process on a single shard's batch differs
    start = parallel.new_model(0).state_dict()
    assert parallel.max_difference(single, start) > 1e-3
    half = parallel.train_single(steps=10, batch=32)
    assert parallel.max_difference(half, single) > 1e-3


def test_all_reduce_by_hand_equals_ddp(single):
    manual = parallel.train_ddp(steps=10, batch=64, world_size=2, manual=True)
    assert parallel.max_difference(manual, single) < 1e-5


def test_torchrun_script_checks_itself(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this python")
    out = tmp_path / "state.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2",
                        str(ROOT / "scripts" / "ddp_train.py"), "--steps", "5", "--check",
                        "--out", str(out)], capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "within tolerance" in r.stdout and "backend gloo" in r.stdout or "backend nccl" in r.stdout
    assert parallel.max_difference(torch.load(out, weights_only=True),
                                   parallel.train_single(steps=5, batch=64)) < 1e-5


def test_uneven_global_batch_is_refused():
    with pytest.raises(ValueError, match="divisible"):
        parallel.ddp_worker(0, 2, 1, 63, 0, 1e-3, None, manual=True)


# ----------------------------------------------------------------------------- mixed precision
def test_amp_plan_on_cpu_is_bf16_without_a_scaler():
    plan = parallel.amp_plan("cpu")
    assert plan["dtype"] == torch.bfloat16 and not plan["scaler"]


def test_mixed_precision_training_keeps_float32_master_weights_and_learns():
    torch.manual_seed(0)
    x = parallel._data()
    model = parallel.new_model(0)
    out = parallel.train_mixed(model, x, steps=60, amp=True)
    assert out["param_dtypes"] == ["torch.float32"]
    assert out["compute_dtype"] == "torch.bfloat16"       # the forward really ran in bf16
    assert not out["scaler"]
    assert sum(out["losses"][-10:]) / 10 < 0.8 * sum(out["losses"][:10]) / 10
    ref = parallel.train_mixed(parallel.new_model(0), x, steps=60, amp=False)
    assert ref["compute_dtype"] == "torch.float32"
    assert abs(sum(out["losses"][-10:]) - sum(ref["losses"][-10:])) / sum(ref["losses"][-10:]) < 0.1


def test_why_master_weights_are_float32():
    assert parallel.accumulate(torch.bfloat16) == 1.0           # every 1e-3 update rounds away
    assert abs(parallel.accumulate(torch.float32) - 2.0) < 1e-3
    # float16 (spacing 2⁻¹⁰ near 1) keeps 1e-3 updates but loses 1e-4 ones
    assert parallel.accumulate(torch.float16, update=1e-4) == 1.0
    assert abs(parallel.accumulate(torch.float32, update=1e-4) - 1.1) < 1e-3


def test_why_float16_needs_a_loss_scale():
    tiny = torch.tensor(1e-8)
    assert tiny.half().item() == 0.0                            # underflows in float16
    assert (tiny * 2 ** 16).half().float().item() / 2 ** 16 == pytest.approx(1e-8, rel=1e-2)
    assert tiny.bfloat16().item() != 0.0                        # bf16 has float32's range


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_mixed_precision_runs_with_its_plan():
    plan = parallel.amp_plan("cuda")
    out = parallel.train_mixed(parallel.new_model(0).cuda(), parallel._data(), steps=20, device="cuda")
    assert out["param_dtypes"] == ["torch.float32"] and out["scaler"] == plan["scaler"]


# ----------------------------------------------------------------------------- G and D on two devices
GAN_STEP = {
    "G makes fakes": (1.0, []),
    "D step": (2.0, ["G makes fakes"]),
    "G step (through D)": (3.0, ["D step"]),
}


def test_g_and_d_on_two_devices_do_not_overlap():
    one = parallel.critical_path(GAN_STEP, {k: 0 for k in GAN_STEP})
    two = parallel.critical_path(GAN_STEP, {"G makes fakes": 0, "D step": 1, "G step (through D)": 0})
    assert one == two == 6.0


def test_independent_work_on_two_devices_halves():
    tasks = {"half A": (3.0, []), "half B": (3.0, []), "all-reduce": (0.5, ["half A", "half B"])}
    assert parallel.critical_path(tasks, {"half A": 0, "half B": 1, "all-reduce": 0}) == 3.5
    assert parallel.critical_path(tasks, {k: 0 for k in tasks}) == 6.5
    with pytest.raises(ValueError, match="before one of its dependencies"):
        parallel.critical_path({"b": (1.0, ["a"]), "a": (1.0, [])}, {"a": 0, "b": 0})


def test_gan_step_split_d_overlaps_only_the_real_half():
    """D's real-batch half needs nothing from G: on two devices it runs while G makes fakes (5 vs 6
    units with G 1, D real 1, D fake 1, G update 3); data parallelism still does better (3.5)."""
    tasks = {"G: make fakes": (1.0, []), "D: real half": (1.0, []), "D: fake half": (1.0, ["G: make fakes"]),
             "G: update through D": (3.0, ["D: real half", "D: fake half"])}
    one = parallel.critical_path(tasks, {k: 0 for k in tasks})
    two = parallel.critical_path(tasks, {"G: make fakes": 0, "D: real half": 1, "D: fake half": 1,
                                         "G: update through D": 0})
    assert one == 6.0 and two == 5.0
