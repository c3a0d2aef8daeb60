"""COCO evaluation: faster-coco-eval against pycocotools on real annotations; the eval loop."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch

from yolos.data import DetectionDataset
from yolos.data.transforms import transforms_for_variant
from yolos.errors import DatasetError
from yolos.evaluation import coco_evaluate
from yolos.evaluation.coco_eval import STAT_NAMES

TOL = 1e-12  # measured agreement is exact; see test below


def _gt_path(coco_val80):
    return coco_val80 / "annotations" / "instances_val2017.json"


def detections_from_gt(gt: dict, seed: int = 0) -> list[dict]:
    """Jittered true boxes (some dropped, some with the wrong class), plus random false positives."""
    rng = np.random.default_rng(seed)
    cat_ids = [c["id"] for c in gt["categories"]]
    sizes = {i["id"]: (i["width"], i["height"]) for i in gt["images"]}
    dets = []
    for ann in gt["annotations"]:
        if rng.random() < 0.15:
            continue
        x, y, w, h = ann["bbox"]
        jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
        cat = ann["category_id"] if rng.random() > 0.1 else int(rng.choice(cat_ids))
        dets.append({"image_id": ann["image_id"], "category_id": cat,
                     "bbox": [x + jitter[0], y + jitter[1], max(1.0, w + jitter[2]), max(1.0, h + jitter[3])],
                     "score": float(rng.random())})
    for image_id, (W, H) in sizes.items():
        for _ in range(int(rng.integers(0, 6))):
            w, h = rng.uniform(5, W / 2), rng.uniform(5, H / 2)
            dets.append({"image_id": image_id, "category_id": int(rng.choice(cat_ids)),
                         "bbox": [float(rng.uniform(0, W - w)), float(rng.uniform(0, H - h)), w, h],
                         "score": float(rng.random() * 0.7)})
    return [{**d, "bbox": [float(v) for v in d["bbox"]]} for d in dets]


def pycocotools_stats(gt_path, dets, image_ids=None):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(dets), iouType="bbox")
        if image_ids is not None:
            ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(STAT_NAMES, ev.stats.tolist()))


def test_same_ap_as_pycocotools_on_coco_val80(coco_val80):
    pytest.importorskip("pycocotools")
    gt_path = _gt_path(coco_val80)
    gt = json.loads(gt_path.read_text())
    dets = detections_from_gt(gt)
    ours = coco_evaluate(gt_path, dets)
    ref = pycocotools_stats(gt_path, dets)
    assert 0.2 < ref["AP"] < 0.95  # a non-trivial detection set
    for name in STAT_NAMES:
        assert ours[name] == pytest.approx(ref[name], abs=TOL), name
    # a subset of images, and the dict form of the ground truth
    subset = sorted({d["image_id"] for d in dets})[:20]
    ours = coco_evaluate(gt, [d for d in dets if d["image_id"] in subset], image_ids=subset)
    ref = pycocotools_stats(gt_path, [d for d in dets if d["image_id"] in subset], subset)
    for name in STAT_NAMES:
        assert ours[name] == pytest.approx(ref[name], abs=TOL), name


def test_perfect_detections_and_bad_input(coco_val80):
    gt_path = _gt_path(coco_val80)
    gt = json.loads(gt_path.read_text())
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                "score": 1.0} for a in gt["annotations"] if not a["iscrowd"]]
    assert coco_evaluate(gt_path, perfect)["AP"] == pytest.approx(1.0)
    assert coco_evaluate(gt_path, [])["AP"] == 0.0
    with pytest.raises(DatasetError, match="image id 123"):
        coco_evaluate(gt_path, [{**perfect[0], "image_id": 123}])
    with pytest.raises(DatasetError, match="cannot read"):
        coco_evaluate(coco_val80 / "missing.json", perfect)


def test_evaluate_tiny_model_on_real_images(coco_val80):
    from yolos.evaluation import evaluate
    from yolos.model import create_model

    gt = json.loads(_gt_path(coco_val80).read_text())
    ids = [i["id"] for i in gt["images"]][:4]
    ds = DetectionDataset(coco_val80 / "val2017", _gt_path(coco_val80),
                       transforms_for_variant("micro", "val"), image_ids=ids)
    model = create_model("micro", num_classes=ds.num_classes)
    stats, results = evaluate(model, ds, batch_size=2, progress=False)
    assert set(stats) == set(STAT_NAMES) and all(np.isfinite(v) for v in stats.values())
    T = model.config.num_det_tokens
    assert len(results) == T * len(ids)  # every [DET] prediction is kept (threshold 0)
    assert {r["image_id"] for r in results} == set(ids)
    sizes = {i["id"]: (i["width"], i["height"]) for i in gt["images"]}
    for r in results:
        W, H = sizes[r["image_id"]]
        x, y, w, h = r["bbox"]
        assert -1e-3 <= x and x + w <= W * 1.001 + 1 and 0 <= r["score"] <= 1
        assert 0 <= r["category_id"] <= 90
    # batching same-size images changes nothing (no padding)
    _, results_bs1 = evaluate(model, ds, batch_size=1, progress=False)
    a = torch.tensor([r["bbox"] + [r["score"]] for r in sorted(results, key=lambda r: r["image_id"])])
    b = torch.tensor([r["bbox"] + [r["score"]] for r in sorted(results_bs1, key=lambda r: r["image_id"])])
    assert torch.allclose(a, b, atol=1e-3)


def test_evaluate_maps_contiguous_labels_back_to_category_ids(tmp_path):
    from yolos.data import write_synthetic_dataset
    from yolos.evaluation import evaluate
    from yolos.model import create_model

    # category ids 1..2 in the json, labels 0..1 in the model
    path = write_synthetic_dataset(tmp_path, num_images=3, image_size=64, shapes=("square", "circle"))
    ds = DetectionDataset(tmp_path / "images", path, transforms_for_variant("micro", "val"))
    model = create_model("micro", num_classes=2)
    _, results = evaluate(model, ds, progress=False)
    assert {r["category_id"] for r in results} <= {1, 2}
    with pytest.raises(Exception, match="num_classes"):
        evaluate(create_model("micro", num_classes=5), ds, progress=False)
