"""Where a dataset's images and annotations are, in any of the three layouts users bring.

:func:`resolve_dataset` recognises the layout from the files:

* **COCO** json. A folder: ``annotations/instances_<split>.json`` with images in ``<split>/`` or
  ``images/<split>/``; a Roboflow COCO export (``<split>/_annotations.coco.json`` with the images
  beside it); or one split (``annotations.json`` + ``images/``, what
  ``python -m yolos.data.synthetic`` writes). Or a YAML (relative paths from ``path:``, itself
  relative to the YAML file)::

      path: /data/widgets
      train: {images: train/images, annotations: train/annotations.json}
      val: {images: val/images, annotations: val/annotations.json}   # optional: train is reused
      names: {1: widget, 2: gadget}   # optional display names by category id (or a list, in id order)
      exif: auto                      # optional: frame of rotated photos' boxes (auto|displayed|stored)

  A train split may be rendered instead of read, fresh every epoch
  (``train: {synthetic: {num_images: 8000, image_size: 128, seed: 1, ...}}``,
  :mod:`yolos.data.synthetic`); it then needs a ``val:`` split on disk.
* **YOLO** (:mod:`yolos.data.yolo`): a ``data.yaml`` with ``train``/``val`` paths and ``names``,
  given directly or found in the folder (``data.yaml``, ``dataset.yaml``).
* **Pascal VOC** (:mod:`yolos.data.voc`): a folder with ``Annotations/`` and ``JPEGImages/``
  (or ``VOCdevkit/VOC20xx/`` inside it).

When only one split exists it is used for both train and val. Every split is read through
:meth:`DatasetConfig.dataset`, which runs the dataset check (:mod:`yolos.data.check`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import DatasetError
from .check import FRAMES, RawSplit
from .coco import CocoDetection, read_coco_split
from .voc import VocReader, find_voc_root
from .yolo import is_yolo_yaml, parse_names, read_yolo_split, split_sources

LAYOUTS_LOOKED_FOR = (
    "COCO (annotations/instances_<split>.json with <split>/ images; <split>/_annotations.coco.json; "
    "annotations.json with images/), YOLO (data.yaml or dataset.yaml with train/val/names), "
    "Pascal VOC (Annotations/*.xml with JPEGImages/)")


@dataclass
class SplitSpec:
    """Where one split is: ``layout`` "coco" (``images`` folder + ``annotations`` json), "yolo"
    (``sources``: folders, list files or images) or "voc" (``images`` is the VOC root)."""

    layout: str
    images: Path
    annotations: Path | None = None
    sources: tuple = ()


@dataclass
class DatasetConfig:
    train: SplitSpec | None
    val: SplitSpec | None
    # Display names (COCO: {category id: name} or a list in ascending id order; YOLO: its names).
    names: dict[int, str] | list[str] | None = None
    train_synthetic: dict | None = None  # the mapping under ``train: synthetic:``
    source: str = "<dataset>"  # the YAML or folder it came from, for messages
    layout: str = "coco"
    exif: str = "auto"  # frame of EXIF-rotated photos' boxes: see yolos.data.check.box_frame
    pose: bool = False  # YOLO: label lines carry keypoints after the box
    _voc: VocReader | None = field(default=None, repr=False)

    # --------------------------------------------------------------- COCO paths (convenience)
    @property
    def train_images(self):
        return None if self.train is None else self.train.images

    @property
    def train_annotations(self):
        return None if self.train is None else self.train.annotations

    @property
    def val_images(self):
        return None if self.val is None else self.val.images

    @property
    def val_annotations(self):
        return None if self.val is None else self.val.annotations

    # ------------------------------------------------------------------ reading
    def read(self, split: str) -> RawSplit:
        """The :class:`RawSplit` of ``"train"`` or ``"val"`` as its layout's reader gives it."""
        spec = getattr(self, split)
        if spec is None:
            raise DatasetError(f"{self.source}: the dataset has no {split} split")
        if spec.layout == "coco":
            return read_coco_split(spec.images, spec.annotations, split, self.exif)
        if spec.layout == "yolo":
            return read_yolo_split(split, list(spec.sources), parse_names(self.names, self.source), self.source,
                                   self.pose, self.exif)
        if self._voc is None:
            self._voc = VocReader(spec.images, self.exif)
        return self._voc.read(split)

    def dataset(self, split: str, transforms=None, category_ids=None, keep_category_ids=None) -> CocoDetection:
        """The checked dataset of a split (a fatal problem raises a DatasetError naming the file);
        ``category_ids``: a model's label space (see :class:`CocoDetection`)."""
        names = self.names if self.layout == "coco" else None  # YOLO/VOC names are in the dict already
        return CocoDetection.from_split(self.read(split), transforms, names=names, category_ids=category_ids,
                                        keep_category_ids=keep_category_ids)

    def dataset_for_model(self, split: str, config, transforms=None) -> CocoDetection:
        """The split in the label space of a model with ModelConfig ``config``: label i is its
        stored ``category_ids[i]``, or, for a dataset whose ids differ (a VOC copy numbers its
        classes 1..K by name), the category of the same name. A model without ids (COCO's
        91-id space, files written before ids were kept) takes the dataset's own mapping, which
        must give its class count."""
        if config.category_ids is None:
            ds = self.dataset(split, transforms)
            if ds.num_classes != config.num_classes:
                raise DatasetError(f"{ds.annotation_file}: labels span {ds.num_classes} classes, but the model "
                                   f"predicts {config.num_classes}; evaluate on the dataset it was trained for")
            return ds
        raw = self.read(split)
        ids = {c["id"] for c in raw.coco["categories"]}
        category_ids = list(config.category_ids)
        if not ids <= set(category_ids) and config.class_names:
            by_name = {c["name"]: c["id"] for c in raw.coco["categories"]}
            if set(by_name) <= set(config.class_names.values()):
                # label i -> the dataset's category named like it; labels it lacks get unused ids
                unused = iter(range(-1, -10**9, -1))
                category_ids = [by_name.get(config.label_name(i), next(unused)) for i in range(config.num_classes)]
        return CocoDetection.from_split(raw, transforms, names=self.names if self.layout == "coco" else None,
                                        category_ids=category_ids)

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_paths(cls, train_images, train_annotations, val_images=None, val_annotations=None,
                   names=None) -> DatasetConfig:
        if (val_images is None) != (val_annotations is None):
            raise DatasetError("give both val images and val annotations, or neither")
        train = SplitSpec("coco", Path(train_images), Path(train_annotations))
        val = SplitSpec("coco", Path(val_images), Path(val_annotations)) if val_images is not None else train
        for p in (train.images, train.annotations, val.images, val.annotations):
            if not p.exists():
                raise DatasetError(f"{p} does not exist")
        return cls(train, val, names)

    @classmethod
    def from_yaml(cls, path) -> DatasetConfig:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetError(f"{path}: dataset YAML not found") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as e:
            raise DatasetError(f"{path}: cannot parse dataset YAML ({e})") from None
        if not isinstance(data, dict):
            raise DatasetError(f"{path}: a dataset YAML must be a mapping with 'train:' (and 'val:')")
        exif = data.get("exif", "auto")
        if exif not in FRAMES:
            raise DatasetError(f"{path}: field 'exif' must be one of {', '.join(FRAMES)}, got {exif!r}")
        if is_yolo_yaml(data):
            train, val = (split_sources(data, path, s) for s in ("train", "val"))
            names = parse_names(data["names"], str(path))
            nc = data.get("nc")
            if nc is not None and nc != len(names):
                raise DatasetError(f"{path}: field 'nc' is {nc} but 'names' has {len(names)} entries")
            specs = [None if s is None else SplitSpec("yolo", s[0], sources=tuple(s)) for s in (train, val)]
            train_spec, val_spec = specs[0] or specs[1], specs[1] or specs[0]
            return cls(train_spec, val_spec, names, source=str(path), layout="yolo", exif=exif,
                       pose="kpt_shape" in data)
        return cls._from_coco_yaml(data, path, exif)

    @classmethod
    def _from_coco_yaml(cls, data: dict, path: Path, exif: str) -> DatasetConfig:
        root = data.get("path", ".")
        if not isinstance(root, str):
            raise DatasetError(f"{path}: field 'path' must be a folder path, got {root!r}")
        root = (path.parent / root).resolve()
        if "train" not in data:
            raise DatasetError(f"{path}: missing field 'train' (with 'images:' and 'annotations:'; or "
                               f"a YOLO data.yaml with train/val paths and names)")

        def split(name: str) -> SplitSpec:
            entry = data[name]
            if not isinstance(entry, dict):
                raise DatasetError(f"{path}: field '{name}' must be a mapping with 'images:' and "
                                   f"'annotations:', got {entry!r}")
            out = []
            for key in ("images", "annotations"):
                value = entry.get(key)
                if not isinstance(value, str):
                    raise DatasetError(f"{path}: field '{name}.{key}' is missing or not a path")
                p = root / value
                if not p.exists():
                    raise DatasetError(f"{path}: field '{name}.{key}' points to {p}, which does not exist")
                out.append(p)
            return SplitSpec("coco", out[0], out[1])

        names = _parse_coco_names(data.get("names"), path)
        entry = data["train"]
        if isinstance(entry, dict) and "synthetic" in entry:
            spec = entry["synthetic"]
            if not isinstance(spec, dict):
                raise DatasetError(f"{path}: field 'train.synthetic' must be a mapping of generator "
                                   f"options, got {spec!r}")
            if data.get("val") is None:
                raise DatasetError(f"{path}: a synthetic 'train' split needs a 'val' split on disk "
                                   f"(write one with python -m yolos.data.synthetic)")
            return cls(None, split("val"), names, train_synthetic=dict(spec), source=str(path), exif=exif)
        train = split("train")
        val = split("val") if data.get("val") is not None else train
        return cls(train, val, names, source=str(path), exif=exif)

    @classmethod
    def from_folder(cls, folder) -> DatasetConfig:
        folder = Path(folder)
        splits = _find_coco_splits(folder)
        if splits:
            train = next((v for k, v in splits.items() if k.startswith("train")), None)
            val = next((v for k, v in splits.items() if k.startswith("val")), None)
            if train is None and val is None:
                train = val = next(iter(splits.values()))
            train, val = train or val, val or train
            return cls(SplitSpec("coco", *train), SplitSpec("coco", *val), source=str(folder))
        for name in ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml"):
            if (folder / name).is_file():
                return cls.from_yaml(folder / name)
        voc = find_voc_root(folder)
        if voc is not None:
            if not (voc / "JPEGImages").is_dir():
                raise DatasetError(f"{voc}: a Pascal VOC layout needs JPEGImages/ beside Annotations/")
            spec = SplitSpec("voc", voc)
            return cls(spec, spec, source=str(voc), layout="voc")
        found = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())[:12] if folder.is_dir() else []
        hint = ""
        if (folder / "images").is_dir() and (folder / "labels").is_dir():
            hint = " (images/ and labels/ look like YOLO, but there is no data.yaml with names)"
        raise DatasetError(f"{folder}: no dataset layout found{hint}; looked for {LAYOUTS_LOOKED_FOR}; "
                           f"the folder holds: {', '.join(found) or 'nothing'}")


