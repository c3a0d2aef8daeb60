"""The dataset every layout is read through: :class:`DetectionDataset`, a checked split in a label space.

Category ids -> labels (the model's class indices):
* a **COCO** dataset keeps the sparse 91-id space (label == category id, ``num_classes = 91``)
  so released checkpoints line up. A dataset counts as COCO when every category's
  ``(id, name)`` pair is one of the official COCO 2017 pairs (ids within 1..90), which holds
  for the full COCO json and for any subset of it.
* any other dataset maps its category ids, sorted, to contiguous labels ``0..K-1``
  (``num_classes = K``); :attr:`DetectionDataset.category_ids` maps back (a model trained on it
  stores them, so every output names the dataset's own ids).
``keep_category_ids=True/False`` forces either choice; ``category_ids=[...]`` takes a model's
label space (label i = ``category_ids[i]``).

Targets (hustvl/YOLOS ``ConvertCocoPolysToMask``): crowd annotations (and VOC's "difficult"
objects, read as crowd) are dropped from training targets (they stay for evaluation, which
ignores detections matched to them); boxes come clipped to the image from the check
(:mod:`yolos.data.check`), in the frame of the image as displayed.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import DatasetError, ImageError
from ..images import load_image
from .cache import ImageCache
from .check import RawSplit, normalize_split, raise_fatal
from .coco import read_coco_split
from .targets import raw_target
from .transforms import ToTensorNormalize


def _coco_id2label() -> dict[int, str]:
    from ..coco_names import COCO_ID2LABEL

    return {i: n for i, n in COCO_ID2LABEL.items() if n != "N/A"}


def is_coco_category_set(categories: list[dict]) -> bool:
    """True when every ``(id, name)`` pair is an official COCO 2017 pair (ids 1..90)."""
    official = _coco_id2label()
    return bool(categories) and all(official.get(c["id"]) == c["name"] for c in categories)


class DetectionDataset(torch.utils.data.Dataset):
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
                   keep_category_ids=None) -> DetectionDataset:
        self = cls.__new__(cls)
        self._setup(raw, transforms, keep_category_ids, None, names, category_ids)
        return self

    def _setup(self, raw: RawSplit, transforms, keep_category_ids, image_ids, names, category_ids) -> None:
        self.images_dir = raw.images_root
        self.annotation_file = raw.source
        self.transforms = transforms if transforms is not None else ToTensorNormalize()
        self.cache: ImageCache | None = None
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

    def read(self, image_id: int) -> tuple:
        """``(PIL RGB image, raw target)`` of one image: from the cache, else from its file."""
        if self.cache is not None and image_id in self.cache:
            return self.cache.get(image_id)
        image = self.load_image(image_id)
        return image, self.raw_target(image_id, image.width, image.height)

    def __getitem__(self, index: int):
        return self.transforms(*self.read(self.ids[index]))

    # ----------------------------------------------------------------- cache
    def decoded_sizes(self) -> dict[int, tuple[int, int]]:
        """``image id -> (width, height)`` of every image of :attr:`ids`, as decoded (the checked frame)."""
        return {i: (self.images[i]["width"], self.images[i]["height"]) for i in dict.fromkeys(self.ids)}

    def keep_in_memory(self, threads: int = 2, shared: bool = False) -> None:
        """Decode every image of :attr:`ids` now and serve items from memory (:mod:`yolos.data.cache`);
        ``shared``: in shared memory, for DataLoader workers that are not forked."""
        self.cache = None
        cache = ImageCache(self.decoded_sizes(), shared)
        cache.fill(self.read, threads)
        self.cache = cache

    def ground_truth(self) -> dict:
        """The COCO dict that evaluation scores against: this split's images and annotations as
        checked (displayed frame, clipped), restricted to :attr:`ids`."""
        ids = set(self.ids)
        return dict(self.coco, images=[im for im in self.coco["images"] if im["id"] in ids],
                    annotations=[a for a in self.coco["annotations"] if a["image_id"] in ids],
                    categories=self.categories)

    def __repr__(self) -> str:
        mode = "COCO 91-id labels" if self.keep_category_ids else "contiguous labels"
        return (f"DetectionDataset({os.fspath(self.annotation_file)!r}, images={len(self)}, "
                f"num_classes={self.num_classes}, {mode})")


__all__ = ["DetectionDataset", "is_coco_category_set"]
