"""The YOLO text layout (Ultralytics, Roboflow, CVAT and Label Studio exports), read in place.

``data.yaml``::

    path: /data/widgets          # optional root, relative to this file (default: its folder)
    train: images/train          # a folder of images, a .txt list of image paths, or a list of those
    val: images/val
    names: [widget, gadget]      # or {0: widget, 1: gadget}; the class index is the category id

Each image ``.../images/.../a.jpg`` has its labels in ``.../labels/.../a.txt`` (the last
``images`` folder of the path becomes ``labels``; an image with no such folder has them beside
it), one object per line: ``class cx cy w h``, normalized by the image's width and height. A line
with more numbers is a polygon (a segmentation export, ``class x1 y1 x2 y2 ...``) and counts as
its bounding box (with ``kpt_shape`` in the yaml, a pose line: its first four numbers are the box).
An empty or missing label file is an image with no objects. Roboflow's ``train: ../train/images``
also resolves beside the yaml, as Ultralytics does.

Normalized labels carry no image size, so they cannot say which frame a rotated photo was
labelled in: they are taken in the displayed frame (EXIF orientation applied), as Ultralytics
trains and its annotation tools show them.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import yaml

from ..box_ops import cxcywh_to_xyxy
from ..errors import DatasetError, ImageError
from ..images import IMAGE_EXTENSIONS, probe_image
from .check import Problem, RawSplit, read_list_lines, read_text_file

MAX_LABEL_BYTES = 16 * 2**20


def is_yolo_yaml(data) -> bool:
    """A parsed YAML in the YOLO form: ``names`` plus ``train`` or ``val`` given as paths."""
    if not isinstance(data, dict) or "names" not in data:
        return False
    splits = [data.get(k) for k in ("train", "val") if data.get(k) is not None]
    return bool(splits) and all(isinstance(s, (str, list)) for s in splits)


def parse_names(names, source: str) -> dict[int, str]:
    """``{class index: name}`` from a list or a mapping."""
    if isinstance(names, list):
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict):
        try:
            out = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise DatasetError(f"{source}: field 'names' keys must be class indices (integers)") from None
        if any(k < 0 for k in out):
            raise DatasetError(f"{source}: field 'names' has a negative class index")
        return out
    raise DatasetError(f"{source}: field 'names' must be a list or a mapping, got {type(names).__name__}")


def split_sources(data: dict, yaml_path: Path, split: str, notes: list | None = None) -> list[Path] | None:
    """The folders / list files / images the yaml names for ``split`` (None when absent).

    Resolved as Ultralytics does: from ``path:`` (relative to the yaml), or, when that folder
    does not exist here (an export made on someone else's machine), from the yaml's own folder;
    ``../x`` (Roboflow) also beside the yaml. A val or test entry that exists nowhere is left
    out with a line in ``notes`` (the val split is then held out of train); a missing train
    entry is an error that shows every path tried."""
    entry = data.get(split)
    if entry is None:
        return None
    base = yaml_base(data, yaml_path, notes)
    entries = entry if isinstance(entry, list) else [entry]
    out = []
    for item in entries:
        if not isinstance(item, str) or not item.strip():
            raise DatasetError(f"{yaml_path}: field '{split}' must be a path or a list of paths, got {item!r}")
        tried = _candidates(item, base, yaml_path.parent)
        found = next((p for p in tried if p.exists()), None)
        if found is None:
            where = " or ".join(str(p) for p in tried)
            if split == "train":
                raise DatasetError(f"{yaml_path}: field 'train' points to {where}, which does not exist")
            if notes is not None:
                notes.append(f"{split}: {item} is not here ({where}): no {split} split")
            return None
        out.append(found)
    return out


def yaml_base(data: dict, yaml_path: Path, notes: list | None = None) -> Path:
    """The folder a data.yaml's paths are relative to: its ``path:`` (relative to the yaml), or the
    yaml's own folder when ``path:`` names a folder that is not here."""
    root = data.get("path")
    if root is not None and not isinstance(root, str):
        raise DatasetError(f"{yaml_path}: field 'path' must be a folder path, got {root!r}")
    here = yaml_path.parent.resolve()
    base = (here / (root or ".")).resolve()
    if not base.is_dir():
        if notes is not None and not any(n.startswith("path:") for n in notes):
            notes.append(f"path: {root} is not a folder here; reading paths from the yaml's folder {here}")
        return here
    return base


def _candidates(item: str, base: Path, here: Path) -> list[Path]:
    tried = [base / item]
    if item.startswith("../"):  # Roboflow's exports: beside the yaml
        tried.append(base / item[3:])
    if here.resolve() != base:
        tried.append(here / item)
    return list(dict.fromkeys(tried))


def image_files(sources: list[Path]) -> list[Path]:
    """Every image of the sources: a folder's image files (recursively, sorted), a list file's
    lines (relative ones from the list's folder), or an image itself."""
    files: list[Path] = []
    for src in sources:
        if src.is_dir():
            files += sorted(f for f in src.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        elif src.suffix.lower() == ".txt":
            for line in read_list_lines(src):
                p = Path(line)
                files.append(p if p.is_absolute() else src.parent / p)
        else:
            files.append(src)
    return files


def label_path(image: Path) -> Path:
    """``.../images/x/a.jpg -> .../labels/x/a.txt`` (the last ``images`` part), else ``a.txt`` beside it."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _parse_line(text: str, where: str, names: dict[int, str], pose: bool):
    """``(class index, (x0, y0, x1, y1) normalized)`` of one label line, or a fatal Problem."""
    fields = text.split()
    try:
        values = [float(v) for v in fields]
    except ValueError:
        return Problem(where, f"not numbers: {text.strip()[:60]!r}")
    if not all(math.isfinite(v) for v in values):
        return Problem(where, f"non-finite number in {text.strip()[:60]!r}")
    cls = values[0]
    if cls != int(cls) or int(cls) not in names:
        return Problem(where, f"class {fields[0]} is not one of names' indices "
                              f"({min(names, default=0)}..{max(names, default=-1)})")
    coords = values[1:]
    if len(coords) == 4 or (pose and len(coords) > 4):
        cx, cy, w, h = coords[:4]
        if w < 0 or h < 0:
            return Problem(where, f"negative box size {w:g} x {h:g}")
        return int(cls), tuple(cxcywh_to_xyxy(torch.tensor(coords[:4], dtype=torch.float64)).tolist())
    if len(coords) >= 6 and len(coords) % 2 == 0:  # polygon -> its bounding box
        xs, ys = coords[0::2], coords[1::2]
        return int(cls), (min(xs), min(ys), max(xs), max(ys))
    return Problem(where, f"expected 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...', "
                          f"got {len(fields)} numbers")


def read_yolo_split(name: str, sources: list[Path], names: dict[int, str], source: str,
                    pose: bool = False, frame: str = "auto") -> RawSplit:
    """A :class:`RawSplit` of the images of ``sources`` and their label files."""
    files = image_files(sources)
    problems: list[Problem] = []
    resolved = [f.resolve() for f in files]
    root = Path(os.path.commonpath([str(f.parent) for f in resolved])) if resolved else Path(".")
    images, annotations, where_image, where_box, probed, seen = [], [], {}, {}, {}, {}
    label_owner: dict[Path, Path] = {}
    for path in resolved:
        if path in seen:
            problems.append(Problem(str(path), f"listed twice in the {name} split (duplicate image id)"))
            continue
        image_id = len(images) + 1
        seen[path] = image_id
        images.append({"id": image_id, "file_name": str(path.relative_to(root))})
        where_image[image_id] = str(path)
        labels = label_path(path)
        if labels in label_owner:
            problems.append(Problem(str(labels), f"is the label file of both {label_owner[labels].name} and "
                                                 f"{path.name}: both get its boxes", fatal=False))
        label_owner.setdefault(labels, path)  # before the probe: an unreadable image's labels are no orphans
        try:
            w, h, orientation = probe_image(path)
        except ImageError as err:
            probed[image_id] = err  # the check reports it, once
            continue
        probed[image_id] = (w, h, orientation)
        if not labels.is_file():
            continue  # no label file: an image without objects
        try:
            text = read_text_file(labels, MAX_LABEL_BYTES, "label file")
        except DatasetError as err:
            problems.append(Problem(str(labels), str(err).split(": ", 1)[-1]))
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{labels}:{number}"
            parsed = _parse_line(line, where, names, pose)
            if isinstance(parsed, Problem):
                problems.append(parsed)
                continue
            cls, (x0, y0, x1, y1) = parsed
            ann_id = len(annotations) + 1
            # edges in pixels, to a thousandth (finer than six decimals of a side): integer-pixel
            # boxes written by a tool read back exactly, and so do their areas
            px0, py0, px1, py1 = (round(v, 3) for v in (x0 * w, y0 * h, x1 * w, y1 * h))
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": cls, "iscrowd": 0,
                                "bbox": [px0, py0, round(px1 - px0, 3), round(py1 - py0, 3)]})
            where_box[ann_id] = where
    orphans = _orphan_labels(sources, set(label_owner))
    if orphans:
        problems.append(Problem(str(orphans[0]), f"has no image ({len(orphans)} label file(s) without an image in "
                                                 f"the {name} split's folders: their boxes are not read)", fatal=False))
    categories = [{"id": i, "name": n} for i, n in sorted(names.items())]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    return RawSplit(name, "yolo", source, root, coco, where_image, where_box, problems, sizes_declared=False,
                    probed=probed, frame=frame)


def _orphan_labels(sources: list[Path], used: set[Path], limit: int = 100_000) -> list[Path]:
    """Label files in the labels folders of the image folders among ``sources`` with no image."""
    orphans = []
    for src in sources:
        if not src.is_dir():
            continue
        folder = label_path(src / "x.jpg").parent
        if folder == src or not folder.is_dir():
            continue
        for n, txt in enumerate(sorted(folder.rglob("*.txt"))):
            if n >= limit:
                break
            if txt.resolve() not in used and txt.name != "classes.txt":
                orphans.append(txt)
    return orphans


def load_yolo_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise DatasetError(f"{path}: cannot parse dataset YAML ({e})") from None
    return data


__all__ = ["is_yolo_yaml", "parse_names", "split_sources", "image_files", "label_path", "read_yolo_split"]
