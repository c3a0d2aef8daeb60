"""COCO-format annotations, and the dataset every layout is read through (:class:`CocoDetection`).

Category ids -> labels (the model's class indices):
* a **COCO** dataset keeps the sparse 91-id space (label == category id, ``num_classes = 91``)
  so released checkpoints line up. A dataset counts as COCO when every category's
  ``(id, name)`` pair is one of the official COCO 2017 pairs (ids within 1..90), which holds
  for the full COCO json and for any subset of it.
* any other dataset maps its category ids, sorted, to contiguous labels ``0..K-1``
  (``num_classes = K``); :attr:`CocoDetection.category_ids` maps back (a model trained on it
  stores them, so every output names the dataset's own ids).
``keep_category_ids=True/False`` forces either choice; ``category_ids=[...]`` takes a model's
label space (label i = ``category_ids[i]``).

Targets (hustvl/YOLOS ``ConvertCocoPolysToMask``): crowd annotations (and VOC's "difficult"
objects, read as crowd) are dropped from training targets (they stay for evaluation, which
ignores detections matched to them); boxes come clipped to the image from the check
(:mod:`yolos.data.check`), in the frame of the image as displayed.
"""
from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import torch

from ..errors import DatasetError, ImageError
from ..images import load_image
from .check import Problem, RawSplit, normalize_split, raise_fatal, safe_relative
from .targets import raw_target
from .transforms import ToTensorNormalize


