"""A dataset's own category ids and names, end to end: trained into the checkpoint, written by
every output, and the three routes to AP agree (``yolos val``; predict -> to_coco() ->
pycocotools against the dataset's own json; the YOLO and VOC copies of the dataset)."""
from __future__ import annotations

import json

import pytest
from layouts import SPARSE_IDS, sparse_coco, write_voc, write_yolo

import yolos
from yolos.cli import main
from yolos.defaults import DEFAULT_MODEL
from yolos.evaluation.report import confusion_matrix

STATS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
         "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


def _pycocotools(gt_json, results, cat_ids=None) -> list[float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(gt_json))
    ev = COCOeval(gt, gt.loadRes(results), "bbox")
    if cat_ids is not None:
        ev.params.catIds = cat_ids
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return [float(v) for v in ev.stats]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model fine-tuned (briefly) from the bundled one on a dataset whose ids are 3, 17, 1000."""
    root = tmp_path_factory.mktemp("sparse")
    ann = sparse_coco(root / "coco", num_images=16)
    code = main(["train", "--data", str(root / "coco"), "--init", str(DEFAULT_MODEL), "--epochs", "1",
                 "--batch-size", "4", "--lr", "1e-6", "--workers", "0", "--no-progress", "--eval-every", "0",
                 "--train-sizes", "128", "--train-max-size", "128", "--no-augment", "--out", str(root / "run")])
    assert code == 0
    return root, ann, root / "run" / "last.safetensors"


def test_the_checkpoint_keeps_the_dataset_ids_and_names(trained, tmp_path):
    _, _, checkpoint = trained
    model = yolos.from_pretrained(checkpoint)
    assert model.config.category_ids == [3, 17, 1000]
    assert model.config.class_names == {0: "square", 1: "circle", 2: "triangle"}
    model.save_pretrained(tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["id2label"] == {"0": "square", "1": "circle", "2": "triangle"}
    assert config["label2id"] == {"square": 0, "circle": 1, "triangle": 2}
    assert config["yolos_category_ids"] == [3, 17, 1000]
    assert yolos.from_pretrained(tmp_path / "hf").config.category_ids == [3, 17, 1000]


def test_three_routes_to_ap_agree(trained, tmp_path, capsys):
    root, ann, checkpoint = trained
    assert main(["val", "--model", str(checkpoint), "--data", str(root / "coco"), "--out", str(tmp_path / "val"),
                 "--no-progress", "--val-fraction", "0"]) == 0
    printed = capsys.readouterr().out
    stats = json.loads((tmp_path / "val" / "stats.json").read_text())
    assert stats["AP"] > 0.3  # a real detector: the agreement below is not 0 == 0
    for name in ("square", "circle", "triangle"):
        assert name in printed  # the per-class table

    # predict -> to_coco() -> pycocotools against the dataset's own json: the same 12 numbers
    model = yolos.from_pretrained(checkpoint)
    data = json.loads(ann.read_text())
    files = [root / "coco" / "images" / im["file_name"] for im in data["images"]]
    records = []
    for im, det in zip(data["images"], model.predict(files, threshold=0.0)):
        records += det.to_coco(im["id"])
    assert {r["category_id"] for r in records} <= set(SPARSE_IDS.values())
    ours = _pycocotools(ann, records)
    assert ours == pytest.approx([stats[k] for k in STATS], abs=1e-4)

    # the YOLO and VOC copies of the same dataset: the same numbers through yolos val
    yolo = write_yolo(ann, root / "coco" / "images", tmp_path / "yolo")
    voc = write_voc(ann, root / "coco" / "images", tmp_path / "voc")
    for copy in (yolo, voc):
        out = tmp_path / f"val-{copy.name}"
        assert main(["val", "--model", str(checkpoint), "--data", str(copy), "--out", str(out), "--no-progress"]) == 0
        other = json.loads((out / "stats.json").read_text())
        assert [other[k] for k in STATS] == pytest.approx([stats[k] for k in STATS], abs=1e-6), copy

    # COCO's own per-class numbers: pycocotools restricted to one category gives each row
    for row in stats["per_class"]:
        alone = _pycocotools(ann, records, [row["category_id"]])
        assert row["AP"] == pytest.approx(alone[0], abs=1e-4) and row["AP50"] == pytest.approx(alone[1], abs=1e-4)
        assert row["AR"] == pytest.approx(alone[8], abs=1e-4)
        assert row["instances"] == sum(a["category_id"] == row["category_id"] for a in data["annotations"])
    for name in ("pr_curves.png", "confusion_matrix.png", "confusion_matrix.json", "results.json"):
        assert (tmp_path / "val" / name).is_file()
    results = json.loads((tmp_path / "val" / "results.json").read_text())
    assert {r["category_id"] for r in results} == set(SPARSE_IDS.values())


def test_predictions_json_and_the_server_name_the_dataset_ids(trained, tmp_path):
    root, _, checkpoint = trained
    image = next((root / "coco" / "images").iterdir())
    assert main(["predict", str(image), "--model", str(checkpoint), "--out", str(tmp_path / "p"),
                 "--threshold", "0.3"]) == 0
    report = json.loads((tmp_path / "p" / "predictions.json").read_text())
    entries = report["images"][0]["detections"]
    assert entries and {e["category_id"] for e in entries} <= set(SPARSE_IDS.values())
    names = {3: "square", 17: "circle", 1000: "triangle"}
    assert all(names[e["category_id"]] == e["label"] for e in entries)

    from fastapi.testclient import TestClient

    from yolos.serve import ServeSettings, create_app

    with TestClient(create_app(ServeSettings(), model=yolos.from_pretrained(checkpoint))) as client:
        for _ in range(100):
            if client.get("/readyz").status_code == 200:
                break
            import time

            time.sleep(0.05)
        info = client.get("/info").json()
    assert info["classes"] == {"3": "square", "17": "circle", "1000": "triangle"}


def test_confusion_matrix_by_hand():
    gt = {"images": [{"id": 1}, {"id": 2}],
          "annotations": [
              {"id": 1, "image_id": 1, "category_id": 5, "bbox": [0, 0, 10, 10], "iscrowd": 0},
              {"id": 2, "image_id": 1, "category_id": 9, "bbox": [20, 20, 10, 10], "iscrowd": 0},
              {"id": 3, "image_id": 2, "category_id": 9, "bbox": [0, 0, 10, 10], "iscrowd": 0},
              {"id": 4, "image_id": 2, "category_id": 5, "bbox": [50, 50, 20, 20], "iscrowd": 1}]}
    results = [
        {"image_id": 1, "category_id": 5, "bbox": [0, 0, 10, 10], "score": 0.9},     # right
        {"image_id": 1, "category_id": 5, "bbox": [20, 20, 10, 9], "score": 0.8},    # a 9 called 5
        {"image_id": 1, "category_id": 9, "bbox": [0, 0, 10, 10], "score": 0.7},     # duplicate: false
        {"image_id": 2, "category_id": 9, "bbox": [60, 60, 5, 5], "score": 0.9},     # on the crowd: ignored
        {"image_id": 2, "category_id": 5, "bbox": [80, 0, 5, 5], "score": 0.95},     # nothing there: false
        {"image_id": 2, "category_id": 9, "bbox": [0, 0, 10, 10], "score": 0.3},     # below the threshold
    ]
    cm = confusion_matrix(gt, results, [5, 9], threshold=0.5)
    # rows predicted (5, 9, missed), columns true (5, 9, false detection)
    assert cm["matrix"] == [[1, 1, 1],
                            [0, 0, 1],
                            [0, 1, 0]]
