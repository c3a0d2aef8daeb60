"""``yolos val`` as a library call: a split checked and matched with the model's classes, evaluated
with COCO AP/AR and a per-class table, and its report (console text and files).

    from yolos.evaluation.val import val_dataset, run_val
    dataset = val_dataset(model, "my_data/", split="val")
    result = run_val(model, dataset)              # ValResult: stats, per-class rows, results
    print(result.summary("my model")); result.write("runs/val")

All T detections per image go to the evaluator at score threshold 0 (the paper's protocol), at
batch size 1 by default: padding would change YOLOS' predictions (no pixel mask), so only
images of one size share a batch anyway.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import defaults
from ..data import transforms as T
from ..data.dataset_config import resolve_dataset
from ..errors import DatasetError
from ..files import atomic_write_text
from ..model.variants import input_size
from ..run_dir import run_dir
from .coco_eval import STAT_NAMES
from .evaluate import evaluate
from .report import confusion_matrix, per_class_table, write_plots

REPORT_FILES = ("results.json", "stats.json", "confusion_matrix.json", "pr_curves.png", "confusion_matrix.png")


def val_dataset(model, data, split: str = "val", class_map=None, short_side=None, long_side=None, say=None):
    """The ``split`` of ``data`` (a path or a DatasetConfig), checked, at the paper's evaluation
    size (or the sides given), with the model's classes matched by name
    (:meth:`yolos.data.DatasetConfig.dataset_for_model`; ``say`` gets what the match did). A split
    with nothing to evaluate is an error, never AP 0."""
    transforms = T.make_transforms("val", eval_size=input_size(model.config, "paper", short_side, long_side))
    dc = resolve_dataset(data)
    if split not in dc.splits():
        raise ValueError(f"--split {split}: {dc.source} has no {split} split (it has {', '.join(dc.splits())})")
    ds = dc.dataset_for_model(split, model.config, transforms, class_map=class_map, say=say)
    if len(ds) == 0:
        raise DatasetError(f"{ds.annotation_file}: no images to evaluate on")
    if not any(a for i in ds.ids for a in ds.annotations[i] if not a.get("iscrowd", 0)):
        raise DatasetError(f"{ds.annotation_file}: no (non-crowd) annotations of the classes the model has: AP "
                           f"and AR are undefined without ground truth")
    return ds


def calibration_images(data, split: str, limit: int = 300) -> list:
    """Images to calibrate an int8 network on without ``--calibration``: the train split's (else
    the evaluated split's), the first ``limit``."""
    dc = resolve_dataset(data)
    raw = dc.read("train" if "train" in dc.splits() else split)
    return [raw.image_path(im) for im in raw.coco["images"][:limit]]


@dataclass
class ValResult:
    """What a val run found: the 12 COCO numbers and per-class rows (``stats``), PR curves, the
    COCO results and the confusion matrix."""

    dataset: object
    stats: dict
    results: list
    curves: dict
    recall_points: list
    confusion: dict
    split: str = "val"

    @property
    def names(self) -> dict:
        return {c["id"]: c["name"] for c in self.dataset.categories}

    def summary(self, label: str) -> str:
        """The console report: what was evaluated, the 12 numbers, the per-class table."""
        lines = [f"{label} on {len(self.dataset)} images of the {self.split} split ({self.dataset.annotation_file}), "
                 f"{len(self.dataset.categories)} classes:"]
        lines += [f"  {k:10s} {self.stats[k]:.4f}" for k in STAT_NAMES]
        if self.stats.get("per_class"):
            lines.append(per_class_table(self.stats["per_class"], self.names))
        return "\n".join(lines)

    def write(self, folder, say=None) -> Path:
        """results.json, stats.json, the confusion matrix (JSON, PNG) and the PR curves into
        ``folder`` (a folder holding any of them goes to the next free ``folder2``)."""
        with run_dir(folder, run_files=REPORT_FILES, say=say or (lambda m: None)) as out:
            atomic_write_text(out / "results.json", json.dumps(self.results, allow_nan=False))
            atomic_write_text(out / "stats.json", json.dumps(self.stats, indent=1, allow_nan=False))
            atomic_write_text(out / "confusion_matrix.json", json.dumps(self.confusion, indent=1))
            if self.stats.get("per_class"):
                write_plots(out, self.stats["per_class"], self.curves, self.recall_points, self.confusion, self.names)
        return out


def run_val(network, dataset, batch_size: int = 1, device="cpu", dtype=None, progress: bool = True,
            confusion_threshold: float = defaults.THRESHOLD, split: str = "val") -> ValResult:
    """Evaluate ``network`` (a model, or a network from ``compile_for``) on ``dataset``
    (:func:`val_dataset`); under torchrun every process evaluates its shard and all get the stats."""
    stats, results = evaluate(network, dataset, batch_size=batch_size, device=device, progress=progress, dtype=dtype,
                              details=True)
    curves, recall_points = stats.pop("pr_curves", {}), stats.pop("recall_points", [])
    names = {c["id"]: c["name"] for c in dataset.categories}
    for row in stats.get("per_class", []):
        row["name"] = names.get(row["category_id"], str(row["category_id"]))
    ids = [c["id"] for c in dataset.categories]
    confusion = confusion_matrix(dataset.ground_truth(), results, ids, confusion_threshold)
    confusion["classes"] = [names[i] for i in ids]
    return ValResult(dataset, stats, results, curves, recall_points, confusion, split)


__all__ = ["val_dataset", "run_val", "ValResult", "calibration_images", "REPORT_FILES"]
