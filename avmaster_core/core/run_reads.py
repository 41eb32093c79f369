"""The run folders this process has read since the last `reset_reads()`: a table or figure written next lists
them in its provenance sidecar (training/provenance.py). Reading a checkpoint or a run's test table notes it."""
from __future__ import annotations

from pathlib import Path

_READS: set[Path] = set()


def reset_reads() -> None:
    """Forget the runs read so far (a notebook starts: its tables list what it reads from now on)."""
    _READS.clear()


def note_run_read(run_dir) -> None:
    """A table or figure about to be written may rest on `run_dir` (a folder with config.json)."""
    run_dir = Path(run_dir).resolve()
    if (run_dir / "config.json").is_file():
        _READS.add(run_dir)


def runs_read() -> list[Path]:
    """The run folders read since reset_reads(), sorted."""
    return sorted(_READS)
