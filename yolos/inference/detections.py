"""``Detections``: what :func:`yolos.predict` returns for one image, with drawing and export."""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from ..box_ops import xyxy_to_xywh
from ..files import atomic_path
from .postprocess import keep_indices


def class_color(label: int) -> tuple[int, int, int]:
    """A stable, saturated colour per class id: hues spaced by the golden ratio so that
    neighbouring ids (often co-occurring classes) get far-apart colours."""
    hue = (label * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _text_color(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    # Relative luminance (ITU-R BT.601): black text on light fills, white on dark ones.
    return (0, 0, 0) if 0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2] > 150 else (255, 255, 255)


def coco_records(image_id: int, boxes_xyxy: Tensor, scores: Tensor, labels: Tensor, to_category) -> list[dict]:
    """COCO result entries ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` of one
    image; ``to_category(label)`` gives the dataset's category id, or None for a label the
    dataset has no class for (left out). The one writer of the format (:meth:`Detections.to_coco`
    and the evaluation both use it)."""
    whole = isinstance(image_id, (int, np.integer)) or (
        isinstance(image_id, torch.Tensor) and image_id.numel() == 1 and not image_id.is_floating_point())
    if isinstance(image_id, bool) or not whole or not -2**63 <= int(image_id) < 2**63:
        raise ValueError(f"image_id: expected a whole number (a COCO image id, 64-bit), got {image_id!r}")
    boxes = xyxy_to_xywh(boxes_xyxy.float()).tolist()
    out = []
    for label, box, score in zip(labels.tolist(), boxes, scores.float().tolist()):
        category = to_category(label)
        if category is not None:
            out.append({"image_id": int(image_id), "category_id": int(category), "bbox": box, "score": float(score)})
    return out


@dataclass
class Detections:
    """Detections in one image, in original-image pixels.

    Attributes:
        boxes: ``[N, 4]`` float, ``(xmin, ymin, xmax, ymax)`` in pixels of the original image,
            clipped to it (as Ultralytics and torchvision give them; :func:`yolos.postprocess`
            keeps transformers' unclipped boxes, and COCO evaluation scores those, as the paper did).
        scores: ``[N]`` float in (threshold, 1].
        labels: ``[N]`` int64 model labels (class indices; COCO checkpoints: the sparse
            category ids 1..90).
        label_names: ``N`` class names (the id as text when the model has no names).
        category_ids: ``[N]`` int64 the dataset's category ids of the labels (the model's
            ``config.category_ids``; equal to ``labels`` for models without them).
        image_size: ``(h, w)`` of the original image.
        image: the caller's in-memory source (PIL image, array, tensor or bytes; decoded again by
            :meth:`plot`), else None.
        path: the file it was read from, else None.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    label_names: list[str]
    image_size: tuple[int, int]
    image: object | None = field(default=None, repr=False)
    path: str | None = None
    category_ids: Tensor | None = None

    def __post_init__(self):
        if self.category_ids is None:
            self.category_ids = self.labels.clone()

    def __len__(self) -> int:
        return int(self.scores.numel())

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for name in self.label_names:
            counts[name] = counts.get(name, 0) + 1
        summary = ", ".join(f"{name} ({n})" for name, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        where = f" in {self.path}" if self.path else ""
        h, w = self.image_size
        return f"Detections({len(self)} objects{where}, {w}x{h}{': ' + summary if summary else ''})"

    @property
    def xywh(self) -> Tensor:
        """``[N, 4]`` boxes as COCO ``(x, y, w, h)``."""
        return xyxy_to_xywh(self.boxes)

    def to_dict(self) -> list[dict]:
        """``[{"score", "label" (name), "box": {"xmin", "ymin", "xmax", "ymax"}}]``, the shape of
        transformers' object-detection pipeline output (integer pixel boxes, as it truncates)."""
        out = []
        for score, name, box in zip(self.scores.tolist(), self.label_names, self.boxes.int().tolist()):
            xmin, ymin, xmax, ymax = box
            out.append(
                {"score": score, "label": name,
                 "box": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}}
            )
        return out

    def to_coco(self, image_id: int, label_to_category_id=None) -> list[dict]:
        """COCO result entries ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``,
        ready for pycocotools against the dataset the model was trained on.

        ``category_id`` is the dataset's own id by default (:attr:`category_ids`, which a model
        trained by yolos keeps; COCO checkpoints predict COCO ids directly).
        ``label_to_category_id`` (a dict or a callable on model labels) overrides it.
        """
        if label_to_category_id is None:
            return coco_records(image_id, self.boxes, self.scores, self.category_ids, int)
        to_cat = label_to_category_id if callable(label_to_category_id) else label_to_category_id.__getitem__
        return coco_records(image_id, self.boxes, self.scores, self.labels, to_cat)

    def plot(
        self,
        image=None,
        line_width: int | None = None,
        font_size: int | None = None,
        show_scores: bool = True,
    ) -> Image.Image:
        """Draw the boxes with ``"name score"`` tags on a copy of the image.

        ``image`` defaults to the one kept at prediction time (or re-read from :attr:`path`).
        Each class has its own colour; tags are filled boxes with black or white text chosen
        for contrast, so they stay readable on any background.
        """
        from ..images import load_image  # deferred: only plotting needs the loader

        if image is None:
            image = self.image if self.image is not None else self.path
        if image is None:
            raise ValueError("Detections.plot needs an image: none was kept at prediction time")
        canvas = load_image(image).copy()
        if canvas.size != (self.image_size[1], self.image_size[0]):
            raise ValueError(
                f"image is {canvas.size[0]}x{canvas.size[1]} but the detections are for "
                f"{self.image_size[1]}x{self.image_size[0]}"
            )
        side = max(canvas.size)
        lw = line_width or max(2, round(side / 400))
        font = ImageFont.load_default(size=font_size or max(12, round(side / 50)))
        draw = ImageDraw.Draw(canvas)
        # Highest scores last so they sit on top where boxes overlap.
        order = self.scores.argsort().tolist()
        for i in order:
            x0, y0, x1, y1 = self.boxes[i].tolist()
            color = class_color(int(self.labels[i]))
            draw.rectangle((x0, y0, x1, y1), outline=color, width=lw)
            text = self.label_names[i] + (f" {float(self.scores[i]):.2f}" if show_scores else "")
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            tw, th = right - left, bottom - top
            pad = max(1, lw // 2 + 1)
            # Tag above the box, or inside its top edge when the box touches the image top.
            ty = y0 - th - 2 * pad if y0 - th - 2 * pad >= 0 else y0
            tx = min(max(x0, 0), max(canvas.size[0] - tw - 2 * pad, 0))
            draw.rectangle((tx, ty, tx + tw + 2 * pad, ty + th + 2 * pad), fill=color)
            draw.text((tx + pad - left, ty + pad - top), text, fill=_text_color(color), font=font)
        return canvas

    def save(self, path, **plot_kwargs) -> Path:
        """Write :meth:`plot` to ``path`` (format from the extension), atomically."""
        path = Path(path)
        image = self.plot(**plot_kwargs)
        with atomic_path(path, suffix=path.suffix) as tmp:
            image.save(tmp, format=Image.registered_extensions().get(path.suffix.lower()),
                       **({"quality": 90} if path.suffix.lower() in (".jpg", ".jpeg") else {}))
        return path

    def select(self, threshold: float | None = None, top_k: int | None = None) -> Detections:
        """The detections that :func:`yolos.predict` would have returned with this ``threshold``
        and ``top_k``: scores strictly above ``threshold`` in their order, then, when more than
        ``top_k`` remain, the ``top_k`` best sorted by score (as ``postprocess`` does)."""
        keep = keep_indices(self.scores, threshold, top_k)
        return Detections(
            self.boxes[keep], self.scores[keep], self.labels[keep],
            [self.label_names[i] for i in keep.tolist()], self.image_size, self.image, self.path,
            self.category_ids[keep],
        )

    def cpu(self) -> Detections:
        return Detections(
            self.boxes.cpu(), self.scores.cpu(), self.labels.cpu(), self.label_names,
            self.image_size, self.image, self.path, self.category_ids.cpu(),
        )

    @classmethod
    def empty(cls, image_size: tuple[int, int], **kwargs) -> Detections:
        return cls(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), [], image_size, **kwargs)
