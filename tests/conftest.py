"""Shared test fixtures and helpers. Real annotation files are read from ../shared/data when present.

Fixtures (any test file can ask for them by name):
    shared_data     the folder of real annotation files (skips where absent)
    tiny_data       a 30-video synthetic benchmark, made once per session
    one_thread      torch on one thread (opt in: `pytestmark = pytest.mark.usefixtures("one_thread")`)
    run_cli         `python -m avmaster_core.cli ARGS` in a fresh process -> its stdout

Helpers (import them: `from conftest import TINY_MODEL, tiny_model, tiny_train`):
    TINY_MODEL, tiny_model(), tiny_train(), set_args(), read_metrics(), metrics_without_timing(),
    state_dicts_equal(), tiered() (every experiment in `make test`, QUICK_EXPERIMENTS in `make test-fast`)

Tiers: `make test-fast` skips the tests marked `slow` (more than a few seconds each) and the notebooks;
`make test` runs everything. Both run in parallel worker processes (pytest-xdist, `-n` and `--dist loadscope` in
the Makefile): each worker uses one torch thread (and so do the processes it starts); `xdist_scope` says which
tests share a worker.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a missing weight fails fast instead of trying the network

# Torch threads per test process: two, or under pytest-xdist the cores shared among the workers (one each on two
# cores), also for the commands and notebook kernels a worker starts (OMP_NUM_THREADS).
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
TORCH_THREADS = max(1, min(2, (os.cpu_count() or 1) // WORKERS))
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(TORCH_THREADS))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AVMASTER_SHARED_DATA", REPO.parent / "shared" / "data"))

# A narrow official-preset model: same code paths as the real one, ~0.1 s per step on one CPU thread
# (the speed benchmark's tiny shape, so the two cannot drift apart).
from avmaster_core.training.benchmark import TINY_MODEL  # noqa: E402

TIMING_FIELDS = {"samples_per_s", "train_seconds", "eval_seconds"}


# ---------------------------------------------------------------------------------------------------- hooks
@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which `make test` runs with `--dist loadscope`
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadscope` with this suite's scopes (`xdist_scope`): tests go one by one to whichever worker is free,
    except those that must or had better share a worker; the largest scopes (the notebooks) are handed out first."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SuiteScopes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return SuiteScopes(config, log)


# Modules whose module-scoped fixture is expensive (a training run, executed notebooks, a rehearsal, a full-size
# state dict): their tests share one worker, so that it is built once. Cheap module fixtures are built once per
# worker instead, which keeps large modules such as test_bad_input.py spread over the workers.
ONE_WORKER_MODULES = {"test_analysis.py", "test_engine.py", "test_official.py", "test_provenance.py", "test_report.py",
                      "test_reproduce_rehearsal.py"}


def xdist_scope(nodeid: str) -> str:
    """The unit of work of a test under pytest-xdist: the notebook for nbval's cells (they run in order in one
    kernel), the module for the tests of ONE_WORKER_MODULES, else the test itself."""
    path = nodeid.split("::", 1)[0]
    if path.endswith(".ipynb") or Path(path).name in ONE_WORKER_MODULES:
        return path
    return nodeid


# ---------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def _restore_working_folder(monkeypatch):
    """`notebook_settings` moves a kernel into notebooks/ (os.chdir); called in this process it would move pytest
    too, and nbval, which runs after these tests, reads tests/nbval_sanitize.cfg relative to the working folder."""
    monkeypatch.chdir(Path.cwd())


@pytest.fixture(autouse=True)
def _no_runs_read_yet():
    """Each test starts with an empty list of runs read (core.run_reads): findings and provenance sidecars
    read it, and what an earlier test read in this process is not this test's."""
    from avmaster_core.core.run_reads import reset_reads
    reset_reads()
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real annotation files; skips the test cleanly where it is absent, except under CI=true,
    where a missing folder fails the run (CI is expected to provide it: a silent skip would hide tests)."""
    if not SHARED_DATA.is_dir():
        reason = f"real annotation files not found at {SHARED_DATA} (set AVMASTER_SHARED_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI=true requires them (unset CI to skip these tests locally)")
        pytest.skip(reason)
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _few_threads():
    import torch
    torch.set_num_threads(TORCH_THREADS)
    yield


@pytest.fixture
def one_thread():
    """One torch thread: faster than two on a shared 2-core box, and the same numbers in every process."""
    import torch
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A 30-video synthetic benchmark (84 train / 12 val / 24 test questions, T = 6)."""
    from avmaster_core.data.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("synthetic_tiny")
    generate_synthetic(root, num_videos=30, questions_per_video=4, T=6)
    return root


@pytest.fixture
def run_cli():
    """Runs `python -m avmaster_core.cli *args` in a fresh process (what a user's shell does); returns stdout,
    and fails the test with the process's stderr where it exits non-zero."""
    def run(*args: str, timeout: float = 120) -> str:
        done = subprocess.run([sys.executable, "-m", "avmaster_core.cli", *args], capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, f"avmaster {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
        return done.stdout
    return run


# ---------------------------------------------------------------------------------------------------- helpers
# The experiments whose every-experiment checks also run in the quick tier: one per structural switch (focus
# capture, paths, template length, sharing, combination, inputs, the question-only baseline).
QUICK_EXPERIMENTS = ("default", "table7/wo_avfc", "table7/wo_tdpp", "table7/wo_gpap", "table9/len2", "table10/none",
                     "table13/w_add", "fig5/a+q", "baseline/question_only")


def tiered(names, quick=QUICK_EXPERIMENTS) -> list:
    """Parametrize values: those in `quick` run in every tier, the others carry the slow marker (`make test` only)."""
    unknown = set(quick) - set(names)
    if unknown:
        raise ValueError(f"QUICK_EXPERIMENTS names unknown experiments {sorted(unknown)}")
    return [name if name in quick else pytest.param(name, marks=pytest.mark.slow) for name in names]


def tiny_model():
    """The official preset at TINY_MODEL's width."""
    from avmaster_core.core.config import ModelConfig

    return ModelConfig.official(**TINY_MODEL)


def tiny_train(**changes):
    """A short TrainConfig for tiny_data (2 epochs, batch 16, checkpoints every 2 steps), with `changes`."""
    from avmaster_core.training.run_config import TrainConfig

    base = dict(epochs=2, batch_size=16, lr=1e-3, progress=False, checkpoint_every_steps=2)
    return TrainConfig(**{**base, **changes})


def set_args(changes: dict) -> list[str]:
    """ModelConfig changes as the command line's `--set key=value` options."""
    return [arg for key, value in changes.items() for arg in ("--set", f"{key}={value}")]


def read_metrics(run_dir) -> list[dict]:
    """A run folder's metrics.jsonl, one dict per epoch."""
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def metrics_without_timing(history: list[dict]) -> list[dict]:
    """Epoch records without the wall-clock fields (which differ between two identical runs)."""
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in history]


def state_dicts_equal(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