def _coco_id2label() -> dict[int, str]:
    from ..coco_names import COCO_ID2LABEL

    return {i: n for i, n in COCO_ID2LABEL.items() if n != "N/A"}


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
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DatasetError(f"{path}: annotation file not found") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read annotation file ({e.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise DatasetError(f"{path}: annotation file is not a regular file")
    if info.st_size > MAX_JSON_BYTES:
        raise DatasetError(f"{path}: annotation file larger than {MAX_JSON_BYTES >> 30} GB")
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


def is_coco_category_set(categories: list[dict]) -> bool:
    """True when every ``(id, name)`` pair is an official COCO 2017 pair (ids 1..90)."""
    official = _coco_id2label()
    return bool(categories) and all(official.get(c["id"]) == c["name"] for c in categories)


class CocoDetection(torch.utils.data.Dataset):
    """``dataset[i] -> (image [3, h, w] float32 normalized, target)``; any layout's split
    (:meth:`from_split`), or a COCO json (the constructor).

    target: ``boxes [N, 4]`` cxcywh normalized by the unpadded transformed image, ``labels [N]``
    int64, ``image_id`` int, ``orig_size`` / ``size`` int64 ``(h, w)``, ``area [N]``, ``iscrowd [N]``.

    Args:
        images_dir: folder the json's ``file_name`` entries are relative to.
        annotation_file: COCO instances json (or a dict in that form).
        transforms: ``(PIL image, target) -> (tensor, target)`` such as
            :func:`yolos.data.transforms.make_transforms`; None only converts and normalizes.
        keep_category_ids: None (auto, see module doc), True (labels are category ids) or False
            (contiguous labels).
        image_ids: optional subset (and order) of image ids.
        names: display names overriding the json's: ``{category id: name}`` or a list for the
            categories in ascending id order (``DatasetConfig.names``).
        category_ids: the label space of a model (label i means ``category_ids[i]``); every
            category of the dataset must be one of them.

    Building it runs the dataset check (:func:`yolos.data.check.normalize_split`, every image
    header read): a fatal problem raises a DatasetError naming the file; ``report`` holds the rest.
    """

    def __init__(self, images_dir, annotation_file, transforms=None, keep_category_ids=None,
                 image_ids=None, names=None, category_ids=None):
        raw = read_coco_split(images_dir, annotation_file)
        self._setup(raw, transforms, keep_category_ids, image_ids, names, category_ids)

    @classmethod
    def from_split(cls, raw: RawSplit, transforms=None, names=None, category_ids=None,
                   keep_category_ids=None) -> CocoDetection:
        self = cls.__new__(cls)
        self._setup(raw, transforms, keep_category_ids, None, names, category_ids)
        return self

    def _setup(self, raw: RawSplit, transforms, keep_category_ids, image_ids, names, category_ids) -> None:
        self.images_dir = raw.images_root
        self.annotation_file = raw.source
        self.transforms = transforms if transforms is not None else ToTensorNormalize()
        categories = sorted(raw.coco["categories"], key=lambda c: c["id"])
        display = {c["id"]: c["name"] for c in categories}
        if names is not None:
            display.update(self._names_override(names, categories))
        self.coco, self.report = normalize_split(raw, display)
        raise_fatal(self.report)
        self.categories = [dict(c, name=display[c["id"]]) for c in categories]
        self.images = {img["id"]: img for img in self.coco["images"]}
        self.annotations: dict[int, list[dict]] = {i: [] for i in self.images}
        for ann in self.coco["annotations"]:
            self.annotations[ann["image_id"]].append(ann)
        self._label_space(keep_category_ids, category_ids, display)
        if image_ids is None:
            self.ids = sorted(self.images)
        else:
            self.ids = [int(i) for i in image_ids]
            missing = [i for i in self.ids if i not in self.images]
            if missing:
                raise DatasetError(f"{self.annotation_file}: image ids {missing[:5]} not in 'images'")

    def _label_space(self, keep_category_ids, category_ids, display) -> None:
        ids = [c["id"] for c in self.categories]
        if category_ids is not None:  # the model's label space (None: a label with no category here)
            unknown = [i for i in ids if i not in category_ids]
            if unknown:
                raise DatasetError(f"{self.annotation_file}: categories {[(i, display[i]) for i in unknown]} are not "
                                   f"among the model's ({list(category_ids)}): it cannot detect them")
            self.keep_category_ids = False
            self.num_classes = len(category_ids)
            self.category_ids = [None if i is None else int(i) for i in category_ids]
        else:
            if keep_category_ids is None:
                keep_category_ids = is_coco_category_set(self.categories)
            self.keep_category_ids = bool(keep_category_ids)
            if self.keep_category_ids:
                if any(i < 0 for i in ids):
                    raise DatasetError(f"{self.annotation_file}: keep_category_ids needs category ids >= 0")
                # 91 for COCO (ids 1..90 plus the unused 0), so COCO checkpoints line up.
                top = max(ids, default=0)
                self.num_classes = max(91, top + 1) if is_coco_category_set(self.categories) else top + 1
                self.category_ids = None
            else:
                self.num_classes = len(ids)
                self.category_ids = ids
        if self.category_ids is None:
            self.category_id_to_label = {i: i for i in ids}
        else:  # several labels may predict one category (merged classes): its targets take the first
            self.category_id_to_label = {}
            for label, cid in enumerate(self.category_ids):
                if cid is not None:
                    self.category_id_to_label.setdefault(cid, label)
        self.class_names = {self.category_id_to_label[i]: display[i] for i in ids}

    @staticmethod
    def _names_override(names, categories) -> dict[int, str]:
        ids = [c["id"] for c in categories]
        if isinstance(names, (list, tuple)):
            if len(names) != len(ids):
                raise DatasetError(f"names: {len(names)} names given but the dataset has {len(ids)} categories")
            return dict(zip(ids, map(str, names)))
        unknown = [k for k in names if k not in ids]
        if unknown:
            raise DatasetError(f"names: category ids {unknown} are not in the dataset's categories {ids}")
        return {int(k): str(v) for k, v in names.items()}

    # ----------------------------------------------------------------- mapping
    def label_to_category_id(self, label: int) -> int | None:
        """Category id to write in COCO results for a model label (None: the label has no
        category in this dataset, and its detections are left out). In the 91-id space a label
        with no category (e.g. 0 or 12 in COCO) maps to itself; evaluation ignores it."""
        label = int(label)
        if self.category_ids is None:
            return label
        if not 0 <= label < len(self.category_ids):
            raise DatasetError(f"{self.annotation_file}: label {label} out of range 0..{self.num_classes - 1}")
        return self.category_ids[label]

    def image_path(self, image_id: int) -> Path:
        return self.images_dir / self.images[image_id]["file_name"]

    def __len__(self) -> int:
        return len(self.ids)

    # ----------------------------------------------------------------- loading
    def load_image(self, image_id: int):
        """The image as RGB, decoded by :func:`yolos.load_image` (EXIF orientation applied, as
        everywhere); a missing, undecodable, too small or too large file raises DatasetError."""
        path = self.image_path(image_id)
        try:
            return load_image(path)
        except ImageError as e:
            raise DatasetError(f"{e} (image id {image_id})") from None

    def raw_target(self, image_id: int, width: int, height: int) -> dict:
        """Targets before transforms: boxes xyxy in pixels of the decoded image, crowd dropped."""
        anns = [a for a in self.annotations[image_id] if not a.get("iscrowd", 0)]
        return raw_target([a["bbox"] for a in anns], [self.category_id_to_label[a["category_id"]] for a in anns],
                          [a["area"] for a in anns], image_id, width, height)

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        image = self.load_image(image_id)
        target = self.raw_target(image_id, image.width, image.height)
        return self.transforms(image, target)

    def ground_truth(self) -> dict:
        """The COCO dict that evaluation scores against: this split's images and annotations as
        checked (displayed frame, clipped), restricted to :attr:`ids`."""
        ids = set(self.ids)
        return dict(self.coco, images=[im for im in self.coco["images"] if im["id"] in ids],
                    annotations=[a for a in self.coco["annotations"] if a["image_id"] in ids],
                    categories=self.categories)

    def __repr__(self) -> str:
        mode = "COCO 91-id labels" if self.keep_category_ids else "contiguous labels"
        return (f"CocoDetection({os.fspath(self.annotation_file)!r}, images={len(self)}, "
                f"num_classes={self.num_classes}, {mode})")
