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
import sys
from pathlib import Path

from ..files import atomic_write_text

PARTS = "records"


def part_path(out: Path, rank: int) -> Path:
    return Path(out) / PARTS / f"part-{rank:05d}.jsonl"


def _read_part(path: Path) -> tuple[list[dict], int, int]:
    """``(records, end, damaged)``: the records of one part, the byte length of its complete
    lines (a torn last line, without its newline, is left out) and how many complete lines were
    not records (damaged by hand or disk: skipped, never a reason to drop the lines after them)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # what follows the last newline is a line torn by a kill
    records, damaged = [], 0
    for line in data[:end].split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            damaged += 1
            continue
        if isinstance(record, dict) and isinstance(record.get("file"), str):
            records.append(record)
        else:
            damaged += 1
    return records, end, damaged


def read_records(out: Path) -> dict[str, dict]:
    """``file -> record`` over every part in ``out``; a predicted record wins over an error."""
    found: dict[str, dict] = {}
    for path in sorted((Path(out) / PARTS).glob("part-*.jsonl")):
        records, _, damaged = _read_part(path)
        if damaged:
            print(f"yolos predict: {path}: {damaged} damaged line(s) skipped (their images are predicted again)",
                  file=sys.stderr)
        for record in records:
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
            _, complete, _ = _read_part(self.path)
            with open(self.path, "r+b") as f:
                f.truncate(complete)
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


JOB_FILE = "job.json"


def check_job(out: Path, job: dict, resume: bool) -> None:
    """A new job records what it is (``records/job.json``: model, threshold, sizes, ...); a
    resumed one must be the same job, else a ValueError says what differs (its records would
    otherwise be mixed with results of other settings)."""
    path = Path(out) / PARTS / JOB_FILE
    if resume and path.exists():
        try:
            before = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            raise ValueError(f"--resume: {path} is damaged; start a new job in another --out") from None
        if not isinstance(before, dict):
            raise ValueError(f"--resume: {path} is damaged (not a JSON object); start a new job in another --out")
        differ = [f"{k} {before.get(k)!r} -> {v!r}" for k, v in job.items() if before.get(k) != v]
        if differ:
            raise ValueError(f"--resume: the job in {out} ran with other settings ({'; '.join(differ)}); "
                             f"resume it with its own, or start a new job in another --out")
        return
    if resume and any((Path(out) / PARTS).glob("part-*.jsonl")):
        raise ValueError(f"--resume: {out} holds records of a job that recorded no settings; start a new job")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(job, indent=1))


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
