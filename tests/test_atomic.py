"""avmaster_core.core.atomic: a writer that fails midway leaves the old file intact and no temp file behind, and
every writer of the package goes through it."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from avmaster_core.core import atomic

PACKAGE = Path(atomic.__file__).parent


def _leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


@pytest.mark.parametrize("mode", ["wb", "w"])
def test_a_writer_that_raises_halfway_leaves_the_old_file_and_no_temp_file(tmp_path, mode):
    path = tmp_path / "result.json"
    path.write_text("old content")

    def half_then_crash(f):
        f.write(b"new, half" if mode == "wb" else "new, half")
        f.flush()
        assert _leftovers(tmp_path, "result.json"), "the new content goes to a temp file beside the target"
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic.atomic_write(path, half_then_crash, mode=mode)
    assert path.read_text() == "old content"
    assert _leftovers(tmp_path, "result.json") == []


def test_interrupt_during_torch_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    atomic.save_torch({"step": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise KeyboardInterrupt  # like a Ctrl-C in the middle of torch.save

    with pytest.raises(KeyboardInterrupt):
        atomic.save_torch({"step": 2, "weights": torch.zeros(1000), "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert _leftovers(tmp_path, "last.pt") == []


def test_helpers_write_whole_files_with_usual_permissions_and_create_folders(tmp_path):
    text = atomic.write_text(tmp_path / "a" / "b.txt", "héllo\n")
    assert text.read_text(encoding="utf-8") == "héllo\n"
    assert (text.stat().st_mode & 0o777) != 0o600  # not mkstemp's private mode
    assert atomic.write_json(tmp_path / "c.json", {"x": 1}).read_text() == '{\n  "x": 1\n}\n'
    frame = pd.DataFrame({"a": [1, 2]})
    atomic.atomic_write(tmp_path / "t.csv", lambda f: frame.to_csv(f), mode="w")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv", index_col=0), frame)
    with pytest.raises(ValueError, match="mode"):
        atomic.atomic_write(tmp_path / "x", lambda f: None, mode="a")


def test_no_module_renames_a_temp_file_itself():
    """One implementation: only atomic.py (and download.py, whose .part file must survive for resuming a
    download; worklock.py, whose rename breaks a stale lock rather than publishing a written file) call
    os.replace, os.rename or mkstemp."""
    allowed = {"atomic.py", "download.py", "worklock.py"}
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name not in allowed
                 and re.search(r"os\.replace\(|os\.rename\(|mkstemp\(", p.read_text())]
    assert offenders == []
