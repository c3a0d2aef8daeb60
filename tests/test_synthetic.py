"""The seeded shapes dataset: determinism, exact boxes, visible objects, CLI, loadable as COCO."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from yolos.data import DetectionDataset, write_synthetic_dataset
from yolos.data.shapes import SHAPES, ShapesSpec, _mean_colour, outline_of, render_shapes, shape_mask


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = write_synthetic_dataset(tmp_path / "a", num_images=12, image_size=64, seed=3)
    b = write_synthetic_dataset(tmp_path / "b", num_images=12, image_size=64, seed=3)
    c = write_synthetic_dataset(tmp_path / "c", num_images=12, image_size=64, seed=4)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert (tmp_path / "a/images/000005.jpg").read_bytes() == (tmp_path / "b/images/000005.jpg").read_bytes()


def test_boxes_are_inside_and_cover_visible_objects(tmp_path):
    path = write_synthetic_dataset(tmp_path, num_images=30, image_size=96, max_objects=4, seed=1)
    data = json.loads(path.read_text())
    assert [c["id"] for c in data["categories"]] == [1, 2, 3]
    assert len(data["images"]) == 30 and len(data["annotations"]) >= 30
    by_image = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for info in data["images"]:
        img = np.asarray(Image.open(tmp_path / "images" / info["file_name"]).convert("RGB"), dtype=np.float64)
        outside = np.ones(img.shape[:2], dtype=bool)
        for ann in by_image.get(info["id"], []):
            x, y, w, h = ann["bbox"]
            assert 0 <= x and 0 <= y and x + w <= 96 and y + h <= 96 and w > 0 and h > 0
            assert 0 < ann["area"] <= w * h
            outside[y:y + h, x:x + w] = False
        background = img[outside].mean(0)
        for ann in by_image.get(info["id"], []):
            x, y, w, h = ann["bbox"]
            # the box's central pixel rows/cols belong to the shape for all three shapes
            centre = img[y + h // 2 - 1: y + h // 2 + 2, x + w // 2 - 1: x + w // 2 + 2].reshape(-1, 3)
            assert np.abs(centre.mean(0) - background).sum() > 100
            # tight: shape-coloured pixels reach every side of the box (2 px slack for JPEG
            # blurring a one-pixel triangle apex)
            ys, xs = np.nonzero(np.abs(img[y:y + h, x:x + w] - background).sum(2) > 100)
            assert ys.min() <= 2 and ys.max() >= h - 3 and xs.min() <= 2 and xs.max() >= w - 3


def test_cli_and_loading(tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "yolos.data.synthetic", str(out), "--num-images", "5",
                           "--image-size", "48", "--shapes", "square"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "annotations.json").read_text())
    assert data["categories"] == [{"id": 1, "name": "square", "supercategory": "shape"}]
    ds = DetectionDataset(out / "images", out / "annotations.json")
    assert ds.num_classes == 1 and len(ds) == 5
    x, t = ds[0]
    assert x.shape == (3, 48, 48) and (t["labels"] == 0).all()
    # a square's area is its whole box
    assert all(a["area"] == a["bbox"][2] * a["bbox"][3] for a in data["annotations"])


# Digests of 300 images per spec drawn by the renderer as it was before its speed-ups (PIL's
# MinFilter for outlines, out-of-place noise, a fresh PIL mask per shape, Generator.choice for
# colours and backgrounds, numpy broadcasting against colours): the module promises that a seed
# keeps its image. "study" is the convergence study's task; "large" has masks past 128 px, which
# are drawn every time instead of kept.
PINNED_RENDERS = {
    "study": (dict(image_size=128, min_objects=1, max_objects=8, min_size=12, max_size=64), "6a98db241775c6f9"),
    "large": (dict(image_size=320, min_objects=1, max_objects=4, shapes=list(SHAPES), look="varied", outline=0.3),
              "0305e92d8e6d9c18"),
    "varied": (dict(image_size=128, min_objects=1, max_objects=8, min_size=12, max_size=64,
                    shapes=["star", "cross", "ring"], look="varied", outline=0.5), "bee96d3e9be16984"),
    "classic": (dict(image_size=96, min_objects=1, max_objects=5), "e60e46ab5da97c0c"),
    "all": (dict(image_size=160, min_objects=1, max_objects=12, shapes=list(SHAPES), look="varied", outline=1.0),
            "b34dc8438fe14b90"),
}


@pytest.mark.parametrize("name", list(PINNED_RENDERS))
def test_a_seed_keeps_its_image(name):
    spec, digest = PINNED_RENDERS[name]
    h = hashlib.sha256()
    for i in range(300):
        pixels, objects = render_shapes(np.random.default_rng([7, 0, i]), ShapesSpec(**spec))
        h.update(pixels.tobytes())
        h.update(json.dumps(objects).encode())
    assert h.hexdigest()[:16] == digest


def test_mean_colour_is_numpys_mean_to_the_bit():
    """The classic look picks colours against the background's mean: the faster sum must give
    numpy's float32 mean exactly (whole canvases, odd sizes, a shape's strided region)."""
    rng = np.random.default_rng(3)
    for size in (32, 96, 128, 161):
        canvas = (rng.uniform(0, 255, (size, size, 3)) + rng.standard_normal((size, size, 3)) * 40).astype(np.float32)
        for view in (canvas, canvas[5: 5 + size // 3, 7: 7 + size // 2]):
            assert _mean_colour(view).tobytes() == view.reshape(-1, 3).mean(0).tobytes(), (size, view.shape)


def test_kept_masks_cannot_change():
    """Masks up to 128 px are shared between images (the pinned digests check their pixels):
    a caller that writes to one gets an error instead of changing later images."""
    for shape in SHAPES:
        mask = shape_mask(shape, 40, np.random.default_rng(0))
        assert shape_mask(shape, 40, np.random.default_rng(0)) is mask
        with pytest.raises(ValueError):
            mask[0, 0] = not mask[0, 0]


def test_outline_matches_pil_erosion():
    """The separable erosion strokes exactly the pixels PIL's MinFilter leaves at the edge."""
    for shape in SHAPES:
        for side in (3, 7, 20, 41, 64):
            mask = np.rot90(shape_mask(shape, side, np.random.default_rng(side)), side % 4)
            for width in (1, 2, 4):
                padded = Image.fromarray(np.pad(mask, width).astype(np.uint8) * 255)
                eroded = np.asarray(padded.filter(ImageFilter.MinFilter(2 * width + 1)))
                expected = mask & ~(eroded[width:-width, width:-width] > 0)
                assert np.array_equal(outline_of(mask, width), expected), (shape, side, width)


def test_train_data_benchmark_prints_every_stage():
    root = Path(__file__).resolve().parents[1]
    for task, expected in (("finetune", {"render", "item", "seeded item", "batch", "file batch"}),
                           ("study", {"render", "item", "seeded item", "batch"})):
        run = subprocess.run([sys.executable, "-m", "benchmarks.train_data", "--images", "32", "--repeats", "1",
                              "--threads", "1", "--task", task], cwd=root, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        rows = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in run.stdout.splitlines()
                if line.startswith("| ") and not line.startswith("| stage")}
        assert set(rows) == expected and all(v > 0 for v in rows.values()), (task, rows)
        assert ("varied" in run.stdout) == (task == "finetune"), run.stdout
    bad = subprocess.run([sys.executable, "-m", "benchmarks.train_data", "--images", "20"], cwd=root,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--images" in bad.stderr.strip().splitlines()[-1]
