"""genlib: the reference package of the image-generation workbook.

Learners meet it through ``from genlib.exercises import check``; everything else (datasets,
models, losses, metrics, plots, notebook tooling) is small plain-PyTorch modules, one idea each.
"""
__version__ = "0.1.0"
