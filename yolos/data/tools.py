"""``yolos data check`` and ``yolos data convert`` as library calls: a dataset's report (every
problem by file and line, every image decoded when asked), and its checked splits written as COCO
json beside a data.yaml, never into the dataset itself."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ImageError
from ..files import atomic_write_text
from ..images import load_image
from ..run_dir import run_dir
from .check import Problem, SplitReport, normalize_split, raise_fatal
from .dataset_config import DatasetConfig, shared_images

CONVERT_FILES = ("train.json", "val.json", "test.json", "data.yaml")


def splits_to_read(dc: DatasetConfig, which: str = "all") -> list[str]:
    """The splits ``which`` names ("all", or one), read from files (a rendered train split is not)."""
    there = dc.splits()
    if which != "all" and which not in there:
        raise ValueError(f"--split {which}: {dc.source} has no {which} split (it has {', '.join(there)})")
    chosen = there if which == "all" else [which]
    return [s for s in chosen if not (s == "train" and dc.train_synthetic is not None)]


def decode_problems(raw, known: set[str]) -> list[Problem]:
    """A Problem for each image of ``raw`` that is there but does not decode (a truncated file
    passes the header check), leaving out the places already in ``known``."""
    def decode(image):
        try:
            load_image(raw.image_path(image))
        except ImageError as err:
            return Problem(raw.image_where(image), str(err).split(": ", 1)[-1])
        return None

    present = [im for im in raw.coco["images"] if raw.image_path(im).is_file()]
    with ThreadPoolExecutor(4) as pool:
        return [p for p in pool.map(decode, present) if p is not None and p.where not in known]


@dataclass
class CheckResult:
    """The reports of the splits read, and dataset-wide warnings."""

    reports: list[SplitReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(r.fatal for r in self.reports)

    def render(self, limit: int = 20) -> str:
        return "\n".join([r.render(limit) for r in self.reports] + self.warnings)


def check_dataset(dc: DatasetConfig, which: str = "all", decode: bool = True) -> CheckResult:
    """Check the splits ``which`` names as train and val read them, and, with ``decode``, decode
    every image (a truncated file passes the header check)."""
    result, read = CheckResult(), {}
    for split in splits_to_read(dc, which):
        raw = read[split] = dc.read(split)
        _, report = normalize_split(raw)
        if decode:
            report.problems += decode_problems(raw, {p.where for p in report.problems})
        result.reports.append(report)
    if "train" in read and "val" in read and dc.val is not None:
        both = shared_images(read["train"], read["val"])
        if both:
            result.warnings.append(f"warning: {len(both)} image(s) are in both train and val (e.g. {both[0]}): val "
                                   f"AP on them measures memory, not generalisation")
    return result


def dataset_folders(dc: DatasetConfig) -> list[Path]:
    """The folders a dataset lives in (its folder or YAML's folder, each split's images and
    annotations): :func:`convert_dataset` writes into none of them."""
    source = Path(dc.source)
    folders = {source if source.is_dir() else source.parent}
    for name in ("train", "val", "test"):
        spec = getattr(dc, name)
        if spec is not None:
            folders.add(spec.images)
            if spec.annotations is not None:
                folders.add(spec.annotations.parent)
    return sorted({f.resolve() for f in folders})


def convert_dataset(dc: DatasetConfig, out, say=lambda m: None) -> Path:
    """Write each split as checked (``train.json``, ``val.json``, ``test.json``: COCO, boxes in
    the displayed frame and clipped, VOC 'difficult' as crowd) and a ``data.yaml`` pointing at the
    images in place, into ``out`` (``out2`` when taken; never a folder of the dataset)."""
    target = Path(out).resolve()
    inside = next((f for f in dataset_folders(dc) if target == f or f in target.parents), None)
    if inside is not None:
        raise ValueError(f"--out {out}: inside the dataset ({inside}); data convert never writes into a dataset "
                         f"(its data.yaml would be read instead of the dataset from then on): give a folder "
                         f"outside it")
    splits = {}
    for split in splits_to_read(dc):
        raw = dc.read(split)
        coco, report = normalize_split(raw)
        raise_fatal(report)
        splits[split] = (raw.images_root.resolve(), coco)
    with run_dir(out, run_files=CONVERT_FILES, say=say) as folder:
        lines = []
        for split, (images, coco) in splits.items():
            atomic_write_text(folder / f"{split}.json", json.dumps(coco, allow_nan=False))
            lines.append(f"{split}: {{images: {json.dumps(str(images))}, annotations: {split}.json}}")
            written = folder / f"{split}.json"
            say(f"{split}: {len(coco['images'])} images, {len(coco['annotations'])} boxes -> {written}")
        atomic_write_text(folder / "data.yaml", "\n".join(lines) + "\n")
    return folder


__all__ = ["check_dataset", "convert_dataset", "CheckResult", "dataset_folders", "decode_problems", "splits_to_read"]
