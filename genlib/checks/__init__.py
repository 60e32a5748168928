"""One module per chapter; each registers its exercises' checks with ``genlib.exercises.register``.

Every module here is imported when the first check runs, so a new chapter only adds a file.
"""
