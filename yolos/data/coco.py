"""COCO-format annotations read and checked: :func:`read_coco_split` (a path or a dict) gives the
:class:`yolos.data.check.RawSplit` every layout's reader gives; annotation ids are renumbered,
broken entries named by id and field, Roboflow's project row dropped (:func:`check_coco`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import DatasetError
from .check import Problem, RawSplit, bounded_file, safe_relative


def load_coco_json(annotation_file) -> dict:
    """Read a COCO json and check it (:func:`check_coco_dict`); the first problem raises a
    DatasetError naming the file and the image id / annotation id / field."""
    data = read_coco_json(annotation_file)
    _, problems = check_coco_dict(data, str(annotation_file))
    if problems:
        raise DatasetError(str(problems[0]))
    return data


MAX_JSON_BYTES = 2**30  # COCO's own train json is 450 MB


def read_coco_json(annotation_file) -> dict:
    path = Path(annotation_file)
    bounded_file(path, MAX_JSON_BYTES, "annotation file")
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise DatasetError(f"{path}: not valid JSON ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read annotation file ({e})") from None


def _field(obj, key: str, where: str, kinds, problems: list, source: str):
    """``obj[key]`` when it is one of ``kinds`` (never a bool), else None with a Problem."""
    if not isinstance(obj, dict):
        problems.append(Problem(source, f"{where} is not an object"))
        return None
    if key not in obj:
        problems.append(Problem(source, f"{where} has no '{key}' field"))
        return None
    value = obj[key]
    if not isinstance(value, kinds) or isinstance(value, bool):
        problems.append(Problem(source, f"{where} field '{key}' has invalid value {value!r}"))
        return None
    return value


def check_coco_dict(data, source: str = "<dict>") -> tuple[dict, list[Problem]]:
    """``(clean dict, problems)`` of :func:`check_coco` (see there)."""
    clean, problems, _ = check_coco(data, source)
    return clean, problems


def check_coco(data, source: str = "<dict>") -> tuple[dict, list[Problem], list]:
    """``(clean dict, problems, the file's annotation ids)``: every entry that is sound and a :class:`Problem` for each
    broken entry, duplicate id and unknown reference (fatal), and for what was repaired (not
    fatal). Annotation ids are internal and are numbered 1..N (COCO's evaluators take id 0 for
    "unmatched", and Roboflow numbers from 0). A category no annotation uses whose name is another category's
    supercategory (Roboflow's export writes one) is dropped, and said so."""
    if not isinstance(data, dict):
        return {}, [Problem(source, "top level must be a JSON object with images/annotations/categories")], []
    problems: list[Problem] = []
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            problems.append(Problem(source, f"missing top-level '{key}' list" if key not in data
                                    else f"top-level '{key}' must be a list"))
    if problems:
        return {}, problems, []
    images = _check_images(data["images"], source, problems)
    categories = _check_categories(data["categories"], source, problems)
    image_ids, cat_ids = {im["id"] for im in images}, {c["id"] for c in categories}
    annotations, source_ids = _check_annotations(data["annotations"], image_ids, cat_ids, source, problems)
    categories = _drop_supercategory_rows(categories, annotations, source, problems)
    if any(not isinstance(i, int) or i < 1 for i in source_ids):
        problems.append(Problem(source, "annotation ids renumbered 1..N (the file's include 0 or are not "
                                        "positive integers; COCO's evaluators would take id 0 for 'unmatched')",
                                fatal=False))
    clean = dict(data, images=images, annotations=annotations, categories=categories)
    return clean, problems, source_ids


def _check_images(entries: list, source: str, problems: list) -> list[dict]:
    images, ids, files = [], set(), {}
    for i, img in enumerate(entries):
        image_id = _field(img, "id", f"images[{i}]", int, problems, source)
        if image_id is None:
            continue
        where = f"image id {image_id}"
        name = _field(img, "file_name", where, str, problems, source)
        ok = name is not None
        if ok and not safe_relative(name):
            problems.append(Problem(source, f"{where} file_name {name[:80]!r} leaves the images folder; only "
                                            f"paths inside it are read"))
            ok = False
        for key in ("height", "width"):  # the annotation tool's size: tells the frame of rotated photos
            if key in img and _field(img, key, where, (int, float), problems, source) is None:
                ok = False
        if image_id in ids:
            problems.append(Problem(source, f"duplicate image id {image_id}"))
            continue
        ids.add(image_id)
        if ok and name in files:
            problems.append(Problem(source, f"{where} has the file_name of image id {files[name]} ({name!r}): "
                                            f"one photo counted twice", fatal=False))
        if ok:
            files.setdefault(name, image_id)
            images.append(img)
    return images


def _check_categories(entries: list, source: str, problems: list) -> list[dict]:
    categories, ids = [], set()
    for i, cat in enumerate(entries):
        cid = _field(cat, "id", f"categories[{i}]", int, problems, source)
        if cid is None or _field(cat, "name", f"category id {cid}", str, problems, source) is None:
            continue
        if cid in ids:
            problems.append(Problem(source, f"duplicate category id {cid}"))
            continue
        ids.add(cid)
        categories.append({"id": cid, "name": cat["name"], **({"supercategory": cat["supercategory"]}
                                                               if "supercategory" in cat else {})})
    return categories


def _check_annotations(entries: list, image_ids: set, cat_ids: set, source: str,
                       problems: list) -> tuple[list[dict], list]:
    annotations, seen, source_ids = [], set(), []
    for i, ann in enumerate(entries):
        ann_id = _field(ann, "id", f"annotations[{i}]", (int, str), problems, source)
        if ann_id is None:
            continue
        if ann_id in seen:
            problems.append(Problem(source, f"duplicate annotation id {ann_id!r} (two files joined? every "
                                            f"annotation needs its own id)"))
            continue
        seen.add(ann_id)
        clean = _check_annotation(ann, f"annotation id {ann_id}", image_ids, cat_ids, source, problems)
        if clean is not None:
            clean["id"] = len(annotations) + 1
            annotations.append(clean)
            source_ids.append(ann_id)
    return annotations, source_ids


def _check_annotation(ann: dict, where: str, image_ids: set, cat_ids: set, source: str,
                      problems: list) -> dict | None:
    image_id = _field(ann, "image_id", where, int, problems, source)
    if image_id is None:
        return None
    where = f"{where} (image id {image_id})"
    bad = len(problems)
    if image_id not in image_ids:
        problems.append(Problem(source, f"{where} refers to an image id that is not in 'images'"))
    cid = _field(ann, "category_id", where, int, problems, source)
    if cid is not None and cid not in cat_ids:
        problems.append(Problem(source, f"{where} has unknown category_id {cid} (categories: {sorted(cat_ids)})"))
    bbox = _field(ann, "bbox", where, (list, tuple), problems, source)
    if bbox is not None:
        if len(bbox) != 4:
            problems.append(Problem(source, f"{where} field 'bbox' must have 4 numbers [x, y, w, h], got {len(bbox)}"))
        elif not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
            bad_value = next(v for v in bbox if isinstance(v, bool) or not isinstance(v, (int, float))
                             or not math.isfinite(v))
            problems.append(Problem(source, f"{where} field 'bbox' has a non-numeric or non-finite value "
                                            f"{bad_value!r}"))
        elif bbox[2] < 0 or bbox[3] < 0:
            problems.append(Problem(source, f"{where} field 'bbox' has a negative size {bbox}"))
    if ann.get("iscrowd", 0) not in (0, 1):  # True/False compare equal to 1/0
        problems.append(Problem(source, f"{where} field 'iscrowd' must be 0 or 1, got {ann['iscrowd']!r}"))
    area = ann.get("area")
    if area is not None and (isinstance(area, bool) or not isinstance(area, (int, float))
                             or not math.isfinite(area) or area < 0):
        problems.append(Problem(source, f"{where} field 'area' has invalid value {area!r}"))
    if len(problems) != bad:
        return None
    clean = {k: ann[k] for k in ("image_id", "category_id", "bbox", "area", "iscrowd") if k in ann}
    clean["bbox"] = [float(v) for v in bbox]
    clean["iscrowd"] = int(ann.get("iscrowd", 0))
    return clean


def _drop_supercategory_rows(categories: list[dict], annotations: list[dict], source: str,
                             problems: list) -> list[dict]:
    """Roboflow's COCO export lists the project itself as a category (often id 0) that no box
    uses and that every real class names as its supercategory: not a class."""
    used = {a["category_id"] for a in annotations}
    parents = {c.get("supercategory") for c in categories if "supercategory" in c}
    drop = [c for c in categories if c["id"] not in used and c["name"] in parents
            and any(o.get("supercategory") == c["name"] and o["id"] != c["id"] for o in categories)]
    for c in drop:
        problems.append(Problem(source, f"category id {c['id']} {c['name']!r} dropped: no box uses it and it is the "
                                        f"supercategory of the others (a Roboflow export's project row)", fatal=False))
    return [c for c in categories if c not in drop]


def read_coco_split(images_dir, annotations, name: str = "val", frame: str = "auto") -> RawSplit:
    """A :class:`RawSplit` of a COCO json (a path, or a dict already in memory)."""
    images_dir = Path(images_dir)
    if isinstance(annotations, dict):
        data, source = annotations, "<annotations>"
    else:
        data, source = read_coco_json(annotations), str(annotations)
    clean, problems, source_ids = check_coco(data, source)
    if not images_dir.is_dir():
        problems.insert(0, Problem(str(images_dir), f"images folder not found (for annotations {source})"))
    clean = clean or {"images": [], "annotations": [], "categories": []}
    where_box = {i: f"{source} annotation id {sid}" for i, sid in enumerate(source_ids, 1)}
    return RawSplit(name, "coco", source, images_dir, clean, where_box=where_box, problems=problems, frame=frame)


__all__ = ["read_coco_split", "read_coco_json", "load_coco_json", "check_coco", "check_coco_dict"]
