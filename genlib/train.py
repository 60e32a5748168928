"""Training helpers shared by the chapters: progress bars, a metric history, infinite batches."""
from __future__ import annotations

import os
from collections import defaultdict

import torch


def progress(iterable=None, total: int | None = None, desc: str | None = None, **kw):
    """``tqdm.auto`` progress bar; silenced with ``GENLIB_PROGRESS=0`` (used by the tests)."""
    from tqdm.auto import tqdm

    disable = os.environ.get("GENLIB_PROGRESS", "1") == "0"
    return tqdm(iterable, total=total, desc=desc, disable=disable, leave=False, **kw)


class History(defaultdict):
    """``history["d_loss"].append(v)`` for every step; ``history.last("d_loss", 100)`` averages."""

    def __init__(self):
        super().__init__(list)

    def log(self, **values):
        for k, v in values.items():
            self[k].append(float(v.detach()) if torch.is_tensor(v) else float(v))

    def last(self, key: str, n: int = 100) -> float:
        v = self[key][-n:]
        if not v:
            raise KeyError(f"nothing logged under {key!r}")
        return sum(v) / len(v)


def batches(x: torch.Tensor, batch_size: int, generator: torch.Generator | None = None,
            *tensors: torch.Tensor):
    """Endless shuffled minibatches of ``x`` (and aligned ``tensors``), reshuffled every epoch."""
    n = len(x)
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the dataset ({n})")
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n - batch_size + 1, batch_size):
            idx = perm[i:i + batch_size]
            yield (x[idx], *(t[idx] for t in tensors)) if tensors else x[idx]
