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

# Every extra, at the exact versions of constraints.txt (pyproject.toml states the compatible ranges).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c constraints.txt -e ".[all]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (avmaster)"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m avmaster_core.results.notebooks run --mode smoke --out $(NB_OUT) $(PARAMS)

# The executed notebooks of `make demo` / `make reproduce` (NB_OUT) as a static website in build/report/html
# (Sphinx + myst-nb; offline, nothing re-executed; avmaster_core/reproduction/website.py). It prints where the site is.
report: $(STAMP)
	$(PY) -m avmaster_core.cli report --notebooks $(NB_OUT) --out build/report

# The whole paper from features: trains and evaluates what is missing, then runs the notebooks in full mode.
reproduce: $(STAMP)
	$(PY) -m avmaster_core.cli reproduce run --notebook-out $(NB_OUT) $(ARGS)

# Tests run in TEST_WORKERS parallel processes (pytest-xdist; default: the CPU cores, at most 4; one torch thread
# each, tests/conftest.py); `make test TEST_WORKERS=0` runs them in this process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n < 4 ? n : 4 )))
PARALLEL := -n $(TEST_WORKERS) --dist loadscope

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PARALLEL) $(PYTEST_ARGS)

# The quick tier: tests/ only (no nbval on the notebooks) and nothing marked `slow`.
test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PARALLEL) -m "not slow" tests $(PYTEST_ARGS)

# Mutation testing of the modules the paper's numbers depend on (docs/mutation.md; about 40 min on one CPU core).
mutate: $(STAMP)
	$(PY) tools/mutate.py $(MUTATE_ARGS)

# Not in CI: re-train every shipped synthetic run (cheapest first, one thread) and require bit-identical metrics;
# resumable (runs recorded in build/verify-runs/verified.json are skipped). About 6.5 h of single-thread CPU.
verify-runs: $(STAMP)
	OMP_NUM_THREADS=1 nice $(PY) -m avmaster_core.reproduction.remake --out build/verify-runs $(VERIFY_ARGS)

# make lab LAB_ARGS="--port 8890 --no-browser"; as root (containers) --allow-root is added.
LAB_ARGS ?=
lab: $(STAMP)
	.venv/bin/jupyter lab --ip 127.0.0.1 --notebook-dir notebooks $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) $(LAB_ARGS)

clean:
	rm -rf build .pytest_cache
