"""threads.py: the --threads default and the allocator setting applied with it."""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys

import pytest

from avmaster_core.training.threads import keep_freed_memory, threads_for


def test_auto_threads_are_one_for_the_cpu_size_and_torchs_default_otherwise():
    assert threads_for(argparse.Namespace(threads=0, size="cpu")) == 1
    assert threads_for(argparse.Namespace(threads=0, size="full")) == 0
    assert threads_for(argparse.Namespace(threads=3, size="cpu")) == 3
    with pytest.raises(ValueError, match="--threads"):
        threads_for(argparse.Namespace(threads=-1))


def test_keep_freed_memory_has_a_switch(monkeypatch):
    monkeypatch.setenv("AVMASTER_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_applies_on_glibc():
    """In a child process (the setting lasts for the process): every mallopt call accepted on glibc."""
    env = dict(os.environ, AVMASTER_KEEP_FREED_MEMORY="1")
    code = "from avmaster_core.training.threads import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    expected = "True" if platform.libc_ver()[0] == "glibc" else "False"
    assert out.stdout.strip() == expected
