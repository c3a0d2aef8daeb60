"""Where a dataset's images and annotations are, in any of the layouts users bring.

:func:`resolve_dataset` recognises the layout from the files:

* **COCO** json. A folder: ``annotations/instances_<split>.json`` with images in ``<split>/`` or
  ``images/<split>/``; a Roboflow COCO export (``train/``, ``valid/``, ``test/``, each with its
  ``_annotations.coco.json`` beside the images); or one split (``annotations.json`` +
  ``images/``, what ``python -m yolos.data.synthetic`` writes). Or a YAML (relative paths from
  ``path:``, itself relative to the YAML file)::

      path: /data/widgets
      train: {images: train/images, annotations: train/annotations.json}
      val: {images: val/images, annotations: val/annotations.json}   # optional: held out of train
      test: {images: test/images, annotations: test/annotations.json}   # optional
      names: {1: widget, 2: gadget}   # optional display names by category id (or a list, in id order)
      exif: auto                      # optional: frame of rotated photos' boxes (auto|displayed|stored)

  A train split may be rendered instead of read, fresh every epoch
  (``train: {synthetic: {num_images: 8000, image_size: 128, seed: 1, ...}}``,
  :mod:`yolos.data.synthetic`); it then needs a ``val:`` split on disk.
* **YOLO** (:mod:`yolos.data.yolo`): a ``data.yaml`` with ``train``/``val`` paths and ``names``,
  given directly or found in the folder (``data.yaml``, ``dataset.yaml``).
* **Pascal VOC / LabelImg** (:mod:`yolos.data.voc`): the VOC devkit (``Annotations/``,
  ``JPEGImages/``, ``ImageSets/Main/``), or LabelImg's XML files beside the images or in
  ``annotations/`` (in ``train/``/``val/`` folders or flat).

**A dataset without a val split** holds one out of train: ``val_fraction`` of its images (10% by
default, at least one), chosen by a hash of each file name and ``split_seed``, so every command
(``train``, ``val``, ``data check``, ``data convert``) holds out the same images, and adding
images does not move the others. ``val_fraction = 0`` evaluates on the training images
themselves, and says so. Every split is read through :meth:`DatasetConfig.dataset`, which runs
the dataset check (:mod:`yolos.data.check`).
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .. import defaults
from ..errors import DatasetError
from .check import FRAMES, RawSplit, read_text_file
from .classes import compared_split, config_match, match_classes
from .coco import read_coco_split
from .dataset import DetectionDataset
from .voc import VocReader, find_voc
from .yolo import is_yolo_yaml, parse_names, read_yolo_split, split_sources, yaml_base

SPLITS = ("train", "val", "test")
MAX_YAML_BYTES = 4 * 2**20
@dataclass
class SplitSpec:
    """Where one split is: ``layout`` "coco" (``images`` folder + ``annotations`` json), "yolo"
    (``sources``: folders, list files or images) or "voc" (read by the dataset's VOC reader);
    ``origin`` says where it came from, for messages."""

    layout: str
    images: Path
    annotations: Path | None = None
    sources: tuple = ()
    origin: str = ""


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
    test: SplitSpec | None = None
    kind: str = ""  # the layout as recognised, in words
    notes: list = field(default_factory=list)  # what resolving it decided (paths tried, folders used)
    val_fraction: float = defaults.VAL_FRACTION  # without a val split: the share of train held out
    split_seed: int = 0
    reader: object = field(default=None, repr=False)  # a layout's own state (the VOC reader)
    _raw: dict = field(default_factory=dict, repr=False)

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

    @property
    def held_out(self) -> bool:
        """The val split is a share of train's images (the dataset has none of its own)."""
        return self.val is None and self.train is not None and self.val_fraction > 0

    def splits(self) -> list[str]:
        """The splits there are: train and val (held out or train itself when the dataset has no
        val split), and test."""
        out = [] if self.train is None and self.train_synthetic is None else ["train"]
        if self.val is not None or self.train is not None:
            out.append("val")
        return out + (["test"] if self.test is not None else [])

    def describe(self) -> str:
        """One paragraph: the layout recognised, where each split comes from, what was decided."""
        lines = [f"dataset: {self.kind or self.layout} ({self.source})"]
        if self.train_synthetic is not None:
            lines.append("  train: rendered in memory")
        for name in SPLITS:
            spec = getattr(self, name)
            if spec is not None:
                lines.append(f"  {name}: {spec.origin or spec.annotations or spec.images}")
        if self.val is None and self.train is not None:
            lines.append(f"  val: {self.val_fraction:.0%} of train held out (seed {self.split_seed}; "
                         f"--val-fraction)" if self.held_out else
                         "  val: every image, the same as train (--val-fraction 0): AP on training images says little")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    # ------------------------------------------------------------------ reading
    def read(self, split: str) -> RawSplit:
        """The :class:`RawSplit` of ``"train"``, ``"val"`` or ``"test"`` as its layout's reader
        gives it; without a val split, train and val share train's images as the module doc says."""
        if split not in SPLITS:
            raise DatasetError(f"{self.source}: unknown split {split!r} (train, val or test)")
        if split in ("train", "val") and self.val is None and self.train is not None:
            whole = self._read_spec("train")
            if self.val_fraction <= 0:
                return whole if split == "train" else dataclasses.replace(whole, name="val")
            if split == "train" and len(whole.coco["images"]) < 2:
                return whole  # nothing to hold out; reading val says why
            train, val = hold_out(whole, self.val_fraction, self.split_seed)
            return train if split == "train" else val
        return self._read_spec(split)

    def _read_spec(self, split: str) -> RawSplit:
        spec = getattr(self, split)
        if spec is None:
            raise DatasetError(f"{self.source}: the dataset has no {split} split")
        if split not in self._raw:
            self._raw[split] = self._read_uncached(spec, split)
        raw = self._raw[split]
        return dataclasses.replace(raw, coco=dict(raw.coco), problems=list(raw.problems), notes=list(raw.notes))

    def _read_uncached(self, spec: SplitSpec, split: str) -> RawSplit:
        if spec.layout not in LAYOUTS:
            raise DatasetError(f"{self.source}: split {split} has an unknown layout {spec.layout!r}")
        return LAYOUTS[spec.layout].read(self, spec, split)

    def dataset(self, split: str, transforms=None, category_ids=None, keep_category_ids=None) -> DetectionDataset:
        """The checked dataset of a split (a fatal problem raises a DatasetError naming the file);
        ``category_ids``: a model's label space (see :class:`DetectionDataset`)."""
        names = self.names if self.layout == "coco" else None  # YOLO/VOC names are in the dict already
        return DetectionDataset.from_split(self.read(split), transforms, names=names, category_ids=category_ids,
                                        keep_category_ids=keep_category_ids)

    def named_categories(self, raw: RawSplit) -> list[dict]:
        """``[{"id", "name"}]`` of a split with the names a user sees (a COCO YAML's ``names:``)."""
        categories = sorted(raw.coco["categories"], key=lambda c: c["id"])
        names = self.names if self.layout == "coco" else None
        display = DetectionDataset._names_override(names, categories) if names is not None else {}
        return [{"id": c["id"], "name": display.get(c["id"], c["name"])} for c in categories]

    def dataset_for_model(self, split: str, config, transforms=None, class_map=None, say=None,
                          require_all: bool = False) -> DetectionDataset:
        """The split in the label space of a model with ModelConfig ``config``, its classes
        matched by name (:func:`yolos.data.classes.config_match`; ``class_map``: ``{model
        name: dataset name}`` pairs first). Categories no model label predicts are left out with
        their boxes (AP over what can be compared; ``require_all``: an error instead); ``say``
        gets the one line that tells what the match did, when it did anything. No class in
        common raises a DatasetError."""
        raw = self._named(split)
        match = config_match(config, raw.coco["categories"], class_map, source=raw.source)
        return self._in_label_space(raw, match, config.num_classes, transforms, say, require_all, "the model")

    def dataset_like(self, split: str, other: DetectionDataset, transforms=None, say=None) -> DetectionDataset:
        """The split in the label space of another split (``other``, usually train), matched by
        name: a val split that numbers the same classes differently is read right."""
        raw = self._named(split)
        names = {label: name for label, name in other.class_names.items()}
        ids = {label: other.label_to_category_id(label) for label in names}
        match = match_classes(names, raw.coco["categories"], model_ids=ids, what="the train split",
                              source=raw.source, num_labels=other.num_classes)
        return self._in_label_space(raw, match, other.num_classes, transforms, say, False, "the train split")

    def _named(self, split: str) -> RawSplit:
        raw = self.read(split)
        raw.coco = dict(raw.coco, categories=self.named_categories(raw))  # names baked in, before any is left out
        return raw

    @staticmethod
    def _in_label_space(raw: RawSplit, match, num_labels: int, transforms, say, require_all: bool,
                        what: str) -> DetectionDataset:
        line = match.summary(what)
        if require_all and match.missing:
            raise DatasetError(f"{raw.source}: {line}")
        if line and say is not None:
            say(f"{raw.name}: {line}")
        return DetectionDataset.from_split(compared_split(raw, match), transforms,
                                        category_ids=match.category_ids(num_labels))

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_paths(cls, train_images, train_annotations, val_images=None, val_annotations=None,
                   names=None) -> DatasetConfig:
        if (val_images is None) != (val_annotations is None):
            raise DatasetError("give both val images and val annotations, or neither")
        train = SplitSpec("coco", Path(train_images), Path(train_annotations))
        val = SplitSpec("coco", Path(val_images), Path(val_annotations)) if val_images is not None else None
        for p in (train.images, train.annotations) + ((val.images, val.annotations) if val else ()):
            if not p.exists():
                raise DatasetError(f"{p} does not exist")
        return cls(train, val, names, kind="COCO json")

    @classmethod
    def from_yaml(cls, path) -> DatasetConfig:
        path = Path(path)
        try:
            data = yaml.safe_load(read_text_file(path, MAX_YAML_BYTES, "dataset YAML"))
        except (yaml.YAMLError, RecursionError) as e:
            raise DatasetError(f"{path}: cannot parse dataset YAML ({e})") from None
        if not isinstance(data, dict):
            raise DatasetError(f"{path}: a dataset YAML must be a mapping with 'train:' (and 'val:')")
        exif = data.get("exif", "auto")
        if exif not in FRAMES:
            raise DatasetError(f"{path}: field 'exif' must be one of {', '.join(FRAMES)}, got {exif!r}")
        if is_yolo_yaml(data):
            return cls._from_yolo_yaml(data, path, exif)
        return cls._from_coco_yaml(data, path, exif)

    @classmethod
    def _from_yolo_yaml(cls, data: dict, path: Path, exif: str) -> DatasetConfig:
        notes: list[str] = []
        found = {s: split_sources(data, path, s, notes) for s in SPLITS}
        names = parse_names(data["names"], str(path))
        nc = data.get("nc")
        if isinstance(nc, str) and nc.strip().isdigit():
            nc = int(nc)
        if nc is not None and nc != len(names):
            raise DatasetError(f"{path}: field 'nc' is {nc!r} but 'names' has {len(names)} entries")
        specs = {s: None if v is None else SplitSpec("yolo", v[0], sources=tuple(v), origin=str(data.get(s)))
                 for s, v in found.items()}
        train = specs["train"] or specs["val"]
        if train is None:
            raise DatasetError(f"{path}: neither 'train' nor 'val' names images that are here "
                               f"({'; '.join(notes)})")
        return cls(train, specs["val"] if specs["train"] is not None else None, names, source=str(path),
                   layout="yolo", exif=exif, pose="kpt_shape" in data, test=specs["test"],
                   kind="YOLO data.yaml", notes=notes)

    @classmethod
    def _from_coco_yaml(cls, data: dict, path: Path, exif: str) -> DatasetConfig:
        if "train" not in data:
            raise DatasetError(f"{path}: missing field 'train' (with 'images:' and 'annotations:'; or "
                               f"a YOLO data.yaml with train/val paths and names)")
        notes: list[str] = []
        root = yaml_base(data, path, notes)

        def split(name: str) -> SplitSpec | None:
            entry = data.get(name)
            if entry is None:
                return None
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
            return SplitSpec("coco", out[0], out[1], origin=str(out[1]))

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
            return cls(None, split("val"), names, train_synthetic=dict(spec), source=str(path), exif=exif,
                       test=split("test"), kind="COCO json (YAML), train rendered", notes=notes)
        return cls(split("train"), split("val"), names, source=str(path), exif=exif, test=split("test"),
                   kind="COCO json (YAML)", notes=notes)

    @classmethod
    def from_folder(cls, folder) -> DatasetConfig:
        """The dataset in ``folder``: the first layout of :data:`LAYOUTS` that recognises it."""
        folder = Path(folder)
        for layout in LAYOUTS.values():
            found = layout.detect(folder)
            if found is not None:
                return found
        there = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())[:12] if folder.is_dir() else []
        hint = ""
        if (folder / "images").is_dir() and (folder / "labels").is_dir():
            hint = " (images/ and labels/ look like YOLO, but there is no data.yaml with names)"
        raise DatasetError(f"{folder}: no dataset layout found{hint}; looked for {looked_for()}; "
                           f"the folder holds: {', '.join(there) or 'nothing'}")


