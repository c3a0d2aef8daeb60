"""Pascal VOC XML read in place: the VOC devkit layout and the layouts LabelImg leaves.

:func:`find_voc` recognises, in this order:

* **VOC devkit**: ``Annotations/*.xml`` with ``JPEGImages/`` (also ``VOCdevkit/VOC20xx/`` inside
  the folder). Splits from ``ImageSets/Main``: train ``train.txt`` (else ``trainval.txt``), val
  ``val.txt`` (else ``test.txt``), test ``test.txt`` beside a ``val.txt``. Without ``ImageSets``
  every file is the train split and val is held out (:mod:`yolos.data.dataset_config`).
* **LabelImg, split folders**: ``train/``, ``val/`` (or ``valid/``) and ``test/``, each in one
  of the flat forms below.
* **LabelImg, flat**: the XML files beside the images in one folder, or ``annotations/*.xml``
  with ``images/``. One split (train); val is held out.

Categories are every object name of all splits, sorted, with ids 1..K (VOC's own 20 come out in
their usual order). **Pixels**: VOC's own files give 1-based inclusive pixel indices (``xmin =
1`` is the first column: the box's left edge is ``xmin - 1``, its right edge ``xmax``,
detectron2's reading). LabelImg writes 0-based pixel coordinates (clamped to at least 1), read as
written. A file is LabelImg's when it has a ``<path>`` element (LabelImg always writes one, the
VOC devkit never does) or sits in a LabelImg layout. Objects marked ``<difficult>1</difficult>``
(or ``true``/``yes``) are ignored, as VOC's own protocol does: no training target, and a
detection on one is neither right nor wrong (read as COCO crowd); ``0``/``false``/``no``/empty
are not difficult, anything else is an error naming the file. The ``<size>`` of each file says
the frame of an EXIF-rotated photo's boxes (:func:`yolos.data.check.box_frame`).

Every file is bounded before it is read (its size from ``stat``), the XML parser refuses entity
declarations (no expansion bombs) and collects text in linear time.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from ..errors import DatasetError
from ..images import IMAGE_EXTENSIONS
from .check import Problem, RawSplit, read_list_lines, safe_relative

MAX_XML_BYTES = 4 * 2**20
MAX_XML_ELEMENTS = 100_000
MAX_TEXT_CHARS = 4096  # per element: names and numbers; longer text is cut, never accumulated
SPLIT_FILES = {"train": ("train", "trainval"), "val": ("val", "test")}
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid"), "test": ("test",)}
ANNOTATION_FOLDERS = ("annotations", "Annotations")
IMAGE_FOLDERS = ("images", "Images", "JPEGImages")
TRUE, FALSE = ("1", "true", "yes", "1.0"), ("0", "false", "no", "", "none", "null", "0.0")


@dataclass
class VocSplit:
    """One split's files: ``items`` ``(id, xml path)``; images are looked up in ``images``
    (and beside each XML file); ``origin`` says where the split came from, for messages."""

    items: list
    images: Path
    origin: str


@dataclass
class VocLayout:
    root: Path
    kind: str  # "VOC devkit", "LabelImg (split folders)", "LabelImg (flat)"
    splits: dict  # split name -> VocSplit (only the splits there are)

    @property
    def labelimg(self) -> bool:
        return self.kind.startswith("LabelImg")


def _xml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.xml") if p.is_file())


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir())


def _flat_split(folder: Path) -> VocSplit | None:
    """A LabelImg flat form in ``folder``: ``annotations/*.xml`` + ``images/``, or XML beside images."""
    for ann in ANNOTATION_FOLDERS:
        xmls = _xml_files(folder / ann) if (folder / ann).is_dir() else []
        images = next((folder / i for i in IMAGE_FOLDERS if (folder / i).is_dir()), None)
        if xmls and images is not None:
            return VocSplit([(p.stem, p) for p in xmls], images, f"{folder.name}/{ann}/")
    xmls = _xml_files(folder) if folder.is_dir() else []
    if xmls and _has_images(folder):
        return VocSplit([(p.stem, p) for p in xmls], folder, f"{folder.name}/")
    return None


def _devkit(root: Path) -> VocLayout:
    main, ann = root / "ImageSets" / "Main", root / "Annotations"
    images = root / "JPEGImages"
    splits: dict[str, VocSplit] = {}
    for split, names in SPLIT_FILES.items():
        for name in names:
            path = main / f"{name}.txt"
            if path.is_file():
                ids = [ln.split()[0] for ln in read_list_lines(path)]
                splits[split] = VocSplit([(i, ann / f"{i}.xml") for i in ids], images, f"ImageSets/Main/{name}.txt")
                break
    test = main / "test.txt"
    if splits.get("val") is not None and splits["val"].origin.endswith("/val.txt") and test.is_file():
        ids = [ln.split()[0] for ln in read_list_lines(test)]
        splits["test"] = VocSplit([(i, ann / f"{i}.xml") for i in ids], images, "ImageSets/Main/test.txt")
    if "train" not in splits:
        if "val" in splits:  # a val list alone: the rest of the files are the train split
            listed = {i for i, _ in splits["val"].items}
            rest = [(p.stem, p) for p in _xml_files(ann) if p.stem not in listed]
            splits["train"] = VocSplit(rest, images, "Annotations/ (the files val.txt does not list)")
        else:
            splits["train"] = VocSplit([(p.stem, p) for p in _xml_files(ann)], images, "Annotations/")
    return VocLayout(root, "VOC devkit", splits)


def find_voc(folder: Path) -> VocLayout | None:
    """The VOC/LabelImg layout in ``folder`` (see the module doc), or None."""
    devkit = folder / "VOCdevkit"
    roots = [folder] + (sorted(p for p in devkit.glob("VOC*") if p.is_dir())[::-1] if devkit.is_dir() else [])
    for root in roots:
        if (root / "Annotations").is_dir() and (root / "JPEGImages").is_dir():
            return _devkit(root)
    if not folder.is_dir():
        return None
    splits = {}
    for split, names in SPLIT_FOLDERS.items():
        found = next((s for s in (_flat_split(folder / n) for n in names if (folder / n).is_dir()) if s), None)
        if found is not None:
            splits[split] = found
    if "train" in splits:
        return VocLayout(folder, "LabelImg (split folders)", splits)
    flat = _flat_split(folder)
    return VocLayout(folder, "LabelImg (flat)", {"train": flat}) if flat is not None else None


# ----------------------------------------------------------------------------- XML
@dataclass
class _Node:
    tag: str
    line: int
    parts: list = field(default_factory=list)
    size: int = 0
    children: list = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def find(self, tag: str):
        return next((c for c in self.children if c.tag == tag), None)

    def value(self, tag: str) -> str | None:
        node = self.find(tag)
        return None if node is None else node.text.strip()


def parse_xml(path: Path) -> _Node:
    """The element tree of ``path`` with each element's line number. Bounded: the file's size
    from ``stat`` before reading, the number of elements, the text kept per element; a DTD that
    declares entities is refused (expat would expand them)."""
    try:
        size = path.stat().st_size
    except OSError as err:
        raise DatasetError(f"{path}: cannot read annotation file ({err.strerror})") from None
    if not path.is_file():
        raise DatasetError(f"{path}: not a regular file")
    if size > MAX_XML_BYTES:
        raise DatasetError(f"{path}: annotation file larger than {MAX_XML_BYTES >> 20} MB")
    with open(path, "rb") as f:
        data = f.read(MAX_XML_BYTES + 1)
    parser = expat.ParserCreate()
    parser.buffer_text = True  # one callback per text run, not one per line
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[_Node] = [_Node("#document", 0)]
    count = [0]

    def start(tag, attrs):
        count[0] += 1
        if count[0] > MAX_XML_ELEMENTS:
            raise DatasetError(f"{path}:{parser.CurrentLineNumber}: more than {MAX_XML_ELEMENTS} elements")
        node = _Node(tag, parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(tag):
        stack.pop()

    def text(chunk):
        node = stack[-1]
        if node.size < MAX_TEXT_CHARS:
            node.parts.append(chunk[: MAX_TEXT_CHARS - node.size])
            node.size += len(node.parts[-1])

    def entity(name, *args):
        raise DatasetError(f"{path}:{parser.CurrentLineNumber}: declares the XML entity {name!r}; annotation "
                           f"files with entity declarations are refused (they can expand without bound)")

    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, text
    parser.EntityDeclHandler = entity
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
        return Problem(where, f"<{tag}> is {'missing' if text is None else repr(text[:40])}, not a number")
    return value if math.isfinite(value) else Problem(where, f"<{tag}> is not finite: {text!r}")


def _difficult(text: str | None, where: str):
    value = (text or "").strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    return Problem(where, f"<difficult> is {text[:40]!r}: expected 0 or 1 (or true/false)")


class VocReader:
    """Reads a :class:`VocLayout`: every annotation file is parsed at most once for all splits."""

    def __init__(self, layout: VocLayout, frame: str = "auto"):
        self.layout, self.frame = layout, frame
        self._parsed: dict[Path, _Node | DatasetError] = {}

    def _xml(self, path: Path):
        if path not in self._parsed:
            try:
                self._parsed[path] = parse_xml(path) if path.exists() else \
                    DatasetError(f"{path}: annotation file not found")
            except DatasetError as err:
                self._parsed[path] = err
        return self._parsed[path]

    def category_names(self) -> list[str]:
        names = set()
        for split in self.layout.splits.values():
            for _, path in split.items:
                node = self._xml(path)
                if isinstance(node, _Node):
                    names.update(obj.value("name") or "" for obj in node.children if obj.tag == "object")
        return sorted(n for n in names if n)

    def _image_name(self, node: _Node, xml_path: Path, split: VocSplit, image_id: str):
        """The image's path relative to the split's images folder, or a Problem."""
        name = node.value("filename") or ""
        if name and not safe_relative(name):
            return Problem(str(xml_path), f"<filename> {name[:80]!r} leaves the dataset folder; only a file "
                                          f"name or a relative path inside it is read")
        stems = [name] if name else []
        stems += [f"{Path(name).stem or image_id}{ext}" for ext in sorted(IMAGE_EXTENSIONS)]
        for folder in (split.images, xml_path.parent):
            for candidate in stems:
                if (folder / candidate).is_file():
                    return str((folder / candidate).relative_to(split.images)) if folder == split.images \
                        else _relative(folder / candidate, split.images)
        return name or f"{image_id}.jpg"

    def read(self, split_name: str) -> RawSplit:
        split = self.layout.splits.get(split_name)
        if split is None:
            raise DatasetError(f"{self.layout.root}: the dataset has no {split_name} split")
        cat = {n: i + 1 for i, n in enumerate(self.category_names())}
        images, annotations, problems, where_image, where_box = [], [], [], {}, {}
        seen, counts = set(), {"LabelImg": 0, "VOC": 0}
        for image_id, xml_path in split.items:
            if image_id in seen:
                problems.append(Problem(str(xml_path), f"image id {image_id!r} listed twice in the {split_name} split"))
                continue
            seen.add(image_id)
            node = self._xml(xml_path)
            if isinstance(node, DatasetError):
                where, _, message = str(node).partition(": ")
                problems.append(Problem(where, message))
                continue
            file_name = self._image_name(node, xml_path, split, image_id)
            if isinstance(file_name, Problem):
                problems.append(file_name)
                continue
            number = len(images) + 1
            image = {"id": number, "file_name": file_name}
            size = node.find("size")
            if size is not None:
                w, h = size.value("width"), size.value("height")
                if w and h and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0:
                    image.update(width=int(w), height=int(h))
            images.append(image)
            where_image[number] = f"{split.images / file_name} ({xml_path})"
            zero_based = self.layout.labelimg or node.find("path") is not None
            counts["LabelImg" if zero_based else "VOC"] += 1
            for obj in (c for c in node.children if c.tag == "object"):
                ann = self._object(obj, f"{xml_path}:{obj.line}", cat, zero_based, problems)
                if ann is not None:
                    ann.update(id=len(annotations) + 1, image_id=number)
                    annotations.append(ann)
                    where_box[ann["id"]] = f"{xml_path}:{obj.line}"
        categories = [{"id": i, "name": n} for n, i in cat.items()]
        coco = {"images": images, "annotations": annotations, "categories": categories}
        raw = RawSplit(split_name, "voc", f"{self.layout.root} ({split.origin})", split.images, coco, where_image,
                       where_box, problems, sizes_declared=True, frame=self.frame)
        raw.notes.append("pixels: " + ", ".join(
            f"{n} {kind} file(s) {'as written (0-based)' if kind == 'LabelImg' else '1-based (VOC)'}"
            for kind, n in counts.items() if n))
        return raw

    @staticmethod
    def _object(obj: _Node, where: str, cat: dict, zero_based: bool, problems: list) -> dict | None:
        """One ``<object>`` as a COCO annotation (``bbox`` x, y, w, h in pixel edges), or None
        with its Problem."""
        name = obj.value("name")
        box = obj.find("bndbox")
        if not name:
            problems.append(Problem(where, "object without a <name>"))
            return None
        if box is None:
            problems.append(Problem(where, f"object {name!r} without a <bndbox>"))
            return None
        values = [_number(box, t, f"{where.rsplit(':', 1)[0]}:{box.line}") for t in ("xmin", "ymin", "xmax", "ymax")]
        difficult = _difficult(obj.value("difficult"), where)
        bad = next((v for v in values + [difficult] if isinstance(v, Problem)), None)
        if bad is not None:
            problems.append(bad)
            return None
        xmin, ymin, xmax, ymax = values
        shift = 0 if zero_based else 1  # VOC: 1-based inclusive indices; LabelImg: pixel edges
        if xmax < xmin - shift or ymax < ymin - shift:
            problems.append(Problem(where, f"box of {name!r} has xmax < xmin or ymax < ymin "
                                           f"({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g})"))
            return None
        return {"category_id": cat[name], "iscrowd": int(difficult),
                "bbox": [xmin - shift, ymin - shift, xmax - xmin + shift, ymax - ymin + shift]}


def _relative(path: Path, folder: Path) -> str:
    return os.path.relpath(path, folder)


__all__ = ["find_voc", "VocLayout", "VocSplit", "parse_xml", "VocReader"]
