"""avmaster_core.core.atomic, the details mutation testing found unpinned (docs/mutation.md): nested folders, the
temp file's name (hidden, `.tmp`, matched by .gitignore), the exact permissions, the text encoding, and the
JSON options."""
from __future__ import annotations

import json
import os

import pytest

from avmaster_core.core import atomic


def test_missing_parent_folders_are_created_at_any_depth(tmp_path):
    path = atomic.write_text(tmp_path / "a" / "b" / "c" / "d.txt", "x")
    assert path.read_text() == "x"


def test_the_temp_file_is_hidden_beside_the_target_and_ends_in_tmp(tmp_path):
    seen = []

    def look(f):
        seen.extend(p.name for p in tmp_path.iterdir() if p.name != "last.pt")
        f.write(b"new")

    (tmp_path / "last.pt").write_bytes(b"old")
    atomic.atomic_write(tmp_path / "last.pt", look)
    assert len(seen) == 1 and seen[0].startswith(".last.pt.") and seen[0].endswith(".tmp"), seen
    assert (tmp_path / "last.pt").read_bytes() == b"new"


def test_permissions_are_exactly_what_a_plain_open_gives(tmp_path):
    old = os.umask(0o022)  # 0o022 also tells 0o666 from 0o667 (x bit for others)
    try:
        plain_masked = tmp_path / "plain_masked.txt"
        plain_masked.write_text("x")
        ours = atomic.write_text(tmp_path / "ours.txt", "x")
    finally:
        os.umask(old)
    assert ours.stat().st_mode & 0o777 == plain_masked.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("encoding, expected", [(None, "é".encode("utf-8")), ("latin-1", "é".encode("latin-1"))])
def test_text_mode_encodes_as_asked_and_utf8_by_default(tmp_path, encoding, expected):
    path = atomic.atomic_write(tmp_path / "t.txt", lambda f: f.write("é"), mode="w", encoding=encoding)
    assert path.read_bytes() == expected


def test_write_json_passes_its_options_to_json_dumps(tmp_path):
    path = atomic.write_json(tmp_path / "a.json", {"b": 1, "a": 2}, sort_keys=True)
    assert path.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    compact = atomic.write_json(tmp_path / "c.json", {"a": [1, 2]}, indent=None)
    assert compact.read_text() == '{"a": [1, 2]}'  # no indent, no trailing newline
    assert json.loads(compact.read_text()) == {"a": [1, 2]}


def test_publish_replaces_the_target_by_the_finished_file(tmp_path):
    (tmp_path / "table.npy").write_bytes(b"old")
    (tmp_path / ".table.npy.part").write_bytes(b"complete")
    assert atomic.publish(tmp_path / ".table.npy.part", str(tmp_path / "table.npy")) == tmp_path / "table.npy"
    assert (tmp_path / "table.npy").read_bytes() == b"complete" and not (tmp_path / ".table.npy.part").exists()