# ----------------------------------------------------------------------------- the layouts
@dataclass(frozen=True)
class Layout:
    """A row of the layout table: what it looks for (for messages), how it recognises a folder
    (``detect(folder) -> DatasetConfig or None``) and how it reads one of its splits
    (``read(dataset config, split spec, split name) -> RawSplit``)."""

    name: str
    looks_for: str
    detect: Callable[[Path], DatasetConfig | None]
    read: Callable[[DatasetConfig, SplitSpec, str], RawSplit]


def _coco_folder(folder: Path) -> DatasetConfig | None:
    found = _find_coco_splits(folder)
    if not found:
        return None
    kind, splits = found
    specs = {}
    for name in SPLITS:
        match = next((v for k, v in splits.items() if k.startswith(name)), None)
        specs[name] = None if match is None else SplitSpec("coco", *match, origin=str(match[1]))
    if specs["train"] is None:  # no train split: the one there is reads as train too
        first = next(iter(splits.values()))
        specs["train"] = specs["val"] or specs["test"] or SplitSpec("coco", *first, origin=str(first[1]))
    return DatasetConfig(specs["train"], specs["val"], source=str(folder), test=specs["test"], kind=kind)


def _yaml_folder(folder: Path) -> DatasetConfig | None:
    for name in ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml"):
        if (folder / name).is_file():
            return DatasetConfig.from_yaml(folder / name)
    return None


