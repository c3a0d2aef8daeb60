"""Test helpers: one small dataset written in the three layouts yolos reads (COCO, YOLO, VOC).

The writers here are the tests' own, from the formats' specifications (YOLO: normalized
``class cx cy w h`` lines; VOC: 1-based inclusive pixel indices), so reading them back checks
the readers against an independent writer.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from yolos.data.synthetic import write_synthetic_dataset

SPARSE_IDS = {1: 3, 2: 17, 3: 1000}  # the generator's ids 1..3 -> sparse ids, as exports give


def sparse_coco(root: Path, num_images: int = 12, seed: int = 5, image_size: int = 128) -> Path:
    """A synthetic shapes dataset whose category ids are 3, 17 and 1000: ``root/images`` and
    ``root/annotations.json``. ``area`` is the box's, as in a box-only export (YOLO and VOC carry
    no segment area, so COCO's small/medium/large split would otherwise differ between copies)."""
    path = write_synthetic_dataset(root, num_images, image_size, 1, 4, seed=seed, min_size=16, max_size=48)
    data = json.loads(path.read_text())
    for cat in data["categories"]:
        cat["id"] = SPARSE_IDS[cat["id"]]
    for ann in data["annotations"]:
        ann["category_id"] = SPARSE_IDS[ann["category_id"]]
        ann["area"] = ann["bbox"][2] * ann["bbox"][3]
    path.write_text(json.dumps(data))
    return path


def write_yolo(coco_json: Path, images: Path, out: Path, polygon_every: int = 0) -> Path:
    """A YOLO copy (``out/images/train``, ``out/labels/train``, ``out/data.yaml``); class index =
    category id. ``polygon_every``: every n-th object written as a 4-point polygon instead."""
    data = json.loads(coco_json.read_text())
    (out / "images" / "train").mkdir(parents=True)
    (out / "labels" / "train").mkdir(parents=True)
    by_image = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    n = 0
    for img in data["images"]:
        shutil.copy(images / img["file_name"], out / "images" / "train" / img["file_name"])
        w, h = img["width"], img["height"]
        lines = []
        for ann in by_image.get(img["id"], []):
            x, y, bw, bh = ann["bbox"]
            n += 1
            if polygon_every and n % polygon_every == 0:
                pts = [(x, y), (x + bw, y), (x + bw, y + bh), (x, y + bh)]
                lines.append(f"{ann['category_id']} " + " ".join(f"{px / w:.6f} {py / h:.6f}" for px, py in pts))
            else:
                lines.append(f"{ann['category_id']} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} "
                             f"{bw / w:.6f} {bh / h:.6f}")
        (out / "labels" / "train" / (Path(img["file_name"]).stem + ".txt")).write_text("\n".join(lines))
    names = {c["id"]: c["name"] for c in data["categories"]}
    (out / "data.yaml").write_text("train: images/train\nval: images/train\nnames:\n"
                                   + "".join(f"  {k}: {v}\n" for k, v in names.items()))
    return out / "data.yaml"


def write_voc(coco_json: Path, images: Path, out: Path, difficult_ids=()) -> Path:
    """A VOC copy (``Annotations``, ``JPEGImages``, ``ImageSets/Main/{train,val}.txt``)."""
    data = json.loads(coco_json.read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (out / sub).mkdir(parents=True)
    ids = []
    for img in data["images"]:
        stem = Path(img["file_name"]).stem
        ids.append(stem)
        shutil.copy(images / img["file_name"], out / "JPEGImages" / img["file_name"])
        objects = []
        for ann in (a for a in data["annotations"] if a["image_id"] == img["id"]):
            x, y, w, h = ann["bbox"]
            hard = int(ann["id"] in difficult_ids or ann.get("iscrowd", 0))
            objects.append(f"  <object>\n    <name>{names[ann['category_id']]}</name>\n    <difficult>{hard}</difficult>\n"
                           f"    <bndbox><xmin>{x + 1:g}</xmin><ymin>{y + 1:g}</ymin>"
                           f"<xmax>{x + w:g}</xmax><ymax>{y + h:g}</ymax></bndbox>\n  </object>\n")
        (out / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation>\n  <filename>{img['file_name']}</filename>\n  <size><width>{img['width']}</width>"
            f"<height>{img['height']}</height><depth>3</depth></size>\n{''.join(objects)}</annotation>\n")
    for split in ("train", "val"):
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return out
