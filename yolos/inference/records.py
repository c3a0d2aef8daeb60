"""The records of a batch prediction job: one JSON line per image, streamed as images finish.

Each process of a job appends to its own ``records/part-RANK.jsonl`` in the output folder and
flushes every line, so a job killed at any moment (even by SIGKILL) keeps every finished image;
only a line being written at that instant can be torn, and it is dropped when the job resumes.
``--resume`` reads every part (whatever number of processes wrote them) and skips the images
that already have a result; the end of the job merges the parts into one ``predictions.json``.

A record is ``{"file": ..., "width", "height", "detections": [...], "annotated"?}`` for a
predicted image or ``{"file": ..., "error": ...}`` for one that could not be read (tried again
on resume).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..files import atomic_write_text

PARTS = "records"


def part_path(out: Path, rank: int) -> Path:
    return Path(out) / PARTS / f"part-{rank:05d}.jsonl"


def _read_part(path: Path) -> tuple[list[dict], int]:
    """The complete records of one part and the byte length they end at (a torn tail excluded)."""
    data = path.read_bytes()
    records, good_end, start = [], 0, 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            break
        line = data[start:end]
        start = end + 1
        if not line.strip():
            good_end = start
            continue
        try:
            records.append(json.loads(line))
        except ValueError:  # a torn line can only be the last one; stop at it
            break
        good_end = start
    return records, good_end


def read_records(out: Path) -> dict[str, dict]:
    """``file -> record`` over every part in ``out``; a predicted record wins over an error."""
    found: dict[str, dict] = {}
    for path in sorted((Path(out) / PARTS).glob("part-*.jsonl")):
        for record in _read_part(path)[0]:
            key = record.get("file")
            previous = found.get(key)
            if key is not None and (previous is None or "error" in previous):
                found[key] = record
    return found


class RecordWriter:
    """Appends records to this process's part, one flushed line each. Opening it first cuts a
    torn last line left by a killed run, so the part stays valid JSON lines."""

    def __init__(self, out: Path, rank: int):
        self.path = part_path(out, rank)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            _, good_end = _read_part(self.path)
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()  # in the OS's hands: survives the process being killed

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def merge(out: Path, files: list[str], header: dict, unreadable: list[dict] = ()) -> dict:
    """Write ``out/predictions.json`` from the parts: ``header`` plus ``images`` (in the order of
    ``files``) and ``failed`` (their error records, then ``unreadable``: sources that named no
    file). Returns what was written."""
    records = read_records(out)
    images = [records[f] for f in files if f in records and "error" not in records[f]]
    failed = [records[f] for f in files if f in records and "error" in records[f]] + list(unreadable)
    report = dict(header, images=images, failed=failed)
    atomic_write_text(Path(out) / "predictions.json", json.dumps(report, indent=1))
    return report
