"""Writing files so that a crash or a kill never leaves a half-written one in place."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

# The process's umask, read once (os.umask can only be read by setting it): files written through
# a temporary get the mode a plain open() would give them, whatever the writer library used.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """``with atomic_path(p) as tmp: write(tmp)``: the block writes a temporary file in the same
    folder (``suffix`` keeps an extension that writers read, e.g. ``.png``), which then replaces
    ``path`` in one ``os.replace``; readers see the old file or the new one, never a part. On an
    error the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
    try:
        try:
            yield tmp
        except OSError as err:  # named by the file the caller asked for, not our temporary
            raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}") from None
        with open(tmp, "rb+") as f:  # on disk before the rename, so a power cut keeps one of the two
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # some writers (safetensors) create 0600 files
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def remove_stale_temporaries(folder) -> list[Path]:
    """Remove the temporary files :func:`atomic_path` left in ``folder`` when a process was
    killed mid-write (``.NAME.tmpPID...`` whose process is gone); returns what was removed."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp*"):
        pid = tmp.name.rsplit(".tmp", 1)[-1].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running: its file
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed
