"""The dataset check: every split of every layout becomes one normalized COCO dict, and a report.

A reader (:mod:`yolos.data.coco`, :mod:`yolos.data.yolo`, :mod:`yolos.data.voc`) turns its files
into a :class:`RawSplit`: a COCO dict (ids, ``file_name`` relative to the images folder, boxes
``[x, y, w, h]`` in pixels) plus where each image and box came from (``labels/a.txt:3``) and the
problems it found. :func:`normalize_split` then reads every image's header and

* decides the frame of each EXIF-rotated image's boxes (:func:`box_frame`) and turns boxes in
  the stored frame into the displayed one, the frame every image is decoded in
  (:func:`yolos.load_image` applies the EXIF orientation, as browsers and annotation tools show
  the photo);
* repairs what can be repaired, counting it: a box sticking out of the image is clipped, a box of
  zero area after that is dropped;
* refuses what cannot: a missing, unreadable or too small image, a label beyond the names, a
  duplicate id, a box that is not four finite numbers (each a fatal :class:`Problem`).

``yolos data check`` prints the :class:`SplitReport`; ``yolos train`` and ``yolos val`` build
their datasets through the same function, so they refuse the same datasets before the first step.
"""
from __future__ import annotations

import math
import stat
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import torch

from ..box_ops import clip_boxes, exif_transpose_boxes, xywh_to_xyxy, xyxy_to_xywh
from ..errors import DatasetError, ImageError
from ..images import MIN_SIDE, check_pixels, probe_image

FRAMES = ("auto", "displayed", "stored")
MAX_LIST_BYTES = 64 * 2**20  # a list file (image paths, VOC ids) larger than this is not a list
ORIENTATION_NAMES = {2: "mirrored", 3: "rotated 180", 4: "flipped", 5: "transposed", 6: "rotated 90 cw",
                     7: "transversed", 8: "rotated 90 ccw"}


@dataclass
class Problem:
    """One finding: ``where`` names the file (and line, image id or annotation id)."""

    where: str
    message: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class RawSplit:
    """A split as its reader found it (see the module doc). ``sizes_declared``: whether the
    images' ``width``/``height`` are the annotation tool's (COCO json, VOC ``size``), which tells
    the frame of rotated photos; YOLO labels are normalized and carry none. ``probed``: image
    headers the reader already read, ``image id -> (width, height, orientation)`` or the
    ImageError it got."""

    name: str
    layout: str
    source: str
    images_root: Path
    coco: dict
    where_image: dict = field(default_factory=dict)
    where_box: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    sizes_declared: bool = True
    probed: dict = field(default_factory=dict)
    frame: str = "auto"
    notes: list = field(default_factory=list)  # lines about the split as a whole, for the report

    def image_path(self, image: dict) -> Path:
        return self.images_root / image["file_name"]

    def image_where(self, image: dict) -> str:
        return self.where_image.get(image["id"], f"{self.image_path(image)} (image id {image['id']} in {self.source})")

    def box_where(self, ann_id) -> str:
        return self.where_box.get(ann_id, f"{self.source} annotation id {ann_id}")


