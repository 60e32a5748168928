"""Data-parallel training with torchrun: the worker of ``genlib.parallel`` on N processes.

    torchrun --standalone --nproc_per_node 2 scripts/ddp_train.py --steps 20 --batch 64 --check

torchrun starts the processes and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT;
this script joins the process group (``env://``), gloo on CPU or NCCL when every process has its
own GPU, and runs ``genlib.parallel.ddp_worker``: each process draws the same global batch, keeps
its shard, and DistributedDataParallel averages the gradients. With ``--check`` rank 0 then trains
one process on the whole global batch and prints the largest parameter difference (float round-off,
about 1e-7 on CPU) and exits non-zero when it exceeds ``--tol``.

Run without torchrun it trains a single process (world size 1).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from genlib import parallel  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64, help="global batch (split across processes)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--manual", action="store_true", help="all_reduce by hand instead of DDP")
    ap.add_argument("--backend", choices=("gloo", "nccl"), default=None)
    ap.add_argument("--check", action="store_true", help="compare with one process on the global batch")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--out", default=None, help="save rank 0's final state dict here")
    args = ap.parse_args(argv)

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world == 1 and "MASTER_ADDR" not in os.environ:     # plain `python scripts/ddp_train.py`
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29517")
    backend = args.backend or parallel.default_backend(world)
    if backend == "nccl":
        torch.cuda.set_device(local)
        device = torch.device(f"cuda:{local}")
    else:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world)
    t0 = time.time()
    try:
        state = parallel.ddp_worker(rank, world, args.steps, args.batch, args.seed, args.lr,
                                    args.out, args.manual, device)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    if rank != 0:
        return 0
    print(f"{world} process(es), backend {backend}, {args.steps} steps of global batch {args.batch}: "
          f"{time.time() - t0:.1f} s")
    if args.check:
        single = parallel.train_single(args.steps, args.batch, args.seed, args.lr, device)
        diff = parallel.max_difference(state, single)
        ok = diff <= args.tol
        print(f"largest parameter difference vs one process on the global batch: {diff:.2e} "
              f"({'within' if ok else 'ABOVE'} tolerance {args.tol:g})")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
