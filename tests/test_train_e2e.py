"""train -> val -> predict through the real CLI, asserting that learning happens (slow).

The regime is the one a 2-core CPU can show in minutes: a small fixed set of synthetic images
trained for many epochs with ``--recipe scratch``, evaluated and predicted on those same images.
At DETR's plateau AP50 is about 0.001 (every [DET] token predicts the same box); the test asks
for far more. Generalization to unseen images needs a much longer run (docs/training.md).
"""
from __future__ import annotations

import json

import pytest

from yolos.cli import main
from yolos.data.synthetic import write_synthetic_dataset

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def test_train_val_predict_rises_far_above_the_plateau(tmp_path, capsys):
    data = tmp_path / "shapes"
    write_synthetic_dataset(data, num_images=16, image_size=128, min_objects=1, max_objects=2,
                            seed=5, min_size=24, max_size=56)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--recipe", "scratch", "--epochs", "60", "--repeat", "8",
                 "--batch-size", "16", "--num-det-tokens", "10", "--no-augment", "--train-sizes", "128",
                 "--eval-size", "128", "--eval-max-size", "128", "--eval-every", "20", "--workers", "0",
                 "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()

    ev = tmp_path / "val"
    assert main(["val", "--model", str(out / "last.safetensors"), "--data", str(data), "--eval-size", "128",
                 "--out", str(ev), "--no-progress"]) == 0
    stats = json.loads((ev / "stats.json").read_text())
    assert stats["AP50"] > 0.3, stats  # the plateau gives ~0.001

    pred = tmp_path / "pred"
    image = data / "images" / "000001.jpg"
    assert main(["predict", str(image), "--model", str(out / "last.safetensors"), "--threshold", "0.3",
                 "--out", str(pred)]) == 0
    found = json.loads((pred / "predictions.json").read_text())["images"][0]["detections"]
    truth = json.loads((data / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in truth["categories"]}
    for ann in (a for a in truth["annotations"] if a["image_id"] == 1):
        x, y, w, h = ann["bbox"]
        hits = [d for d in found if d["label"] == names[ann["category_id"]]
                and _iou((x, y, x + w, y + h), tuple(d["box"].values())) >= 0.5]
        assert hits, f"no {names[ann['category_id']]} found at {ann['bbox']}: {found}"


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
