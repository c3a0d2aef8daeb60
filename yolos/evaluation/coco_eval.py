"""COCO bbox evaluation with faster-coco-eval (the pycocotools protocol, C++ matching), and the
cross-rank gathering of detections.

Results are COCO result dicts: ``{"image_id": int, "category_id": int, "bbox": [x, y, w, h]
(absolute pixels of the original image), "score": float}``.
"""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import torch.distributed as dist

from ..errors import DatasetError

#: The 12 numbers of ``COCOeval.summarize()``, in its order.
STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


def _load_gt(gt):
    from faster_coco_eval import COCO

    if isinstance(gt, dict):
        # faster-coco-eval's COCO may add keys to the dict it is given: work on a copy.
        return COCO(copy.deepcopy(gt))
    path = Path(gt)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError) as e:
        raise DatasetError(f"{path}: cannot read ground-truth annotations ({e})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: ground-truth annotations must be a JSON object, got {type(data).__name__}")
    return COCO(data)


def run_cocoeval(gt_annotation_file_or_dict, results: list[dict], image_ids=None, print_summary: bool = False):
    """The accumulated and summarized ``COCOeval_faster`` of ``results`` (see :func:`coco_evaluate`),
    or None when there are no results."""
    from faster_coco_eval import COCOeval_faster

    gt = _load_gt(gt_annotation_file_or_dict)
    known = set(gt.getImgIds())
    if image_ids is not None:
        image_ids = sorted({int(i) for i in image_ids})
        unknown = [i for i in image_ids if i not in known]
        if unknown:
            raise DatasetError(f"image ids {unknown[:5]} are not in the ground truth")
    bad = [r["image_id"] for r in results if r["image_id"] not in known]
    if bad:
        raise DatasetError(f"results for image id {bad[0]} which is not in the ground truth "
                           f"({len(bad)} such results)")
    if not results:
        return None
    dets = gt.loadRes([dict(r) for r in results])
    # faster-coco-eval prints through logging; silence it unless the table is wanted.
    printer = print if print_summary else logging.getLogger(__name__).debug
    ev = COCOeval_faster(gt, dets, iouType="bbox", print_function=printer)
    if image_ids is not None:
        ev.params.imgIds = image_ids
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev


def coco_evaluate(gt_annotation_file_or_dict, results: list[dict], image_ids=None,
                  print_summary: bool = False) -> dict[str, float]:
    """AP/AR of ``results`` against a COCO ground truth (path or dict), restricted to
    ``image_ids`` when given (otherwise every image of the ground truth counts, including those
    without detections). Crowd regions are honoured as in pycocotools (matches to them are ignored).

    Returns ``{name: value}`` for :data:`STAT_NAMES` (AP values in [0, 1]; -1 where COCO has no
    ground truth for an area range). An empty ``results`` list scores 0 everywhere.
    """
    ev = run_cocoeval(gt_annotation_file_or_dict, results, image_ids, print_summary)
    if ev is None:
        return {name: 0.0 for name in STAT_NAMES}
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats[:12])}


def per_class_metrics(ev) -> list[dict]:
    """COCO's own per-category numbers from an evaluated ``COCOeval`` (the arrays its summary
    averages over categories): ``{"category_id", "AP", "AP50", "AP75", "AR", "instances"}``
    for every category, area "all", 100 detections; -1 where a category has no ground truth."""
    precision, recall = ev.eval["precision"], ev.eval["recall"]  # [T, R, K, A, M], [T, K, A, M]
    iou = list(np.round(ev.params.iouThrs, 2))
    rows = []
    for k, cat_id in enumerate(ev.params.catIds):
        def mean(values):
            values = values[values > -1]
            return float(values.mean()) if values.size else -1.0

        gts = [g for img in ev.params.imgIds for g in ev.cocoGt.imgToAnns.get(img, [])
               if g["category_id"] == cat_id and not g.get("iscrowd", 0)]
        rows.append({"category_id": int(cat_id), "AP": mean(precision[:, :, k, 0, -1]),
                     "AP50": mean(precision[iou.index(0.5), :, k, 0, -1]),
                     "AP75": mean(precision[iou.index(0.75), :, k, 0, -1]),
                     "AR": mean(recall[:, k, 0, -1]), "instances": len(gts)})
    return rows


def pr_curves(ev) -> dict[int, list[float]]:
    """``category id -> precision at each of COCO's 101 recall points`` at IoU 0.5 (area all,
    100 detections; -1 where undefined); the recall points are ``ev.params.recThrs``."""
    iou = list(np.round(ev.params.iouThrs, 2)).index(0.5)
    return {int(c): ev.eval["precision"][iou, :, k, 0, -1].tolist() for k, c in enumerate(ev.params.catIds)}


def gather_results(results: list[dict]) -> list[dict]:
    """All ranks' results on every rank (``all_gather_object``), or ``results`` unchanged when
    torch.distributed is not initialized. A DistributedSampler pads the last round by repeating
    images, so each image id's detections are taken from the first rank that reported it."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(results)
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(results))
    merged, owner = [], {}
    for rank, part in enumerate(parts):
        for r in part:
            if owner.setdefault(r["image_id"], rank) == rank:
                merged.append(r)
    return merged
