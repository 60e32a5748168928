"""Saving the learner's function during a graded run (inside the learner's kernel).

Nothing here is trusted by the grader: the saved bytes are only ever unpickled inside a grading
worker, where the learner's code runs anyway, never in the judge.
"""
from __future__ import annotations

import os
from pathlib import Path

MAX_BYTES = 64 * 2 ** 20


def save_submission(name: str, fn) -> None:
    """Called by ``check`` in grading mode: store the learner's function for the grader."""
    folder = os.environ.get("GENLIB_SUBMISSION_DIR")
    if not folder:
        return
    import cloudpickle

    try:
        data = cloudpickle.dumps(fn)
    except Exception as e:  # noqa: BLE001 - any pickling problem is the learner's to see
        (Path(folder) / f"{name}.err").write_text(f"could not save your function: {e}")
        return
    (Path(folder) / f"{name}.pkl").write_bytes(data)
