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
import it); the conditions for *passing* are checked in the case, on the probe's result, never in
the probe (learner code can change what runs in the worker, so a probe may raise ``CheckFailure``
only to fail a case, with a message); return raw observations rather than verdict-like booleans
where you can; the worker runs only functions defined in ``genlib.probes.*``; an exception the
learner's code raises inside a probe reaches the case as the same built-in exception type.

The probes of chapters 03, 04, 07 and 11 (``ch03.py`` …) are worked examples.
"""
