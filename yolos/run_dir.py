"""Run folders: a new run never writes over an earlier one, and two runs never share a folder.

Used by ``yolos train`` (a run = :data:`TRAIN_FILES`) and ``yolos predict`` (``predictions.json``).

* A new run whose ``--out`` already holds a run goes to the next free ``<out>2``, ``<out>3``, ...
  (as Ultralytics' ``runs/train2``) and says so.
* While a run writes, its folder holds :data:`LOCK_NAME`, locked with ``flock`` (the kernel frees
  it when the process ends) and naming the process id and host. A second run aimed at a locked
  folder picks the next free one (new run) or stops with a message naming the holder
  (``--resume``). A lock file left by a process that is gone is taken over, by one claimant only.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from pathlib import Path

from .errors import YolosError
from .validate import output_folder

TRAIN_FILES = ("state.pt", "log.jsonl", "last.safetensors", "best.safetensors")
LOCK_NAME = ".yolos-train.lock"


class RunDirError(YolosError, ValueError):
    """The run folder cannot be used; the message says why and what to do."""


def holds_run(folder: Path, run_files=TRAIN_FILES) -> bool:
    return any((folder / name).exists() for name in run_files)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class RunLock:
    """The lock file of one run folder (see the module docstring).

    Held with ``flock`` on the open file for the life of the run, so the kernel lets go of it
    when the process ends however it ends, and two claimants can never both hold it: a lock is
    free exactly when ``flock`` can be taken. After taking it, the holder checks that the path
    still names the file it locked (a releasing run unlinks it), and respects a lock file whose
    recorded process is alive on this host but holds no ``flock`` (written by an older yolos)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self.held = False
        self._fd: int | None = None

    def holder(self) -> dict | None:
        try:
            info = json.loads(self.path.read_text())
        except (OSError, ValueError, RecursionError):
            return None
        return info if isinstance(info, dict) else None

    def _live_without_flock(self) -> bool:
        info = self.holder()
        if not isinstance(info, dict) or info.get("host") != socket.gethostname():
            return False
        pid = info.get("pid")
        return isinstance(pid, int) and pid != os.getpid() and _alive(pid)

    def acquire(self) -> bool:
        """True if this process now holds the lock; False if a live process does."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False  # a live run holds it
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # released (unlinked) while we waited for it: try the new file
                os.close(fd)
                continue
            if self._live_without_flock():
                os.close(fd)
                return False
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
            self._fd, self.held = fd, True
            return True
        return False

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)  # while still locked: no one else holds this file
            os.close(self._fd)
            self._fd, self.held = None, False


def claim_run_dir(out, resume: bool, run_files=TRAIN_FILES, max_tries: int = 1000) -> tuple[Path, RunLock]:
    """The folder this run writes to, locked. ``resume``: ``out`` itself (it must not be locked by
    a live run). Otherwise ``out`` if it holds no run and no live lock, else the next free
    ``<out>N``."""
    try:
        out = output_folder(out)
    except ValueError as err:
        raise RunDirError(str(err)) from None
    if resume:
        lock = RunLock(out)
        if not lock.acquire():
            info = lock.holder() or {}
            raise RunDirError(
                f"--out: {out} is being written by another run (pid {info.get('pid', '?')} on "
                f"{info.get('host', '?')}); wait for it, or delete {lock.path} if that process is gone")
        return out, lock
    for n in range(1, max_tries + 1):
        candidate = out if n == 1 else out.with_name(f"{out.name}{n}")
        if candidate.exists() and not candidate.is_dir():
            continue
        if candidate.is_dir() and holds_run(candidate, run_files):
            continue
        lock = RunLock(candidate)
        if lock.acquire():
            if holds_run(candidate, run_files):  # another run got there between the check and the lock
                lock.release()
                continue
            return candidate, lock
    raise RunDirError(f"--out: no free run folder next to {out} after {max_tries} tries")


@contextlib.contextmanager
def run_dir(out, resume: bool = False, run_files=TRAIN_FILES, say=print):
    """``with run_dir(out) as folder:`` claims and locks a run folder (:func:`claim_run_dir`) for
    the block, says when it is not ``out``, and on leaving releases the lock and removes the
    folder if this call created it and the block left nothing in it."""
    out = Path(out)
    existed = out.exists()
    folder, lock = claim_run_dir(out, resume, run_files)
    created = folder != out or not existed
    if folder != out:
        say(f"{out} holds an earlier run or a running one: this run writes to {folder}")
    try:
        yield folder
    finally:
        lock.release()
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
