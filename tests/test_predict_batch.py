"""Batch prediction as a job: --list, streamed records, 2 torchrun processes against 1, and a run
killed with SIGKILL then resumed (nothing lost, nothing twice)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from yolos.data.synthetic import write_synthetic_dataset
from yolos.inference.records import RecordWriter, part_path, read_records

CLI = [sys.executable, "-m", "yolos.cli", "predict"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("batch")
    write_synthetic_dataset(root / "set", 48, 128, 1, 6, seed=31, min_size=12, max_size=64)
    return sorted((root / "set" / "images").iterdir())


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _run(args, timeout=300):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=_env())
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def _by_file(out: Path) -> dict[str, dict]:
    report = json.loads((out / "predictions.json").read_text())
    files = [rec["file"] for rec in report["images"]]
    assert len(files) == len(set(files)), "an image appears twice"
    return {rec["file"]: rec for rec in report["images"]}


def test_list_file_equals_sources(images, tmp_path):
    listing = tmp_path / "files.txt"
    listing.write_text("# images to predict\n" + "\n".join(str(p) for p in images[:10]) + "\n\n")
    _run(CLI + ["--list", str(listing), "--out", str(tmp_path / "a"), "--no-save-images", "--threshold", "0.1"])
    _run(CLI + [str(p) for p in images[:10]] + ["--out", str(tmp_path / "b"), "--no-images", "--threshold", "0.1"])
    a, b = _by_file(tmp_path / "a"), _by_file(tmp_path / "b")
    assert list(a) == [str(p) for p in images[:10]] and a == b
    assert not any(p.suffix == ".jpg" for p in (tmp_path / "a").rglob("*"))  # --no-save-images


def test_missing_list_file_is_one_line(tmp_path):
    r = subprocess.run(CLI + ["--list", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=60, env=_env())
    assert r.returncode == 2 and "--list" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_two_processes_give_the_records_of_one(images, tmp_path):
    common = [str(images[0].parent), "--batch-size", "1", "--threshold", "0.1"]
    _run(CLI + common + ["--out", str(tmp_path / "one")])
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(29500 + os.getpid() % 1000),
          "-m", "yolos.cli", "predict"] + common + ["--out", str(tmp_path / "two")], timeout=600)
    one, two = _by_file(tmp_path / "one"), _by_file(tmp_path / "two")
    assert len(one) == len(images)
    assert list(two) == list(one) and two == one
    parts = sorted(p.name for p in (tmp_path / "two" / "records").iterdir() if p.name != "job.json")
    assert parts == ["part-00000.jsonl", "part-00001.jsonl"]
    for rec in two.values():  # the annotated images of both processes are there
        assert (tmp_path / "two" / rec["annotated"]).is_file()


def test_sigkill_then_resume_loses_and_duplicates_nothing(images, tmp_path):
    out = tmp_path / "job"
    args = CLI + [str(images[0].parent), "--batch-size", "1", "--threshold", "0.1", "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    part = part_path(out, 0)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it part-way: some records written, not all
        if part.exists() and part.read_text().count("\n") >= 5:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    written = part.read_text().count("\n")
    assert 5 <= written < len(images), "the job was not killed part-way"
    assert not (out / "predictions.json").exists()
    with open(part, "a") as f:  # what a kill in the middle of a write leaves
        f.write('{"file": "' + str(images[-1]) + '", "width": 12')

    r = _run(args + ["--resume"])
    assert f"{written} of {len(images)} images already done" in r.stderr
    resumed = _by_file(out)
    _run(CLI + [str(images[0].parent), "--batch-size", "1", "--threshold", "0.1", "--out", str(tmp_path / "whole")])
    whole = _by_file(tmp_path / "whole")
    assert list(resumed) == list(whole)
    assert {k: v["detections"] for k, v in resumed.items()} == {k: v["detections"] for k, v in whole.items()}
    lines = part.read_text().splitlines()
    assert len(lines) == len(images) and all(json.loads(ln) for ln in lines)  # torn line cut, none twice


def test_records_reader_prefers_results_over_errors(tmp_path):
    with RecordWriter(tmp_path, 0) as w:
        w.write({"file": "a.jpg", "error": "not a readable image"})
        w.write({"file": "b.jpg", "width": 1, "height": 1, "detections": []})
    with RecordWriter(tmp_path, 1) as w:
        w.write({"file": "a.jpg", "width": 2, "height": 2, "detections": []})
        w.write({"file": "b.jpg", "error": "later failure"})
    found = read_records(tmp_path)
    assert found["a.jpg"]["width"] == 2 and found["b.jpg"]["width"] == 1