def _voc_folder(folder: Path) -> DatasetConfig | None:
    layout = find_voc(folder) if folder.is_dir() else None
    if layout is None:
        return None
    specs = {name: None if name not in layout.splits else
             SplitSpec("voc", layout.splits[name].images, origin=layout.splits[name].origin) for name in SPLITS}
    return DatasetConfig(specs["train"], specs["val"], source=str(layout.root), layout="voc", test=specs["test"],
                         kind=layout.kind, reader=VocReader(layout))


LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (
    Layout("coco", "COCO (annotations/instances_<split>.json with <split>/ images; train/ valid/ test/ with "
                   "_annotations.coco.json; annotations.json with images/)", _coco_folder,
           lambda dc, spec, split: read_coco_split(spec.images, spec.annotations, split, dc.exif)),
    Layout("yolo", "YOLO (data.yaml or dataset.yaml with train/val/names)", _yaml_folder,
           lambda dc, spec, split: read_yolo_split(split, list(spec.sources), parse_names(dc.names, dc.source),
                                                   dc.source, dc.pose, dc.exif)),
    Layout("voc", "Pascal VOC (Annotations/*.xml with JPEGImages/), LabelImg (*.xml beside the images, or "
                  "annotations/*.xml with images/, flat or in train/ val/ folders)", _voc_folder,
           lambda dc, spec, split: dc.reader.read(split)),
)}


