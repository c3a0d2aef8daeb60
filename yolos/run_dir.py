"""Run folders: a new run never writes over an earlier one, and two runs never share a folder.

Used by ``yolos train`` (a run = :data:`TRAIN_FILES`) and ``yolos predict`` (``predictions.json``).

* A new run whose ``--out`` already holds a run goes to the next free ``<out>2``, ``<out>3``, ...
  (as Ultralytics' ``runs/train2``) and says so.
* While a run writes, its folder holds :data:`LOCK_NAME`, created atomically (``O_EXCL``) with the
  process id and host. A second run aimed at a locked folder picks the next free one (new run)
  or stops with a message naming the holder (``--resume``). A lock left by a process that no
  longer exists on this host is taken over.
"""
from __future__ import annotations

import contextlib
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
    """The lock file of one run folder (see the module docstring)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self.held = False

    def holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def _stale(self) -> bool:
        info = self.holder()
        if not info or info.get("host") != socket.gethostname():
            return False  # unreadable or another machine's: cannot tell, assume it is live
        return not _alive(int(info.get("pid", -1)))

    def acquire(self) -> bool:
        """True if this process now holds the lock; False if a live process does."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale():
                    return False
                self.path.unlink(missing_ok=True)  # its process is gone: take the folder over
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"pid": os.getpid(), "host": socket.gethostname()}, f)
            self.held = True
            return True
        return False

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


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
