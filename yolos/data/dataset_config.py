"""Where a dataset's images and annotations are: a small YAML file, plain paths, or a folder.

YAML (relative paths are taken from ``path:``, itself relative to the YAML file)::

    path: /data/widgets            # optional root
    train:
      images: train/images
      annotations: train/annotations.json
    val:                           # optional: the train split is reused when absent
      images: val/images
      annotations: val/annotations.json
    names: {1: widget, 2: gadget}  # optional display names by category id (or a list, in id order)

A train split may be rendered instead of read (:class:`yolos.data.synthetic.SyntheticShapes`,
fresh images every epoch); it then needs a ``val:`` split on disk, such as one written by
``python -m yolos.data.synthetic`` with the same shapes::

    train:
      synthetic: {num_images: 8000, image_size: 128, max_objects: 8, min_size: 12, max_size: 64, seed: 1}
    val:
      images: val/images
      annotations: val/annotations.json

Folders recognized by :func:`resolve_dataset` (checked in this order):

* COCO: ``annotations/instances_<split>.json`` with images in ``<split>/`` or ``images/<split>/``
  (``train2017``/``val2017`` etc.);
* Roboflow COCO export: ``<split>/_annotations.coco.json`` with the images beside it
  (``train``, ``valid``/``val``);
* one split: ``annotations.json`` with ``images/`` (e.g. :func:`write_synthetic_dataset`).

When only one split exists it is used for both train and val.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetError


@dataclass
class DatasetConfig:
    train_images: Path | None
    train_annotations: Path | None
    val_images: Path
    val_annotations: Path
    # Display-name override, passed to CocoDetection(names=...): {category id: name}, or a
    # list of names for the categories in ascending id order.
    names: dict[int, str] | list[str] | None = None
    # A rendered train split: the mapping under ``train: synthetic:`` (then no train paths).
    train_synthetic: dict | None = None
    source: str = "<dataset>"  # the YAML or folder it came from, for messages

    def __post_init__(self):
        for name in ("train_images", "train_annotations", "val_images", "val_annotations"):
            value = getattr(self, name)
            setattr(self, name, None if value is None else Path(value))

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_paths(cls, train_images, train_annotations, val_images=None, val_annotations=None,
                   names=None) -> DatasetConfig:
        if (val_images is None) != (val_annotations is None):
            raise DatasetError("give both val images and val annotations, or neither")
        cfg = cls(train_images, train_annotations,
                  val_images if val_images is not None else train_images,
                  val_annotations if val_annotations is not None else train_annotations, names)
        cfg.check()
        return cfg

    @classmethod
    def from_yaml(cls, path) -> DatasetConfig:
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetError(f"{path}: dataset YAML not found") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise DatasetError(f"{path}: cannot parse dataset YAML ({e})") from None
        if not isinstance(data, dict):
            raise DatasetError(f"{path}: a dataset YAML must be a mapping with 'train:' (and 'val:')")
        root = data.get("path", ".")
        if not isinstance(root, str):
            raise DatasetError(f"{path}: field 'path' must be a folder path, got {root!r}")
        root = (path.parent / root).resolve()
        if "train" not in data:
            raise DatasetError(f"{path}: missing field 'train' (with 'images:' and 'annotations:')")

        def split(name: str):
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
            return out

        names = _parse_names(data.get("names"), path)
        entry = data["train"]
        if isinstance(entry, dict) and "synthetic" in entry:
            spec = entry["synthetic"]
            if not isinstance(spec, dict):
                raise DatasetError(f"{path}: field 'train.synthetic' must be a mapping of generator "
                                   f"options, got {spec!r}")
            if data.get("val") is None:
                raise DatasetError(f"{path}: a synthetic 'train' split needs a 'val' split on disk "
                                   f"(write one with python -m yolos.data.synthetic)")
            val = split("val")
            return cls(None, None, val[0], val[1], names, train_synthetic=dict(spec),
                       source=str(path))
        train = split("train")
        val = split("val") if data.get("val") is not None else train
        return cls(train[0], train[1], val[0], val[1], names, source=str(path))

    @classmethod
    def from_folder(cls, folder) -> DatasetConfig:
        folder = Path(folder)
        splits = _find_splits(folder)
        if not splits:
            raise DatasetError(
                f"{folder}: no COCO dataset layout found (expected annotations/instances_<split>.json "
                f"with <split>/ images, <split>/_annotations.coco.json, or annotations.json with "
                f"images/); or pass a dataset YAML")
        train = next((v for k, v in splits.items() if k.startswith("train")), None)
        val = next((v for k, v in splits.items() if k.startswith("val")), None)
        if train is None and val is None:
            train = val = next(iter(splits.values()))
        train, val = train or val, val or train
        return cls(train[0], train[1], val[0], val[1], source=str(folder))

    def check(self) -> None:
        for name in ("train_images", "train_annotations", "val_images", "val_annotations"):
            p = getattr(self, name)
            if p is not None and not p.exists():
                raise DatasetError(f"{name}: {p} does not exist")


def _parse_names(names, path) -> dict[int, str] | list[str] | None:
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


def _find_splits(folder: Path) -> dict[str, tuple[Path, Path]]:
    """split name -> (images dir, annotation json) for the layouts in the module docstring."""
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
    """A :class:`DatasetConfig` from a YAML path, a dataset folder, or a DatasetConfig."""
    if isinstance(spec, DatasetConfig):
        return spec
    path = Path(spec)
    if path.is_dir():
        return DatasetConfig.from_folder(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        return DatasetConfig.from_yaml(path)
    if not path.exists():
        raise DatasetError(f"{path}: dataset not found (give a dataset YAML or a COCO-style folder)")
    raise DatasetError(f"{path}: not a dataset YAML (.yaml/.yml) or a folder")
