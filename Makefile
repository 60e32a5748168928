# genlib workbook — two commands:
#   make lab    set up .venv if needed, then open JupyterLab on the course
#   make test   set up .venv if needed, then run every test (pytest, then nbval on the notebooks)
#
# TORCH is installed first so that pip does not pull a multi-GB CUDA build on machines that have a
# CPU wheel at hand; override it, e.g. `make test TORCH="torch --index-url ..."` for a GPU build.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.genlib-installed

.PHONY: lab test test-unit test-solutions test-notebooks release setup clean book

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	@# the distribution is genlib-workbook; "genlib" on the package index is someone else's
	-@$(PY) -m pip uninstall --quiet --yes genlib >/dev/null 2>&1
	$(PY) -m pip install --quiet -e ".[test,lab,book]"
	@touch $(STAMP)

setup: $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

# One target, three timed parts (see DESIGN.md "How the test run is laid out").
test: $(STAMP)
	@set -e; t0=$$(date +%s); \
	echo "== 1/3 pytest: genlib, checks and their galleries, notebook sync, grader"; \
	GENLIB_PROGRESS=0 $(PY) -m pytest -q tests; t1=$$(date +%s); \
	echo "== 2/3 nbval: solutions/ at the default budget (proves the quality asserts)"; \
	GENLIB_PROGRESS=0 MPLBACKEND=Agg $(PY) -m pytest -q --nbval-lax --nbval-cell-timeout=600 -p no:randomly solutions; t2=$$(date +%s); \
	echo "== 3/3 nbval: notebooks/ at the smoke budget, no exercise solved (fallbacks)"; \
	GENLIB_BUDGET=smoke GENLIB_PROGRESS=0 MPLBACKEND=Agg $(PY) -m pytest -q --nbval-lax --nbval-cell-timeout=600 notebooks; t3=$$(date +%s); \
	echo "== wall time: pytest $$((t1-t0)) s, solutions $$((t2-t1)) s, notebooks $$((t3-t2)) s, total $$((t3-t0)) s"

test-unit: $(STAMP)
	GENLIB_PROGRESS=0 $(PY) -m pytest -q tests

# The chapters as a static website, from the executed solutions/ (nothing re-run, nothing
# downloaded): open build/book/html/index.html. tests/test_book.py builds it too.
book: $(STAMP)
	$(PY) -m genlib.book

release: $(STAMP)
	$(PY) -m genlib release

clean:
	rm -rf $(VENV)