def _parse_coco_names(names, path) -> dict[int, str] | list[str] | None:
    if names is None:
        return None
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict):
        try:
            return {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: field 'names' keys must be category ids (integers)") from None
    raise DatasetError(f"{path}: field 'names' must be a list or a mapping, got {type(names).__name__}")


def _find_coco_splits(folder: Path) -> dict[str, tuple[Path, Path]]:
    """split name -> (images dir, annotation json) for the COCO layouts in the module docstring."""
    found: dict[str, tuple[Path, Path]] = {}
    ann_dir = folder / "annotations"
    if ann_dir.is_dir():
        for ann in sorted(ann_dir.glob("instances_*.json")):
            split = ann.stem[len("instances_"):]
            for images in (folder / split, folder / "images" / split):
                if images.is_dir():
                    found[split] = (images, ann)
                    break
    if not found:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
            ann = sub / "_annotations.coco.json"
            if ann.is_file():
                found["val" if sub.name == "valid" else sub.name] = (sub, ann)
    if not found and (folder / "annotations.json").is_file() and (folder / "images").is_dir():
        found["all"] = (folder / "images", folder / "annotations.json")
    return found


def resolve_dataset(spec) -> DatasetConfig:
    """A :class:`DatasetConfig` from a dataset YAML (ours or YOLO's), a dataset folder (COCO,
    YOLO with its data.yaml, VOC), or a DatasetConfig."""
    if isinstance(spec, DatasetConfig):
        return spec
    path = Path(spec)
    if path.is_dir():
        return DatasetConfig.from_folder(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        return DatasetConfig.from_yaml(path)
    if not path.exists():
        raise DatasetError(f"{path}: dataset not found (give a dataset YAML or a dataset folder)")
    raise DatasetError(f"{path}: not a dataset YAML (.yaml/.yml) or a folder; looked for {LAYOUTS_LOOKED_FOR}")
