"""Grading submitted notebooks so that learner code cannot forge a verdict.

* :mod:`genlib.grading.submission` — called by ``check`` in grading mode, inside the learner's
  kernel: stores the learner's function (cloudpickle) for the grader.
* :mod:`genlib.grading.judge` — the judge: runs genlib's check cases in the grading process, on a
  proxy whose calls run the learner's function in a worker; computes every verdict.
* :mod:`genlib.grading.worker` — the worker: a separate, limited process where the learner's
  function runs; it returns plain data only.
* :mod:`genlib.grading.wire` — the plain-data message format between the two (no pickle).
* :mod:`genlib.probes` — genlib code that a check runs on the learner's object inside the worker
  when a case needs a network, an optimiser or a class (``genlib.exercises.probe``).

``genlib.notebooks.grade`` ties them together. This package imports nothing eagerly, so that
``genlib.exercises`` can use :mod:`~genlib.grading.submission` without an import cycle.
"""
