"""Saving the learner's function during a graded run (inside the learner's kernel).

Nothing here is trusted by the grader: the saved bytes are only ever unpickled inside a grading
worker, where the learner's code runs anyway, never in the judge.
"""
from __future__ import annotations

import os
from pathlib import Path

MAX_BYTES = 64 * 2 ** 20


def save_submission(name: str, fn) -> bool:
    """Called by ``check`` in grading mode: store the learner's function for the grader.

    Only the *first* ``check(name, ...)`` of a run is the submission (the exercise cell comes
    before any demonstration that calls ``check`` again on purpose-made wrong functions); returns
    whether this call was it.
    """
    folder = os.environ.get("GENLIB_SUBMISSION_DIR")
    if not folder:
        return False
    pkl, err = Path(folder) / f"{name}.pkl", Path(folder) / f"{name}.err"
    if os.path.lexists(pkl) or os.path.lexists(err):
        return False
    import cloudpickle

    try:
        data = cloudpickle.dumps(fn)
    except Exception as e:  # noqa: BLE001 - any pickling problem is the learner's to see
        err.write_text(f"could not save your function: {e}")
        return True
    pkl.write_bytes(data)
    return True
