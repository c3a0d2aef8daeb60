"""COCO-format detection dataset with validated annotations and the category-id mapping.

Category ids -> labels:
* a **COCO** dataset keeps the sparse 91-id space (label == category id, ``num_classes = 91``)
  so released checkpoints line up. A dataset counts as COCO when every category's
  ``(id, name)`` pair is one of the official COCO 2017 pairs (ids within 1..90), which holds
  for the full COCO json and for any subset of it.
* any other dataset maps its category ids, sorted, to contiguous labels ``0..K-1``
  (``num_classes = K``); :meth:`CocoDetection.label_to_category_id` maps back for result json.
``keep_category_ids=True/False`` forces either choice.

Targets (hustvl/YOLOS ``ConvertCocoPolysToMask``): crowd annotations are dropped (they stay in the
json for evaluation), boxes are converted xywh -> xyxy, clamped to the image, and boxes with
zero width or height after clamping are dropped.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DatasetError
from .transforms import ToTensorNormalize


def _coco_id2label() -> dict[int, str]:
    from ..coco_names import COCO_ID2LABEL

    return {i: n for i, n in COCO_ID2LABEL.items() if n != "N/A"}


def load_coco_json(annotation_file) -> dict:
    """Read and structurally validate a COCO json; every problem raises a DatasetError naming
    the file and the offending image id / annotation id / field."""
    path = Path(annotation_file)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{path}: annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read annotation file ({e})") from None
    validate_coco_dict(data, source=str(path))
    return data


def _need(obj: dict, key: str, where: str, source: str, kinds):
    if not isinstance(obj, dict):
        raise DatasetError(f"{source}: {where} is not an object")
    if key not in obj:
        raise DatasetError(f"{source}: {where} has no '{key}' field")
    value = obj[key]
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise DatasetError(f"{source}: {where} field '{key}' has invalid value {value!r}")
    return value


def validate_coco_dict(data, source: str = "<dict>") -> None:
    if not isinstance(data, dict):
        raise DatasetError(f"{source}: top level must be a JSON object with images/annotations/categories")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DatasetError(f"{source}: missing top-level '{key}' list")
        if not isinstance(data[key], list):
            raise DatasetError(f"{source}: top-level '{key}' must be a list")
    image_ids = set()
    for i, img in enumerate(data["images"]):
        image_id = _need(img, "id", f"images[{i}]", source, int)
        where = f"image id {image_id}"
        _need(img, "file_name", where, source, str)
        for key in ("height", "width"):  # informational only: the decoded image's size is used
            if key in img:
                _need(img, key, where, source, (int, float))
        if image_id in image_ids:
            raise DatasetError(f"{source}: duplicate image id {image_id}")
        image_ids.add(image_id)
    cat_ids = set()
    for i, cat in enumerate(data["categories"]):
        cid = _need(cat, "id", f"categories[{i}]", source, int)
        _need(cat, "name", f"category id {cid}", source, str)
        if cid in cat_ids:
            raise DatasetError(f"{source}: duplicate category id {cid}")
        cat_ids.add(cid)
    for i, ann in enumerate(data["annotations"]):
        ann_id = _need(ann, "id", f"annotations[{i}]", source, (int, str))
        where = f"annotation id {ann_id}"
        image_id = _need(ann, "image_id", where, source, int)
        where = f"annotation id {ann_id} (image id {image_id})"
        if image_id not in image_ids:
            raise DatasetError(f"{source}: {where} refers to an image id that is not in 'images'")
        cid = _need(ann, "category_id", where, source, int)
        if cid not in cat_ids:
            raise DatasetError(f"{source}: {where} has unknown category_id {cid} "
                               f"(categories: {sorted(cat_ids)})")
        bbox = _need(ann, "bbox", where, source, (list, tuple))
        if len(bbox) != 4:
            raise DatasetError(f"{source}: {where} field 'bbox' must have 4 numbers [x, y, w, h], "
                               f"got {len(bbox)}")
        for v in bbox:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise DatasetError(f"{source}: {where} field 'bbox' has a non-numeric or "
                                   f"non-finite value {v!r}")
        if bbox[2] < 0 or bbox[3] < 0:
            raise DatasetError(f"{source}: {where} field 'bbox' has a negative size {bbox}")
        if ann.get("iscrowd", 0) not in (0, 1):  # True/False compare equal to 1/0
            raise DatasetError(f"{source}: {where} field 'iscrowd' must be 0 or 1, got {ann['iscrowd']!r}")
        if "area" in ann:
            _need(ann, "area", where, source, (int, float))


def is_coco_category_set(categories: list[dict]) -> bool:
    """True when every ``(id, name)`` pair is an official COCO 2017 pair (ids 1..90)."""
    official = _coco_id2label()
    return bool(categories) and all(official.get(c["id"]) == c["name"] for c in categories)


class CocoDetection(torch.utils.data.Dataset):
    """``dataset[i] -> (image [3, h, w] float32 normalized, target)``.

    target: ``boxes [N, 4]`` cxcywh normalized by the unpadded transformed image, ``labels [N]``
    int64, ``image_id`` int, ``orig_size`` / ``size`` int64 ``(h, w)``, ``area [N]``, ``iscrowd [N]``.

    Args:
        images_dir: folder the json's ``file_name`` entries are relative to.
        annotation_file: COCO instances json.
        transforms: ``(PIL image, target) -> (tensor, target)`` such as
            :func:`yolos.data.transforms.make_transforms`; None only converts and normalizes.
        keep_category_ids: None (auto, see module doc), True (labels are category ids) or False
            (contiguous labels).
        image_ids: optional subset (and order) of image ids.
        check_files: check at construction that every image file exists.
        names: display names overriding the json's: ``{category id: name}`` or a list for the
            categories in ascending id order (``DatasetConfig.names``).
    """

    def __init__(self, images_dir, annotation_file, transforms=None, keep_category_ids=None,
                 image_ids=None, check_files: bool = True, names=None):
        self.images_dir = Path(images_dir)
        self.annotation_file = Path(annotation_file)
        self.transforms = transforms if transforms is not None else ToTensorNormalize()
        if not self.images_dir.is_dir():
            raise DatasetError(f"{self.images_dir}: images folder not found "
                               f"(for annotations {self.annotation_file})")
        data = load_coco_json(self.annotation_file)
        self.categories = sorted(data["categories"], key=lambda c: c["id"])
        display = {c["id"]: c["name"] for c in self.categories}
        if names is not None:
            display.update(self._names_override(names))
        self.images = {img["id"]: img for img in data["images"]}
        self.annotations: dict[int, list[dict]] = {i: [] for i in self.images}
        for ann in data["annotations"]:
            self.annotations[ann["image_id"]].append(ann)

        if keep_category_ids is None:
            keep_category_ids = is_coco_category_set(self.categories)
        self.keep_category_ids = bool(keep_category_ids)
        if self.keep_category_ids:
            top = max((c["id"] for c in self.categories), default=0)
            if any(c["id"] < 0 for c in self.categories):
                raise DatasetError(f"{self.annotation_file}: keep_category_ids needs category "
                                   f"ids >= 0")
            # 91 for COCO (ids 1..90 plus the unused 0), so COCO checkpoints line up.
            self.num_classes = max(91, top + 1) if is_coco_category_set(self.categories) else top + 1
            self.category_id_to_label = {c["id"]: c["id"] for c in self.categories}
        else:
            self.num_classes = len(self.categories)
            self.category_id_to_label = {c["id"]: i for i, c in enumerate(self.categories)}
        self._label_to_cat = {v: k for k, v in self.category_id_to_label.items()}
        self.class_names = {self.category_id_to_label[c["id"]]: display[c["id"]]
                            for c in self.categories}

        if image_ids is None:
            self.ids = sorted(self.images)
        else:
            self.ids = [int(i) for i in image_ids]
            missing = [i for i in self.ids if i not in self.images]
            if missing:
                raise DatasetError(f"{self.annotation_file}: image ids {missing[:5]} not in 'images'")
        if check_files:
            for image_id in self.ids:
                path = self.image_path(image_id)
                if not path.is_file():
                    raise DatasetError(f"{path}: image file not found (image id {image_id} "
                                       f"in {self.annotation_file})")

    def _names_override(self, names) -> dict[int, str]:
        ids = [c["id"] for c in self.categories]
        if isinstance(names, (list, tuple)):
            if len(names) != len(ids):
                raise DatasetError(f"names: {len(names)} names given but {self.annotation_file} "
                                   f"has {len(ids)} categories")
            return dict(zip(ids, map(str, names)))
        unknown = [k for k in names if k not in ids]
        if unknown:
            raise DatasetError(f"names: category ids {unknown} are not in {self.annotation_file}")
        return {int(k): str(v) for k, v in names.items()}

    # ----------------------------------------------------------------- mapping
    def label_to_category_id(self, label: int) -> int:
        """Category id to write in COCO results for a model label. In the 91-id space a label
        with no category (e.g. 0 or 12 in COCO) maps to itself; evaluation ignores it."""
        label = int(label)
        if self.keep_category_ids:
            return self._label_to_cat.get(label, label)
        if label not in self._label_to_cat:
            raise DatasetError(f"{self.annotation_file}: label {label} out of range "
                               f"0..{self.num_classes - 1}")
        return self._label_to_cat[label]

    def image_path(self, image_id: int) -> Path:
        return self.images_dir / self.images[image_id]["file_name"]

    def __len__(self) -> int:
        return len(self.ids)

    # ----------------------------------------------------------------- loading
    def load_image(self, image_id: int) -> Image.Image:
        """The image as RGB; a missing, undecodable, too small (below one 16x16 patch) or too
        large (above :data:`yolos.images.MAX_PIXELS`) file raises DatasetError."""
        from .. import images as im_rules

        path = self.image_path(image_id)
        try:
            with Image.open(path) as im:
                im_rules.check_pixels(im.width, im.height, f"{path} (image id {image_id})")
                image = im.convert("RGB")  # grayscale / CMYK / palette COCO images included
        except FileNotFoundError:
            raise DatasetError(f"{path}: image file not found (image id {image_id})") from None
        except im_rules.ImageError as e:
            raise DatasetError(str(e)) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, MemoryError,
                Image.DecompressionBombError) as e:
            raise DatasetError(f"{path}: cannot decode image (image id {image_id}): "
                               f"{type(e).__name__}: {e}") from None
        if min(image.size) < im_rules.MIN_SIDE:
            raise DatasetError(f"{path}: image is {image.width}x{image.height} pixels, smaller than one "
                               f"{im_rules.MIN_SIDE}x{im_rules.MIN_SIDE} patch (image id {image_id})")
        return image

    def raw_target(self, image_id: int, width: int, height: int) -> dict:
        """Targets before transforms: boxes xyxy in pixels, clamped, crowd/degenerate dropped."""
        anns = [a for a in self.annotations[image_id] if not a.get("iscrowd", 0)]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2].clamp_(min=0, max=width)
        boxes[:, 1::2].clamp_(min=0, max=height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        labels = torch.tensor([self.category_id_to_label[a["category_id"]] for a in anns],
                              dtype=torch.int64)
        area = torch.tensor([float(a.get("area", a["bbox"][2] * a["bbox"][3])) for a in anns],
                            dtype=torch.float32)
        iscrowd = torch.zeros(len(anns), dtype=torch.int64)
        return {
            "boxes": boxes[keep], "labels": labels[keep], "area": area[keep],
            "iscrowd": iscrowd[keep], "image_id": int(image_id),
            "orig_size": torch.tensor([height, width]), "size": torch.tensor([height, width]),
        }

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        image = self.load_image(image_id)
        target = self.raw_target(image_id, image.width, image.height)
        return self.transforms(image, target)

    def __repr__(self) -> str:
        mode = "COCO 91-id labels" if self.keep_category_ids else "contiguous labels"
        return (f"CocoDetection({os.fspath(self.annotation_file)!r}, images={len(self)}, "
                f"num_classes={self.num_classes}, {mode})")
