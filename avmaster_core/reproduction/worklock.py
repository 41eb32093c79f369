"""A lock file that works across processes AND machines sharing a filesystem (NFS, Lustre, GPFS).

    lock = WorkLock(run_dir / ".reproduce.lock")
    if lock.acquire():             # False: another live worker holds it (lock.holder() says who)
        try: ...                   # a heartbeat thread refreshes the file's mtime while we work
        finally: lock.release()

Why not host + pid (sweep.py's lock): a pid means nothing on another machine, so a lock left by a node that
died would block the run forever, or be broken while its owner still runs. Here a holder proves it is alive
by touching the file every `heartbeat_s`; a lock whose mtime is older than `stale_after_s` belongs to a dead
worker and is taken over. Creation uses O_CREAT | O_EXCL (atomic on local filesystems and on NFSv3+), and a
stale lock is first renamed to a unique name (rename is atomic: of two workers breaking the same stale lock,
one wins), so two workers never both believe they hold it. On the holder's own host a dead pid frees the lock
at once. `owner` names the logical worker: a SLURM task requeued after preemption (same job and array
index, new pid, maybe another node) may take back its own lock without waiting for it to go stale.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from ..training.sweep import process_alive

HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0  # 10 missed heartbeats: a holder this silent is gone (or its filesystem is)


class WorkLock:
    """An exclusive claim on one piece of work, safe across machines; see the module docstring."""

    def __init__(self, path: str | os.PathLike, *, owner: str | None = None, heartbeat_s: float = HEARTBEAT_S,
                 stale_after_s: float = STALE_AFTER_S):
        if stale_after_s <= heartbeat_s:
            raise ValueError(f"stale_after_s ({stale_after_s}) must exceed heartbeat_s ({heartbeat_s})")
        self.path = Path(path)
        self.named_owner = owner is not None  # only a named owner may take back a lock it left behind
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- state of the file on disk --------------------------------------------------------------------------
    def holder(self) -> dict | None:
        """What the lock file says ({owner, host, pid, token, since, age_s}), None when there is no lock."""
        try:
            info = json.loads(self.path.read_text() or "{}")
            info["age_s"] = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, OSError):  # being written right now: treat as held, fresh
            return {"owner": "?", "host": "?", "pid": -1, "token": "", "since": time.time(), "age_s": 0.0}
        return info

    def _is_stale(self, info: dict) -> bool:
        if self.named_owner and info.get("owner") == self.owner:  # our own logical worker (a requeued task)
            return True
        if info["age_s"] > self.stale_after_s:
            return True
        pid = info.get("pid")
        return info.get("host") == socket.gethostname() and isinstance(pid, int) and pid > 0 and not process_alive(pid)

    def held_by_me(self) -> bool:
        info = self.holder()
        return info is not None and info.get("token") == self.token

    # -- acquire / release --------------------------------------------------------------------------------
    def acquire(self) -> bool:
        """Take the lock (breaking a stale one); False when another live worker holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = self.holder()
                if info is not None and not self._is_stale(info):
                    return False
                self._break_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                           "token": self.token, "since": time.time()}, f)
            self._start_heartbeat()
            return True
        return False

    def _break_stale(self) -> None:
        grave = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, grave)  # atomic: only one of several breakers moves the file
        except FileNotFoundError:
            return
        grave.unlink(missing_ok=True)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.held_by_me():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "WorkLock":
        if not self.acquire():
            raise RuntimeError(f"{self.path} is held by {describe_holder(self.holder())}")
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # -- heartbeat ----------------------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {self.path.name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except FileNotFoundError:  # broken by someone who judged us dead: nothing left to refresh
                return


def describe_holder(info: dict | None) -> str:
    """'host:pid (owner), 3 min ago' for messages; 'nobody' without a lock."""
    if not info:
        return "nobody"
    since = time.time() - float(info.get("since", time.time()))
    return f"{info.get('owner', '?')} on {info.get('host', '?')} (pid {info.get('pid', '?')}), " \
           f"started {since / 60:.0f} min ago, last heartbeat {info.get('age_s', 0):.0f} s ago"