@dataclass
class SplitReport:
    """What ``yolos data check`` shows for one split."""

    name: str
    layout: str
    source: str
    images: int = 0
    boxes_per_class: dict = field(default_factory=dict)  # name -> boxes (not ignored)
    ignored_boxes: int = 0  # crowd regions, VOC "difficult": kept for evaluation only
    images_without_boxes: int = 0
    widths: tuple = (0, 0)
    heights: tuple = (0, 0)
    box_sides: tuple = (0.0, 0.0)
    rotated: list = field(default_factory=list)  # (file, orientation, frame of its boxes)
    clipped: int = 0
    dropped: int = 0
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # lines about the whole split (layout, ids, classes)

    @property
    def fatal(self) -> list[Problem]:
        return [p for p in self.problems if p.fatal]

    def render(self, limit: int = 20) -> str:
        lines = [f"{self.name}: {self.layout} ({self.source})"] + [f"  {note}" for note in self.notes]
        lines.append(f"  images {self.images}, without boxes {self.images_without_boxes}; "
                     f"width {self.widths[0]}..{self.widths[1]}, height {self.heights[0]}..{self.heights[1]} px")
        ignored = f" (+{self.ignored_boxes} ignored: crowd/difficult)" if self.ignored_boxes else ""
        lines.append(f"  boxes {sum(self.boxes_per_class.values())}{ignored}, box sides (sqrt of area) "
                     f"{self.box_sides[0]:.0f}..{self.box_sides[1]:.0f} px")
        cells = [f"{name}  {n}" for name, n in self.boxes_per_class.items()]
        width = max((len(c) for c in cells), default=0) + 3
        per_line = max(1, 96 // width)  # many classes: in columns, so the report stays one screen
        for i in range(0, len(cells), per_line):
            lines.append("    " + "".join(c.ljust(width) for c in cells[i:i + per_line]).rstrip())
        if self.rotated:
            frames = Counter(frame for _, _, frame in self.rotated)
            lines.append(f"  EXIF-rotated images {len(self.rotated)} (boxes in the "
                         + ", ".join(f"{f} frame: {n}" for f, n in frames.items()) + ")")
            for file, orientation, frame in self.rotated[:5]:
                lines.append(f"    {file}: {ORIENTATION_NAMES[orientation]}, boxes in the {frame} frame")
        if self.clipped or self.dropped:
            lines.append(f"  repaired: {self.clipped} boxes clipped to their image, {self.dropped} boxes of "
                         f"zero area dropped")
        shown = [p for p in self.problems if p.fatal][:limit] + [p for p in self.problems if not p.fatal][:limit]
        for p in shown:
            lines.append(f"  {'ERROR' if p.fatal else 'note '} {p}")
        hidden = len(self.problems) - len(shown)
        if hidden > 0:
            lines.append(f"  ... and {hidden} more problem{'s' if hidden > 1 else ''}")
        return "\n".join(lines)


def bounded_file(path: Path, max_bytes: int, what: str = "file") -> int:
    """The size of ``path`` from ``stat``, checked before anything is read: a regular file (a
    FIFO or device could block or never end) of at most ``max_bytes``. A DatasetError names
    the file and says ``what`` it is."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DatasetError(f"{path}: {what} not found") from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot read {what} ({err.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise DatasetError(f"{path}: {what} is not a regular file")
    if info.st_size > max_bytes:
        bound = f"{max_bytes >> 30} GB" if max_bytes >= 1 << 30 else f"{max_bytes >> 20} MB"
        raise DatasetError(f"{path}: {what} larger than {bound}")
    return info.st_size


def read_text_file(path: Path, max_bytes: int, what: str = "file") -> str:
    """The text of a small file, bounded before it is read (:func:`bounded_file`), decoded as
    UTF-8 (a byte-order mark is dropped) or UTF-16 (with its mark); undecodable bytes become
    U+FFFD. A DatasetError names the file."""
    bounded_file(path, max_bytes, what)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as err:
        raise DatasetError(f"{path}: cannot read {what} ({err.strerror})") from None
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16", errors="replace")
    return data.decode("utf-8-sig", errors="replace")


def read_list_lines(path: Path, max_bytes: int = MAX_LIST_BYTES) -> list[str]:
    """The non-empty lines of a list file that are not ``#`` comments, stripped (bounded as
    :func:`read_text_file`)."""
    lines = read_text_file(path, max_bytes, "list file").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def safe_relative(name: str) -> bool:
    """True for a relative path that stays inside its folder (no ``..``, not absolute)."""
    p = PurePosixPath(name.replace("\\", "/"))
    return bool(name) and not p.is_absolute() and ".." not in p.parts and not (len(name) > 1 and name[1] == ":")


def box_frame(orientation: int, declared: tuple | None, displayed: tuple[int, int], policy: str = "auto") -> str:
    """``"displayed"`` or ``"stored"``: the frame the boxes of an image are in.

    ``policy`` ``"displayed"``/``"stored"`` decides for every image. ``"auto"``: the annotation's
    declared ``(width, height)`` decides when it can (a photo turned by 90 degrees has its sides
    swapped when stored); when it cannot (no size, as in YOLO labels; a square image; a
    mirror or 180-degree turn), the displayed frame: what browsers, annotation tools and
    Ultralytics show and label."""
    if orientation == 1:
        return "displayed"
    if policy != "auto":
        return policy
    w, h = displayed
    if declared is not None and orientation >= 5 and w != h and tuple(declared) == (h, w):
        return "stored"
    return "displayed"


def _probe_all(raw: RawSplit, images: list[dict]) -> dict:
    """``image id -> (width, height, orientation) or ImageError``, headers read on threads."""
    def probe(image):
        if image["id"] in raw.probed:  # read by the reader already (a tuple, or its ImageError)
            return raw.probed[image["id"]]
        try:
            return probe_image(raw.image_path(image))
        except ImageError as err:
            return err

    with ThreadPoolExecutor(8) as pool:
        return dict(zip((im["id"] for im in images), pool.map(probe, images)))


def normalize_split(raw: RawSplit, categories_named=None) -> tuple[dict, SplitReport]:
    """The normalized COCO dict of ``raw`` (see the module doc) and its report. Nothing is raised:
    the caller decides what the report's fatal problems mean. ``categories_named``: display
    names by category id for the report (default: the dict's)."""
    coco = raw.coco
    names = categories_named or {c["id"]: c["name"] for c in coco["categories"]}
    report = SplitReport(raw.name, raw.layout, raw.source, problems=list(raw.problems))
    images, sizes = _checked_images(raw, report)
    annotations, counts, sides = _checked_boxes(raw, sizes, report)
    report.images = len(images)
    if not coco["images"]:
        report.problems.append(Problem(raw.source, f"the {raw.name} split has no images"))
    report.notes = list(raw.notes) + _class_notes(coco["categories"], counts, names)
    with_boxes = {a["image_id"] for a in annotations if not a.get("iscrowd", 0)}
    report.images_without_boxes = len(images) - len(with_boxes)
    report.boxes_per_class = {names.get(c["id"], str(c["id"])): counts.get(c["id"], 0)
                              for c in sorted(coco["categories"], key=lambda c: c["id"])}
    if images:
        report.widths = (min(im["width"] for im in images), max(im["width"] for im in images))
        report.heights = (min(im["height"] for im in images), max(im["height"] for im in images))
    if sides:
        report.box_sides = (min(sides), max(sides))
    return dict(coco, images=images, annotations=annotations), report


def _checked_images(raw: RawSplit, report: SplitReport) -> tuple[list[dict], dict]:
    """The images that can be used (with their true size) and ``id -> (w, h, orientation, frame
    of its boxes)``; a problem in ``report`` for each that cannot."""
    probed = _probe_all(raw, raw.coco["images"])
    images, sizes = [], {}
    for image in raw.coco["images"]:
        info, where = probed[image["id"]], raw.image_where(image)
        if isinstance(info, ImageError):
            report.problems.append(Problem(where, str(info).split(": ", 1)[-1]))
            continue
        w, h, orientation = info
        try:
            check_pixels(w, h, str(raw.image_path(image)))
        except ImageError as err:
            report.problems.append(Problem(where, str(err).split(": ", 1)[-1]))
            continue
        if min(w, h) < MIN_SIDE:
            report.problems.append(Problem(where, f"image is {w}x{h} pixels, smaller than one {MIN_SIDE}x{MIN_SIDE} "
                                                  f"patch"))
            continue
        declared = (image["width"], image["height"]) if raw.sizes_declared and "width" in image and "height" in image \
            else None
        frame = box_frame(orientation, declared, (w, h), raw.frame)
        if orientation != 1:
            report.rotated.append((str(image["file_name"]), orientation, frame))
        elif declared is not None and tuple(declared) != (w, h):
            report.problems.append(Problem(where, f"annotations say {declared[0]}x{declared[1]} but the image is "
                                                  f"{w}x{h}; its boxes are taken as they are", fatal=False))
        sizes[image["id"]] = (w, h, orientation, frame)
        images.append(dict(image, width=w, height=h))
    return images, sizes


def _checked_boxes(raw: RawSplit, sizes: dict, report: SplitReport) -> tuple[list[dict], Counter, list[float]]:
    """The boxes of the usable images in the displayed frame, clipped to the image (counted) or
    dropped when nothing is left; with the boxes per category and their sides (sqrt of area)."""
    annotations, counts, sides = [], Counter(), []
    for ann in raw.coco["annotations"]:
        if ann["image_id"] not in sizes:
            continue
        w, h, orientation, frame = sizes[ann["image_id"]]
        box = xywh_to_xyxy(torch.tensor([ann["bbox"]], dtype=torch.float64))
        if frame == "stored":
            stored_w, stored_h = (h, w) if orientation >= 5 else (w, h)
            box = exif_transpose_boxes(box, orientation, stored_w, stored_h)
        clipped = clip_boxes(box, w, h)
        x0, y0, x1, y1 = clipped[0].tolist()
        if not (x1 > x0 and y1 > y0):
            report.dropped += 1
            continue
        if not torch.equal(clipped, box):
            report.clipped += 1
            if report.clipped <= 50:
                report.problems.append(Problem(raw.box_where(ann["id"]), f"box {_fmt(box[0])} sticks out of the "
                                               f"{w}x{h} image; clipped to {_fmt(clipped[0])}", fatal=False))
        area = float((x1 - x0) * (y1 - y0))
        if "area" in ann:  # COCO's area is the segment's, which a clipped box can only shrink
            area = float(ann["area"]) if torch.equal(clipped, box) else min(float(ann["area"]), area)
        annotations.append(dict(ann, bbox=xyxy_to_xywh(clipped)[0].tolist(), area=area))
        if ann.get("iscrowd", 0):
            report.ignored_boxes += 1
        else:
            counts[ann["category_id"]] += 1
            sides.append(math.sqrt((x1 - x0) * (y1 - y0)))
    return annotations, counts, sides


def _class_notes(categories: list[dict], counts: Counter, names: dict) -> list[str]:
    """Warnings about the classes: some without a box in this split, names used twice."""
    notes = []
    empty = [names.get(c["id"], str(c["id"])) for c in categories if not counts.get(c["id"])]
    if empty and len(empty) < len(categories):
        notes.append(f"warning: no boxes of {len(empty)} class(es) in this split: {', '.join(empty[:12])}"
                     + (" ..." if len(empty) > 12 else ""))
    seen: dict[str, int] = {}
    for c in categories:
        name = names.get(c["id"], str(c["id"]))
        if name in seen:
            notes.append(f"warning: class name {name!r} is used by category ids {seen[name]} and {c['id']}")
        seen.setdefault(name, c["id"])
    return notes


def _fmt(box) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box.tolist()) + "]"


def raise_fatal(report: SplitReport) -> None:
    """A DatasetError naming the first fatal problem (and how many there are in all)."""
    fatal = report.fatal
    if fatal:
        rest = len(fatal) - 1
        more = (f" (and {rest} more problem{'s' if rest > 1 else ''}: run `yolos data check` to list them)"
                if rest else "")
        raise DatasetError(f"{fatal[0]}{more}")


__all__ = ["Problem", "RawSplit", "SplitReport", "normalize_split", "box_frame", "raise_fatal", "FRAMES",
           "bounded_file", "read_text_file", "read_list_lines", "MAX_LIST_BYTES", "safe_relative"]
