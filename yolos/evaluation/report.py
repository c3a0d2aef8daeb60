"""What ``yolos val`` adds to COCO's 12 numbers: which class is weak, and which are confused.

* :func:`per_class_table`: COCO's own per-category AP, AP50, AP75, AR and instance counts
  (:func:`yolos.evaluation.coco_eval.per_class_metrics`), as text;
* :func:`confusion_matrix`: detections above a score threshold matched to ground-truth boxes by
  IoU, greedily by score and whatever their class (as Ultralytics does). Rows are the predicted
  class, columns the true class; the last row counts missed objects (nothing predicted), the
  last column false detections (nothing there). Detections on crowd / VOC "difficult" regions
  are left out, as COCO evaluation ignores them;
* :func:`write_plots`: ``pr_curves.png`` (precision against recall at IoU 0.5, per class; the
  worst classes by AP when there are many) and ``confusion_matrix.png``.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch

from .. import defaults
from ..box_ops import box_iou, xywh_to_xyxy
from ..files import atomic_path

IOU_THRESHOLD = 0.5  # a detection matches an object (COCO's AP50 rule)
MAX_CURVES = 12  # per-class PR curves drawn: the worst classes by AP50 when there are more


def per_class_table(rows: list[dict], names: dict[int, str]) -> str:
    """The per-class rows as an aligned text table (worst AP last is not assumed: id order)."""
    width = max([len("class")] + [len(names.get(r["category_id"], str(r["category_id"]))) for r in rows])
    lines = [f"  {'class':<{width}}  {'id':>6}  {'AP':>6}  {'AP50':>6}  {'AP75':>6}  {'AR':>6}  {'instances':>9}"]
    for r in rows:
        name = names.get(r["category_id"], str(r["category_id"]))
        cells = "  ".join("     -" if r[k] < 0 else f"{r[k]:6.3f}" for k in ("AP", "AP50", "AP75", "AR"))
        lines.append(f"  {name:<{width}}  {r['category_id']:>6}  {cells}  {r['instances']:>9}")
    return "\n".join(lines)


def confusion_matrix(ground_truth: dict, results: list[dict], category_ids: list[int],
                     threshold: float = defaults.THRESHOLD, iou_threshold: float = IOU_THRESHOLD) -> dict:
    """``{"classes", "matrix" [K+1][K+1], "threshold", "iou_threshold", ...}`` (see the module
    doc); ``category_ids`` gives the row/column order of the classes."""
    index = {c: i for i, c in enumerate(category_ids)}
    k = len(category_ids)
    matrix = torch.zeros(k + 1, k + 1, dtype=torch.int64)
    truth: dict[int, list] = defaultdict(list)
    for ann in ground_truth["annotations"]:
        truth[ann["image_id"]].append(ann)
    detections: dict[int, list] = defaultdict(list)
    for r in results:
        if r["score"] >= threshold and r["category_id"] in index:
            detections[r["image_id"]].append(r)
    for image in ground_truth["images"]:
        anns = truth.get(image["id"], [])
        dets = sorted(detections.get(image["id"], []), key=lambda r: -r["score"])
        objects = [a for a in anns if not a.get("iscrowd", 0)]
        crowds = [a for a in anns if a.get("iscrowd", 0)]
        det_boxes = xywh_to_xyxy(torch.tensor([d["bbox"] for d in dets], dtype=torch.float64).reshape(-1, 4))
        obj_boxes = xywh_to_xyxy(torch.tensor([a["bbox"] for a in objects], dtype=torch.float64).reshape(-1, 4))
        iou = box_iou(det_boxes, obj_boxes)[0] if len(dets) and len(objects) else torch.zeros(len(dets), len(objects))
        taken = torch.zeros(len(objects), dtype=torch.bool)
        for i, det in enumerate(dets):
            candidates = iou[i].masked_fill(taken, -1.0) if len(objects) else iou[i]
            if len(objects) and float(candidates.max()) >= iou_threshold:
                j = int(candidates.argmax())
                taken[j] = True
                matrix[index[det["category_id"]], index.get(objects[j]["category_id"], k)] += 1
            elif not _on_crowd(det_boxes[i], crowds, iou_threshold):
                matrix[index[det["category_id"]], k] += 1  # a false detection
        for j, obj in enumerate(objects):
            if not taken[j] and obj["category_id"] in index:
                matrix[k, index[obj["category_id"]]] += 1  # a missed object
    return {"threshold": threshold, "iou_threshold": iou_threshold, "rows": "predicted", "columns": "true",
            "category_ids": list(category_ids), "matrix": matrix.tolist()}


def _on_crowd(box: torch.Tensor, crowds: list[dict], iou_threshold: float) -> bool:
    """Whether a detection lies on a crowd region (COCO's crowd overlap: intersection over the
    detection's own area)."""
    if not crowds:
        return False
    regions = xywh_to_xyxy(torch.tensor([c["bbox"] for c in crowds], dtype=torch.float64))
    lo = torch.max(box[:2], regions[:, :2])
    hi = torch.min(box[2:], regions[:, 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)
    area = (box[2:] - box[:2]).clamp(min=0).prod()
    return bool((inter / area.clamp(min=1e-9) >= iou_threshold).any())


def write_plots(out: Path, per_class: list[dict], curves: dict[int, list[float]], recall_points,
                confusion: dict, names: dict[int, str]) -> list[Path]:
    """``pr_curves.png`` and ``confusion_matrix.png`` in ``out``; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    written = []
    # the curves are at IoU 0.5, so classes are ordered (worst first) and labelled by AP50
    scored = [r for r in per_class if r["AP50"] >= 0]
    shown = sorted(scored, key=lambda r: r["AP50"])[:MAX_CURVES]
    fig, ax = plt.subplots(figsize=(6.5, 5))
    colours = plt.get_cmap("tab20" if len(shown) > 10 else "tab10")
    styles = ("-", "--", ":", "-.")
    for i, r in enumerate(shown):
        cid = r["category_id"]
        points = [(rc, p) for rc, p in zip(recall_points, curves[cid]) if p >= 0]
        ax.plot([p[0] for p in points], [p[1] for p in points], color=colours(i % colours.N),
                linestyle=styles[i // colours.N % len(styles)], label=f"{names.get(cid, cid)} (AP50 {r['AP50']:.3f})")
    worst = f" (the {len(shown)} worst of {len(scored)} classes)" if len(scored) > len(shown) else ""
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title="precision-recall at IoU 0.5" + worst)
    ax.legend(fontsize=7, loc="lower left")
    written.append(_save(fig, out / "pr_curves.png"))
    labels = [names.get(c, str(c)) for c in confusion["category_ids"]]
    matrix = confusion["matrix"]
    n = len(matrix)
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * n + 3), max(4, 0.45 * n + 2)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels + ["false detection"], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels + ["missed"], fontsize=8)
    ax.set(xlabel="true class", ylabel="predicted class",
           title=f"confusion matrix (score >= {confusion['threshold']:g}, IoU >= {confusion['iou_threshold']:g})")
    if n <= 30:
        top = max(max(row) for row in matrix) or 1
        for i in range(n):
            for j in range(n):
                if matrix[i][j]:
                    ax.text(j, i, matrix[i][j], ha="center", va="center", fontsize=7,
                            color="white" if matrix[i][j] > top / 2 else "black")
    written.append(_save(fig, out / "confusion_matrix.png"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


__all__ = ["per_class_table", "confusion_matrix", "write_plots", "MAX_CURVES"]