def looked_for() -> str:
    """What :meth:`DatasetConfig.from_folder` looks for, from the table (for messages)."""
    return "; ".join(layout.looks_for for layout in LAYOUTS.values())


def shared_images(a: RawSplit, b: RawSplit) -> list[str]:
    """Image files two splits both hold (the same photo in train and val inflates val AP)."""
    files = {str(a.image_path(im).resolve()) for im in a.coco["images"]}
    return sorted(f for f in (str(b.image_path(im).resolve()) for im in b.coco["images"]) if f in files)


def hold_out(raw: RawSplit, fraction: float, seed: int) -> tuple[RawSplit, RawSplit]:
    """``(train, val)`` of one split: the ``fraction`` of its images (at least one) that come
    first by a hash of ``(seed, file name)``, so the choice is the same in every process and
    does not move when images are added. The reader's problems stay with train; its fatal ones
    (a broken file) go to val too, so that both refuse it."""
    images = raw.coco["images"]
    if not images:
        raise DatasetError(f"{raw.source}: the dataset has no images")
    if len(images) < 2:
        raise DatasetError(f"{raw.source}: {len(images)} image(s): too few to hold out a val split; give the "
                           f"dataset a val split, or --val-fraction 0 to evaluate on the training images")
    key = lambda im: hashlib.sha1(f"{seed}/{im['file_name']}".encode()).hexdigest()  # noqa: E731
    count = min(len(images) - 1, max(1, round(fraction * len(images))))
    val_ids = {im["id"] for im in sorted(images, key=key)[:count]}

    def part(name: str, keep, problems, note: str) -> RawSplit:
        coco = dict(raw.coco, images=[im for im in images if keep(im["id"])],
                    annotations=[a for a in raw.coco["annotations"] if keep(a["image_id"])])
        return dataclasses.replace(raw, name=name, coco=coco, problems=problems, notes=raw.notes + [note])

    note = f"val: {count} of {len(images)} images held out of train (seed {seed})"
    return (part("train", lambda i: i not in val_ids, list(raw.problems), note),
            part("val", lambda i: i in val_ids, [p for p in raw.problems if p.fatal], note))


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


