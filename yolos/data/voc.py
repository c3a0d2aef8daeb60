"""The Pascal VOC layout, read in place: ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``.

The train split is ``train.txt`` (else ``trainval.txt``), the val split ``val.txt`` (else
``test.txt``); without ``ImageSets/Main`` every annotation file is one split used for both. A
``VOCdevkit/VOC20xx`` folder inside the given one is found too. Categories are every object
name of the dataset, sorted (VOC's own 20 classes come out in their usual order), with ids
1..K. Boxes are VOC's 1-based inclusive pixel indices: ``xmin = 1`` is the first pixel column,
so the box's left edge is ``xmin - 1`` and its right edge ``xmax`` (detectron2's reading).
Objects marked ``<difficult>1</difficult>`` are ignored, as VOC's own protocol does: no training
target, and a detection on one is neither right nor wrong in evaluation (read as COCO crowd).
The ``<size>`` of each file says the frame of an EXIF-rotated photo's boxes
(:func:`yolos.data.check.box_frame`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from ..errors import DatasetError
from .check import Problem, RawSplit

MAX_XML_BYTES = 4 * 2**20
SPLIT_FILES = {"train": ("train", "trainval"), "val": ("val", "test")}


def find_voc_root(folder: Path) -> Path | None:
    """The folder holding ``Annotations/``: ``folder`` itself or ``folder/VOCdevkit/VOC*``."""
    if (folder / "Annotations").is_dir():
        return folder
    devkit = folder / "VOCdevkit"
    found = sorted(p for p in devkit.glob("VOC*") if (p / "Annotations").is_dir()) if devkit.is_dir() else []
    return found[-1] if found else None


def split_ids(root: Path) -> dict[str, list[str] | None]:
    """``{"train": ids, "val": ids}`` from ImageSets/Main (None: every annotation file)."""
    main = root / "ImageSets" / "Main"
    out: dict[str, list[str] | None] = {}
    for split, names in SPLIT_FILES.items():
        for name in names:
            path = main / f"{name}.txt"
            if path.is_file():
                out[split] = [ln.split()[0] for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()
                              if ln.strip()]
                break
    if not out:
        return {"train": None, "val": None}
    out.setdefault("train", out.get("val"))
    out.setdefault("val", out.get("train"))
    return out


@dataclass
class _Node:
    tag: str
    line: int
    text: str = ""
    children: list = field(default_factory=list)

    def find(self, tag: str):
        return next((c for c in self.children if c.tag == tag), None)

    def value(self, tag: str) -> str | None:
        node = self.find(tag)
        return None if node is None else node.text.strip()


def parse_xml(path: Path) -> _Node:
    """The element tree of ``path`` with each element's line number (expat; entities are not
    expanded beyond expat's own amplification limits, and the file size is bounded)."""
    data = path.read_bytes()
    if len(data) > MAX_XML_BYTES:
        raise DatasetError(f"{path}: annotation file larger than {MAX_XML_BYTES >> 20} MB")
    parser = expat.ParserCreate()
    stack: list[_Node] = [_Node("#document", 0)]

    def start(tag, attrs):
        node = _Node(tag, parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(tag):
        stack.pop()

    def text(data):
        stack[-1].text += data

    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, text
    try:
        parser.Parse(data, True)
    except expat.ExpatError as err:
        raise DatasetError(f"{path}:{err.lineno}: not valid XML ({expat.ErrorString(err.code)})") from None
    root = stack[0].children[0] if stack[0].children else None
    if root is None or root.tag != "annotation":
        raise DatasetError(f"{path}:1: expected an <annotation> element")
    return root


def _number(node: _Node, tag: str, where: str):
    text = node.value(tag)
    try:
        value = float(text)
    except (TypeError, ValueError):
        return Problem(where, f"<{tag}> is {'missing' if text is None else repr(text)}, not a number")
    return value if math.isfinite(value) else Problem(where, f"<{tag}> is not finite: {text!r}")


class VocReader:
    """Reads a VOC root once: every annotation file is parsed at most once for both splits."""

    def __init__(self, root: Path, frame: str = "auto"):
        self.root, self.frame = root, frame
        self.ids = split_ids(root)
        self._parsed: dict[str, _Node | DatasetError] = {}

    def _all_ids(self) -> list[str]:
        if self.ids["train"] is None:
            return sorted(p.stem for p in (self.root / "Annotations").glob("*.xml"))
        return sorted(set(self.ids["train"]) | set(self.ids["val"]))

    def _xml(self, image_id: str):
        if image_id not in self._parsed:
            path = self.root / "Annotations" / f"{image_id}.xml"
            try:
                self._parsed[image_id] = parse_xml(path) if path.is_file() else \
                    DatasetError(f"{path}: annotation file not found (listed in ImageSets/Main)")
            except (DatasetError, OSError) as err:
                self._parsed[image_id] = DatasetError(str(err))
        return self._parsed[image_id]

    def category_names(self) -> list[str]:
        names = set()
        for image_id in self._all_ids():
            node = self._xml(image_id)
            if isinstance(node, _Node):
                names.update(obj.value("name") or "" for obj in node.children if obj.tag == "object")
        return sorted(n for n in names if n)

    def read(self, split: str) -> RawSplit:
        ids = self.ids[split] if self.ids[split] is not None else self._all_ids()
        names = self.category_names()
        cat = {n: i + 1 for i, n in enumerate(names)}
        images, annotations, problems, where_image, where_box = [], [], [], {}, {}
        seen = set()
        for image_id in ids:
            xml_path = self.root / "Annotations" / f"{image_id}.xml"
            if image_id in seen:
                problems.append(Problem(str(xml_path), f"image id {image_id!r} listed twice in the {split} split"))
                continue
            seen.add(image_id)
            node = self._xml(image_id)
            if isinstance(node, DatasetError):
                where, _, message = str(node).partition(": ")
                problems.append(Problem(where, message))
                continue
            number = len(images) + 1
            file_name = node.value("filename") or f"{image_id}.jpg"
            image = {"id": number, "file_name": file_name}
            size = node.find("size")
            if size is not None:
                w, h = size.value("width"), size.value("height")
                if w and h and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0:
                    image.update(width=int(w), height=int(h))
            images.append(image)
            where_image[number] = f"{self.root / 'JPEGImages' / file_name} ({xml_path})"
            for obj in (c for c in node.children if c.tag == "object"):
                where = f"{xml_path}:{obj.line}"
                name = obj.value("name")
                box = obj.find("bndbox")
                if not name:
                    problems.append(Problem(where, "object without a <name>"))
                    continue
                if box is None:
                    problems.append(Problem(where, f"object {name!r} without a <bndbox>"))
                    continue
                values = [_number(box, t, f"{xml_path}:{box.line}") for t in ("xmin", "ymin", "xmax", "ymax")]
                bad = next((v for v in values if isinstance(v, Problem)), None)
                if bad is not None:
                    problems.append(bad)
                    continue
                xmin, ymin, xmax, ymax = values
                if xmax < xmin - 1 or ymax < ymin - 1:
                    problems.append(Problem(where, f"box of {name!r} has xmax < xmin or ymax < ymin "
                                                   f"({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g})"))
                    continue
                difficult = (obj.value("difficult") or "0").strip() not in ("0", "", "false")
                ann_id = len(annotations) + 1
                annotations.append({"id": ann_id, "image_id": number, "category_id": cat[name],
                                    "iscrowd": int(difficult),
                                    "bbox": [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]})
                where_box[ann_id] = where
        categories = [{"id": i, "name": n} for n, i in cat.items()]
        coco = {"images": images, "annotations": annotations, "categories": categories}
        return RawSplit(split, "voc", str(self.root), self.root / "JPEGImages", coco, where_image, where_box,
                        problems, sizes_declared=True, frame=self.frame)


__all__ = ["find_voc_root", "split_ids", "parse_xml", "VocReader"]
