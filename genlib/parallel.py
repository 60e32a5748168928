"""Training faster with more hardware, measured honestly: data parallelism and mixed precision.

Data parallelism (DDP): every process holds a full copy of the model and a shard of the global
batch; after ``backward`` the gradients are averaged across processes (an all-reduce), so every
copy takes the same optimiser step. With equal shards and a loss that is a mean over samples, the
averaged gradient *is* the gradient of the global batch, so N processes reproduce one process with
the global batch, to float round-off. ``train_ddp`` runs that on CPU with the gloo backend (two
processes started by ``torch.multiprocessing.spawn``); ``scripts/ddp_train.py`` is the same worker
for ``torchrun --nproc_per_node 2`` (NCCL when every process has its own GPU).

Mixed precision: matmuls and convolutions in bfloat16/float16 inside ``torch.autocast``, parameters,
optimiser state and reductions in float32 ("master weights"), and for float16 a loss scale
(``GradScaler``) so that small gradients do not underflow. It mixes *float formats*; nothing is
converted to integers (that is quantisation, a different technique).

==========================  ====================================================================
``global_gradient``         the gradient of the global mean loss from per-process gradients
``train_single``            one process, the global batch (the reference run)
``train_ddp``               the same run on ``world_size`` processes (DDP, gloo on CPU)
``ddp_worker``              what each process runs (also called by ``scripts/ddp_train.py``)
``amp_plan``                which autocast dtype and whether a GradScaler, for a device
``train_mixed``             a training loop with autocast (+ GradScaler on CUDA float16)
``critical_path``           the makespan of a task graph on devices (G and D on two GPUs)
==========================  ====================================================================
"""
from __future__ import annotations

import contextlib
import os
import tempfile

import torch
import torch.distributed as dist
from torch import nn

from genlib.diffusion import TimeMLP
from genlib.flow import flow_matching_loss


# ============================================================================ the all-reduce, by hand
def global_gradient(local_grads: torch.Tensor, local_sizes: torch.Tensor) -> torch.Tensor:
    """The gradient of the loss averaged over the *global* batch, from per-process gradients.

    local_grads: (W, P), row w = gradient of process w's mean loss over its n_w samples;
    local_sizes: (W,) the n_w. Returns (P,) = Σ_w n_w·g_w / Σ_w n_w. With equal shards this is the
    plain mean over processes, which is what DDP's all-reduce computes (sum, then ÷ world size).
    """
    n = local_sizes.to(local_grads.dtype)
    return (n[:, None] * local_grads).sum(0) / n.sum()


# ============================================================================ one training run
def new_model(seed: int = 0) -> nn.Module:
    """The model every run starts from: a flow-matching MLP on flattened 8×8 digits (64 → 64)."""
    with torch.random.fork_rng(devices=[]):    # leaves the caller's random stream alone
        torch.manual_seed(seed)
        return TimeMLP(dim=64, hidden=128, layers=2, emb=32)


def _data() -> torch.Tensor:
    from genlib.data import digits

    return digits("train")[0].flatten(1)        # (N, 64) in [-1, 1]


def global_batch(x: torch.Tensor, step: int, size: int, seed: int = 0):
    """The whole global batch of one step, drawn identically on every process:
    (x0 noise, x1 data, t), each with ``size`` rows."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    idx = torch.randint(0, len(x), (size,), generator=g)
    x1 = x[idx]
    x0 = torch.randn(x1.shape, generator=g)
    t = torch.rand(size, generator=g)
    return x0, x1, t


def _state(model: nn.Module) -> dict:
    m = model.module if hasattr(model, "module") else model
    return {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}


def train_single(steps: int = 20, batch: int = 64, seed: int = 0, lr: float = 1e-3,
                 device="cpu") -> dict:
    """One process, global batch ``batch``, Adam: returns the final state dict (CPU tensors)."""
    x = _data()
    model = new_model(seed).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(steps):
        x0, x1, t = (a.to(device) for a in global_batch(x, step, batch, seed))
        loss = flow_matching_loss(model, x0, x1, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return _state(model)


def ddp_worker(rank: int, world_size: int, steps: int, batch: int, seed: int, lr: float,
               out_path: str | None, manual: bool = False, device: str = "cpu") -> dict:
    """The loop every process runs (the process group is already initialised).

    Each process draws the same global batch and keeps its rows [rank·b, (rank+1)·b), b =
    batch / world_size. ``manual``: average the gradients with ``dist.all_reduce`` by hand instead
    of wrapping the model in ``DistributedDataParallel`` (the two must agree). Rank 0 saves the
    final state dict to ``out_path``.
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    if batch % world_size:
        raise ValueError(f"global batch {batch} is not divisible by world size {world_size}")
    b = batch // world_size
    x = _data()
    model = new_model(seed).to(device)     # same seed: identical copies (DDP also broadcasts rank 0's)
    net = model if manual else DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(steps):
        x0, x1, t = (a[rank * b:(rank + 1) * b].to(device) for a in global_batch(x, step, batch, seed))
        loss = flow_matching_loss(net, x0, x1, t)   # mean over this process's b samples
        opt.zero_grad(set_to_none=True)
        loss.backward()                              # DDP: all-reduce-mean of the grads happens here
        if manual:
            for p in model.parameters():
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad /= world_size
        opt.step()
    state = _state(model)
    if rank == 0 and out_path:
        torch.save(state, out_path)
    return state