def _find_coco_splits(folder: Path) -> tuple[str, dict[str, tuple[Path, Path]]] | None:
    """``(kind, {split name: (images dir, annotation json)})`` for the COCO layouts of the
    module docstring, or None."""
    found: dict[str, tuple[Path, Path]] = {}
    ann_dir = folder / "annotations"
    if ann_dir.is_dir():
        for ann in sorted(ann_dir.glob("instances_*.json")):
            split = ann.stem[len("instances_"):]
            for images in (folder / split, folder / "images" / split):
                if images.is_dir():
                    found[split] = (images, ann)
                    break
    if found:
        return "COCO (annotations/instances_<split>.json)", found
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        ann = sub / "_annotations.coco.json"
        if ann.is_file():
            found["val" if sub.name == "valid" else sub.name] = (sub, ann)
    if found:
        return "COCO (Roboflow export: <split>/_annotations.coco.json)", found
    if (folder / "annotations.json").is_file() and (folder / "images").is_dir():
        return "COCO (annotations.json with images/)", {"all": (folder / "images", folder / "annotations.json")}
    return None


def resolve_dataset(spec, val_fraction: float | None = None) -> DatasetConfig:
    """A :class:`DatasetConfig` from a dataset YAML (ours or YOLO's), a dataset folder (COCO,
    YOLO with its data.yaml, VOC, LabelImg), or a DatasetConfig. ``val_fraction``: the share of
    train held out when the dataset has no val split (None: 10%; 0: none, val is train)."""
    if isinstance(spec, DatasetConfig):
        dc = spec
    else:
        path = Path(spec)
        if path.is_dir():
            dc = DatasetConfig.from_folder(path)
        elif path.suffix.lower() in (".yaml", ".yml"):
            dc = DatasetConfig.from_yaml(path)
        elif not path.exists():
            raise DatasetError(f"{path}: dataset not found (give a dataset YAML or a dataset folder)")
        else:
            raise DatasetError(f"{path}: not a dataset YAML (.yaml/.yml) or a folder; looked for {looked_for()}")
    if val_fraction is not None:
        if not 0 <= val_fraction < 1:
            raise ValueError(f"--val-fraction: expected a number in [0, 1), got {val_fraction!r}")
        if dc.val is not None:
            dc.notes.append(f"--val-fraction {val_fraction:g} not used: the dataset has a val split")
        dc.val_fraction = float(val_fraction)
    return dc
