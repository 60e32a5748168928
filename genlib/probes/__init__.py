"""Probes: the part of a check that touches the learner's object, run where that object lives.

``genlib grade`` computes every verdict in a judge process where no learner code runs; the
learner's function or class runs in a separate worker and only plain data crosses between them
(None, bool, int, float, str, CPU tensors, numpy arrays, generators, dtypes, sizes, and tuples,
lists and dicts of these). A case whose calls of ``fn`` take only plain data needs nothing more.

A case that must hand the learner's code something else — a network, an optimiser, a schedule,
a tensor on the ``meta`` device — or whose answer is a class, calls
``genlib.exercises.probe(fn, how, *plain_args)``. ``how`` is a module-level function of a module
in this package: it builds what it needs from the plain arguments (seeded inside the probe), runs
the learner's object, and returns raw observations (outputs, parameters after a step, ``.grad``
tensors, recorded inputs, shapes, type names) as plain data. The case then judges those
observations in the grader, against genlib's reference where there is one.

Rules: a probe module never contains the answer to an exercise (learner code in the worker can
import it); a probe may raise ``CheckFailure`` to fail the case with a message; the worker runs
only functions defined in ``genlib.probes.*``.
"""