def _spawned(rank, world_size, init_file, steps, batch, seed, lr, out_path, manual, backend):
    torch.set_num_threads(1)     # two processes on two cores: one thread each
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)
    try:
        device = torch.device(f"cuda:{rank}") if backend == "nccl" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        ddp_worker(rank, world_size, steps, batch, seed, lr, out_path, manual, device)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def default_backend(world_size: int) -> str:
    """NCCL when there is one GPU per process, gloo otherwise (CPU)."""
    if torch.cuda.is_available() and torch.cuda.device_count() >= world_size and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def train_ddp(steps: int = 20, batch: int = 64, world_size: int = 2, seed: int = 0,
              lr: float = 1e-3, manual: bool = False, backend: str | None = None) -> dict:
    """Run ``ddp_worker`` on ``world_size`` processes (torch.multiprocessing.spawn) and return
    rank 0's final state dict. gloo on CPU; NCCL when each process has a GPU."""
    import torch.multiprocessing as mp

    backend = backend or default_backend(world_size)
    with tempfile.TemporaryDirectory() as tmp:
        init_file, out_path = os.path.join(tmp, "init"), os.path.join(tmp, "state.pt")
        mp.spawn(_spawned, args=(world_size, init_file, steps, batch, seed, lr, out_path, manual,
                                 backend), nprocs=world_size, join=True)
        return torch.load(out_path, weights_only=True)


def max_difference(a: dict, b: dict) -> float:
    """Largest absolute difference between two state dicts with the same keys."""
    if a.keys() != b.keys():
        raise ValueError("the state dicts hold different tensors")
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


# ============================================================================ mixed precision
def amp_plan(device) -> dict:
    """What mixed precision means on ``device``: {"dtype", "scaler", "why"}.

    CUDA with bf16 support: bfloat16, no scaler (bf16 has float32's exponent range). Older CUDA:
    float16 plus a GradScaler (float16's smallest normal number is 6e-5, so small gradients
    underflow without a loss scale). CPU: bfloat16 autocast, no scaler.
    """
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return {"dtype": torch.bfloat16, "scaler": False, "why": "CUDA with bf16: no loss scale needed"}
        return {"dtype": torch.float16, "scaler": True, "why": "CUDA float16: GradScaler against underflow"}
    return {"dtype": torch.bfloat16, "scaler": False, "why": f"{device.type}: bfloat16 autocast"}


def autocast(device, enabled: bool = True):
    """``torch.autocast`` with the dtype of ``amp_plan(device)`` (a no-op when not enabled)."""
    device = torch.device(device)
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_plan(device)["dtype"])


def train_mixed(model: nn.Module, x1: torch.Tensor, steps: int, amp: bool = True, batch: int = 128,
                lr: float = 1e-3, seed: int = 0, device="cpu") -> dict:
    """Flow-matching training of ``model`` (x, t, y) → v on data x1 (N, ...) with mixed precision
    done right: forward and loss under autocast, parameters and Adam state in float32, a
    GradScaler when the plan says float16 (CUDA without bf16). Returns {"losses", "param_dtypes",
    "compute_dtype", "scaler"}; ``compute_dtype`` is the dtype the model's output had."""
    device = torch.device(device)
    plan = amp_plan(device)
    use_scaler = amp and plan["scaler"]
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses, out_dtype = [], None
    for _ in range(steps):
        idx = torch.randint(0, len(x1), (batch,), generator=g)
        b1 = x1[idx].to(device)
        b0 = torch.randn(b1.shape, generator=g).to(device)
        t = torch.rand(batch, generator=g).to(device)
        with autocast(device, amp):
            tb = t.view(-1, *[1] * (b1.dim() - 1))
            v = model((1 - tb) * b0 + tb * b1, t)
            out_dtype = v.dtype
            loss = ((v.float() - (b1 - b0)) ** 2).mean()      # the loss reduction in float32
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()                         # scale is 1 when the scaler is off
        scaler.step(opt)
        scaler.update()
        losses.append(loss.item())
    return {"losses": losses, "param_dtypes": sorted({str(p.dtype) for p in model.parameters()}),
            "compute_dtype": str(out_dtype), "scaler": use_scaler}


def accumulate(dtype: torch.dtype, start: float = 1.0, update: float = 1e-3, steps: int = 1000) -> float:
    """Add ``update`` to a weight ``start`` ``steps`` times, storing the weight in ``dtype``.

    Why master weights stay float32: in bfloat16 the spacing between numbers near 1 is 2⁻⁷ ≈ 0.008,
    so an update of 1e-3 rounds away every time and the weight never moves."""
    w = torch.tensor(start, dtype=dtype)
    for _ in range(steps):
        w = w + torch.tensor(update, dtype=dtype)
    return float(w)


# ============================================================================ G and D on two GPUs
def critical_path(tasks: dict, placement: dict) -> float:
    """Makespan of a task graph: ``tasks`` = {name: (duration, [dependencies])}, ``placement`` =
    {name: device}. A task starts when its dependencies are done and its device is free; tasks on
    one device run one at a time in the order given. Returns the finishing time of the last task.

    A GAN step is mostly a chain: G makes fakes → D's update on them → G's update through the updated
    D. With D's step as one task, G and D on two devices give the same makespan as one device. Split
    D's step into its real-batch half (which needs nothing from G) and its fake-batch half, and the
    real half can run while G makes the fakes: with unit costs G 1, D real 1, D fake 1, G update 3,
    two devices take 5 instead of 6 — before the transfers of the fakes and of D's weights. Data
    parallelism (each device a full G and D and half the batch) halves every task instead.
    """
    done: dict = {}
    free: dict = {}
    for name, (dur, deps) in tasks.items():
        if any(d not in done for d in deps):
            raise ValueError(f"task {name!r} is listed before one of its dependencies {deps}")
        dev = placement[name]
        start = max([free.get(dev, 0.0)] + [done[d] for d in deps])
        done[name] = start + dur
        free[dev] = done[name]
    return max(done.values())
