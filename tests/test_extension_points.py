"""One table per extension point: a new dataset layout or a new runtime is its table row (and its
own code) and nothing else; every command, message and list picks it up from the table."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import yolos
from yolos.cli import main
from yolos.data import dataset_config as dcfg
from yolos.data.check import RawSplit
from yolos.defaults import DEFAULT_IMAGE
from yolos.export import engines

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- a dataset layout
def _csv_folder(folder: Path):
    """A made-up layout: ``boxes.csv`` (file,x,y,w,h,class) beside the images."""
    if not (folder / "boxes.csv").is_file():
        return None
    spec = dcfg.SplitSpec("csv", folder, folder / "boxes.csv", origin="boxes.csv")
    return dcfg.DatasetConfig(spec, None, source=str(folder), layout="csv", kind="CSV boxes")


def _read_csv(dc, spec, split: str) -> RawSplit:
    rows = [line.split(",") for line in spec.annotations.read_text().splitlines() if line.strip()]
    files = sorted({r[0] for r in rows})
    names = sorted({r[5] for r in rows})
    images = [{"id": i + 1, "file_name": f} for i, f in enumerate(files)]
    annotations = [{"id": n + 1, "image_id": files.index(r[0]) + 1, "category_id": names.index(r[5]) + 1,
                    "bbox": [float(v) for v in r[1:5]], "iscrowd": 0} for n, r in enumerate(rows)]
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
    return RawSplit(split, "csv", str(spec.annotations), spec.images, coco)


def test_a_new_dataset_layout_is_one_table_row(tmp_path, monkeypatch, capsys):
    row = dcfg.Layout("csv", "CSV (boxes.csv beside the images)", _csv_folder, _read_csv)
    monkeypatch.setattr(dcfg, "LAYOUTS", {"csv": row, **dcfg.LAYOUTS})
    folder = tmp_path / "csv"
    folder.mkdir()
    lines = []
    for i in range(5):
        Image.new("RGB", (64, 48), (10 * i, 100, 200)).save(folder / f"p{i}.png")
        lines.append(f"p{i}.png,4,6,20,18,{'cat' if i % 2 else 'dog'}")
    (folder / "boxes.csv").write_text("\n".join(lines) + "\n")
    assert main(["data", "check", str(folder), "--val-fraction", "0"]) == 0
    out = capsys.readouterr().out
    assert "dataset: CSV boxes" in out and "cat  2" in out and "dog  3" in out
    ds = yolos.data.resolve_dataset(folder, val_fraction=0).dataset("train")
    assert len(ds) == 5 and [c["name"] for c in ds.categories] == ["cat", "dog"]
    (tmp_path / "nothing-here").mkdir()
    assert main(["data", "check", str(tmp_path / "nothing-here")]) == 2
    assert "CSV (boxes.csv beside the images)" in capsys.readouterr().err  # the messages list the table


# ----------------------------------------------------------------------------- a runtime
@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed")
def test_a_new_runtime_is_one_table_row(tmp_path, monkeypatch, capsys):
    calls = []

    def session(path, threads, precision):  # a made-up runtime: onnxruntime under another name
        import onnxruntime as ort

        inner = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: calls.append(x.shape) or tuple(inner.run(None, {"pixel_values": x}))

    row = engines.Runtime("fake", packages=("onnxruntime",), extra="export", precisions=("fp32",), session=session)
    monkeypatch.setattr(engines, "RUNTIMES", {**engines.RUNTIMES, "fake": row})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "p"
    assert main(["predict", str(DEFAULT_IMAGE), "--runtime", "fake", "--out", str(out), "--threshold", "0.2"]) == 0
    assert calls  # it ran
    theirs = json.loads((out / "predictions.json").read_text())["images"][0]["detections"]
    ours = yolos.from_pretrained("bundled").predict(DEFAULT_IMAGE, threshold=0.2)[0].to_dict()
    assert [d["label"] for d in theirs] == [d["label"] for d in ours]
    assert "fake" in yolos.cli.build_parser()._subparsers._group_actions[0].choices["serve"].format_help()
    from yolos.export.runtimes import modes

    assert "fake-fp32" in modes()
    network = yolos.compile_for(yolos.from_pretrained("bundled"), "fake")
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        assert (network(x)["logits"] - yolos.from_pretrained("bundled")(x)["logits"]).abs().max() < 1e-4
