# The two commands of the README: `make demo` (the main job) and `make test` (`make test-fast`: its quick tier).
# Each creates .venv if it is missing and installs the project into it.
PY      := .venv/bin/python
STAMP   := .venv/.installed
PARAMS  ?=
NB_OUT  ?= build/notebooks
# make reproduce ARGS="--gpus 0 1 2 3"  (options of `avmaster reproduce run`; --dry-run shows what would run)
ARGS    ?=

.PHONY: demo reproduce report test test-fast mutate verify-runs lab venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (avmaster)"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m avmaster_core.notebooks run --mode smoke --out $(NB_OUT) $(PARAMS)

# The executed notebooks of `make demo` / `make reproduce` (NB_OUT) as a static website in build/report/html
# (Sphinx + myst-nb; offline, nothing re-executed; avmaster_core/website.py). It prints where the site is.
report: $(STAMP)
	$(PY) -m avmaster_core.website --notebooks $(NB_OUT) --out build/report

# The whole paper from features: trains and evaluates what is missing, then runs the notebooks in full mode.
reproduce: $(STAMP)
	$(PY) -m avmaster_core.cli reproduce run --notebook-out $(NB_OUT) $(ARGS)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

# The quick tier: tests/ only (no nbval on the notebooks) and nothing marked `slow`.
test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow" tests $(PYTEST_ARGS)

# Mutation testing of the modules the paper's numbers depend on (docs/mutation.md; about 40 min on one CPU core).
mutate: $(STAMP)
	$(PY) tools/mutate.py $(MUTATE_ARGS)

# Not in CI: re-train every shipped synthetic run (cheapest first, one thread) and require bit-identical metrics;
# resumable (runs recorded in build/verify-runs/verified.json are skipped). About 6.5 h of single-thread CPU.
verify-runs: $(STAMP)
	OMP_NUM_THREADS=1 nice $(PY) -m avmaster_core.remake --out build/verify-runs $(VERIFY_ARGS)

# make lab LAB_ARGS="--port 8890 --no-browser"; as root (containers) --allow-root is added.
LAB_ARGS ?=
lab: $(STAMP)
	.venv/bin/jupyter lab --ip 127.0.0.1 --notebook-dir notebooks $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) $(LAB_ARGS)

clean:
	rm -rf build .pytest_cache
